"""Interleaved timing and peak-memory measurement, for minidl and PyTorch alike.

Timing: every repeat calls each contender once, in turn, so a burst of load from elsewhere on
the machine hits all of them; medians resist the bursts that remain.

Memory: the peak resident set size (Linux's VmHWM, reset through ``/proc/self/clear_refs``)
reached during one call, minus the resident size just before it. That sees NumPy's and
PyTorch's allocations alike, provided freed memory is not already resident: glibc's malloc
keeps freed blocks (and their touched pages) for reuse, and a later peak would hide inside
them. So before each call its free pages are handed back to the system (``malloc_trim``),
and the resident size then grows with the arrays the call keeps alive at once. Elsewhere
(no /proc, no glibc) only minidl is measured, with tracemalloc, which NumPy reports its
array buffers to.
"""
from __future__ import annotations

import ctypes
import gc
import os
import statistics
import time
import tracemalloc
from contextlib import contextmanager

from .. import kernels

MIB = 2.0 ** 20


def interleaved(contenders: dict, repeats: int, warmup: int = 1) -> dict:
    """Call each contender ``warmup`` times, then ``repeats`` rounds, one call each per round.

    A contender returns a tuple of phase durations in seconds (e.g. forward, backward).
    Returns ``{name: [tuple per repeat]}``.
    """
    for fn in contenders.values():
        for _ in range(warmup):
            fn()  # first-touch page faults, BLAS threads, numba compilation
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            samples[name].append(tuple(fn()))
    return samples


def median_ms(samples, phase: int | None = None) -> float:
    """Median in milliseconds of one phase (or of the sum of phases when ``phase`` is None)."""
    values = [sum(s) if phase is None else s[phase] for s in samples]
    return 1e3 * statistics.median(values)


def timed_pass(forward, backward) -> tuple[float, float]:
    """(forward seconds, backward seconds) of ``backward(forward())``."""
    t0 = time.perf_counter()
    out = forward()
    t1 = time.perf_counter()
    backward(out)
    return t1 - t0, time.perf_counter() - t1


@contextmanager
def kernel_path(mode: str):
    """Run the block with ``MINIDL_KERNELS=mode`` (minidl reads it on every call)."""
    old = os.environ.get(kernels.ENV_VAR)
    os.environ[kernels.ENV_VAR] = mode
    try:
        yield
    finally:
        if old is None:
            del os.environ[kernels.ENV_VAR]
        else:
            os.environ[kernels.ENV_VAR] = old


# ---------------------------------------------------------------------------- memory
def proc_status_kib(key: str) -> int:
    """A size from /proc/self/status in KiB: "VmRSS" (resident now), "VmHWM" (its peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"{key} not in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def rss_method_available() -> bool:
    """Whether this process can reset and read its peak RSS and trim glibc's malloc."""
    try:
        reset_peak_rss()
        proc_status_kib("VmHWM")
        _ = ctypes.CDLL(None).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return False
    return True


def peak_extra_rss_mib(fn) -> float:
    """Peak resident memory above the current level while ``fn()`` runs, in MiB."""
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)  # free pages leave the resident set (see module docstring)
    before = proc_status_kib("VmRSS")
    reset_peak_rss()
    fn()
    return max(proc_status_kib("VmHWM") - before, 0) * 1024 / MIB


def peak_traced_mib(fn) -> float:
    """Peak of the allocations traced by tracemalloc while ``fn()`` runs, in MiB."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()
