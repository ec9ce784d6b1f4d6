"""VGG networks from a layer configuration (Simonyan & Zisserman, 2015): vgg11 (VGG-A), vgg16.

A configuration lists, per conv layer, its output channels (an int, a 3x3 conv with padding 1),
or ("mixed", c) / ("sc", c) for the structure-composing layers that ``sfnet`` uses, with "M"
closing a scale by a 2x2 max pool. Every conv is followed by [BatchNorm2d] and the activation.

Head, as the SfNet preprint's Table 1 and listing build it (the default of vgg16 and sfnet):
every scale, the fifth included, closes with its max pool, and the classifier reads the
flattened final map, 512 * h * w features. ``image_size`` is the input side the model is
built for: 32 (CIFAR-10) leaves a 1x1 map, 224 (ImageNet) a 7x7 map (the listing's ``in_size``
of 1 and 49). A 28x28 image cannot take five halvings; the rule: a scale whose map already has
a side of 1 ends without its pool, so ``image_size=28`` goes 28 -> 14 -> 7 -> 3 -> 1 and the
fifth scale keeps its 1x1 map (same parameters as at 32). ``python -m minidl.train`` passes
the data set's image size; an input of another size is refused with a message saying so.

``global_pool=True`` is the variant minidl used before (and vgg11's default): the last scale
ends in global average pooling instead of its max pool, so the head sees 8 * width channels
whatever the input size (at 32x32 an average rather than a max over the final 2x2 map).

``CONFIG_D`` holds the options of configuration D as trained on ImageNet (no BatchNorm,
[FC-4096, ReLU, dropout 0.5] x 2): ``build("vgg16", num_classes=1000, **CONFIG_D)`` has the
138 M parameters and 15,300 M mult-adds of the MobileNet paper's Table 8.
"""
from __future__ import annotations

from .. import layers as L
from .._shapes import positive_int
from ._blocks import (NamedSequential, activation_factory, check_int, check_probability,
                      dropout_layer, make_rng)
from .registry import register

M = "M"
VGG_A = (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M)
VGG_16 = (64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M)
BASE_WIDTH = 64  # channels of the first scale in the configurations above
# VGG-16 as Simonyan & Zisserman trained it on 224x224 ImageNet (Table 8 of the slides)
CONFIG_D = {"bn": False, "hidden": 4096, "dropout": 0.5, "image_size": 224}


def _hw(image_size, who: str) -> tuple:
    """``image_size`` (an int side, or an (H, W) pair) as a pair of positive ints."""
    pair = image_size if isinstance(image_size, (tuple, list)) else (image_size, image_size)
    if len(pair) != 2:
        raise ValueError(f"{who}: image_size must be an int or an (H, W) pair, got {image_size!r}")
    return tuple(positive_int(s, "image_size", who) for s in pair)


