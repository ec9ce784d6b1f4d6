"""VGG networks from a layer configuration (Simonyan & Zisserman, 2015): vgg11 (VGG-A), vgg16,
vgg19 (VGG-E) and vgg14_mixed (the training-methods survey's 14-layer net).

A configuration lists, per layer, its output channels (an int: a ``kernel_size`` conv, 3x3
unless the model says otherwise, padded to keep H and W), ("conv", c, k) for a k x k conv,
or ("mixed", c) / ("sc", c) for the structure-composing layers that ``sfnet`` uses, with "M"
closing a scale by its down-sampling. Every conv is followed by [a norm layer] and the
activation; the next layer takes the channels the activation gives (twice as many after a
CReLU).

Down-sampling (``downsample``, the slides' Table VI study, 002): "max" closes a scale with a
2x2 max pool (VGG's); "max_overlap" with a 3x3 max pool of stride 2, padded by 1 (AlexNet's
overlapping pooling); "stride" drops the pool and gives the scale's last conv a stride of 2
(Springenberg et al.'s first way to remove pooling: the same layers and the same parameters,
which is why Table VI lists one parameter count for both rows of a network).

Head, as the SfNet preprint's Table 1 and listing build it (``head="fc"``, the default of
vgg16 and sfnet): every scale, the fifth included, closes with its down-sampling, and
[FC-hidden, [BN], act, [dropout]] x 2 and a final FC read the flattened final map, 512 * h * w
features. ``head="gap"``: global average pooling and one linear classifier instead of the FC
layers (NiN's and the slides' "global average pooling instead of FC layers").
``image_size`` is the input side the model is built for: 32 (CIFAR-10) leaves a 1x1 map, 224
(ImageNet) a 7x7 map (the listing's ``in_size`` of 1 and 49). A 28x28 image cannot take five
halvings; the rule: a scale whose map already has a side of 1 ends without its down-sampling,
so ``image_size=28`` goes 28 -> 14 -> 7 -> 3 -> 1 with 2x2 pools (28 -> 14 -> 7 -> 4 -> 2 -> 1
with the padded 3x3 pools or strided convs) and the fifth scale keeps its 1x1 map (same
parameters as at 32). ``python -m minidl.train`` passes the data set's image size; with the
flattened head, an input of another size is refused with a message saying so.

``global_pool=True`` is the variant minidl used before (and vgg11's default): the last scale
ends in global average pooling instead of its down-sampling, so the head sees 8 * width
channels whatever the input size (at 32x32 an average rather than a max over the final 2x2 map).

``CONFIG_D`` holds the options of configuration D as trained on ImageNet (no BatchNorm,
[FC-4096, ReLU, dropout 0.5] x 2): ``build("vgg16", num_classes=1000, **CONFIG_D)`` has the
138 M parameters and 15,300 M mult-adds of the MobileNet paper's Table 8.
"""
from __future__ import annotations

from .. import layers as L
from .._shapes import conv_output_size
from ._blocks import (INITS, NamedSequential, activation_factory, add_head, apply_init,
                      check_choice, check_input_size, check_int, check_probability, fc_head,
                      image_hw, make_rng)
from .registry import register

M = "M"
VGG_A = (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M)
VGG_16 = (64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M)
VGG_19 = (64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M,
          512, 512, 512, 512, M)
# The survey (001, experiment 1) mixes kernel sizes in a 14-layer net (11 conv + 3 FC) but
# gives no table: ours keeps VGG-19's five scales and widths, and opens each scale with a 5x5
# conv (its wider view) followed by 3x3 convs ("fewer layers, larger kernels").
VGG_14_MIXED = (("conv", 64, 5), 64, M, ("conv", 128, 5), 128, M,
                ("conv", 256, 5), 256, 256, M, ("conv", 512, 5), 512, M,
                ("conv", 512, 5), 512, M)
BASE_WIDTH = 64  # channels of the first scale in the configurations above
# VGG-16 as Simonyan & Zisserman trained it on 224x224 ImageNet (Table 8 of the slides)
CONFIG_D = {"bn": False, "hidden": 4096, "dropout": 0.5, "image_size": 224}

