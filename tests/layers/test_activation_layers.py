"""Activations: gradient checks, PyTorch agreement, stability, dtypes, factory and errors;
CReLU (doubles the channels) and Swish's fixed or trainable beta."""
import copy
import re

import numpy as np
import pytest

from minidl import backend
from minidl import layers as L
from minidl.functional import activations as F
from minidl.gradcheck import gradcheck_layer, rel_error
from minidl.layers.activations import ACTIVATIONS, get_activation
from minidl.summary import SummaryError, summary

GRAD_TOL = 1e-6  # float64 centred differences, inputs kept away from the kinks at 0
NAMES = ["relu", "leaky_relu", "elu", "sigmoid", "tanh", "swish", "swish_trainable"]  # x -> same shape


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
    layer = get_activation(name)
    errors = gradcheck_layer(layer, away_from_zero(shape))
    assert set(errors) == {"x"} | {n for n, _ in layer.named_parameters()}
    assert max(errors.values()) < GRAD_TOL, errors


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
    L.Sigmoid(), L.Tanh(), L.Swish(), L.Swish(np.float64(0.7)), L.Swish(2.0, trainable=True),
], ids=repr)
def test_dtype_follows_input(xp, layer, dtype):
    # numpy float64 hyper-parameters must not promote float32 inputs (NEP 50 rules).
    # A fresh copy per case, on x's device: a trainable Swish's beta (and its grad) must be
    # where x is, and must not carry a gradient over from another case.
    layer = copy.deepcopy(layer)
    if xp is not np:
        layer.to("gpu")
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
    assert sorted(ACTIVATIONS) == sorted(NAMES + ["crelu"])
    for name, make in ACTIVATIONS.items():
        made = get_activation(name)
        assert type(made) is getattr(make, "func", make)  # a class, or a partial of one
        assert made is not get_activation(name)  # a fresh layer each call
    assert get_activation("swish_trainable").trainable and not get_activation("swish").trainable
    assert get_activation("crelu").channel_multiplier == 2
    assert get_activation("relu").channel_multiplier == 1
    assert get_activation("ReLU").__class__ is L.ReLU
    assert get_activation("leaky_relu", negative_slope=0.2).negative_slope == 0.2
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'.*'elu'.*'swish'"):
        get_activation("gelu")


@pytest.mark.parametrize("make", [
    lambda: L.ELU(alpha=0.0), lambda: L.ELU(alpha=-1.0), lambda: L.ELU(alpha="big"),
    lambda: L.LeakyReLU(float("nan")), lambda: L.LeakyReLU(None),
    lambda: L.Swish(beta=float("inf")), lambda: L.Swish(beta="big"),
    lambda: L.Swish(trainable="yes"), lambda: L.Swish(trainable=1),
])
def test_bad_hyper_parameters(make):
    with pytest.raises(ValueError, match="ELU|LeakyReLU|Swish: (beta|trainable)"):
        make()


# ---------------------------------------------------------------------------- CReLU
def test_crelu_values_and_shape():
    x = np.array([[[-2.0, 0.0]], [[3.0, -0.5]]]).reshape(2, 2, 1)  # (N=2, C=2, L=1)
    y = L.CReLU()(x)
    assert y.shape == (2, 4, 1)
    np.testing.assert_array_equal(y[:, :2], np.maximum(x, 0))
    np.testing.assert_array_equal(y[:, 2:], np.maximum(-x, 0))
    np.testing.assert_array_equal(y[:, :2] - y[:, 2:], x)  # nothing is lost


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4, 4), (2, 3, 5)])
def test_crelu_gradcheck(shape):
    errors = gradcheck_layer(L.CReLU(), away_from_zero(shape))
    assert errors["x"] < GRAD_TOL, errors


def test_crelu_between_convs_gradcheck():
    # The model's view: the conv after CReLU takes channel_multiplier times the channels.
    rng = np.random.default_rng(0)
    act = L.CReLU()
    net = L.Sequential(L.Conv2d(2, 3, 3, padding=1, rng=rng), act,
                       L.Conv2d(3 * act.channel_multiplier, 2, 1, rng=rng))
    errors = gradcheck_layer(net, away_from_zero((2, 2, 4, 4)))
    assert len(errors) == 5 and max(errors.values()) < GRAD_TOL, errors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 11), (2, 3, 4, 5)])
