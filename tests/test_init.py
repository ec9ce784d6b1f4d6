"""Initialisers: variances (He, Glorot, PyTorch default), fans, seeding, dtypes, lookup."""
import math

import numpy as np
import pytest

from minidl import init

# 256 x 512 = 131k draws: the sample variance is within ~1% (normal) of the target at 3 sigma;
# 3% leaves room without hiding a wrong formula (the nearest wrong ones are off by >= 33%).
SHAPE = (512, 256)
CONV_SHAPE = (64, 32, 3, 3)  # fan_in = 32 * 9 = 288, fan_out = 64 * 9 = 576
VAR_TOL = 0.03


def expected_var(name, shape):
    fan_in, fan_out = init.fans(shape)
    return {
        "he_normal": 2 / fan_in,
        "he_uniform": 2 / fan_in,
        "glorot_normal": 2 / (fan_in + fan_out),
        "glorot_uniform": 2 / (fan_in + fan_out),
        "pytorch_default": 1 / (3 * fan_in),  # U(+-1/sqrt(fan_in))
    }[name]


def test_fans():
    assert init.fans((10, 20)) == (20, 10)
    assert init.fans(CONV_SHAPE) == (288, 576)
    with pytest.raises(ValueError, match=r"at least 2 dimensions, got \(5,\)"):
        init.fans((5,))


@pytest.mark.parametrize("shape", [SHAPE, CONV_SHAPE])
@pytest.mark.parametrize("name", sorted(init.INITIALISERS))
def test_variance_and_mean(name, shape):
    w = init.get(name)(shape, rng=np.random.default_rng(0))
    assert w.shape == shape and w.dtype == np.float32
    target = expected_var(name, shape)
    assert abs(w.var() / target - 1) < VAR_TOL, (name, w.var(), target)
    assert abs(w.mean()) < 4 * math.sqrt(target / w.size)


@pytest.mark.parametrize("name", ["he_uniform", "glorot_uniform", "pytorch_default"])
def test_uniform_bounds(name):
    w = init.get(name)(SHAPE, rng=np.random.default_rng(0))
    bound = math.sqrt(3 * expected_var(name, SHAPE))  # U(-b, b) has variance b^2 / 3
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound


def test_pytorch_default_bias():
    b = init.pytorch_default_bias(CONV_SHAPE, rng=np.random.default_rng(0))
    assert b.shape == (64,) and np.abs(b).max() <= 1 / math.sqrt(288)


def test_gain():
    w = init.he_normal(SHAPE, rng=np.random.default_rng(0), gain=1.0)
    assert abs(w.var() * init.fans(SHAPE)[0] - 1) < VAR_TOL


def test_same_seed_same_weights(monkeypatch):
    a = init.he_normal(SHAPE, rng=np.random.default_rng(3))
    b = init.he_normal(SHAPE, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, init.he_normal(SHAPE, rng=np.random.default_rng(4)))
    monkeypatch.setattr(init, "_rng", init.default_rng())  # restore the global afterwards
    init.seed(5)
    first = init.glorot_uniform((4, 4))
    init.seed(5)
    np.testing.assert_array_equal(init.glorot_uniform((4, 4)), first)
    assert not np.array_equal(init.glorot_uniform((4, 4)), first)  # the stream moves on


def test_dtype_argument():
    w = init.he_normal((3, 3), rng=np.random.default_rng(0), dtype=np.float64)
    assert w.dtype == np.float64


def test_get_unknown_lists_names():
    assert init.get("he_normal") is init.he_normal
    with pytest.raises(ValueError, match=r"unknown initialiser 'kaiming'.*'glorot_normal'"):
        init.get("kaiming")