NORMS = ("none", "bn", "lrn")
DOWNSAMPLES = ("max", "max_overlap", "stride")
HEADS = ("fc", "gap")
# (kernel, stride, padding) of each down-sampling, for its output side: a stride-2 conv of odd
# kernel k padded by k // 2 gives ceil(s / 2), as the 3x3 pool padded by 1 does (so "stride"
# is entered as that window); the 2x2 pool gives floor(s / 2).
_WINDOWS = {"max": (2, 2, 0), "max_overlap": (3, 2, 1), "stride": (3, 2, 1)}


def norm_layer(norm: str, channels: int):
    """The layer after a conv: BatchNorm2d, AlexNet's LRN in its place, or None (left out).

    LRN as AlexNet set it: 5 channels, k = 2, beta = 0.75 and 1e-4 per channel (PyTorch's
    alpha / size, so alpha = 5e-4).
    """
    if norm == "bn":
        return L.BatchNorm2d(channels)
    if norm == "lrn":
        return L.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
    return None


class VGG(NamedSequential):
    """A VGG built from ``config``: x: (N, in_channels, H, W) -> logits (N, num_classes).

    Children: ``features`` (scales ``0`` ... ``4``, each with ``conv1``/``bn1``/``act1`` ... and
    ``pool``; sfnet's scales 4 and 5 hold ``mixed1``, ``sc2``, ``sc3``), [``pool`` (global
    average, with ``global_pool`` or ``head="gap"``)], ``flatten``, then ``classifier``:
    with ``head="fc"`` (``fc1``, [``bn1``], ``act1``, ..., ``fc3``), with ``head="gap"`` one
    Linear (after [``dropout``]). ``width`` scales every conv's channels by width / 64;
    ``kernel_size`` is the convs' kernel where the config gives none; ``norm``: "none",
    "bn" (BatchNorm2d) or "lrn" (LocalResponseNorm in BatchNorm's place), after every conv;
    ``hidden`` is the FC layers' width; ``head_bn`` puts BatchNorm1d after the two hidden FC
    layers (the SfNet paper's VGG-16 head). ``downsample``: "max", "max_overlap" or "stride"
    (module docstring). ``image_size``: the input side the down-sampling and the flattened
    head are built for; with the flattened head another input size is refused.
    ``mixed_channels``, ``pool_size``, ``mixed_conv_kernel``: of sfnet's structure composing
    layers (``MixedSCLayer``'s ``conv_channels`` and ``conv_kernel_size``). ``init``:
    "pytorch" (the layers' default draw) or "he" (He-normal weights, zero biases; see
    ``_blocks.apply_init``).
    """

    def __init__(self, config, in_channels: int = 3, num_classes: int = 10, width: int = 64,
                 hidden: int = 512, norm: str = "none", head_bn: bool = False,
                 activation: str = "relu", dropout: float = 0.0, kernel_size: int = 3,
                 downsample: str = "max", head: str = "fc", mixed_channels: int = 16,
                 pool_size: int = 3, mixed_conv_kernel: int | None = None, image_size=32,
                 global_pool: bool = False, init: str = "pytorch", conv_method: str = "auto",
                 seed: int | None = 0, rng=None):
        check_int("VGG", 1, in_channels=in_channels, num_classes=num_classes, width=width,
                  hidden=hidden, kernel_size=kernel_size)
        check_probability("VGG", dropout=dropout)
        check_choice("VGG", norm=(norm, NORMS), downsample=(downsample, DOWNSAMPLES),
                     head=(head, HEADS), init=(init, INITS))
        if kernel_size % 2 == 0:
            raise ValueError(f"VGG: kernel_size must be odd so that padding keeps H and W, "
                             f"got {kernel_size!r}")
        if not config or config[-1] != M:
            raise ValueError(f"VGG: config must end with {M!r} (the last scale's pool), "
                             f"got {config!r}")
        super().__init__()
        rng = make_rng(seed, rng)
        self.global_pool = bool(global_pool)
        self.flat_head = head == "fc" and not global_pool
        self._summary = (f"width={width}, norm={norm!r}, activation={activation!r}, "
                         f"downsample={downsample!r}, head={head!r}, "
                         + ("global_pool=True" if global_pool else f"image_size={image_size}"))
        act = activation_factory(activation)
        self.image_hw = image_hw(image_size, "VGG")
        scale_specs = _split_scales(config)
        # every scale closes with its down-sampling, except the last one under global_pool,
        # and (the paper form) one whose map already has a side of 1
        down, final_hw = _downsampled(self.image_hw, len(scale_specs), downsample)
        if global_pool:
            down[-1] = False

        def layer(spec, c_in, stride):
            kind, c, *rest = spec if isinstance(spec, tuple) else ("conv", spec)
            c_out = max(1, c * width // BASE_WIDTH)
            if kind == "conv":
                k = rest[0] if rest else kernel_size
                return kind, c_out, L.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2,
                                             method=conv_method, rng=rng)
            if stride != 1:
                raise ValueError(f"VGG: downsample='stride' needs each scale to end with a "
                                 f"conv, but one ends with a {kind!r} layer")
            if kind == "mixed":
                return kind, c_out, L.MixedSCLayer(c_in, c_out, pool_size=pool_size,
                                                   conv_channels=mixed_channels,
                                                   conv_kernel_size=mixed_conv_kernel,
                                                   method=conv_method, rng=rng)
            if kind == "sc":
                return kind, c_out, L.SCLayer(c_in, c_out, pool_size=pool_size,
                                              method=conv_method, rng=rng)
            raise ValueError(f"VGG: unknown layer kind {kind!r} in config (conv, mixed, sc, {M!r})")

        scales, c_in = [], in_channels
        for specs, is_down in zip(scale_specs, down):
            named = []
            for j, spec in enumerate(specs, start=1):
                last = j == len(specs)
                stride = 2 if is_down and downsample == "stride" and last else 1
                kind, c_out, module = layer(spec, c_in, stride)
                named += [(f"{kind}{j}", module), (f"bn{j}", norm_layer(norm, c_out)),
                          (f"act{j}", act())]
                c_in = act.channels(c_out)
            if is_down and downsample != "stride":
                k, s, p = _WINDOWS[downsample]
                named.append(("pool", L.MaxPool2d(k, stride=s, padding=p)))
            scales.append(NamedSequential(named))
        self.features = L.Sequential(*scales)
        if head == "gap":
            add_head(self, c_in, num_classes, dropout, rng)
        else:
            if global_pool:
                self.pool = L.GlobalAvgPool2d()
                features = c_in
            else:
                features = c_in * final_hw[0] * final_hw[1]
            self.flatten = L.Flatten()
            self.classifier = fc_head(features, hidden, num_classes, act, dropout, head_bn, rng)
        apply_init(self, init, rng)

    def forward(self, x):
        if self.flat_head:
            check_input_size(self, x, self.image_hw)
        return super().forward(x)


