"""LocalResponseNorm: AlexNet's normalisation across neighbouring channels (maths in functional/lrn.py)."""
from __future__ import annotations

from .._shapes import positive_int, real_number
from ..functional.lrn import lrn_backward, lrn_forward
from .base import Layer


class LocalResponseNorm(Layer):
    """y_c = x_c / (k + alpha / size * sum of x_j^2 over ``size`` channels around c)^beta.

    x: (N, C, H, W) -> same shape. No parameters. PyTorch's ``nn.LocalResponseNorm`` with the
    same arguments; AlexNet used size=5, alpha=5e-4 (1e-4 per channel), beta=0.75, k=2.
    Cache: ``functional.lrn.LRNCache`` (the input and the per-position scale s).
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        who = type(self).__name__
        self.size = positive_int(size, "size", who)
        self.alpha = real_number(alpha, "alpha", who)
        self.beta = real_number(beta, "beta", who)
        self.k = real_number(k, "k", who)
        if self.k <= 0 or self.alpha < 0:
            raise ValueError(f"{who}: need k > 0 and alpha >= 0 so the scale stays positive, "
                             f"got k={k!r}, alpha={alpha!r}")

    def forward(self, x):
        shape = self._check_input(x)
        if len(shape) < 3:  # channels need a neighbourhood: (N, C, H, W) or (N, C, L)
            raise ValueError(f"{self.describe()}: expected input of shape (N, C, H, W) or "
                             f"(N, C, L), got {shape}")
        out, self._cache = lrn_forward(x, self.size, self.alpha, self.beta, self.k)
        return out

    def backward(self, dout):
        cache = self._saved()
        self._check_dout(dout, cache.x.shape)
        return lrn_backward(dout, cache)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
