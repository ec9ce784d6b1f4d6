"""MobileNet (Howard et al., 2017, "MobileNets: Efficient Convolutional Neural Networks for
Mobile Vision Applications"), Table 1 of the paper.

A 3x3 conv stem, then 13 depthwise-separable blocks (depthwise 3x3 conv with groups=C -> BN ->
act, pointwise 1x1 conv -> BN -> act) with the paper's channels and strides, global average
pooling and a linear classifier.

Two forms, chosen by ``stem_stride``:

- ``stem_stride=1`` (default), the CIFAR variant for 28x28 / 32x32 images, as in common CIFAR
  ports: the four stride-2 blocks take 32x32 to 2x2 (28x28 to 2x2 as well).
- ``stem_stride=2``, the paper's ImageNet form: 224x224 -> 112x112 after the stem, 7x7 before
  the pool. ``summary(build("mobilenet", stem_stride=2, num_classes=1000), (3, 224, 224))``
  gives the paper's 569 M mult-adds and 4.2 M parameters (tests/test_summary.py).

``width_mult`` is the paper's width multiplier alpha, applied to every layer's channels (the
resolution multiplier is the input size itself). ``separable=False`` builds Table 4's "Conv
MobileNet": each depthwise-separable block replaced by one full 3x3 conv -> BN -> act with the
same output channels and stride.
"""
from __future__ import annotations

from .. import layers as L
from .._shapes import positive
from ._blocks import (NamedSequential, activation_factory, add_head, check_int,
                      check_probability, make_rng)
from .registry import register

STEM_CHANNELS = 32
# (output channels, stride) of the 13 depthwise-separable blocks in Table 1 of the paper
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def scaled(channels: int, width_mult: float) -> int:
    """Channels after the width multiplier (at least 1)."""
    return max(1, int(round(channels * width_mult)))


def separable_block(c_in, c_out, stride, act, conv_method, rng) -> NamedSequential:
    """Depthwise 3x3 (groups=c_in) -> BN -> act -> pointwise 1x1 -> BN -> act.

    x: (N, c_in, H, W) -> (N, act.channels(c_out), H / stride, W / stride). Convs have no
    bias (BN follows); the pointwise conv takes what act1 gives (2 * c_in after a CReLU).
    """
    return NamedSequential([
        ("dw", L.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False,
                        method=conv_method, rng=rng)),
        ("bn1", L.BatchNorm2d(c_in)), ("act1", act()),
        ("pw", L.Conv2d(act.channels(c_in), c_out, 1, bias=False, method=conv_method,
                        rng=rng)),
        ("bn2", L.BatchNorm2d(c_out)), ("act2", act())])


def full_block(c_in, c_out, stride, act, conv_method, rng) -> NamedSequential:
    """Table 4's full convolution in place of a separable block: 3x3 conv -> BN -> act.

    x: (N, c_in, H, W) -> (N, act.channels(c_out), H / stride, W / stride). It costs
    9 * c_in * c_out mult-adds per output pixel against the separable 9 * c_in + c_in * c_out.
    """
    return NamedSequential([
        ("conv", L.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False,
                          method=conv_method, rng=rng)),
        ("bn", L.BatchNorm2d(c_out)), ("act", act())])


class MobileNet(NamedSequential):
    """MobileNet v1: x: (N, in_channels, H, W) -> logits (N, num_classes).

    Children: ``stem`` (conv, bn, act), ``blocks`` (``0`` ... ``12``, each ``dw``, ``bn1``,
    ``act1``, ``pw``, ``bn2``, ``act2``; with ``separable=False`` each ``conv``, ``bn``,
    ``act``), ``pool``, ``flatten``, [``dropout``], ``classifier``.
    ``stem_stride``: 1 for 28/32-pixel images (default), 2 for the paper's 224x224 ImageNet form.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width_mult: float = 1.0,
                 stem_stride: int = 1, separable: bool = True, activation: str = "relu",
                 dropout: float = 0.0, conv_method: str = "auto", seed: int | None = 0,
                 rng=None):
        check_int("MobileNet", 1, in_channels=in_channels, num_classes=num_classes,
                  stem_stride=stem_stride)
        check_probability("MobileNet", dropout=dropout)
        width_mult = positive(width_mult, "width_mult", "MobileNet")
        super().__init__()
        rng = make_rng(seed, rng)
        self._summary = (f"width_mult={width_mult}, stem_stride={stem_stride}, "
                         f"separable={separable}")
        act = activation_factory(activation)
        block = separable_block if separable else full_block

        c_stem = scaled(STEM_CHANNELS, width_mult)
        self.stem = NamedSequential([
            ("conv", L.Conv2d(in_channels, c_stem, 3, stride=stem_stride, padding=1, bias=False,
                              method=conv_method, rng=rng)),
            ("bn", L.BatchNorm2d(c_stem)), ("act", act())])
        c_in = act.channels(c_stem)  # each block takes what the activation before it gives
        blocks = []
        for channels, stride in BLOCKS:
            c_out = scaled(channels, width_mult)
            blocks.append(block(c_in, c_out, stride, act, conv_method, rng))
            c_in = act.channels(c_out)
        self.blocks = L.Sequential(*blocks)
        add_head(self, c_in, num_classes, dropout, rng)


register("mobilenet")(MobileNet)
