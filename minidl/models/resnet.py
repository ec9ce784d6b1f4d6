"""ResNet-18 for 32x32 images (He et al., 2016, "Deep Residual Learning for Image Recognition").

CIFAR-style: a 3x3 stride-1 stem conv and no max-pool (the ImageNet 7x7/stride-2 stem and
pool would shrink a 32x32 image to 8x8 before the first block), then 4 stages of 2 BasicBlocks
with ``width``, 2*width, 4*width, 8*width channels (stride 2 from the second stage on), global
average pooling and a linear classifier. A 1x1 conv + BN projection shortcut is used where
the shape changes (option B of the paper). With width=64 and 10 classes: 11,173,962 params,
the count of torchvision's resnet18 with this stem and head.

``shortcut=False`` is the paper's "plain" network of the same depth (its Fig. 4 comparison):
every block is ``act(bn2(conv2(act(bn1(conv1(x))))))``, with no shortcut and so no
projection convs (11,000,138 params at width 64 and 10 classes); the dotted names stay those
of the residual network (``layer2.0.body.conv1.weight``).
"""
from __future__ import annotations

from .. import layers as L
from ._blocks import (NamedSequential, ResidualBlock, activation_factory, add_head, check_int,
                      make_rng)
from .registry import register

STAGE_BLOCKS = (2, 2, 2, 2)  # ResNet-18


def basic_block(c_in, c_out, stride, bn, act, conv_method, rng,
                shortcut: bool = True) -> NamedSequential:
    """A BasicBlock: ``act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x))``.

    x: (N, c_in, H, W) -> (N, c_out, H / stride, W / stride). Convs have no bias (the
    BatchNorm after each one has its own shift). With ``shortcut=False`` the plain block:
    children ``body`` and ``act``, ``act(bn2(conv2(...)))``.
    """
    def conv(ci, k, s):
        return L.Conv2d(ci, c_out, k, stride=s, padding=k // 2, bias=False,
                        method=conv_method, rng=rng)

    def norm():
        return L.BatchNorm2d(c_out) if bn else None

    body = NamedSequential([("conv1", conv(c_in, 3, stride)), ("bn1", norm()), ("act1", act()),
                            ("conv2", conv(c_out, 3, 1)), ("bn2", norm())])
    if not shortcut:
        return NamedSequential([("body", body), ("act", act())])
    projection = None
    if stride != 1 or c_in != c_out:
        projection = NamedSequential([("conv", conv(c_in, 1, stride)), ("bn", norm())])
    return ResidualBlock(body, projection, act=act())


class ResNet18(NamedSequential):
    """CIFAR-style ResNet-18: x: (N, in_channels, H, W) -> logits (N, num_classes).

    Children: ``stem`` (conv, bn, act), ``layer1`` ... ``layer4`` (blocks ``0``, ``1``, each with
    ``body.conv1`` ... and, where the shape changes, ``shortcut.conv``/``shortcut.bn``),
    ``pool``, ``flatten``, ``classifier``. ``shortcut=False``: the plain network, no shortcuts.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 64,
                 activation: str = "relu", bn: bool = True, shortcut: bool = True,
                 conv_method: str = "im2col", seed: int | None = 0, rng=None):
        check_int("ResNet18", 1, in_channels=in_channels, num_classes=num_classes, width=width)
        super().__init__()
        rng = make_rng(seed, rng)
        self._summary = (f"width={width}, activation={activation!r}, bn={bn}, "
                         f"shortcut={shortcut}")
        act = activation_factory(activation)

        self.stem = NamedSequential([
            ("conv", L.Conv2d(in_channels, width, 3, padding=1, bias=False,
                              method=conv_method, rng=rng)),
            ("bn", L.BatchNorm2d(width) if bn else None), ("act", act())])
        c_in = width
        for i, n_blocks in enumerate(STAGE_BLOCKS):
            c_out = width * 2 ** i
            blocks = []
            for b in range(n_blocks):
                stride = 2 if i > 0 and b == 0 else 1
                blocks.append(basic_block(c_in, c_out, stride, bn, act, conv_method, rng,
                                          shortcut))
                c_in = c_out
            setattr(self, f"layer{i + 1}", L.Sequential(*blocks))
        add_head(self, c_in, num_classes, rng=rng)


register("resnet18")(ResNet18)
