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


def cap_to_affinity() -> int:
    """Limit numba's threads to the CPUs this process may run on, and return the count.

    numba starts one thread per CPU of the machine, but a cluster job (Slurm) or ``taskset``
    may grant fewer: 64 threads on 2 granted CPUs would spend their time waiting for each
    other. An explicit ``NUMBA_NUM_THREADS`` is left as it is.
    """
    if "NUMBA_NUM_THREADS" not in os.environ and hasattr(os, "sched_getaffinity"):
        numba.set_num_threads(max(1, min(numba.get_num_threads(), len(os.sched_getaffinity(0)))))
    return numba.get_num_threads()


cap_to_affinity()
