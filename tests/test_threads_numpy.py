"""The NumPy path shared out to threads (``_threads.share_rows``): BatchNorm, ReLU, LeakyReLU and
the residual sum give the same bits for any thread count and any cut of the batch, and the
stand-in GPU (one share, no threads) gives the CPU's bits. Needs no numba."""
import numpy as np
import pytest

from minidl import _threads, backend, kernels
from minidl import layers as L
from minidl.functional import activations as FA
from minidl.functional import normalization as FN

# (N, C, H, W) BatchNorm2d-like, (N, C) BatchNorm1d-like, 8x8 planes with many channels, a
# batch of 1 (nothing to share) and 3 (fewer rows than some cuts).
SHAPES = [(6, 3, 5, 4), (9, 5), (4, 16, 8, 8), (1, 2, 3, 3), (3, 4, 2, 2)]


def _blas_on_one_thread(monkeypatch):
    """BLAS on one thread, so only MINIDL_KERNEL_THREADS sets the pool's size."""
    for var in ("MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture
def numpy_path(monkeypatch):
    """The pure NumPy path, with every call shared out however small (SERIAL_BELOW = 0)."""
    monkeypatch.setenv(kernels.ENV_VAR, "numpy")
    monkeypatch.setattr(_threads, "SERIAL_BELOW", 0)
    _blas_on_one_thread(monkeypatch)


def _everything(shape, xp=np, slope=0.1):
    """BatchNorm (batch and fixed statistics) -> LeakyReLU -> ReLU -> residual sum, forward and
    backward: every result, as host arrays."""
    rng = np.random.default_rng(sum(shape))
    C = shape[1]
    host = {
        "x": rng.standard_normal(shape).astype(np.float32) * 3 + 1,
        "dout": rng.standard_normal(shape).astype(np.float32),
        "gamma": rng.uniform(0.5, 1.5, C).astype(np.float32),
        "beta": rng.standard_normal(C).astype(np.float32),
        "mean": rng.standard_normal(C).astype(np.float32),
        "var": rng.uniform(0.5, 2, C).astype(np.float32),
    }
    a = {k: xp.asarray(v) for k, v in host.items()}
    results = []
    out, cache = FN.batchnorm_forward(a["x"], a["gamma"], a["beta"])
    results += [out, cache.x_hat, cache.mean, cache.var]
    fixed, fixed_cache = FN.batchnorm_forward(a["x"], a["gamma"], a["beta"], mean=a["mean"],
                                              var=a["var"])
    results += [fixed, *FN.batchnorm_backward(a["dout"], fixed_cache)]
    y, act_cache = FA.leaky_relu_forward(out, slope)
    r, relu_cache = FA.relu_forward(y)
    dr = FA.relu_backward(a["dout"], relu_cache)
    dy = FA.leaky_relu_backward(dr, act_cache)
    results += [y, r, dr, dy, *FN.batchnorm_backward(dy, cache)]
    block = L.Residual(L.Sequential(L.LeakyReLU(slope)))
    if xp is not np:
        block.to("gpu")
    s = block(a["x"])
    results += [s, block.backward(a["dout"])]
    return [backend.asnumpy(v) for v in results]


def _assert_all_equal(got, expected):
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g.dtype == e.dtype and g.shape == e.shape, i
        np.testing.assert_array_equal(g, e, err_msg=f"result {i}")


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("count", ["2", "3"])
def test_thread_count_changes_no_result(numpy_path, monkeypatch, shape, count):
    """MINIDL_KERNEL_THREADS=1 and =2 or 3 give the same bits: per-channel sums are made per
    (n, c) plane and added over n in one fixed order, whoever made each plane's sum."""
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "1")
    one = _everything(shape)
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", count)
    _assert_all_equal(_everything(shape), one)


