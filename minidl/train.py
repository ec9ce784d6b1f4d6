"""The training command line: ``python -m minidl.train MODEL [options]`` (``--help`` lists them).

Read it top down: ``train_step`` and ``evaluate`` are the whole learning step and evaluation
pass; ``Trainer`` runs epochs of them and does the bookkeeping; the run folder (paths, lock,
config check, checkpoints, resume) is ``minidl.checkpoint.RunFolder``.

One run is one folder (``--out``, default ``runs/<model>[-bn][-res]-<dataset>``):

    config.json         the TrainConfig of the run (what ``--resume`` checks against)
    metrics.csv         epoch, lr, train_loss, train_acc, val_loss, val_acc, seconds (wall
                        clock) and cpu_seconds (process time, all threads) of each epoch
    grad_flow.csv       mean |grad| of every conv/linear weight per epoch (by depth)
    checkpoints/        latest.npz (every epoch, and when stopped) and best.npz (best val accuracy)
    curves.png          loss and accuracy against epoch, train and validation (not with
    gradient_flow.png   --no-plots); the grad_flow.csv numbers on a log scale
    test_summary.json   test loss/accuracy of the best-validation model, total seconds

Exit codes: 0 done, 1 data set missing, 2 bad command line, configuration or run folder, 3 the
loss became NaN/inf (the last good checkpoint is kept), 4 the run folder could not be written
(e.g. a full disk; the last checkpoint is kept), 128 + the signal when stopped by SIGINT
(Ctrl-C, 130) or SIGTERM (143) after saving latest.npz, 141 when stdout was closed (a pipe
into ``head``) after saving latest.npz.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import backend, data, distill, init, losses, models, optim, plots
from .checkpoint import RunFolder, RunFolderError, rng_state, set_rng_state
from .config import (RESUMABLE_CHANGES, TrainConfig, build_parser, config_differences,
                     explicitly_set, option_name, to_argv)
from .data.augment import named_augmentation
from .metrics import (GRAD_FLOW_COLUMNS, METRIC_COLUMNS, CSVLog, CSVLogError, GradientFlow,
                      RunningTotals, count_correct)

EXIT_OK, EXIT_NO_DATA, EXIT_USAGE, EXIT_DIVERGED, EXIT_IO = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 128 + signal.SIGINT         # 130, as a shell reports Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM         # 143
EXIT_PIPE_CLOSED = 141                         # 128 + SIGPIPE, as for any program in a pipe
PROG = "python -m minidl.train"

# TrainConfig field -> keyword of models.build (the model's name for the same option).
MODEL_OPTIONS = {"bn": "bn", "residual": "residual", "width": "width",
                 "num_blocks_per_stage": "num_blocks_per_stage", "activation": "activation",
                 "dropout": "dropout", "conv_method": "conv_method", "pool": "pool",
                 "width_mult": "width_mult", "stem_stride": "stem_stride",
                 "global_pool": "global_pool"}
# TrainConfig flag -> keyword of models.build that the flag, when given, sets to False.
NEGATED_MODEL_OPTIONS = {"no_shortcut": "shortcut", "no_separable": "separable"}


# ---------------------------------------------------------------------- the learning step
def train_step(model, loss_fn, optimizer, x, y, teacher=None):
    """One step of mini-batch gradient descent on the batch ``(x, y)``.

    x: (N, ...) float array, y: (N,) integer class indices, both on the model's device.
    With a ``teacher`` (a model in eval mode) ``loss_fn`` is a ``losses.DistillationLoss``
    and also learns from the teacher's logits. Returns ``(loss, correct)``: the batch's mean
    loss and its number of right predictions, as 0-d arrays left on the device (reading them
    waits for the device: the caller decides when).
    """
    logits = model(x)                      # forward: each layer caches what backward needs
    if teacher is None:
        loss = loss_fn(logits, y)          # mean cross-entropy over the batch
    else:                                  # distillation: the teacher's logits as soft targets
        loss = loss_fn(logits, y, teacher(x))
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


class Stopwatch:
    """Wall-clock and CPU seconds of an epoch, continuing from ``wall``/``cpu`` already spent
    (a resumed epoch). CPU seconds are process time: every thread of this process (BLAS's
    included), so on a shared machine they measure the work, wall seconds the wait."""

    def __init__(self, wall: float = 0.0, cpu: float = 0.0):
        self.before = (wall, cpu)
        self.start = (time.perf_counter(), time.process_time())

    def read(self) -> tuple[float, float]:
        """``(wall seconds, CPU seconds)`` so far."""
        return (self.before[0] + time.perf_counter() - self.start[0],
                self.before[1] + time.process_time() - self.start[1])


class UsageError(Exception):
    """A configuration problem the user can fix from the command line (exit code 2)."""


class Diverged(Exception):
    """The loss became NaN or infinite."""

    def __init__(self, epoch: int, step, value: float):
        where = f"step {step}" if isinstance(step, int) else step
        super().__init__(f"loss became {value} at epoch {epoch}, {where}")
        self.epoch, self.step, self.value = epoch, step, value


class StopRequest:
    """SIGINT (Ctrl-C) and SIGTERM (a cluster scheduler, ``timeout``) become a request that the
    loop checks between steps, so a resumable checkpoint is saved first; a second signal aborts
    at once. ``reason`` is the signal's name (or "stdout closed"), ``exit_code`` 128 + its number.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.reason = None
        self.exit_code = EXIT_INTERRUPTED
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def request(self, reason: str, exit_code: int) -> None:
        if self.reason is None:
            self.reason, self.exit_code = reason, exit_code

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        self.request(name, 128 + signum)
        tqdm.write(f"{name}: saving checkpoints/latest.npz after this step (send it again to "
                   "abort without saving)", file=sys.stderr)

    def __enter__(self):
        # Signal handlers can only be installed from the main thread.
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
        return False


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def _json_number(value):
    """JSON has no NaN: an undefined metric (e.g. an empty test set) is written as null."""
    return None if value is None or not math.isfinite(value) else float(value)


