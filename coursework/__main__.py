"""The coursework studies as one command line.

    python -m coursework list [STUDY]                  # every study, or one study's commands
    python -m coursework run STUDY [RUN ...] [--quick] [--epochs N] [--subset N]
                                   [--repeats N] [--device gpu] [--ray ADDRESS|local]
    python -m coursework report STUDY                  # coursework/results/STUDY/README.md + plots

Runs go to ``runs/coursework/<study>/<run>/`` (``runs/coursework-quick`` with ``--quick``);
``run`` skips finished runs and resumes interrupted ones, so it can simply be run again.
``--repeats N`` trains every run with seeds 0..N-1 (``<run>``, ``<run>-seed1``, ...); the
report gives mean ± sd.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from minidl import train
from minidl.backend import DEVICES

from . import runner, studies
from .report import write_report

PROG = "python -m coursework"
RESULTS = Path(__file__).resolve().parent / "results"


def _out_root(args) -> Path:
    if args.out_root:
        return Path(args.out_root)
    return Path("runs") / ("coursework-quick" if args.quick else "coursework")


def _overrides(args) -> list[str]:
    """Train options from this command line, appended after the study's (so they win)."""
    pairs = (("--dataset", args.dataset), ("--data-dir", args.data_dir), ("--epochs", args.epochs),
             ("--subset", args.subset), ("--device", args.device))
    argv = [token for option, value in pairs if value is not None for token in (option, str(value))]
    return argv + shlex.split(args.extra)


def _plan(args):
    study = studies.get(args.study)
    return study, runner.plan(study, _out_root(args), args.runs, args.quick, _overrides(args),
                              args.narrow, args.repeats)


def cmd_list(args) -> int:
    if not args.study:
        for study in studies.STUDIES.values():
            print(f"{study.name:24s} {len(study.runs)} runs  {study.title}  [{study.source}]")
        return 0
    study, items = _plan(args)
    print(f"# {study.title} [{study.source}]")
    for item in items:
        figures = ", ".join(f"{k} {v}" for k, v in item.run.report.items()) or "no figure"
        kind = " (landscape probes at every step)" if item.run.kind == "landscape" else ""
        needs = f"; after {', '.join(f.name for f in item.needs)}" if item.needs else ""
        print(f"# {item.name}: {item.run.label}{kind}{needs}; the report: {figures}")
        print(f"{train.PROG} {shlex.join(item.argv)}")
    return 0


def cmd_run(args) -> int:
    study, items = _plan(args)
    if args.ray:
        return runner.run_ray(items, study.measure, args.ray, args.device or "cpu")
    return runner.run_serial(items, study.measure)


def cmd_report(args) -> int:
    study = studies.get(args.study)
    out_root = _out_root(args)
    results = Path(args.results) if args.results else (
        out_root / study.name / "report" if args.quick else RESULTS / study.name)
    try:
        found = write_report(study, out_root, results)
    except FileNotFoundError as err:
        print(f"{PROG}: error: {err} (run '{PROG} run {study.name}' first)", file=sys.stderr)
        return 1
    print(f"{len(found)} of {len(study.runs)} runs -> {results / 'README.md'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="name every study, or print one study's train commands")
    p_list.add_argument("study", nargs="?", help="a study (default: list the studies)")
    p_run = sub.add_parser("run", help="train a study's runs (skip finished, resume interrupted)")
    p_run.add_argument("study", help=f"one of: {', '.join(studies.STUDIES)}")
    p_report = sub.add_parser("report", help="README.md table and plots from the study's runs")
    p_report.add_argument("study", help=f"one of: {', '.join(studies.STUDIES)}")
    p_report.add_argument("--results", help="folder to write (default: coursework/results/STUDY)")
    for p in (p_list, p_run):
        p.add_argument("runs", nargs="*", metavar="RUN", help="only these runs (default: all)")
        p.add_argument("--epochs", type=int, help="epochs per run (default: the study's)")
        p.add_argument("--subset", type=int, help="train on the first N training images only")
        p.add_argument("--repeats", type=int, metavar="N",
                       help="train every run N times, with seeds 0..N-1 (default: the study's, "
                            f"at most {runner.QUICK_REPEATS} with --quick)")
        p.add_argument("--dataset", help="data set (default: the document's; fashion_mnist, "
                                         "mnist, cifar10, cifar100)")
        p.add_argument("--data-dir", help="folder holding the data set files")
        p.add_argument("--device", choices=DEVICES, help="cpu (NumPy) or gpu (CuPy)")
        p.add_argument("--narrow", type=int, default=1, metavar="D",
                       help="divide every run's --width by D (a cheaper, narrower study)")
        p.add_argument("--extra", default="", metavar="OPTIONS",
                       help="more train options for every run, written with '=': "
                            "--extra=\"--batch-size 50\"")
        p.add_argument("--ray", metavar="ADDRESS",
                       help="run each run as a Ray task on the cluster at ADDRESS ('local' "
                            "starts one here; pip install -e '.[cluster]')")
    for p in (p_list, p_run, p_report):
        p.add_argument("--quick", action="store_true",
                       help="the tiny setting the tests use (a few hundred images, one epoch, "
                            "tiny widths), under runs/coursework-quick")
        p.add_argument("--out-root", help="folder of the run folders (default: runs/coursework)")
    p_list.set_defaults(func=cmd_list)
    p_run.set_defaults(func=cmd_run)
    p_report.set_defaults(func=cmd_report)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else train.EXIT_USAGE
    if getattr(args, "narrow", 1) < 1:
        return _usage_error(parser, f"--narrow must be >= 1, got {args.narrow}")
    if getattr(args, "repeats", None) is not None and args.repeats < 1:
        return _usage_error(parser, f"--repeats must be >= 1, got {args.repeats}")
    try:
        return args.func(args)
    except ValueError as err:  # an unknown study or run name
        return _usage_error(parser, str(err))


def _usage_error(parser, message: str) -> int:
    parser.print_usage(sys.stderr)
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return train.EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
