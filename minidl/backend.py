"""Array-backend selection: NumPy on the CPU, CuPy on the GPU.

This is the only module that imports cupy. Every op asks ``get_array_module(x)`` for the
module that owns its input, so one code path serves both devices (the CuPy/Chainer habit).
"""
from __future__ import annotations

import numpy as np

try:  # cupy is optional: minidl must import and run without it
    import cupy as _cupy
except Exception:  # ImportError, or a CUDA runtime that fails to load
    _cupy = None

DEVICES = ("cpu", "gpu")


def gpu_available() -> bool:
    """True when cupy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a cupy array, else ``numpy``."""
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


def check_device(device: str) -> str:
    """Validate a device name ("cpu" or "gpu") and say why a GPU cannot be used."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
    if device == "gpu" and not gpu_available():
        reason = ("cupy is not installed (pip install 'minidl[gpu]')" if _cupy is None
                  else "cupy found no CUDA device")
        raise RuntimeError(f"device 'gpu' requested but {reason}")
    return device


def gpu_module():
    """The ``cupy`` module itself, for code that drives the device (synchronise, memory pool):
    the benchmarks. RuntimeError saying why when there is no usable GPU."""
    check_device("gpu")
    return _cupy


def device_of(array) -> str:
    """"gpu" for a cupy array, "cpu" otherwise."""
    return "gpu" if get_array_module(array) is not np else "cpu"


def to_device(array, device: str):
    """Copy ``array`` to ``device`` ("cpu" -> numpy, "gpu" -> cupy); no copy if already there."""
    check_device(device)
    if device == "gpu":
        return _cupy.asarray(array)
    return asnumpy(array)


def asnumpy(array):
    """Return a numpy array (copying from the GPU if needed); plain numbers pass through."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy.asnumpy(array)
    return np.asarray(array)
