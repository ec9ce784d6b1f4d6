"""minidl's CPU threads: how many (``_threads.blas_threads``), the one pool
(``_threads.executor``), no waiting on it from inside it, and BLAS kept on the calling thread
while the pool's threads call it (``blas_single_threaded``). Needs no numba."""
import os
import threading

import numpy as np
import pytest

from minidl import _threads


def _blas_threads_now():
    """NumPy's BLAS libraries' current thread counts (skips when threadpoolctl finds none)."""
    pytest.importorskip("threadpoolctl")
    blas = _threads._numpy_blas()
    if blas is None:
        pytest.skip("threadpoolctl finds no BLAS library")
    return [lib.num_threads for lib in blas.lib_controllers]


def test_blas_runs_on_one_thread_inside_and_as_before_after(monkeypatch):
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "2")
    before = _blas_threads_now()
    with _threads.blas_single_threaded():
        assert _blas_threads_now() == [1] * len(before)
        a = np.ones((64, 64), np.float32)
        np.testing.assert_array_equal(a @ a, np.full((64, 64), 64, np.float32))
    assert _blas_threads_now() == before


def test_with_a_one_thread_pool_blas_is_pinned_all_the_same(monkeypatch):
    """OpenBLAS's bits depend on its thread count for some shapes: pinned whatever the pool."""
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "1")
    before = _blas_threads_now()
    with _threads.blas_single_threaded():
        assert _blas_threads_now() == [1] * len(before)
    assert _blas_threads_now() == before


def test_it_is_numpys_blas_that_is_limited():
    """With torch imported (as the bench does), only the BLAS shipped in NumPy's wheel is
    chosen when there is one; torch's libraries are never among them."""
    pytest.importorskip("torch")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    _blas_threads_now()
    chosen = [lib.filepath for lib in _threads._numpy_blas().lib_controllers]
    home = os.path.dirname(os.path.realpath(np.__file__))
    shipped = [info["filepath"] for info in threadpoolctl.threadpool_info()
               if info["user_api"] == "blas"
               and os.path.realpath(info["filepath"]).startswith((home + os.sep,
                                                                   home + ".libs" + os.sep))]
    if shipped:
        assert sorted(chosen) == sorted(shipped)
    assert not any(f"{os.sep}torch{os.sep}" in path for path in chosen)


def test_no_blas_found_is_a_no_op(monkeypatch):
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "2")
    monkeypatch.setattr(_threads, "_blas", [None])
    with _threads.blas_single_threaded():
        pass


def test_one_pool_that_grows_when_asked_for_more_threads():
    pool = _threads.executor(1)
    assert _threads.executor(1) is pool
    bigger = _threads.executor(pool._max_workers + 1)
    assert bigger._max_workers == pool._max_workers + 1
    assert _threads.executor(1) is bigger
    assert bigger.submit(_threads.in_pool).result() and not _threads.in_pool()


def test_sharing_from_a_pool_thread_runs_whole_there(monkeypatch):
    """A call shared out from inside a share (a conv block calling a kernel) would wait on
    the pool it runs on: it runs whole on that thread instead, and nothing hangs."""
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "2")
    monkeypatch.setattr(_threads, "SERIAL_BELOW", 0)
    inner = {0: [], 1: []}  # outer share -> its inner calls (thread, lo, hi)

    def outer(lo, hi):
        _threads.run_shares(lambda a, b: inner[lo].append((threading.current_thread(), a, b)),
                            10, 10)

    done = threading.Event()
    caller = threading.Thread(target=lambda: (_threads.run_shares(outer, 2, 2), done.set()))
    caller.start()
    caller.join(timeout=30)
    assert done.is_set(), "nested sharing hung"
    # outer share 1 ran on a pool thread: its inner call ran whole there
    assert [(a, b) for _, a, b in inner[1]] == [(0, 10)]
    assert inner[1][0][0].name.startswith("minidl-share")
    # outer share 0 ran on the calling thread, which still shared its inner call out
    assert sorted((a, b) for _, a, b in inner[0]) == [(0, 5), (5, 10)]


@pytest.mark.parametrize("env, expected", [
    ({"OPENBLAS_NUM_THREADS": "1"}, 1),
    ({"OPENBLAS_NUM_THREADS": "3", "OMP_NUM_THREADS": "1"}, 3),
    ({"OPENBLAS_NUM_THREADS": "4", "OMP_NUM_THREADS": "1"}, 4),
    ({"OMP_NUM_THREADS": "1"}, 1),
    ({"MKL_NUM_THREADS": "2"}, 2),
    ({"OMP_NUM_THREADS": "4,2"}, 4),          # OpenMP's per-level list: the outer level
    ({"MKL_NUM_THREADS": "0"}, 1),
    ({"OPENBLAS_NUM_THREADS": "many"}, None),  # unreadable: as if unset
    ({}, None),
])
def test_blas_threads_reads_the_thread_variables(env, expected, monkeypatch):
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 6)
    assert _threads.blas_threads() == (6 if expected is None else expected)
