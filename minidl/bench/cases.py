"""The named benchmark cases: a layer, its input shape, the implementations to time, its FLOPs.

FLOPs count a multiply-add as 2. A convolution's forward costs
``2 * N * F * Ho * Wo * (C / groups) * kh * kw`` and its backward twice that (dx and dW);
the bias is left out. BatchNorm and the activations are memory-bound, so their FLOP counts
are nominal (the arithmetic per element written below) and their GFLOP/s mostly says how
close they run to memory bandwidth; compare their milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .. import layers as L
from .._shapes import conv_output_size

# nominal arithmetic per element, (forward, backward): see the module docstring
_ELEMENTWISE_FLOPS = {
    "relu": (1, 1),                 # max(x, 0); dout * mask
    "leaky_relu": (2, 2),           # slope * x, max; select or multiply-add
    "batchnorm2d": (8, 11),         # mean, var, normalise, scale+shift; three reductions back
}


@dataclass(frozen=True)
class ConvCase:
    """``Conv2d(C, F, k, padding, groups)`` on x: (N, C, H, W), timed per algorithm."""

    name: str
    N: int
    C: int
    H: int
    W: int
    F: int
    k: int
    padding: int
    groups: int = 1
    methods: tuple = ("im2col", "fft")
    group = "conv"

    @property
    def x_shape(self) -> tuple:
        return (self.N, self.C, self.H, self.W)

    @property
    def impls(self) -> tuple:
        return self.methods

    def describe(self) -> str:
        text = (f"{self.N}x{self.C}x{self.H}x{self.W} -> {self.F}, {self.k}x{self.k} "
                f"pad {self.padding}")
        return text + (f" groups {self.groups}" if self.groups != 1 else "")

    def flops(self) -> tuple[int, int]:
        """(forward, backward) FLOPs."""
        Ho = conv_output_size(self.H, self.k, 1, self.padding)
        Wo = conv_output_size(self.W, self.k, 1, self.padding)
        fwd = 2 * self.N * self.F * Ho * Wo * (self.C // self.groups) * self.k * self.k
        return fwd, 2 * fwd

    def build(self, impl: str, rng):
        return L.Conv2d(self.C, self.F, self.k, padding=self.padding, groups=self.groups,
                        method=impl, rng=rng)

    def with_batch(self, N: int) -> "ConvCase":
        return replace(self, N=N)


@dataclass(frozen=True)
class ElementwiseCase:
    """A BatchNorm2d or activation layer (training mode) on x: (N, C, H, W)."""

    name: str
    layer: str          # "relu" | "leaky_relu" | "batchnorm2d"
    N: int
    C: int
    H: int
    W: int
    impls = ("layer",)

    @property
    def group(self) -> str:
        return "batchnorm" if self.layer == "batchnorm2d" else "activation"

    @property
    def x_shape(self) -> tuple:
        return (self.N, self.C, self.H, self.W)

    def describe(self) -> str:
        return f"{self.N}x{self.C}x{self.H}x{self.W}"

    def flops(self) -> tuple[int, int]:
        per_fwd, per_bwd = _ELEMENTWISE_FLOPS[self.layer]
        size = int(np.prod(self.x_shape))
        return per_fwd * size, per_bwd * size

    def build(self, impl: str, rng):
        if self.layer == "batchnorm2d":
            layer = L.BatchNorm2d(self.C)
            # non-trivial affine parameters, so nothing can be skipped as an identity
            layer.weight.data[...] = rng.uniform(0.5, 1.5, self.C).astype(np.float32)
            layer.bias.data[...] = rng.standard_normal(self.C).astype(np.float32)
            return layer
        return L.LeakyReLU(0.01) if self.layer == "leaky_relu" else L.ReLU()

    def with_batch(self, N: int) -> "ElementwiseCase":
        return replace(self, N=N)


@dataclass(frozen=True)
class StepCase:
    """One training step of ``models.build(model, **options)``: forward, loss, backward, Adam."""

    name: str
    model: str
    options: tuple      # ((option, value), ...): hashable, for a frozen dataclass
    N: int
    C: int = 3
    H: int = 32
    W: int = 32
    classes: int = 10
    group = "step"
    impls = ("model",)

    @property
    def x_shape(self) -> tuple:
        return (self.N, self.C, self.H, self.W)

    def describe(self) -> str:
        flags = " ".join(f"--{k}" if v is True else f"--{k.replace('_', '-')} {v}"
                         for k, v in self.options)
        return f"{self.model} {flags}, batch {self.N}x{self.C}x{self.H}x{self.W}, Adam"

    def build_model(self, seed: int = 0):
        from .. import models
        return models.build(self.model, in_channels=self.C, num_classes=self.classes,
                            seed=seed, **dict(self.options))

    def with_batch(self, N: int) -> "StepCase":
        return replace(self, N=N)


# The vgg38 layer is the shape that dominates the coursework's training time; Winograd is
# timed only where it applies (3x3, stride 1, >= 16 channels a side: elsewhere it is im2col).
CASES = {case.name: case for case in (
    ConvCase("vgg38-32", N=100, C=32, H=32, W=32, F=32, k=3, padding=1,
             methods=("im2col", "fft", "winograd")),
    ConvCase("vgg38-28", N=100, C=32, H=28, W=28, F=32, k=3, padding=1,
             methods=("im2col", "fft", "winograd")),
    ConvCase("first-3to64", N=100, C=3, H=32, W=32, F=64, k=3, padding=1),
    # 5x5 and 11x11 on the old benchmark's shape: where FFT overtakes im2col
    ConvCase("k5", N=16, C=16, H=32, W=32, F=16, k=5, padding=2),
    ConvCase("k11", N=16, C=16, H=32, W=32, F=16, k=11, padding=5),
    ConvCase("depthwise", N=100, C=64, H=16, W=16, F=64, k=3, padding=1, groups=64),
    # the only shape small enough for the explicit-loops reference
    ConvCase("loops-small", N=4, C=8, H=16, W=16, F=8, k=3, padding=1,
             methods=("loops", "im2col", "fft")),
    ElementwiseCase("batchnorm2d", "batchnorm2d", N=100, C=32, H=32, W=32),
    ElementwiseCase("leaky-relu", "leaky_relu", N=100, C=32, H=32, W=32),
    ElementwiseCase("relu", "relu", N=100, C=32, H=32, W=32),
    StepCase("step", "vgg38", (("bn", True), ("residual", True)), N=100),
    # the same step with the Winograd convolution (3x3 stride-1 layers; im2col elsewhere)
    StepCase("step-winograd", "vgg38",
             (("bn", True), ("residual", True), ("conv_method", "winograd")), N=100),
)}

QUICK_BATCH = 2  # --quick: every case at this batch size (BatchNorm needs more than 1 value)


def select(names=None, quick: bool = False) -> list:
    """The cases called ``names`` (all when None), in ``CASES`` order; at QUICK_BATCH if quick.

    An unknown name raises ValueError listing the valid ones.
    """
    if names:
        unknown = [n for n in names if n not in CASES]
        if unknown:
            raise ValueError(f"unknown case(s) {', '.join(map(repr, unknown))}; "
                             f"choose from {', '.join(CASES)}")
    chosen = [c for name, c in CASES.items() if not names or name in names]
    return [c.with_batch(min(c.N, QUICK_BATCH)) for c in chosen] if quick else chosen


def forward_macs(model, x_shape) -> int:
    """Multiply-adds of one forward pass through the model's Conv2d and Linear layers.

    Runs a batch of one example (eval mode) with each such layer's forward wrapped to record
    its input shape, so any architecture is counted from the shapes it really sees; the
    result is scaled to the batch of ``x_shape``.
    """
    macs = []
    leaves = [layer for _, layer in model.named_layers()
              if isinstance(layer, (L.Conv2d, L.Linear))]

    def recorder(layer):
        def forward(x):
            out = type(layer).forward(layer, x)
            if isinstance(layer, L.Conv2d):
                kh, kw = layer.kernel_size
                per_output = (layer.in_channels // layer.groups) * kh * kw
            else:
                per_output = x.shape[-1]
            macs.append(int(np.prod(out.shape)) * per_output)
            return out
        return forward

    was_training = model.training
    model.eval()
    try:
        for layer in leaves:
            object.__setattr__(layer, "forward", recorder(layer))  # an instance attribute
        model(np.zeros((1,) + tuple(x_shape[1:]), dtype=np.float32))
    finally:
        for layer in leaves:
            layer.__dict__.pop("forward", None)
        model.train(was_training)
    return sum(macs) * x_shape[0]
