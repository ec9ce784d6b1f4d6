"""VGG networks from a layer configuration (Simonyan & Zisserman, 2015): vgg11 (VGG-A), vgg16.

A configuration lists, per conv layer, its output channels (an int, a 3x3 conv with padding 1),
or ("mixed", c) / ("sc", c) for the structure-composing layers that ``sfnet`` uses, with "M"
closing a scale by a 2x2 max pool. Every conv is followed by [BatchNorm2d] and the activation.

Input size: the four inner max pools take 32x32 to 2x2 and 28x28 to 1x1; the fifth pool of
the original would fail on a 1x1 map, so the last scale ends in global average pooling instead
(at 32x32 an average rather than a max over the final 2x2 map), and the head sees
8 * width channels whatever the input size.
"""
from __future__ import annotations

from .. import layers as L
from ._blocks import (NamedSequential, activation_factory, check_int, check_probability,
                      dropout_layer, make_rng)
from .registry import register

M = "M"
VGG_A = (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M)
VGG_16 = (64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M)
BASE_WIDTH = 64  # channels of the first scale in the configurations above


class VGG(NamedSequential):
    """A VGG built from ``config``: x: (N, in_channels, H, W) -> logits (N, num_classes).

    Children: ``features`` (scales ``0`` ... ``4``, each with ``conv1``/``bn1``/``act1`` ... and
    ``pool``; sfnet's scales 4 and 5 hold ``mixed1``, ``sc2``, ``sc3``), ``pool`` (global
    average), ``flatten``, ``classifier`` (``fc1``, [``bn1``], ``act1``, ..., ``fc3``).
    ``width`` scales every conv's channels by width / 64; ``hidden`` is the FC layers' width;
    ``head_bn`` puts BatchNorm1d after the two hidden FC layers (the SfNet paper's VGG-16 head).
    """

    def __init__(self, config, in_channels: int = 3, num_classes: int = 10, width: int = 64,
                 hidden: int = 512, bn: bool = False, head_bn: bool = False,
                 activation: str = "relu", dropout: float = 0.0, mixed_channels: int = 16,
                 pool_size: int = 3, conv_method: str = "im2col", seed: int | None = 0,
                 rng=None):
        check_int("VGG", 1, in_channels=in_channels, num_classes=num_classes, width=width,
                  hidden=hidden)
        check_probability("VGG", dropout=dropout)
        if not config or config[-1] != M:
            raise ValueError(f"VGG: config must end with {M!r} (the last scale's pool), "
                             f"got {config!r}")
        super().__init__()
        rng = make_rng(seed, rng)
        self._summary = f"width={width}, hidden={hidden}, bn={bn}, head_bn={head_bn}"
        act = activation_factory(activation)

        def layer(spec, c_in):
            kind, c = spec if isinstance(spec, tuple) else ("conv", spec)
            c_out = max(1, c * width // BASE_WIDTH)
            if kind == "conv":
                return kind, c_out, L.Conv2d(c_in, c_out, 3, padding=1, method=conv_method, rng=rng)
            if kind == "mixed":
                return kind, c_out, L.MixedSCLayer(c_in, c_out, pool_size=pool_size,
                                                   conv_channels=mixed_channels, method=conv_method,
                                                   rng=rng)
            if kind == "sc":
                return kind, c_out, L.SCLayer(c_in, c_out, pool_size=pool_size, method=conv_method,
                                              rng=rng)
            raise ValueError(f"VGG: unknown layer kind {kind!r} in config (conv, mixed, sc, {M!r})")

        scales, current, c_in = [], [], in_channels
        for spec in config:
            if spec == M:
                scales.append(current)
                current = []
                continue
            kind, c_out, module = layer(spec, c_in)
            j = len(current) // 3 + 1
            current += [(f"{kind}{j}", module), (f"bn{j}", L.BatchNorm2d(c_out) if bn else None),
                        (f"act{j}", act())]
            c_in = c_out
        # every scale but the last closes with a 2x2 max pool; the last one with global pooling
        self.features = L.Sequential(*[
            NamedSequential(scale + ([("pool", L.MaxPool2d(2))] if i < len(scales) - 1 else []))
            for i, scale in enumerate(scales)])
        self.pool = L.GlobalAvgPool2d()
        self.flatten = L.Flatten()
        head, h_in = [], c_in
        for j in (1, 2):
            head += [(f"fc{j}", L.Linear(h_in, hidden, rng=rng)),
                     (f"bn{j}", L.BatchNorm1d(hidden) if head_bn else None),
                     (f"act{j}", act()), (f"drop{j}", dropout_layer(dropout, rng))]
            h_in = hidden
        head.append(("fc3", L.Linear(hidden, num_classes, rng=rng)))
        self.classifier = NamedSequential(head)


@register("vgg11")
def vgg11(in_channels: int = 3, num_classes: int = 10, width: int = 64, hidden: int = 512,
          bn: bool = False, activation: str = "relu", dropout: float = 0.0,
          conv_method: str = "im2col", seed: int | None = 0, rng=None) -> VGG:
    """VGG-A (8 conv + 3 FC layers), ``bn=True`` for VGG-A-BN (the Fudan report's comparison)."""
    return VGG(VGG_A, in_channels, num_classes, width, hidden, bn=bn, head_bn=False,
               activation=activation, dropout=dropout, conv_method=conv_method, seed=seed, rng=rng)


@register("vgg16")
def vgg16(in_channels: int = 3, num_classes: int = 10, width: int = 64, hidden: int = 1024,
          activation: str = "relu", dropout: float = 0.0, conv_method: str = "im2col",
          seed: int | None = 0, rng=None) -> VGG:
    """VGG-16 with BatchNorm and the SfNet paper's CIFAR head: [FC-1024, BN, ReLU] x 2, FC."""
    return VGG(VGG_16, in_channels, num_classes, width, hidden, bn=True, head_bn=True,
               activation=activation, dropout=dropout, conv_method=conv_method, seed=seed, rng=rng)
