"""Compiled activations (minidl.kernels.activations) against the NumPy reference, and the
activation gradient checks on both paths."""
import numpy as np
import pytest

from minidl import kernels
from minidl import layers as L
from minidl.functional import activations as F
from minidl.gradcheck import gradcheck_layer

GRAD_TOL = 1e-6  # as tests/layers/test_activation_layers.py
# (name, forward, backward, hyper-parameters): every op that has a compiled kernel.
OPS = [("relu", F.relu_forward, F.relu_backward, ()),
       ("leaky_relu", F.leaky_relu_forward, F.leaky_relu_backward, (0.01,)),
       ("leaky_relu_steep", F.leaky_relu_forward, F.leaky_relu_backward, (1.5,)),
       ("leaky_relu_negative", F.leaky_relu_forward, F.leaky_relu_backward, (-0.2,))]
IDS = [op[0] for op in OPS]


def _inputs(dtype, rng):
    """Random values plus the awkward ones: +-0, huge, tiny, +-inf and NaN, in a 4-d array."""
    special = [0.0, -0.0, 1e-30, -1e-30, 80.0, -80.0, 1e30, -1e30, np.inf, -np.inf, np.nan]
    x = np.concatenate([rng.standard_normal(2 * 3 * 5 * 7 - len(special)) * 3, special])
    return rng.permutation(x).reshape(2, 3, 5, 7).astype(dtype)


def _run(monkeypatch, mode, forward, backward, hyper, x, dout):
    """Forward and backward on one path; the backward also on the NumPy forward's cache, so
    each kernel is compared on identical inputs (a 1-ulp difference in ELU's output would
    otherwise be amplified by ``out + alpha`` near -alpha)."""
    monkeypatch.setenv(kernels.ENV_VAR, "numpy")
    _, ref_cache = forward(x, *hyper)
    monkeypatch.setenv(kernels.ENV_VAR, mode)
    out, cache = forward(x, *hyper)
    return out, backward(dout, cache), backward(dout, ref_cache)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,forward,backward,hyper", OPS, ids=IDS)
def test_kernel_matches_numpy(numba_kernels, monkeypatch, rng, name, forward, backward, hyper,
                              dtype):
    x = _inputs(dtype, rng)
    dout = rng.standard_normal(x.shape).astype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 and friends, on both paths
        ref_out, _, ref_dx = _run(monkeypatch, "numpy", forward, backward, hyper, x, dout)
        out, dx_own, dx = _run(monkeypatch, "numba", forward, backward, hyper, x, dout)
    assert out.dtype == dtype and dx.dtype == dtype and out.shape == x.shape
    tol = {"rtol": 1e-6, "atol": 0} if dtype == np.float32 else {"rtol": 1e-13, "atol": 0}
    np.testing.assert_allclose(out, ref_out, **tol)  # NaNs must sit in the same places
    np.testing.assert_allclose(dx, ref_dx, **tol)
    assert np.array_equal(np.isnan(dx_own), np.isnan(ref_dx))


@pytest.mark.parametrize("name,forward,backward,hyper", OPS, ids=IDS)
def test_kernel_takes_non_contiguous_input(numba_kernels, monkeypatch, rng, name, forward,
                                           backward, hyper):
    x = rng.standard_normal((4, 6, 5)).transpose(2, 0, 1)  # a strided view
    dout = rng.standard_normal((6, 5, 4)).transpose(1, 2, 0)
    ref = _run(monkeypatch, "numpy", forward, backward, hyper, x, dout)
    got = _run(monkeypatch, "numba", forward, backward, hyper, x, dout)
    for a, b in zip(got[:2], ref[:2]):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=0)


def test_kernel_is_used_only_when_switched_on(numba_kernels, monkeypatch):
    from minidl.kernels import activations as compiled
    calls = []
    real = compiled.leaky_relu_forward
    monkeypatch.setattr(compiled, "leaky_relu_forward",
                        lambda *args: calls.append(1) or real(*args))
    x = np.ones((2, 3), np.float32)
    monkeypatch.setenv(kernels.ENV_VAR, "numpy")
    F.leaky_relu_forward(x)
    assert calls == []
    monkeypatch.setenv(kernels.ENV_VAR, "numba")
    F.leaky_relu_forward(x)
    assert calls == [1]
    F.leaky_relu_forward(x.astype(np.float64)[:, ::2])  # any float dtype, any layout
    assert calls == [1, 1]


@pytest.mark.parametrize("make", [L.ReLU, L.LeakyReLU, lambda: L.LeakyReLU(0.3),
                                  lambda: L.LeakyReLU(1.5), lambda: L.LeakyReLU(-0.2)])
def test_gradcheck_on_both_paths(kernel_mode, make):
    rng = np.random.default_rng(1)
    # |x| in [0.1, 2]: centred differences of width 2e-6 never cross the kink at 0.
    x = rng.choice([-1.0, 1.0], size=(3, 4, 5)) * rng.uniform(0.1, 2.0, size=(3, 4, 5))
    assert gradcheck_layer(make(), x)["x"] < GRAD_TOL
