"""Optimisers: textbook update rules written out here, torch.optim agreement, state, validation."""
import io
import math

import numpy as np
import pytest

from minidl import backend, optim
from minidl.layers.base import Layer, Parameter
from tests.optim_helpers import run

STEPS = 6
SHAPES = ((3, 4), (5,))
# Gradient magnitudes that rise and fall, so AMSGrad's running maximum differs from Adam's v.
GRAD_SCALES = (3.0, 0.1, 2.0, 0.05, 1.0, 0.01)


# ---------------------------------------------------------------------------- references
# Each takes the initial weights and the list of gradients and returns the weights after each step.
def ref_sgd(w, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    out, b = [], None
    for g in grads:
        g = g + weight_decay * w
        if momentum:
            b = g if b is None else momentum * b + g
            g = g + momentum * b if nesterov else b
        w = w - lr * g
        out.append(w)
    return out


def ref_adagrad(w, grads, lr=1e-2, eps=1e-10, weight_decay=0.0):
    out, s = [], 0.0
    for g in grads:
        g = g + weight_decay * w
        s = s + g ** 2
        w = w - lr * g / (np.sqrt(s) + eps)
        out.append(w)
    return out


def ref_rmsprop(w, grads, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
    out, v, b = [], 0.0, 0.0
    for g in grads:
        g = g + weight_decay * w
        v = alpha * v + (1 - alpha) * g ** 2
        step = g / (np.sqrt(v) + eps)
        if momentum:
            b = momentum * b + step
            step = b
        w = w - lr * step
        out.append(w)
    return out


def ref_adam(w, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
    b1, b2 = betas
    out, m, v, v_max = [], 0.0, 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        v_max = np.maximum(v_max, v)
        v_used = v_max if amsgrad else v
        m_hat = m / (1 - b1 ** t)
        v_hat = v_used / (1 - b2 ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(w)
    return out


RULES = {  # name -> (minidl class, torch.optim class name, reference)
    "sgd": (optim.SGD, "SGD", ref_sgd),
    "adagrad": (optim.AdaGrad, "Adagrad", ref_adagrad),
    "rmsprop": (optim.RMSProp, "RMSprop", ref_rmsprop),
    "adam": (optim.Adam, "Adam", ref_adam),
}

CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "weight_decay": 0.05}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.1, "momentum": 0.8, "weight_decay": 0.05}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("sgd", {"lr": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05}),
    ("adagrad", {"lr": 0.1}),
    ("adagrad", {"lr": 0.1, "eps": 1e-6, "weight_decay": 0.05}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.05}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.9}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.05}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.05}),
    ("adam", {"lr": 0.01, "amsgrad": True}),
    ("adam", {"lr": 0.01, "betas": (0.9, 0.9), "amsgrad": True, "weight_decay": 0.05}),
]
IDS = [f"{name}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for name, kw in CASES]


def problem(seed=0, dtype=np.float64):
    """Initial weights and STEPS gradients per parameter (numpy, float64 by default)."""
    rng = np.random.default_rng(seed)
    w0 = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[(scale * rng.standard_normal(s)).astype(dtype) for scale in GRAD_SCALES]
             for s in SHAPES]
    return w0, grads


def make_params(w0, xp=np):
    return [Parameter(xp.array(w)) for w in w0]


# ---------------------------------------------------------------------------- update rules
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_matches_textbook_formula(xp, name, kw):
    cls, _, ref = RULES[name]
    w0, grads = problem()
    params = make_params(w0, xp)
    history = run(cls(params, **kw), params, grads, range(STEPS))
    for j in range(len(SHAPES)):
        expected = ref(w0[j], grads[j], **kw)
        for t in range(STEPS):
            np.testing.assert_allclose(history[t][j], expected[t], rtol=1e-10, atol=1e-12,
                                       err_msg=f"parameter {j}, step {t + 1}")


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_matches_torch(name, kw):
    torch = pytest.importorskip("torch")
    cls, torch_name, _ = RULES[name]
    w0, grads = problem(seed=1)
    params = make_params(w0)
    history = run(cls(params, **kw), params, grads, range(STEPS))
    tparams = [torch.tensor(w, requires_grad=True) for w in w0]
    topt = getattr(torch.optim, torch_name)(tparams, **kw)
    for t in range(STEPS):
        for p, g in zip(tparams, grads):
            p.grad = torch.tensor(g[t])
        topt.step()
        for j, p in enumerate(tparams):
            np.testing.assert_allclose(history[t][j], p.detach().numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=f"parameter {j}, step {t + 1}")


