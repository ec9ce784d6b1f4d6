"""A backward pass through every model reaches every parameter, and a gradient check of a
tiny vgg-style network with BatchNorm and residual blocks proves the block wiring."""
import numpy as np
import pytest

from minidl import models
from minidl.gradcheck import gradcheck_layer
from minidl.layers import BatchNorm1d, BatchNorm2d, Sequential


def _biases_cancelled_by_batchnorm(model):
    """Parameters whose gradient is zero in exact arithmetic: biases of a layer that a
    BatchNorm follows directly (the normalisation subtracts any per-channel constant)."""
    cancelled = set()
    for _, layer in model.named_layers():
        if not isinstance(layer, Sequential):
            continue
        children = list(layer)
        for before, after in zip(children, children[1:]):
            if isinstance(after, (BatchNorm1d, BatchNorm2d)):
                cancelled |= {id(p) for n, p in before.named_parameters() if n.endswith("bias")}
    return cancelled


@pytest.mark.parametrize("name", models.available())
def test_backward_reaches_every_parameter(name, small):
    size = {"image_size": 32} if "image_size" in models.options(name) else {}
    model = models.build(name, in_channels=3, num_classes=5, **size,
                         **small[name]).astype(np.float64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 32, 32))
    y = model(x)
    model.zero_grad()
    dx = model.backward(rng.standard_normal(y.shape))
    assert dx.shape == x.shape and np.linalg.norm(dx) > 0

    cancelled = _biases_cancelled_by_batchnorm(model)
    norms = {n: float(np.linalg.norm(p.grad)) for n, p in model.named_parameters()}
    assert all(np.isfinite(v) for v in norms.values())
    scale = max(norms.values())
    for n, p in model.named_parameters():
        assert p.grad.shape == p.data.shape, n
        if id(p) in cancelled:
            assert norms[n] <= 1e-9 * scale, f"{name}: {n} should cancel under BatchNorm"
        else:
            assert norms[n] > 0, f"{name}: no gradient reached {n}"


def test_backward_accumulates_across_calls(small):
    model = models.build("vgg38", **small["vgg38"]).astype(np.float64)
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16))
    dout = np.ones((2, 100))
    model.zero_grad()
    model(x)
    model.backward(dout)
    once = [p.grad.copy() for p in model.parameters()]
    model(x)
    model.backward(dout)
    for g1, p in zip(once, model.parameters()):
        np.testing.assert_allclose(p.grad, 2 * g1, rtol=1e-12, atol=1e-15)


def test_backward_before_forward_raises():
    with pytest.raises(RuntimeError, match="before forward"):
        models.build("resnet18", width=2).backward(np.ones((2, 10)))


@pytest.mark.parametrize("options", [dict(bn=True, residual=True), dict(bn=False, residual=True)],
                         ids=["bn+res", "res"])
def test_gradcheck_tiny_vgg(options):
    # 2 stages of (1 processing block + reduction), 3 filters, 8x8 input -> 2x2 before pooling.
    model = models.build("vgg38", in_channels=2, num_classes=3, num_filters=3,
                         num_blocks_per_stage=1, num_stages=2, seed=5, **options)
    x = np.random.default_rng(3).standard_normal((2, 2, 8, 8))
    errors = gradcheck_layer(model, x, seed=4)
    assert len(errors) == 1 + len(model.parameters())
    # A bias that BatchNorm cancels has a zero gradient both ways, so its relative error is
    # noise over noise: check that the analytic one is zero instead.
    cancelled = _biases_cancelled_by_batchnorm(model)
    for n, p in model.named_parameters():
        if id(p) in cancelled:
            assert np.abs(p.grad).max() < 1e-10, n
            del errors[n]
    assert len(cancelled) == (2 * 2 if options["bn"] else 0)  # the reduction blocks' convs
    # leaky ReLU has a kink at 0, but no pre-activation lands within eps=1e-6 of it here
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: {errors[worst]:.2e}"


def test_gradcheck_vgg_without_a_pool_on_1x1_and_with_the_flattened_head():
    # Three scales on a 4x4 input: 4 -> 2 -> 1, the third scale keeps its 1x1 map unpooled.
    # (A whole vgg16 at this width is too deep for the check: its gradient with respect to x
    # vanishes below the finite differences' rounding noise.)
    from minidl.models.vgg import VGG, M

    model = VGG((4, M, 4, M, 4, M), in_channels=1, num_classes=3, hidden=5, image_size=4,
                activation="tanh", seed=2)
    assert "pool" not in dict(model.features[2].named_children())
    x = np.random.default_rng(8).standard_normal((2, 1, 4, 4))
    errors = gradcheck_layer(model, x, seed=9)
    assert len(errors) == 1 + len(model.parameters())
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: {errors[worst]:.2e}"
