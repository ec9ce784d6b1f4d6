"""Padding, cropping and strided window slices shared by convolution and pooling (N, C, H, W)."""
from __future__ import annotations

from .. import backend


def pad_hw(x, padding: tuple[int, int], value=0):
    """Pad the last two axes by ``padding = (ph, pw)`` with ``value``; x itself (no copy) when 0."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    xp = backend.get_array_module(x)
    return xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


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
