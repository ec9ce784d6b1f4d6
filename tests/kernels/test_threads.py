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


def test_kernels_default_to_one_thread_unless_numba_num_threads_says(numba_kernels, monkeypatch):
    import numba

    from minidl.kernels import _threads
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # as many as numba started
        monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
        assert _threads.default_threads() == 1
        if numba.config.NUMBA_NUM_THREADS > 1:  # an explicit count is left alone
            numba.set_num_threads(2)
            monkeypatch.setenv("NUMBA_NUM_THREADS", "2")
            assert _threads.default_threads() == 2
    finally:
        numba.set_num_threads(before)
