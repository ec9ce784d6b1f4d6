"""End-to-end tests of ``python -m minidl.train`` on a fake Fashion-MNIST written as IDX gz files.

The runs use a tiny MLP (with BatchNorm buffers and Dropout, so resume must restore both)
registered for the test, and one real conv model (vgg08 with 4 filters); each run takes well
under a second.
"""
import csv
import dataclasses
import gzip
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minidl import backend, checkpoint, layers as L, losses, models
from minidl.checkpoint import RunFolder, load_checkpoint
from minidl.config import TrainConfig, option_name, parse_config
from minidl.metrics import GRAD_FLOW_COLUMNS, METRIC_COLUMNS, CSVLog
from minidl.models import registry
from minidl.train import (EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_IO, EXIT_PIPE_CLOSED,
                          EXIT_TERMINATED, EXIT_USAGE, main, model_options)

N_TRAIN, N_TEST, N_CLASSES = 120, 30, 10
VAL_FRACTION = 0.1                       # 12 validation images, 108 training images
BATCH = 36                               # 3 training batches and 1 validation batch per epoch
TRAIN_BATCHES = 3
VAL_BATCHES = 1
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_idx_gz(path, array: np.ndarray) -> None:
    """IDX: 0x0000, type 0x08 (uint8), ndim, big-endian uint32 sizes, then the bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _fake_images(labels: np.ndarray, rng) -> np.ndarray:
    """28x28 uint8 images whose bright row band encodes the label (learnable in one epoch)."""
    images = rng.integers(0, 60, size=(len(labels), 28, 28))
    for k in range(N_CLASSES):
        images[labels == k, 2 * k + 4: 2 * k + 7, :] += 180
    return images.astype(np.uint8)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        labels = rng.integers(0, N_CLASSES, size=n).astype(np.uint8)
        _write_idx_gz(root / f"{prefix}-images-idx3-ubyte.gz", _fake_images(labels, rng))
        _write_idx_gz(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def tiny_mlp(in_channels=1, num_classes=10, dropout=0.0, seed=0, conv_method="im2col"):
    """Flatten -> Linear -> BatchNorm1d -> ReLU -> [Dropout] -> Linear, seeded."""
    rng = np.random.default_rng(seed)
    layers = [L.Flatten(), L.Linear(in_channels * 28 * 28, 16, rng=rng), L.BatchNorm1d(16),
              L.ReLU()]
    if dropout:
        layers.append(L.Dropout(dropout, rng=seed))
    layers.append(L.Linear(16, num_classes, rng=rng))
    return L.Sequential(*layers)


@pytest.fixture(scope="module")
def tiny_model():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._BUILDERS, "tiny_mlp", tiny_mlp)
        yield "tiny_mlp"


def _argv(data_dir, out, *extra, model="tiny_mlp"):
    return [model, "--data-dir", str(data_dir), "--out", str(out), "--val-fraction",
            str(VAL_FRACTION), "--batch-size", str(BATCH), "--no-progress", "--lr", "0.01",
            "--dropout", "0.3", "--augment", "--random-erasing", *extra]


def _read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _assert_same_run(out, reference):
    """The runs in two folders ended with bit-for-bit equal model and optimiser arrays and
    logged the same metrics (all but the timings)."""
    a, b = (load_checkpoint(folder / "checkpoints" / "latest.npz") for folder in (out, reference))
    for part in ("model", "optim"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            np.testing.assert_array_equal(a[part][key], b[part][key], err_msg=f"{part}/{key}")
    rows, ref_rows = (_read_csv(folder / "metrics.csv")[1] for folder in (out, reference))
    for column in ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"):
        assert [r[column] for r in rows] == [r[column] for r in ref_rows], column


@pytest.fixture(scope="module")
def straight_run(tiny_model, data_dir, tmp_path_factory):
    """The reference: two uninterrupted epochs."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    assert main(_argv(data_dir, out, "--epochs", "2")) == 0
    return out


