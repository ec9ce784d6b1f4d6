"""DessiLBI (Fu et al. 2020): the update written out here step by step, its group-sparse path
on a regression with a known support, state round trip, registration and validation."""
import io

import numpy as np
import pytest

from minidl import backend, optim
from minidl.layers.base import Parameter
from tests.optim_helpers import run
from minidl.optim.dessilbi import DessiLBI, group_shrink

SHAPES = ((4, 3), (2, 2, 3, 3), (5,))  # a linear weight, a conv weight, a bias
STEPS = 6


def ref_dessilbi(w, grads, lr, kappa=1.0, mu=10.0, lam=1.0, momentum=0.9, weight_decay=0.0):
    """The paper's iteration written out with explicit per-group loops (float64)."""
    sparse = w.ndim >= 2
    gamma, z, b = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    out = []
    for g in grads:
        g = g + weight_decay * w
        if sparse:
            d = kappa * (g + mu * (w - gamma))
            z = z + lr * mu * (w - gamma)
            new_gamma = np.zeros_like(w)
            for o in range(len(w)):  # the group-lasso proximal map, one output group at a time
                norm = np.sqrt(np.sum(z[o] ** 2))
                if norm > lam:
                    new_gamma[o] = kappa * (1 - lam / norm) * z[o]
            gamma = new_gamma
        else:
            d = g
        b = momentum * b + d if momentum else d
        w = w - lr * b
        out.append((w, gamma))
    return out


def problem(seed=0):
    rng = np.random.default_rng(seed)
    w0 = [rng.standard_normal(s) for s in SHAPES]
    grads = [[3.0 * rng.standard_normal(s) for _ in range(STEPS)] for s in SHAPES]
    return w0, grads


KWS = [dict(lr=0.05, mu=10.0, lam=1.0), dict(lr=0.02, kappa=2.0, mu=5.0, lam=0.3, momentum=0.0,
                           weight_decay=1e-2)]


@pytest.mark.parametrize("kw", KWS, ids=["strong-coupling", "no-momentum-wd"])
def test_matches_the_iteration_written_out(xp, kw):
    w0, grads = problem()
    params = [Parameter(xp.array(w)) for w in w0]
    opt = DessiLBI(params, **kw)
    history = run(opt, params, grads, range(STEPS))
    for j, p in enumerate(params):
        expected = ref_dessilbi(w0[j], grads[j], **kw)
        for t in range(STEPS):
            np.testing.assert_allclose(history[t][j], expected[t][0], rtol=1e-10, atol=1e-12)
        gamma = opt.gamma(p)
        if len(SHAPES[j]) >= 2:
            np.testing.assert_allclose(backend.asnumpy(gamma), expected[-1][1], rtol=1e-10,
                                       atol=1e-12)
        else:
            assert gamma is None


def test_the_reference_is_discriminating():
    """Some groups of Gamma are zero and some are not after the steps above: the shrinkage and
    the coupling both act, so a wrong threshold or a missing term would change the answer."""
    w0, grads = problem()
    gamma = ref_dessilbi(w0[0], grads[0], **KWS[0])[-1][1]
    zero_rows = np.all(gamma == 0, axis=1)
    assert zero_rows.any() and not zero_rows.all()


def test_group_shrink_is_the_group_lasso_prox():
    z = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    np.testing.assert_allclose(group_shrink(z, 1.0), [[2.4, 3.2], [0, 0], [0, 0]])
    # the prox minimises 1/2 ||G - z||^2 + lam ||G||: no nearby point does better
    rng = np.random.default_rng(0)
    v = rng.standard_normal((1, 5)) * 2
    best = group_shrink(v, 0.7)

    def objective(g):
        return 0.5 * np.sum((g - v) ** 2) + 0.7 * np.linalg.norm(g)
    for _ in range(50):
        assert objective(best) <= objective(best + 1e-3 * rng.standard_normal(v.shape)) + 1e-12


