"""The one input-checking module: hyper-parameters, dtypes and shapes, for functional ops,
layers, optimisers, schedules, data and models.

Every check takes ``(value, name, who)`` (``who`` names the owner in the message) and returns
the value in its canonical type, or raises a ValueError (TypeError for a wrong array dtype)
whose message says who refused what, and why.
"""
from __future__ import annotations

import math
import numbers
import operator


def positive_int(value, name: str, who: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (numpy ints too, not bools); else a ValueError naming ``who``.

    The one integer check shared by layers, optimisers, schedules and models.
    """
    try:
        number = _index(value)
    except TypeError:
        number = None
    if number is None or number < minimum:
        wanted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{who}: {name} must be {wanted}, got {value!r}")
    return number


def real_number(value, name: str, who: str) -> float:
    """``value`` as a float if it is a finite real number (not a bool); else a ValueError naming ``who``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{who}: {name} must be a finite real number, got {value!r}")
    return float(value)


def nonnegative(value, name: str, who: str) -> float:
    """``value`` as a float if it is a finite real number >= 0; else a ValueError naming ``who``."""
    v = real_number(value, name, who)
    if v < 0:
        raise ValueError(f"{who}: {name} must be >= 0, got {value!r}")
    return v


def positive(value, name: str, who: str) -> float:
    """``value`` as a float if it is a finite real number > 0; else a ValueError naming ``who``."""
    v = real_number(value, name, who)
    if v <= 0:
        raise ValueError(f"{who}: {name} must be > 0, got {value!r}")
    return v


def unit_interval(value, name: str, who: str, closed: bool = False) -> float:
    """``value`` in [0, 1) (or [0, 1] when ``closed``) as a float: probabilities, fractions, momenta."""
    v = real_number(value, name, who)
    if not (0 <= v <= 1 if closed else 0 <= v < 1):
        interval = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{who}: {name} must be in {interval}, got {value!r}")
    return v


def float_input(x, who: str, name: str = "input"):
    """``x`` itself if it is a floating-point array; else a TypeError naming ``who``.

    The one dtype rule of minidl: layers and functional ops *refuse* integer, bool and other
    non-float arrays instead of promoting them. Weights follow the input's dtype, so an int
    input would silently truncate them, and uint8 images would wrap around; a refusal that says
    how to convert is clearer than either.
    """
    dtype = getattr(x, "dtype", None)
    if dtype is None or dtype.kind != "f":
        got = f"a {dtype} array" if dtype is not None else type(x).__name__
        raise TypeError(f"{who}: {name} must be a floating-point array (float32 for training, "
                        f"float64 for gradient checks), got {got}; convert it first, e.g. "
                        "x.astype(np.float32) (and / 255 for uint8 images)")
    return x


def pair(value, name: str = "value") -> tuple[int, int]:
    """Turn an int or a length-2 sequence of ints (numpy ints too, not bools) into ``(int, int)``."""
    try:
        return (_index(value),) * 2
    except TypeError:
        pass  # not a single integer: try a pair
    try:
        a, b = value
        return (_index(a), _index(b))
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None


def _index(value) -> int:
    """``value`` as a Python int if it is an integer (numpy ints too); TypeError for bools, floats."""
    if isinstance(value, bool):  # True is an int to Python, never a size
        raise TypeError(f"{value!r} is a bool")
    return operator.index(value)


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length of a convolution/pooling window sweep along one axis (PyTorch's formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