def test_crelu_matches_torch(shape, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape) * 3
    x.reshape(-1)[:4] = [0.0, -0.0, 100.0, -100.0]  # PyTorch's convention at the kink: 0
    x = x.astype(dtype)
    layer = L.CReLU()
    y = layer(x)
    dout = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dout)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    relu = torch.nn.functional.relu
    yt = torch.cat([relu(xt), relu(-xt)], dim=1)  # PyTorch has no CReLU op: its definition
    yt.backward(torch.from_numpy(dout))
    assert y.dtype == dtype and dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx, xt.grad.numpy())


def test_crelu_dtype_and_device(xp):
    for dtype in (np.float32, np.float64):
        x = xp.asarray(away_from_zero((2, 3, 4)), dtype=dtype)
        layer = L.CReLU()
        y = layer(x)
        dx = layer.backward(xp.ones_like(y))
        assert y.shape == (2, 6, 4) and y.dtype == dtype and dx.dtype == dtype
        assert type(y) is type(x) and type(dx) is type(x)
        np.testing.assert_array_equal(np.asarray(backend.asnumpy(dx)),
                                      np.sign(backend.asnumpy(x)))


def test_crelu_errors_name_the_layer_and_shapes():
    layer = L.CReLU()
    with pytest.raises(ValueError, match=r"^CReLU\(\): expected input of shape \(N, C, \.\.\.\) "
                                         r"with channels on axis 1, got \(5,\)"):
        layer(np.ones(5))
    layer(np.ones((2, 3)))
    # The upstream gradient has the OUTPUT's shape, twice the channels of the input's.
    with pytest.raises(ValueError, match=r"^CReLU\(\): backward expected dout of shape "
                                         r"\(2, 6\), got \(2, 3\)"):
        layer.backward(np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"^CReLU\(\): input must be a floating-point array"):
        layer(np.ones((2, 3), int))


def test_crelu_functional_refuses_bad_input():
    with pytest.raises(TypeError, match="crelu_forward: input must be a floating-point"):
        F.crelu_forward(np.ones((2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"crelu_forward: expected input of shape \(N, C, "
                                         r"\.\.\.\).*got \(3,\)"):
        F.crelu_forward(np.ones(3))
    out, cache = F.crelu_forward(np.ones((2, 3), np.float32))
    assert type(cache) is F.ActivationCache and cache.saved is out  # the output, as ReLU


def test_crelu_summary_doubles_the_channels():
    net = L.Sequential(L.Conv2d(3, 4, 3, padding=1), L.CReLU(), L.Conv2d(8, 5, 3),
                       L.Flatten(), L.CReLU())
    s = summary(net, (3, 6, 6))
    assert [r.output_shape for r in s.rows] == [(4, 6, 6), (8, 6, 6), (5, 4, 4), (80,), (160,)]
    assert [r.mult_adds for r in s.rows][1::3] == [0, 0]
    x = np.ones((2, 3, 6, 6), np.float32)
    assert net(x).shape == (2, 160)  # the rule agrees with a real forward
    with pytest.raises(SummaryError, match=r"expects 3-d input with 4 channels"):
        summary(L.Sequential(L.Conv2d(3, 4, 1), L.CReLU(), L.Conv2d(4, 4, 1)), (3, 6, 6))


# ---------------------------------------------------------------------------- Swish's beta
def _torch_swish(torch, x, beta):
    return x * torch.sigmoid(beta * x)


def test_swish_default_is_unchanged():
    x = away_from_zero((3, 4))
    np.testing.assert_array_equal(L.Swish()(x), x * F.sigmoid(x))  # bit for bit as before
    np.testing.assert_array_equal(L.Swish(beta=1.0)(x), L.Swish()(x))
    assert repr(L.Swish()) == "Swish()" and L.Swish().state_dict() == {}
    assert not L.Swish().trainable and L.Swish().parameters() == []


def test_swish_beta_limits():
    x = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(L.Swish(beta=0.0)(x), x / 2, rtol=0, atol=0)
    np.testing.assert_allclose(L.Swish(beta=50.0)(x), np.maximum(x, 0), atol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0, -1.5])
@pytest.mark.parametrize("trainable", [False, True])
def test_swish_beta_gradcheck(beta, trainable):
    layer = L.Swish(beta, trainable=trainable)
    errors = gradcheck_layer(layer, away_from_zero((2, 3, 4, 4)))
    assert set(errors) == ({"x", "beta"} if trainable else {"x"})
    assert max(errors.values()) < GRAD_TOL, errors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("trainable", [False, True])
def test_swish_beta_matches_torch(beta, trainable, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.standard_normal(50) * 3, [0.0, -30.0, 30.0, -100.0, 100.0]])
    x = x.reshape(5, 11).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    layer = L.Swish(beta, trainable=trainable)
    y = layer(x)
    dx = layer.backward(dout)

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    bt = torch.tensor(beta, dtype=xt.dtype, requires_grad=True)
    yt = _torch_swish(torch, xt, bt)
    yt.backward(torch.from_numpy(dout))
    tol = 1e-6 if dtype == np.float32 else 1e-13
    assert y.dtype == dtype and dx.dtype == dtype
    assert rel_error(y, yt.detach().numpy()) < tol
    assert rel_error(dx, xt.grad.numpy()) < tol
    if trainable:
        # dbeta is a sum over 55 terms, in the input's precision (so a looser tolerance) ...
        _, dbeta = F.swish_beta_backward(dout, layer._cache[1])
        assert dbeta.dtype == dtype
        assert rel_error(dbeta, bt.grad.numpy()) < tol * 10
        # ... and accumulates into the float32 Parameter's grad (float32 rounding).
        assert layer.beta.grad.shape == (1,) and layer.beta.grad.dtype == np.float32
        assert rel_error(layer.beta.grad, bt.grad.numpy().reshape(1)) < 1e-6


