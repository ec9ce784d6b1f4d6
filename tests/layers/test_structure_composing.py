"""SCLayer and MixedSCLayer (Chen, 2019): structure, gradients, and the paper's PyTorch listing."""
import numpy as np
import pytest

from minidl import backend
from minidl import layers as L
from minidl.gradcheck import gradcheck_layer

TOL = 1e-6  # relative error of analytic vs centred-difference gradients in float64


def _distinct(shape, rng):
    """Values 0.01 apart in random order: max-pool has no ties a finite difference could flip."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) * 0.01


def test_sclayer_structure(rng):
    layer = L.SCLayer(6, 10, rng=rng)
    assert [name for name, _ in layer.named_parameters()] == ["conv.weight", "conv.bias"]
    assert layer.conv.weight.shape == (10, 6, 1, 1)
    # A 1x1 convolution: 1/9 of the weights of the 3x3 convolution it replaces (the paper's claim).
    assert layer.num_parameters() == 10 * 6 + 10
    assert layer.pool.kernel_size == (3, 3) and layer.pool.stride == (1, 1)
    assert layer(rng.standard_normal((2, 6, 7, 5))).shape == (2, 10, 7, 5)
    assert L.SCLayer(6, 4, pool_size=5, rng=rng)(np.zeros((1, 6, 4, 4))).shape == (1, 4, 4, 4)


def test_mixed_sclayer_structure(rng):
    layer = L.MixedSCLayer(8, 20, rng=rng)  # conv_channels defaults to the paper's 16
    assert [name for name, _ in layer.named_parameters()] == [
        "conv.weight", "conv.bias", "sc.conv.weight", "sc.conv.bias"]
    assert layer.conv.weight.shape == (16, 8, 3, 3)
    assert layer.sc.conv.weight.shape == (4, 8, 1, 1)
    assert layer(rng.standard_normal((2, 8, 6, 6))).shape == (2, 20, 6, 6)
    layer.eval()
    assert not layer.conv.training and not layer.sc.pool.training


@pytest.mark.parametrize("make", [
    lambda rng: L.SCLayer(3, 4, rng=rng),
    lambda rng: L.SCLayer(2, 3, pool_size=5, rng=rng),
    lambda rng: L.MixedSCLayer(3, 5, conv_channels=2, rng=rng),
], ids=["sc", "sc-pool5", "mixed"])
def test_gradcheck(make, rng):
    layer = make(rng)
    errors = gradcheck_layer(layer, _distinct((2, layer.in_channels, 5, 5), rng))
    assert set(errors) == {"x"} | {name for name, _ in layer.named_parameters()}
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("mixed", [False, True], ids=["sc", "mixed"])
def test_matches_paper_pytorch_listing(mixed, rng):
    """The paper's listing: cat([Conv2d(in, 16, 3, 1, 1)(x), Conv2d(in, out - 16, 1)(
    MaxPool2d(3, 1, 1)(x))], 1); SCLayer is the second term alone."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    cin, cout = 4, 20
    layer = (L.MixedSCLayer(cin, cout, rng=rng) if mixed else L.SCLayer(cin, cout, rng=rng))
    layer.astype(np.float64)
    sc = layer.sc if mixed else layer
    sc_conv = nn.Conv2d(cin, sc.out_channels, 1, 1).double()
    avg_conv = nn.Conv2d(cin, 16, 3, 1, 1).double()
    with torch.no_grad():
        sc_conv.weight.copy_(torch.tensor(sc.conv.weight.data))
        sc_conv.bias.copy_(torch.tensor(sc.conv.bias.data))
        if mixed:
            avg_conv.weight.copy_(torch.tensor(layer.conv.weight.data))
            avg_conv.bias.copy_(torch.tensor(layer.conv.bias.data))

    def reference(x):
        z = sc_conv(nn.MaxPool2d(3, 1, 1)(x))
        return torch.cat([avg_conv(x), z], 1) if mixed else z

    x = rng.standard_normal((2, cin, 6, 5))
    out = layer(x)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    outt = reference(xt)
    outt.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, outt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sc.conv.weight.grad, sc_conv.weight.grad.numpy(), rtol=1e-10)
    if mixed:
        np.testing.assert_allclose(layer.conv.weight.grad, avg_conv.weight.grad.numpy(),
                                   rtol=1e-10)
        np.testing.assert_allclose(layer.conv.bias.grad, avg_conv.bias.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mixed", [False, True], ids=["sc", "mixed"])
def test_dtype_device_and_dout_untouched(xp, mixed, dtype, rng):
    layer = L.MixedSCLayer(3, 6, conv_channels=2, rng=rng) if mixed else L.SCLayer(3, 6, rng=rng)
    if xp is not np:
        layer.to("gpu")
    x = xp.asarray(rng.standard_normal((2, 3, 5, 5)).astype(dtype))
    out = layer(x)
    dout = xp.asarray(rng.standard_normal(out.shape).astype(dtype))
    kept = dout.copy()
    dx = layer.backward(dout)
    assert out.dtype == dtype and dx.dtype == dtype and dx.shape == x.shape
    assert backend.get_array_module(dx) is xp
    np.testing.assert_array_equal(backend.asnumpy(dout), backend.asnumpy(kept))


@pytest.mark.parametrize("cls", [L.SCLayer, L.MixedSCLayer])
def test_errors(cls, rng):
    name = cls.__name__
    layer = cls(3, 20, rng=rng)
    with pytest.raises(RuntimeError, match=f"(?s){name}.*backward called before forward"):
        layer.backward(np.zeros((1, 20, 4, 4)))
    with pytest.raises(ValueError, match=rf"(?s){name}.*expected 3 input channels.*\(1, 4, 5, 5\)"):
        layer(np.zeros((1, 4, 5, 5)))
    with pytest.raises(ValueError, match=rf"(?s){name}.*\(N, C, H, W\), got \(3, 5, 5\)"):
        layer(np.zeros((3, 5, 5)))
    with pytest.raises(ValueError, match=f"{name}: pool_size must be a positive odd int"):
        cls(3, 20, pool_size=2, rng=rng)


@pytest.mark.parametrize("conv_channels", [0, 8, 9])
def test_mixed_needs_channels_in_both_branches(conv_channels, rng):
    with pytest.raises(ValueError, match="MixedSCLayer: need 0 < conv_channels < out_channels"):
        L.MixedSCLayer(3, 8, conv_channels=conv_channels, rng=rng)
