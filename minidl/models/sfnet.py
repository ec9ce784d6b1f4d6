"""SfNet (Chen, 2019, "Structure Composing Layer"): VGG-16 whose scales 4 and 5 use SC layers.

Table 1 and the paper's PyTorch listing: on entering scale 4 and scale 5 the first conv is
replaced by a MixedSCLayer (16 conv "smear" channels) and the other two by SCLayers (3x3 max
pool + 1x1 conv), each followed by BatchNorm2d and ReLU; every scale closes with a 2x2 max
pool; scales 1-3 and the [FC-1024, BN, ReLU] x 2 head are VGG-16's. The head reads the
flattened final map; input sizes (``image_size``, 28x28) and the ``global_pool`` variant as
in ``vgg.py``. A MixedSCLayer's conv branch has the SC pool's kernel (``pool_size``), as in
the paper's listing; ``mixed_conv_kernel=3`` keeps minidl's earlier fixed 3x3 branch (the
same at the paper's ``pool_size=3``).
"""
from __future__ import annotations

from .registry import register
from .vgg import VGG, M

SFNET = (64, 64, M, 128, 128, M, 256, 256, 256, M,
         ("mixed", 512), ("sc", 512), ("sc", 512), M,
         ("mixed", 512), ("sc", 512), ("sc", 512), M)


@register("sfnet")
def sfnet(in_channels: int = 3, num_classes: int = 10, width: int = 64, hidden: int = 1024,
          mixed_channels: int = 16, pool_size: int = 3, mixed_conv_kernel: int | None = None,
          activation: str = "relu", dropout: float = 0.0, downsample: str = "max",
          head: str = "fc", image_size: int = 32, global_pool: bool = False,
          conv_method: str = "auto", seed: int | None = 0, rng=None) -> VGG:
    """Snowflake Net: VGG-16 (BN, FC-1024 head) with scales 4-5 as 1 MixedSCLayer + 2 SCLayers.

    ``downsample``: "max" (the paper's) or "max_overlap"; "stride" is refused, since scales 4
    and 5 end with an SCLayer, which has no stride.
    """
    return VGG(SFNET, in_channels, num_classes, width, hidden, norm="bn", head_bn=True,
               activation=activation, dropout=dropout, downsample=downsample, head=head,
               mixed_channels=mixed_channels, pool_size=pool_size,
               mixed_conv_kernel=mixed_conv_kernel, image_size=image_size,
               global_pool=global_pool,
               conv_method=conv_method, seed=seed, rng=rng)
