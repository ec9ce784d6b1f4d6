"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012, "ImageNet Classification with Deep
Convolutional Neural Networks"), as a single tower: the survey's (seed 001) optimiser network.

conv1 11x11 (96) -> ReLU -> LRN -> max pool 3x3/2 -> conv2 5x5 (256) -> ReLU -> LRN -> max pool
-> conv3 3x3 (384) -> ReLU -> conv4 3x3 (384) -> ReLU -> conv5 3x3 (256) -> ReLU -> max pool
-> [FC-hidden, ReLU, dropout] x 2 -> FC. The paper's order: normalisation after the first two
convs' ReLUs, overlapping 3x3 pools of stride 2 after both of them and after conv5, dropout 0.5
in the first two FC layers; LRN with n = 5, k = 2, alpha = 1e-4, beta = 0.75 (PyTorch's
alpha / size convention: alpha = 5e-4). The paper split its channels over two GPUs (grouped
conv2, conv4, conv5); one tower has all connections.

Two forms, chosen by ``stem_stride``:

- ``stem_stride=1`` (default), for 28x28 / 32x32 images: conv1 pads by 5 and keeps the size,
  so 32 -> 32 -> 15 -> 7 -> 3 (28 -> 13 -> 6 -> 2) and fc1 reads 256 x 3 x 3.
- ``stem_stride=4``, the paper's 224x224 form: conv1 of stride 4, padded by 2: 224 -> 55 -> 27
  -> 13 -> 6, fc1 reads 256 x 6 x 6 = 9,216 features.

``width`` is conv1's channels (96); the other convs scale with it (256, 384, 384, 256 at 96).
``norm``: "lrn" (the paper's), "none", or "bn" (BatchNorm2d after every conv, before its
activation, in place of the LRNs).
"""
from __future__ import annotations

from .. import layers as L
from .._shapes import conv_output_size
from ._blocks import (INITS, NamedSequential, activation_factory, apply_init, check_choice,
                      check_int, check_probability, fc_head, image_hw, make_rng)
from .registry import register

CHANNELS = (96, 256, 384, 384, 256)
KERNELS = (11, 5, 3, 3, 3)
POOLED = (True, True, False, False, True)  # an overlapping max pool follows conv1, conv2, conv5
NORMS = ("lrn", "none", "bn")


class AlexNet(NamedSequential):
    """x: (N, in_channels, H, W) -> logits (N, num_classes); H, W = ``image_size``.

    Children: ``features`` (``conv1``, [``bn1``], ``act1``, [``lrn1``], ``pool1``, ...,
    ``conv5``, ``act5``, ``pool5``), ``flatten``, ``classifier`` (``fc1``, ``act1``,
    ``drop1``, ``fc2``, ``act2``, ``drop2``, ``fc3``).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 96,
                 hidden: int = 4096, norm: str = "lrn", activation: str = "relu",
                 dropout: float = 0.5, stem_stride: int = 1, image_size=32,
                 init: str = "pytorch", conv_method: str = "auto", seed: int | None = 0,
                 rng=None):
        who = type(self).__name__
        check_int(who, 1, in_channels=in_channels, num_classes=num_classes, width=width,
                  hidden=hidden, stem_stride=stem_stride)
        check_probability(who, dropout=dropout)
        check_choice(who, norm=(norm, NORMS), init=(init, INITS))
        super().__init__()
        rng = make_rng(seed, rng)
        self._summary = (f"width={width}, hidden={hidden}, norm={norm!r}, "
                         f"stem_stride={stem_stride}")
        act = activation_factory(activation)
        self.image_hw = hw = image_hw(image_size, who)

        layers, c_in = [], in_channels
        for j, (base, k, pooled) in enumerate(zip(CHANNELS, KERNELS, POOLED), start=1):
            c_out = max(1, round(base * width / CHANNELS[0]))
            stride = stem_stride if j == 1 else 1
            # conv1: padding 2 at the paper's stride 4; padding 5 keeps the size at stride 1
            padding = (2 if stride > 1 else k // 2) if j == 1 else k // 2
            layers += [(f"conv{j}", L.Conv2d(c_in, c_out, k, stride=stride, padding=padding,
                                             method=conv_method, rng=rng)),
                       (f"bn{j}", L.BatchNorm2d(c_out) if norm == "bn" else None),
                       (f"act{j}", act()),
                       (f"lrn{j}", L.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
                        if norm == "lrn" and j <= 2 else None)]
            hw = tuple(conv_output_size(s, k, stride, padding) for s in hw)
            if pooled:
                layers.append((f"pool{j}", L.MaxPool2d(3, stride=2)))
                hw = tuple(conv_output_size(s, 3, 2, 0) for s in hw)
            if min(hw) < 1:
                raise ValueError(f"{who}: a {image_size} input is too small: the map vanishes "
                                 f"after conv{j} (stem_stride={stem_stride})")
            c_in = act.channels(c_out)
        self.features = NamedSequential(layers)
        self.flatten = L.Flatten()
        self.classifier = fc_head(c_in * hw[0] * hw[1], hidden, num_classes, act, dropout,
                                  rng=rng)
        apply_init(self, init, rng)

    def forward(self, x):
        if getattr(x, "ndim", 0) == 4 and tuple(x.shape[2:]) != self.image_hw:
            h, w = self.image_hw
            raise ValueError(f"AlexNet: built for {h}x{w} inputs (image_size), got "
                             f"{x.shape[2]}x{x.shape[3]}: its flattened head depends on the "
                             f"size; build it with image_size={x.shape[2]}")
        return super().forward(x)


register("alexnet")(AlexNet)
