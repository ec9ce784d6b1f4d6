"""Batch normalisation layers (Ioffe & Szegedy, 2015) with PyTorch's running statistics."""
from __future__ import annotations

import numbers

import numpy as np

from .._shapes import positive_int, unit_interval
from ..functional import normalization as F
from .base import Layer, Parameter


class _BatchNorm(Layer):
    """Per-channel normalisation; subclasses fix the input rank (``_ndim``).

    Training uses the batch statistics (biased variance) and updates
    ``running = (1 - momentum) * running + momentum * batch_stat`` with the UNBIASED batch
    variance for ``running_var``, as PyTorch does. Evaluation uses the running statistics,
    and ``backward`` then differentiates that affine map. Parameters and buffers are float32
    by default; the output dtype follows the input.
    """

    _ndim = 2

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        name = type(self).__name__
        num_features = positive_int(num_features, "num_features", name)
        if not isinstance(eps, numbers.Real) or not eps > 0:
            raise ValueError(f"{name}: eps must be positive, got {eps!r}")
        momentum = unit_interval(momentum, "momentum", name, closed=True)
        self.num_features, self.eps, self.momentum = num_features, float(eps), float(momentum)
        self.weight = Parameter(np.ones(num_features, dtype=np.float32))
        self.bias = Parameter(np.zeros(num_features, dtype=np.float32))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=np.float32))
        self.register_buffer("running_var", np.ones(num_features, dtype=np.float32))

    def forward(self, x):
        self._check_input(x, self._ndim, self.num_features)
        if not self.training:
            out, self._cache = F.batchnorm_forward(x, self.weight.data, self.bias.data, self.eps,
                                                   self.running_mean, self.running_var)
            return out
        count = x.size // x.shape[1]
        if count < 2:
            # The unbiased variance divides by count - 1; PyTorch refuses this case too.
            raise ValueError(f"{self!r}: training needs more than 1 value per channel, "
                             f"got input of shape {tuple(x.shape)}: batch statistics of one "
                             "value are undefined; train on batches of 2 or more examples "
                             "(e.g. drop a last batch of 1), or call .eval() to use the "
                             "running statistics")
        out, cache = F.batchnorm_forward(x, self.weight.data, self.bias.data, self.eps)
        self._cache = cache
        m, buf_dtype = self.momentum, self.running_mean.dtype
        unbiased_var = cache.var * (count / (count - 1))
        self.running_mean = ((1 - m) * self.running_mean
                             + m * cache.mean.astype(buf_dtype, copy=False))
        self.running_var = ((1 - m) * self.running_var
                            + m * unbiased_var.astype(buf_dtype, copy=False))
        return out

    def backward(self, dout):
        cache = self._saved()
        self._check_dout(dout, cache.x_hat.shape)
        dx, dgamma, dbeta = F.batchnorm_backward(dout, cache)
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        return dx

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over the batch for each feature; x: (N, C) -> (N, C)."""

    _ndim = 2


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over N, H, W for each channel; x: (N, C, H, W) -> (N, C, H, W)."""

    _ndim = 4
