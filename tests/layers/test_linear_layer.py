"""Linear: gradient check, PyTorch agreement, init, dtypes, accumulation and input errors."""
import re

import numpy as np
import pytest

from minidl import layers as L
from minidl.gradcheck import gradcheck_layer, rel_error

GRAD_TOL = 1e-6  # centred differences in float64 on a smooth (bilinear) map


@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(bias):
    rng = np.random.default_rng(0)
    layer = L.Linear(5, 4, bias=bias, rng=np.random.default_rng(1))
    errors = gradcheck_layer(layer, rng.standard_normal((3, 5)))
    assert set(errors) == ({"x", "weight", "bias"} if bias else {"x", "weight"})
    assert max(errors.values()) < GRAD_TOL, errors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch_forward_and_backward(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    layer = L.Linear(7, 3).astype(dtype)
    ref = torch.nn.Linear(7, 3).to(getattr(torch, np.dtype(dtype).name))
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(layer.weight.data))
        ref.bias.copy_(torch.from_numpy(layer.bias.data))
    x = rng.standard_normal((6, 7)).astype(dtype)
    dout = rng.standard_normal((6, 3)).astype(dtype)

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = ref(xt)
    yt.backward(torch.from_numpy(dout))
    y = layer(x)
    dx = layer.backward(dout)

    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert rel_error(y, yt.detach().numpy()) < tol
    assert rel_error(dx, xt.grad.numpy()) < tol
    assert rel_error(layer.weight.grad, ref.weight.grad.numpy()) < tol
    assert rel_error(layer.bias.grad, ref.bias.grad.numpy()) < tol


def test_pytorch_default_init():
    fan_in = 400
    layer = L.Linear(fan_in, 300, rng=np.random.default_rng(0))
    bound = 1 / np.sqrt(fan_in)
    assert layer.weight.shape == (300, fan_in) and layer.bias.shape == (300,)
    assert layer.weight.data.dtype == np.float32 and layer.bias.data.dtype == np.float32
    assert np.abs(layer.weight.data).max() <= bound
    assert np.abs(layer.bias.data).max() <= bound
    # U(-b, b) has variance b^2 / 3; 120k samples pin it to well within 2%.
    assert abs(layer.weight.data.var() / (bound ** 2 / 3) - 1) < 0.02
    same = L.Linear(fan_in, 300, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(layer.weight.data, same.weight.data)
    np.testing.assert_array_equal(layer.bias.data, same.bias.data)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_follows_input(xp, dtype):
    layer = L.Linear(4, 2).to("gpu" if xp is not np else "cpu")
    x = xp.asarray(np.random.default_rng(0).standard_normal((3, 4)), dtype=dtype)
    y = layer(x)
    assert y.dtype == dtype and type(y) is type(x)
    dx = layer.backward(xp.ones_like(y))
    assert dx.dtype == dtype
    assert layer.weight.grad.dtype == np.float32  # parameters keep their own dtype


def test_backward_accumulates_and_keeps_dout():
    rng = np.random.default_rng(0)
    layer = L.Linear(4, 3)
    x, dout = rng.standard_normal((2, 4)), rng.standard_normal((2, 3))
    dout_copy = dout.copy()
    layer(x)
    layer.backward(dout)
    first_w, first_b = layer.weight.grad.copy(), layer.bias.grad.copy()
    layer.backward(dout)
    np.testing.assert_allclose(layer.weight.grad, 2 * first_w, rtol=1e-6)
    np.testing.assert_allclose(layer.bias.grad, 2 * first_b, rtol=1e-6)
    np.testing.assert_array_equal(dout, dout_copy)


def test_no_bias():
    layer = L.Linear(3, 2, bias=False)
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    x = np.ones((1, 3), np.float32)
    np.testing.assert_allclose(layer(x), x @ layer.weight.data.T)
    assert "bias=False" in repr(layer)


@pytest.mark.parametrize("shape", [(4,), (2, 3), (2, 4, 1)])
def test_bad_input_names_layer_and_shapes(shape):
    layer = L.Linear(4, 2)
    got = re.escape(str(shape))
    expected = r"Linear\(in_features=4.*expected input of shape \(N, 4\), got "
    with pytest.raises(ValueError, match=expected + got):
        layer(np.zeros(shape, np.float32))


def test_bad_dout_shape_and_order():
    layer = L.Linear(4, 2)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((3, 2)))
    layer(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"expected dout of shape \(3, 2\), got \(3, 4\)"):
        layer.backward(np.zeros((3, 4)))


@pytest.mark.parametrize("args", [(0, 3), (3, -1), (2.5, 3), ("3", 3), (True, 3)])
def test_bad_hyper_parameters(args):
    with pytest.raises(ValueError, match="Linear"):
        L.Linear(*args)


def test_numpy_integer_sizes_accepted():
    layer = L.Linear(np.int64(3), np.int32(2))
    assert layer.weight.shape == (2, 3) and isinstance(layer.in_features, int)
