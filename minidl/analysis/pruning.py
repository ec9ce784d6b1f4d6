"""Magnitude pruning: zero the smallest weights of chosen layers and say how sparse they are."""
from __future__ import annotations

import numpy as np

from .. import backend


def magnitude_mask(weight, fraction: float) -> np.ndarray:
    """Boolean mask keeping the ``1 - fraction`` largest-magnitude entries of ``weight``.

    weight: any shape; fraction in [0, 1]. Exactly ``round(fraction * size)`` entries are
    dropped (ties broken by position, so the count is exact).
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"magnitude_mask: fraction must be in [0, 1], got {fraction}")
    w = np.abs(np.asarray(backend.asnumpy(weight)))
    drop = int(round(fraction * w.size))
    keep = np.ones(w.size, dtype=bool)
    keep[np.argsort(w, axis=None, kind="stable")[:drop]] = False
    return keep.reshape(w.shape)


def sparsity(weight, atol: float = 0.0) -> float:
    """Fraction of entries with ``|w| <= atol``."""
    w = np.abs(np.asarray(backend.asnumpy(weight)))
    return float(np.mean(w <= atol)) if w.size else 0.0


def prune_layers(model, layer_names, fraction: float) -> dict[str, float]:
    """Zero the smallest ``fraction`` of the ``weight`` of each named layer, in place.

    layer_names: dotted names as in ``model.named_layers()`` (e.g. ``"features.conv3"``).
    Returns {layer name: sparsity of its weight after pruning}; biases are kept.
    """
    layers = dict(model.named_layers())
    missing = [n for n in layer_names if n not in layers or not hasattr(layers[n], "weight")]
    if missing:
        with_weight = [n for n, layer in layers.items() if hasattr(layer, "weight")]
        raise ValueError(f"prune_layers: no layer with a weight named {missing}; layers with "
                         f"weights: {', '.join(with_weight)}")
    result = {}
    for name in layer_names:
        weight = layers[name].weight.data
        mask = magnitude_mask(weight, fraction)
        xp = backend.get_array_module(weight)
        weight *= xp.asarray(backend.to_device(mask, backend.device_of(weight)), dtype=weight.dtype)
        result[name] = sparsity(weight)
    return result