def _split_scales(config) -> list:
    """``config`` as a list of scales, each the list of its layer specs (without the "M")."""
    scales, current = [], []
    for spec in config:
        if spec == M:
            scales.append(current)
            current = []
        else:
            current.append(spec)
    return scales


def _downsampled(hw, n_scales: int, downsample: str = "max") -> tuple:
    """Which of ``n_scales`` scales down-sample an (H, W) = ``hw`` input, and the final (H, W).

    A scale down-samples when its map has both sides >= 2 (so 28x28 with 2x2 pools: the first
    four, 28 -> 14 -> 7 -> 3 -> 1); the output side follows the down-sampling's window.
    """
    k, s, p = _WINDOWS[downsample]
    down = []
    for _ in range(n_scales):
        down.append(min(hw) >= 2)
        if down[-1]:
            hw = tuple(conv_output_size(side, k, s, p) for side in hw)
    return down, hw


@register("vgg11")
def vgg11(in_channels: int = 3, num_classes: int = 10, width: int = 64, hidden: int = 512,
          bn: bool = False, activation: str = "relu", dropout: float = 0.0,
          downsample: str = "max", head: str = "fc", global_pool: bool = True,
          image_size: int = 32, conv_method: str = "auto", seed: int | None = 0,
          rng=None) -> VGG:
    """VGG-A (8 conv + 3 FC layers), ``bn=True`` for VGG-A-BN (the Fudan report's comparison).

    Global average pooling in place of the fifth max pool by default (``global_pool=False``
    for the paper's five max pools and flattened head).
    """
    return VGG(VGG_A, in_channels, num_classes, width, hidden, norm="bn" if bn else "none",
               head_bn=False, activation=activation, dropout=dropout, downsample=downsample,
               head=head, image_size=image_size, global_pool=global_pool,
               conv_method=conv_method, seed=seed, rng=rng)


