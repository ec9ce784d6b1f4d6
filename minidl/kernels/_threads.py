"""How many threads a compiled kernel uses for one call."""
from __future__ import annotations

import contextlib
import os

import numba

# Below this many elements a kernel runs on one thread. Starting a parallel region costs
# microseconds on an idle machine, but on a busy one (test workers, other jobs) the region
# waits for its slowest thread to be scheduled: a gradient check of a few hundred values,
# each a kernel call, took 25 s on two threads instead of 0.25 s on one.
SERIAL_BELOW = 1 << 16


@contextlib.contextmanager
def threads_for(size: int):
    """Run the block on one thread for a small array, else on numba's current thread count."""
    if size >= SERIAL_BELOW:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def default_threads() -> int:
    """One thread for the kernels unless ``NUMBA_NUM_THREADS`` asks for more; returns the count.

    The kernels are memory-bound element-wise passes that run between BLAS calls, and BLAS
    keeps its own thread pool: two pools on the same cores wait for each other. Measured on an
    idle 2-core machine (python -m minidl.bench --only step, OpenBLAS on 2 threads): a vgg38
    --bn --residual step took 1719 ms with one-thread kernels, 2513 ms with two, and 1917 ms
    on the NumPy path; on a busy one (load average 11), interleaved in one process, 96 s with
    one-thread kernels and 148 s with two. An explicit ``NUMBA_NUM_THREADS`` is left as it is.
    """
    if "NUMBA_NUM_THREADS" not in os.environ:
        numba.set_num_threads(1)
    return numba.get_num_threads()


default_threads()
