"""im2col's blocks shared out to the pool's threads: the same bits for any thread count, BLAS
held to one thread meanwhile (serial runs too) and restored after, and the serial fall-backs."""
import os
import threading

import numpy as np
import pytest

from minidl.functional import conv
from minidl.functional.conv import conv2d_backward, conv2d_forward

# (N, C, H, W, F, kernel, stride, padding, groups): dx by correlation, dx by col2im (stride 2
# and F > 2C), groups; N = 11 images in one-image blocks make 6 dW chunks, the last short.
CASES = [
    pytest.param(11, 4, 6, 5, 4, (3, 3), 1, 1, 1, id="correlation"),
    pytest.param(11, 4, 7, 6, 6, (3, 2), 2, (1, 2), 2, id="stride2-groups2"),
    pytest.param(11, 2, 6, 6, 5, (3, 3), 1, 1, 1, id="F>2C-col2im"),
]


def _arrays(N, C, H, W, F, kernel, groups, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((F, C // groups) + kernel).astype(np.float32)
    return x, w, rng.standard_normal(F).astype(np.float32)


def _run(x, w, b, keep_patches=False, **hyper):
    out, cache = conv2d_forward(x, w, b, method="im2col", keep_patches=keep_patches, **hyper)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    return (out,) + conv2d_backward(dout, cache)


@pytest.mark.parametrize("keep_patches", [False, True])
@pytest.mark.parametrize("N, C, H, W, F, kernel, stride, padding, groups", CASES)
def test_thread_count_changes_no_bit_of_the_result(N, C, H, W, F, kernel, stride, padding,
                                                   groups, keep_patches, monkeypatch):
    """out, dx, dW and db bit for bit the same on 1, 2 and 3 threads: blocks write disjoint
    outputs, dW is summed in fixed chunks added in order (resume and the Ray-vs-serial
    studies compare results exactly)."""
    x, w, b = _arrays(N, C, H, W, F, kernel, groups)
    hyper = dict(stride=stride, padding=padding, groups=groups)
    monkeypatch.setattr(conv, "CPU_BLOCK_BYTES", 1)  # one image per block
    monkeypatch.setattr(conv, "SERIAL_BELOW", 0)
    results = {}
    for threads in (1, 2, 3):
        monkeypatch.setenv("MINIDL_KERNEL_THREADS", str(threads))
        results[threads] = _run(x, w, b, keep_patches, **hyper)
    for threads in (2, 3):
        for name, got, want in zip(("out", "dx", "dw", "db"), results[threads], results[1]):
            np.testing.assert_array_equal(got, want, err_msg=f"{threads} threads: {name}")


@pytest.mark.parametrize("blocks, sizes", [
    (100, [13] * 7 + [9]), (16, [2] * 8), (15, [2] * 7 + [1]), (4, [1] * 4), (1, [1]), (0, []),
])
def test_weight_gradient_chunks_depend_on_the_blocks_alone(blocks, sizes):
    chunks = conv._chunks(list(range(blocks)))
    assert [len(c) for c in chunks] == sizes
    assert [b for c in chunks for b in c] == list(range(blocks))  # consecutive, in order


def test_blocks_on_threads_agree_with_loops(monkeypatch):
    x, w, b = (a.astype(np.float64) for a in _arrays(11, 4, 6, 5, 4, (3, 3), 2))
    hyper = dict(padding=1, groups=2)
    out, cache = conv2d_forward(x, w, b, method="loops", **hyper)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    reference = (out,) + conv2d_backward(dout, cache)
    monkeypatch.setattr(conv, "CPU_BLOCK_BYTES", 1)
    monkeypatch.setattr(conv, "SERIAL_BELOW", 0)
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "3")
    out, cache = conv2d_forward(x, w, b, method="im2col", **hyper)
    for name, ref, got in zip(("out", "dx", "dw", "db"), reference,
                              (out,) + conv2d_backward(dout, cache)):
        assert float(np.max(np.abs(got - ref))) < 1e-10, name


def _numpy_blas_threads():
    """The thread count of the BLAS NumPy calls (None where threadpoolctl finds none)."""
    from threadpoolctl import threadpool_info
    home = os.path.dirname(os.path.realpath(np.__file__))
    counts = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"
              and os.path.realpath(lib["filepath"]).startswith((home + os.sep, home + ".libs"))]
    return counts[0] if counts else None


def _worker_threads(monkeypatch, threads, size=1 << 20, items=2, meet=False):
    """The threads ``_block_runs`` calls its function on, NumPy's BLAS thread counts seen
    there, and its results; with ``meet``, items 0 and 1 wait for each other (so they must
    run on two threads at once)."""
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", str(threads))
    seen, blas = [], []
    meet = threading.Barrier(2, timeout=10) if meet else None

    def fn(item, scratch):
        seen.append(threading.get_ident())
        blas.append(_numpy_blas_threads())
        if meet is not None and item < 2:
            meet.wait()  # both workers must be running at once, or this times out
        return 10 * item

    results = conv._block_runs(fn, list(range(items)), np.zeros(size, np.float32))
    return set(seen), set(blas), results


def test_block_runs_share_items_between_threads_and_keep_their_order(monkeypatch):
    seen, _, results = _worker_threads(monkeypatch, 2, items=7, meet=True)
    assert results == [0, 10, 20, 30, 40, 50, 60]
    assert len(seen) == 2 and threading.get_ident() in seen  # the caller is one worker


@pytest.mark.parametrize("threads, size", [
    (1, 1 << 20),                  # one thread
    (2, conv.SERIAL_BELOW - 1),    # too small to pay for a hand-off
])
def test_block_runs_stay_on_the_calling_thread(threads, size, monkeypatch):
    seen, _, results = _worker_threads(monkeypatch, threads, size, items=3)
    assert results == [0, 10, 20] and seen == {threading.get_ident()}


@pytest.mark.parametrize("threads", [1, 2])
def test_blas_runs_on_one_thread_inside_the_blocks_and_gets_its_threads_back(threads,
                                                                             monkeypatch):
    """Serial runs too: OpenBLAS's bits depend on its thread count for some shapes."""
    before = _numpy_blas_threads()
    if before is None:
        pytest.skip("threadpoolctl finds no BLAS in NumPy")
    _, blas, _ = _worker_threads(monkeypatch, threads, items=4)
    assert blas == {1}
    assert _numpy_blas_threads() == before


def test_an_error_in_a_block_reaches_the_caller_and_blas_threads_come_back(monkeypatch):
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "2")
    before = _numpy_blas_threads()

    def fn(item, scratch):
        if item == 3:
            raise RuntimeError("block 3 failed")
        return item

    with pytest.raises(RuntimeError, match="block 3 failed"):
        conv._block_runs(fn, list(range(6)), np.zeros(1 << 20, np.float32))
    assert _numpy_blas_threads() == before