def model_options(cfg: TrainConfig, accepted, data_options: dict) -> dict:
    """Keyword arguments for ``models.build``: the entries of ``data_options`` the model
    accepts (``accepted``, its option names), every model option the user gave, and
    ``cfg.model_kwargs``.

    An option not given (None, or False for a flag) is not passed, so each model keeps its own
    default (resnet18 keeps its BatchNorm and the papers' width 64); an option given is always
    passed, even with the value of some default, and build() says which do not apply. A
    ``--model-kwargs`` key that a named option or the data set also sets is a ValueError.
    """
    options = {k: v for k, v in data_options.items() if k in accepted}
    given = {option: getattr(cfg, field_name) for field_name, option in MODEL_OPTIONS.items()
             if field_name in explicitly_set(cfg)}
    given.update({option: False for field_name, option in NEGATED_MODEL_OPTIONS.items()
                  if field_name in explicitly_set(cfg)})
    named = {**{v: k for k, v in MODEL_OPTIONS.items()},
             **{v: k for k, v in NEGATED_MODEL_OPTIONS.items()}}
    for key in cfg.model_kwargs:
        if key in given:
            raise ValueError(f"--model-kwargs {key}=... and {option_name(named[key])} both set "
                             f"the model's {key}: give it once")
        if key in data_options:
            raise ValueError(f"--model-kwargs cannot set {key}: it comes from the data set "
                             "and --seed")
    options.update(given)
    options.update(cfg.model_kwargs)
    return options


def build_model(cfg: TrainConfig, splits):
    """``models.build`` for the data set ``splits`` (channels, classes, image side), with the
    seed and the model options of ``cfg``; a UsageError names an option it refuses."""
    _, h, w = splits.image_shape
    # image_size: the input side a model with a flattened head is built for (vgg16, sfnet)
    data_options = {"in_channels": splits.in_channels, "num_classes": splits.num_classes,
                    "seed": cfg.seed, "image_size": h if h == w else (h, w)}
    try:
        options = model_options(cfg, models.options(cfg.model), data_options)
        return models.build(cfg.model, **options)
    except ValueError as err:  # an option the model does not take, or a bad value
        raise UsageError(str(err)) from None