def test_path_brings_in_the_strong_groups_first_and_leaves_the_weak_ones_out():
    """f(W) = 1/2 ||W - T||^2 with rows of norm 4, 2, 1 and two of 0.02 (noise): the inverse
    scale space path lets the rows into Gamma in order of strength, keeps the noise rows at
    exactly zero, and Gamma's strong rows approach T."""
    rng = np.random.default_rng(0)
    directions = rng.standard_normal((5, 6))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    norms = np.array([2.0, 0.02, 4.0, 0.02, 1.0])
    target = directions * norms[:, None]
    p = Parameter(np.zeros((5, 6)))
    opt = DessiLBI([p], lr=0.01, mu=10.0, lam=1.0, momentum=0.0)
    entered = np.full(5, -1)
    for step in range(1, 1501):
        p.grad[...] = p.data - target
        opt.step()
        now_in = np.linalg.norm(opt.gamma(p), axis=1) > 0
        entered[now_in & (entered < 0)] = step
    assert entered[1] == entered[3] == -1                      # the noise rows never enter
    assert 0 < entered[2] < entered[0] < entered[4]            # strongest first
    gamma = opt.gamma(p)
    np.testing.assert_array_equal(gamma[[1, 3]], 0)
    np.testing.assert_allclose(gamma[[0, 2, 4]], target[[0, 2, 4]], atol=0.05)


def test_non_sparse_parameters_take_the_plain_sgd_step():
    w0, grads = problem()
    bias_a, bias_b = Parameter(w0[2].copy()), Parameter(w0[2].copy())
    a = run(DessiLBI([bias_a], lr=0.05), [bias_a], [grads[2]], range(STEPS))
    b = run(optim.SGD([bias_b], lr=0.05, momentum=0.9), [bias_b], [grads[2]], range(STEPS))
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-12)


def test_state_dict_round_trip_continues_identically(xp):
    w0, grads = problem(seed=2)
    params = [Parameter(xp.array(w)) for w in w0]
    straight = run(DessiLBI(params, lr=0.05, mu=10.0), params, grads, range(STEPS))
    params = [Parameter(xp.array(w)) for w in w0]
    first = DessiLBI(params, lr=0.05, mu=10.0)
    run(first, params, grads, range(3))
    buf = io.BytesIO()
    np.savez(buf, **first.state_dict())
    buf.seek(0)
    resumed_params = [Parameter(xp.array(p.data)) for p in params]
    resumed = DessiLBI(resumed_params, lr=0.05, mu=10.0)
    resumed.load_state_dict(np.load(buf))
    assert set(resumed.state[0]) == {"gamma", "z", "momentum_buffer"}
    rest = run(resumed, resumed_params, grads, range(3, STEPS))
    for t in range(3):
        for j in range(len(SHAPES)):
            np.testing.assert_array_equal(rest[t][j], straight[3 + t][j])


def test_float32_stays_float32():
    p = Parameter(np.ones((3, 2), np.float32))
    p.grad[...] = 1.0
    opt = DessiLBI([p], lr=0.05)
    opt.step()
    assert p.data.dtype == np.float32 and opt.gamma(p).dtype == np.float32


def test_registered_with_build_optimizer_and_the_train_cli():
    assert "dessilbi" in optim.OPTIMIZERS
    opt = optim.build_optimizer("dessilbi", [Parameter(np.ones((2, 2)))], lr=0.01)
    assert isinstance(opt, DessiLBI)
    assert (opt.kappa, opt.mu, opt.lam, opt.momentum) == (1.0, 0.01, 0.1, 0.9)
    from minidl.config import parse_config
    assert parse_config(["lenet5", "--optimizer", "dessilbi"]).optimizer == "dessilbi"


@pytest.mark.parametrize("kw,message", [
    (dict(lr=0.05, kappa=0), "kappa must be > 0"),
    (dict(lr=0.05, mu=-1), "mu must be > 0"),
    (dict(lr=0.05, lam=-0.1), "lam must be >= 0"),
    (dict(lr=0.05, momentum=1.0), "momentum"),
    (dict(lr=0.2, mu=10.0), "lr \\* kappa \\* mu must be < 1"),
])
def test_bad_hyper_parameters_raise(kw, message):
    with pytest.raises(ValueError, match=message):
        DessiLBI([Parameter(np.ones((2, 2)))], **kw)


def test_gamma_of_a_foreign_parameter_is_refused():
    opt = DessiLBI([Parameter(np.ones((2, 2)))], lr=0.01)
    with pytest.raises(ValueError, match="not one of"):
        opt.gamma(Parameter(np.ones((2, 2))))
