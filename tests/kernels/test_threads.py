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
