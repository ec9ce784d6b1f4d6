"""Loss functions: ``loss = crit(logits, targets)``, then ``dlogits = crit.backward()``."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import backend


def log_softmax(logits):
    """log(softmax(logits)) along the last axis, stable for any finite logits.

    Subtracting the row maximum before ``exp`` (the log-sum-exp trick) keeps every exponent
    <= 0, so logits like 1e4 neither overflow nor give ``inf - inf``. logits: (N, C) -> (N, C).
    """
    xp = backend.get_array_module(logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


class CrossEntropyCache(NamedTuple):
    """What ``softmax_cross_entropy_forward`` keeps for the backward.

    probs: (N, C) softmax of the logits, their dtype and device.
    targets: (N,) the class indices, out-of-range ones replaced by 0 (so indexing stays safe).
    targets_ok: 0-d bool on the logits' device: every target lies in [0, C).
    """

    probs: object
    targets: object
    targets_ok: object


def softmax_cross_entropy_forward(logits, targets):
    """Mean negative log-likelihood of the targets under softmax(logits).

    logits: (N, C) float, targets: (N,) int -> (loss: 0-d, CrossEntropyCache). A target
    outside [0, C) makes the loss NaN rather than a finite wrong number (CuPy would wrap such
    an index around), and the check needs no device->host read: see ``CrossEntropyLoss``.
    """
    xp = backend.get_array_module(logits)
    N, C = logits.shape
    in_range = (targets >= 0) & (targets < C)
    targets_ok = in_range.all()
    safe = targets * in_range  # an out-of-range index becomes 0: finite, and NaN'd below
    logp = log_softmax(logits)
    loss = -logp[xp.arange(N), safe].mean()
    loss = xp.where(targets_ok, loss, xp.asarray(xp.nan, dtype=loss.dtype))[()]
    return loss, CrossEntropyCache(xp.exp(logp), safe, targets_ok)


def softmax_cross_entropy_backward(dloss, cache):
    """dL/dlogits = (softmax(logits) - onehot(targets)) / N, times the upstream ``dloss``.

    dloss: a scalar (1.0 for the loss itself) -> dlogits: (N, C) in the logits' dtype; all
    NaN when a target was out of range (as the loss).
    """
    probs, targets, targets_ok = cache
    xp = backend.get_array_module(probs)
    N = probs.shape[0]
    dlogits = probs.copy()
    dlogits[xp.arange(N), targets] -= 1
    # float(): keeps float32 logits' gradient float32 (a numpy float64 would promote it).
    dlogits *= xp.where(targets_ok, float(dloss) / N, xp.nan)
    return dlogits


class CrossEntropyLoss:
    """Softmax + negative log-likelihood, averaged over the batch (PyTorch's CrossEntropyLoss).

    logits: (N, C) float, targets: (N,) integer class indices in [0, C) -> loss: a 0-d array
    (a numpy scalar on the CPU) in the logits' dtype; ``float(loss)`` gives a Python number.
    After each call ``self.probs`` holds the softmax probabilities (N, C), same dtype and
    device as the logits, e.g. for accuracy: ``(crit.probs.argmax(1) == targets).mean()``.

    Targets out of [0, C) are refused with a ValueError where they are on the host (numpy
    arrays: the usual case, checked before they are copied to the logits' device). Targets
    already on the GPU are not read back, which would stall the device once per step; a bad
    one makes the loss (and gradient) NaN instead, and ``check_targets()`` then names it.
    """

    def __init__(self):
        self.probs = None
        self._cache = None
        self._targets = None

    def __call__(self, logits, targets):
        return self.forward(logits, targets)

    def forward(self, logits, targets):
        targets = self._check(logits, targets)
        loss, self._cache = softmax_cross_entropy_forward(logits, targets)
        self.probs = self._cache.probs
        self._targets = targets
        return loss

    def backward(self, dloss=1.0):
        """dL/dlogits (N, C) in the logits' dtype; ``dloss`` scales it (e.g. a loss weight)."""
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        return softmax_cross_entropy_backward(dloss, self._cache)

    def _check(self, logits, targets):
        """Validate shapes and dtypes; return ``targets`` on the logits' device."""
        name = type(self).__name__
        shape = getattr(logits, "shape", None)
        if shape is None or len(shape) != 2:
            got = tuple(shape) if shape is not None else type(logits).__name__
            raise ValueError(f"{name}: expected logits of shape (N, C), got {got}")
        if logits.dtype.kind != "f":
            raise ValueError(f"{name}: logits must be floating point, got dtype {logits.dtype}")
        N, C = shape
        if N == 0 or C == 0:
            raise ValueError(f"{name}: logits of shape {tuple(shape)} hold no examples or classes")
        if not hasattr(targets, "dtype"):
            targets = np.asarray(targets)  # a list or a number: judged like an array below
        if targets.dtype.kind not in "iu":
            raise ValueError(f"{name}: targets must be integer class indices of shape ({N},), "
                             f"got dtype {targets.dtype} with shape {tuple(targets.shape)}")
        if tuple(targets.shape) != (N,):
            raise ValueError(f"{name}: targets must have shape ({N},) for logits of shape "
                             f"{tuple(shape)}, got {tuple(targets.shape)}")
        if backend.device_of(targets) == "cpu":
            self._check_range(targets, C)  # free on the host; on the GPU see check_targets
        return backend.to_device(targets, backend.device_of(logits))

    def _check_range(self, targets, C):
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= C:
            raise ValueError(f"{type(self).__name__}: targets must lie in [0, {C}) for logits "
                             f"with {C} classes, got values in [{low}, {high}]")

    def check_targets(self) -> None:
        """Raise the ValueError for out-of-range targets of the last forward, if there were any.

        Needed only for targets that were already on the GPU (``forward`` checks host targets
        itself): call it when a loss reads as NaN. It reads the targets back from the device,
        one synchronisation, so it is not done on every step.
        """
        if self._cache is None:
            raise RuntimeError(f"{self!r}: check_targets called before forward")
        if not bool(self._cache.targets_ok):
            self._check_range(self._targets, self._cache.probs.shape[1])

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
