"""The loss landscape along the training trajectory (Santurkar, Tsipras, Ilyas & Madry 2018,
"How does batch normalization help optimization?", section 3.1).

At a point ``x`` with gradient ``g`` (one mini-batch, held fixed), move along the gradient to
``x_k = x - s_k g`` for a few step sizes ``s_k`` and measure there:

- the loss ``f(x_k)`` (its spread over ``k``, and over learning rates, is the landscape band);
- gradient predictiveness: ``||g - grad f(x_k)||``, how far the gradient has changed (small:
  the gradient at ``x`` predicted well where the step leads);
- effective beta-smoothness: ``max_k ||g - grad f(x_k)|| / ||x - x_k||``, the largest
  gradient change per unit of movement seen along the step (for ``f`` beta-smooth this is at
  most beta, with equality for a quadratic moved along its top eigenvector).

Vectors here are flat float64 arrays over all parameters; ``ModelObjective`` turns a model,
a loss and a batch into such a function ``f(x) -> (loss, grad)``.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import backend


def loss_band(curves) -> tuple[np.ndarray, np.ndarray]:
    """Per-step minimum and maximum over runs: curves (R, T) -> (lo (T,), hi (T,)).

    Runs of different lengths are cut to the shortest; NaN (a diverged run) is ignored
    unless every run is NaN at that step.
    """
    rows = [np.asarray(c, dtype=np.float64) for c in curves]
    if not rows:
        raise ValueError("loss_band: needs at least one curve")
    steps = min(len(r) for r in rows)
    stacked = np.stack([r[:steps] for r in rows])
    with warnings.catch_warnings():  # "All-NaN slice": NaN is then the right answer
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0)


def gradient_predictiveness(grad, probe_grads) -> np.ndarray:
    """``||grad - g_k||`` for each probe gradient: grad (P,), probe_grads (K, P) -> (K,)."""
    grad = np.asarray(grad, dtype=np.float64)
    probe_grads = np.atleast_2d(np.asarray(probe_grads, dtype=np.float64))
    if probe_grads.shape[1:] != grad.shape:
        raise ValueError(f"gradient_predictiveness: probe gradients of shape "
                         f"{probe_grads.shape[1:]} do not match the gradient's {grad.shape}")
    return np.linalg.norm(probe_grads - grad, axis=1)


def effective_beta(grad_changes, distances) -> float:
    """``max_k grad_change_k / distance_k``: the effective beta-smoothness along a step.

    grad_changes, distances: (K,) with every distance > 0.
    """
    grad_changes = np.asarray(grad_changes, dtype=np.float64)
    distances = np.asarray(distances, dtype=np.float64)
    if grad_changes.shape != distances.shape or grad_changes.size == 0:
        raise ValueError(f"effective_beta: need as many distances as gradient changes (>= 1), "
                         f"got {grad_changes.shape} and {distances.shape}")
    if np.any(distances <= 0):
        raise ValueError("effective_beta: every distance must be > 0 (a zero gradient or step "
                         "size does not move)")
    return float(np.max(grad_changes / distances))


def probe_along_gradient(f, x, step_sizes, loss=None, grad=None) -> dict:
    """Losses and gradient changes at ``x - s * grad`` for each step size ``s``.

    f: flat x (P,) -> (loss, grad (P,)); x: (P,); ``loss``/``grad`` at ``x`` when already known.
    Returns {"loss", "grad_norm", "probe_losses" (K,), "grad_changes" (K,), "beta"}; "beta"
    is NaN where the gradient is zero (no movement to divide by).
    """
    x = np.asarray(x, dtype=np.float64)
    if loss is None or grad is None:
        loss, grad = f(x)
    grad = np.asarray(grad, dtype=np.float64)
    sizes = np.asarray(step_sizes, dtype=np.float64)
    if sizes.ndim != 1 or sizes.size == 0 or np.any(sizes <= 0):
        raise ValueError(f"probe_along_gradient: step_sizes must be positive numbers, got "
                         f"{step_sizes!r}")
    probe_losses, changes = np.empty(len(sizes)), np.empty(len(sizes))
    for k, s in enumerate(sizes):
        loss_k, grad_k = f(x - s * grad)
        probe_losses[k] = loss_k
        changes[k] = gradient_predictiveness(grad, np.asarray(grad_k)[None])[0]
    grad_norm = float(np.linalg.norm(grad))
    beta = effective_beta(changes, sizes * grad_norm) if grad_norm > 0 else float("nan")
    return {"loss": float(loss), "grad_norm": grad_norm, "probe_losses": probe_losses,
            "grad_changes": changes, "beta": beta}


class ModelObjective:
    """``f(x) -> (loss, grad)`` of a model's loss on one fixed batch, over flat parameters.

    x: (P,) float64, every parameter's ``.data`` raveled in ``model.parameters()`` order.
    Evaluating ``f`` overwrites the parameters, their gradients and the buffers (BatchNorm's
    running statistics); ``save_state()`` then ``restore()`` put all three back.
    """

    def __init__(self, model, criterion, x, y):
        self.model, self.criterion, self.x, self.y = model, criterion, x, y
        self.params = model.parameters()
        self.sizes = [p.data.size for p in self.params]
        self._saved = None

    def save_state(self) -> None:
        """Remember the parameters, buffers and gradients as they are now."""
        self._saved = ({k: v.copy() for k, v in self.model.state_dict().items()},
                       [p.grad.copy() for p in self.params])

    def restore(self) -> None:
        """Put back what ``save_state()`` remembered."""
        if self._saved is None:
            raise RuntimeError("ModelObjective.restore: call save_state() first")
        state, grads = self._saved
        self.model.load_state_dict(state)
        for p, saved in zip(self.params, grads):
            p.grad[...] = saved

    def flat(self) -> np.ndarray:
        """The current parameters as one float64 vector on the host."""
        return np.concatenate([backend.asnumpy(p.data).ravel().astype(np.float64)
                               for p in self.params])

    def flat_grad(self) -> np.ndarray:
        return np.concatenate([backend.asnumpy(p.grad).ravel().astype(np.float64)
                               for p in self.params])

    def set_flat(self, x) -> None:
        start = 0
        for p, n in zip(self.params, self.sizes):
            xp = backend.get_array_module(p.data)
            chunk = xp.asarray(backend.to_device(x[start:start + n], backend.device_of(p.data)))
            p.data[...] = chunk.reshape(p.data.shape).astype(p.data.dtype)
            start += n

    def __call__(self, x):
        self.set_flat(x)
        return self.evaluate()

    def evaluate(self):
        """Loss and flat gradient at the parameters as they are now."""
        logits = self.model(self.x)
        loss = float(backend.asnumpy(self.criterion(logits, self.y)))
        self.model.zero_grad()
        self.model.backward(self.criterion.backward())
        return loss, self.flat_grad()


def landscape_step(model, criterion, optimizer, x, y, step_sizes) -> dict:
    """One training step that first probes the landscape along the batch gradient.

    x: (N, ...) a batch, y: (N,). The probes leave the model as they found it; the step is
    then taken with the gradient at the current point, exactly as training would.
    Returns {"loss", "grad_norm", "probe_loss_min", "probe_loss_max", "grad_change_min",
    "grad_change_max", "beta"}.
    """
    objective = ModelObjective(model, criterion, x, y)
    loss, grad = objective.evaluate()
    objective.save_state()  # after the forward pass: BN's running statistics include this batch
    probe = probe_along_gradient(objective, objective.flat(), step_sizes, loss, grad)
    objective.restore()  # parameters, running statistics and the gradient at the current point
    optimizer.step()
    return {"loss": probe["loss"], "grad_norm": probe["grad_norm"],
            "probe_loss_min": float(probe["probe_losses"].min()),
            "probe_loss_max": float(probe["probe_losses"].max()),
            "grad_change_min": float(probe["grad_changes"].min()),
            "grad_change_max": float(probe["grad_changes"].max()),
            "beta": probe["beta"]}