class VGG(NamedSequential):
    """A VGG built from ``config``: x: (N, in_channels, H, W) -> logits (N, num_classes).

    Children: ``features`` (scales ``0`` ... ``4``, each with ``conv1``/``bn1``/``act1`` ... and
    ``pool``; sfnet's scales 4 and 5 hold ``mixed1``, ``sc2``, ``sc3``), [``pool`` (global
    average, with ``global_pool``)], ``flatten``, ``classifier`` (``fc1``, [``bn1``], ``act1``,
    ..., ``fc3``). ``width`` scales every conv's channels by width / 64; ``hidden`` is the FC
    layers' width; ``head_bn`` puts BatchNorm1d after the two hidden FC layers (the SfNet
    paper's VGG-16 head). ``image_size``: the input side the pools and the flattened head are
    built for (ignored with ``global_pool``); another input size is refused.
    """

    def __init__(self, config, in_channels: int = 3, num_classes: int = 10, width: int = 64,
                 hidden: int = 512, bn: bool = False, head_bn: bool = False,
                 activation: str = "relu", dropout: float = 0.0, mixed_channels: int = 16,
                 pool_size: int = 3, image_size=32, global_pool: bool = False,
                 conv_method: str = "im2col", seed: int | None = 0, rng=None):
        check_int("VGG", 1, in_channels=in_channels, num_classes=num_classes, width=width,
                  hidden=hidden)
        check_probability("VGG", dropout=dropout)
        if not config or config[-1] != M:
            raise ValueError(f"VGG: config must end with {M!r} (the last scale's pool), "
                             f"got {config!r}")
        super().__init__()
        rng = make_rng(seed, rng)
        self.global_pool = bool(global_pool)
        self._summary = (f"width={width}, hidden={hidden}, bn={bn}, head_bn={head_bn}, "
                         + ("global_pool=True" if global_pool else f"image_size={image_size}"))
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
        # every scale closes with a 2x2 max pool, except the last one under global_pool, and
        # (the paper form) one whose map already has a side of 1
        self.image_hw = None if global_pool else _hw(image_size, "VGG")
        pooled = [i < len(scales) - 1 if global_pool else _pools(self.image_hw, len(scales))[i]
                  for i in range(len(scales))]
        self.features = L.Sequential(*[
            NamedSequential(scale + ([("pool", L.MaxPool2d(2))] if pool else []))
            for scale, pool in zip(scales, pooled)])
        if global_pool:
            self.pool = L.GlobalAvgPool2d()
            h_in = c_in
        else:
            final_hw = _final_hw(self.image_hw, len(scales))
            h_in = c_in * final_hw[0] * final_hw[1]
        self.flatten = L.Flatten()
        head = []
        for j in (1, 2):
            head += [(f"fc{j}", L.Linear(h_in, hidden, rng=rng)),
                     (f"bn{j}", L.BatchNorm1d(hidden) if head_bn else None),
                     (f"act{j}", act()), (f"drop{j}", dropout_layer(dropout, rng))]
            h_in = hidden
        head.append(("fc3", L.Linear(hidden, num_classes, rng=rng)))
        self.classifier = NamedSequential(head)

    def forward(self, x):
        if self.image_hw is not None and getattr(x, "ndim", 0) == 4:
            if tuple(x.shape[2:]) != self.image_hw:
                h, w = self.image_hw
                raise ValueError(
                    f"VGG: built for {h}x{w} inputs (image_size), got {x.shape[2]}x{x.shape[3]}: "
                    f"its pools and flattened head depend on the size; build it with "
                    f"image_size={x.shape[2]} (or global_pool=True for any input size)")
        return super().forward(x)


def _pools(hw, n_scales: int) -> list:
    """Which of ``n_scales`` scales close with a 2x2 max pool for an (H, W) = ``hw`` input:
    each one whose map has both sides >= 2 (so 28x28: the first four, 28 -> ... -> 1)."""
    pools = []
    for _ in range(n_scales):
        pools.append(min(hw) >= 2)
        hw = (hw[0] // 2, hw[1] // 2) if pools[-1] else hw
    return pools


def _final_hw(hw, n_scales: int) -> tuple:
    """The map's (H, W) after the last scale for an (H, W) = ``hw`` input (paper form)."""
    return (hw[0] // 2 ** sum(_pools(hw, n_scales)), hw[1] // 2 ** sum(_pools(hw, n_scales)))


@register("vgg11")
def vgg11(in_channels: int = 3, num_classes: int = 10, width: int = 64, hidden: int = 512,
          bn: bool = False, activation: str = "relu", dropout: float = 0.0,
          global_pool: bool = True, image_size: int = 32, conv_method: str = "im2col",
          seed: int | None = 0, rng=None) -> VGG:
    """VGG-A (8 conv + 3 FC layers), ``bn=True`` for VGG-A-BN (the Fudan report's comparison).

    Global average pooling in place of the fifth max pool by default (``global_pool=False``
    for the paper's five max pools and flattened head).
    """
    return VGG(VGG_A, in_channels, num_classes, width, hidden, bn=bn, head_bn=False,
               activation=activation, dropout=dropout, image_size=image_size,
               global_pool=global_pool, conv_method=conv_method, seed=seed, rng=rng)


@register("vgg16")
def vgg16(in_channels: int = 3, num_classes: int = 10, width: int = 64, hidden: int = 1024,
          bn: bool = True, activation: str = "relu", dropout: float = 0.0,
          image_size: int = 32, global_pool: bool = False, conv_method: str = "im2col",
          seed: int | None = 0, rng=None) -> VGG:
    """VGG-16 as the SfNet preprint's Table 1 builds it: BN + ReLU after every conv, a max pool
    after each of the five scales, [FC-1024, BN, ReLU] x 2, FC.

    ``bn=False`` drops every BatchNorm (convs and head): with ``hidden=4096``,
    ``dropout=0.5`` and ``image_size=224`` (``CONFIG_D``) it is the original configuration D.
    """
    return VGG(VGG_16, in_channels, num_classes, width, hidden, bn=bn, head_bn=bn,
               activation=activation, dropout=dropout, image_size=image_size,
               global_pool=global_pool, conv_method=conv_method, seed=seed, rng=rng)
