"""LocalResponseNorm: gradient checks over window sizes, PyTorch agreement, bad arguments."""
import numpy as np
import pytest

from minidl import layers as L
from minidl.gradcheck import gradcheck_layer

TOL = 1e-6  # relative error of analytic vs centred-difference gradients in float64


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_gradcheck(size, rng):
    # Large alpha so the normalisation term matters (with 1e-4 the layer is nearly the identity).
    layer = L.LocalResponseNorm(size, alpha=0.5, beta=0.75, k=1.5)
    x = rng.standard_normal((2, 6, 3, 3))
    errors = gradcheck_layer(layer, x)
    assert set(errors) == {"x"}
    assert errors["x"] < TOL, errors


def test_window_wider_than_channels_and_1d_input(rng):
    layer = L.LocalResponseNorm(7, alpha=0.3, beta=0.5, k=1.0)
    assert gradcheck_layer(layer, rng.standard_normal((2, 3, 4)))["x"] < TOL


@pytest.mark.parametrize("size,alpha,beta,k", [(5, 5e-4, 0.75, 2.0), (4, 0.3, 0.6, 1.0),
                                               (3, 1.0, 1.2, 0.5)])
def test_matches_torch(size, alpha, beta, k, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 7, 5, 4))
    dout = rng.standard_normal(x.shape)
    layer = L.LocalResponseNorm(size, alpha, beta, k)
    out = layer(x)
    dx = layer.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.nn.LocalResponseNorm(size, alpha, beta, k)(xt)
    ref.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_float32_in_float32_out(rng):
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    layer = L.LocalResponseNorm(3)
    assert layer(x).dtype == np.float32
    assert layer.backward(np.ones_like(x)).dtype == np.float32


def test_bad_arguments_and_input():
    with pytest.raises(ValueError, match="size"):
        L.LocalResponseNorm(0)
    with pytest.raises(ValueError, match="k > 0"):
        L.LocalResponseNorm(5, k=0.0)
    with pytest.raises(TypeError, match="floating-point"):
        L.LocalResponseNorm(3)(np.ones((1, 3, 2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        L.LocalResponseNorm(3)(np.ones((4, 3)))
