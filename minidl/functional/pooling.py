"""Max, average and global-average pooling over (N, C, H, W) inputs.

Windows are read as kh*kw strided slices of the (padded) input, one slice per kernel offset,
so there is no loop over the batch or the pixels. The backward passes scatter the gradient
back by adding into the same kh*kw strided slices: where windows overlap (stride < kernel)
the contributions of every window add, which is what the chain rule asks for, and it avoids
the slow ``np.add.at``.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import backend
from .._shapes import conv_output_size, float_input, pair
from ._windows import crop_hw, pad_hw, window_slice


class PoolCache(NamedTuple):
    """What a max or average pooling forward keeps for its backward.

    x_shape: (N, C, H, W) of the input; dtype: its dtype.
    kernel, stride, padding: (h, w) pairs as validated; out_hw: (Ho, Wo).
    argmax: max pooling only, (N, C, Ho, Wo) uint8 (int32 for windows over 256 taps): the
        row-major offset ``i * kw + j`` of each window's first maximum; None for average pooling.
    """

    x_shape: tuple
    dtype: object
    kernel: tuple
    stride: tuple
    padding: tuple
    out_hw: tuple
    argmax: object = None


class GlobalPoolCache(NamedTuple):
    """What ``global_avgpool2d_forward`` keeps: x_shape (N, C, H, W) and the input's dtype."""

    x_shape: tuple
    dtype: object


def pool_geometry(x_shape, kernel_size, stride=None, padding=0, who: str = "pool2d"):
    """Validate pooling hyper-parameters against an input shape and return the window geometry.

    x_shape: (N, C, H, W). ``stride`` defaults to ``kernel_size`` (PyTorch). Returns
    ``((kh, kw), (sh, sw), (ph, pw), (Ho, Wo))``. Raises ValueError naming ``who``.
    """
    (kh, kw), (sh, sw), (ph, pw) = check_pool_params(kernel_size, stride, padding, who)
    if len(x_shape) != 4:
        raise ValueError(f"{who}: expected input of shape (N, C, H, W), got {tuple(x_shape)}")
    H, W = x_shape[2], x_shape[3]
    if H + 2 * ph < kh or W + 2 * pw < kw:
        raise ValueError(f"{who}: kernel {(kh, kw)} is larger than the padded input "
                         f"{(H + 2 * ph, W + 2 * pw)} (input of shape {tuple(x_shape)}, "
                         f"padding {(ph, pw)})")
    Ho = conv_output_size(H, kh, sh, ph)
    Wo = conv_output_size(W, kw, sw, pw)
    return (kh, kw), (sh, sw), (ph, pw), (Ho, Wo)


def check_pool_params(kernel_size, stride=None, padding=0, who: str = "pool2d"):
    """Validate kernel/stride/padding (no input needed); return them as three pairs.

    PyTorch's rule: padding may be at most half the kernel, otherwise a window could lie
    entirely in the padding (an all ``-inf`` max or a meaningless average).
    """
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = (kh, kw) if stride is None else pair(stride, "stride")
    ph, pw = pair(padding, "padding")
    if kh < 1 or kw < 1:
        raise ValueError(f"{who}: kernel_size must be positive, got {(kh, kw)}")
    if sh < 1 or sw < 1:
        raise ValueError(f"{who}: stride must be positive, got {(sh, sw)}")
    if ph < 0 or pw < 0:
        raise ValueError(f"{who}: padding must be non-negative, got {(ph, pw)}")
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"{who}: padding {(ph, pw)} must be at most half the kernel size "
                         f"{(kh, kw)}")
    return (kh, kw), (sh, sw), (ph, pw)


def _scatter_shape(x_shape, padding):
    N, C, H, W = x_shape
    return (N, C, H + 2 * padding[0], W + 2 * padding[1])