def test_amsgrad_case_is_discriminating():
    """The gradients make AMSGrad differ from Adam far beyond the tests' tolerance (1e-10)."""
    w0, grads = problem()
    for betas, gap in (((0.9, 0.999), 1e-6), ((0.9, 0.9), 1e-3)):
        adam = ref_adam(w0[0], grads[0], lr=0.01, betas=betas)
        ams = ref_adam(w0[0], grads[0], lr=0.01, betas=betas, amsgrad=True)
        assert np.abs(adam[-1] - ams[-1]).max() > gap


@pytest.mark.parametrize("name,kw", CASES[::3], ids=IDS[::3])
def test_float32_stays_float32(name, kw):
    cls = RULES[name][0]
    w0, grads = problem(dtype=np.float32)
    params = make_params(w0)
    opt = cls(params, **kw)
    history = run(opt, params, grads, range(STEPS))
    assert all(p.data.dtype == np.float32 for p in params)
    assert all(buf.dtype == np.float32 for slots in opt.state for buf in slots.values())
    expected = RULES[name][2](w0[0].astype(np.float64), [g.astype(np.float64) for g in grads[0]],
                              **kw)
    np.testing.assert_allclose(history[-1][0], expected[-1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_grad_untouched_and_data_updated_in_place(name, kw):
    cls = RULES[name][0]
    w0, grads = problem()
    params = make_params(w0)
    data_ids = [id(p.data) for p in params]
    opt = cls(params, **kw)
    for t in range(2):
        for p, g in zip(params, grads):
            p.grad[...] = g[t]
        grad_objects = [p.grad for p in params]
        opt.step()
        for p, g, obj in zip(params, grads, grad_objects):
            assert p.grad is obj
            np.testing.assert_array_equal(p.grad, g[t])
    assert [id(p.data) for p in params] == data_ids
    assert not np.allclose(params[0].data, w0[0])


def test_zero_grad_and_lr_attribute():
    w0, grads = problem()
    params = make_params(w0)
    opt = optim.SGD(params, lr=0.1)
    run(opt, params, grads, [0])
    opt.zero_grad()
    assert all(not p.grad.any() for p in params)
    before = params[0].data.copy()
    params[0].grad[...] = 1.0
    opt.lr = 0.25                      # schedules write this attribute
    opt.step()
    np.testing.assert_allclose(params[0].data, before - 0.25)


def test_shared_parameter_updated_once():
    p = Parameter(np.ones(3))
    p.grad[...] = 1.0
    opt = optim.SGD([p, p], lr=0.5)
    opt.step()
    np.testing.assert_allclose(p.data, 0.5)


def test_state_follows_a_cast_parameter():
    """After model.astype(...) the state is recast to the parameter's new dtype."""
    p = Parameter(np.ones(4))
    p.grad[...] = 0.5
    opt = optim.Adam([p], lr=0.1)
    opt.step()
    p.data, p.grad = p.data.astype(np.float32), p.grad.astype(np.float32)
    opt.step()
    assert p.data.dtype == np.float32
    assert all(buf.dtype == np.float32 for buf in opt.state[0].values())


# ---------------------------------------------------------------------------- state_dict
def _through_npz(state):
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    return np.load(buf)


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_state_dict_round_trip_continues_identically(xp, name, kw):
    cls = RULES[name][0]
    w0, grads = problem(seed=2)
    params = make_params(w0, xp)
    straight = run(cls(params, **kw), params, grads, range(STEPS))

    params = make_params(w0, xp)
    first = cls(params, **kw)
    run(first, params, grads, range(3))
    state = first.state_dict()
    assert all(isinstance(v, (np.ndarray, int, float)) for k, v in state.items() if k != "type")
    assert state["step"] == 3 and state["type"] == cls.__name__
    # A fresh process: new parameters from a checkpoint, a new optimiser, the state from an npz.
    resumed_params = [Parameter(xp.array(p.data)) for p in params]
    resumed = cls(resumed_params, **kw)
    resumed.load_state_dict(_through_npz(state))
    for slots, before in zip(resumed.state, first.state):
        assert slots.keys() == before.keys()
        assert all(backend.get_array_module(b) is xp for b in slots.values())
    rest = run(resumed, resumed_params, grads, range(3, STEPS))
    for t in range(3):
        for j in range(len(SHAPES)):
            np.testing.assert_array_equal(rest[t][j], straight[3 + t][j])


def _adam_after_one_step(**kw):
    """An Adam optimiser after one step, with its parameters and the gradient sequence."""
    w0, grads = problem()
    params = make_params(w0)
    opt = optim.Adam(params, **kw)
    run(opt, params, grads, [0])
    return opt, params, grads


def test_state_dict_is_a_copy():
    opt, params, grads = _adam_after_one_step()
    state = opt.state_dict()
    saved = state["0.exp_avg"].copy()
    run(opt, params, grads, [1])
    np.testing.assert_array_equal(state["0.exp_avg"], saved)
    opt.load_state_dict(state)
    run(opt, params, grads, [2])
    np.testing.assert_array_equal(state["0.exp_avg"], saved)   # loading does not alias it


def test_state_dict_keys_are_torch_names():
    opt, _, _ = _adam_after_one_step(amsgrad=True)
    assert set(opt.state_dict()) == {"type", "step", "lr", "num_params"} | {
        f"{i}.{n}" for i in range(2) for n in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")}


def _trained_adam_state():
    return _adam_after_one_step()[0].state_dict()


def test_load_state_dict_wrong_number_of_params():
    state = _trained_adam_state()
    with pytest.raises(ValueError, match=r"Adam.load_state_dict.*2 parameters.*has 1"):
        optim.Adam([Parameter(np.zeros((3, 4)))]).load_state_dict(state)


def test_load_state_dict_wrong_shape():
    state = _trained_adam_state()
    params = [Parameter(np.zeros((4, 3))), Parameter(np.zeros(5))]
    with pytest.raises(ValueError, match=r"0.exp_avg.*\(3, 4\).*\(4, 3\)"):
        optim.Adam(params).load_state_dict(state)


def test_load_state_dict_other_optimizer():
    state = _trained_adam_state()
    w0, _ = problem()
    with pytest.raises(ValueError, match=r"SGD.load_state_dict: the state dict is of a Adam"):
        optim.SGD(make_params(w0), lr=0.1, momentum=0.9).load_state_dict(state)
    untyped = {k: v for k, v in state.items() if k != "type"}   # saved by an older minidl
    with pytest.raises(ValueError, match=r"SGD.load_state_dict: unexpected key '0.exp_avg'"):
        optim.SGD(make_params(w0), lr=0.1, momentum=0.9).load_state_dict(untyped)


def test_a_stateless_sgd_state_is_not_taken_by_adam():
    # plain SGD keeps no buffers: only the type tells its state from a fresh Adam's
    w0, _ = problem()
    sgd = optim.SGD(make_params(w0), lr=0.1)
    sgd.step()
    with pytest.raises(ValueError, match=r"Adam.load_state_dict: the state dict is of a SGD"):
        optim.Adam(make_params(w0)).load_state_dict(_through_npz(sgd.state_dict()))


def test_load_state_dict_missing_keys():
    w0, _ = problem()
    with pytest.raises(ValueError, match="missing keys"):
        optim.SGD(make_params(w0), lr=0.1).load_state_dict({"lr": 0.1})


# ---------------------------------------------------------------------------- validation
BAD = [
    (lambda ps: optim.SGD(ps, lr=-0.1), "SGD: lr"),
    (lambda ps: optim.SGD(ps, lr=math.nan), "SGD: lr"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=1.0), "SGD: momentum"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=-0.1), "SGD: momentum"),
    (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), "SGD: nesterov"),
    (lambda ps: optim.SGD(ps, lr=0.1, weight_decay=-1e-4), "SGD: weight_decay"),
    (lambda ps: optim.AdaGrad(ps, lr=-1.0), "AdaGrad: lr"),
    (lambda ps: optim.AdaGrad(ps, eps=-1e-10), "AdaGrad: eps"),
    (lambda ps: optim.RMSProp(ps, alpha=1.0), "RMSProp: alpha"),
    (lambda ps: optim.RMSProp(ps, momentum=1.5), "RMSProp: momentum"),
    (lambda ps: optim.Adam(ps, betas=(1.0, 0.999)), r"Adam: betas\[0\]"),
    (lambda ps: optim.Adam(ps, betas=(0.9, 1.0)), r"Adam: betas\[1\]"),
    (lambda ps: optim.Adam(ps, betas=(-0.1, 0.999)), r"Adam: betas\[0\]"),
    (lambda ps: optim.Adam(ps, betas=0.9), "Adam: betas"),
    (lambda ps: optim.Adam(ps, lr=-1e-3), "Adam: lr"),
    (lambda ps: optim.Adam([]), "Adam: got an empty parameter list"),
]


