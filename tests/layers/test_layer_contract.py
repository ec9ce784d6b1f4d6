"""The contract every layer in ``minidl.layers.__all__`` keeps, checked on each one alike.

dtype follows the input, ``backward`` leaves ``dout`` alone, misuse raises errors that name
the layer and the shapes, gradients agree with centred differences, and state round-trips.
A layer added to ``__all__`` without a case here fails ``test_cases_cover_every_layer``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from minidl import backend
from minidl import layers as L
from minidl.gradcheck import gradcheck_layer

GRAD_TOL = 1e-6  # relative error, float64 centred differences; inputs avoid kinks and ties
NOT_LAYERS = {"Layer", "Parameter"}


@dataclass
class Case:
    """How to build one layer and feed it right and wrong inputs."""

    make: Callable[[np.random.Generator], L.Layer]
    shape: tuple                  # a valid input shape
    wrong_rank: tuple | None      # an input of the wrong rank; None: any rank is accepted
    bad_channels: tuple | None    # right rank, wrong channel count; None: no channel count
    rejects: str                  # the layer that rejects bad input (a child, for containers)


def _conv_body(rng):
    # No conv bias before BatchNorm: the mean subtraction cancels it, its gradient is exactly 0
    # and a relative error of rounding noise against 0 is meaningless.
    return L.Sequential(L.Conv2d(2, 3, 3, padding=1, bias=False, rng=rng), L.BatchNorm2d(3),
                        L.Tanh())


CASES = {
    "Sequential": Case(lambda rng: L.Sequential(L.Linear(4, 3, rng=rng), L.Tanh(),
                                                L.Linear(3, 2, rng=rng)),
                       (3, 4), (3, 4, 1), (3, 5), "Linear"),
    "Residual-identity": Case(lambda rng: L.Residual(L.Sequential(L.Linear(4, 4, rng=rng),
                                                                  L.Tanh())),
                              (3, 4), (3, 4, 1), (3, 5), "Linear"),
    "Residual-shortcut": Case(lambda rng: L.Residual(_conv_body(rng),
                                                     L.Conv2d(2, 3, 1, rng=rng)),
                              (2, 2, 4, 4), (2, 2, 4), (2, 3, 4, 4), "Conv2d"),
    "Conv2d": Case(lambda rng: L.Conv2d(2, 3, 3, padding=1, rng=rng),
                   (2, 2, 5, 4), (2, 5, 4), (2, 3, 5, 4), "Conv2d"),
    "Conv2d-loops": Case(lambda rng: L.Conv2d(2, 4, (2, 3), stride=2, groups=2,
                                              method="loops", rng=rng),
                         (2, 2, 5, 6), (2, 5, 6), (2, 4, 5, 6), "Conv2d"),
    "Conv2d-fft": Case(lambda rng: L.Conv2d(2, 2, 3, padding=1, dilation=2, bias=False,
                                            method="fft", rng=rng),
                       (2, 2, 5, 6), (2, 5, 6), (2, 3, 5, 6), "Conv2d"),
    "Linear": Case(lambda rng: L.Linear(4, 3, rng=rng), (3, 4), (3, 4, 1), (3, 5), "Linear"),
    "MaxPool2d": Case(lambda rng: L.MaxPool2d(3, 1, 1), (2, 2, 5, 5), (2, 5, 5), None,
                      "MaxPool2d"),
    "AvgPool2d": Case(lambda rng: L.AvgPool2d(3, 2, 1), (2, 2, 5, 5), (2, 5, 5), None,
                      "AvgPool2d"),
    "GlobalAvgPool2d": Case(lambda rng: L.GlobalAvgPool2d(), (2, 3, 3, 4), (2, 3, 3), None,
                            "GlobalAvgPool2d"),
    "BatchNorm1d": Case(lambda rng: L.BatchNorm1d(3), (5, 3), (5, 3, 2), (5, 4), "BatchNorm1d"),
    "BatchNorm2d": Case(lambda rng: L.BatchNorm2d(3), (2, 3, 3, 4), (2, 3, 3), (2, 4, 3, 4),
                        "BatchNorm2d"),
    "BatchNorm2d-eval": Case(lambda rng: L.BatchNorm2d(3).eval(), (2, 3, 3, 4), (2, 3, 3),
                             (2, 4, 3, 4), "BatchNorm2d"),
    "ReLU": Case(lambda rng: L.ReLU(), (2, 3, 4), None, None, "ReLU"),
    "LeakyReLU": Case(lambda rng: L.LeakyReLU(0.1), (2, 3, 4), None, None, "LeakyReLU"),
    "ELU": Case(lambda rng: L.ELU(), (2, 3, 4), None, None, "ELU"),
    "Sigmoid": Case(lambda rng: L.Sigmoid(), (2, 3, 4), None, None, "Sigmoid"),
    "Tanh": Case(lambda rng: L.Tanh(), (2, 3, 4), None, None, "Tanh"),
    "Swish": Case(lambda rng: L.Swish(), (2, 3, 4), None, None, "Swish"),
    "Swish-trainable": Case(lambda rng: L.Swish(1.5, trainable=True), (2, 3, 4), None, None,
                            "Swish"),
    "CReLU": Case(lambda rng: L.CReLU(), (2, 3, 4), (5,), None, "CReLU"),
    "Dropout": Case(lambda rng: L.Dropout(0.4, rng=rng), (4, 5), None, None, "Dropout"),
    "Flatten": Case(lambda rng: L.Flatten(), (2, 3, 2, 2), (5,), None, "Flatten"),
    "SCLayer": Case(lambda rng: L.SCLayer(2, 3, rng=rng), (2, 2, 4, 4), (2, 4, 4),
                    (2, 3, 4, 4), "SCLayer"),
    "MixedSCLayer": Case(lambda rng: L.MixedSCLayer(2, 4, conv_channels=1, rng=rng),
                         (2, 2, 4, 4), (2, 4, 4), (2, 3, 4, 4), "MixedSCLayer"),
    "LocalResponseNorm": Case(lambda rng: L.LocalResponseNorm(3, alpha=0.5, k=1.5),
                              (2, 4, 3, 3), (2, 4), None, "LocalResponseNorm"),
}
IDS = list(CASES)
BAD_INPUTS = [(n, kind) for kind in ("wrong_rank", "bad_channels") for n in IDS
              if getattr(CASES[n], kind) is not None]


def _input(shape, seed=0):
    """Distinct values 0.01 apart, none within 0.005 of 0: no max-pool ties, no ReLU kinks."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n).reshape(shape) - (n - 1) / 2) * 0.01


