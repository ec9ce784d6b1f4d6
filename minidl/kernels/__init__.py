"""Optional compiled kernels (numba): the one switch that ``functional/`` asks.

The NumPy code in ``functional/`` is the reference; a kernel here only speeds up the same
computation on CPU arrays and is tested against that reference. Kernels are used when numba
is installed (``pip install -e ".[fast]"``) and the environment variable ``MINIDL_KERNELS`` is
not ``numpy``; ``MINIDL_KERNELS=numpy`` forces the pure NumPy path, so both paths can be
measured in one environment. CuPy arrays never take a kernel from here.

Usage in a functional op (one file of kernels per op family, imported lazily)::

    from .. import kernels
    if kernels.active(x):
        from ..kernels import activations as _k   # imports numba; compiled on first call
        return _k.leaky_relu_forward(x, slope)

What is compiled (each kernel once per dtype used, float32 and float64, on first call; with
``cache=True`` the machine code is kept on disk, so later processes load it in milliseconds):

    activations.py     LeakyReLU forward and backward (ReLU's backward is slope 0)
    normalization.py   BatchNorm statistics, normalisation, and backward (sums + input grad)
    conv.py            Winograd F(2x2, 3x3) tile transforms and their adjoints (serial, GIL-free:
                       the conv shares a layer's image blocks across threads itself); they are
                       why the conv's default method "auto" picks winograd when kernels are on

Each kernel is serial and releases the GIL; a large call is cut into shares, one per thread,
run at once by the calling thread and a small pool (``minidl._threads.run_shares``). That
one pool does all of minidl's CPU parallelism, with or without numba: the NumPy path's
BatchNorm, activation and residual passes (``share_rows``) and the convolution's image
blocks, whose GEMMs run with NumPy's BLAS pinned to one thread (``blas_single_threaded``:
a threaded OpenBLAS's worker spins ~0.1 s after each GEMM it splits and would hold a core
against the pool). As many threads as BLAS would use (``OPENBLAS_NUM_THREADS`` etc., else
the CPU count); ``MINIDL_KERNEL_THREADS=N`` sets another count. Calls under 262,144
elements stay on the calling thread. (Not numba's ``parallel=True``: its
OpenMP threads spin while waiting and slowed a 2-core vgg38 step from 1719 to 2513 ms.)
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np

ENV_VAR = "MINIDL_KERNELS"
CHOICES = ("auto", "numpy", "numba")
_numba_found = None


def numba_available() -> bool:
    """Whether numba can be imported (checked once, without importing it)."""
    global _numba_found
    if _numba_found is None:
        _numba_found = importlib.util.find_spec("numba") is not None
    return _numba_found


def mode() -> str:
    """``MINIDL_KERNELS`` as one of ``auto`` (default), ``numpy``, ``numba``; read on every call
    so a test or benchmark can switch paths within one process."""
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(CHOICES)}, got {value!r}")
    if value == "numba" and not numba_available():
        raise RuntimeError(f"{ENV_VAR}=numba but numba is not installed: "
                           'pip install -e ".[fast]" (or unset the variable)')
    return value


def enabled() -> bool:
    """True when compiled kernels are switched on and numba is installed."""
    return mode() != "numpy" and numba_available()


def active(*arrays) -> bool:
    """True when ``arrays`` should take the compiled path: kernels enabled and every array a
    NumPy array (CuPy arrays stay on their own path)."""
    return enabled() and all(isinstance(a, np.ndarray) for a in arrays)
