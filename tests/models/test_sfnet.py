"""sfnet's structure composing layers as the preprint's listing builds them: MixedSCLayer's conv
branch takes the layer's kernel size (``kernel_size`` of both ``avg_conv`` and the max pool);
``conv_kernel_size=3`` / sfnet's ``mixed_conv_kernel=3`` keep minidl's earlier fixed 3x3."""
import numpy as np
import pytest

from minidl import layers as L
from minidl import models
from minidl.gradcheck import gradcheck_layer


def _distinct(shape, rng):
    """Values 0.01 apart in random order: no max-pool ties a finite difference could flip."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) * 0.01


def test_conv_branch_follows_the_pool_size_and_the_named_option_keeps_3x3():
    rng = np.random.default_rng(0)
    paper = L.MixedSCLayer(4, 20, pool_size=5, rng=rng)
    assert paper.conv.kernel_size == (5, 5) and paper.conv.padding == (2, 2)
    assert paper.sc.pool.kernel_size == (5, 5)
    fixed = L.MixedSCLayer(4, 20, pool_size=5, conv_kernel_size=3, rng=rng)
    assert fixed.conv.kernel_size == (3, 3) and fixed.conv.padding == (1, 1)
    # at the paper's (and sfnet's) pool_size=3 the two are the same layer
    a = L.MixedSCLayer(4, 20, rng=np.random.default_rng(1))
    b = L.MixedSCLayer(4, 20, conv_kernel_size=3, rng=np.random.default_rng(1))
    x = rng.standard_normal((2, 4, 6, 6))
    np.testing.assert_array_equal(a(x), b(x))
    assert paper.num_parameters() == 16 * 4 * 25 + 16 + 4 * 4 + 4
    assert paper(x).shape == fixed(x).shape == (2, 20, 6, 6)


@pytest.mark.parametrize("value", [4, 0, -3, 2.0, True, "3"])
def test_bad_conv_kernel_size_is_refused_by_name(value):
    with pytest.raises(ValueError, match="MixedSCLayer: conv_kernel_size must be None"):
        L.MixedSCLayer(4, 20, conv_kernel_size=value)


def test_matches_the_papers_listing_at_kernel_5():
    """The listing's ``MixedSCLayer(input_ch, output_ch, kernel_size=5, stride=1)``:
    ``cat([Conv2d(in, 16, 5)(x), Conv2d(in, out - 16, 1)(MaxPool2d(5, 1)(x))], 1)``, with the
    padding that keeps H and W (the listing's fixed padding=1 fits kernel 3 only)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    rng = np.random.default_rng(2)
    layer = L.MixedSCLayer(4, 20, pool_size=5, rng=rng).astype(np.float64)
    avg_conv = nn.Conv2d(4, 16, 5, 1, 2).double()
    sc_conv = nn.Conv2d(4, 4, 1, 1).double()
    with torch.no_grad():
        for mine, theirs in ((layer.conv, avg_conv), (layer.sc.conv, sc_conv)):
            theirs.weight.copy_(torch.tensor(mine.weight.data))
            theirs.bias.copy_(torch.tensor(mine.bias.data))
    x = _distinct((2, 4, 7, 6), rng)
    out = layer(x)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.cat([avg_conv(xt), sc_conv(nn.MaxPool2d(5, 1, 2)(xt))], 1)
    ref.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.conv.weight.grad, avg_conv.weight.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("conv_kernel_size", [None, 3], ids=["paper-5x5", "fixed-3x3"])
def test_gradcheck_mixed_sclayer_at_pool_size_5(conv_kernel_size):
    rng = np.random.default_rng(3)
    layer = L.MixedSCLayer(3, 6, pool_size=5, conv_channels=2, conv_kernel_size=conv_kernel_size,
                           rng=rng).astype(np.float64)
    errors = gradcheck_layer(layer, _distinct((2, 3, 6, 5), rng), seed=4)
    assert len(errors) == 5  # x and four parameters
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: {errors[worst]:.2e}"


def test_sfnet_mixed_conv_kernel_reaches_both_mixed_layers():
    paper = models.build("sfnet", width=4, hidden=8, mixed_channels=4, pool_size=5)
    fixed = models.build("sfnet", width=4, hidden=8, mixed_channels=4, pool_size=5,
                         mixed_conv_kernel=3)
    for scale in (3, 4):
        assert paper.features[scale].mixed1.conv.kernel_size == (5, 5)
        assert fixed.features[scale].mixed1.conv.kernel_size == (3, 3)
    # 16 more weights per conv-branch filter and input channel: 4 filters, 16 then 32 inputs
    assert paper.num_parameters() - fixed.num_parameters() == (25 - 9) * 4 * (16 + 32)


def test_sfnet_is_table_1():
    """Five scales closing with 2x2 max pools, [conv, BN, ReLU] everywhere, scales 4 and 5 one
    MixedSCLayer (16 conv channels, 3x3) and two SCLayers, [FC-1024, BN, ReLU] x 2, FC-10."""
    model = models.build("sfnet")
    kinds = [[type(m).__name__ for _, m in scale.named_children()] for scale in model.features]
    conv_block = ["Conv2d", "BatchNorm2d", "ReLU"]
    assert kinds[0] == kinds[1] == conv_block * 2 + ["MaxPool2d"]
    assert kinds[2] == conv_block * 3 + ["MaxPool2d"]
    sc_scale = ["MixedSCLayer", "BatchNorm2d", "ReLU"] + ["SCLayer", "BatchNorm2d", "ReLU"] * 2
    assert kinds[3] == kinds[4] == sc_scale + ["MaxPool2d"]
    mixed = model.features[3].mixed1
    assert (mixed.conv_channels, mixed.pool_size, mixed.conv.kernel_size) == (16, 3, (3, 3))
    assert [type(m).__name__ for _, m in model.classifier.named_children()] == [
        "Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    assert model.classifier.fc1.in_features == 512  # 32 -> 1x1 after five pools
