"""PyTorch twins of minidl layers and models, for timing the same computation side by side.

``twin(layer)`` rebuilds a minidl layer tree as ``torch.nn`` modules with the same child names,
so the state_dict keys agree and the weights are copied across by name: both libraries then
compute the same numbers, which ``cli`` checks on the first pass of every case. Only this
module imports torch (callers import it only when torch is installed); it is a benchmark
reference, never a runtime dependency of minidl.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from .. import layers as L


class _Residual(nn.Module):
    """``act(body(x) + shortcut(x))``, shortcut the identity when absent, act optional."""

    def __init__(self, body, shortcut=None, act=None):
        super().__init__()
        self.body = body
        if shortcut is not None:
            self.shortcut = shortcut
        if act is not None:
            self.act = act

    def forward(self, x):
        skip = self.shortcut(x) if hasattr(self, "shortcut") else x
        out = self.body(x) + skip
        return self.act(out) if hasattr(self, "act") else out


def _module(layer) -> nn.Module:
    """The torch module computing what ``layer`` computes (weights not yet copied)."""
    children = getattr(layer, "_children", {})
    if isinstance(layer, L.Residual):
        parts = {name: _module(child) for name, child in children.items()}
        return _Residual(parts["body"], parts.get("shortcut"), parts.get("act"))
    # Sequential, and subclasses that keep its forward (a model's named chains)
    if type(layer).forward is L.Sequential.forward:
        return nn.Sequential(OrderedDict((name, _module(c)) for name, c in children.items()))
    if isinstance(layer, L.Conv2d):
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                         layer.padding, layer.dilation, layer.groups, bias=layer.bias is not None)
    if isinstance(layer, L.BatchNorm2d):
        return nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, L.LeakyReLU):
        return nn.LeakyReLU(layer.negative_slope)
    if isinstance(layer, L.ReLU):
        return nn.ReLU()
    if isinstance(layer, L.AvgPool2d):
        return nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, L.GlobalAvgPool2d):
        return nn.AdaptiveAvgPool2d(1)
    if isinstance(layer, L.Flatten):
        return nn.Flatten()
    if isinstance(layer, L.Linear):
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    raise NotImplementedError(f"no PyTorch twin for {layer.describe()}")


def twin(layer) -> nn.Module:
    """A torch module equal to the minidl ``layer`` (a single layer or a whole model), in
    the same training/eval mode and with a copy of its parameters and running statistics."""
    module = _module(layer)
    ours = {k: torch.from_numpy(np.array(v, dtype=np.float32))
            for k, v in layer.state_dict().items() if v is not None}
    missing, unexpected = module.load_state_dict(ours, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(f"twin of {layer.describe()}: keys differ (torch only: {missing}, "
                           f"minidl only: {unexpected})")
    return module.train(layer.training)
