"""Small arrays run their kernels on one thread; the thread count is restored afterwards."""
import pytest


def test_small_arrays_run_on_one_thread(numba_kernels):
    import numba

    from minidl.kernels._threads import SERIAL_BELOW, threads_for
    before = numba.get_num_threads()
    with threads_for(SERIAL_BELOW - 1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with threads_for(SERIAL_BELOW):
        assert numba.get_num_threads() == before
    with pytest.raises(KeyError), threads_for(10):
        raise KeyError("the count is restored even when the kernel fails")
    assert numba.get_num_threads() == before


def test_threads_are_capped_to_the_granted_cpus(numba_kernels, monkeypatch):
    import os

    import numba

    from minidl.kernels import _threads
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    before = numba.get_num_threads()
    try:
        monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
        assert _threads.cap_to_affinity() == 1
        numba.set_num_threads(before)
        monkeypatch.setenv("NUMBA_NUM_THREADS", str(before))  # explicit: left alone
        assert _threads.cap_to_affinity() == before
    finally:
        numba.set_num_threads(before)
