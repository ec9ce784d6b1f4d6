"""minidl's CPU threads: one small pool that shares a large element-wise or per-plane call
out to the CPU's cores: ``run_shares`` for compiled kernels, ``share_rows`` for NumPy code,
and ``executor`` for the convolution's blocks, whose GEMMs run inside
``blas_single_threaded``; ``threads`` says how many (``blas_threads`` by default).

A call is cut into consecutive shares of rows (planes, batch rows or elements), one per
thread: the calling thread does the first, the pool's threads the others, at once. This pays
because the work releases the GIL: every numba kernel here is ``nogil=True``, and NumPy drops
the GIL inside ufunc loops, reductions and ``einsum``, so the same NumPy code run on two
halves of the batch by two threads uses two cores (NumPy alone runs each ufunc on one).

What is shared out never decides a result: a share does the same arithmetic on its rows as a
single call would, and sums over rows are made per row (or plane) first and then added in a
fixed order by the caller, so any thread count gives the same bits.

Not numba's own ``parallel=True`` threads: those (OpenMP) spin while they wait, and on a
2-core machine they spun against BLAS's threads between the kernels (a vgg38 --bn --residual
step took 2513 ms with two numba threads, against 1719 with one; idle, 2 BLAS threads). Pool
threads sleep while they wait, as the convolution's block threads do.
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import backend

# Below this many elements a call runs on the calling thread alone. Handing a share to
# another thread costs tens of microseconds on an idle machine, and on a busy one (test
# workers, other jobs) a wait for that thread to be scheduled.
SERIAL_BELOW = 1 << 18
_POOL_NAME = "minidl-share"
_pool = None  # (process id, ThreadPoolExecutor): a forked child needs its own threads
_blas = None  # [threadpoolctl controller of NumPy's BLAS, or None]: found on first use


def blas_threads() -> int:
    """How many threads BLAS may split a GEMM across: the first of the usual environment
    variables (read by OpenBLAS, MKL and OpenMP) that is set, else the number of CPUs."""
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                return max(1, int(value.split(",")[0]))  # OpenMP may list one per level
            except ValueError:
                break
    return os.cpu_count() or 1


def threads() -> int:
    """How many threads share a large call: ``MINIDL_KERNEL_THREADS`` if set, else as many as
    BLAS would use (``blas_threads``): the shared work runs between BLAS calls, on its cores."""
    value = os.environ.get("MINIDL_KERNEL_THREADS", "").strip()
    if not value:
        return blas_threads()
    try:
        count = int(value.split(",")[0])
    except ValueError:
        raise ValueError(f"MINIDL_KERNEL_THREADS must be a positive integer, "
                         f"got {value!r}") from None
    if count < 1:
        raise ValueError(f"MINIDL_KERNEL_THREADS must be a positive integer, got {count}")
    return count


def shares(rows: int, size: int) -> list[tuple[int, int]]:
    """``(lo, hi)`` bounds of consecutive shares of ``rows`` rows, one per thread (a single
    share when the call touches fewer than SERIAL_BELOW elements, ``size``)."""
    count = 1 if size < SERIAL_BELOW else max(1, min(threads(), rows))
    bounds = [rows * k // count for k in range(count + 1)]
    return list(zip(bounds, bounds[1:]))


def run_shares(kernel, rows: int, size: int, *args) -> None:
    """``kernel(*args, lo, hi)`` for every share of ``rows`` rows: the first on this thread,
    the others on the pool's threads at the same time; returns when all are done (and raises
    the first share's error, if any)."""
    bounds = shares(rows, size)
    if len(bounds) == 1 or in_pool():
        kernel(*args, 0, rows)
        return
    run_together(lambda k: kernel(*args, *bounds[k]), len(bounds))


def run_together(work, count: int) -> None:
    """``work(k)`` for k = 0 .. count-1 at once: k = 0 on this thread, the others on the
    pool's threads; returns when all are done (and raises the first error, if any). The
    caller makes sure it is not on a pool thread itself (``in_pool``)."""
    futures = [executor(count - 1).submit(work, k) for k in range(1, count)]
    try:
        work(0)
    finally:
        for future in futures:
            future.result()


