"""The Edinburgh MLP coursework 2 experiment ladder (seeds/003, sections 3-5) as runnable specs.

    python -m coursework.mlp_cw2 list                  # the commands, with the report's numbers
    python -m coursework.mlp_cw2 run [NAMES...]        # train in turn; skip finished, resume others
    python -m coursework.mlp_cw2 table                 # summary.md + val_accuracy.png

Every rung is one ``python -m minidl.train`` command in its own folder ``<out-root>/<name>``
(default out-root ``runs/mlp_cw2-<dataset>``): vgg08, the broken vgg38, vgg38 with BatchNorm,
with residual connections, with both (the baseline), then random erasing, L2 and dropout
added one at a time on top of the baseline.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from minidl import plots, train
from minidl.backend import DEVICES
from minidl.config import RESUMABLE_CHANGES, TrainConfig, config_differences, parse_config
from minidl.metrics import METRIC_COLUMNS, CSVLog

PROG = "python -m coursework.mlp_cw2"
REPORT_DATASET = "cifar100"
REPORT_EPOCHS = 100


@dataclass(frozen=True)
class Experiment:
    """One rung of the ladder: ``argv`` is the model and the options this rung adds."""

    name: str
    argv: tuple[str, ...]
    description: str
    report_val: float | None = None   # the report's validation accuracy at epoch 100
    report_test: float | None = None  # the report's test accuracy, where it gives one


# Section 5: 47,500 / 2,500 / 10,000 split (5 % held out), batch 100, seed 0, 100 epochs, Adam
# lr 1e-3 cosine-annealed to 2e-5. Spelt out even where they equal minidl.train's defaults, so
# the spec does not drift if those defaults change.
REPORT_SETTINGS = {
    "--dataset": REPORT_DATASET, "--val-fraction": "0.05", "--batch-size": "100", "--seed": "0",
    "--epochs": str(REPORT_EPOCHS), "--optimizer": "adam", "--lr": "1e-3",
    "--schedule": "cosine", "--min-lr": "2e-5",
}

BASELINE = ("vgg38", "--bn", "--residual")
# Random erasing p 0.5, area (0.02, 0.33), aspect (0.3, 3.3) (section 5.2.1): minidl's defaults.
ERASING = BASELINE + ("--random-erasing",)
# Section 5.3: "The penalty coefficient we will use is p = 0.001" (added to the gradient by Adam).
L2 = ERASING + ("--weight-decay", "1e-3")

LADDER = (
    Experiment("vgg08", ("vgg08",), "shallow reference: 7 convs + 1 linear", 0.4848),
    Experiment("vgg38", ("vgg38",), "broken: gradients vanish, accuracy stays near chance "
                                    "(the report: 'converges around 0')"),
    Experiment("vgg38-bn", ("vgg38", "--bn"), "fix 1: BatchNorm after every conv", 0.4616),
    Experiment("vgg38-res", ("vgg38", "--residual"), "fix 2: residual connections", 0.5728),
    Experiment("vgg38-bn-res", BASELINE, "both fixes: the baseline", 0.6212, 0.6112),
    Experiment("vgg38-bn-res-re", ERASING, "+ random erasing (p 0.5)", 0.6431),
    Experiment("vgg38-bn-res-re-l2", L2, "+ L2 1e-3: the report's final model", 0.6589, 0.6541),
    Experiment("vgg38-bn-res-re-l2-drop", L2 + ("--dropout", "0.5"),
               "+ dropout 0.5 before the classifier (the report keeps it out)", 0.6524),
)
EXPERIMENTS = {e.name: e for e in LADDER}


def train_argv(exp: Experiment, out, dataset: str | None = None, epochs: int | None = None,
               subset: int | None = None, data_dir=None, device: str | None = None,
               extra=()) -> list[str]:
    """The ``python -m minidl.train`` argv of ``exp``: the report's settings with the given
    overrides, ``--out out``, then ``extra`` (later options win in argparse)."""
    settings = dict(REPORT_SETTINGS)
    overrides = {"--dataset": dataset, "--epochs": epochs, "--subset": subset,
                 "--data-dir": data_dir, "--device": device}
    settings.update({k: str(v) for k, v in overrides.items() if v is not None})
    argv = list(exp.argv)
    for option, value in settings.items():
        argv += [option, value]
    return argv + ["--out", str(out), *extra]


def default_out_root(dataset: str) -> Path:
    return Path("runs") / f"mlp_cw2-{dataset}"


def run_state(cfg: TrainConfig) -> str:
    """"done" (finished with this configuration and at least ``cfg.epochs`` epochs), "resume"
    (a checkpoint to continue from) or "new"."""
    out = Path(cfg.out)
    summary, config = out / "test_summary.json", out / "config.json"
    if summary.is_file() and config.is_file():
        saved = TrainConfig.load_json(config)
        epochs = json.loads(summary.read_text()).get("epochs") or 0
        same = not config_differences(saved, cfg, ignore=RESUMABLE_CHANGES + ("out",))
        if same and epochs >= cfg.epochs:
            return "done"
    # A different configuration is resumed too: minidl.train then refuses, naming the options.
    return "resume" if (out / "checkpoints" / "latest.npz").is_file() else "new"


def _selected(names) -> list[Experiment]:
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(EXPERIMENTS)}")
    return [EXPERIMENTS[n] for n in names] if names else list(LADDER)


def _report_numbers(exp: Experiment) -> str:
    parts = [f"{label} {value:.4f}" for label, value in
             (("val", exp.report_val), ("test", exp.report_test)) if value is not None]
    return ", ".join(parts) if parts else "no number"


def _commands(args) -> list[tuple[Experiment, list[str]]]:
    """(experiment, train argv) for the experiments and overrides on the command line."""
    out_root = Path(args.out_root) if args.out_root else default_out_root(args.dataset)
    extra = shlex.split(args.extra)
    return [(exp, train_argv(exp, out_root / exp.name, args.dataset, args.epochs, args.subset,
                             args.data_dir, args.device, extra))
            for exp in _selected(args.names)]


def cmd_list(args) -> int:
    for exp, argv in _commands(args):
        print(f"# {exp.name}: {exp.description} (report: {_report_numbers(exp)})")
        print(f"{train.PROG} {shlex.join(argv)}")
    return 0


def cmd_run(args) -> int:
    commands = _commands(args)
    failed = []
    for i, (exp, argv) in enumerate(commands, start=1):
        try:
            cfg = parse_config(argv)
        except SystemExit:  # argparse has printed why (e.g. an unknown option in --extra)
            return train.EXIT_USAGE
        state = run_state(cfg)
        head = f"[{i}/{len(commands)}] {exp.name}"
        if state == "done":
            print(f"{head}: finished in {cfg.out}, skipped", flush=True)
            continue
        if state == "resume":
            argv = argv + ["--resume"]
        print(f"{head}: {train.PROG} {shlex.join(argv)}", flush=True)
        code = train.main(argv)
        if code == train.EXIT_DIVERGED:  # a result for this rung, not a reason to stop the ladder
            failed.append(exp.name)
        elif code != train.EXIT_OK:  # no data, a bad option, Ctrl-C: the next rungs would fail too
            return code
    if failed:
        print(f"{PROG}: diverged: {', '.join(failed)}", file=sys.stderr)
        return train.EXIT_DIVERGED
    return train.EXIT_OK


# ---------------------------------------------------------------------- table
def collect(out_root) -> list[dict]:
    """One dict per ladder rung with a metrics.csv under ``out_root``, in ladder order."""
    runs = []
    for exp in LADDER:
        folder = Path(out_root) / exp.name
        rows = CSVLog(folder / "metrics.csv", METRIC_COLUMNS).read()
        if not rows:
            continue
        best = max(rows, key=lambda r: r["val_acc"])
        summary_path, config_path = folder / "test_summary.json", folder / "config.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        # A summary from before the run was extended describes fewer epochs than metrics.csv.
        finished = summary.get("epochs") == rows[-1]["epoch"]
        runs.append({"experiment": exp, "rows": rows, "epochs": rows[-1]["epoch"],
                     "best_val_acc": best["val_acc"], "best_epoch": best["epoch"],
                     "final_val_acc": rows[-1]["val_acc"],
                     "test_acc": summary.get("test_acc") if finished else None,
                     "dataset": config.get("dataset")})
    return runs


def _acc(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def markdown_table(runs) -> str:
    lines = ["| experiment | dataset | epochs run | best val acc (epoch) | final val acc | "
             "test acc | report val acc | report test acc |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        exp = r["experiment"]
        lines.append(f"| {exp.name} | {r['dataset'] or '?'} | {r['epochs']} | "
                     f"{_acc(r['best_val_acc'])} ({r['best_epoch']}) | {_acc(r['final_val_acc'])} | "
                     f"{_acc(r['test_acc'])} | {_acc(exp.report_val)} | {_acc(exp.report_test)} |")
    return "\n".join(lines)


def plot_val_accuracy(runs, path) -> Path:
    """Validation accuracy against epoch, one line per run; the report's epoch-100 values as
    crosses where the run is on the report's data set."""
    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    crosses = False
    for r in runs:
        exp = r["experiment"]
        (line,) = ax.plot([row["epoch"] for row in r["rows"]], [row["val_acc"] for row in r["rows"]],
                          marker="o", markersize=3, label=exp.name)
        if exp.report_val is not None and r["dataset"] == REPORT_DATASET:
            ax.plot([REPORT_EPOCHS], [exp.report_val], "x", color=line.get_color(), markersize=8)
            crosses = True
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title("MLP coursework 2 ladder"
                 + (f" (x: the report's value at epoch {REPORT_EPOCHS})" if crosses else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return plots.save_figure(fig, path)


def cmd_table(args) -> int:
    out_root = Path(args.out_root) if args.out_root else default_out_root(args.dataset)
    runs = collect(out_root)
    if not runs:
        print(f"{PROG}: error: no runs of the ladder under {out_root} (run "
              f"'{PROG} run' first)", file=sys.stderr)
        return 1
    table = markdown_table(runs)
    missing = [e.name for e in LADDER if e.name not in {r["experiment"].name for r in runs}]
    text = "\n\n".join([
        "# MLP coursework 2: the experiment ladder",
        f"Runs under `{out_root}`. The report's numbers are CIFAR-100 after {REPORT_EPOCHS} "
        "epochs (validation accuracy at the last epoch; test accuracy of the chosen model): "
        "compare them with runs of the same data set and length only.",
        table,
        *([f"Not run yet: {', '.join(missing)}."] if missing else []),
        "![validation accuracy](val_accuracy.png)",
    ]) + "\n"
    (out_root / "summary.md").write_text(text)
    plot_val_accuracy(runs, out_root / "val_accuracy.png")
    print(table)
    print(f"wrote {out_root / 'summary.md'} and {out_root / 'val_accuracy.png'}")
    return 0


# ---------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("list", "print the train command of each experiment"),
                            ("run", "train the experiments in turn (skip finished, resume others)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("names", nargs="*", metavar="NAME",
                       help=f"experiments (default: all): {', '.join(EXPERIMENTS)}")
        p.add_argument("--epochs", type=int, help=f"epochs per run (report: {REPORT_EPOCHS})")
        p.add_argument("--subset", type=int, help="train on the first N training images only")
        p.add_argument("--data-dir", help="folder holding the data set files")
        p.add_argument("--device", choices=DEVICES, help="cpu (NumPy) or gpu (CuPy)")
        p.add_argument("--extra", default="", metavar="OPTIONS",
                       help="more options for every train command, with '=' so they are not "
                            "read as this command's: --extra=\"--num-filters 4 --no-progress\"")
    table = sub.add_parser("table", help="summary.md and val_accuracy.png from the runs")
    for p in sub.choices.values():
        p.add_argument("--dataset", default=REPORT_DATASET,
                       help=f"data set (default: {REPORT_DATASET}, as in the report; "
                            "fashion_mnist where CIFAR is missing)")
        p.add_argument("--out-root", help="folder of the runs (default: runs/mlp_cw2-<dataset>)")
    table.set_defaults(func=cmd_table)
    sub.choices["list"].set_defaults(func=cmd_list)
    sub.choices["run"].set_defaults(func=cmd_run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else train.EXIT_USAGE
    try:
        _selected(getattr(args, "names", ()))
    except ValueError as err:  # an unknown experiment name
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return train.EXIT_USAGE
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