@pytest.mark.parametrize("shape", SHAPES[:3], ids=str)
def test_uneven_cuts_change_no_result_and_every_pass_is_shared(numpy_path, monkeypatch, shape):
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "1")
    one = _everything(shape)
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "3")
    calls = []

    def uneven(rows, size):
        calls.append(rows)
        cuts = sorted({0, rows // 5, rows // 2, rows})
        return list(zip(cuts, cuts[1:]))

    monkeypatch.setattr(_threads, "shares", uneven)
    _assert_all_equal(_everything(shape), one)
    # BatchNorm: 3 passes forward with batch statistics, 2 with fixed ones, 2 per backward
    # (two backwards); LeakyReLU and ReLU: 1 each way; the residual block: its LeakyReLU and
    # its sum, each way.
    assert len(calls) == 3 + 2 + 2 * 2 + 2 * 2 + 2 * 2


def test_shares_run_on_several_threads_at_once(numpy_path, monkeypatch):
    """The shares of one call really run on different threads (NumPy releases the GIL)."""
    import threading

    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "2")
    seen = []

    def fn(a, lo, hi):
        seen.append((threading.get_ident(), lo, hi))

    _threads.share_rows(fn, np.zeros((10, 3)))
    assert sorted((lo, hi) for _, lo, hi in seen) == [(0, 5), (5, 10)]
    assert len({ident for ident, _, _ in seen}) == 2


def test_one_thread_makes_one_call(monkeypatch):
    """OPENBLAS_NUM_THREADS=1 (how ``make test`` runs): one call on this thread, no pool."""
    _blas_on_one_thread(monkeypatch)
    monkeypatch.delenv("MINIDL_KERNEL_THREADS", raising=False)
    monkeypatch.setattr(_threads, "SERIAL_BELOW", 0)
    seen = []
    _threads.share_rows(lambda a, lo, hi: seen.append((lo, hi)), np.zeros((10, 3)))
    assert seen == [(0, 10)]


def test_numpy_code_is_shared_out_beside_a_threaded_blas(monkeypatch):
    """BLAS on 2 threads (the library default on 2 cores): NumPy code still shares out, as
    the kernels do; minidl's own GEMMs run single-threaded on the pool meanwhile."""
    for var in ("MKL_NUM_THREADS", "OMP_NUM_THREADS", "MINIDL_KERNEL_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    monkeypatch.setattr(_threads, "SERIAL_BELOW", 0)
    seen = []
    _threads.share_rows(lambda a, lo, hi: seen.append((lo, hi)), np.zeros((10, 3)))
    assert sorted(seen) == [(0, 5), (5, 10)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_the_standin_gpu_gives_the_cpus_bits(numpy_path, monkeypatch, shape):
    """A device array is never shared out (one call, no threads) and its results equal the
    CPU's shared-out ones bit for bit."""
    from tests.gpu_standin import CUPY, install

    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "2")
    cpu = _everything(shape)
    install(monkeypatch)
    calls = []
    run_shares = _threads.run_shares
    monkeypatch.setattr(_threads, "run_shares", lambda *a: calls.append(a) or run_shares(*a))
    _assert_all_equal(_everything(shape, CUPY), cpu)
    assert calls == []  # never handed to the pool


def test_a_large_input_is_shared_out_by_default(monkeypatch):
    """Library defaults (SERIAL_BELOW as shipped): a vgg38-sized activation goes to the pool,
    a small one stays on this thread."""
    monkeypatch.setenv(kernels.ENV_VAR, "numpy")
    _blas_on_one_thread(monkeypatch)
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "2")
    sizes = []
    run_shares = _threads.run_shares
    monkeypatch.setattr(_threads, "run_shares",
                        lambda fn, rows, size, *a: sizes.append(len(_threads.shares(rows, size)))
                        or run_shares(fn, rows, size, *a))
    FA.leaky_relu_forward(np.ones((8, 32, 32, 32), np.float32), 0.01)
    FA.leaky_relu_forward(np.ones((8, 32, 4, 4), np.float32), 0.01)
    assert sizes == [2, 1]
