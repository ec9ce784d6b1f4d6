"""Validation of optimiser and schedule hyper-parameters: a ValueError that names the owner."""
from __future__ import annotations

from .. import _shapes as shapes


def _real(owner: str, name: str, value) -> float:
    return shapes.real_number(value, name, owner)


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
    return shapes.unit_interval(value, name, owner, closed)


def positive_int(owner: str, name: str, value, minimum: int = 1) -> int:
    """``value`` as an int, or a ValueError unless it is an integer >= ``minimum``."""
    return shapes.positive_int(value, name, owner, minimum)