def executor(helpers: int) -> ThreadPoolExecutor:
    """The one pool, with at least ``helpers`` threads (made on first use, and anew in a
    forked child, which inherits no threads). Every CPU share in minidl runs on it: kernels,
    NumPy shares, the convolution's blocks. Work handed to it must not wait on the pool
    itself: code that may run on a pool thread shares nothing further (``in_pool``)."""
    global _pool
    if _pool is None or _pool[0] != os.getpid() or _pool[1]._max_workers < helpers:
        if _pool is not None and _pool[0] == os.getpid():
            _pool[1].shutdown(wait=False)  # its threads end once idle
        _pool = (os.getpid(), ThreadPoolExecutor(helpers, thread_name_prefix=_POOL_NAME))
    return _pool[1]


def in_pool() -> bool:
    """True on one of the pool's threads: a share there runs whole, on that thread (waiting
    for other pool threads from inside one could wait for ever)."""
    return threading.current_thread().name.startswith(_POOL_NAME)


@contextlib.contextmanager
def blas_single_threaded():
    """While inside, NumPy's BLAS runs every GEMM on the calling thread.

    For work shared out on the pool that calls BLAS (the convolution's blocks): each pool
    thread's GEMMs stay on its own core, and OpenBLAS's worker threads get no work, so they
    do not spin after it (see ``share_rows``). Whatever the pool's size: OpenBLAS's results
    depend on its thread count for some shapes, so pinned GEMMs give the same bits for any
    thread setting (and on the GPU stand-in, NumPy underneath). The setting is process-wide:
    enter it once, on the thread that hands out the work, around all of it. A no-op when
    threadpoolctl finds no BLAS. Costs about 20-40 microseconds.
    """
    blas = _numpy_blas()
    if blas is None:
        yield
        return
    with blas.limit(limits=1):
        yield


def _numpy_blas():
    """A threadpoolctl controller of the BLAS library NumPy itself calls (made once, after
    NumPy has loaded it), or None. Libraries shipped inside NumPy's wheel (numpy.libs,
    numpy/.dylibs) are NumPy's; other packages' BLAS (torch's, SciPy's own copy) are left
    alone. A NumPy linked to a system BLAS (conda, distributions) ships none: then every
    BLAS loaded at that moment is taken."""
    global _blas
    if _blas is None:
        _blas = [_find_numpy_blas()]
    return _blas[0]


def _find_numpy_blas():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # a core dependency; tolerated missing all the same
        return None
    blas = ThreadpoolController().select(user_api="blas")
    home = os.path.dirname(os.path.realpath(np.__file__))  # .../site-packages/numpy
    own = [lib.filepath for lib in blas.lib_controllers
           if os.path.realpath(lib.filepath).startswith((home + os.sep, home + ".libs" + os.sep))]
    if own:
        blas = blas.select(filepath=own)
    return blas if blas.lib_controllers else None


def share_rows(fn, *args) -> None:
    """``fn(*args, lo, hi)`` over consecutive shares of the first axis of ``args[0]``: NumPy
    code (``fn`` does the maths of rows ``lo:hi``) run at once on the pool's threads as
    ``run_shares`` does for a kernel. Any other array (CuPy: a GPU wants few large launches)
    gets one call over every row.

    This pays only while no BLAS worker thread spins: a threaded OpenBLAS keeps its workers
    spinning for about 0.1 s (2^28 cycles) after every GEMM it splits, holding the core a
    share needs (a vgg38 step took 5% longer with shares beside a 2-thread BLAS). minidl's
    convolutions therefore run their GEMMs on the pool under ``blas_single_threaded``.
    Measured with no BLAS worker spinning (vgg38 --bn --residual step, NumPy path, 2 cores,
    bench profile): BatchNorm forward 218 -> 152 ms per step, backward 206 -> 129,
    LeakyReLU 70 -> 46 and 138 -> 83, the residual sums 26 -> 16 and 17 -> 13.
    """
    array = args[0]
    rows = array.shape[0]
    if backend.get_array_module(array) is np:
        run_shares(fn, rows, array.size, *args)
    else:
        fn(*args, 0, rows)
