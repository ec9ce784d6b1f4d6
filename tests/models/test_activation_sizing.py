"""Every model that takes ``activation`` sizes the layer after an activation from the
activation's ``channel_multiplier``: with CReLU (x2) each such layer takes twice the channels,
and the network runs forward and backward."""
import numpy as np
import pytest

from minidl import layers as L
from minidl import models

TAKES_ACTIVATION = [n for n in models.available() if "activation" in models.options(n)]


def test_every_model_takes_an_activation():
    assert set(TAKES_ACTIVATION) == set(models.available())


@pytest.mark.parametrize("name", TAKES_ACTIVATION)
def test_crelu_runs_forward_and_backward(name, small):
    size = {"image_size": 32} if "image_size" in models.options(name) else {}
    model = models.build(name, in_channels=3, num_classes=5, activation="crelu", **size,
                         **small[name])
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 5) and np.all(np.isfinite(y))
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape
    assert all(np.any(p.grad) for p in model.parameters() if p.data.ndim > 1)


def _fan_in(m):
    return m.in_channels if isinstance(m, L.Conv2d) else m.in_features


@pytest.mark.parametrize("name", TAKES_ACTIVATION)
def test_the_layer_after_the_first_crelu_and_the_classifier_take_twice_the_channels(name, small):
    # (That every layer takes what arrives is proven by the forward pass above, which would
    # raise on any mismatch; this shows the doubling itself.)
    size = {"image_size": 32} if "image_size" in models.options(name) else {}
    build = dict(in_channels=3, num_classes=5, **size, **small[name])
    model = models.build(name, activation="crelu", **build)
    plain = models.build(name, activation="relu", **build)
    order = [m for _, m in model.named_layers() if isinstance(m, (L.Conv2d, L.Linear, L.CReLU))]
    first = order[0]
    after = next(m for m in order[order.index(next(m for m in order
                                                     if isinstance(m, L.CReLU))):]
                 if not isinstance(m, L.CReLU))
    first_out = first.out_channels if isinstance(first, L.Conv2d) else first.out_features
    assert _fan_in(after) == 2 * first_out
    last = [m for _, m in model.named_layers() if isinstance(m, L.Linear)][-1]
    plain_last = [m for _, m in plain.named_layers() if isinstance(m, L.Linear)][-1]
    assert _fan_in(last) == 2 * _fan_in(plain_last)


def test_lenet5_crelu_counted_by_hand():
    model = models.build("lenet5", activation="crelu")
    # conv1 1->6 (5x5), conv2 12->16, conv3 32->120, fc1 240->84, fc2 168->10
    hand = (1 * 6 * 25 + 6) + (12 * 16 * 25 + 16) + (32 * 120 * 25 + 120) \
        + (240 * 84 + 84) + (168 * 10 + 10)
    assert model.num_parameters() == hand


def test_vgg38_residual_crelu_projects_the_skip():
    model = models.build("vgg38", num_filters=4, num_blocks_per_stage=1, num_stages=1,
                         bn=True, residual=True, activation="crelu")
    block = model.features.stage0.block0
    assert block.shortcut.conv.in_channels == 8 and block.shortcut.conv.out_channels == 4
    assert block.shortcut.conv.kernel_size == (1, 1)
    relu = models.build("vgg38", num_filters=4, num_blocks_per_stage=1, num_stages=1,
                        bn=True, residual=True)
    assert "shortcut" not in dict(relu.features.stage0.block0.named_children())