class Trainer:
    """One run: the model, data, optimiser and schedule built from ``cfg``, training into the
    opened RunFolder ``run`` (from ``state``, its latest checkpoint, when resuming).
    ``fit()`` trains and returns the exit code.
    """

    def __init__(self, cfg: TrainConfig, run: RunFolder, state: dict | None = None, log=None):
        self.cfg, self.run = cfg, run
        self.stop = StopRequest()      # first: say() requests a stop if stdout is closed
        self.log = log or self.say
        try:
            self.splits = data.load_dataset(cfg.dataset, data_dir=cfg.data_dir,
                                            val_fraction=cfg.val_fraction, seed=cfg.seed,
                                            subset=cfg.subset)
        except ValueError as err:  # unknown data set name, --subset larger than the data, ...
            raise UsageError(str(err)) from None
        # Layers that draw from minidl.init's global generator (e.g. Dropout's mask seed)
        # get the same draws in every run with this seed.
        init.seed(cfg.seed)
        self.model = build_model(cfg, self.splits)
        if cfg.device != "cpu":
            self.model.to(cfg.device)
        self.batches = self._batches()
        self.per_batch = cfg.schedule_step == "batch"  # else the schedule steps per epoch
        try:
            self.opt = optim.build_optimizer(cfg.optimizer, self.model.parameters(), cfg.lr,
                                             weight_decay=cfg.weight_decay)
            self.sched = optim.build_schedule(
                cfg.schedule, self.opt, cfg.epochs, cfg.min_lr,
                steps_per_epoch=len(self.batches) if self.per_batch else 1)
        except ValueError as err:
            raise UsageError(str(err)) from None
        self.criterion = losses.CrossEntropyLoss()  # validation and test: plain cross-entropy
        self.teacher = self._teacher() if cfg.teacher is not None else None
        self.loss_fn = (self.criterion if self.teacher is None  # the training objective
                        else distill.criterion(cfg))
        self.grad_flow = GradientFlow(self.model)
        self.metrics = CSVLog(run.metrics_path, METRIC_COLUMNS)
        self.grad_log = CSVLog(run.grad_flow_path, GRAD_FLOW_COLUMNS)

        self.epoch = 0                 # completed epochs
        self.best_val_acc = -math.inf
        self.best_epoch = 0
        self.progress = None           # a partly trained epoch restored from a stop checkpoint
        if state is not None:
            self._restore(state)

    # ------------------------------------------------------------------ setup
    def _batches(self) -> data.BatchIterator:
        """Shuffled, augmented training batches; a last batch of one example is dropped."""
        cfg = self.cfg
        x_train, y_train = self.splits.train
        if cfg.exclude_class is not None:
            try:
                x_train, y_train = distill.without_class(x_train, y_train, cfg.exclude_class,
                                                         self.splits.num_classes)
            except ValueError as err:
                raise UsageError(str(err)) from None
            self.log(f"class {cfg.exclude_class} left out of training: {len(x_train)} of "
                     f"{len(self.splits.train[0])} examples remain")
        # Batch statistics (BatchNorm) of one example are undefined, and one example's
        # gradient is a poor step: --drop-last drops any incomplete last batch, and a last
        # batch of exactly one is always dropped (a different example each epoch).
        drop_last = cfg.drop_last or (len(x_train) % cfg.batch_size == 1 and len(x_train) > 1)
        if drop_last and not cfg.drop_last:
            self.log(f"note: {len(x_train)} training examples in batches of {cfg.batch_size} "
                     "leave a last batch of one example; it is dropped each epoch")
        batches = data.BatchIterator(x_train, y_train, cfg.batch_size, shuffle=True,
                                     rng=np.random.default_rng(cfg.seed),
                                     augment=named_augmentation(cfg.augment), drop_last=drop_last)
        if len(batches) == 0:
            raise UsageError(f"{len(x_train)} training examples make no batch of "
                             f"--batch-size {cfg.batch_size} with --drop-last")
        return batches

    def _teacher(self):
        """The model of run folder ``cfg.teacher`` with its best weights, in eval mode."""
        try:
            teacher, about = distill.load_teacher(self.cfg, lambda c: build_model(c, self.splits))
        except distill.TeacherError as err:
            raise UsageError(str(err)) from None
        self.log(f"distilling from {about}")
        return teacher

    def _restore(self, state: dict) -> None:
        """Load a checkpoint written by ``_checkpoint_state`` so training continues exactly."""
        saved_epochs = TrainConfig.from_dict(json.loads(state["config"])).epochs
        try:
            self.model.load_state_dict(state["model"])
            self.model.load_extra_state_dict(_layer_states(state["rng"]))
            self.opt.load_state_dict(state["optim"])
        except (KeyError, ValueError) as err:
            raise RunFolderError(f"{self.run.latest_path} does not fit this model and "
                                 f"optimiser ({err}); use another --out for a new run") from None
        sched_state = state["sched"]
        if saved_epochs != self.cfg.epochs:
            # The schedule's shape depends on the run length: keep its position (epochs, or
            # batches with --schedule-step batch) but take the hyper-parameters of the new
            # length, as if the run had been started with it. It also resets opt.lr to the
            # new schedule's value.
            sched_state = {**self.sched.state_dict(), "last_epoch": sched_state["last_epoch"]}
            self.log(f"--epochs changed from {saved_epochs} to {self.cfg.epochs}: the "
                     f"{self.cfg.schedule} schedule continues as a {self.cfg.epochs}-epoch one")
        self.sched.load_state_dict(sched_state)
        set_rng_state(self.batches.rng, state["rng"]["batches"])
        self.epoch = int(state["epoch"])
        self.best_val_acc = float(state["best_val_acc"])
        self.best_epoch = int(state["best_epoch"])
        progress = state["progress"]
        self.progress = progress if int(progress["step"]) > 0 else None
        where = (f"in epoch {self.epoch + 1} after step {int(progress['step'])}" if self.progress
                 else f"after epoch {self.epoch}")
        self.log(f"resuming {self.run.path} {where}")

    # ------------------------------------------------------------------ output
    def say(self, message: str) -> None:
        """Print a line; if stdout was closed (``| head``), stop after saving, as for Ctrl-C."""
        try:
            print(message, flush=True)
        except BrokenPipeError:
            # Point stdout at /dev/null so later prints (and the exit flush) stay quiet.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            self.stop.request("stdout closed", EXIT_PIPE_CLOSED)

    def _checkpoint_state(self) -> dict:
        progress = self.progress or {"step": 0}
        return {
            "model": self.model.state_dict(),
            "optim": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            # Generator states as JSON text: their 128-bit integers do not fit an int64 array.
            "rng": {"batches": rng_state(self.batches.rng),
                    "layers": json.dumps(self.model.extra_state_dict())},
            "epoch": self.epoch,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "progress": progress,
            "config": json.dumps(self.cfg.to_dict()),
        }

    # ------------------------------------------------------------------ training
    def train_epoch(self, epoch: int):
        """One pass of ``train_step`` over the training set; returns (loss, acc, Stopwatch), or
        None when a stop was requested (``self.progress`` then says where)."""
        cfg, device = self.cfg, self.cfg.device
        progress = self.progress
        if progress is not None:  # continue a partly trained epoch: same shuffle, same batches
            set_rng_state(self.batches.rng, progress["epoch_rng"])
            skip = int(progress["step"])
            # a checkpoint from before cpu_seconds existed: that epoch's CPU time is unknown
            watch = Stopwatch(float(progress["seconds"]),
                              float(progress.get("cpu_seconds", math.nan)))
            totals = RunningTotals(device, float(progress["loss_sum"]), int(progress["correct"]),
                                   int(progress["seen"]))
            self.grad_flow.load_state(progress["grad_flow"])
        else:
            skip, watch, totals = 0, Stopwatch(), RunningTotals(device)
            self.grad_flow.reset()
        epoch_rng = rng_state(self.batches.rng)
        self.model.train()
        bar = tqdm(total=len(self.batches), initial=skip, desc=f"epoch {epoch}/{cfg.epochs}",
                   unit="batch", leave=False, dynamic_ncols=True,
                   disable=True if cfg.no_progress else None)  # None: off when not a tty
        try:
            for step, (xb, yb) in enumerate(self.batches, start=1):
                if step <= skip:  # replayed only to advance the shuffling/augmentation RNG
                    continue
                xb, yb = backend.to_device(xb, device), backend.to_device(yb, device)
                loss, correct = train_step(self.model, self.loss_fn, self.opt, xb, yb,
                                           self.teacher)
                if self.per_batch:
                    self.sched.step()
                self.grad_flow.accumulate()
                totals.add(loss, correct, len(yb))
                loss_mean, acc = totals.read()  # the step's one read from the device
                if not math.isfinite(loss_mean):
                    # Targets already on the GPU are not range-checked per step (a sync): a bad
                    # one makes the loss NaN, and check_targets() then names it.
                    self.loss_fn.check_targets()
                    raise Diverged(epoch, step, float(backend.asnumpy(loss)))
                bar.update(1)
                bar.set_postfix(loss=f"{loss_mean:.4f}", acc=f"{acc:.2%}", refresh=False)
                if self.stop.requested:
                    loss_sum, correct_sum, seen = totals.sums()
                    seconds, cpu_seconds = watch.read()
                    self.progress = {"step": step, "loss_sum": loss_sum, "correct": correct_sum,
                                     "seen": seen, "epoch_rng": epoch_rng, "seconds": seconds,
                                     "cpu_seconds": cpu_seconds,
                                     "grad_flow": self.grad_flow.state()}
                    return None
        finally:
            bar.close()
        return (*totals.read(), watch)

    def end_epoch(self, epoch: int, train_loss: float, train_acc: float,
                  watch: Stopwatch) -> dict:
        """Validate, log, step the schedule and checkpoint a finished epoch (``watch`` has
        timed its training and goes on through validation)."""
        cfg = self.cfg
        x_val, y_val = self.splits.val
        val_loss, val_acc = evaluate(self.model, self.criterion, x_val, y_val, cfg.batch_size,
                                     cfg.device)
        if len(x_val) and not math.isfinite(val_loss):
            raise Diverged(epoch, "validation", val_loss)
        # the rate of the epoch's last step (a per-batch schedule has already moved past it)
        lr = self.sched.lr_at(self.sched.last_epoch - 1) if self.per_batch else self.opt.lr
        seconds, cpu_seconds = watch.read()
        row = {"epoch": epoch, "lr": float(lr), "train_loss": train_loss,
               "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc,
               "seconds": round(seconds, 3), "cpu_seconds": round(cpu_seconds, 3)}
        # Rows first, checkpoint second: a crash in between leaves rows past the checkpoint,
        # which a resumed run drops (keep_until) and writes again.
        self.metrics.append(row)
        self.grad_log.append(self.grad_flow.rows(epoch))
        if not self.per_batch:
            self.sched.step()
        self.epoch, self.progress = epoch, None
        # Without a validation set the latest model counts as the best one.
        improved = not len(x_val) or val_acc > self.best_val_acc
        if improved:
            self.best_val_acc, self.best_epoch = (val_acc if len(x_val) else math.nan), epoch
        self.run.save(self._checkpoint_state(), best=improved)
        self._plot()
        return row

    def _summary_line(self, row: dict) -> str:
        return (f"epoch {row['epoch']:>{len(str(self.cfg.epochs))}}/{self.cfg.epochs}  "
                f"lr {row['lr']:.2e}  train loss {row['train_loss']:.4f} "
                f"acc {row['train_acc']:.2%}  val loss {row['val_loss']:.4f} "
                f"acc {row['val_acc']:.2%}  {row['seconds']:.1f}s"
                + ("  *" if self.best_epoch == row["epoch"] else ""))

    def _plot(self) -> None:
        if self.cfg.no_plots:
            return
        title = self.run.path.name
        try:
            plots.plot_curves(self.metrics.read(), self.run.path / "curves.png", title)
            plots.plot_gradient_flow(self.grad_log.read(), self.run.path / "gradient_flow.png",
                                     title)
        except Exception as err:  # a plotting problem must not cost a training run
            _error(f"could not draw the plots: {type(err).__name__}: {err}")

    def _resume_hint(self) -> str:
        argv = to_argv(dataclasses.replace(self.cfg, resume=True))
        return f"Continue with: {PROG} {shlex.join(argv)}"

    def _stopped(self, where: str) -> int:
        message = (f"interrupted {where} ({self.stop.reason}); saved {self.run.latest_path}. "
                   f"{self._resume_hint()}")
        self.log(message)
        if self.stop.exit_code != EXIT_INTERRUPTED:  # stdout may be a closed pipe or a log
            print(message, file=sys.stderr, flush=True)
        return self.stop.exit_code

    def fit(self) -> int:
        """Train the remaining epochs, then test the best model; returns the exit code."""
        cfg, run = self.cfg, self.run
        resumed = bool(self.epoch or self.progress)
        for log in (self.metrics, self.grad_log):
            if resumed:
                log.keep_until(self.epoch)
            else:
                log.create()
        if not resumed:  # checkpoints left by an abandoned run here are not this run's
            run.start_afresh()
        run.write_config(cfg.to_dict())
        x_val, x_test = self.splits.val[0], self.splits.test[0]
        self.log(f"{cfg.model}: {self.model.num_parameters():,} parameters; "
                 f"{cfg.dataset}: {len(self.splits.train[0])} train / {len(x_val)} val / "
                 f"{len(x_test)} test; writing to {run.path}")
        with self.stop:
            try:
                for epoch in range(self.epoch + 1, cfg.epochs + 1):
                    result = self.train_epoch(epoch)
                    if result is None:
                        run.save(self._checkpoint_state())
                        return self._stopped(f"at epoch {epoch}, step {self.progress['step']}")
                    self.log(self._summary_line(self.end_epoch(epoch, *result)))
                    if self.stop.requested:
                        return self._stopped(f"after epoch {epoch}")
            except Diverged as err:
                self._plot()
                kept = (f"the last good checkpoint is {run.latest_path} (epoch {self.epoch})"
                        if run.has_checkpoint() else "no checkpoint had been written yet")
                _error(f"{err} (lr {self.opt.lr:.3g}); stopping. Nothing was saved for this "
                       f"epoch: {kept}. Try a smaller --lr.")
                return EXIT_DIVERGED
        self.test()
        return self.stop.exit_code if self.stop.requested else EXIT_OK

    def test(self) -> dict:
        """Evaluate the best-validation model on the test set and write test_summary.json."""
        cfg, run = self.cfg, self.run
        best = run.load_best()
        if best is not None:
            source, epoch = run.best_path, self.best_epoch
            self.model.load_state_dict(best["model"])
        else:  # no best.npz (e.g. a run from before best.npz existed): the latest model
            source, epoch = run.latest_path, self.epoch
        x_test, y_test = self.splits.test
        test_loss, test_acc = evaluate(self.model, self.criterion, x_test, y_test,
                                       cfg.batch_size, cfg.device)
        rows = self.metrics.read()
        summary = {
            "model": cfg.model, "dataset": cfg.dataset,
            "checkpoint": str(source.relative_to(run.path)), "checkpoint_epoch": epoch,
            "best_epoch": self.best_epoch, "best_val_acc": _json_number(self.best_val_acc),
            "test_loss": _json_number(test_loss), "test_acc": _json_number(test_acc),
            "test_examples": len(x_test), "epochs": self.epoch,
            "num_parameters": self.model.num_parameters(),
            "train_seconds": round(sum(r["seconds"] for r in rows), 3),
            # null when an epoch's CPU time is unknown (trained before cpu_seconds existed)
            "train_cpu_seconds": _json_number(round(sum(
                math.nan if r["cpu_seconds"] is None else r["cpu_seconds"] for r in rows), 3)),
        }
        run.write_summary(summary)
        self.log(f"test (model of epoch {epoch}, best validation accuracy): loss {test_loss:.4f} "
                 f"acc {test_acc:.2%}  -> {run.summary_path}")
        return summary


