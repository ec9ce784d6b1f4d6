"""LeNet-5 (LeCun et al., 1998, "Gradient-Based Learning Applied to Document Recognition").

conv5(6) -> pool -> act -> conv5(16) -> pool -> act -> C5 -> act -> FC-84 -> act -> classifier.
``pool="avg", activation="tanh"`` is LeCun's network: tanh, 2x2 average sub-sampling, and the
activation after the pool, as in the paper's S2/S4 layers (without their trainable
coefficient and bias per map, and with plain tanh for the scaled 1.7159 tanh(2x/3)). The
defaults, ReLU and max pooling, are the modern variant; there the order is immaterial, since a
non-decreasing activation commutes with a max (relu(max(a, b)) == max(relu(a), relu(b))),
and acting after the pool touches a quarter of the elements. C5 (the "FC-120") is, as in the
paper, a 5x5 convolution with 120 maps: on the paper's 32x32-padded input its output is 1x1,
so it equals a fully connected layer on the 16x5x5 map. The first conv pads by 2, which is how
the paper fed 28x28 MNIST digits as 32x32; a global average pool after C5 keeps the head
independent of the input size (a 32x32 input leaves a 2x2 C5 map to average).
"""
from __future__ import annotations

from .. import layers as L
from ._blocks import (NamedSequential, activation_factory, check_int, check_probability,
                      dropout_layer, make_rng)
from .registry import register

POOLS = {"max": L.MaxPool2d, "avg": L.AvgPool2d}


class LeNet5(NamedSequential):
    """LeNet-5: x: (N, in_channels, H, W) with H, W >= 28 -> logits (N, num_classes).

    ``pool``: "max" (default) or "avg" (LeCun's sub-sampling); ``activation``: "relu"
    (default) or "tanh" (LeCun's), or any other of ``minidl.layers.activations``.
    Children: ``features`` (``conv1``, ``pool1``, ``act1``, ``conv2``, ``pool2``, ``act2``,
    ``conv3``, ``act3``), ``pool``, ``flatten``, ``classifier`` (``fc1``, ``act1``, [``drop1``],
    ``fc2``).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, activation: str = "relu",
                 pool: str = "max", dropout: float = 0.0, conv_method: str = "auto",
                 seed: int | None = 0, rng=None):
        check_int("LeNet5", 1, in_channels=in_channels, num_classes=num_classes)
        check_probability("LeNet5", dropout=dropout)
        if pool not in POOLS:
            raise ValueError(f"LeNet5: pool must be one of {sorted(POOLS)}, got {pool!r}")
        super().__init__()
        rng = make_rng(seed, rng)
        self._summary = f"activation={activation!r}, pool={pool!r}"
        act = activation_factory(activation)

        def conv(c_in, c_out, padding=0):
            return L.Conv2d(c_in, c_out, 5, padding=padding, method=conv_method, rng=rng)

        c = act.channels  # what a layer after an activation takes (twice as much after CReLU)
        self.features = NamedSequential([
            ("conv1", conv(in_channels, 6, padding=2)), ("pool1", POOLS[pool](2)),
            ("act1", act()),
            ("conv2", conv(c(6), 16)), ("pool2", POOLS[pool](2)), ("act2", act()),
            ("conv3", conv(c(16), 120)), ("act3", act())])
        self.pool = L.GlobalAvgPool2d()
        self.flatten = L.Flatten()
        self.classifier = NamedSequential([
            ("fc1", L.Linear(c(120), 84, rng=rng)), ("act1", act()),
            ("drop1", dropout_layer(dropout, rng)),
            ("fc2", L.Linear(c(84), num_classes, rng=rng))])


register("lenet5")(LeNet5)
