"""ResNet-18 and ResNet-32 for 32x32 images (He et al., 2016, "Deep Residual Learning for Image
Recognition").

CIFAR-style: a 3x3 stride-1 stem conv and no max-pool (the ImageNet 7x7/stride-2 stem and
pool would shrink a 32x32 image to 8x8 before the first block), then 4 stages of 2 BasicBlocks
with ``width``, 2*width, 4*width, 8*width channels (stride 2 from the second stage on), global
average pooling and a linear classifier. A 1x1 conv + BN projection shortcut is used where
the shape changes (option B of the paper). With width=64 and 10 classes: 11,173,962 params,
the count of torchvision's resnet18 with this stem and head. ``resnet32`` is the paper's
CIFAR ResNet of 6n + 2 = 32 layers (n = 5; 16, 32, 64 channels).

``shortcut=False`` is the paper's "plain" network of the same depth (its Fig. 4 comparison):
every block is ``act(bn2(conv2(act(bn1(conv1(x))))))``, with no shortcut and so no
projection convs (11,000,138 params at width 64 and 10 classes); the dotted names stay those
of the residual network (``layer2.0.body.conv1.weight``).
"""
from __future__ import annotations

from .. import layers as L
from .._shapes import conv_output_size
from ._blocks import (NamedSequential, ResidualBlock, activation_factory, add_head, check_choice,
                      check_input_size, check_int, fc_head, image_hw, make_rng)
from .registry import register

STAGE_BLOCKS = (2, 2, 2, 2)  # ResNet-18
CIFAR_STAGE_BLOCKS = (5, 5, 5)  # ResNet-32 of the paper's CIFAR-10 section: 6n + 2 layers, n = 5
DOWNSAMPLES = ("stride", "max", "max_overlap")
HEADS = ("gap", "fc")
# (kernel, stride, padding) of the pool that opens a down-sampling stage
_POOLS = {"max": (2, 2, 0), "max_overlap": (3, 2, 1)}


def basic_block(c_in, c_out, stride, bn, act, conv_method, rng,
                shortcut: bool = True) -> NamedSequential:
    """A BasicBlock: ``act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x))``.

    x: (N, c_in, H, W) -> (N, act.channels(c_out), H / stride, W / stride). Convs have no bias
    (the BatchNorm after each one has its own shift); conv2 takes what act1 gives (twice
    c_out after a CReLU), and a 1x1 projection shortcut is used wherever the sum's shapes
    differ. With ``shortcut=False`` the plain block: children ``body`` and ``act``,
    ``act(bn2(conv2(...)))``.
    """
    def conv(ci, k, s):
        return L.Conv2d(ci, c_out, k, stride=s, padding=k // 2, bias=False,
                        method=conv_method, rng=rng)

    def norm():
        return L.BatchNorm2d(c_out) if bn else None

    body = NamedSequential([("conv1", conv(c_in, 3, stride)), ("bn1", norm()), ("act1", act()),
                            ("conv2", conv(act.channels(c_out), 3, 1)), ("bn2", norm())])
    if not shortcut:
        return NamedSequential([("body", body), ("act", act())])
    projection = None
    if stride != 1 or c_in != c_out:
        projection = NamedSequential([("conv", conv(c_in, 1, stride)), ("bn", norm())])
    return ResidualBlock(body, projection, act=act())


