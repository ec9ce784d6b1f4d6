"""Run a study's runs: serially in this process, or as Ray tasks on a cluster.

Every run has its own folder ``<out-root>/<study>/<run>``; the folder is the run's state:
a finished run (same configuration, all epochs, its measurements written) is skipped, an
interrupted one resumes from ``checkpoints/latest.npz`` (``python -m minidl.train --resume``).
A training run is ``minidl.train.main(argv)``; a landscape run trains the same model with
``minidl.analysis.landscape_step`` at every step and writes ``landscape.csv``.

A study repeated ``N`` times (``--repeats N``) trains every run with seeds 0..N-1: seed 0 in
``<run>``, seed k in ``<run>-seed<k>``. A run that needs another run's folder (``{run:NAME}``
in its argv) is trained after it, with the folder of the same repeat.

With Ray each run is one task. It trains in the folder the driver names when that folder is
visible to the worker (a shared filesystem: a retried task resumes from its checkpoint);
otherwise it trains in a local scratch folder and sends back the run's small files (never
checkpoints, except those of a run that another run needs), which the driver writes
into the same folder a serial run would have used. A task that needs another run's folder
waits for that run's task (Ray passes its result in).
"""
from __future__ import annotations

import csv
import json
import math
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minidl import analysis, backend, data, losses, optim, train
from minidl.checkpoint import RunFolder, load_checkpoint
from minidl.config import RESUMABLE_CHANGES, TrainConfig, config_differences, parse_config

from .study import PLACEHOLDER, Run, Study

LANDSCAPE_COLUMNS = ("step", "epoch", "loss", "grad_norm", "probe_loss_min", "probe_loss_max",
                     "grad_change_min", "grad_change_max", "beta")
DONE_FILE = "study_run.json"  # written last: the run, its argv and its measurements are complete
SKIPPED_FILES = ("checkpoints",)  # what a Ray task does not send back
# ... except for a run another run needs (a teacher): its best model, and the latest
# checkpoint, which says which epoch the best one is (RunFolder.load_best reads both).
NEEDED_CHECKPOINTS = ("checkpoints/best.npz", "checkpoints/latest.npz")
QUICK_REPEATS = 2                  # --quick repeats a repeated study twice: the mean ± sd path


def _print(message: str) -> None:
    print(message, flush=True)  # a line at a time, also into a log file


@dataclass(frozen=True)
class Planned:
    """A run with its complete train argv (``--out`` included), its folder, its repeat (the
    seed when the study is repeated) and the folders of the runs it needs."""

    run: Run
    argv: tuple[str, ...]
    folder: Path
    repeat: int = 0
    needs: tuple[Path, ...] = ()

    @property
    def name(self) -> str:
        return self.folder.name


WIDTH_OPTIONS = ("--width", "--num-filters")  # --num-filters: the older spelling


