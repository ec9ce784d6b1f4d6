"""The GPU path on the CPU, through the CuPy stand-in (tests/gpu_standin.py): a whole training
run with --device gpu equals the CPU run bit for bit, resumes exactly, and its training loop
reads the device once per step and copies only the batch to it.

These run on every machine (CI has no GPU); the xp fixture's ``standin`` half runs the layer
tests the same way, and ``pytest -m gpu`` runs the real CuPy cases where a GPU is present.
"""
import json

import numpy as np
import pytest

from minidl import backend, losses, models, optim, train
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


def _install_with_cpu_blocks(monkeypatch):
    """The stand-in GPU, with the conv's image blocks sized as on the CPU: blocks are sized per
    device, and the same size on both makes every sum run in the same order, so any other
    difference between the two paths shows as a bit flip."""
    install(monkeypatch)
    monkeypatch.setattr(conv_ops, "GPU_BLOCK_BYTES", conv_ops.CPU_BLOCK_BYTES)
    monkeypatch.setattr(conv_ops, "WINOGRAD_GPU_BLOCK_BYTES", conv_ops.WINOGRAD_CPU_BLOCK_BYTES)


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
    _install_with_cpu_blocks(monkeypatch)
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


@pytest.mark.parametrize("name", models.available())
def test_every_model_steps_on_the_device_as_on_the_cpu(name, monkeypatch):
    """Forward, backward and one Adam step of every registered model on the stand-in GPU give
    the CPU's numbers (same block sizes: same sums in the same order)."""
    monkeypatch.setenv("MINIDL_KERNELS", "numpy")
    size = {"image_size": 28} if "image_size" in models.options(name) else {}
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    y = np.array([1, 3])
    results = {}
    for device in ("cpu", "gpu"):
        if device == "gpu":
            _install_with_cpu_blocks(monkeypatch)
        model = models.build(name, in_channels=1, num_classes=4, seed=0, **size).to(device)
        opt, loss_fn = optim.Adam(model.parameters(), lr=1e-3), losses.CrossEntropyLoss()
        xb, yb = backend.to_device(x, device), backend.to_device(y, device)
        loss, _ = train.train_step(model, loss_fn, opt, xb, yb)
        results[device] = (float(loss), {k: backend.asnumpy(p.data)
                                         for k, p in model.named_parameters()})
        assert all(backend.device_of(p.data) == device for p in model.parameters())
    assert results["gpu"][0] == results["cpu"][0]
    for key, value in results["cpu"][1].items():
        np.testing.assert_array_equal(results["gpu"][1][key], value, err_msg=key)


def test_distillation_on_the_device_equals_the_cpu(data_dir, tmp_path, monkeypatch):
    """A student taught by a saved teacher (--teacher): the teacher is loaded onto the device."""
    monkeypatch.setenv("MINIDL_KERNELS", "numpy")

    def argv(out, device, *extra):
        return ["mlp", "--model-kwargs", "hidden=(32,)", "--data-dir", str(data_dir),
                "--out", str(out), "--batch-size", str(BATCH), "--epochs", "1",
                "--device", device, "--no-progress", "--no-plots", *extra]

    assert train.main(argv(tmp_path / "teacher", "cpu")) == 0
    student = ("--teacher", str(tmp_path / "teacher"), "--temperature", "4")
    assert train.main(argv(tmp_path / "cpu", "cpu", *student)) == 0
    install(monkeypatch)
    assert train.main(argv(tmp_path / "gpu", "gpu", *student)) == 0
    cpu, gpu = _state(tmp_path / "cpu"), _state(tmp_path / "gpu")
    for key, value in cpu.items():
        np.testing.assert_array_equal(gpu[key], value, err_msg=key)
    assert _losses(tmp_path / "gpu") == _losses(tmp_path / "cpu")


def _numbers(folder):
    """Every CSV/JSON result below ``folder`` except timings and paths: {relative path: text}."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".csv":
            rows = [line.split(",") for line in path.read_text().splitlines()]
            keep = [i for i, h in enumerate(rows[0]) if "seconds" not in h]
            found[str(path.relative_to(folder))] = [[r[i] for i in keep] for r in rows]
        elif path.suffix == ".json" and path.name not in ("config.json", "study_run.json"):
            values = json.loads(path.read_text())
            if isinstance(values, dict):
                values = {k: v for k, v in values.items()
                          if "seconds" not in k and k not in ("out", "run_dir", "path")}
            found[str(path.relative_to(folder))] = values
    return found


@pytest.mark.parametrize("study", ["sparsity", "bn-landscape"])
def test_a_study_with_device_side_analysis_runs_on_the_device_as_on_the_cpu(
        study, data_dir, tmp_path, monkeypatch):
    """The studies whose analysis touches device arrays (pruning masks, DessiLBI's Gamma,
    loss-landscape probes) give the CPU's numbers with --device gpu."""
    from coursework.__main__ import main as coursework
    monkeypatch.setenv("MINIDL_KERNELS", "numpy")
    common = ["run", study, "--quick", "--dataset", "fashion_mnist", "--data-dir",
              str(data_dir)]
    assert coursework([*common, "--out-root", str(tmp_path / "cpu")]) == 0
    _install_with_cpu_blocks(monkeypatch)
    assert coursework([*common, "--device", "gpu", "--out-root", str(tmp_path / "gpu")]) == 0
    cpu, gpu = _numbers(tmp_path / "cpu"), _numbers(tmp_path / "gpu")
    assert len(cpu) >= 4 and gpu == cpu
