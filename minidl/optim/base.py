"""The Optimizer base class: parameters, learning rate, per-parameter state and its (de)serialisation.

Optimisers live outside the layers and keep their own state (the jax.optimizers / tinygrad
habit): a layer only fills ``param.grad``; ``step()`` reads it and updates ``param.data`` in place.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .. import _shapes

# Keys of state_dict() that are not per-parameter arrays.
_SCALAR_KEYS = ("step", "lr", "num_params")
_TYPE_KEY = "type"  # the optimiser's class name (absent in states saved before it was added)


def _as_param_list(params, owner: str) -> list:
    """A list of distinct Parameters (a shared Parameter listed twice is updated once)."""
    if hasattr(params, "parameters") and callable(params.parameters):
        raise TypeError(f"{owner}: pass model.parameters(), not the model itself")
    unique, seen = [], set()
    for p in params:
        if not (hasattr(p, "data") and hasattr(p, "grad")):
            raise TypeError(f"{owner}: expected Parameters (with .data and .grad), "
                            f"got {type(p).__name__}")
        if id(p) not in seen:
            seen.add(id(p))
            unique.append(p)
    if not unique:
        raise ValueError(f"{owner}: got an empty parameter list")
    return unique


class Optimizer:
    """Base class: ``step()`` applies ``_update`` to every parameter with ``g = grad + weight_decay * w``.

    Subclasses implement ``_update(i, p, g)`` using ``self._buffer(i, name)`` for state, and list
    the state names they may create in ``self._state_names`` (torch.optim's names).
    """

    def __init__(self, params, lr, weight_decay=0.0):
        owner = type(self).__name__
        self.params = _as_param_list(params, owner)
        self.lr = _shapes.nonnegative(lr, "lr", owner)
        self.weight_decay = _shapes.nonnegative(weight_decay, "weight_decay", owner)
        self.step_count = 0                       # t in the update rules, 1 during the first step
        self.state = [{} for _ in self.params]    # per-parameter arrays, created on first use
        self._state_names = ()

    # ------------------------------------------------------------------ updating
    def step(self) -> None:
        """Update every parameter in place from its current ``grad`` (which is left untouched)."""
        self.step_count += 1
        for i, p in enumerate(self.params):
            g = p.grad.astype(p.data.dtype, copy=False)  # may alias p.grad: never modify g in place
            if self.weight_decay:
                g = g + self.weight_decay * p.data       # L2 penalty folded into the gradient
            self._update(i, p, g)

    def _update(self, i: int, p, g) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement _update")

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (backward passes accumulate into it)."""
        for p in self.params:
            p.grad[...] = 0

    def _buffer(self, i: int, name: str):
        """State array ``name`` of parameter ``i``: zeros on first use, on the parameter's device/dtype."""
        data = self.params[i].data
        xp = backend.get_array_module(data)
        buf = self.state[i].get(name)
        if buf is None:
            buf = xp.zeros_like(data)
        elif backend.get_array_module(buf) is not xp or buf.dtype != data.dtype:
            # The model was moved (to("gpu")) or cast (astype) after this state was created.
            buf = xp.asarray(backend.to_device(buf, backend.device_of(data)), dtype=data.dtype)
        self.state[i][name] = buf
        return buf

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """A flat ``{str: numpy array or python scalar}`` dict, e.g. ``"type"``, ``"step"``,
        ``"0.exp_avg"`` (npz-ready)."""
        state = {_TYPE_KEY: type(self).__name__, "step": int(self.step_count),
                 "lr": float(self.lr), "num_params": len(self.params)}
        for i, slots in enumerate(self.state):
            for name, buf in slots.items():
                state[f"{i}.{name}"] = backend.asnumpy(buf).copy()
        return state

    def load_state_dict(self, state) -> None:
        """Restore ``state_dict()`` output (or an ``np.load``-ed npz) onto the parameters' devices."""
        owner = f"{type(self).__name__}.load_state_dict"
        state = {k: state[k] for k in state.keys()}
        missing = [k for k in _SCALAR_KEYS if k not in state]
        if missing:
            raise ValueError(f"{owner}: missing keys {missing}")
        saved_type = str(state.pop(_TYPE_KEY, type(self).__name__))
        if saved_type != type(self).__name__:
            # An SGD state has other (or no) buffers: loaded into Adam it would silently
            # restart Adam's moments at zero with SGD's step count.
            raise ValueError(f"{owner}: the state dict is of a {saved_type} optimizer, not a "
                             f"{type(self).__name__}")
        if int(state["num_params"]) != len(self.params):
            raise ValueError(f"{owner}: the state dict is for {int(state['num_params'])} parameters "
                             f"but this optimizer has {len(self.params)}")
        new_state = [{} for _ in self.params]
        for key, value in state.items():
            if key in _SCALAR_KEYS:
                continue
            index, _, name = key.partition(".")
            if not index.isdigit() or int(index) >= len(self.params) or name not in self._state_names:
                raise ValueError(f"{owner}: unexpected key {key!r} (expected per-parameter state "
                                 f"'<index>.<name>' with name in {list(self._state_names)})")
            data = self.params[int(index)].data
            value = np.asarray(backend.asnumpy(value))
            if tuple(value.shape) != tuple(data.shape):
                raise ValueError(f"{owner}: {key} has shape {tuple(value.shape)} in the state dict "
                                 f"but parameter {index} has shape {tuple(data.shape)}")
            xp = backend.get_array_module(data)
            new_state[int(index)][name] = xp.array(value, dtype=data.dtype)  # a copy: never alias d
        self.state = new_state
        self.step_count = int(state["step"])
        self.lr = float(state["lr"])

    # ------------------------------------------------------------------ display
    def _hyper(self) -> dict:
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._hyper().items())
        return f"{type(self).__name__}({args})"
