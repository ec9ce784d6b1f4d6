"""Conv2d: a 2-D convolution layer whose algorithm (loops, im2col, fft, winograd) can be switched."""
from __future__ import annotations

from .. import init
from .._shapes import float_input, pair, positive_int
from ..functional.conv import CHOICES, conv2d_backward, conv2d_forward
from .base import Layer, Parameter


class Conv2d(Layer):
    """2-D convolution (cross-correlation) with PyTorch's arguments, layout and initialisation.

    x: (N, in_channels, H, W) -> y: (N, out_channels, Ho, Wo); weight:
    (out_channels, in_channels/groups, kh, kw), bias: (out_channels,). ``method`` ("loops",
    "im2col", "fft", "winograd" or "auto", see ``minidl.functional.conv``) may be reassigned
    at any time; all give the same result. "winograd" runs on 3x3 kernels at stride 1 without
    dilation and with at least 16 channels a group (im2col elsewhere); "auto" is winograd
    where numba's compiled kernels run and im2col otherwise. ``rng`` (a numpy Generator)
    seeds the initialisation.

    ``keep_patches`` (im2col only, default False): keep the whole patch matrix, kh*kw times
    the input's size (for the vgg38 layer at batch 100, 113 MiB), in the cache from forward to
    backward instead of rebuilding it block by block in backward. It trades memory for one
    copy of the input per step; on a CPU the rebuild is about as fast (the blocks stay in
    cache), so keep it off unless memory is plentiful and measurement says it pays.
    The cache holds (not copies) the input x: do not modify x in place before ``backward``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, method: str = "auto",
                 keep_patches: bool = False, rng=None):
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels", "Conv2d")
        self.out_channels = positive_int(out_channels, "out_channels", "Conv2d")
        self.groups = positive_int(groups, "groups", "Conv2d")
        self.kernel_size = _pair_at_least(kernel_size, "kernel_size", 1)
        self.stride = _pair_at_least(stride, "stride", 1)
        self.padding = _pair_at_least(padding, "padding", 0)
        self.dilation = _pair_at_least(dilation, "dilation", 1)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"Conv2d: groups={self.groups} must divide in_channels="
                             f"{self.in_channels} and out_channels={self.out_channels}")
        self.method = method
        self.keep_patches = bool(keep_patches)
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(init.pytorch_default(shape, rng))
        self.bias = Parameter(init.pytorch_default_bias(shape, rng)) if bias else None

    @property
    def method(self) -> str:
        """The algorithm asked for by the next forward pass: "loops", "im2col", "fft",
        "winograd" or "auto" (the one that ran is ``self._cache.method``)."""
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        if value not in CHOICES:
            raise ValueError(f"Conv2d: unknown method {value!r}; expected one of {CHOICES}")
        self._method = value

    def forward(self, x):
        self._check_input(x, 4, self.in_channels)
        float_input(x, self.describe())
        bias = None if self.bias is None else self.bias.data
        try:
            out, self._cache = conv2d_forward(x, self.weight.data, bias, self.stride,
                                              self.padding, self.dilation, self.groups,
                                              self.method, self.keep_patches)
        except ValueError as err:  # e.g. an input smaller than the kernel: name the layer
            raise ValueError(f"{self!r}: {err}") from None
        return out

    def backward(self, dout):
        cache = self._saved()
        try:
            dx, dw, db = conv2d_backward(dout, cache)
        except ValueError as err:
            raise ValueError(f"{self!r}: {err}") from None
        self.weight.grad += dw
        if db is not None:
            self.bias.grad += db
        return dx

    def extra_repr(self) -> str:
        """PyTorch's wording, plus the method and keep_patches when not the defaults."""
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.method != "auto":
            text += f", method={self.method!r}"
        if self.keep_patches:
            text += ", keep_patches=True"
        return text


def _pair_at_least(value, name: str, low: int) -> tuple[int, int]:
    """An int or pair as ``(int, int)``, each entry at least ``low``."""
    try:
        result = pair(value, name)
    except ValueError as err:
        raise ValueError(f"Conv2d: {err}") from None
    if min(result) < low:
        raise ValueError(f"Conv2d: {name} must be at least {low}, got {value!r}")
    return result
