"""python -m minidl.bench epoch (a Fashion-MNIST epoch, extrapolated from a few batches here)
and python -m minidl.bench profile (a training step's time per kind of op).

No timing is asserted: only that the reported figures follow from the measured ones, that
every contender trains the same network on the same batches, and that the command lines
refuse bad options by name.
"""
import json

import numpy as np
import pytest

from minidl.bench import cases, cli, epoch, profile
from tests.fake_data import write_fake_fashion_mnist

N_TRAIN, N_TEST = 100, 20          # 95 training and 5 validation images (val_fraction 0.05)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A tiny stand-in for Fashion-MNIST in its official file layout."""
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fashion"), N_TRAIN, N_TEST)


# ---------------------------------------------------------------------------- epoch
def test_whole_phase_counts_the_first_batch_once():
    assert epoch._whole([5.0, 1.0, 3.0], 10) == pytest.approx(5.0 + 2.0 * 9)
    assert epoch._whole([5.0, 1.0, 3.0], 3) == pytest.approx(9.0)   # all timed: their sum
    assert epoch._whole([2.0], 7) == pytest.approx(14.0)


def test_epoch_numpy_path_extrapolated(data_dir, tmp_path, capsys):
    out = tmp_path / "epoch.json"
    assert cli.main(["epoch", "--steps", "2", "--batch", "8", "--kernels", "numpy",
                     "--no-torch", "--data-dir", str(data_dir), "--json", str(out),
                     "--markdown", str(tmp_path / "epoch.md")]) == 0
    results = json.loads(out.read_text())
    assert results["full_batches"] == {"train": 12, "val": 1}   # 95 / 8 -> 12, 5 / 8 -> 1
    assert results["timed_batches"] == {"train": 2, "val": 1}
    assert results["extrapolated"] is True
    (row,) = results["rows"]
    assert row["contender"] == "minidl numpy" and row["x_torch"] is None
    assert row["x_torch_median_step"] is None
    train, val = row["train"], row["val"]
    assert train["batches"] == 2 and len(train["batch_seconds"]) == 2
    assert train["epoch_seconds"] == pytest.approx(epoch._whole(train["batch_seconds"], 12))
    assert val["epoch_seconds"] == pytest.approx(sum(val["batch_seconds"]))
    assert row["epoch_seconds"] == pytest.approx(train["epoch_seconds"] + val["epoch_seconds"])
    assert np.isfinite(train["loss"]) and 0 <= train["accuracy"] <= 1
    assert "| minidl numpy |" in capsys.readouterr().out
    assert "extrapolated to the epoch" in (tmp_path / "epoch.md").read_text()


@pytest.mark.slow
def test_epoch_contenders_train_the_same_network(data_dir, tmp_path):
    pytest.importorskip("torch")
    results = epoch.run(epoch.cross(["numpy", "auto"]), 1, True, False, 8, 1e-3, data_dir,
                        log=lambda m: None)
    rows = {r["contender"]: r for r in results["rows"]}
    assert set(rows) == {"minidl numpy", "minidl auto", "torch"}
    assert rows["torch"]["x_torch"] == pytest.approx(1.0)
    assert "val" not in rows["torch"]
    # the first step's loss is computed before any update: same weights, same batch
    losses = [r["train"]["loss"] for r in rows.values()]
    np.testing.assert_allclose(losses, losses[0], rtol=1e-4)
    for r in rows.values():
        assert r["x_torch"] == pytest.approx(r["epoch_seconds"] / rows["torch"]["epoch_seconds"])
        assert r["x_torch_median_step"] == pytest.approx(
            r["train"]["median_ms"] / rows["torch"]["train"]["median_ms"])
    table = epoch.markdown(results)
    assert "x torch (median step)" in table and "x torch (epoch)" in table
    numpy_row = next(line for line in table.splitlines() if line.startswith("| minidl numpy |"))
    assert f"{rows['minidl numpy']['x_torch_median_step']:.2f}x" in numpy_row


