"""Validation of optimiser and schedule hyper-parameters: a ValueError that names the owner."""
from __future__ import annotations

import math
import numbers

from .. import _shapes as shapes


def _real(owner: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite real number, got {value!r}")
    return float(value)


def nonnegative(owner: str, name: str, value) -> float:
    """``value`` as a float, or a ValueError unless ``value >= 0``."""
    v = _real(owner, name, value)
    if v < 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value!r}")
    return v


def positive(owner: str, name: str, value) -> float:
    """``value`` as a float, or a ValueError unless ``value > 0``."""
    v = _real(owner, name, value)
    if v <= 0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")
    return v


def unit_interval(owner: str, name: str, value, closed: bool = False) -> float:
    """``value`` in [0, 1) (or [0, 1] when ``closed``) as a float, else a ValueError."""
    v = _real(owner, name, value)
    if not (0 <= v <= 1 if closed else 0 <= v < 1):
        interval = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{owner}: {name} must be in {interval}, got {value!r}")
    return v


def positive_int(owner: str, name: str, value, minimum: int = 1) -> int:
    """``value`` as an int, or a ValueError unless it is an integer >= ``minimum``."""
    return shapes.positive_int(value, name, owner, minimum)
