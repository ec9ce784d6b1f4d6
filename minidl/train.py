"""The training command line: ``python -m minidl.train MODEL [options]`` (``--help`` lists them).

One run is one experiment folder (``--out``, default ``runs/<model>[-bn][-res]-<dataset>``):

    config.json         the TrainConfig of the run (what ``--resume`` checks against)
    metrics.csv         epoch, lr, train_loss, train_acc, val_loss, val_acc, seconds
    grad_flow.csv       mean |grad| of every conv/linear weight per epoch (by depth)
    checkpoints/        latest.npz (every epoch, and on Ctrl-C) and best.npz (best val accuracy)
    curves.png          loss and accuracy against epoch, train and validation
    gradient_flow.png   the grad_flow.csv numbers on a log scale (vgg38's vanishing gradients)
    test_summary.json   test loss/accuracy of the best-validation model

Exit codes: 0 done, 1 data set missing, 2 bad command line or configuration, 3 the loss
became NaN/inf (the last good checkpoint is kept), 130 interrupted (Ctrl-C; latest.npz saved).
"""
from __future__ import annotations

import dataclasses
import json
import math
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import backend, data, init, losses, models, optim, plots
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import (RESUMABLE_CHANGES, TrainConfig, build_parser, config_differences,
                     explicitly_set, option_name, to_argv)
from .layers import Dropout
from .metrics import (GRAD_FLOW_COLUMNS, METRIC_COLUMNS, CSVLog, GradientFlow, RunningTotals,
                      count_correct)

EXIT_OK, EXIT_NO_DATA, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
PROG = "python -m minidl.train"
AUGMENT_PADDING = 4  # pixels of zero padding before the random crop (the CIFAR convention)

# TrainConfig field -> keyword of models.build (the model's name for the same option).
MODEL_OPTIONS = {"bn": "bn", "residual": "residual", "num_filters": "num_filters",
                 "num_blocks_per_stage": "num_blocks_per_stage", "activation": "activation",
                 "dropout": "dropout", "conv": "conv_method"}


# ---------------------------------------------------------------------- the learning step
def train_step(model, loss_fn, optimizer, x, y):
    """One step of mini-batch gradient descent on the batch ``(x, y)``.

    x: (N, ...) float array, y: (N,) integer class indices, both on the model's device.
    Returns ``(loss, correct)``: the batch's mean loss and its number of right predictions,
    as 0-d arrays left on the device (reading them waits for the device: the caller decides
    when).
    """
    logits = model(x)                      # forward: each layer caches what backward needs
    loss = loss_fn(logits, y)              # mean cross-entropy over the batch
    optimizer.zero_grad()                  # backward passes add (+=) into .grad: start at 0
    model.backward(loss_fn.backward())     # backward: fills every parameter's .grad
    optimizer.step()                       # update every parameter from its .grad
    return loss, count_correct(logits, y)


def evaluate(model, loss_fn, x, y, batch_size: int = 100, device: str = "cpu"):
    """Mean loss and accuracy of ``model`` on ``(x, y)`` in eval mode, ``batch_size`` at a time.

    x: (N, ...) float array on the host, y: (N,) int. Returns ``(loss, accuracy)`` as floats,
    ``(nan, nan)`` for an empty set. The sums stay on the device and are read once at the
    end; the model's train/eval mode is restored afterwards.
    """
    if len(x) == 0:
        return math.nan, math.nan
    was_training = model.training
    model.eval()
    totals = RunningTotals(device)
    try:
        for start in range(0, len(x), batch_size):
            xb = backend.to_device(x[start:start + batch_size], device)
            yb = backend.to_device(y[start:start + batch_size], device)
            logits = model(xb)
            totals.add(loss_fn(logits, yb), count_correct(logits, yb), len(xb))
    finally:
        model.train(was_training)
    return totals.read()


class UsageError(Exception):
    """A configuration problem the user can fix from the command line (exit code 2)."""


class Diverged(Exception):
    """The loss became NaN or infinite."""

    def __init__(self, epoch: int, step, value: float):
        where = f"step {step}" if isinstance(step, int) else step
        super().__init__(f"loss became {value} at epoch {epoch}, {where}")
        self.epoch, self.step, self.value = epoch, step, value


