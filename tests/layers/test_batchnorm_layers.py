"""BatchNorm1d/2d: gradient checks in both modes, PyTorch agreement incl. running stats, state."""
import re

import numpy as np
import pytest

from minidl import backend
from minidl import layers as L
from minidl.gradcheck import gradcheck_layer

TOL = 1e-6  # relative error of analytic vs centred-difference gradients in float64
CASES = [(L.BatchNorm1d, (8, 3)), (L.BatchNorm2d, (3, 2, 4, 5))]
IDS = ["1d", "2d"]


def _randomise(layer, rng):
    """Non-trivial affine parameters and running statistics, so no term is hidden by 1s and 0s."""
    C = layer.num_features
    layer.weight.data = rng.uniform(0.5, 1.5, C).astype(np.float32)
    layer.bias.data = rng.standard_normal(C).astype(np.float32)
    layer.running_mean = rng.standard_normal(C).astype(np.float32)
    layer.running_var = rng.uniform(0.5, 2.0, C).astype(np.float32)
    return layer


def _input(shape, rng):
    # A per-channel offset and scale, as real activations have.
    C = shape[1]
    bshape = (1, C) + (1,) * (len(shape) - 2)
    return rng.standard_normal(shape) * rng.uniform(0.5, 3, C).reshape(bshape) \
        + rng.standard_normal(C).reshape(bshape)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls,shape", CASES, ids=IDS)
def test_gradcheck(cls, shape, training, rng):
    layer = _randomise(cls(shape[1]), rng).train(training)
    errors = gradcheck_layer(layer, _input(shape, rng))
    assert set(errors) == {"x", "weight", "bias"}
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("cls,shape", CASES, ids=IDS)
def test_matches_pytorch_train_steps_then_eval(cls, shape, rng):
    torch = pytest.importorskip("torch")
    C = shape[1]
    layer = _randomise(cls(C, eps=1e-3, momentum=0.2), rng).astype(np.float64)
    ref = getattr(torch.nn, cls.__name__)(C, eps=1e-3, momentum=0.2).double()
    with torch.no_grad():
        for name in ("weight", "bias"):
            getattr(ref, name).copy_(torch.tensor(getattr(layer, name).data))
        ref.running_mean.copy_(torch.tensor(layer.running_mean))
        ref.running_var.copy_(torch.tensor(layer.running_var))
    for _ in range(3):  # several steps, so the running-statistics recurrence is exercised
        x = _input(shape, rng)
        dout = rng.standard_normal(shape)
        layer.zero_grad()
        out = layer(x)
        dx = layer.backward(dout)
        xt = torch.tensor(x, requires_grad=True)
        ref.zero_grad()
        outt = ref(xt)
        outt.backward(torch.tensor(dout))
        np.testing.assert_allclose(out, outt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(layer.weight.grad, ref.weight.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(layer.bias.grad, ref.bias.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(layer.running_mean, ref.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, ref.running_var.numpy(), rtol=1e-12)

    layer.eval()
    ref.eval()
    x = _input(shape, rng)
    dout = rng.standard_normal(shape)
    out, dx = layer(x), layer.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    outt = ref(xt)
    outt.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, outt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_running_stats_formula_and_eval_leaves_them(rng):
    layer = L.BatchNorm2d(2, momentum=0.1)
    x = _input((4, 2, 3, 3), rng)
    layer(x)
    m = 4 * 3 * 3
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)) * m / (m - 1)  # unbiased
    np.testing.assert_allclose(layer.running_mean, 0.1 * mean, rtol=1e-6)
    np.testing.assert_allclose(layer.running_var, 0.9 + 0.1 * var, rtol=1e-6)
    kept = layer.state_dict()
    layer.eval()(x)
    np.testing.assert_array_equal(layer.running_mean, kept["running_mean"])
    np.testing.assert_array_equal(layer.running_var, kept["running_var"])


def test_train_output_is_normalised(rng):
    out = L.BatchNorm2d(3)(_input((6, 3, 4, 4), rng))
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, rtol=1e-4)  # eps shrinks it slightly


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls,shape", CASES, ids=IDS)
def test_dtype_follows_input_buffers_stay_float32(xp, cls, shape, training, dtype, rng):
    layer = cls(shape[1]).train(training)
    if xp is not np:
        layer.to("gpu")
    x = xp.asarray(_input(shape, rng).astype(dtype))
    out = layer(x)
    dx = layer.backward(xp.ones(shape, dtype=dtype))
    assert out.dtype == dtype and dx.dtype == dtype
    assert backend.get_array_module(out) is xp and backend.get_array_module(dx) is xp
    for array in (layer.running_mean, layer.running_var, layer.weight.data, layer.weight.grad):
        assert array.dtype == np.float32 and backend.get_array_module(array) is xp


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls,shape", CASES, ids=IDS)
def test_dout_not_mutated_and_grads_accumulate(cls, shape, training, rng):
    layer = _randomise(cls(shape[1]), rng).astype(np.float64).train(training)
    x = _input(shape, rng)
    dout = rng.standard_normal(shape)
    kept = dout.copy()
    layer(x)
    layer.backward(dout)
    np.testing.assert_array_equal(dout, kept)
    once = layer.weight.grad.copy(), layer.bias.grad.copy()
    layer.backward(dout)
    np.testing.assert_allclose(layer.weight.grad, 2 * once[0])
    np.testing.assert_allclose(layer.bias.grad, 2 * once[1])


