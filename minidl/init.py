"""Weight initialisers drawing from a seeded generator.

He (Kaiming) initialisation suits ReLU-family networks (He et al., 2015, "Delving Deep into
Rectifiers"); Glorot (Xavier) suits tanh/sigmoid (Glorot & Bengio, 2010). ``pytorch_default``
reproduces what ``torch.nn.Conv2d``/``Linear`` do when constructed: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
All return float32 numpy arrays; layers move them to the device they need.
"""
from __future__ import annotations

import math

import numpy as np

_rng = np.random.default_rng(0)


def seed(value: int) -> None:
    """Re-seed the generator that layers use when no ``rng`` is passed to them."""
    global _rng
    _rng = np.random.default_rng(value)


def default_rng() -> np.random.Generator:
    """The shared generator that layers draw from when no ``rng`` is passed."""
    return _rng


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) for a Linear ``(out, in)`` or conv ``(out, in/groups, kh, kw)`` weight."""
    if len(shape) < 2:
        raise ValueError(f"fan-in/fan-out need a weight of at least 2 dimensions, got {tuple(shape)}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _rng_or_default(rng):
    # Read the global at call time: ``seed`` rebinds it.
    return _rng if rng is None else rng


def uniform(shape, bound: float, rng=None, dtype=np.float32):
    """U(-bound, bound) samples of ``shape``."""
    return _rng_or_default(rng).uniform(-bound, bound, size=shape).astype(dtype)


def normal(shape, std: float, rng=None, dtype=np.float32):
    """N(0, std^2) samples of ``shape``."""
    return (_rng_or_default(rng).standard_normal(size=shape) * std).astype(dtype)


def he_normal(shape, rng=None, gain: float = math.sqrt(2.0), dtype=np.float32):
    """N(0, gain^2 / fan_in)."""
    return normal(shape, gain / math.sqrt(fans(shape)[0]), rng, dtype)


def he_uniform(shape, rng=None, gain: float = math.sqrt(2.0), dtype=np.float32):
    """U(-b, b) with b = gain * sqrt(3 / fan_in)."""
    return uniform(shape, gain * math.sqrt(3.0 / fans(shape)[0]), rng, dtype)


def glorot_normal(shape, rng=None, gain: float = 1.0, dtype=np.float32):
    """N(0, gain^2 * 2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    return normal(shape, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng, dtype)


def glorot_uniform(shape, rng=None, gain: float = 1.0, dtype=np.float32):
    """U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    return uniform(shape, gain * math.sqrt(6.0 / (fan_in + fan_out)), rng, dtype)


def pytorch_default(shape, rng=None, dtype=np.float32):
    """PyTorch's default for Conv/Linear weights: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))."""
    return uniform(shape, 1.0 / math.sqrt(fans(shape)[0]), rng, dtype)


def pytorch_default_bias(weight_shape, rng=None, dtype=np.float32):
    """PyTorch's default bias: U(+-1/sqrt(fan_in)) with the weight's fan-in."""
    return uniform((weight_shape[0],), 1.0 / math.sqrt(fans(weight_shape)[0]), rng, dtype)


INITIALISERS = {
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "pytorch_default": pytorch_default,
}


def get(name: str):
    """Look an initialiser up by name, listing the valid names if it is unknown."""
    try:
        return INITIALISERS[name]
    except KeyError:
        raise ValueError(f"unknown initialiser {name!r}; choose from {sorted(INITIALISERS)}") from None
