"""Learning-rate schedules: closed-form ``lr_at(epoch)`` written into ``opt.lr``, stepped once per epoch.

Usage: build the schedule right after the optimiser (this sets the epoch-0 rate), train an epoch,
call ``sched.step()``, repeat. Values follow torch.optim.lr_scheduler where the two coincide.
A schedule can as well be stepped after every batch: its "epochs" are then steps, and
``build_schedule(..., steps_per_epoch=B)`` sizes it for ``epochs * B`` of them (torch's
OneCycleLR with ``total_steps``, the way the 1cycle and SfNet papers use it).
"""
from __future__ import annotations

import math
import numbers

from .. import _shapes


def _cosine(start: float, end: float, pct: float) -> float:
    """Half a cosine from ``start`` (pct = 0) to ``end`` (pct = 1)."""
    return end + (start - end) * (1 + math.cos(math.pi * pct)) / 2


class LRScheduler:
    """Base class: ``lr_at(epoch)`` is the rate for epoch ``epoch`` (0-based); ``step()`` advances one epoch.

    Subclasses set their hyper-parameters (named in ``_hyper_names``) before calling
    ``super().__init__(opt)``, which records ``base_lr = opt.lr`` and applies epoch 0.
    """

    _hyper_names: tuple = ()

    def __init__(self, opt):
        if not hasattr(opt, "lr"):
            raise TypeError(f"{type(self).__name__}: expected an optimizer with an .lr attribute, "
                            f"got {type(opt).__name__}")
        self.optimizer = opt
        self.base_lr = _shapes.nonnegative(opt.lr, "optimizer lr", type(self).__name__)
        self.last_epoch = 0
        self.optimizer.lr = self.get_lr()

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError(f"{type(self).__name__} does not implement lr_at")

    def get_lr(self) -> float:
        """The learning rate of the current epoch ``last_epoch``."""
        return float(self.lr_at(self.last_epoch))

    def step(self) -> float:
        """Advance one epoch, write the new rate into the optimiser and return it."""
        self.last_epoch += 1
        self.optimizer.lr = self.get_lr()
        return self.optimizer.lr

    def state_dict(self) -> dict:
        """Flat ``{str: python scalar}``: ``last_epoch``, ``base_lr`` and the hyper-parameters."""
        state = {"last_epoch": int(self.last_epoch), "base_lr": float(self.base_lr)}
        state.update({name: getattr(self, name) for name in self._hyper_names})
        return state

    def load_state_dict(self, state) -> None:
        """Restore ``state_dict()`` output (values may be 0-d arrays from an npz) and reapply the rate."""
        expected = ("last_epoch", "base_lr") + self._hyper_names
        keys = list(state.keys())
        missing = [k for k in expected if k not in keys]
        unexpected = [k for k in keys if k not in expected]
        if missing or unexpected:
            raise ValueError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                             f"unexpected keys {unexpected}")
        for name in expected:
            current = getattr(self, name)
            cast = int if isinstance(current, numbers.Integral) else float
            setattr(self, name, cast(state[name]))
        self.optimizer.lr = self.get_lr()

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._hyper_names)
        return f"{type(self).__name__}({args})"


class ConstantLR(LRScheduler):
    """The optimiser's initial rate at every epoch (a baseline with the schedule interface)."""

    def lr_at(self, epoch):
        return self.base_lr


class StepLR(LRScheduler):
    """``lr0 * gamma ** (epoch // step_size)``: decay by ``gamma`` every ``step_size`` epochs."""

    _hyper_names = ("step_size", "gamma")

    def __init__(self, opt, step_size, gamma=0.1):
        self.step_size = _shapes.positive_int(step_size, "step_size", "StepLR")
        self.gamma = _shapes.positive(gamma, "gamma", "StepLR")
        super().__init__(opt)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """``eta_min + (lr0 - eta_min) * (1 + cos(pi * epoch / T_max)) / 2`` (SGDR without restarts).

    Loshchilov & Hutter 2017. Past ``T_max`` the cosine continues (rises again), as in torch.
    """

    _hyper_names = ("T_max", "eta_min")

    def __init__(self, opt, T_max, eta_min=0.0):
        self.T_max = _shapes.positive_int(T_max, "T_max", "CosineAnnealingLR")
        self.eta_min = _shapes.nonnegative(eta_min, "eta_min", "CosineAnnealingLR")
        super().__init__(opt)

    def lr_at(self, epoch):
        return _cosine(self.base_lr, self.eta_min, epoch / self.T_max)


class CosineAnnealingWarmRestarts(LRScheduler):
    """SGDR (Loshchilov & Hutter 2017): cosine from lr0 to ``eta_min`` over ``T_i`` epochs, then restart.

    The first period is ``T_0`` epochs and each next one ``T_mult`` times longer.
    """

    _hyper_names = ("T_0", "T_mult", "eta_min")

    def __init__(self, opt, T_0, T_mult=1, eta_min=0.0):
        owner = "CosineAnnealingWarmRestarts"
        self.T_0 = _shapes.positive_int(T_0, "T_0", owner)
        self.T_mult = _shapes.positive_int(T_mult, "T_mult", owner)
        self.eta_min = _shapes.nonnegative(eta_min, "eta_min", owner)
        super().__init__(opt)

    def lr_at(self, epoch):
        t_cur, t_i = epoch, self.T_0
        if self.T_mult == 1:
            t_cur = epoch % self.T_0
        else:
            while t_cur >= t_i:  # one iteration per restart: O(log epoch)
                t_cur -= t_i
                t_i *= self.T_mult
        return _cosine(self.base_lr, self.eta_min, t_cur / t_i)


