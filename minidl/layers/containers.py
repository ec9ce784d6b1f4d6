"""Containers: Sequential (a chain) and Residual (``body(x) + shortcut(x)``)."""
from __future__ import annotations

from .. import backend
from .._threads import share_rows
from .base import Layer


class Sequential(Layer):
    """Apply layers in order; children are named ``"0"``, ``"1"``, ... like PyTorch."""

    def __init__(self, *layers: Layer):
        super().__init__()
        for i, layer in enumerate(layers):
            self.add_child(str(i), layer)

    def append(self, layer: Layer) -> "Sequential":
        self.add_child(str(len(self._children)), layer)
        return self

    def __len__(self) -> int:
        return len(self._children)

    def __getitem__(self, index: int) -> Layer:
        return list(self._children.values())[index]

    def __iter__(self):
        return iter(self._children.values())

    def forward(self, x):
        for layer in self._children.values():
            x = layer(x)
        self._cache = True  # the children hold the arrays; this only marks that forward ran
        return x

    def backward(self, dout):
        self._saved()
        for layer in reversed(self._children.values()):
            dout = layer.backward(dout)
        return dout


class Residual(Layer):
    """``y = body(x) + shortcut(x)``; the shortcut is the identity when None (He et al., 2016).

    Backward sends the same ``dout`` down both branches and sums their input gradients, which
    is why no layer may modify ``dout`` in place.
    """

    def __init__(self, body: Layer, shortcut: Layer | None = None):
        super().__init__()
        self.body = body
        if shortcut is not None:
            self.shortcut = shortcut

    def forward(self, x):
        out = self.body(x)
        skip = self.shortcut(x) if "shortcut" in self._children else x
        if out.shape != skip.shape:
            raise ValueError(f"Residual: body output {tuple(out.shape)} and shortcut output "
                             f"{tuple(skip.shape)} differ; give a shortcut layer that matches")
        self._cache = True
        xp = backend.get_array_module(out)
        total = xp.empty(out.shape, dtype=xp.result_type(out, skip))
        share_rows(_add, out, skip, total)
        return total

    def backward(self, dout):
        self._saved()
        dx = self.body.backward(dout)
        skip = self.shortcut.backward(dout) if "shortcut" in self._children else dout
        return _sum_into_fresh(dx, skip, dout)


def _sum_into_fresh(dx, skip, dout):
    """``dx + skip``, added into ``dx`` in place when that is safe: it saves a full-size array
    and a pass over memory per block.

    Not safe when dx may be ``dout`` itself or share its memory (a body that passes the
    gradient through: an empty Sequential, Flatten, Dropout in evaluation mode), since dout
    also feeds the shortcut and the caller; nor when it shares memory with ``skip``, when
    the dtypes differ (float32 + float64 must give float64), or when a body hands back a
    read-only array (CuPy arrays have no such flag). Then a new array is made.
    """
    xp = backend.get_array_module(dx)
    total = dx
    if (dx.dtype != skip.dtype or not getattr(dx.flags, "writeable", True)
            or xp.may_share_memory(dx, dout) or xp.may_share_memory(dx, skip)):
        total = xp.empty(dx.shape, dtype=xp.result_type(dx, skip))
    share_rows(_add, dx, skip, total)
    return total


def _add(a, b, out, lo, hi):
    """``out = a + b`` on rows lo:hi of the batch (out may be a). A large NumPy sum is shared
    out to threads by ``share_rows``, as BatchNorm's and the activations' passes are."""
    backend.get_array_module(a).add(a[lo:hi], b[lo:hi], out=out[lo:hi])