@pytest.mark.parametrize("cls,shape", CASES, ids=IDS)
def test_state_dict_round_trip(cls, shape, rng):
    layer = cls(shape[1])
    for _ in range(3):
        layer(_input(shape, rng))
    layer.weight.data = layer.weight.data + rng.standard_normal(shape[1]).astype(np.float32)
    state = layer.state_dict()
    assert list(state) == ["weight", "bias", "running_mean", "running_var"]
    fresh = cls(shape[1])
    fresh.load_state_dict(state)
    x = _input(shape, rng).astype(np.float32)
    np.testing.assert_array_equal(fresh.eval()(x), layer.eval()(x))
    assert not np.array_equal(cls(shape[1]).eval()(x), layer(x))  # the state mattered


@pytest.mark.parametrize("cls,shape", CASES, ids=IDS)
def test_errors(cls, shape):
    name = cls.__name__
    layer = cls(shape[1])
    with pytest.raises(RuntimeError, match=f"{name}.*backward called before forward"):
        layer.backward(np.zeros(shape))
    wrong_rank = (2, 3, 4) if len(shape) == 2 else (2, 3)
    rank_msg = rf"{name}.*expected input of shape.*got {re.escape(str(wrong_rank))}"
    with pytest.raises(ValueError, match=rank_msg):
        layer(np.zeros(wrong_rank))
    bad_channels = (shape[0], shape[1] + 1) + shape[2:]
    with pytest.raises(ValueError, match=rf"{name}.*expected {shape[1]} input channels"):
        layer(np.zeros(bad_channels))
    single = (1, shape[1]) + (1,) * (len(shape) - 2)
    with pytest.raises(ValueError, match=f"{name}.*more than 1 value per channel.*"
                                         r"batches of 2 or more.*\.eval\(\)"):
        layer(np.zeros(single))
    layer.eval()(np.zeros(single))  # a single sample is fine with running statistics
    with pytest.raises(TypeError, match=f"{name}.*floating-point array"):
        layer(np.zeros(shape, dtype=np.int64))


def test_one_image_has_enough_values_per_channel(rng):
    # BatchNorm2d's statistics run over N*H*W: a batch of one 2x2 image has 4 values each.
    layer = L.BatchNorm2d(3)
    out = layer(_input((1, 3, 2, 2), rng))
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)


@pytest.mark.parametrize("kwargs,match", [({"num_features": 0}, "num_features"),
                                          ({"num_features": 3, "eps": 0}, "eps"),
                                          ({"num_features": 3, "momentum": 1.5}, "momentum")])
def test_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=f"BatchNorm2d.*{match}"):
        L.BatchNorm2d(**kwargs)
