"""Finite-difference gradient checks (centred differences, float64).

The check is an assertion, not a plot: for a random upstream gradient ``dout`` the scalar
``L = sum(layer(x) * dout)`` is differentiated numerically with respect to the input and every
parameter and compared with what ``backward`` returns/accumulates (cs231n's gradient_check,
Chainer's numerical_grad).
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np

from . import backend


def numerical_gradient(f: Callable[[], float], array, eps: float = 1e-6):
    """dF/d(array) by centred differences, perturbing ``array`` in place one entry at a time.

    ``f`` takes no argument and must read ``array`` when called. Cost: 2 * array.size calls.
    """
    grad = np.zeros(array.shape, dtype=np.float64)
    flat = array.reshape(-1)  # a view: perturbing it perturbs ``array``
    if not np.shares_memory(flat, array) and flat.size:
        raise ValueError("numerical_gradient needs a contiguous array it can perturb in place")
    g = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i].item()
        flat[i] = old + eps
        plus = float(f())
        flat[i] = old - eps
        minus = float(f())
        flat[i] = old
        g[i] = (plus - minus) / (2 * eps)
    return grad


def rel_error(a, b) -> float:
    """Relative error ``||a - b|| / max(||a||, ||b||)`` (0 when both are zero).

    A norm-based ratio does not explode on entries that are zero up to rounding, which an
    element-wise ratio does; < 1e-6 is expected for smooth layers in float64.
    """
    a = np.asarray(backend.asnumpy(a), dtype=np.float64)
    b = np.asarray(backend.asnumpy(b), dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)


def gradcheck_layer(layer, x, dout=None, eps: float = 1e-6, seed: int = 0,
                    before_forward: Callable[[], None] | None = None) -> dict[str, float]:
    """Check ``layer.backward`` against centred differences; return the relative error per tensor.

    The layer, ``x`` and ``dout`` (shaped like the output) may live on any device: the check
    runs on the CPU in float64 (finite differences need float64 and perturb one entry at a
    time, a device round trip each on a GPU; every op runs the same code on both devices, and
    comparing CPU with GPU outputs tests the device itself). The layer is left exactly as it
    was: device, dtype, parameters, gradients, buffers (BatchNorm's running statistics),
    cache and extra state (Dropout's generator) are restored afterwards.
    ``before_forward`` runs before every forward pass: use it to fix a random mask (dropout).
    Returns ``{"x": err, "<param name>": err, ...}``.
    """
    saved = _snapshot(layer)
    try:
        return _check(layer, x, dout, eps, seed, before_forward)
    finally:
        _restore(layer, saved)


def _snapshot(layer) -> list:
    """The array objects and state the check replaces, per layer of the tree (no copies:
    the check only ever replaces arrays, and restoring the objects restores the layer)."""
    return [(sub, [(p, p.data, p.grad) for p in sub._parameters.values()],
             dict(sub._buffers), sub._cache, copy.deepcopy(sub.extra_state()))
            for _, sub in layer.named_layers()]


def _restore(layer, saved: list) -> None:
    for sub, params, buffers, cache, extra in saved:
        for p, data, grad in params:
            p.data, p.grad = data, grad
        sub._buffers.update(buffers)
        object.__setattr__(sub, "_cache", cache)
        if extra is not None:
            sub.load_extra_state(extra)


def _check(layer, x, dout, eps, seed, before_forward) -> dict[str, float]:
    layer.to("cpu").astype(np.float64)
    x = np.array(backend.asnumpy(x), dtype=np.float64)  # a private copy we may perturb
    rng = np.random.default_rng(seed)

    def forward():
        if before_forward is not None:
            before_forward()
        return backend.asnumpy(layer.forward(x))

    out = forward()
    if dout is None:
        dout = rng.standard_normal(out.shape)
    dout = np.asarray(backend.asnumpy(dout), dtype=np.float64)
    if dout.shape != out.shape:
        raise ValueError(f"gradcheck_layer: dout shape {dout.shape} != output shape {out.shape}")

    layer.zero_grad()
    dout_given = dout.copy()
    dx = backend.asnumpy(layer.backward(dout))
    if not np.array_equal(dout, dout_given):
        raise AssertionError(f"{layer!r}: backward modified dout in place")
    analytic = {"x": np.array(dx)}
    for name, p in layer.named_parameters():
        analytic[name] = np.array(backend.asnumpy(p.grad))

    def loss():
        return float(np.sum(forward() * dout))

    errors = {"x": rel_error(analytic["x"], numerical_gradient(loss, x, eps))}
    for name, p in layer.named_parameters():
        errors[name] = rel_error(analytic[name], numerical_gradient(loss, p.data, eps))
    return errors