def test_trainable_beta_is_a_parameter_that_accumulates():
    layer = L.Swish(1.5, trainable=True)
    assert repr(layer) == "Swish(trainable=True)"
    assert [n for n, _ in layer.named_parameters()] == ["beta"]
    np.testing.assert_array_equal(layer.state_dict()["beta"], np.array([1.5], np.float32))
    x, dout = away_from_zero((4, 6)), np.random.default_rng(1).standard_normal((4, 6))
    layer(x)
    layer.backward(dout)
    once = layer.beta.grad.copy()
    assert once[0] != 0
    layer(x)
    layer.backward(dout)
    np.testing.assert_allclose(layer.beta.grad, 2 * once, rtol=1e-6)
    layer.zero_grad()
    np.testing.assert_array_equal(layer.beta.grad, [0.0])


def test_trainable_beta_is_learned():
    """Fitting the outputs of a beta = 2.5 Swish from beta = 1 by SGD on beta alone finds 2.5
    (the loss in beta is smooth and one-dimensional, but flat: a large step is needed)."""
    from minidl import optim

    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32) * 2
    target = L.Swish(2.5)(x)
    layer = L.Swish(1.0, trainable=True)
    opt = optim.SGD(layer.parameters(), lr=20.0, momentum=0.5)
    for _ in range(150):
        opt.zero_grad()
        y = layer(x)
        layer.backward((y - target) / y.size)  # d/dy of half the mean squared error
        opt.step()
    assert abs(float(layer.beta.data[0]) - 2.5) < 1e-3


def test_swish_functional_beta_keeps_dtype():
    x = away_from_zero((3, 4)).astype(np.float32)
    for beta in (np.float64(0.5), 2, np.array([0.5]), np.array([0.5], np.float64)):
        out, cache = F.swish_forward(x, beta)
        assert out.dtype == np.float32, beta
        assert F.swish_backward(np.ones_like(out), cache).dtype == np.float32
    dx, dbeta = F.swish_beta_backward(np.ones_like(out), cache)
    assert dx.dtype == np.float32 and dbeta.dtype == np.float32 and dbeta.shape == ()
