"""The GPU path on the CPU, through the CuPy stand-in (tests/gpu_standin.py): a whole training
run with --device gpu equals the CPU run bit for bit, resumes exactly, and its training loop
reads the device once per step and copies only the batch to it.

These run on every machine (CI has no GPU); the xp fixture's ``standin`` half runs the layer
tests the same way, and ``pytest -m gpu`` runs the real CuPy cases where a GPU is present.
"""
import json

import numpy as np
import pytest

from minidl import train
from minidl.functional import conv as conv_ops
from tests.fake_data import write_fake_fashion_mnist
from tests.gpu_standin import install

BATCH, N_TRAIN = 20, 120


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fashion"), n_train=N_TRAIN)


def _argv(data_dir, out, device, epochs=2, *extra):
    # vgg08 with BatchNorm, dropout and every augmentation: each draws or keeps state. Momentum
    # SGD, not Adam: Adam would scale the ~0 gradients of the conv biases that BatchNorm
    # follows up to full steps, rounding noise included, and CPU and GPU would drift apart.
    return ["vgg08", "--bn", "--dropout", "0.3", "--augment", "crop,flip,erase",
            "--optimizer", "momentum", "--lr", "0.05",
            "--conv-method", "im2col", "--data-dir", str(data_dir), "--out", str(out),
            "--val-fraction", "0.2", "--batch-size", str(BATCH), "--epochs", str(epochs),
            "--device", device, "--no-progress", "--no-plots", *extra]


def _state(out):
    """The checkpoint's arrays: model, optimiser, RNG and progress (not its config text)."""
    with np.load(out / "checkpoints" / "latest.npz") as f:
        return {k: f[k] for k in f.files if f[k].dtype.kind not in "USO"}


def _losses(out):
    lines = (out / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, h in enumerate(header) if "loss" in h or "acc" in h]
    return [[row.split(",")[i] for i in keep] for row in lines[1:]]


def test_a_gpu_run_equals_the_cpu_run_and_resumes_exactly(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIDL_KERNELS", "numpy")  # the stand-in's path: the same NumPy ops
    assert train.main(_argv(data_dir, tmp_path / "cpu", "cpu")) == 0
    install(monkeypatch)
    # the conv's image blocks are sized per device; the same size on both makes every sum
    # run in the same order, so any other difference between the paths shows as a bit flip
    monkeypatch.setattr(conv_ops, "GPU_BLOCK_BYTES",
                        conv_ops.CPU_BLOCK_BYTES[conv_ops.blas_threaded()])
    assert train.main(_argv(data_dir, tmp_path / "gpu", "gpu")) == 0
    assert train.main(_argv(data_dir, tmp_path / "half", "gpu", 1)) == 0
    assert train.main(_argv(data_dir, tmp_path / "half", "gpu", 2, "--resume")) == 0
    assert json.loads((tmp_path / "gpu" / "config.json").read_text())["device"] == "gpu"
    cpu = _state(tmp_path / "cpu")
    for run in ("gpu", "half"):
        state = _state(tmp_path / run)
        assert state.keys() == cpu.keys()
        for key, value in cpu.items():
            np.testing.assert_array_equal(state[key], value, err_msg=f"{run}: {key}")
        assert _losses(tmp_path / run) == _losses(tmp_path / "cpu")


def test_the_training_loop_reads_the_device_once_per_step(data_dir, tmp_path, monkeypatch):
    reads = install(monkeypatch)
    marks = []
    step = train.train_step

    def marked_step(*args, **kwargs):
        marks.append((reads.count, reads.copies_in))
        return step(*args, **kwargs)

    monkeypatch.setattr(train, "train_step", marked_step)
    assert train.main(_argv(data_dir, tmp_path / "run", "gpu", 1)) == 0
    steps = int(N_TRAIN * 0.8) // BATCH
    assert len(marks) >= steps - 1
    between = [(r2 - r1, c2 - c1) for (r1, c1), (r2, c2) in zip(marks, marks[1:])]
    # one read (the running loss/accuracy) and two copies in (the batch's x and y) per step:
    # no target range check, no dropout mask, no augmentation array crosses per step
    assert between == [(1, 2)] * len(between), between


def test_mixing_host_and_device_arrays_is_refused_as_on_cupy(monkeypatch):
    from tests.gpu_standin import CUPY
    install(monkeypatch)
    with pytest.raises(TypeError, match="Unsupported type"):
        CUPY.ones(3) + np.ones(3)
