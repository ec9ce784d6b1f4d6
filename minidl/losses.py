"""Loss functions: ``loss = crit(logits, targets)``, then ``dlogits = crit.backward()``."""
from __future__ import annotations

from . import backend


def log_softmax(logits):
    """log(softmax(logits)) along the last axis, stable for any finite logits.

    Subtracting the row maximum before ``exp`` (the log-sum-exp trick) keeps every exponent
    <= 0, so logits like 1e4 neither overflow nor give ``inf - inf``. logits: (N, C) -> (N, C).
    """
    xp = backend.get_array_module(logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def softmax_cross_entropy_forward(logits, targets):
    """Mean negative log-likelihood of the targets under softmax(logits).

    logits: (N, C) float, targets: (N,) int in [0, C) -> (loss: 0-d, cache: (probs, targets)).
    """
    xp = backend.get_array_module(logits)
    logp = log_softmax(logits)
    loss = -logp[xp.arange(logits.shape[0]), targets].mean()
    return loss, (xp.exp(logp), targets)


def softmax_cross_entropy_backward(dloss, cache):
    """dL/dlogits = (softmax(logits) - onehot(targets)) / N, times the upstream ``dloss``.

    dloss: a scalar (1.0 for the loss itself) -> dlogits: (N, C) in the logits' dtype.
    """
    probs, targets = cache
    xp = backend.get_array_module(probs)
    dlogits = probs.copy()
    dlogits[xp.arange(probs.shape[0]), targets] -= 1
    # float(): keeps float32 logits' gradient float32 (a numpy float64 would promote it).
    dlogits *= float(dloss) / probs.shape[0]
    return dlogits


class CrossEntropyLoss:
    """Softmax + negative log-likelihood, averaged over the batch (PyTorch's CrossEntropyLoss).

    logits: (N, C) float, targets: (N,) integer class indices in [0, C) -> loss: a 0-d array
    (a numpy scalar on the CPU) in the logits' dtype; ``float(loss)`` gives a Python number.
    After each call ``self.probs`` holds the softmax probabilities (N, C), same dtype and
    device as the logits, e.g. for accuracy: ``(crit.probs.argmax(1) == targets).mean()``.
    """

    def __init__(self):
        self.probs = None
        self._cache = None

    def __call__(self, logits, targets):
        return self.forward(logits, targets)

    def forward(self, logits, targets):
        targets = self._check(logits, targets)
        loss, self._cache = softmax_cross_entropy_forward(logits, targets)
        self.probs = self._cache[0]
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
        targets = backend.to_device(targets, backend.device_of(logits))
        if targets.dtype.kind not in "iu":
            raise ValueError(f"{name}: targets must be integer class indices of shape ({N},), "
                             f"got dtype {targets.dtype} with shape {tuple(targets.shape)}")
        if tuple(targets.shape) != (N,):
            raise ValueError(f"{name}: targets must have shape ({N},) for logits of shape "
                             f"{tuple(shape)}, got {tuple(targets.shape)}")
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= C:
            raise ValueError(f"{name}: targets must lie in [0, {C}) for logits of shape "
                             f"{tuple(shape)}, got values in [{low}, {high}]")
        return targets

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
