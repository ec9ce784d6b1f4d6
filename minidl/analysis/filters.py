"""Convolution filters drawn as one image: a grid of tiles, one per output channel."""
from __future__ import annotations

import math

import numpy as np

from .. import backend


def filter_grid(weight, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile conv filters into one image with values in [0, 1] (the background is 1, white).

    weight: (O, C, kh, kw). With C == 3 each filter is an RGB tile (channels as colours, as
    they meet an RGB input); otherwise each filter shows its first input channel in grey.
    Each tile is min-max scaled on its own (a constant filter becomes 0.5), so the pattern
    and not the magnitude is visible. Returns (rows*(kh+pad)-pad, cols*(kw+pad)-pad[, 3]),
    ``cols`` defaulting to ceil(sqrt(O)).
    """
    w = np.asarray(backend.asnumpy(weight), dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"filter_grid: expected a conv weight (O, C, kh, kw), got shape {w.shape}")
    n, channels, kh, kw = w.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    tiles = w.transpose(0, 2, 3, 1) if channels == 3 else w[:, 0, :, :, None]  # (O, kh, kw, c)
    lo = tiles.min(axis=(1, 2, 3), keepdims=True)
    span = tiles.max(axis=(1, 2, 3), keepdims=True) - lo
    scaled = np.where(span > 0, (tiles - lo) / np.where(span > 0, span, 1), 0.5)
    depth = scaled.shape[-1]
    image = np.ones((rows * (kh + pad) - pad, cols * (kw + pad) - pad, depth))
    for i in range(n):  # one tile per filter: a handful of copies, not a loop over pixels
        r, c = divmod(i, cols)
        image[r * (kh + pad):r * (kh + pad) + kh, c * (kw + pad):c * (kw + pad) + kw] = scaled[i]
    return image if depth == 3 else image[..., 0]
