"""Learning-rate schedules: closed forms written out here, torch.optim.lr_scheduler agreement, state."""
import io
import math
import warnings

import numpy as np
import pytest

from minidl import optim
from minidl.layers.base import Parameter

LR0 = 0.1


def make_opt(lr=LR0):
    return optim.SGD([Parameter(np.zeros(3))], lr=lr, momentum=0.9)


def trace(sched, epochs):
    """``opt.lr`` for epochs 0 .. epochs-1, stepping once per epoch; checks get_lr() agrees."""
    lrs = []
    for epoch in range(epochs):
        assert sched.last_epoch == epoch
        assert sched.get_lr() == sched.optimizer.lr
        lrs.append(sched.optimizer.lr)
        sched.step()
    return np.array(lrs)


def torch_trace(make_sched, epochs, lr=LR0):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=lr, momentum=0.9)
    sched = make_sched(torch.optim.lr_scheduler, opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()            # no grads: a no-op that keeps torch's call-order check quiet
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sched.step()
    return np.array(lrs)


def half_cosine(start, end, pct):
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * pct))


# ---------------------------------------------------------------------------- formulas
def test_constant():
    np.testing.assert_array_equal(trace(optim.ConstantLR(make_opt()), 10), np.full(10, LR0))


@pytest.mark.parametrize("step_size,gamma", [(3, 0.1), (1, 0.5), (4, 0.9)])
def test_step(step_size, gamma):
    expected = [LR0 * gamma ** (e // step_size) for e in range(12)]
    np.testing.assert_allclose(trace(optim.StepLR(make_opt(), step_size, gamma), 12), expected,
                               rtol=1e-13)


@pytest.mark.parametrize("T_max,eta_min", [(10, 0.0), (7, 1e-3)])
def test_cosine(T_max, eta_min):
    epochs = 2 * T_max + 3
    expected = [eta_min + (LR0 - eta_min) * (1 + math.cos(math.pi * e / T_max)) / 2
                for e in range(epochs)]
    lrs = trace(optim.CosineAnnealingLR(make_opt(), T_max, eta_min), epochs)
    np.testing.assert_allclose(lrs, expected, rtol=1e-13, atol=1e-16)
    assert lrs[T_max] == pytest.approx(eta_min, abs=1e-15)


@pytest.mark.parametrize("T_0,T_mult,eta_min", [(5, 1, 0.0), (3, 2, 1e-3), (2, 3, 0.0)])
def test_cosine_warm_restarts(T_0, T_mult, eta_min):
    # Written out period by period: a cosine over T_i epochs, then T_i *= T_mult.
    expected, period = [], T_0
    while len(expected) < 40:
        expected += [half_cosine(LR0, eta_min, t / period) for t in range(period)]
        period *= T_mult
    lrs = trace(optim.CosineAnnealingWarmRestarts(make_opt(), T_0, T_mult, eta_min), 40)
    np.testing.assert_allclose(lrs, expected[:40], rtol=1e-13)
    restarts = [e for e in range(1, 40) if lrs[e] > lrs[e - 1]]
    first = [T_0 * sum(T_mult ** k for k in range(n)) for n in range(1, 40)]
    assert restarts == [e for e in first if e < 40]


@pytest.mark.parametrize("total,pct_start", [(20, 0.3), (10, 0.25), (30, 0.5)])
def test_onecycle(total, pct_start):
    max_lr, div, final_div = 0.4, 25.0, 1e4
    peak = pct_start * total - 1               # epoch of max_lr (need not be an integer)
    start, end = max_lr / div, max_lr / div / final_div
    expected = [half_cosine(start, max_lr, e / peak) if e <= peak
                else half_cosine(max_lr, end, (e - peak) / (total - 1 - peak))
                for e in range(total)]
    sched = optim.OneCycleLR(make_opt(), max_lr, total, pct_start, div, final_div)
    lrs = trace(sched, total + 3)
    np.testing.assert_allclose(lrs[:total], expected, rtol=1e-13)
    assert lrs[0] == pytest.approx(start) and lrs[total - 1] == pytest.approx(end)
    np.testing.assert_allclose(lrs[total:], end)   # past the end: stays at the minimum
    assert lrs.max() <= max_lr


def test_onecycle_empty_warmup_phase():
    """pct_start * total == 1 puts the peak at epoch 0 (torch divides by zero there)."""
    lrs = trace(optim.OneCycleLR(make_opt(), max_lr=1.0, total_epochs=10, pct_start=0.1), 10)
    assert lrs[0] == 1.0 and np.all(np.diff(lrs) < 0)


# ---------------------------------------------------------------------------- torch
TORCH_CASES = [
    ("step", lambda o: optim.StepLR(o, 3, 0.5), lambda S, o: S.StepLR(o, 3, 0.5), 15),
    ("cosine", lambda o: optim.CosineAnnealingLR(o, 10, 1e-3),
     lambda S, o: S.CosineAnnealingLR(o, 10, 1e-3), 25),
    ("restarts-1", lambda o: optim.CosineAnnealingWarmRestarts(o, 4, 1, 1e-3),
     lambda S, o: S.CosineAnnealingWarmRestarts(o, 4, 1, 1e-3), 20),
    ("restarts-2", lambda o: optim.CosineAnnealingWarmRestarts(o, 3, 2),
     lambda S, o: S.CosineAnnealingWarmRestarts(o, 3, 2), 30),
    ("onecycle-20", lambda o: optim.OneCycleLR(o, 0.5, 20),
     lambda S, o: S.OneCycleLR(o, 0.5, total_steps=20, cycle_momentum=False), 20),
    ("onecycle-7", lambda o: optim.OneCycleLR(o, 0.5, 7, pct_start=0.4, div_factor=10,
                                              final_div_factor=100),
     lambda S, o: S.OneCycleLR(o, 0.5, total_steps=7, pct_start=0.4, div_factor=10,
                               final_div_factor=100, cycle_momentum=False), 7),
]


@pytest.mark.parametrize("ours,theirs,epochs", [c[1:] for c in TORCH_CASES],
                         ids=[c[0] for c in TORCH_CASES])
def test_matches_torch(ours, theirs, epochs):
    expected = torch_trace(theirs, epochs)
    np.testing.assert_allclose(trace(ours(make_opt()), epochs), expected, rtol=1e-10, atol=1e-15)


# ---------------------------------------------------------------------------- state
SCHEDULE_MAKERS = {
    "constant": lambda o: optim.ConstantLR(o),
    "step": lambda o: optim.StepLR(o, 2, 0.5),
    "cosine": lambda o: optim.CosineAnnealingLR(o, 9, 1e-4),
    "restarts": lambda o: optim.CosineAnnealingWarmRestarts(o, 2, 2, 1e-4),
    "onecycle": lambda o: optim.OneCycleLR(o, 0.3, 10),
}


@pytest.mark.parametrize("name", list(SCHEDULE_MAKERS))
def test_state_dict_round_trip(name):
    make = SCHEDULE_MAKERS[name]
    straight = trace(make(make_opt()), 10)
    first = make(make_opt())
    trace(first, 4)
    state = first.state_dict()
    assert all(isinstance(v, (int, float)) for v in state.values())
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    opt = make_opt()
    resumed = make(opt)
    resumed.load_state_dict(np.load(buf))
    assert resumed.last_epoch == 4 and opt.lr == straight[4]
    lrs = []
    for _ in range(6):
        lrs.append(opt.lr)
        resumed.step()
    np.testing.assert_array_equal(lrs, straight[4:])


def test_load_state_dict_of_another_schedule_raises():
    state = optim.StepLR(make_opt(), 2).state_dict()
    with pytest.raises(ValueError, match=r"CosineAnnealingLR.load_state_dict.*T_max.*step_size"):
        optim.CosineAnnealingLR(make_opt(), 5).load_state_dict(state)


def test_schedule_sets_lr_at_construction_and_step_returns_it():
    opt = make_opt()
    sched = optim.OneCycleLR(opt, max_lr=1.0, total_epochs=10, div_factor=20)
    assert opt.lr == pytest.approx(0.05)
    assert sched.step() == opt.lr == sched.get_lr()


# ---------------------------------------------------------------------------- validation
BAD = [
    (lambda o: optim.StepLR(o, 0), "StepLR: step_size"),
    (lambda o: optim.StepLR(o, 2.5), "StepLR: step_size"),
    (lambda o: optim.StepLR(o, 2, gamma=-0.1), "StepLR: gamma"),
    (lambda o: optim.CosineAnnealingLR(o, 0), "CosineAnnealingLR: T_max"),
    (lambda o: optim.CosineAnnealingLR(o, 5, eta_min=-1.0), "CosineAnnealingLR: eta_min"),
    (lambda o: optim.CosineAnnealingWarmRestarts(o, 0), "CosineAnnealingWarmRestarts: T_0"),
    (lambda o: optim.CosineAnnealingWarmRestarts(o, 2, T_mult=0), "T_mult"),
    (lambda o: optim.CosineAnnealingWarmRestarts(o, 2, T_mult=1.5), "T_mult"),
    (lambda o: optim.OneCycleLR(o, 0.1, 0), "OneCycleLR: total_epochs"),
    (lambda o: optim.OneCycleLR(o, -0.1, 10), "OneCycleLR: max_lr"),
    (lambda o: optim.OneCycleLR(o, 0.1, 10, pct_start=1.5), "OneCycleLR: pct_start"),
    (lambda o: optim.OneCycleLR(o, 0.1, 10, div_factor=0), "OneCycleLR: div_factor"),
    (lambda o: optim.build_schedule("cosine", o, epochs=0), "epochs"),
    (lambda o: optim.build_schedule("cosine", o, epochs=5, min_lr=-1.0), "min_lr"),
]


@pytest.mark.parametrize("build,message", BAD, ids=[m for _, m in BAD])
def test_bad_hyper_parameters_raise(build, message):
    with pytest.raises(ValueError, match=message):
        build(make_opt())


# ---------------------------------------------------------------------------- factory
@pytest.mark.parametrize("name,cls", [
    ("constant", optim.ConstantLR), ("step", optim.StepLR), ("cosine", optim.CosineAnnealingLR),
    ("cosine_restarts", optim.CosineAnnealingWarmRestarts), ("onecycle", optim.OneCycleLR),
])
def test_build_schedule(name, cls):
    epochs, min_lr = 30, 1e-4
    sched = optim.build_schedule(name, make_opt(), epochs, min_lr)
    assert type(sched) is cls
    lrs = trace(sched, epochs)
    assert np.all(lrs > 0) and lrs.max() <= LR0 * (1 + 1e-12)
    if name in ("step", "cosine", "cosine_restarts", "onecycle"):
        assert lrs[-1] < 0.1 * LR0              # the run ends well below its initial/peak rate
    if name == "onecycle":
        assert lrs[-1] == pytest.approx(min_lr) and lrs.max() == pytest.approx(LR0)
    assert set(optim.SCHEDULES) == {"constant", "step", "cosine", "cosine_restarts", "onecycle"}


@pytest.mark.parametrize("epochs,periods", [(7, 1), (10, 2), (15, 3), (30, 3), (100, 4), (199, 1)])
def test_build_cosine_restarts_periods_tile_the_run(epochs, periods):
    sched = optim.build_schedule("cosine_restarts", make_opt(), epochs, 0.0)
    lrs = trace(sched, epochs)
    restarts = [e for e in range(1, epochs) if lrs[e] >= lrs[e - 1]]
    assert restarts == [k * epochs // periods for k in range(1, periods)]
    assert sched.lr_at(epochs) == LR0          # the run ends exactly where a period would restart


def test_build_schedule_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"unknown schedule 'linear'.*'constant'.*'onecycle'"):
        optim.build_schedule("linear", make_opt(), 10, 0.0)


@pytest.mark.parametrize("name", optim.SCHEDULES)
def test_build_schedule_per_batch_spans_epochs_times_batches(name):
    """steps_per_epoch B: the schedule stepped after every batch is the per-epoch schedule of
    a run of epochs x B epochs (so one-cycle per batch is torch's OneCycleLR(total_steps))."""
    epochs, batches = 4, 5
    per_batch = trace(optim.build_schedule(name, make_opt(), epochs, 1e-4,
                                           steps_per_epoch=batches), epochs * batches)
    long_run = trace(optim.build_schedule(name, make_opt(), epochs * batches, 1e-4),
                     epochs * batches)
    np.testing.assert_array_equal(per_batch, long_run)
    if name not in ("constant", "step"):  # step's first drop is after (4 x 5) // 3 = 6 steps
        assert len(set(per_batch[:batches])) > 1  # it moves within the first epoch


def test_build_schedule_per_batch_matches_torch_onecycle_total_steps():
    expected = torch_trace(lambda s, o: s.OneCycleLR(o, max_lr=LR0, total_steps=12,
                                                     cycle_momentum=False), 12)
    ours = trace(optim.build_schedule("onecycle", make_opt(), 3, 0.0, steps_per_epoch=4), 12)
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


def test_build_schedule_refuses_bad_steps_per_epoch():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        optim.build_schedule("cosine", make_opt(), 10, 0.0, steps_per_epoch=0)