def maxpool2d_forward(x, kernel_size, stride=None, padding=0):
    """Max pooling; the padding is ``-inf`` so it never wins (PyTorch semantics).

    x: (N, C, H, W) -> out: (N, C, Ho, Wo). Ties inside a window send the whole gradient to
    the FIRST maximum in row-major window order (like ``argmax``; PyTorch's CPU kernel does
    the same), so the backward is a valid subgradient and gradients are not split.
    """
    x = float_input(x, "maxpool2d_forward")
    xp = backend.get_array_module(x)
    kernel, stride, padding, out_hw = pool_geometry(x.shape, kernel_size, stride, padding,
                                                    "maxpool2d")
    kh, kw = kernel
    xpad = pad_hw(x, padding, -xp.inf)
    # Running max over kernel offsets: memory stays O(output), never O(kh*kw*output).
    out = xpad[window_slice(0, 0, stride, out_hw)].copy()
    index_type = xp.uint8 if kh * kw <= 256 else xp.int32
    argmax = xp.zeros(out.shape, dtype=index_type)
    for k in range(1, kh * kw):
        window = xpad[window_slice(k // kw, k % kw, stride, out_hw)]
        better = window > out  # strict: an equal later value does not steal the first max
        xp.maximum(out, window, out=out)
        # argmax = where(better, k, argmax), written arithmetically: several times faster
        # than np.where or a boolean-mask assignment on large arrays.
        argmax *= ~better
        argmax += better * index_type(k)
    return out, PoolCache(x.shape, x.dtype, kernel, stride, padding, out_hw, argmax)


def maxpool2d_backward(dout, cache):
    """dout: (N, C, Ho, Wo) -> dx: (N, C, H, W); each output's gradient goes to its argmax."""
    xp = backend.get_array_module(dout)
    kh, kw = cache.kernel
    dxpad = xp.zeros(_scatter_shape(cache.x_shape, cache.padding), dtype=cache.dtype)
    for k in range(kh * kw):
        # A 0/1 mask times dout (faster than np.where) sends each gradient to its argmax only.
        dxpad[window_slice(k // kw, k % kw, cache.stride, cache.out_hw)] += \
            (cache.argmax == k) * dout
    return crop_hw(dxpad, cache.x_shape[2:], cache.padding)


def avgpool2d_forward(x, kernel_size, stride=None, padding=0):
    """Average pooling with zero padding counted in the divisor (PyTorch's count_include_pad=True).

    x: (N, C, H, W) -> out: (N, C, Ho, Wo); every window divides by kh*kw. The window sum is
    separable: add the kh rows of every window first, then the kw columns of those row sums,
    kh + kw strided adds instead of kh * kw.
    """
    x = float_input(x, "avgpool2d_forward")
    kernel, stride, padding, out_hw = pool_geometry(x.shape, kernel_size, stride, padding,
                                                    "avgpool2d")
    (kh, kw), (sh, sw), (Ho, Wo) = kernel, stride, out_hw
    xpad = pad_hw(x, padding)
    rows = xpad[:, :, _taps(0, sh, Ho)].copy()  # (N, C, Ho, Wp): the row sums
    for i in range(1, kh):
        rows += xpad[:, :, _taps(i, sh, Ho)]
    out = rows[..., _taps(0, sw, Wo)].copy()
    for j in range(1, kw):
        out += rows[..., _taps(j, sw, Wo)]
    out /= kh * kw
    return out, PoolCache(x.shape, x.dtype, kernel, stride, padding, out_hw)


def avgpool2d_backward(dout, cache):
    """dout: (N, C, Ho, Wo) -> dx: (N, C, H, W); each window spreads dout/(kh*kw) over itself,
    columns first, then rows (the forward's two steps in reverse)."""
    xp = backend.get_array_module(dout)
    (kh, kw), (sh, sw), (Ho, Wo) = cache.kernel, cache.stride, cache.out_hw
    N, C, Hp, Wp = _scatter_shape(cache.x_shape, cache.padding)
    share = (dout / (kh * kw)).astype(cache.dtype, copy=False)
    drows = xp.zeros((N, C, Ho, Wp), dtype=cache.dtype)
    for j in range(kw):
        drows[..., _taps(j, sw, Wo)] += share
    dxpad = xp.zeros((N, C, Hp, Wp), dtype=cache.dtype)
    for i in range(kh):
        dxpad[:, :, _taps(i, sh, Ho)] += drows
    return crop_hw(dxpad, cache.x_shape[2:], cache.padding)


def _taps(offset: int, stride: int, count: int) -> slice:
    """Along one axis: the input index that window tap ``offset`` meets, for each of ``count``
    windows ``stride`` apart."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def global_avgpool2d_forward(x):
    """Mean over the spatial axes (Lin et al., 2014, "Network In Network").

    x: (N, C, H, W) -> out: (N, C).
    """
    x = float_input(x, "global_avgpool2d_forward")
    if x.ndim != 4:
        raise ValueError(f"global_avgpool2d: expected input of shape (N, C, H, W), "
                         f"got {tuple(x.shape)}")
    return x.mean(axis=(2, 3)), GlobalPoolCache(x.shape, x.dtype)


def global_avgpool2d_backward(dout, cache):
    """dout: (N, C) -> dx: (N, C, H, W), each pixel receiving dout / (H * W)."""
    xp = backend.get_array_module(dout)
    N, C, H, W = cache.x_shape
    dx = xp.empty(cache.x_shape, dtype=cache.dtype)
    dx[...] = (dout / (H * W))[:, :, None, None]
    return dx
