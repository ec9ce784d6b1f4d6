"""Run a study's runs: serially in this process, or as Ray tasks on a cluster.

Every run has its own folder ``<out-root>/<study>/<run>``; the folder is the run's state:
a finished run (same configuration, all epochs, its measurements written) is skipped, an
interrupted one resumes from ``checkpoints/latest.npz`` (``python -m minidl.train --resume``).
A training run is ``minidl.train.main(argv)``; a landscape run trains the same model with
``minidl.analysis.landscape_step`` at every step and writes ``landscape.csv``.

With Ray each run is one task. It trains in the folder the driver names when that folder is
visible to the worker (a shared filesystem: a retried task resumes from its checkpoint);
otherwise it trains in a local scratch folder and sends back the run's small files (never
checkpoints), which the driver writes into the same folder a serial run would have used.
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

from minidl import analysis, backend, data, losses, models, optim, train
from minidl.checkpoint import RunFolder, load_checkpoint
from minidl.config import RESUMABLE_CHANGES, TrainConfig, config_differences, parse_config

from .study import Run, Study

LANDSCAPE_COLUMNS = ("step", "epoch", "loss", "grad_norm", "probe_loss_min", "probe_loss_max",
                     "grad_change_min", "grad_change_max", "beta")
DONE_FILE = "study_run.json"  # written last: the run, its argv and its measurements are complete
SKIPPED_FILES = ("checkpoints",)  # what a Ray task does not send back


def _print(message: str) -> None:
    print(message, flush=True)  # a line at a time, also into a log file


@dataclass(frozen=True)
class Planned:
    """A run with its complete train argv (``--out`` included) and its folder."""

    run: Run
    argv: tuple[str, ...]
    folder: Path


def narrowed(argv, divisor: int) -> list[str]:
    """``argv`` with every ``--num-filters W`` divided by ``divisor`` (at least 1)."""
    out = list(argv)
    for i, token in enumerate(out[:-1]):
        if token == "--num-filters":
            out[i + 1] = str(max(1, int(out[i + 1]) // divisor))
    return out


def plan(study: Study, out_root, names=(), quick=False, overrides=(), narrow=1) -> list[Planned]:
    """The runs of ``study`` (all, or those in ``names``) with their argv and folders."""
    runs = [study.run(n) for n in names] if names else list(study.runs)
    planned = []
    for run in runs:
        folder = Path(out_root) / study.name / run.name
        argv = study.train_argv(run, quick, tuple(overrides))
        if narrow != 1:
            argv = narrowed(argv, narrow)
        planned.append(Planned(run, tuple(argv + ["--out", str(folder)]), folder))
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
    log, head = log or _print, head or item.run.name
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
    data_options = {"in_channels": splits.in_channels, "num_classes": splits.num_classes,
                    "seed": cfg.seed}
    model = models.build(cfg.model, **train.model_options(cfg, models.options(cfg.model),
                                                          data_options))
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


AFTER = {"filters": _filters, "prune": _prune}


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
    """Run each item in turn; a diverged run is a result, any other failure stops the study."""
    log, diverged = log or _print, []
    for i, item in enumerate(items, start=1):
        code = execute(item, measure, log, head=f"[{i}/{len(items)}] {item.run.name}")
        if code == train.EXIT_DIVERGED:
            diverged.append(item.run.name)
        elif code != train.EXIT_OK:
            return code
    if diverged:
        log(f"diverged: {', '.join(diverged)}")
        return train.EXIT_DIVERGED
    return train.EXIT_OK


def _small_files(folder: Path) -> dict[str, bytes]:
    """{relative path: bytes} of a run folder, without checkpoints."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).parts[0] not in SKIPPED_FILES}


def ray_task(item: Planned, measure: dict) -> tuple[int, dict | None]:
    """Body of one Ray task: (exit code, the run's small files, or None if it trained in place)."""
    if item.folder.parent.is_dir():  # the driver's folder is visible here: train in place
        return execute(item, measure), None
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / item.folder.name
        argv = list(item.argv[:-1]) + [str(folder)]  # the last option is --out's value
        code = execute(Planned(item.run, tuple(argv), folder), measure)
        files = _small_files(folder) if folder.is_dir() else {}
    # config.json and the done record name the scratch folder: name the driver's instead.
    for name in ("config.json", DONE_FILE):
        if name in files:
            files[name] = files[name].replace(str(folder).encode(), str(item.folder).encode())
    return code, files


def run_ray(items, measure: dict, address: str, device: str = "cpu", cpus_per_run: int = 1,
            log=None) -> int:
    """Each run as one Ray task (one GPU each with ``device="gpu"``); waits for them all."""
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
        for item in todo:  # where workers see this folder too, they train in place
            item.folder.parent.mkdir(parents=True, exist_ok=True)
        for item in items:
            if item not in todo:
                log(f"{item.run.name}: finished in {item.folder}, skipped")
        refs = {task.remote(item, measure): item for item in todo}
        code = train.EXIT_OK
        for ref, item in refs.items():
            exit_code, files = ray.get(ref)
            if files is not None:
                if item.folder.exists():
                    shutil.rmtree(item.folder)
                for rel, blob in files.items():
                    (item.folder / rel).parent.mkdir(parents=True, exist_ok=True)
                    (item.folder / rel).write_bytes(blob)
            log(f"{item.run.name}: exit {exit_code} -> {item.folder}")
            if exit_code != train.EXIT_OK and code == train.EXIT_OK:
                code = exit_code
        return code
    finally:
        if started_here:
            ray.shutdown()
