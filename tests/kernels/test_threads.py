"""Kernel calls shared out to threads: the shares, the thread count, and that sharing changes
no result."""
import numpy as np
import pytest

from minidl import kernels
from minidl.functional import activations as FA
from minidl.functional import normalization as FN


@pytest.fixture
def threads(numba_kernels):
    from minidl import _threads
    return _threads


def test_small_calls_stay_on_one_share(threads, monkeypatch):
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "2")
    assert threads.shares(100, threads.SERIAL_BELOW - 1) == [(0, 100)]
    assert threads.shares(100, threads.SERIAL_BELOW) == [(0, 50), (50, 100)]


@pytest.mark.parametrize("rows, count", [(10, 3), (2, 3), (7, 1), (1000, 4)])
def test_shares_are_consecutive_and_cover_every_row(threads, monkeypatch, rows, count):
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", str(count))
    bounds = threads.shares(rows, threads.SERIAL_BELOW)
    assert len(bounds) == min(rows, count)
    assert bounds[0][0] == 0 and bounds[-1][1] == rows
    assert all(hi == lo for (_, hi), (lo, _) in zip(bounds, bounds[1:]))
    assert all(hi > lo for lo, hi in bounds)


@pytest.mark.parametrize("env, expected", [
    ({"MINIDL_KERNEL_THREADS": "3", "OPENBLAS_NUM_THREADS": "1"}, 3),
    ({"OPENBLAS_NUM_THREADS": "2"}, 2),
    ({"OMP_NUM_THREADS": "4,2"}, 4),
])
def test_thread_count_follows_the_variables(threads, monkeypatch, env, expected):
    for var in ("MINIDL_KERNEL_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert threads.threads() == expected


@pytest.mark.parametrize("value", ["0", "two"])
def test_a_bad_thread_count_is_named(threads, monkeypatch, value):
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", value)
    with pytest.raises(ValueError, match="MINIDL_KERNEL_THREADS"):
        threads.threads()


def test_an_error_in_a_share_reaches_the_caller(threads, monkeypatch):
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "2")
    done = []

    def kernel(lo, hi):
        done.append((lo, hi))
        if lo > 0:
            raise KeyError("second share")

    with pytest.raises(KeyError, match="second share"):
        threads.run_shares(kernel, 10, threads.SERIAL_BELOW)
    assert sorted(done) == [(0, 5), (5, 10)]


def _bn_and_leaky_relu(rng):
    x = rng.standard_normal((5, 3, 4, 6)).astype(np.float32) * 2 + 1
    dout = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 1.5, 3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    out, cache = FN.batchnorm_forward(x, gamma, beta)
    y, act_cache = FA.leaky_relu_forward(out, 0.1)
    dy = FA.leaky_relu_backward(dout, act_cache)
    return (out, cache.x_hat, cache.mean, cache.var, y, dy) + FN.batchnorm_backward(dy, cache)


def test_sharing_out_changes_no_result(threads, monkeypatch):
    """Every row is computed by the same code whichever share holds it: uneven shares on three
    threads give bit-for-bit the one-thread results (BatchNorm and LeakyReLU, both ways)."""
    monkeypatch.setenv(kernels.ENV_VAR, "numba")
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "1")
    one = _bn_and_leaky_relu(np.random.default_rng(0))
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "3")
    monkeypatch.setattr(threads, "SERIAL_BELOW", 0)
    calls = []
    run_shares = threads.run_shares
    monkeypatch.setattr(threads, "shares", lambda rows, size: calls.append(rows) or
                        [(0, rows // 4), (rows // 4, rows // 2), (rows // 2, rows)])
    shared = _bn_and_leaky_relu(np.random.default_rng(0))
    assert run_shares is threads.run_shares and len(calls) >= 6  # every kernel was shared out
    for a, b in zip(shared, one):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("count", ["2", "3"])
def test_thread_count_changes_no_result(threads, monkeypatch, count):
    """MINIDL_KERNEL_THREADS=1 and =2 or 3 (real shares, every call shared out) give bit-equal
    results: each plane's sums are one thread's, and planes are combined in NumPy in a fixed
    order, so runs reproduce across machines and thread settings."""
    monkeypatch.setenv(kernels.ENV_VAR, "numba")
    monkeypatch.setattr(threads, "SERIAL_BELOW", 0)
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "1")
    one = _bn_and_leaky_relu(np.random.default_rng(1))
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", count)
    shared = _bn_and_leaky_relu(np.random.default_rng(1))
    for a, b in zip(shared, one):
        np.testing.assert_array_equal(a, b)
