"""Deprecated: the checks moved to ``minidl._shapes`` (arguments ``(value, name, who)``).

Kept only until ``optim/dessilbi.py`` imports ``minidl._shapes`` directly; then delete it.
"""
from __future__ import annotations

from .. import _shapes


def nonnegative(owner: str, name: str, value) -> float:
    return _shapes.nonnegative(value, name, owner)


def positive(owner: str, name: str, value) -> float:
    return _shapes.positive(value, name, owner)


def unit_interval(owner: str, name: str, value, closed: bool = False) -> float:
    return _shapes.unit_interval(value, name, owner, closed)


def positive_int(owner: str, name: str, value, minimum: int = 1) -> int:
    return _shapes.positive_int(value, name, owner, minimum)