@pytest.mark.parametrize("build,message", BAD, ids=[m for _, m in BAD])
def test_bad_hyper_parameters_raise(build, message):
    with pytest.raises(ValueError, match=message):
        build(make_params(problem()[0]))


def test_model_instead_of_parameters_raises():
    with pytest.raises(TypeError, match="model.parameters()"):
        optim.SGD(Layer(), lr=0.1)


# ---------------------------------------------------------------------------- factory
@pytest.mark.parametrize("name,cls,attrs", [
    ("sgd", optim.SGD, {"momentum": 0.0, "nesterov": False}),
    ("momentum", optim.SGD, {"momentum": 0.9, "nesterov": False}),
    ("nesterov", optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ("adagrad", optim.AdaGrad, {"eps": 1e-10}),
    ("rmsprop", optim.RMSProp, {"alpha": 0.99, "momentum": 0.0}),
    ("adam", optim.Adam, {"betas": (0.9, 0.999), "amsgrad": False}),
    ("amsgrad", optim.Adam, {"amsgrad": True}),
])
def test_build_optimizer(name, cls, attrs):
    opt = optim.build_optimizer(name, make_params(problem()[0]), lr=0.05, weight_decay=1e-4)
    assert type(opt) is cls and opt.lr == 0.05 and opt.weight_decay == 1e-4
    for key, value in attrs.items():
        assert getattr(opt, key) == value
    # the built-in rules (further optimisers, e.g. dessilbi, register themselves beside them)
    assert {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam",
            "amsgrad"} <= set(optim.OPTIMIZERS)


def test_build_optimizer_keywords_override_defaults():
    opt = optim.build_optimizer("momentum", make_params(problem()[0]), lr=0.1, momentum=0.5)
    assert opt.momentum == 0.5


def test_build_optimizer_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamw'.*'sgd'.*'amsgrad'"):
        optim.build_optimizer("adamw", make_params(problem()[0]), lr=0.1)


def test_register_optimizer_refuses_taking_over_a_name():
    from minidl.optim import optimizers

    optimizers.register_optimizer("dessilbi", optim.DessiLBI)  # the same class again: no-op
    with pytest.raises(ValueError, match="already SGD"):
        optimizers.register_optimizer("sgd", optim.Adam)
    assert "dessilbi" in optimizers.OPTIMIZERS
    assert type(optimizers.build_optimizer("sgd", [Parameter(np.zeros(2))], 0.1)) is optim.SGD