class OneCycleLR(LRScheduler):
    """1cycle (Smith 2018; Smith & Topin 2019): cosine up from ``max_lr / div_factor`` to ``max_lr``.

    Then cosine down to ``max_lr / (div_factor * final_div_factor)``; the peak is at epoch
    ``pct_start * total_epochs - 1``, the minimum at ``total_epochs - 1`` (torch's OneCycleLR with one
    step per epoch, no momentum cycling). Epochs past the end stay at the minimum. The optimiser's
    own initial rate is ignored.
    """

    _hyper_names = ("max_lr", "total_epochs", "pct_start", "div_factor", "final_div_factor")

    def __init__(self, opt, max_lr, total_epochs, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4):
        self.max_lr = _shapes.nonnegative(max_lr, "max_lr", "OneCycleLR")
        self.total_epochs = _shapes.positive_int(total_epochs, "total_epochs", "OneCycleLR")
        self.pct_start = _shapes.unit_interval(pct_start, "pct_start", "OneCycleLR", closed=True)
        self.div_factor = _shapes.positive(div_factor, "div_factor", "OneCycleLR")
        self.final_div_factor = _shapes.positive(final_div_factor, "final_div_factor", "OneCycleLR")
        super().__init__(opt)

    def lr_at(self, epoch):
        initial = self.max_lr / self.div_factor
        peak, last = self.pct_start * self.total_epochs - 1, self.total_epochs - 1
        if epoch <= peak:
            start, end, lr_from, lr_to = 0.0, peak, initial, self.max_lr
        else:
            start, end, lr_from, lr_to = peak, last, self.max_lr, initial / self.final_div_factor
        # torch divides by zero on an empty phase; there the phase is already complete.
        pct = (epoch - start) / (end - start) if end > start else 1.0
        return _cosine(lr_from, lr_to, min(pct, 1.0))


# name -> builder(opt, epochs, min_lr) with defaults derived from the run length.
def _step(opt, epochs, min_lr):
    return StepLR(opt, step_size=max(1, epochs // 3), gamma=0.1)


def _cosine_restarts(opt, epochs, min_lr):
    # SGDR with equal periods (T_mult = 1) that tile the run exactly, so every period, the last
    # included, anneals to min_lr: the most periods (up to 4) of at least 5 epochs that divide
    # ``epochs``; a single period (plain cosine) when none does.
    periods = next((n for n in (4, 3, 2) if epochs % n == 0 and epochs // n >= 5), 1)
    return CosineAnnealingWarmRestarts(opt, T_0=epochs // periods, T_mult=1, eta_min=min_lr)


def _onecycle(opt, epochs, min_lr):
    max_lr = opt.lr
    div_factor = 25.0
    # End at min_lr when it is given (and positive), else torch's default final_div_factor.
    final_div = max_lr / (div_factor * min_lr) if min_lr > 0 and max_lr > 0 else 1e4
    return OneCycleLR(opt, max_lr=max_lr, total_epochs=epochs, div_factor=div_factor,
                      final_div_factor=final_div)


_REGISTRY = {
    "constant": lambda opt, epochs, min_lr: ConstantLR(opt),
    "step": _step,
    "cosine": lambda opt, epochs, min_lr: CosineAnnealingLR(opt, T_max=epochs, eta_min=min_lr),
    "cosine_restarts": _cosine_restarts,
    "onecycle": _onecycle,
}
SCHEDULES = tuple(_REGISTRY)


def build_schedule(name: str, opt, epochs: int, min_lr: float = 0.0,
                   steps_per_epoch: int = 1) -> LRScheduler:
    """The schedule called ``name`` (one of ``SCHEDULES``) for a run of ``epochs`` epochs.

    ``opt.lr`` is the initial (for "onecycle": the peak) rate; ``min_lr`` the floor of the cosine
    schedules and the final rate of "onecycle"; "step" divides by 10 every ``epochs // 3`` epochs;
    "cosine_restarts" uses up to 4 equal periods that end exactly with the run. With
    ``steps_per_epoch`` B > 1 the schedule is meant to be stepped after every batch: it spans
    ``epochs * B`` steps, and the periods above are counted in steps.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown schedule {name!r}; expected one of {list(SCHEDULES)}")
    who = f"build_schedule({name!r})"
    epochs = _shapes.positive_int(epochs, "epochs", who)
    steps_per_epoch = _shapes.positive_int(steps_per_epoch, "steps_per_epoch", who)
    min_lr = _shapes.nonnegative(min_lr, "min_lr", who)
    return _REGISTRY[name](opt, epochs * steps_per_epoch, min_lr)