def narrowed(argv, divisor: int) -> list[str]:
    """``argv`` with every ``--width W`` (or ``--num-filters W``) divided by ``divisor``
    (at least 1)."""
    out = list(argv)
    for i, token in enumerate(out[:-1]):
        if token in WIDTH_OPTIONS:
            out[i + 1] = str(max(1, int(out[i + 1]) // divisor))
    return out


def folder_name(run_name: str, repeat: int) -> str:
    """``<run>`` for the first repeat (seed 0: the folder an unrepeated study uses), else
    ``<run>-seed<k>``."""
    return run_name if repeat == 0 else f"{run_name}-seed{repeat}"


def repeats_of(study: Study, quick: bool = False, repeats: int | None = None) -> int:
    """How many times to train each run: ``repeats`` when given, else the study's own
    (at most ``QUICK_REPEATS`` under ``--quick``)."""
    if repeats is None:
        repeats = min(study.repeats, QUICK_REPEATS) if quick else study.repeats
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    return repeats


def plan(study: Study, out_root, names=(), quick=False, overrides=(), narrow=1,
         repeats=None) -> list[Planned]:
    """The runs of ``study`` (all, or those in ``names`` and the runs they need) with their
    argv and folders: repeat by repeat, each run after the runs it needs.

    A repeated study sets ``--seed k`` for repeat k (after every other option, so it wins);
    ``{run:NAME}`` placeholders become the folder of run NAME of the same repeat.
    """
    repeats = repeats_of(study, quick, repeats)
    root = Path(out_root) / study.name
    planned = []
    for repeat in range(repeats):
        folders = {r.name: root / folder_name(r.name, repeat) for r in study.runs}
        for run in study.ordered(names):
            argv = study.train_argv(run, quick, tuple(overrides))
            if narrow != 1:
                argv = narrowed(argv, narrow)
            if repeats > 1:
                argv += ["--seed", str(repeat)]
            argv = [PLACEHOLDER.sub(lambda m: str(folders[m.group(1)]), t) for t in argv]
            folder = folders[run.name]
            planned.append(Planned(run, tuple(argv + ["--out", str(folder)]), folder, repeat,
                                   tuple(folders[n] for n in run.needs)))
    return planned


def run_state(item: Planned) -> str:
    """"done" (finished with this configuration), "resume" (a checkpoint to continue from;
    minidl.train refuses a different configuration, naming the options) or "new".

    A trained run is the run folder's business (``RunFolder.status``: the one resume rule);
    the study adds only that its after-steps (filters, pruning) must have written ``DONE_FILE``.
    Landscape runs keep no checkpoint: their record alone says they are done.
    """
    cfg = parse_config(list(item.argv))
    if item.run.kind == "landscape":
        return "done" if _recorded(item, cfg) else "new"
    state = RunFolder(item.folder).status(cfg.to_dict())
    if state == "done" and not (item.folder / DONE_FILE).is_file():
        return "resume"  # trained, but its after-steps did not finish: resuming re-runs them
    return state


def _recorded(item: Planned, cfg: TrainConfig) -> bool:
    """Whether ``DONE_FILE`` records a finished run of ``cfg`` (epochs may only have grown)."""
    done = item.folder / DONE_FILE
    if not done.is_file():
        return False
    saved = TrainConfig.from_dict(json.loads(done.read_text())["config"])
    return not config_differences(saved, cfg, ignore=RESUMABLE_CHANGES + ("out",)) \
        and saved.epochs >= cfg.epochs


# ---------------------------------------------------------------------- one run
def execute(item: Planned, measure: dict, log=None, head: str = "") -> int:
    """Run ``item`` to the end in its folder (resuming where it can); returns an exit code."""
    log, head = log or _print, head or item.name
    state = run_state(item)
    if state == "done":
        log(f"{head}: finished in {item.folder}, skipped")
        return train.EXIT_OK
    argv = list(item.argv) + (["--resume"] if state == "resume" else [])
    kind = " (probing the landscape at every step)" if item.run.kind == "landscape" else ""
    log(f"{head}: {train.PROG} {shlex.join(argv)}{kind}")
    cfg = parse_config(argv)
    problems = cfg.problems()
    if problems:
        log(f"{item.run.name}: bad configuration: {'; '.join(problems)}")
        return train.EXIT_USAGE
    if item.run.kind == "landscape":
        code = _landscape(cfg, measure, log)
    else:
        code = train.main(argv)
        if code == train.EXIT_OK:
            for step in item.run.after:
                AFTER[step](cfg, measure)
    if code == train.EXIT_OK:
        record = {"run": item.run.name, "argv": list(item.argv), "config": cfg.to_dict()}
        (item.folder / DONE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return code


def _built(cfg: TrainConfig):
    """(data splits, model) of a configuration, as minidl.train builds them."""
    splits = data.load_dataset(cfg.dataset, data_dir=cfg.data_dir, val_fraction=cfg.val_fraction,
                               seed=cfg.seed, subset=cfg.subset)
    model = train.build_model(cfg, splits)
    return splits, model.to(cfg.device) if cfg.device != "cpu" else model


def _best_checkpoint(cfg: TrainConfig) -> dict:
    folder = Path(cfg.out) / "checkpoints"
    return load_checkpoint(folder / "best.npz" if (folder / "best.npz").is_file()
                           else folder / "latest.npz")


def _best_model(cfg: TrainConfig):
    """(splits, model with the best-validation weights of the run in cfg.out)."""
    splits, model = _built(cfg)
    model.load_state_dict(_best_checkpoint(cfg)["model"])
    return splits, model


def _filters(cfg: TrainConfig, measure: dict) -> None:
    """filters.npy: the first conv layer's weight (O, C, kh, kw) of the best model."""
    _, model = _best_model(cfg)
    layer = dict(model.named_layers())[measure.get("filter_layer", "stem.conv")]
    np.save(Path(cfg.out) / "filters.npy", backend.asnumpy(layer.weight.data))


def _prune(cfg: TrainConfig, measure: dict) -> None:
    """pruning.json: test accuracy before and after magnitude pruning of the last conv layer,
    then of it and the last hidden FC layer; conv_weight.npy: that conv weight, unpruned;
    conv_gamma.npy: DessiLBI's sparse Gamma of that weight, where the optimiser has one."""
    criterion = losses.CrossEntropyLoss()
    fraction, conv, fc = measure["prune_fraction"], measure["prune_conv"], measure["prune_fc"]
    result = {"fraction": fraction, "layers": {}}
    for key, names in (("test_acc", ()), ("pruned_conv_acc", (conv,)),
                       ("pruned_conv_fc_acc", (conv, fc))):
        splits, model = _best_model(cfg)
        if key == "test_acc":
            weight = dict(model.named_layers())[conv].weight
            np.save(Path(cfg.out) / "conv_weight.npy", backend.asnumpy(weight.data))
            index = next(i for i, p in enumerate(model.parameters()) if p is weight)
            gamma = _best_checkpoint(cfg)["optim"].get(f"{index}.gamma")
            if gamma is not None:
                np.save(Path(cfg.out) / "conv_gamma.npy", np.asarray(gamma))
        result["layers"].update(analysis.prune_layers(model, names, fraction))
        x, y = splits.test
        result[key] = train.evaluate(model, criterion, x, y, cfg.batch_size, cfg.device)[1]
    (Path(cfg.out) / "pruning.json").write_text(json.dumps(result, indent=2) + "\n")


def logits_of(model, x, batch_size: int, device: str = "cpu") -> np.ndarray:
    """The model's outputs (N, classes) for ``x`` in eval mode, batch by batch, on the host."""
    model.eval()
    return np.concatenate([backend.asnumpy(model(backend.to_device(x[i:i + batch_size], device)))
                           for i in range(0, len(x), batch_size)])


def best_shift(logits: np.ndarray, y: np.ndarray, k: int) -> float:
    """The amount to add to class ``k``'s logit that makes the most of ``(logits, y)`` correct.

    Class k wins example i exactly when the shift exceeds ``t_i = max_{j != k} z_ij - z_ik``;
    so the accuracy is a step function of the shift, constant between consecutive t_i. Every
    interval is tried (its midpoint) and the best one closest to zero is taken.
    """
    others = np.delete(np.arange(logits.shape[1]), k)
    rival = logits[:, others]
    threshold = rival.max(axis=1) - logits[:, k]
    wins_k = np.sort(threshold[y == k])                                # correct iff shift > t
    wins_rival = np.sort(threshold[(y != k) & (others[rival.argmax(axis=1)] == y)])
    cuts = np.unique(threshold)
    shifts = np.concatenate([[cuts[0] - 1.0], (cuts[:-1] + cuts[1:]) / 2, [cuts[-1] + 1.0]])
    correct = (np.searchsorted(wins_k, shifts, side="left")
               + len(wins_rival) - np.searchsorted(wins_rival, shifts, side="right"))
    best = np.flatnonzero(correct == correct.max())
    return float(shifts[best[np.argmin(np.abs(shifts[best]))]])


def output_layer(model, num_classes: int):
    """The last Linear layer with ``num_classes`` outputs and a bias: the one whose bias says
    how readily each class is predicted."""
    found = [layer for _, layer in model.named_layers()
             if getattr(layer, "out_features", None) == num_classes
             and getattr(layer, "bias", None) is not None]
    if not found:
        raise ValueError(f"no Linear layer with {num_classes} outputs and a bias to correct")
    return found[-1]


def _bias_correction(cfg: TrainConfig, measure: dict) -> None:
    """bias_correction.json: a run trained without class K (``--exclude-class K``, the slides'
    "transfer set without one class"), tested before and after raising K's bias in the output
    layer by the amount that maximises validation accuracy (the validation set keeps K)."""
    k = getattr(cfg, "exclude_class", None)
    if k is None:
        raise ValueError(f"{cfg.out}: the bias_correction step needs a run trained with "
                         "--exclude-class K")
    splits, model = _best_model(cfg)
    (x_val, y_val), (x_test, y_test) = splits.val, splits.test
    if not np.any(y_val == k):
        raise ValueError(f"{cfg.out}: the validation set has no example of class {k}, so the "
                         f"bias of class {k} cannot be chosen on it")
    shift = best_shift(logits_of(model, x_val, cfg.batch_size, cfg.device), y_val, k)
    criterion, result = losses.CrossEntropyLoss(), {"class": k, "shift": shift}
    bias = output_layer(model, splits.num_classes).bias
    for when in ("before", "after"):
        if when == "after":
            bias.data[k] = bias.data[k] + shift
        val_logits = logits_of(model, x_val, cfg.batch_size, cfg.device)
        test_logits = logits_of(model, x_test, cfg.batch_size, cfg.device)
        loss, acc = train.evaluate(model, criterion, x_test, y_test, cfg.batch_size, cfg.device)
        predicted = test_logits.argmax(axis=1)
        result.update({
            f"val_acc_{when}": float(np.mean(val_logits.argmax(axis=1) == y_val)),
            f"test_loss_{when}": float(loss), f"test_acc_{when}": float(acc),
            f"test_errors_{when}": int(np.sum(predicted != y_test)),
            f"class_test_acc_{when}": float(np.mean(predicted[y_test == k] == k))})
    result.update({"test_examples": int(len(y_test)),
                   "class_test_examples": int(np.sum(y_test == k))})
    (Path(cfg.out) / "bias_correction.json").write_text(json.dumps(result, indent=2) + "\n")


AFTER = {"filters": _filters, "prune": _prune, "bias_correction": _bias_correction}


def _landscape(cfg: TrainConfig, measure: dict, log) -> int:
    """Train cfg's model with a landscape probe at every step; write landscape.csv.

    Short by design (the probes cost ``len(probe_sizes)`` extra passes per step), so an
    interrupted landscape run starts again rather than resuming.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save_json(out / "config.json")
    splits, model = _built(cfg)
    opt = optim.build_optimizer(cfg.optimizer, model.parameters(), cfg.lr,
                                weight_decay=cfg.weight_decay)
    criterion = losses.CrossEntropyLoss()
    x, y = splits.train
    batches = data.BatchIterator(x, y, cfg.batch_size, shuffle=True,
                                 rng=np.random.default_rng(cfg.seed))
    sizes = measure["probe_sizes"]
    start, step = time.perf_counter(), 0
    model.train()
    with open(out / "landscape.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, LANDSCAPE_COLUMNS)
        writer.writeheader()
        for epoch in range(1, cfg.epochs + 1):
            for xb, yb in batches:
                step += 1
                xb, yb = backend.to_device(xb, cfg.device), backend.to_device(yb, cfg.device)
                row = analysis.landscape_step(model, criterion, opt, xb, yb, sizes)
                writer.writerow({"step": step, "epoch": epoch, **row})
                if not math.isfinite(row["loss"]):
                    log(f"{out.name}: loss became {row['loss']} at step {step}; stopping")
                    return train.EXIT_DIVERGED
    seconds = time.perf_counter() - start
    (out / "landscape_summary.json").write_text(json.dumps(
        {"steps": step, "epochs": cfg.epochs, "seconds": round(seconds, 3)}, indent=2) + "\n")
    log(f"{out.name}: {step} probed steps in {seconds:.1f}s -> {out / 'landscape.csv'}")
    return train.EXIT_OK


# ---------------------------------------------------------------------- many runs
def run_serial(items, measure: dict, log=None) -> int:
    """Run each item in turn; a diverged run is a result (the runs that need it are skipped),
    any other failure stops the study."""
    log, diverged = log or _print, []
    for i, item in enumerate(items, start=1):
        head = f"[{i}/{len(items)}] {item.name}"
        broken = [f.name for f in item.needs if f.name in diverged]
        if broken:
            log(f"{head}: skipped, it needs {', '.join(broken)}, which diverged")
            diverged.append(item.name)
            continue
        code = execute(item, measure, log, head=head)
        if code == train.EXIT_DIVERGED:
            diverged.append(item.name)
        elif code != train.EXIT_OK:
            return code
    if diverged:
        log(f"diverged: {', '.join(diverged)}")
        return train.EXIT_DIVERGED
    return train.EXIT_OK


def _small_files(folder: Path, with_best: bool = False) -> dict[str, bytes]:
    """{relative path: bytes} of a run folder, without checkpoints (but with the best and
    latest ones when ``with_best``: another run needs this run's model)."""
    return {rel: p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ((rel := p.relative_to(folder).as_posix()) in NEEDED_CHECKPOINTS
                                and with_best
                                or p.relative_to(folder).parts[0] not in SKIPPED_FILES)}


def _write_files(folder: Path, files: dict) -> None:
    for rel, blob in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(blob)


def ray_task(item: Planned, measure: dict, send_best: bool = False,
             *needed) -> tuple[int, dict | None]:
    """Body of one Ray task: (exit code, the run's small files, or None if it trained in place).

    ``needed``: one ``(exit code, files or None)`` per folder in ``item.needs``, the results of
    those runs' tasks (Ray waits for them before starting this one). ``send_best``: send the
    best (and latest) checkpoint back too, because another run needs this one's model.
    """
    for folder, (code, _) in zip(item.needs, needed):
        if code != train.EXIT_OK:
            print(f"{item.name}: not run, it needs {folder.name}, which ended with exit {code}")
            return code, None
    if item.folder.parent.is_dir():  # the driver's folder is visible here: train in place
        for needed_folder, (_, files) in zip(item.needs, needed):
            if files is not None and not (needed_folder / DONE_FILE).is_file():
                _write_files(needed_folder, files)  # trained on a worker without this folder
        return execute(item, measure), None
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / item.folder.name
        argv = list(item.argv[:-1]) + [str(folder)]  # the last option is --out's value
        # A run this one needs was trained elsewhere: its files (checkpoints included)
        # came with its result; put them here and point the argv at them.
        renamed = {str(folder): str(item.folder)}  # scratch path -> the driver's
        for needed_folder, (_, files) in zip(item.needs, needed):
            if files is None:
                continue
            local = Path(scratch) / "needed" / needed_folder.name
            _write_files(local, files)
            argv = [t.replace(str(needed_folder), str(local)) for t in argv]
            renamed[str(local)] = str(needed_folder)
        code = execute(Planned(item.run, tuple(argv), folder, item.repeat), measure)
        files = _small_files(folder, send_best) if folder.is_dir() else {}
    # config.json and the done record name scratch folders: name the driver's instead (so a
    # later run there finds the same configuration).
    for name in ("config.json", DONE_FILE):
        for old, new in renamed.items():
            if name in files:
                files[name] = files[name].replace(old.encode(), new.encode())
    return code, files


def run_ray(items, measure: dict, address: str, device: str = "cpu", cpus_per_run: int = 1,
            log=None) -> int:
    """Each run as one Ray task (one GPU each with ``device="gpu"``); waits for them all.

    A run that needs another's folder gets that run's task result as an argument, so Ray
    starts it only when the other has finished; a finished run it needs is sent as files.
    """
    import ray  # noqa: PLC0415  (the optional "cluster" extra)

    log = log or _print

    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            ray.init(address="local", num_cpus=None, include_dashboard=False,
                     log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        resources = {"num_gpus": 1} if device == "gpu" else {"num_cpus": cpus_per_run}
        task = ray.remote(max_retries=2, **resources)(ray_task)
        todo = [i for i in items if run_state(i) != "done"]
        needed = {f for i in todo for f in i.needs}
        for item in todo:  # where workers see this folder too, they train in place
            item.folder.parent.mkdir(parents=True, exist_ok=True)
        results, refs = {}, {}  # folder -> a finished run's result, or its task's reference
        for item in items:
            if item not in todo:
                log(f"{item.name}: finished in {item.folder}, skipped")
                results[item.folder] = (train.EXIT_OK, _small_files(item.folder, True)
                                        if item.folder in needed else None)
                continue
            inputs = [refs.get(f, results.get(f)) for f in item.needs]
            refs[item.folder] = task.remote(item, measure, item.folder in needed, *inputs)
        code = train.EXIT_OK
        for item in (i for i in items if i in todo):
            exit_code, files = ray.get(refs[item.folder])
            if files is not None:
                if item.folder.exists():
                    shutil.rmtree(item.folder)
                _write_files(item.folder, files)
            log(f"{item.name}: exit {exit_code} -> {item.folder}")
            if exit_code != train.EXIT_OK and code == train.EXIT_OK:
                code = exit_code
        return code
    finally:
        if started_here:
            ray.shutdown()