@register("vgg16")
def vgg16(in_channels: int = 3, num_classes: int = 10, width: int = 64, hidden: int = 1024,
          bn: bool = True, activation: str = "relu", dropout: float = 0.0,
          downsample: str = "max", head: str = "fc", image_size: int = 32,
          global_pool: bool = False, conv_method: str = "auto", seed: int | None = 0,
          rng=None) -> VGG:
    """VGG-16 as the SfNet preprint's Table 1 builds it: BN + ReLU after every conv, a max pool
    after each of the five scales, [FC-1024, BN, ReLU] x 2, FC.

    ``bn=False`` drops every BatchNorm (convs and head): with ``hidden=4096``,
    ``dropout=0.5`` and ``image_size=224`` (``CONFIG_D``) it is the original configuration D.
    """
    return VGG(VGG_16, in_channels, num_classes, width, hidden, norm="bn" if bn else "none",
               head_bn=bn, activation=activation, dropout=dropout, downsample=downsample,
               head=head, image_size=image_size, global_pool=global_pool,
               conv_method=conv_method, seed=seed, rng=rng)


@register("vgg19")
def vgg19(in_channels: int = 3, num_classes: int = 10, width: int = 64, hidden: int = 512,
          kernel_size: int = 3, norm: str = "none", activation: str = "relu",
          dropout: float = 0.2, downsample: str = "max", head: str = "fc",
          image_size: int = 32, init: str = "pytorch", conv_method: str = "auto",
          seed: int | None = 0, rng=None) -> VGG:
    """VGG-19 (configuration E: 16 conv + 3 FC layers) for the survey's experiments (001).

    ``kernel_size=3`` is experiment 1's "only 3x3", ``kernel_size=5`` its "only 5x5" (padding
    2, so the maps keep their size and the same pools apply). ``norm``: "none" (experiment 3),
    "bn" (experiment 4), "lrn" (AlexNet's LRN in BatchNorm's place); ``activation`` any of
    ``minidl.layers.activations`` (relu, leaky_relu, elu, swish, swish_trainable, crelu).
    Dropout 0.2 in the FC head, the survey's setting. The survey's VGG table is not given: the
    head is [FC-hidden, act, dropout] x 2, FC, on the flattened final map (as vgg16).
    ``init="he"`` draws He-normal weights: without BatchNorm, 19 layers of the default draw
    shrink the signal until nothing trains.
    """
    return VGG(VGG_19, in_channels, num_classes, width, hidden, norm=norm,
               activation=activation, dropout=dropout, kernel_size=kernel_size,
               downsample=downsample, head=head, image_size=image_size, init=init,
               conv_method=conv_method, seed=seed, rng=rng)


@register("vgg14_mixed")
def vgg14_mixed(in_channels: int = 3, num_classes: int = 10, width: int = 64,
                hidden: int = 512, norm: str = "none", activation: str = "relu",
                dropout: float = 0.2, downsample: str = "max", head: str = "fc",
                image_size: int = 32, init: str = "pytorch", conv_method: str = "auto",
                seed: int | None = 0, rng=None) -> VGG:
    """The survey's 14-layer net mixing kernel sizes (001, experiment 1): 11 conv + 3 FC.

    ``VGG_14_MIXED``: VGG-19's scales and widths, each scale opened by a 5x5 conv and continued
    with 3x3 convs (our reading; the survey gives no table). Options as ``vgg19``.
    """
    return VGG(VGG_14_MIXED, in_channels, num_classes, width, hidden, norm=norm,
               activation=activation, dropout=dropout, downsample=downsample, head=head,
               image_size=image_size, init=init, conv_method=conv_method, seed=seed, rng=rng)
