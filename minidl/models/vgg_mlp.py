"""VGG-08 and VGG-38 as in the Edinburgh MLP coursework framework (report 003 in the seeds).

Entry block (3x3 conv without bias -> BatchNorm2d -> leaky ReLU), then ``num_stages`` stages of
``num_blocks_per_stage`` processing blocks and one dimensionality-reduction block, then global
average pooling and a linear classifier. With ``bn=True`` a BatchNorm2d follows every conv;
with ``residual=True`` each processing block becomes ``act(bn(conv2(...)) + x)`` (He et al.,
2016). VGG-38 without either is the "broken" network whose gradients vanish.
Global average pooling makes the head independent of the input size (28x28 or 32x32).
"""
from __future__ import annotations

import functools

from .. import layers as L
from ._blocks import (NamedSequential, ResidualBlock, activation_factory, add_head, check_int,
                      check_probability, make_rng)
from .registry import register


class VGGMLP(NamedSequential):
    """The coursework's VGG: x: (N, in_channels, H, W) -> logits (N, num_classes).

    Children: ``features`` (``entry``, then ``stage0``, ``stage1``, ... each holding ``block0``,
    ``block1``, ... and ``reduction``), ``pool``, ``flatten``, ``dropout`` (if > 0), ``classifier``.
    ``width`` is every conv's channels (the coursework's ``num_filters``, accepted as an alias:
    every other model calls its first-stage channels ``width``).
    The defaults are VGG-38: 37 convs + 1 linear, 336,196 parameters for 3 channels and 100
    classes (338,500 with ``bn``); VGG-08 is the same with no processing blocks: 7 convs +
    1 linear, 59,716 parameters.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 100, width: int = 32,
                 num_blocks_per_stage: int = 5, num_stages: int = 3, bn: bool = False,
                 residual: bool = False, activation: str = "leaky_relu", dropout: float = 0.0,
                 conv_method: str = "auto", seed: int | None = 0, rng=None,
                 num_filters: int | None = None):
        if num_filters is not None:  # the coursework framework's name for the width
            if width != 32 and width != num_filters:
                raise ValueError(f"VGGMLP: width={width} and num_filters={num_filters} name "
                                 "the same option; give one")
            width = num_filters
        check_int("VGGMLP", 1, in_channels=in_channels, num_classes=num_classes, width=width)
        check_int("VGGMLP", 0, num_blocks_per_stage=num_blocks_per_stage, num_stages=num_stages)
        check_probability("VGGMLP", dropout=dropout)
        super().__init__()
        rng = make_rng(seed, rng)
        self._summary = (f"width={width}, num_blocks_per_stage={num_blocks_per_stage}, "
                         f"num_stages={num_stages}, bn={bn}, residual={residual}")
        act = activation_factory(activation)

        def conv(bias, c_in=act.channels(width), k=3):
            # every conv but the entry's reads an activation's output: 2 * width after CReLU
            return L.Conv2d(c_in, width, k, padding=k // 2, bias=bias, method=conv_method,
                            rng=rng)

        def norm():
            return L.BatchNorm2d(width) if bn else None

        # the entry BatchNorm exists even when bn=False, as in the coursework framework
        stages = [("entry", NamedSequential([("conv", conv(False, in_channels)),
                                             ("bn", L.BatchNorm2d(width)), ("act", act())]))]
        for s in range(num_stages):
            blocks = [(f"block{b}", _processing_block(conv, norm, act, residual))
                      for b in range(num_blocks_per_stage)]
            blocks.append(("reduction", _reduction_block(conv, norm, act)))
            stages.append((f"stage{s}", NamedSequential(blocks)))
        self.features = NamedSequential(stages)
        add_head(self, act.channels(width), num_classes, dropout, rng)


def _processing_block(conv, norm, act, residual):
    """conv3x3 (no bias) -> [bn] -> act -> conv3x3 (no bias) -> [bn] -> act, optionally + x.

    With ``residual`` and an activation that widens (CReLU: x has 2 * width channels, the
    body gives width), the skip is a 1x1 conv (no bias) -> [bn] projection, as in ResNet's
    option B; otherwise the identity.
    """
    body = [("conv1", conv(False)), ("bn1", norm()), ("act1", act()),
            ("conv2", conv(False)), ("bn2", norm())]
    if residual:
        # the skip joins just before the final activation: act(bn2(conv2(...)) + x)
        projection = None
        if act.multiplier != 1:
            projection = NamedSequential([("conv", conv(False, k=1)), ("bn", norm())])
        return ResidualBlock(NamedSequential(body), projection, act=act())
    return NamedSequential(body + [("act2", act())])


def _reduction_block(conv, norm, act):
    """conv3x3 (bias) -> [bn] -> act -> 2x2 average pool -> conv3x3 (bias) -> [bn] -> act."""
    return NamedSequential([("conv1", conv(True)), ("bn1", norm()), ("act1", act()),
                            ("pool", L.AvgPool2d(2)),
                            ("conv2", conv(True)), ("bn2", norm()), ("act2", act())])


# One network, two registered depths: ``models.options`` reads each default from the signature.
register("vgg38")(VGGMLP)
register("vgg08")(functools.partial(VGGMLP, num_blocks_per_stage=0))