def _fix_dropout_masks(layer):
    """A ``before_forward`` hook that redraws the same masks, making dropout deterministic."""
    dropouts = [m for _, m in layer.named_layers() if isinstance(m, L.Dropout)]

    def reseed():
        for m in dropouts:
            m.rng = np.random.default_rng(7)
    return reseed


def test_cases_cover_every_layer():
    made = {type(case.make(np.random.default_rng(0))).__name__ for case in CASES.values()}
    assert made == set(L.__all__) - NOT_LAYERS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", IDS)
def test_dtype_and_device_follow_input(name, dtype, xp):
    case = CASES[name]
    layer = case.make(np.random.default_rng(0))  # float32 parameters, whatever the input
    if xp is not np:
        layer.to("gpu")
    x = xp.asarray(_input(case.shape), dtype=dtype)
    out = layer(x)
    dx = layer.backward(xp.ones(out.shape, dtype=dtype))
    assert out.dtype == dtype and dx.dtype == dtype and dx.shape == x.shape
    assert backend.get_array_module(out) is xp and backend.get_array_module(dx) is xp
    for pname, p in layer.named_parameters():
        assert p.data.dtype == np.float32 and p.grad.dtype == np.float32, pname


@pytest.mark.parametrize("name", IDS)
def test_backward_leaves_dout_untouched(name):
    case = CASES[name]
    layer = case.make(np.random.default_rng(0))
    out = layer(_input(case.shape))
    dout = np.random.default_rng(1).standard_normal(out.shape)
    kept = dout.copy()
    layer.backward(dout)
    np.testing.assert_array_equal(dout, kept)


