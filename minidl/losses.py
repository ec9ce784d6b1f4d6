"""Loss functions: ``loss = crit(logits, targets)``, then ``dlogits = crit.backward()``.

``CrossEntropyLoss`` for hard targets; ``DistillationLoss`` (Hinton et al., 2015) adds a
teacher's soft targets: ``loss = crit(student_logits, targets, teacher_logits)``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import backend
from ._shapes import nonnegative, positive


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


# ---------------------------------------------------------------- knowledge distillation
class SoftTargetCache(NamedTuple):
    """What ``soft_target_forward`` keeps for the backward.

    student_probs: (N, C) softmax(student_logits / T), the student's dtype and device.
    teacher_probs: (N, C) softmax(teacher_logits / T), the soft targets, same dtype.
    temperature: T as a Python float.
    """

    student_probs: object
    teacher_probs: object
    temperature: float


def soft_target_forward(student_logits, teacher_logits, temperature):
    """T^2 times the cross-entropy of softmax(student / T) against the soft targets
    softmax(teacher / T), averaged over the batch (Hinton et al., 2015, "Distilling the
    Knowledge in a Neural Network", section 2).

    student_logits, teacher_logits: (N, C) of one dtype -> (loss: 0-d, SoftTargetCache).
    The cross-entropy ``-sum p log q`` is what the paper (and the "Dark knowledge" slides)
    minimise; it exceeds KL(p || q) by the teacher's entropy, a constant for the student, so
    both have the same gradient. Why T^2: the gradient of the cross-entropy at temperature T
    is ``(q - p) / T`` per example, and for a high T, ``q - p`` itself shrinks like 1/T (both
    softmaxes approach uniform): the gradient falls like 1/T^2. Multiplying by T^2 keeps the
    soft term's gradient about the same size whatever T is, so the weight of the hard term
    need not be retuned when T changes.
    """
    T = float(temperature)
    log_q = log_softmax(student_logits / T)
    xp = backend.get_array_module(log_q)
    p = xp.exp(log_softmax(teacher_logits / T))
    loss = -(p * log_q).sum(axis=-1).mean() * (T * T)
    return loss, SoftTargetCache(xp.exp(log_q), p, T)


def soft_target_backward(dloss, cache):
    """dL/d(student_logits) = T^2 * (q - p) / (T N) = T (q - p) / N, times ``dloss``.

    dloss: a scalar -> (N, C) in the student's dtype. The teacher gets no gradient: its
    logits are fixed targets.
    """
    q, p, T = cache
    dlogits = q - p
    dlogits *= float(dloss) * T / q.shape[0]
    return dlogits


class DistillationLoss(CrossEntropyLoss):
    """Knowledge distillation (Hinton et al., 2015; slides seed 002, "Dark knowledge"):
    soft targets from a teacher at temperature T plus down-weighted hard targets.

    ``loss = soft_weight * T^2 * CE(softmax(teacher / T), softmax(student / T)) + hard_weight *
    CE(targets, softmax(student))``, each averaged over the batch: "using a high temperature in the
    softmax, we minimize the cross entropy with the soft targets ...; using the very same
    logits at a temperature of 1, we minimize the cross entropy with the hard targets". Why
    the soft term is multiplied by T^2: see ``soft_target_forward``.

    temperature: T > 0 (T = 1 is the plain softmax; the paper found T >= 8 best for its
    800-unit MNIST student). hard_weight: >= 0, the weight of the ordinary cross-entropy;
    the slides down-weight it because the soft targets' gradients are smaller and steadier;
    0 trains on the soft targets alone. The default 0.1 is this library's choice (the paper
    and the slides give no number; "considerably lower" than the soft term's 1).
    soft_weight: >= 0, the soft term's weight (default 1). The training CLI's ``--soft-weight
    W`` is ``soft_weight=W, hard_weight=1-W``: W = 0 is exactly plain cross-entropy training.

    ``crit(student_logits, targets, teacher_logits)``: student and teacher logits (N, C) of
    one shape (the teacher's are cast to the student's dtype and device), targets (N,)
    integer classes as for ``CrossEntropyLoss`` (checked the same way). Returns the loss, a
    0-d array in the student's dtype; ``crit.backward()`` returns dL/d(student_logits).
    After each call ``probs`` is softmax(student) at T = 1 (for accuracy), and ``soft_loss``
    and ``hard_loss`` hold the two terms (the soft one times T^2, both before their weights)
    for logging.
    """

    def __init__(self, temperature: float, hard_weight: float = 0.1, soft_weight: float = 1.0):
        super().__init__()
        who = type(self).__name__
        self.temperature = positive(temperature, "temperature", who)
        self.hard_weight = nonnegative(hard_weight, "hard_weight", who)
        self.soft_weight = nonnegative(soft_weight, "soft_weight", who)
        self.soft_loss = self.hard_loss = None
        self._soft_cache = None

    def __call__(self, student_logits, targets, teacher_logits):
        return self.forward(student_logits, targets, teacher_logits)

    def forward(self, student_logits, targets, teacher_logits):
        targets = self._check(student_logits, targets)
        teacher_logits = self._check_teacher(student_logits, teacher_logits)
        # The hard term is computed even at weight 0: it sets probs and hard_loss, and a bad
        # target still turns the loss NaN rather than passing unnoticed.
        self.hard_loss, self._cache = softmax_cross_entropy_forward(student_logits, targets)
        self.soft_loss, self._soft_cache = soft_target_forward(student_logits, teacher_logits,
                                                               self.temperature)
        self.probs = self._cache.probs
        self._targets = targets
        return self.soft_loss * self.soft_weight + self.hard_loss * self.hard_weight

    def backward(self, dloss=1.0):
        """dL/d(student_logits) (N, C) in the student's dtype; ``dloss`` scales it."""
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        dlogits = soft_target_backward(float(dloss) * self.soft_weight, self._soft_cache)
        dlogits += softmax_cross_entropy_backward(float(dloss) * self.hard_weight, self._cache)
        return dlogits

    def _check_teacher(self, student_logits, teacher_logits):
        """The teacher's logits in the student's dtype and on its device; a ValueError naming
        the loss unless they are a floating array of the student's shape."""
        name = type(self).__name__
        shape = getattr(teacher_logits, "shape", None)
        dtype = getattr(teacher_logits, "dtype", None)
        if shape is None or dtype is None:
            raise ValueError(f"{name}: teacher_logits must be an array of shape "
                             f"{tuple(student_logits.shape)}, got {type(teacher_logits).__name__}")
        if tuple(shape) != tuple(student_logits.shape):
            raise ValueError(f"{name}: teacher_logits must have the student's shape "
                             f"{tuple(student_logits.shape)}, got {tuple(shape)}")
        if dtype.kind != "f":
            raise ValueError(f"{name}: teacher_logits must be floating point, got dtype {dtype}")
        device = backend.device_of(student_logits)
        xp = backend.get_array_module(student_logits)
        return xp.asarray(backend.to_device(teacher_logits, device), dtype=student_logits.dtype)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(temperature={self.temperature}, "
                f"hard_weight={self.hard_weight}, soft_weight={self.soft_weight})")
