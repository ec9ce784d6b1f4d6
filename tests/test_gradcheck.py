"""The gradient checker itself: rel_error, numerical_gradient, and that gradcheck_layer fails
on wrong backward passes (a check that cannot fail proves nothing)."""
import numpy as np
import pytest

from minidl import layers as L
from minidl.gradcheck import gradcheck_layer, numerical_gradient, rel_error


def test_rel_error_known_values():
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    a = np.array([3.0, 4.0])  # norm 5
    assert rel_error(a, 1.1 * a) == pytest.approx(0.1 / 1.1, rel=1e-12)
    assert rel_error(a, np.zeros(2)) == pytest.approx(1.0)
    assert rel_error(np.float32(2.0), 2.0) == 0.0
    with pytest.raises(ValueError, match=r"shapes differ, \(2,\) vs \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))


def test_numerical_gradient_of_known_functions():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    before = x.copy()
    grad = numerical_gradient(lambda: np.sum(x ** 3), x)
    assert rel_error(grad, 3 * x ** 2) < 1e-8
    np.testing.assert_array_equal(x, before)  # every perturbation is undone
    A = rng.standard_normal((5, 3))
    W = rng.standard_normal((3, 2))
    grad = numerical_gradient(lambda: np.sum(np.sin(A @ W)), W)
    assert rel_error(grad, A.T @ np.cos(A @ W)) < 1e-8


def test_numerical_gradient_on_views():
    base = np.arange(16.0).reshape(4, 4)
    strided = base[:, ::2]  # reshape(-1) of this is still a view: it can be perturbed in place
    assert rel_error(numerical_gradient(lambda: np.sum(strided ** 2), strided), 2 * strided) < 1e-8
    transposed = base.T  # reshape(-1) would copy, so perturbations would be lost
    with pytest.raises(ValueError, match="contiguous"):
        numerical_gradient(lambda: np.sum(transposed), transposed)


class ScaledBackward(L.Layer):
    """y = 3x with a deliberately wrong backward (factor ``backward_scale``)."""

    def __init__(self, backward_scale):
        super().__init__()
        self.backward_scale = backward_scale

    def forward(self, x):
        self._cache = True
        return 3 * x

    def backward(self, dout):
        self._saved()
        return self.backward_scale * dout


class InPlaceBackward(ScaledBackward):
    def backward(self, dout):
        dout *= 3  # forbidden: dout may feed another branch
        return dout


def test_gradcheck_layer_passes_and_fails():
    x = np.random.default_rng(0).standard_normal((2, 3))
    assert gradcheck_layer(ScaledBackward(3.0), x)["x"] < 1e-8
    assert gradcheck_layer(ScaledBackward(3.3), x)["x"] > 0.05


def test_gradcheck_layer_catches_wrong_parameter_gradient():
    layer = L.Linear(3, 2, rng=np.random.default_rng(0))
    real_backward = layer.backward

    def wrong_bias_backward(dout):
        dx = real_backward(dout)
        layer.bias.grad += 1.0  # an extra term a buggy layer might add
        return dx

    layer.backward = wrong_bias_backward
    errors = gradcheck_layer(layer, np.random.default_rng(1).standard_normal((4, 3)))
    assert errors["x"] < 1e-6 and errors["weight"] < 1e-6 and errors["bias"] > 0.1


def test_gradcheck_layer_rejects_in_place_dout_and_bad_dout_shape():
    x = np.ones((2, 3))
    with pytest.raises(AssertionError, match="modified dout in place"):
        gradcheck_layer(InPlaceBackward(3.0), x)
    with pytest.raises(ValueError, match=r"dout shape \(3, 2\) != output shape \(2, 3\)"):
        gradcheck_layer(ScaledBackward(3.0), x, dout=np.ones((3, 2)))


def test_gradcheck_layer_casts_to_float64_and_calls_before_forward():
    layer = L.Linear(2, 2)
    calls = []   # the weight's dtype seen by every forward of the check
    gradcheck_layer(layer, np.ones((1, 2), np.float32),
                    before_forward=lambda: calls.append(layer.weight.data.dtype))
    assert set(calls) == {np.dtype(np.float64)}
    assert layer.weight.data.dtype == np.float32  # the layer is given back unchanged
    # 1 analytic forward + 2 per entry of x (2) and of every parameter (4 + 2).
    assert len(calls) == 1 + 2 * (2 + 4 + 2)


def test_gradcheck_layer_runs_a_device_layer_on_the_cpu(xp):
    # A layer on any device is checked on the CPU in float64; x and dout may be device arrays.
    layer = L.Linear(3, 2, rng=np.random.default_rng(0))
    if xp is not np:
        layer.to("gpu")
    rng = np.random.default_rng(1)
    x = xp.asarray(rng.standard_normal((4, 3)), dtype=xp.float32)
    dout = xp.asarray(rng.standard_normal((4, 2)))
    errors = gradcheck_layer(layer, x, dout=dout)
    assert max(errors.values()) < 1e-6, errors
    # ... and is given back on its own device, in its own dtype
    assert type(layer.weight.data) is type(x) and layer.weight.data.dtype == np.float32
    assert type(layer.weight.grad) is type(x)


def test_the_checked_layer_is_left_exactly_as_it_was():
    """float32 weights, BatchNorm running statistics, gradients, cache and Dropout's generator
    are all back after the check (it used to leave the layer float64 with new statistics)."""
    rng = np.random.default_rng(0)
    net = L.Sequential(L.Linear(4, 5, rng=rng), L.BatchNorm1d(5), L.Dropout(0.3, rng=1),
                       L.Linear(5, 2, rng=rng)).astype(np.float32)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    net.backward(net(x) * 0 + 1)            # some gradients and a cache to keep
    before_state = {k: v.copy() for k, v in net.state_dict().items()}
    before_grads = [p.grad.copy() for p in net.parameters()]
    before_extra = net.extra_state_dict()
    dropout = net[2]

    def fix_mask():
        dropout.rng = np.random.default_rng(5)

    gradcheck_layer(net, x, before_forward=fix_mask)
    after = net.state_dict()
    for key, value in before_state.items():
        assert after[key].dtype == value.dtype == np.float32, key
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    for p, grad in zip(net.parameters(), before_grads):
        np.testing.assert_array_equal(p.grad, grad)
        assert p.grad.dtype == np.float32
    assert net.extra_state_dict() == before_extra
    net.backward(np.ones((6, 2), np.float32))   # the cache of the last forward is still there
