"""Inverted dropout (Srivastava et al., 2014, "Dropout: A Simple Way to Prevent Neural
Networks from Overfitting"): kept units are scaled by 1/(1-p) at training time so that the
network needs no rescaling at test time.

The mask is computed where ``x`` lives, from one 64-bit seed: entry ``i`` is kept when the
SplitMix64 hash of ``seed + i * golden`` (Steele et al., 2014) is at least ``p * 2**64``.
Only integer arithmetic is used, so CPU and GPU compute the same bits; the layer draws the
seed from a CPU numpy Generator, so a checkpoint of that Generator resumes the exact masks,
and no mask is copied from host to device on a GPU (only the seed travels).
"""
from __future__ import annotations

from typing import NamedTuple

from .. import backend
from .._shapes import float_input, unit_interval

_GOLDEN = 0x9E3779B97F4A7C15               # 2**64 / golden ratio: SplitMix64's increment
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MANTISSA = 53                             # compare the top 53 bits, as a float64 uniform would


class DropoutCache(NamedTuple):
    """What ``dropout_backward`` needs: ``scaled_mask`` = keep / (1 - p), x's dtype and device."""

    scaled_mask: object


def dropout_mask(shape, p: float, seed: int, xp):
    """Boolean keep-mask of ``shape`` on ``xp``'s device: True with probability ``1 - p``.

    seed: an int in [0, 2**64). Same seed -> same mask on every device and for every dtype.
    """
    n = 1
    for size in shape:
        n *= int(size)
    z = xp.arange(n, dtype=xp.uint64)
    z *= xp.uint64(_GOLDEN)                # uint64 arithmetic wraps modulo 2**64, as meant
    z += xp.uint64(seed)
    z ^= z >> xp.uint64(30)
    z *= xp.uint64(_MIX1)
    z ^= z >> xp.uint64(27)
    z *= xp.uint64(_MIX2)
    z ^= z >> xp.uint64(31)
    threshold = xp.uint64(int(float(p) * 2 ** _MANTISSA))
    return (z >> xp.uint64(64 - _MANTISSA) >= threshold).reshape(tuple(shape))


def dropout_forward(x, p: float, seed: int):
    """Zero each entry with probability ``p`` and scale the rest by ``1/(1-p)``.

    x: any shape, float -> out: same shape and dtype; cache: DropoutCache.
    """
    x = float_input(x, "dropout_forward")
    p = unit_interval(p, "p", "dropout_forward")
    keep = dropout_mask(x.shape, p, seed, backend.get_array_module(x))
    # float(): a numpy float64 scale would promote a float32 input to float64 (NEP 50).
    scaled_mask = keep.astype(x.dtype) * (1.0 / (1.0 - float(p)))
    return x * scaled_mask, DropoutCache(scaled_mask)


def dropout_backward(dout, cache: DropoutCache):
    """dx = dout * the same scaled mask."""
    return dout * cache.scaled_mask
