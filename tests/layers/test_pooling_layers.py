"""MaxPool2d, AvgPool2d, GlobalAvgPool2d: gradient checks, PyTorch agreement, dtypes, errors."""
import numpy as np
import pytest

from minidl import backend
from minidl import layers as L
from minidl.gradcheck import gradcheck_layer

TOL = 1e-6  # relative error of analytic vs centred-difference gradients in float64
GEOMETRIES = [(3, 1, 0), (3, 1, 1), (3, 2, 1), (2, 2, 0), (2, None, 0)]


def _distinct(shape, rng):
    """Values 0.01 apart in random order: no ties, nor near-ties a finite difference could flip."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) * 0.01


@pytest.mark.parametrize("k,s,p", GEOMETRIES)
@pytest.mark.parametrize("cls", [L.MaxPool2d, L.AvgPool2d])
def test_gradcheck(cls, k, s, p, rng):
    errors = gradcheck_layer(cls(k, s, p), _distinct((2, 2, 6, 7), rng))
    assert errors["x"] < TOL, errors


def test_gradcheck_global_avgpool(rng):
    errors = gradcheck_layer(L.GlobalAvgPool2d(), rng.standard_normal((2, 3, 4, 5)))
    assert errors["x"] < TOL, errors


@pytest.mark.parametrize("k,s,p", GEOMETRIES)
@pytest.mark.parametrize("name", ["MaxPool2d", "AvgPool2d"])
def test_matches_pytorch(name, k, s, p, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 4, 9, 8))
    layer = getattr(L, name)(k, s, p)
    out = layer(x)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    outt = getattr(torch.nn, name)(k, s, p)(xt)
    outt.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, outt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_global_avgpool_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 4, 5, 6))
    layer = L.GlobalAvgPool2d()
    out = layer(x)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    outt = torch.nn.functional.adaptive_avg_pool2d(xt, 1).flatten(1)
    outt.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, outt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [lambda: L.MaxPool2d(3, 2, 1), lambda: L.AvgPool2d(2),
                                  L.GlobalAvgPool2d])
def test_dtype_and_device_follow_input(xp, make, dtype, rng):
    layer = make()
    x = xp.asarray(rng.standard_normal((2, 3, 6, 6)).astype(dtype))
    out = layer(x)
    dx = layer.backward(xp.ones(out.shape, dtype=dtype))
    assert out.dtype == dtype and dx.dtype == dtype and dx.shape == x.shape
    assert backend.get_array_module(out) is xp and backend.get_array_module(dx) is xp


@pytest.mark.parametrize("make", [lambda: L.MaxPool2d(3, 1, 1), lambda: L.AvgPool2d(3, 2, 1),
                                  L.GlobalAvgPool2d])
def test_dout_not_mutated(make, rng):
    layer = make()
    out = layer(rng.standard_normal((2, 3, 5, 5)))
    dout = rng.standard_normal(out.shape)
    kept = dout.copy()
    layer.backward(dout)
    np.testing.assert_array_equal(dout, kept)


@pytest.mark.parametrize("make", [lambda: L.MaxPool2d(2), lambda: L.AvgPool2d(2),
                                  L.GlobalAvgPool2d])
def test_errors(make):
    layer = make()
    name = type(layer).__name__
    with pytest.raises(RuntimeError, match=f"{name}.*backward called before forward"):
        layer.backward(np.zeros((1, 1, 1, 1)))
    with pytest.raises(ValueError, match=rf"{name}.*\(N, C, H, W\), got \(2, 3, 4\)"):
        layer(np.zeros((2, 3, 4)))


def test_kernel_too_big_names_layer():
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=\(5, 5\).*larger than the "
                                         r"padded input \(4, 4\).*\(1, 2, 4, 4\)"):
        L.MaxPool2d(5)(np.zeros((1, 2, 4, 4)))


@pytest.mark.parametrize("cls", [L.MaxPool2d, L.AvgPool2d])
def test_bad_padding_rejected_at_construction(cls):
    with pytest.raises(ValueError, match=f"{cls.__name__}.*at most half the kernel"):
        cls(2, padding=2)


def test_stride_defaults_to_kernel_and_output_shape():
    layer = L.MaxPool2d(2)
    assert layer.stride == (2, 2)
    assert layer.output_shape((4, 3, 32, 32)) == (4, 3, 16, 16)
    assert L.AvgPool2d(3, 2, 1).output_shape((1, 1, 7, 7)) == (1, 1, 4, 4)
    assert layer.num_parameters() == 0 and layer.state_dict() == {}


def test_max_ties_match_pytorch():
    # A constant input makes every window a tie: both send the gradient to the first maximum.
    torch = pytest.importorskip("torch")
    layer = L.MaxPool2d(3, 1, 1)
    layer(np.ones((1, 1, 4, 4)))
    dx = layer.backward(np.ones((1, 1, 4, 4)))
    xt = torch.ones((1, 1, 4, 4), dtype=torch.float64, requires_grad=True)
    torch.nn.functional.max_pool2d(xt, 3, 1, 1).sum().backward()
    np.testing.assert_array_equal(dx, xt.grad.numpy())