@pytest.mark.parametrize("name", IDS)
def test_backward_before_forward_names_the_layer(name):
    layer = CASES[name].make(np.random.default_rng(0))
    with pytest.raises(RuntimeError, match=rf"^{type(layer).__name__}\(.*backward called "
                                           r"before forward"):
        layer.backward(np.ones((2, 3)))


@pytest.mark.parametrize("name, kind", BAD_INPUTS)
def test_bad_input_names_the_layer_and_shapes(name, kind):
    case = CASES[name]
    shape = getattr(case, kind)
    # What was expected: the layout for a wrong rank, the channel count for wrong channels.
    expected = r"input of shape \(N, " if kind == "wrong_rank" else rf".*\b{case.shape[1]}\b"
    layer = case.make(np.random.default_rng(0))
    with pytest.raises(ValueError, match=rf"^{case.rejects}\(.*expected {expected}.*"
                                         rf"got .*{re.escape(str(shape))}"):
        layer(np.zeros(shape))


@pytest.mark.parametrize("name", IDS)
def test_wrong_dout_shape_names_a_layer_and_shapes(name):
    case = CASES[name]
    layer = case.make(np.random.default_rng(0))
    out = layer(_input(case.shape))
    wrong = out.shape[:-1] + (out.shape[-1] + 1,)
    # Containers pass dout to a child first: the child's name leads the message.
    with pytest.raises(ValueError, match=rf"^\w+\(.*expected dout of shape "
                                         rf"{re.escape(str(tuple(out.shape)))}, "
                                         rf"got {re.escape(str(wrong))}"):
        layer.backward(np.ones(wrong))


@pytest.mark.parametrize("name", IDS)
def test_gradcheck(name):
    case = CASES[name]
    layer = case.make(np.random.default_rng(0))
    errors = gradcheck_layer(layer, _input(case.shape), before_forward=_fix_dropout_masks(layer))
    assert set(errors) == {"x"} | {n for n, _ in layer.named_parameters()}
    assert max(errors.values()) < GRAD_TOL, errors


@pytest.mark.parametrize("name", IDS)
def test_state_dict_round_trip(name):
    case = CASES[name]
    source = case.make(np.random.default_rng(0))
    target = case.make(np.random.default_rng(1))
    x = _input(case.shape).astype(np.float32)
    if source.training:
        for seed in range(3):  # moves BatchNorm's running statistics away from their start
            source(_input(case.shape, seed) * 3 + 1)
    state = source.state_dict()
    names = [n for n, _ in source.named_parameters()] + [n for n, _ in source.named_buffers()]
    assert list(state) == names
    target.load_state_dict(state)
    source.eval()
    target.eval()
    np.testing.assert_array_equal(target(x), source(x))
    for key, value in target.state_dict().items():
        np.testing.assert_array_equal(value, state[key])


NON_FLOAT = {"int": np.int64, "bool": np.bool_, "uint8": np.uint8}


@pytest.mark.parametrize("kind", NON_FLOAT)
@pytest.mark.parametrize("name", IDS)
def test_non_float_input_is_refused_naming_the_layer(name, kind):
    """The one dtype rule: integer, bool and uint8 input is refused (weights follow the input's
    dtype, so it used to truncate them, or wrap uint8 images around, without a word)."""
    case = CASES[name]
    layer = case.make(np.random.default_rng(0))
    x = (np.abs(_input(case.shape)) * 100).astype(NON_FLOAT[kind])
    with pytest.raises(TypeError, match=rf"^{re.escape(layer.describe())}: input must be a "
                                        r"floating-point array.*x.astype\(np.float32\)"):
        layer(x)


@pytest.mark.parametrize("name", IDS)
def test_extra_state_round_trip(name):
    """Layers with state outside ``state_dict`` (Dropout's generator) hand it over through
    ``extra_state_dict``: a copy loaded with it continues with the same random draws."""
    case = CASES[name]
    source, target = case.make(np.random.default_rng(0)), case.make(np.random.default_rng(0))
    x = _input(case.shape)
    source(x)                                  # advance any generator
    target.load_state_dict(source.state_dict())
    target.load_extra_state_dict(source.extra_state_dict())
    np.testing.assert_array_equal(target(x), source(x))
