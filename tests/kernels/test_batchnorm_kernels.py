"""Compiled batch normalisation (minidl.kernels.normalization) against the NumPy reference,
and the BatchNorm gradient checks on both paths."""
import numpy as np
import pytest

from minidl import kernels
from minidl import layers as L
from minidl.functional import normalization as F
from minidl.gradcheck import gradcheck_layer

GRAD_TOL = 1e-6  # as tests/layers/test_batchnorm_layers.py
SHAPES = [(8, 3), (3, 2, 4, 5), (5, 4, 1, 1), (2, 3, 7, 6)]


def _case(shape, dtype, rng, offset=0.0):
    C = shape[1]
    bshape = (1, C) + (1,) * (len(shape) - 2)
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 3, C).reshape(bshape)
         + rng.standard_normal(C).reshape(bshape) + offset)
    gamma, beta = rng.uniform(0.5, 1.5, C), rng.standard_normal(C)
    dout = rng.standard_normal(shape)
    return [a.astype(dtype) for a in (x, gamma, beta, dout)]


def _both_paths(monkeypatch, x, gamma, beta, dout, fixed):
    """(out, cache, dx, dgamma, dbeta) per path; each backward gets the NumPy forward's cache
    so the kernel is compared on identical inputs."""
    monkeypatch.setenv(kernels.ENV_VAR, "numpy")
    ref_out, ref_cache = F.batchnorm_forward(x, gamma, beta, 1e-5, *fixed)
    ref = (ref_out, ref_cache, *F.batchnorm_backward(dout, ref_cache))
    monkeypatch.setenv(kernels.ENV_VAR, "numba")
    out, cache = F.batchnorm_forward(x, gamma, beta, 1e-5, *fixed)
    return ref, (out, cache, *F.batchnorm_backward(dout, ref_cache))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_kernel_matches_numpy(numba_kernels, monkeypatch, rng, shape, dtype, training):
    x, gamma, beta, dout = _case(shape, dtype, rng)
    fixed = () if training else (rng.standard_normal(shape[1]), rng.uniform(0.5, 2, shape[1]))
    ref, got = _both_paths(monkeypatch, x, gamma, beta, dout, fixed)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(got[:1] + got[2:], ref[:1] + ref[2:]):  # out, dx, dgamma, dbeta
        assert a.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    for field in ("x_hat", "inv_std", "mean", "var", "gamma"):
        a, b = getattr(got[1], field), getattr(ref[1], field)
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    assert got[1].batch_stats == ref[1].batch_stats == training


def test_kernel_statistics_do_not_cancel(numba_kernels, monkeypatch, rng):
    # A large common offset: E[x^2] - mean^2 would lose every digit of the variance in float32.
    x, gamma, beta, dout = _case((16, 3, 8, 8), np.float32, rng, offset=1e4)
    ref, got = _both_paths(monkeypatch, x, gamma, beta, dout, ())
    exact = x.astype(np.float64).var(axis=(0, 2, 3))
    np.testing.assert_allclose(got[1].var, exact, rtol=1e-3)
    np.testing.assert_allclose(got[1].var, ref[1].var, rtol=1e-3)


def test_kernel_is_used_only_when_switched_on(numba_kernels, monkeypatch, rng):
    from minidl.kernels import normalization as compiled
    calls = []
    real = compiled.normalise
    monkeypatch.setattr(compiled, "normalise", lambda *a: calls.append(1) or real(*a))
    x, gamma, beta, _ = _case((4, 3, 2, 2), np.float32, rng)
    monkeypatch.setenv(kernels.ENV_VAR, "numpy")
    F.batchnorm_forward(x, gamma, beta)
    assert calls == []
    monkeypatch.setenv(kernels.ENV_VAR, "numba")
    F.batchnorm_forward(x, gamma, beta)
    assert calls == [1]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls,shape", [(L.BatchNorm1d, (8, 3)), (L.BatchNorm2d, (3, 2, 4, 5))],
                         ids=["1d", "2d"])
def test_gradcheck_on_both_paths(kernel_mode, cls, shape, training):
    rng = np.random.default_rng(2)
    x, gamma, beta, _ = _case(shape, np.float64, rng)
    layer = cls(shape[1]).train(training)
    layer.weight.data, layer.bias.data = gamma, beta
    layer.running_mean = rng.standard_normal(shape[1])
    layer.running_var = rng.uniform(0.5, 2.0, shape[1])
    errors = gradcheck_layer(layer, x)
    assert set(errors) == {"x", "weight", "bias"}
    assert max(errors.values()) < GRAD_TOL, errors
