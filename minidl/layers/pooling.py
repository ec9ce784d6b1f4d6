"""Pooling layers: MaxPool2d, AvgPool2d and GlobalAvgPool2d (no parameters)."""
from __future__ import annotations

from ..functional import pooling as F
from .base import Layer


class _Pool2d(Layer):
    """Shared hyper-parameter handling for windowed pooling; x: (N, C, H, W)."""

    # Subclasses set the functional pair ``_forward(x, k, s, p) -> (out, cache)``, ``_backward``.
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        who = (f"{type(self).__name__}(kernel_size={kernel_size!r}, stride={stride!r}, "
               f"padding={padding!r})")
        kernel, stride_pair, padding_pair = F.check_pool_params(kernel_size, stride, padding, who)
        self.kernel_size, self.stride, self.padding = kernel, stride_pair, padding_pair

    def output_shape(self, x_shape):
        """(N, C, Ho, Wo) for an input shape (N, C, H, W); ValueError if the window does not fit."""
        _, _, _, (Ho, Wo) = F.pool_geometry(x_shape, self.kernel_size, self.stride, self.padding,
                                            repr(self))
        return (x_shape[0], x_shape[1], Ho, Wo)

    def forward(self, x):
        self._check_input(x, 4)
        self.output_shape(x.shape)  # raises with this layer's name before the functional op does
        out, self._cache = self._forward(x, self.kernel_size, self.stride, self.padding)
        return out

    def backward(self, dout):
        cache = self._saved()
        self._check_dout(dout, cache.x_shape[:2] + cache.out_hw)
        return self._backward(dout, cache)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max over each kh x kw window, padding with -inf; x: (N, C, H, W) -> (N, C, Ho, Wo).

    ``stride`` defaults to ``kernel_size``. Ties route the gradient to the first maximum in
    row-major window order (as ``argmax`` does).
    """

    _forward = staticmethod(F.maxpool2d_forward)
    _backward = staticmethod(F.maxpool2d_backward)


class AvgPool2d(_Pool2d):
    """Mean over each kh x kw window, zero padding counted (count_include_pad=True).

    x: (N, C, H, W) -> (N, C, Ho, Wo); ``stride`` defaults to ``kernel_size``.
    """

    _forward = staticmethod(F.avgpool2d_forward)
    _backward = staticmethod(F.avgpool2d_backward)


class GlobalAvgPool2d(Layer):
    """Mean over all spatial positions (Lin et al., 2014); x: (N, C, H, W) -> (N, C)."""

    def forward(self, x):
        self._check_input(x, 4)
        out, self._cache = F.global_avgpool2d_forward(x)
        return out

    def backward(self, dout):
        cache = self._saved()
        self._check_dout(dout, cache.x_shape[:2])
        return F.global_avgpool2d_backward(dout, cache)
