"""Activations: gradient checks, PyTorch agreement, stability, dtypes, factory and errors."""
import re

import numpy as np
import pytest

from minidl import layers as L
from minidl.gradcheck import gradcheck_layer, rel_error
from minidl.layers.activations import ACTIVATIONS, get_activation

GRAD_TOL = 1e-6  # float64 centred differences, inputs kept away from the kinks at 0
NAMES = ["relu", "leaky_relu", "elu", "sigmoid", "tanh", "swish"]


def away_from_zero(shape, seed=0):
    """Random inputs with |x| in [0.1, 2]: centred differences of width 2e-6 never cross a kink."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)


def make_pairs():
    """(minidl layer, PyTorch module factory) for every activation and non-default settings."""
    return [
        (lambda: L.ReLU(), lambda nn: nn.ReLU()),
        (lambda: L.LeakyReLU(), lambda nn: nn.LeakyReLU()),
        (lambda: L.LeakyReLU(0.2), lambda nn: nn.LeakyReLU(0.2)),
        (lambda: L.ELU(), lambda nn: nn.ELU()),
        (lambda: L.ELU(alpha=0.5), lambda nn: nn.ELU(alpha=0.5)),
        (lambda: L.Sigmoid(), lambda nn: nn.Sigmoid()),
        (lambda: L.Tanh(), lambda nn: nn.Tanh()),
        (lambda: L.Swish(), lambda nn: nn.SiLU()),
    ]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4, 4)])
def test_gradcheck(name, shape):
    errors = gradcheck_layer(get_activation(name), away_from_zero(shape))
    assert errors["x"] < GRAD_TOL, errors


def test_gradcheck_non_default_hyper_parameters():
    assert gradcheck_layer(L.LeakyReLU(0.3), away_from_zero((3, 7)))["x"] < GRAD_TOL
    assert gradcheck_layer(L.ELU(alpha=2.0), away_from_zero((3, 7)))["x"] < GRAD_TOL


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pair", range(len(make_pairs())))
def test_matches_torch(pair, dtype):
    torch = pytest.importorskip("torch")
    make_ours, make_ref = make_pairs()[pair]
    rng = np.random.default_rng(pair)
    # Include exact zeros and large magnitudes: conventions at the kink and saturation.
    x = np.concatenate([rng.standard_normal(50) * 3, [0.0, -30.0, 30.0, -100.0, 100.0]])
    x = x.reshape(5, 11).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)

    layer = make_ours()
    y = layer(x)
    dx = layer.backward(dout)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = make_ref(torch.nn)(xt)
    yt.backward(torch.from_numpy(dout))

    tol = 1e-6 if dtype == np.float32 else 1e-13
    assert y.dtype == dtype and dx.dtype == dtype
    assert rel_error(y, yt.detach().numpy()) < tol, layer
    assert rel_error(dx, xt.grad.numpy()) < tol, layer


def test_sigmoid_is_stable_and_accurate():
    x = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        y = L.Sigmoid()(x)
        s = L.Swish()(x)
    np.testing.assert_allclose(y, [0.0, np.exp(-40.0), 0.5, 1.0, 1.0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(s, [-0.0, -40 * np.exp(-40.0), 0.0, 40.0, 1000.0], rtol=1e-12)


def test_elu_large_inputs_do_not_warn():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = L.ELU()(np.array([-1000.0, 1000.0], np.float32))
    np.testing.assert_allclose(y, [-1.0, 1000.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", [
    L.ReLU(), L.LeakyReLU(np.float64(0.1)), L.ELU(np.float64(0.7)),
    L.Sigmoid(), L.Tanh(), L.Swish(),
], ids=repr)
def test_dtype_follows_input(xp, layer, dtype):
    # numpy float64 hyper-parameters must not promote float32 inputs (NEP 50 rules).
    x = xp.asarray(away_from_zero((2, 3, 4)), dtype=dtype)
    y = layer(x)
    dx = layer.backward(xp.ones_like(y))
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == x.shape
    assert type(y) is type(x) and type(dx) is type(x)


@pytest.mark.parametrize("name", NAMES)
def test_backward_keeps_dout_and_checks_its_shape(name):
    layer = get_activation(name)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((2, 3)))
    layer(away_from_zero((2, 3)))
    dout = np.ones((2, 3))
    layer.backward(dout)
    np.testing.assert_array_equal(dout, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"expected dout of shape \(2, 3\), got \(3,\)"):
        layer.backward(np.ones(3))


def test_non_array_input_is_a_value_error():
    with pytest.raises(ValueError, match=r"ReLU\(\): expected an array, got list"):
        L.ReLU()([1.0, -1.0])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [np.array([1, -1]), np.array([True, False]),
                                 np.array([1, 2], np.uint8)], ids=["int", "bool", "uint8"])
def test_non_float_input_is_refused_naming_the_layer(name, bad):
    layer = get_activation(name)
    with pytest.raises(TypeError, match=re.escape(layer.describe()) + ".*floating-point array"):
        layer(bad)


def test_relu_family_values():
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(L.ReLU()(x), [0.0, 0.0, 3.0])
    np.testing.assert_allclose(L.LeakyReLU()(x), [-0.02, 0.0, 3.0])  # default slope 0.01
    np.testing.assert_allclose(L.ELU()(x), [np.expm1(-2.0), 0.0, 3.0])


def test_factory():
    assert sorted(ACTIVATIONS) == sorted(NAMES)
    for name, cls in ACTIVATIONS.items():
        made = get_activation(name)
        assert type(made) is cls
        assert made is not get_activation(name)  # a fresh layer each call
    assert get_activation("ReLU").__class__ is L.ReLU
    assert get_activation("leaky_relu", negative_slope=0.2).negative_slope == 0.2
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'.*'elu'.*'swish'"):
        get_activation("gelu")


@pytest.mark.parametrize("make", [
    lambda: L.ELU(alpha=0.0), lambda: L.ELU(alpha=-1.0), lambda: L.ELU(alpha="big"),
    lambda: L.LeakyReLU(float("nan")), lambda: L.LeakyReLU(None),
])
def test_bad_hyper_parameters(make):
    with pytest.raises(ValueError, match="ELU|LeakyReLU"):
        make()