def _layer_states(rng: dict) -> dict:
    """The layers' extra state in a checkpoint (``rng/dropout`` in checkpoints before 0.2)."""
    text = rng.get("layers")
    if text is not None:
        return json.loads(text)
    return {name: {"rng": state} for name, state in json.loads(rng.get("dropout", "{}")).items()}


def _open_state(cfg: TrainConfig, run: RunFolder, log) -> dict | None:
    """The checkpoint to continue from (None for a new run), after the resume rules."""
    if not run.has_checkpoint():
        if cfg.resume:
            log(f"no checkpoint in {run.checkpoint_dir}: starting from scratch")
        return None
    if not cfg.resume:
        raise UsageError(f"{run.path} already holds a run ({run.latest_path}); pass --resume "
                         "to continue it, or --out to start a new one")
    state = run.load_latest()
    saved = run.saved_config() or json.loads(state["config"])
    try:
        saved_cfg = TrainConfig.from_dict(saved)
    except (TypeError, ValueError) as err:
        raise RunFolderError(f"{run.config_path} is not a configuration of this minidl "
                             f"({err}); use another --out for a new run") from None
    diffs = config_differences(saved_cfg, cfg, ignore=RESUMABLE_CHANGES + ("out",))
    if diffs:
        listed = "; ".join(f"{option_name(k)}: {old!r} in config.json, {new!r} now"
                           for k, old, new in diffs)
        raise UsageError(f"cannot resume {run.path}: its configuration differs ({listed}). "
                         "Only --epochs and --device may change when resuming; use --out for "
                         "a new run")
    return state


