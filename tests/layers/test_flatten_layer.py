"""Flatten: shapes, values, gradient check, dtypes and errors."""
import numpy as np
import pytest

from minidl import layers as L
from minidl.gradcheck import gradcheck_layer

GRAD_TOL = 1e-6


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 7), (2, 1, 1, 1), (0, 3, 4)])
def test_forward_backward_shapes(shape):
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    layer = L.Flatten()
    y = layer(x)
    assert y.shape == (shape[0], int(np.prod(shape[1:])))
    np.testing.assert_array_equal(y, x.reshape(y.shape))  # C order, as torch.flatten(x, 1)
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == shape


def test_gradcheck():
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2))
    assert gradcheck_layer(L.Flatten(), x)["x"] < GRAD_TOL


def test_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    dout = rng.standard_normal((2, 60)).astype(np.float32)
    layer = L.Flatten()
    y, dx = layer(x), layer.backward(dout)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = torch.nn.Flatten()(xt)
    yt.backward(torch.from_numpy(dout))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx, xt.grad.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_device(xp, dtype):
    x = xp.ones((2, 3, 4), dtype=dtype)
    layer = L.Flatten()
    y = layer(x)
    assert y.dtype == dtype and type(y) is type(x)
    assert layer.backward(y).dtype == dtype


def test_errors():
    layer = L.Flatten()
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Flatten\(\): expected input of shape \(N, \.\.\.\)"
                                         r".*got \(5,\)"):
        layer(np.ones(5))
    with pytest.raises(ValueError, match="got list"):
        layer([[1.0]])
    layer(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"expected dout of shape \(2, 12\), got \(2, 3, 4\)"):
        layer.backward(np.ones((2, 3, 4)))
