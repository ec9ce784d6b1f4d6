"""Padding, cropping and strided window slices shared by convolution and pooling (N, C, H, W)."""
from __future__ import annotations

from typing import NamedTuple

from .. import backend


def pad_hw(x, padding: tuple[int, int], value=0):
    """Pad the last two axes by ``padding = (ph, pw)`` with ``value``; x itself (no copy) when 0.

    Written as one fill and one copy into a fresh buffer: ``np.pad`` is general (any mode,
    any axes) and about five times slower for this constant border.
    """
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    xp = backend.get_array_module(x)
    N, C, H, W = x.shape
    shape = (N, C, H + 2 * ph, W + 2 * pw)
    # zeros() gets pages the OS has already cleared; full() writes every entry.
    out = xp.zeros(shape, dtype=x.dtype) if value == 0 else xp.full(shape, value, dtype=x.dtype)
    out[:, :, ph:ph + H, pw:pw + W] = x
    return out


def crop_hw(dx_padded, size: tuple[int, int], padding: tuple[int, int]):
    """Drop the padding's rows and columns, leaving ``size = (H, W)``: their gradient belongs
    to no input pixel."""
    (H, W), (ph, pw) = size, padding
    return dx_padded[:, :, ph:ph + H, pw:pw + W]


def window_slice(row, col, stride: tuple[int, int], out_hw: tuple[int, int]):
    """Index of the input pixels that the window tap at offset (row, col) meets, one per
    output position (Ho x Wo of them, ``stride`` apart)."""
    (sh, sw), (Ho, Wo) = stride, out_hw
    return (slice(None), slice(None), slice(row, row + sh * (Ho - 1) + 1, sh),
            slice(col, col + sw * (Wo - 1) + 1, sw))


class Tap(NamedTuple):
    """Where one kernel tap (row, col) meets the *unpadded* input.

    ``out`` indexes the output positions (i, j) whose window puts this tap on a real input
    pixel (the others fall on the zero padding); ``src`` indexes those input pixels, in the
    same order. Both are (rows, cols) pairs of slices for the last two axes.
    """

    row: int
    col: int
    out: tuple[slice, slice]
    src: tuple[slice, slice]


def clipped_taps(src_hw, out_hw, kernel, stride, padding, dilation) -> list[Tap]:
    """Every tap of a ``kernel`` window swept over a zero-padded ``src_hw`` grid, clipped to
    the real pixels, so a caller never needs the padded copy; taps that only ever see the
    padding are left out. Output (i, j) reads input row ``i*sh + row*dh - ph`` (likewise
    columns); ``padding`` may be negative, which crops the input instead.
    """
    rows = [_clip(a * dilation[0] - padding[0], stride[0], src_hw[0], out_hw[0])
            for a in range(kernel[0])]
    cols = [_clip(b * dilation[1] - padding[1], stride[1], src_hw[1], out_hw[1])
            for b in range(kernel[1])]
    return [Tap(a, b, (ro, co), (rs, cs))
            for a, (ro, rs) in enumerate(rows) if ro is not None
            for b, (co, cs) in enumerate(cols) if co is not None]


def _clip(offset: int, stride: int, size: int, count: int):
    """Output indices i < count with ``0 <= offset + i*stride < size``, and the input indices
    they read, as a pair of slices; (None, None) when there are none."""
    lo = max(0, -(offset // stride))                   # first i with offset + i*stride >= 0
    hi = min(count, (size - 1 - offset) // stride + 1)  # one past the last i inside the input
    if lo >= hi:
        return None, None
    first = offset + lo * stride
    return slice(lo, hi), slice(first, first + (hi - lo - 1) * stride + 1, stride)