def run(cfg: TrainConfig) -> int:
    """Train as ``cfg`` says; returns the process exit code (see the module docstring)."""
    cfg.out = os.path.expanduser(cfg.out if cfg.out is not None else cfg.default_out())
    if cfg.data_dir is not None:
        cfg.data_dir = os.path.expanduser(cfg.data_dir)
    try:
        backend.check_device(cfg.device)
    except (ValueError, RuntimeError) as err:
        _error(str(err))
        return EXIT_USAGE
    try:
        # The folder is checked and locked before the data is loaded: an unusable --out
        # is reported at once, not after minutes of loading.
        with RunFolder(cfg.out) as folder:
            state = _open_state(cfg, folder, print)
            return Trainer(cfg, folder, state).fit()
    except (UsageError, RunFolderError, CSVLogError) as err:
        _error(str(err))
        return EXIT_USAGE
    except data.DatasetNotFoundError as err:
        _error(str(err))
        return EXIT_NO_DATA
    except KeyboardInterrupt:  # a second signal: leave at once, keeping the last checkpoint
        _error(f"aborted; the last saved checkpoint is in {Path(cfg.out) / 'checkpoints'}")
        return EXIT_INTERRUPTED
    except OSError as err:  # a full disk, a folder made read-only mid-run, ...
        where = err.filename or cfg.out
        latest = RunFolder(cfg.out).latest_path
        kept = (f"the last complete checkpoint, {latest}, is intact" if latest.is_file()
                else "no checkpoint had been written yet")
        _error(f"{where}: {err.strerror or err}; {kept}. Free space or fix the file or "
               "folder, then run again with --resume")
        return EXIT_IO


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