def test_epoch_times_each_conv_method_as_its_own_contender(data_dir):
    results = epoch.run(epoch.cross(["numpy"], ("im2col", "winograd")), 1, False, False, 8,
                        1e-3, data_dir, log=lambda m: None)
    rows = {r["contender"]: r for r in results["rows"]}
    assert set(rows) == {"minidl numpy im2col", "minidl numpy winograd"}
    assert results["model"] == "vgg38 --bn --residual --conv-method im2col | winograd"
    # the same initial weights and batch: the first loss agrees across algorithms
    assert rows["minidl numpy winograd"]["train"]["loss"] == pytest.approx(
        rows["minidl numpy im2col"]["train"]["loss"], rel=1e-4)


def test_contenders_are_pairs_or_the_cross_product():
    assert epoch.cross(["numpy", "auto"], ("im2col", "winograd")) == [
        ("numpy", "im2col"), ("auto", "im2col"), ("numpy", "winograd"), ("auto", "winograd")]
    assert epoch.parse_contender("auto/winograd") == ("auto", "winograd")
    # by default each kernel path runs the models' own default, conv method "auto"
    assert epoch.cross(["numpy", "auto"]) == [("numpy", "auto"), ("auto", "auto")]
    assert epoch.parser().parse_args([]).conv_method == ["auto"]


@pytest.mark.parametrize("args, message", [
    (["--conv-method", "loops"], "invalid choice: 'loops'"),
    (["--contenders", "auto/loops"], "contender 'auto/loops': expected KERNELS/METHOD"),
    (["--contenders", "gpu/im2col"], "contender 'gpu/im2col': expected KERNELS/METHOD"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--batch", "1"], "--batch must be at least 2"),
    (["--kernels", "fortran"], "invalid choice: 'fortran'"),
])
def test_epoch_command_line_errors_name_the_problem(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["epoch", *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------- profile
def test_profile_parts_add_up_to_the_step():
    case = cases.CASES["step"].with_batch(2)
    medians = profile.run(case, ["numpy"], repeats=1, with_torch=False, log=lambda m: None)
    parts = medians["minidl numpy"]
    for key in (("Conv2d", "fwd"), ("Conv2d", "bwd"), ("BatchNorm2d", "fwd"),
                ("BatchNorm2d", "bwd"), ("LeakyReLU", "fwd"), ("residual add", "fwd"),
                ("Adam", "step"), ("loss", "fwd+bwd")):
        assert parts[key] > 0, key
    total = parts[("total", "step")]
    inside = sum(v for k, v in parts.items() if k[0] != "total")
    # self times never overlap, and only the Python between the timers is left out
    assert 0.5 * total < inside <= total
    table = profile.table(medians)
    assert "| Conv2d | fwd |" in table and "| total | step |" in table


def test_profile_leaves_the_model_unwrapped():
    case = cases.CASES["step"].with_batch(2)
    model = case.build_model()
    with profile._LayerTimer(model):
        assert all("forward" in layer.__dict__ for _, layer in model.named_layers())
    assert not any("forward" in layer.__dict__ or "backward" in layer.__dict__
                   for _, layer in model.named_layers())


@pytest.mark.parametrize("name, expected", [
    ("aten::conv2d", ("Conv2d", "fwd")),
    ("autograd::engine::evaluate_function: ConvolutionBackward0", ("Conv2d", "bwd")),
    ("aten::batch_norm", ("BatchNorm2d", "fwd")),
    ("autograd::engine::evaluate_function: NativeBatchNormBackward0", ("BatchNorm2d", "bwd")),
    ("aten::leaky_relu", ("LeakyReLU", "fwd")),
    ("aten::add", ("residual add", "fwd")),
    ("Optimizer.step#Adam.step", ("Adam", "step")),
    ("Optimizer.zero_grad#Adam.zero_grad", ("zero_grad", "step")),
    ("aten::t", ("Linear", "fwd")),
])
def test_torch_events_fall_in_the_minidl_categories(name, expected):
    assert profile._torch_category(name) == expected


@pytest.mark.slow
def test_torch_profile_is_scaled_to_a_plain_step():
    pytest.importorskip("torch")
    case = cases.CASES["step"].with_batch(2)
    medians = profile.run(case, [], repeats=1, with_torch=True, log=lambda m: None)
    parts = medians["torch"]
    assert parts[("Conv2d", "fwd")] > 0 and parts[("Conv2d", "bwd")] > 0
    inside = sum(v for k, v in parts.items() if k[0] != "total")
    assert inside == pytest.approx(parts[("total", "step")])