class ResNet(NamedSequential):
    """CIFAR-style ResNet: x: (N, in_channels, H, W) -> logits (N, num_classes).

    ``stage_blocks[i]`` BasicBlocks of ``width * 2**i`` channels per stage; every stage after
    the first halves the map. Children: ``stem`` (conv, bn, act), ``layer1`` ... (blocks ``0``,
    ``1``, ..., each with ``body.conv1`` ... and, where the shape changes,
    ``shortcut.conv``/``shortcut.bn``; with a pool ``downsample``, ``pool`` first), then the
    head: ``pool``, ``flatten``, ``classifier`` (``head="gap"``) or ``flatten``,
    ``classifier`` (``fc1``, ``act1``, ``fc2``, ``act2``, ``fc3``; ``head="fc"``).

    ``downsample``: "stride" (the paper's: the stage's first conv and its projection have
    stride 2), "max" (a 2x2 max pool opens the stage, whose convs keep stride 1) or
    "max_overlap" (a 3x3 max pool of stride 2, padded by 1): the slides' Table VI (002) rows
    ResNet-dagger and ResNet-star. ``head``: "gap" (global average pool and one linear layer,
    the paper's) or "fc" (the flattened final map through [FC-hidden, act] x 2, FC; built for
    ``image_size``, another input size is refused). ``shortcut=False``: the plain network.
    """

    def __init__(self, stage_blocks=STAGE_BLOCKS, in_channels: int = 3, num_classes: int = 10,
                 width: int = 64, activation: str = "relu", bn: bool = True,
                 shortcut: bool = True, downsample: str = "stride", head: str = "gap",
                 hidden: int = 512, image_size=32, conv_method: str = "auto",
                 seed: int | None = 0, rng=None):
        who = type(self).__name__
        check_int(who, 1, in_channels=in_channels, num_classes=num_classes, width=width,
                  hidden=hidden)
        check_choice(who, downsample=(downsample, DOWNSAMPLES), head=(head, HEADS))
        super().__init__()
        rng = make_rng(seed, rng)
        self._summary = (f"width={width}, activation={activation!r}, bn={bn}, "
                         f"shortcut={shortcut}, downsample={downsample!r}, head={head!r}")
        act = activation_factory(activation)
        self.image_hw = image_hw(image_size, who) if head == "fc" else None

        self.stem = NamedSequential([
            ("conv", L.Conv2d(in_channels, width, 3, padding=1, bias=False,
                              method=conv_method, rng=rng)),
            ("bn", L.BatchNorm2d(width) if bn else None), ("act", act())])
        c_in, hw = act.channels(width), self.image_hw
        for i, n_blocks in enumerate(stage_blocks):
            c_out = width * 2 ** i
            down = i > 0
            stage = []
            if down and downsample != "stride":
                k, s, p = _POOLS[downsample]
                stage.append(("pool", L.MaxPool2d(k, stride=s, padding=p)))
            if down and hw is not None:
                k, s, p = _POOLS.get(downsample, (3, 2, 1))  # a 3x3/2 conv padded by 1
                hw = tuple(conv_output_size(side, k, s, p) for side in hw)
            for b in range(n_blocks):
                stride = 2 if down and b == 0 and downsample == "stride" else 1
                stage.append((str(b), basic_block(c_in, c_out, stride, bn, act, conv_method,
                                                  rng, shortcut)))
                c_in = act.channels(c_out)
            setattr(self, f"layer{i + 1}", NamedSequential(stage))
        if head == "gap":
            add_head(self, c_in, num_classes, rng=rng)
        else:
            self.flatten = L.Flatten()
            self.classifier = fc_head(c_in * hw[0] * hw[1], hidden, num_classes, act, rng=rng)

    def forward(self, x):
        if self.image_hw is not None:
            check_input_size(self, x, self.image_hw)
        return super().forward(x)


@register("resnet18")
def resnet18(in_channels: int = 3, num_classes: int = 10, width: int = 64,
             activation: str = "relu", bn: bool = True, shortcut: bool = True,
             downsample: str = "stride", head: str = "gap", hidden: int = 512,
             image_size: int = 32, conv_method: str = "auto", seed: int | None = 0,
             rng=None) -> ResNet:
    """CIFAR-style ResNet-18: 4 stages of 2 BasicBlocks, ``width`` ... 8 * width channels."""
    return ResNet(STAGE_BLOCKS, in_channels, num_classes, width, activation, bn, shortcut,
                  downsample, head, hidden, image_size, conv_method, seed, rng)


@register("resnet32")
def resnet32(in_channels: int = 3, num_classes: int = 10, width: int = 16,
             activation: str = "relu", bn: bool = True, shortcut: bool = True,
             downsample: str = "stride", head: str = "gap", hidden: int = 512,
             image_size: int = 32, conv_method: str = "auto", seed: int | None = 0,
             rng=None) -> ResNet:
    """ResNet-32 of He et al.'s CIFAR-10 section (the slides' Table VI network): 3 stages of
    5 BasicBlocks with 16, 32, 64 channels, 31 convs + 1 FC.

    The paper's shortcut where the shape changes is parameter-free (option A: subsample and
    pad with zero channels), 0.46 M parameters; ours is the 1x1 projection (option B), which
    adds 2,752 (two 1x1 convs and their BatchNorms): 466,906 with 10 classes against
    464,154.
    """
    return ResNet(CIFAR_STAGE_BLOCKS, in_channels, num_classes, width, activation, bn,
                  shortcut, downsample, head, hidden, image_size, conv_method, seed, rng)