class GracefulInterrupt:
    """Turn the first Ctrl-C into a request (checked between steps); a second one aborts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("Ctrl-C: saving checkpoints/latest.npz after this step "
                   "(press Ctrl-C again to abort without saving)", file=sys.stderr)

    def __enter__(self):
        # Signal handlers can only be installed from the main thread.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def _json_number(value):
    """JSON has no NaN: an undefined metric (e.g. an empty test set) is written as null."""
    return None if value is None or not math.isfinite(value) else float(value)


def model_options(cfg: TrainConfig, accepted, data_options: dict) -> dict:
    """Keyword arguments for ``models.build``: the entries of ``data_options`` the model
    accepts (``accepted``, its option names) and every model field the user set.

    A field left at its default is not passed, so each model keeps its own default (resnet18
    keeps its BatchNorm and the papers' width 64); a field the user set is always passed, so
    that build() says which options do not apply to the model.
    """
    user_set = explicitly_set(cfg)
    options = {k: v for k, v in data_options.items() if k in accepted}
    for field_name, option in MODEL_OPTIONS.items():
        if field_name not in user_set:
            continue
        if option == "num_filters" and option not in accepted and "width" in accepted:
            option = "width"  # resnet18, vgg11, ... call their first-stage channels width
        options[option] = getattr(cfg, field_name)
    return options


class Trainer:
    """Everything one run needs, built from a TrainConfig; ``fit()`` trains, returns the exit code."""

    def __init__(self, cfg: TrainConfig, log=print):
        self.cfg = cfg
        self.log = log
        self.out = Path(cfg.out)
        self.ckpt_dir = self.out / "checkpoints"
        self.latest_path = self.ckpt_dir / "latest.npz"
        self.best_path = self.ckpt_dir / "best.npz"
        try:
            backend.check_device(cfg.device)
        except (ValueError, RuntimeError) as err:
            raise UsageError(str(err)) from None
        resume_state, saved_epochs = self._resume_state()

        try:
            self.splits = data.load_dataset(cfg.dataset, data_dir=cfg.data_dir,
                                            val_fraction=cfg.val_fraction, seed=cfg.seed,
                                            subset=cfg.subset)
        except ValueError as err:  # unknown data set name, --subset larger than the data, ...
            raise UsageError(str(err)) from None
        # Layers that draw from minidl.init's global generator (e.g. Dropout's mask seed)
        # get the same draws in every run with this seed.
        init.seed(cfg.seed)
        self.model = self._build_model()
        if cfg.device != "cpu":
            self.model.to(cfg.device)
        try:
            self.opt = optim.build_optimizer(cfg.optimizer, self.model.parameters(), cfg.lr,
                                             weight_decay=cfg.weight_decay)
            self.sched = optim.build_schedule(cfg.schedule, self.opt, cfg.epochs, cfg.min_lr)
        except ValueError as err:
            raise UsageError(str(err)) from None
        self.criterion = losses.CrossEntropyLoss()
        self.augment = data.make_augmentation(
            crop_padding=AUGMENT_PADDING if cfg.augment else 0, flip=cfg.augment,
            erasing=cfg.random_erasing)
        x_train, y_train = self.splits.train
        self.batches = data.BatchIterator(x_train, y_train, cfg.batch_size, shuffle=True,
                                          rng=np.random.default_rng(cfg.seed),
                                          augment=self.augment)
        self.dropouts = [(name, layer) for name, layer in self.model.named_layers()
                         if isinstance(layer, Dropout)]
        self.grad_flow = GradientFlow(self.model)
        self.metrics = CSVLog(self.out / "metrics.csv", METRIC_COLUMNS)
        self.grad_log = CSVLog(self.out / "grad_flow.csv", GRAD_FLOW_COLUMNS)

        self.epoch = 0                 # completed epochs
        self.best_val_acc = -math.inf
        self.best_epoch = 0
        self.progress = None           # a partly trained epoch restored from a Ctrl-C checkpoint
        if resume_state is not None:
            self._restore(resume_state, saved_epochs)

    # ------------------------------------------------------------------ setup
    def _resume_state(self):
        """The checkpoint to continue from (or None), after checking the folder's config."""
        cfg = self.cfg
        if not self.latest_path.is_file():
            if cfg.resume:
                self.log(f"no checkpoint in {self.ckpt_dir}: starting from scratch")
            return None, None
        if not cfg.resume:
            raise UsageError(f"{self.out} already holds a run ({self.latest_path}); pass --resume "
                             "to continue it, or --out to start a new one")
        state = load_checkpoint(self.latest_path)
        config_path = self.out / "config.json"
        saved = (TrainConfig.load_json(config_path) if config_path.is_file()
                 else TrainConfig.from_dict(json.loads(state["config"])))
        # The folder is the run: ``out`` may be spelt differently (relative, absolute).
        diffs = config_differences(saved, cfg, ignore=RESUMABLE_CHANGES + ("out",))
        if diffs:
            listed = "; ".join(f"{option_name(k)}: {old!r} in {config_path.name}, {new!r} now"
                               for k, old, new in diffs)
            raise UsageError(f"cannot resume {self.out}: its configuration differs ({listed}). "
                             "Only --epochs may change when resuming; use --out for a new run")
        return state, saved.epochs

    def _build_model(self):
        """``models.build`` with the data set's shape, the seed and the model options of cfg."""
        cfg = self.cfg
        data_options = {"in_channels": self.splits.in_channels,
                        "num_classes": self.splits.num_classes, "seed": cfg.seed}
        options = model_options(cfg, models.options(cfg.model), data_options)
        try:
            return models.build(cfg.model, **options)
        except ValueError as err:  # an option the model does not take, or a bad value
            raise UsageError(str(err)) from None

    def _restore(self, state: dict, saved_epochs: int) -> None:
        """Load a checkpoint written by ``_checkpoint_state`` so training continues exactly."""
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optim"])
        sched_state = state["sched"]
        if saved_epochs != self.cfg.epochs:
            # The schedule's shape depends on the run length: keep its position (the epoch)
            # but take the hyper-parameters of the new length, as if the run had been
            # started with it. It also resets opt.lr to the new schedule's value.
            sched_state = {**self.sched.state_dict(), "last_epoch": sched_state["last_epoch"]}
            self.log(f"--epochs changed from {saved_epochs} to {self.cfg.epochs}: the "
                     f"{self.cfg.schedule} schedule continues as a {self.cfg.epochs}-epoch one")
        self.sched.load_state_dict(sched_state)
        set_rng_state(self.batches.rng, state["rng"]["batches"])
        dropout_states = json.loads(state["rng"]["dropout"])
        for name, layer in self.dropouts:
            layer.rng.bit_generator.state = dropout_states[name]
        self.epoch = int(state["epoch"])
        self.best_val_acc = float(state["best_val_acc"])
        self.best_epoch = int(state["best_epoch"])
        progress = state["progress"]
        self.progress = progress if int(progress["step"]) > 0 else None
        where = (f"in epoch {self.epoch + 1} after step {int(progress['step'])}" if self.progress
                 else f"after epoch {self.epoch}")
        self.log(f"resuming {self.out} {where}")

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_state(self) -> dict:
        progress = self.progress or {"step": 0}
        return {
            "model": self.model.state_dict(),
            "optim": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            # Generator states as JSON text: their 128-bit integers do not fit an int64 array.
            "rng": {"batches": rng_state(self.batches.rng),
                    "dropout": json.dumps({name: layer.rng.bit_generator.state
                                           for name, layer in self.dropouts})},
            "epoch": self.epoch,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "progress": progress,
            "config": json.dumps(self.cfg.to_dict()),
        }

    def save_latest(self) -> None:
        save_checkpoint(self.latest_path, self._checkpoint_state())

    # ------------------------------------------------------------------ training
    def _train_epoch(self, epoch: int, stop: GracefulInterrupt):
        """One pass over the training set; returns (loss, acc, seconds) or None if interrupted."""
        cfg, device = self.cfg, self.cfg.device
        progress = self.progress
        if progress is not None:  # continue a partly trained epoch: same shuffle, same batches
            set_rng_state(self.batches.rng, progress["epoch_rng"])
            skip, seconds_before = int(progress["step"]), float(progress["seconds"])
            totals = RunningTotals(device, float(progress["loss_sum"]), int(progress["correct"]),
                                   int(progress["seen"]))
            self.grad_flow.load_state(progress["grad_flow"])
        else:
            skip, seconds_before, totals = 0, 0.0, RunningTotals(device)
            self.grad_flow.reset()
        epoch_rng = rng_state(self.batches.rng)
        self.model.train()
        start = time.perf_counter()
        bar = tqdm(total=len(self.batches), initial=skip, desc=f"epoch {epoch}/{cfg.epochs}",
                   unit="batch", leave=False, dynamic_ncols=True,
                   disable=True if cfg.no_progress else None)  # None: off when not a tty
        try:
            for step, (xb, yb) in enumerate(self.batches, start=1):
                if step <= skip:  # replayed only to advance the shuffling/augmentation RNG
                    continue
                xb, yb = backend.to_device(xb, device), backend.to_device(yb, device)
                loss, batch_correct = train_step(self.model, self.criterion, self.opt, xb, yb)
                self.grad_flow.accumulate()
                totals.add(loss, batch_correct, len(yb))
                loss_mean, acc = totals.read()  # the step's one read from the device
                if not math.isfinite(loss_mean):
                    raise Diverged(epoch, step, float(backend.asnumpy(loss)))
                bar.update(1)
                bar.set_postfix(loss=f"{loss_mean:.4f}", acc=f"{acc:.2%}", refresh=False)
                if stop.requested:
                    loss_sum, correct, seen = totals.sums()
                    self.progress = {"step": step, "loss_sum": loss_sum, "correct": correct,
                                     "seen": seen, "epoch_rng": epoch_rng,
                                     "seconds": seconds_before + time.perf_counter() - start,
                                     "grad_flow": self.grad_flow.state()}
                    return None
        finally:
            bar.close()
        seconds = seconds_before + time.perf_counter() - start
        return (*totals.read(), seconds)

    def _end_epoch(self, epoch: int, train_loss: float, train_acc: float, seconds: float) -> dict:
        """Validate, log, step the schedule and checkpoint a finished epoch."""
        cfg = self.cfg
        start = time.perf_counter()
        x_val, y_val = self.splits.val
        val_loss, val_acc = evaluate(self.model, self.criterion, x_val, y_val, cfg.batch_size,
                                    cfg.device)
        if len(x_val) and not math.isfinite(val_loss):
            raise Diverged(epoch, "validation", val_loss)
        row = {"epoch": epoch, "lr": self.opt.lr, "train_loss": train_loss,
               "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc,
               "seconds": round(seconds + time.perf_counter() - start, 3)}
        # Rows first, checkpoint second: a crash in between leaves rows past the checkpoint,
        # which a resumed run drops (keep_until) and writes again.
        self.metrics.append(row)
        self.grad_log.append(self.grad_flow.rows(epoch))
        self.sched.step()
        self.epoch, self.progress = epoch, None
        # Without a validation set the latest model counts as the best one.
        improved = not len(x_val) or val_acc > self.best_val_acc
        if improved:
            self.best_val_acc, self.best_epoch = (val_acc if len(x_val) else math.nan), epoch
        state = self._checkpoint_state()
        save_checkpoint(self.latest_path, state)
        if improved:
            save_checkpoint(self.best_path, state)
        self._plot()
        return row

    def _summary_line(self, row: dict) -> str:
        return (f"epoch {row['epoch']:>{len(str(self.cfg.epochs))}}/{self.cfg.epochs}  "
                f"lr {row['lr']:.2e}  train loss {row['train_loss']:.4f} "
                f"acc {row['train_acc']:.2%}  val loss {row['val_loss']:.4f} "
                f"acc {row['val_acc']:.2%}  {row['seconds']:.1f}s"
                + ("  *" if self.best_epoch == row["epoch"] else ""))

    def _plot(self) -> None:
        title = Path(self.cfg.out).name
        try:
            plots.plot_curves(self.metrics.read(), self.out / "curves.png", title)
            plots.plot_gradient_flow(self.grad_log.read(), self.out / "gradient_flow.png", title)
        except Exception as err:  # a plotting problem must not cost a training run
            _error(f"could not draw the plots: {type(err).__name__}: {err}")

    def _resume_hint(self) -> str:
        argv = to_argv(dataclasses.replace(self.cfg, resume=True))
        return f"Continue with: {PROG} {shlex.join(argv)}"

    def fit(self) -> int:
        """Train the remaining epochs, then test the best model; returns the exit code."""
        cfg = self.cfg
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        resumed = bool(self.epoch or self.progress)
        for log in (self.metrics, self.grad_log):
            if resumed:
                log.keep_until(self.epoch)
            else:
                log.create()
        if not resumed:  # a best.npz left by an older, abandoned run here is not this run's
            self.best_path.unlink(missing_ok=True)
        cfg.save_json(self.out / "config.json")
        x_val, x_test = self.splits.val[0], self.splits.test[0]
        self.log(f"{cfg.model}: {self.model.num_parameters():,} parameters; "
                 f"{cfg.dataset}: {len(self.splits.train[0])} train / {len(x_val)} val / "
                 f"{len(x_test)} test; writing to {self.out}")
        with GracefulInterrupt() as stop:
            try:
                for epoch in range(self.epoch + 1, cfg.epochs + 1):
                    result = self._train_epoch(epoch, stop)
                    if result is None:
                        self.save_latest()
                        self.log(f"interrupted at epoch {epoch}, step {self.progress['step']}; "
                                 f"saved {self.latest_path}. {self._resume_hint()}")
                        return EXIT_INTERRUPTED
                    self.log(self._summary_line(self._end_epoch(epoch, *result)))
                    if stop.requested:
                        self.log(f"interrupted after epoch {epoch}; saved {self.latest_path}. "
                                 f"{self._resume_hint()}")
                        return EXIT_INTERRUPTED
            except Diverged as err:
                self._plot()
                kept = (f"the last good checkpoint is {self.latest_path} (epoch {self.epoch})"
                        if self.latest_path.is_file() else "no checkpoint had been written yet")
                _error(f"{err} (lr {self.opt.lr:.3g}); stopping. Nothing was saved for this "
                       f"epoch: {kept}. Try a smaller --lr.")
                return EXIT_DIVERGED
        self._test()
        return EXIT_OK

    def _test(self) -> dict:
        """Evaluate the best-validation model on the test set and write test_summary.json."""
        cfg = self.cfg
        source = self.best_path if self.best_path.is_file() else self.latest_path
        if source.is_file():
            self.model.load_state_dict(load_checkpoint(source)["model"])
        x_test, y_test = self.splits.test
        test_loss, test_acc = evaluate(self.model, self.criterion, x_test, y_test,
                                       cfg.batch_size, cfg.device)
        rows = self.metrics.read()
        summary = {
            "model": cfg.model, "dataset": cfg.dataset,
            "checkpoint": str(source.relative_to(self.out)),
            "best_epoch": self.best_epoch, "best_val_acc": _json_number(self.best_val_acc),
            "test_loss": _json_number(test_loss), "test_acc": _json_number(test_acc),
            "test_examples": len(x_test), "epochs": self.epoch,
            "num_parameters": self.model.num_parameters(),
            "train_seconds": round(sum(r["seconds"] for r in rows), 3),
        }
        (self.out / "test_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        self.log(f"test (best validation model, epoch {self.best_epoch}): loss {test_loss:.4f} "
                 f"acc {test_acc:.2%}  -> {self.out / 'test_summary.json'}")
        return summary


def run(cfg: TrainConfig) -> int:
    """Train as ``cfg`` says; returns the process exit code (see the module docstring)."""
    if cfg.out is None:
        cfg.out = cfg.default_out()
    try:
        trainer = Trainer(cfg)
    except UsageError as err:
        _error(str(err))
        return EXIT_USAGE
    except data.DatasetNotFoundError as err:
        _error(str(err))
        return EXIT_NO_DATA
    try:
        return trainer.fit()
    except KeyboardInterrupt:  # a second Ctrl-C: leave at once, keeping the last checkpoint
        _error(f"aborted; the last saved checkpoint is {trainer.latest_path}")
        return EXIT_INTERRUPTED


def main(argv=None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), train, and return the exit code."""
    parser = build_parser(models.available(), prog=PROG)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a bad command line (2): argparse printed why
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    cfg = TrainConfig(**vars(args))
    problems = cfg.problems()
    if problems:
        parser.print_usage(sys.stderr)
        _error("; ".join(problems))
        return EXIT_USAGE
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
