"""Linear (fully connected) layer."""
from __future__ import annotations

from .. import init
from .._shapes import positive_int
from ..functional.linear import linear_backward, linear_forward
from .base import Layer, Parameter


class Linear(Layer):
    """``y = x W^T + b`` with PyTorch's layout and default initialisation.

    x: (N, in_features) -> y: (N, out_features); weight: (out_features, in_features),
    bias: (out_features,). ``rng`` (a numpy Generator) seeds the initialisation; by default
    the shared generator of ``minidl.init`` is used.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None):
        super().__init__()
        in_features = positive_int(in_features, "in_features", "Linear")
        out_features = positive_int(out_features, "out_features", "Linear")
        self.in_features = in_features
        self.out_features = out_features
        shape = (out_features, in_features)
        self.weight = Parameter(init.pytorch_default(shape, rng))
        self.bias = Parameter(init.pytorch_default_bias(shape, rng)) if bias else None

    def forward(self, x):
        self._check_input(x, 2, layout=f"(N, {self.in_features})")
        if x.shape[1] != self.in_features:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.in_features}), "
                             f"got {tuple(x.shape)}")
        bias = self.bias.data if self.bias is not None else None
        out, self._cache = linear_forward(x, self.weight.data, bias)
        return out

    def backward(self, dout):
        cache = self._saved()
        self._check_dout(dout, (cache[0].shape[0], self.out_features))
        dx, dW, db = linear_backward(dout, cache)
        self.weight.grad += dW
        if db is not None:
            self.bias.grad += db
        return dx

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")