# ---------------------------------------------------------------------- outputs
def test_run_writes_every_output(straight_run):
    out = straight_run
    columns, rows = _read_csv(out / "metrics.csv")
    assert tuple(columns) == METRIC_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row in rows:
        assert 0 <= float(row["train_acc"]) <= 1 and 0 <= float(row["val_acc"]) <= 1
        assert np.isfinite(float(row["train_loss"])) and float(row["seconds"]) >= 0
        assert float(row["cpu_seconds"]) > 0  # process time: this process did the work
    assert float(rows[1]["lr"]) < float(rows[0]["lr"])  # cosine schedule, stepped per epoch

    columns, rows = _read_csv(out / "grad_flow.csv")
    assert tuple(columns) == GRAD_FLOW_COLUMNS
    # The two Linear weights (BatchNorm's 1-d weight is not a conv/linear weight), per epoch.
    assert [(r["epoch"], r["layer"]) for r in rows] == [
        ("1", "1.weight"), ("1", "5.weight"), ("2", "1.weight"), ("2", "5.weight")]
    assert all(float(r["mean_abs_grad"]) > 0 for r in rows)

    config = json.loads((out / "config.json").read_text())
    assert set(config) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert config["model"] == "tiny_mlp" and config["epochs"] == 2 and config["out"] == str(out)

    summary = json.loads((out / "test_summary.json").read_text())
    assert {"test_loss", "test_acc", "best_epoch", "best_val_acc", "checkpoint"} <= set(summary)
    assert summary["checkpoint"] == "checkpoints/best.npz"
    assert 0 <= summary["test_acc"] <= 1 and summary["test_examples"] == N_TEST
    _, epochs = _read_csv(out / "metrics.csv")
    for total, column in (("train_seconds", "seconds"), ("train_cpu_seconds", "cpu_seconds")):
        assert summary[total] == pytest.approx(sum(float(r[column]) for r in epochs), abs=2e-3)

    for name in ("curves.png", "gradient_flow.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC and (out / name).stat().st_size > 1000

    latest = load_checkpoint(out / "checkpoints" / "latest.npz")
    assert {"model", "optim", "sched", "rng", "epoch", "best_val_acc", "progress"} <= set(latest)
    assert latest["epoch"] == 2 and latest["progress"]["step"] == 0
    assert "2.running_mean" in latest["model"]          # buffers are saved with the parameters
    # the layers' extra state (Dropout's mask generator) under their dotted names
    assert json.loads(latest["rng"]["layers"])["4"]["rng"]["bit_generator"] == "PCG64"
    best = load_checkpoint(out / "checkpoints" / "best.npz")
    assert best["epoch"] == summary["best_epoch"]


def test_cpu_seconds_measure_this_process_not_the_wall_clock(tiny_model, data_dir, tmp_path,
                                                            monkeypatch):
    from minidl import train
    # A step that sleeps 0.2 s: wall-clock time, but (almost) no CPU time of this process.
    step = train.train_step

    def sleepy(*args, **kwargs):
        time.sleep(0.2)
        return step(*args, **kwargs)

    monkeypatch.setattr(train, "train_step", sleepy)
    out = tmp_path / "sleepy"
    assert main(_argv(data_dir, out, "--epochs", "1", "--no-plots")) == 0
    _, (row,) = _read_csv(out / "metrics.csv")
    assert float(row["seconds"]) >= 0.2 * TRAIN_BATCHES
    assert float(row["seconds"]) - float(row["cpu_seconds"]) > 0.5 * 0.2 * TRAIN_BATCHES
    summary = json.loads((out / "test_summary.json").read_text())
    assert summary["train_cpu_seconds"] == pytest.approx(float(row["cpu_seconds"]), abs=2e-3)
    # --no-plots: the CSV files, but no png
    assert (out / "grad_flow.csv").is_file()
    assert not (out / "curves.png").exists() and not (out / "gradient_flow.png").exists()


def test_metrics_csv_from_before_cpu_seconds_is_read_and_resumed(straight_run, data_dir,
                                                                  tmp_path):
    out = tmp_path / "old-metrics"
    assert main(_argv(data_dir, out, "--epochs", "1")) == 0
    header, rows = _read_csv(out / "metrics.csv")
    with open(out / "metrics.csv", "w", newline="") as f:  # as an older minidl wrote it
        writer = csv.DictWriter(f, fieldnames=header[:-1], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    old_rows = CSVLog(out / "metrics.csv", METRIC_COLUMNS).read()
    assert old_rows[0]["cpu_seconds"] is None and old_rows[0]["epoch"] == 1
    assert main(_argv(data_dir, out, "--epochs", "2", "--resume", "--no-plots")) == 0
    _assert_same_run(out, straight_run)
    header, rows = _read_csv(out / "metrics.csv")
    assert tuple(header) == METRIC_COLUMNS
    assert rows[0]["cpu_seconds"] == "" and float(rows[1]["cpu_seconds"]) > 0
    summary = json.loads((out / "test_summary.json").read_text())
    assert summary["train_cpu_seconds"] is None and summary["train_seconds"] > 0


def test_summary_lines_and_quiet_progress(tiny_model, data_dir, tmp_path, capsys):
    assert main(_argv(data_dir, tmp_path / "run", "--epochs", "1")) == 0
    captured = capsys.readouterr()
    line = next(s for s in captured.out.splitlines() if s.startswith("epoch 1/1"))
    for part in ("lr", "train loss", "val loss", "acc", "s"):
        assert part in line
    assert "batch/s" not in captured.err and "it/s" not in captured.err  # --no-progress


def test_real_conv_model_end_to_end(data_dir, tmp_path):
    out = tmp_path / "vgg"
    argv = ["vgg08", "--bn", "--residual", "--num-filters", "4", "--num-blocks-per-stage", "1",
            "--data-dir", str(data_dir), "--out", str(out), "--epochs", "1",
            "--batch-size", "60", "--no-progress"]
    assert main(argv) == 0
    _, rows = _read_csv(out / "grad_flow.csv")
    model = models.build("vgg08", in_channels=1, num_classes=10, bn=True, residual=True,
                         width=4, num_blocks_per_stage=1)
    expected = [f"{name}.weight" for name, layer in model.named_layers()
                if isinstance(layer, (L.Conv2d, L.Linear))]
    assert len(expected) > 5  # every conv and the classifier, input to output
    assert [r["layer"] for r in rows] == expected
    assert [int(r["depth"]) for r in rows] == list(range(len(expected)))


def test_default_out_folder(tiny_model, data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["tiny_mlp", "--data-dir", str(data_dir), "--epochs", "1", "--no-progress",
            "--subset", "40"]
    # --bn is not an option of tiny_mlp: refused, naming it, before anything is written.
    assert main(argv + ["--bn"]) == EXIT_USAGE
    assert not (tmp_path / "runs").exists()
    assert main(argv) == 0
    assert (tmp_path / "runs" / "tiny_mlp-fashion_mnist" / "test_summary.json").is_file()


DATA_OPTIONS = {"in_channels": 1, "num_classes": 10, "seed": 3}


@pytest.mark.parametrize("argv, expected, absent", [
    # options left at their defaults are not passed: each model keeps its own defaults
    (["vgg38"], {}, {"width", "bn", "conv_method", "num_blocks_per_stage", "activation",
                     "dropout"}),
    (["vgg38", "--bn", "--num-blocks-per-stage", "2", "--conv-method", "fft"],
     {"bn": True, "num_blocks_per_stage": 2, "conv_method": "fft"}, set()),
    (["vgg38", "--conv", "fft"], {"conv_method": "fft"}, set()),      # the older spelling
    # explicit means explicit: a value equal to some default is still passed on
    (["resnet18", "--width", "32"], {"width": 32}, set()),
    (["resnet18", "--dropout", "0"], {"dropout": 0.0}, set()),
    # resnet18 keeps its own width (the paper's 64) and BatchNorm unless told otherwise
    (["resnet18"], {}, {"width", "num_filters", "bn"}),
    (["resnet18", "--num-filters", "16"], {"width": 16}, {"num_filters"}),  # older spelling
    (["mobilenet", "--activation", "elu"], {"activation": "elu"}, {"width_mult", "num_filters"}),
    # set explicitly but not an option of lenet5: passed on, so build() can name it
    (["lenet5", "--width", "8"], {"width": 8}, set()),
    # the papers' forms (issue 11): each option given reaches the model, the rest stay unset
    (["lenet5", "--pool", "avg", "--activation", "tanh"], {"pool": "avg", "activation": "tanh"},
     set()),
    (["lenet5"], {}, {"pool", "activation"}),
    (["resnet18", "--no-shortcut"], {"shortcut": False}, set()),
    (["resnet18"], {}, {"shortcut", "no_shortcut"}),
    (["mobilenet", "--width-mult", "1.0", "--stem-stride", "2", "--no-separable"],
     {"width_mult": 1.0, "stem_stride": 2, "separable": False}, set()),
    (["mobilenet"], {}, {"width_mult", "stem_stride", "separable", "no_separable"}),
    (["sfnet", "--global-pool"], {"global_pool": True}, set()),
    (["vgg16"], {}, {"global_pool", "image_size"}),
    # --model-kwargs: any builder option, typed as a Python literal (issue 11)
    (["vgg38", "--model-kwargs", "width=8", "bn=True", "conv_method=fft"],
     {"width": 8, "bn": True, "conv_method": "fft"}, set()),
    (["mobilenet", "--width-mult", "0.5", "--model-kwargs", "separable=False"],
     {"width_mult": 0.5, "separable": False}, set()),
])
def test_model_options_from_the_command_line(argv, expected, absent):
    cfg = parse_config(argv)
    options = model_options(cfg, models.options(cfg.model), DATA_OPTIONS)
    assert {**DATA_OPTIONS, **expected}.items() <= options.items()
    assert not absent & options.keys()
    if set(expected) <= set(models.options(cfg.model)):  # lenet5 --width: build() refuses it
        models.build(cfg.model, **options)


@pytest.mark.parametrize("argv, refused", [
    (["vgg38", "--no-shortcut"], "shortcut"), (["lenet5", "--pool", "avg", "--bn"], "bn"),
    (["resnet18", "--width-mult", "0.5"], "width_mult"), (["vgg16", "--pool", "max"], "pool"),
    (["lenet5", "--no-separable"], "separable"), (["mobilenet", "--global-pool"], "global_pool"),
])
def test_a_paper_option_the_model_does_not_take_is_refused_by_name(argv, refused):
    cfg = parse_config(argv)
    with pytest.raises(ValueError, match=f"has no option.*'{refused}'"):
        models.build(cfg.model, **model_options(cfg, models.options(cfg.model), DATA_OPTIONS))


# ---------------------------------------------------------------------- resume
def test_resume_after_finished_epoch_equals_straight_run(straight_run, data_dir, tmp_path):
    out = tmp_path / "resumed"
    assert main(_argv(data_dir, out, "--epochs", "1")) == 0
    # the 1-epoch cosine schedule is rebuilt for 2 epochs: the lr column must match too
    assert main(_argv(data_dir, out, "--epochs", "2", "--resume")) == 0
    _assert_same_run(out, straight_run)


def test_a_run_whose_config_json_has_the_old_augment_flags_resumes(straight_run, data_dir,
                                                                    tmp_path):
    # config.json of a run from before --augment took a list (augment/random_erasing flags)
    out = tmp_path / "old"
    assert main(_argv(data_dir, out, "--epochs", "1")) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["augment"] == ["crop", "flip", "erase"] and "random_erasing" not in config
    config.update(augment=True, random_erasing=True)
    (out / "config.json").write_text(json.dumps(config))
    assert main(_argv(data_dir, out, "--epochs", "2", "--resume")) == 0
    _assert_same_run(out, straight_run)


class _CountingLoss(losses.CrossEntropyLoss):
    """CrossEntropyLoss that runs ``action(self)`` on its ``at``-th call (1-based)."""

    at, action, calls = None, None, 0

    def forward(self, logits, targets):
        type(self).calls += 1
        loss = super().forward(logits, targets)
        if type(self).calls == type(self).at:
            return type(self).action(loss)
        return loss


def _patch_loss(monkeypatch, at, action):
    cls = type("PatchedLoss", (_CountingLoss,), {"at": at, "action": staticmethod(action),
                                                 "calls": 0})
    monkeypatch.setattr(losses, "CrossEntropyLoss", cls)


def _send_sigint(loss):
    os.kill(os.getpid(), signal.SIGINT)  # the real Ctrl-C path: the handler sets a flag
    return loss


def test_ctrl_c_mid_epoch_saves_and_resumes_exactly(straight_run, data_dir, tmp_path,
                                                    monkeypatch, capsys):
    out = tmp_path / "interrupted"
    step = 2  # epoch 2, step 2: after epoch 1's training and validation calls
    _patch_loss(monkeypatch, TRAIN_BATCHES + VAL_BATCHES + step, _send_sigint)
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN under nohup
    assert main(_argv(data_dir, out, "--epochs", "2")) == EXIT_INTERRUPTED
    assert "interrupted at epoch 2, step 2" in capsys.readouterr().out
    saved = load_checkpoint(out / "checkpoints" / "latest.npz")
    assert saved["epoch"] == 1 and saved["progress"]["step"] == step
    assert signal.getsignal(signal.SIGINT) is before  # handler restored

    monkeypatch.undo()
    assert main(_argv(data_dir, out, "--epochs", "2", "--resume")) == 0
    _assert_same_run(out, straight_run)


# ---------------------------------------------------------------------- per-batch schedules
def _record_lrs(monkeypatch):
    """Patch minidl.train.train_step to record the optimiser's lr at every training step."""
    from minidl import train
    seen, step = [], train.train_step

    def recording(model, loss_fn, optimizer, *args, **kwargs):
        seen.append(optimizer.lr)
        return step(model, loss_fn, optimizer, *args, **kwargs)

    monkeypatch.setattr(train, "train_step", recording)
    return seen


def _half_cosine(start, end, pct):
    return end + 0.5 * (start - end) * (1 + np.cos(np.pi * pct))


ONECYCLE = ("--schedule", "onecycle", "--min-lr", "1e-5")


def test_onecycle_per_batch_follows_the_formula_step_by_step(tiny_model, data_dir, tmp_path,
                                                             monkeypatch):
    lrs = _record_lrs(monkeypatch)
    out = tmp_path / "per-batch"
    epochs = 3
    assert main(_argv(data_dir, out, "--epochs", str(epochs), *ONECYCLE,
                      "--schedule-step", "batch")) == 0
    # torch's OneCycleLR over epochs x batches steps: warm up for 30 % of them, then anneal
    total, max_lr, start = epochs * TRAIN_BATCHES, 0.01, 0.01 / 25
    peak = 0.3 * total - 1
    expected = [_half_cosine(start, max_lr, k / peak) if k <= peak
                else _half_cosine(max_lr, 1e-5, (k - peak) / (total - 1 - peak))
                for k in range(total)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert lrs[-1] == pytest.approx(1e-5) and max(lrs) == pytest.approx(max_lr, rel=0.02)
    # metrics.csv: the rate of each epoch's last step
    _, rows = _read_csv(out / "metrics.csv")
    np.testing.assert_allclose([float(r["lr"]) for r in rows],
                               [expected[TRAIN_BATCHES * e - 1] for e in (1, 2, 3)], rtol=1e-12)
    assert json.loads((out / "config.json").read_text())["schedule_step"] == "batch"

    lrs.clear()  # the default steps once per epoch: constant within an epoch
    assert main(_argv(data_dir, tmp_path / "per-epoch", "--epochs", str(epochs),
                      *ONECYCLE)) == 0
    assert lrs[:TRAIN_BATCHES] == [lrs[0]] * TRAIN_BATCHES and lrs[TRAIN_BATCHES] != lrs[0]


@pytest.mark.parametrize("stop_at", [(1, 2), (2, 1), (2, 3)])
def test_per_batch_schedule_resumes_exactly_mid_epoch(tiny_model, data_dir, tmp_path,
                                                      monkeypatch, stop_at):
    extra = ("--epochs", "2", *ONECYCLE, "--schedule-step", "batch")
    reference = tmp_path / "straight"
    assert main(_argv(data_dir, reference, *extra)) == 0
    epoch, step = stop_at
    out = tmp_path / "stopped"
    _patch_loss(monkeypatch, (epoch - 1) * (TRAIN_BATCHES + VAL_BATCHES) + step, _send_sigint)
    assert main(_argv(data_dir, out, *extra)) == EXIT_INTERRUPTED
    assert load_checkpoint(out / "checkpoints" / "latest.npz")["sched"]["last_epoch"] == \
        (epoch - 1) * TRAIN_BATCHES + step
    monkeypatch.undo()
    assert main(_argv(data_dir, out, *extra, "--resume")) == 0
    _assert_same_run(out, reference)


# ---------------------------------------------------------------------- distillation
def test_distillation_with_soft_weight_zero_equals_plain_training(straight_run, data_dir,
                                                                  tmp_path, capsys):
    # the hard targets alone (weight 1 - 0): bit for bit the run without a teacher
    out = tmp_path / "w0"
    assert main(_argv(data_dir, out, "--epochs", "2", "--teacher", str(straight_run),
                      "--soft-weight", "0", "--temperature", "4")) == 0
    assert f"distilling from {straight_run} (tiny_mlp, 12,762 parameters): temperature " \
           "4.0, soft weight 0.0" in capsys.readouterr().out
    _assert_same_run(out, straight_run)


def test_a_distilled_run_learns_from_the_teacher_and_resumes_exactly(straight_run, data_dir,
                                                                     tmp_path, monkeypatch,
                                                                     capsys):
    extra = ("--epochs", "2", "--teacher", str(straight_run))
    reference = tmp_path / "distilled"
    assert main(_argv(data_dir, reference, *extra)) == 0
    assert "temperature 20.0, soft weight 0.9" in capsys.readouterr().out  # the defaults
    config = json.loads((reference / "config.json").read_text())
    assert (config["teacher"], config["temperature"], config["soft_weight"]) == (
        str(straight_run), None, None)
    plain = load_checkpoint(straight_run / "checkpoints" / "latest.npz")["model"]
    taught = load_checkpoint(reference / "checkpoints" / "latest.npz")["model"]
    assert not np.array_equal(plain["1.weight"], taught["1.weight"])  # the soft targets act

    out = tmp_path / "stopped"
    from minidl import train
    step, calls = train.train_step, []

    def interrupted_step(*args):  # Ctrl-C during epoch 2's first training step
        calls.append(1)
        return _send_sigint(step(*args)) if len(calls) == TRAIN_BATCHES + 1 else step(*args)

    monkeypatch.setattr(train, "train_step", interrupted_step)
    assert main(_argv(data_dir, out, *extra)) == EXIT_INTERRUPTED
    assert load_checkpoint(out / "checkpoints" / "latest.npz")["progress"]["step"] == 1
    monkeypatch.undo()
    assert main(_argv(data_dir, out, *extra, "--resume", "--temperature", "4")) == EXIT_USAGE
    assert "--temperature: None in config.json, 4.0 now" in capsys.readouterr().err
    assert main(_argv(data_dir, out, *extra, "--resume")) == 0
    _assert_same_run(out, reference)


def test_an_excluded_class_never_appears_in_a_training_batch(tiny_model, data_dir, tmp_path,
                                                             monkeypatch, capsys):
    from minidl import train
    seen = {"train": [], "eval": []}
    step, evaluate = train.train_step, train.evaluate

    def recording_step(model, loss_fn, optimizer, x, y, *rest):
        seen["train"].append(np.asarray(y))
        return step(model, loss_fn, optimizer, x, y, *rest)

    def recording_evaluate(model, loss_fn, x, y, *rest):
        seen["eval"].append(np.asarray(y))
        return evaluate(model, loss_fn, x, y, *rest)

    monkeypatch.setattr(train, "train_step", recording_step)
    monkeypatch.setattr(train, "evaluate", recording_evaluate)
    k = 3
    assert main(_argv(data_dir, tmp_path / "no3", "--epochs", "2", "--exclude-class",
                      str(k))) == 0
    trained = np.concatenate(seen["train"])
    evaluated = np.concatenate(seen["eval"])
    assert k not in trained and set(range(N_CLASSES)) - {k} <= set(trained)
    assert k in evaluated                       # validation and test keep the class
    kept = len(trained) // 2                    # two epochs over the same transfer set
    assert f"class 3 left out of training: {kept} of {N_TRAIN - 12} examples remain" in \
        capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (("--temperature", "4"), "--temperature and --soft-weight need --teacher"),
    (("--soft-weight", "0.5"), "need --teacher"),
    (("--teacher", "{teacher}", "--soft-weight", "1.5"), "--soft-weight must be in [0, 1]"),
    (("--teacher", "{teacher}", "--temperature", "0"), "--temperature must be a finite number"),
    (("--teacher", "{tmp}/nowhere",), "nowhere: no such folder"),
    (("--teacher", "{tmp}",), "is not a minidl run folder"),
    (("--teacher", "{out}",), "is this run's own folder"),
    (("--exclude-class", "10"), "--exclude-class 10: the data set's classes are 0 .. 9"),
    (("--exclude-class", "-1"), "--exclude-class must be a class index >= 0"),
])
def test_bad_distillation_options_are_usage_errors(straight_run, data_dir, tmp_path, capsys,
                                                   extra, message):
    out = tmp_path / "student"
    places = {"teacher": straight_run, "tmp": tmp_path, "out": out}
    argv = _argv(data_dir, out, "--epochs", "1", *(e.format(**places) for e in extra))
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_teacher_from_another_data_set_or_without_a_checkpoint_is_refused(
        straight_run, data_dir, tmp_path, capsys):
    other = tmp_path / "mnist-teacher"
    other.mkdir()
    config = json.loads((straight_run / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "dataset": "mnist"}))
    assert main(_argv(data_dir, tmp_path / "s1", "--epochs", "1", "--teacher",
                      str(other))) == EXIT_USAGE
    assert "was trained on mnist, this run uses fashion_mnist" in capsys.readouterr().err
    (other / "config.json").write_text(json.dumps(config))
    assert main(_argv(data_dir, tmp_path / "s2", "--epochs", "1", "--teacher",
                      str(other))) == EXIT_USAGE
    assert "has no best checkpoint" in capsys.readouterr().err


def test_resume_refuses_a_changed_configuration(straight_run, data_dir, capsys):
    before = (straight_run / "checkpoints" / "latest.npz").read_bytes()
    argv = _argv(data_dir, straight_run, "--epochs", "3", "--resume")
    argv[argv.index("--lr") + 1] = "0.5"
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--lr: 0.01 in config.json, 0.5 now" in err and "--epochs: 2" not in err
    assert (straight_run / "checkpoints" / "latest.npz").read_bytes() == before


def test_existing_run_is_not_overwritten_without_resume(straight_run, data_dir, capsys):
    assert main(_argv(data_dir, straight_run, "--epochs", "2")) == EXIT_USAGE
    assert "--resume" in capsys.readouterr().err


# ---------------------------------------------------------------------- failures
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_model, data_dir, tmp_path,
                                                       monkeypatch, capsys):
    out = tmp_path / "nan"
    _patch_loss(monkeypatch, TRAIN_BATCHES + VAL_BATCHES + 2, lambda loss: loss * np.nan)
    assert main(_argv(data_dir, out, "--epochs", "3")) == EXIT_DIVERGED
    err = capsys.readouterr().err
    assert "nan at epoch 2, step 2" in err and "latest.npz (epoch 1)" in err
    assert load_checkpoint(out / "checkpoints" / "latest.npz")["epoch"] == 1
    _, rows = _read_csv(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1"]
    assert not (out / "test_summary.json").exists()


def test_unknown_model_lists_the_valid_ones(capsys):
    assert main(["no_such_net"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "invalid choice: 'no_such_net'" in err
    for name in registry.available():
        assert name in err


def test_bad_option_values_are_usage_errors(tiny_model, data_dir, tmp_path, capsys):
    assert main(["tiny_mlp", "--optimizer", "adamw"]) == EXIT_USAGE
    assert "invalid choice: 'adamw'" in capsys.readouterr().err
    assert main(["tiny_mlp", "--no-such-option"]) == EXIT_USAGE
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err
    assert main(_argv(data_dir, tmp_path / "x", "--epochs", "0")) == EXIT_USAGE
    assert "--epochs must be >= 1" in capsys.readouterr().err
    assert main(_argv(data_dir, tmp_path / "x", "--subset", "100000")) == EXIT_USAGE
    assert "subset" in capsys.readouterr().err
    assert main(_argv(data_dir, tmp_path / "x", "--width", "8")) == EXIT_USAGE
    assert "'width'" in capsys.readouterr().err  # tiny_mlp has no such option


def test_missing_data_set_says_how_to_get_it(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MINIDL_DATA", raising=False)
    assert main(["tiny_mlp", "--dataset", "mnist", "--data-dir", str(tmp_path)]) == 1
    assert "mnist" in capsys.readouterr().err.lower()


def test_module_entry_point_runs():
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "minidl.train", "--help"], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--resume" in done.stdout


def test_help_lists_every_option(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        if f.name != "model":
            assert option_name(f.name) in text
    for name in registry.available():
        assert name in text


def test_gpu_request_without_a_gpu_is_a_clear_error(tiny_model, data_dir, tmp_path, capsys):
    if backend.gpu_available():
        pytest.skip("a GPU is present")
    assert main(_argv(data_dir, tmp_path / "gpu", "--device", "gpu")) == EXIT_USAGE
    assert "device 'gpu' requested but" in capsys.readouterr().err


@pytest.mark.gpu
def test_gpu_run_matches_cpu_run(tiny_model, data_dir, tmp_path):
    if not backend.gpu_available():
        pytest.skip("cupy/CUDA device not available")
    states = {}
    for device in ("cpu", "gpu"):
        # Plain SGD: float32 rounding differences stay small (Adam would amplify tiny gradients).
        argv = _argv(data_dir, tmp_path / device, "--epochs", "1", "--optimizer", "sgd",
                     "--device", device)
        assert main(argv) == 0
        states[device] = load_checkpoint(tmp_path / device / "checkpoints" / "latest.npz")["model"]
    for key, value in states["cpu"].items():  # equal up to summation order
        np.testing.assert_allclose(states["gpu"][key], value, rtol=1e-4, atol=1e-5, err_msg=key)


# ---------------------------------------------------------------------- faults (issue 9)
def _send_sigterm(loss):
    os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler or `timeout` sends
    return loss


def test_sigterm_saves_and_resumes_exactly_like_ctrl_c(straight_run, data_dir, tmp_path,
                                                       monkeypatch, capsys):
    out = tmp_path / "terminated"
    _patch_loss(monkeypatch, TRAIN_BATCHES + VAL_BATCHES + 1, _send_sigterm)
    # Whatever handler was there before (the default, or one another test's library left in
    # this worker, e.g. Ray's) must be the one in place afterwards.
    before = signal.getsignal(signal.SIGTERM)
    assert main(_argv(data_dir, out, "--epochs", "2")) == EXIT_TERMINATED
    assert "interrupted at epoch 2, step 1 (SIGTERM)" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoints" / "latest.npz")["progress"]["step"] == 1
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored
    monkeypatch.undo()
    assert main(_argv(data_dir, out, "--epochs", "2", "--resume")) == 0
    _assert_same_run(out, straight_run)


def test_out_holding_other_files_is_refused_untouched(tiny_model, data_dir, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("my notes")
    assert main(_argv(data_dir, tmp_path, "--epochs", "1")) == EXIT_USAGE
    assert "not a minidl run folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_second_run_into_the_same_out_is_refused(tiny_model, data_dir, tmp_path, capsys):
    with RunFolder(tmp_path / "run"):  # a first run holds the folder
        assert main(_argv(data_dir, tmp_path / "run", "--epochs", "1")) == EXIT_USAGE
    assert f"in use by another run (pid {os.getpid()}" in capsys.readouterr().err


def test_unwritable_out_is_refused_before_the_data_is_read(tiny_model, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    missing_data = tmp_path / "no-data-here"
    argv = _argv(missing_data, tmp_path / "file" / "run", "--epochs", "1")
    assert main(argv) == EXIT_USAGE                           # not the missing-data code 1
    err = capsys.readouterr().err
    assert "cannot create the run folder" in err and "Traceback" not in err


@pytest.mark.parametrize("victim, content, expected", [
    ("checkpoints/latest.npz", b"garbage", "latest.npz is damaged"),
    ("config.json", b'{"model": "tiny_mlp", "epo', "config.json is damaged"),
    ("metrics.csv", b"epoch,lr\nnot,a,row\n", "metrics.csv is damaged"),
])
def test_damaged_files_are_one_clear_line(straight_run, data_dir, tmp_path, capsys, victim,
                                          content, expected):
    out = tmp_path / "damaged"
    assert main(_argv(data_dir, out, "--epochs", "1")) == 0
    (out / victim).write_bytes(content)
    capsys.readouterr()
    assert main(_argv(data_dir, out, "--epochs", "2", "--resume")) == EXIT_USAGE
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_full_disk_is_one_line_and_keeps_the_last_checkpoint(tiny_model, data_dir, tmp_path,
                                                             monkeypatch, capsys):
    out = tmp_path / "full"
    assert main(_argv(data_dir, out, "--epochs", "1")) == 0
    before = (out / "checkpoints" / "latest.npz").read_bytes()

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device", str(out / "checkpoints" / "latest.npz"))

    monkeypatch.setattr(checkpoint, "save_checkpoint", no_space)
    capsys.readouterr()
    assert main(_argv(data_dir, out, "--epochs", "2", "--resume")) == EXIT_IO
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err and "Traceback" not in err
    assert (out / "checkpoints" / "latest.npz").read_bytes() == before


def test_tilde_in_out_is_expanded(tiny_model, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    argv = _argv(data_dir, "x", "--epochs", "1")
    argv[argv.index("--out") + 1] = "~/runs/t"
    assert main(argv) == 0
    assert (tmp_path / "runs" / "t" / "test_summary.json").is_file()


def test_drop_last_leaving_no_batch_is_a_usage_error(tiny_model, data_dir, tmp_path, capsys):
    argv = _argv(data_dir, tmp_path / "none", "--epochs", "1", "--drop-last",
                 "--schedule-step", "batch")
    argv[argv.index("--batch-size") + 1] = "200"
    assert main(argv) == EXIT_USAGE
    assert "108 training examples make no batch of --batch-size 200 with --drop-last" in \
        capsys.readouterr().err


def test_a_last_training_batch_of_one_is_dropped(tiny_model, data_dir, tmp_path, capsys):
    # 108 training images in batches of 107: the second batch would hold one image, which
    # BatchNorm1d cannot normalise; it is dropped (with a note) instead of crashing.
    argv = _argv(data_dir, tmp_path / "one", "--epochs", "1")
    argv[argv.index("--batch-size") + 1] = "107"
    assert main(argv) == 0
    assert "leave a last batch of one example; it is dropped" in capsys.readouterr().out


def test_output_piped_into_head_stops_cleanly_after_saving(data_dir, tmp_path):
    out = tmp_path / "piped"
    argv = ["vgg08", "--width", "2", "--data-dir", str(data_dir), "--out", str(out),
            "--epochs", "3", "--batch-size", "60", "--no-progress", "--subset", "60"]
    root = Path(__file__).resolve().parents[1]
    child = subprocess.Popen([sys.executable, "-m", "minidl.train", *argv], cwd=root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = child.stdout.readline()     # what `head -1` reads ...
    child.stdout.close()                # ... before it exits
    err = child.stderr.read()
    assert child.wait(timeout=300) == EXIT_PIPE_CLOSED, err
    assert first.startswith("vgg08:") and "Traceback" not in err and "stdout closed" in err
    assert load_checkpoint(out / "checkpoints" / "latest.npz")["epoch"] == 1


@pytest.mark.parametrize("argv, message", [
    (["vgg38", "--width", "8", "--model-kwargs", "width=16"],
     "--model-kwargs width=... and --width both set the model's width"),
    (["resnet18", "--no-shortcut", "--model-kwargs", "shortcut=True"], "--no-shortcut both set"),
    (["vgg38", "--model-kwargs", "num_classes=3"], "cannot set num_classes: it comes from"),
    (["vgg38", "--model-kwargs", "seed=3"], "cannot set seed"),
])
def test_model_kwargs_that_clash_are_refused(argv, message):
    cfg = parse_config(argv)
    with pytest.raises(ValueError, match=re.escape(message)):
        model_options(cfg, models.options(cfg.model), DATA_OPTIONS)


def test_model_kwargs_reach_the_model_and_are_kept_for_resume(tiny_model, data_dir, tmp_path,
                                                              capsys):
    out = tmp_path / "kwargs"
    argv = [*_argv(data_dir, out, "--epochs", "1"), "--model-kwargs", "conv_method='fft'"]
    assert main(argv) == 0
    assert json.loads((out / "config.json").read_text())["model_kwargs"] == {
        "conv_method": "fft"}
    argv[-1] = "conv_method=loops"
    assert main(argv[:-2] + ["--epochs", "2", "--resume", "--model-kwargs",
                             "conv_method=loops"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--model-kwargs: {'conv_method': 'fft'} in config.json, {'conv_method': 'loops'} " \
           "now" in err
    # an option the builder does not take: refused with the list of valid ones, nothing written
    assert main([*_argv(data_dir, tmp_path / "bad", "--epochs", "1"), "--model-kwargs",
                 "kernel_size=5"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "has no option(s) 'kernel_size'; valid options: in_channels, num_classes, " \
           "dropout, seed, conv_method" in err
    assert not (tmp_path / "bad").exists()


def test_the_data_sets_image_size_reaches_a_model_with_a_flattened_head():
    data = {**DATA_OPTIONS, "image_size": 28}
    assert model_options(parse_config(["vgg16"]), models.options("vgg16"), data)["image_size"] == 28
    assert "image_size" not in model_options(parse_config(["lenet5"]), models.options("lenet5"),
                                             data)
    model = models.build("sfnet", width=4, hidden=8,
                         **model_options(parse_config(["sfnet"]), models.options("sfnet"), data))
    assert model(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
