"""Element-wise activations: any input shape, output dtype follows the input.

Each ``*_forward(x) -> (out, ActivationCache)`` sits next to its ``*_backward(dout, cache) -> dx``.
The piecewise functions are written arithmetically (``maximum(x, s*x)``, a 0/1 factor times
``dout``) rather than with ``where`` or boolean selects: on a 50/50 sign pattern a select is
several times slower in NumPy, because it cannot be vectorised without branches.

The caches keep the OUTPUT wherever the derivative can be read from it (ReLU, LeakyReLU with a
slope >= 0, ELU, sigmoid, tanh), as PyTorch does: the next layer usually keeps that array
anyway (a conv keeps its input), so the cache costs no extra memory. With numba installed
(``pip install -e ".[fast]"``) LeakyReLU and ReLU's backward run as compiled loops from
``minidl.kernels.activations``, tested against the NumPy code below.

Threads: ReLU and LeakyReLU, the activations of the coursework networks, do their maths in a
function of the elements ``lo:hi`` (``_relu``, ``_leaky_relu``, ``_leaky_relu_grad``), and a
large NumPy array is cut into consecutive shares done at once by a small pool of threads
(``minidl._threads.share_rows``: NumPy releases the GIL in its loops, so two threads use two
cores). Element-wise maths gives the same bits however the elements are shared out.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import backend, kernels
from .._shapes import float_input
from .._threads import share_rows


class ActivationCache(NamedTuple):
    """What an activation's forward keeps for its backward.

    saved: array: the output ``out`` for ReLU, CReLU, ELU, sigmoid, tanh and LeakyReLU
        with a slope >= 0 (there ``out > 0`` exactly where ``x > 0``); the input ``x`` for
        Swish and for LeakyReLU with a negative slope. Shaped like x, except CReLU's output
        (N, 2C, ...).
    param: the hyper-parameter (LeakyReLU's ``negative_slope``, ELU's ``alpha``, Swish's
        ``beta``) as a Python float, or for a trainable Swish beta a 0-d array in x's dtype
        and on its device; None for the others.
    """

    saved: object
    param: float | None = None


def _compiled(*arrays):
    """The compiled kernels for these arrays (NumPy arrays of one dtype, kernels switched on,
    see ``minidl.kernels``), else None for the NumPy code."""
    if kernels.active(*arrays) and len({a.dtype for a in arrays}) == 1:
        from ..kernels import activations as compiled  # imports numba on first use only
        return compiled
    return None


def _rows(*arrays):
    """Views of same-shaped arrays with one first axis to share out: flat when all are
    C-contiguous (even shares whatever the shape), else at least 1-d as they are."""
    if all(a.flags.c_contiguous for a in arrays):
        return [a.reshape(-1) for a in arrays]
    return [a.reshape(1) if a.ndim == 0 else a for a in arrays]


def _positive(a):
    """1 where ``a > 0``, else 0, in ``a``'s float dtype (a factor to multiply with); the
    comparison writes straight into the float array, with no boolean temporary."""
    xp = backend.get_array_module(a)
    return xp.greater(a, 0, out=xp.empty_like(a))


def sigmoid(x):
    """Numerically stable logistic function ``1 / (1 + exp(-x))``.

    Written as ``exp(min(x, 0)) / (1 + exp(-|x|))``: both exponents are <= 0 so nothing can
    overflow, and for x < 0 this is ``e^x / (1 + e^x)``, accurate even where the result is
    tiny (``1 - sigmoid(-x)`` would round to 0).
    """
    xp = backend.get_array_module(x)
    denominator = xp.exp(-xp.abs(x))
    denominator += 1
    out = xp.exp(xp.minimum(x, 0))
    out /= denominator
    return out


# ---------------------------------------------------------------------------- ReLU
def _relu(x, out, lo, hi):
    """``out = max(x, 0)`` on elements lo:hi."""
    backend.get_array_module(x).maximum(x[lo:hi], 0, out=out[lo:hi])


def relu_forward(x):
    """max(x, 0) (Nair & Hinton, 2010). x: any shape -> out: same shape."""
    x = float_input(x, "relu_forward")
    out = backend.get_array_module(x).empty_like(x)  # one pass: nothing for a kernel to save
    share_rows(_relu, *_rows(x, out))
    return out, ActivationCache(out)


def relu_backward(dout, cache):
    """dx = dout where x > 0, else 0 (the subgradient at 0 is taken as 0, as in PyTorch): the
    LeakyReLU backward with slope 0."""
    return leaky_relu_backward(dout, ActivationCache(cache.saved, 0.0))


# ---------------------------------------------------------------------------- LeakyReLU
def leaky_relu_forward(x, negative_slope=0.01):
    """x for x > 0, ``negative_slope * x`` otherwise (Maas et al., 2013).

    For a slope s <= 1 this is ``max(x, s*x)`` (``min`` for s > 1). x: any shape -> same shape.
    """
    x = float_input(x, "leaky_relu_forward")
    xp = backend.get_array_module(x)
    # float(): a numpy float64 slope would promote a float32 input to float64 (NEP 50).
    s = float(negative_slope)
    k = _compiled(x)
    if k:
        out = k.leaky_relu_forward(x, s)
    else:
        out = xp.empty_like(x)
        share_rows(_leaky_relu, *_rows(x, out), s)
    # With s >= 0 the output has the sign of x; a negative slope flips it, so keep x then.
    return out, ActivationCache(out if s >= 0 else x, s)


def leaky_relu_backward(dout, cache):
    """dx = dout where x > 0, ``negative_slope * dout`` otherwise.

    dx = dout times a factor that is 1 or s, built from ``[x > 0]`` (read from the cache): for
    the usual 0 <= s <= 1 it is ``max([x > 0], s)``, exact; otherwise ``s + (1 - s) * [x > 0]``.
    """
    saved, s = cache
    k = _compiled(dout, saved)
    if k:
        return k.leaky_relu_backward(dout, saved, s)
    xp = backend.get_array_module(saved)
    dx = xp.empty(saved.shape, dtype=xp.result_type(dout, saved))
    share_rows(_leaky_relu_grad, *_rows(dout, saved, dx), s)
    return dx


def _leaky_relu(x, out, s, lo, hi):
    """``out = max(x, s*x)`` (``min`` for s > 1) on elements lo:hi."""
    xp = backend.get_array_module(x)
    o = out[lo:hi]
    xp.multiply(x[lo:hi], s, out=o)
    (xp.maximum if s <= 1 else xp.minimum)(o, x[lo:hi], out=o)


def _leaky_relu_grad(dout, saved, dx, s, lo, hi):
    """``dx = dout * factor`` on elements lo:hi, the factor built in dx's memory (see
    ``leaky_relu_backward``); ``[saved > 0]`` alone for s = 0 (ReLU)."""
    xp = backend.get_array_module(saved)
    factor = dx[lo:hi]
    xp.greater(saved[lo:hi], 0, out=factor)
    if 0 < s <= 1:
        xp.maximum(factor, s, out=factor)
    elif s != 0:
        factor *= 1 - s
        factor += s
    factor *= dout[lo:hi]


# ---------------------------------------------------------------------------- ELU
def elu_forward(x, alpha=1.0):
    """x for x > 0, ``alpha * (exp(x) - 1)`` otherwise (Clevert et al., 2016, "Fast and
    Accurate Deep Network Learning by Exponential Linear Units"). x: any shape -> same shape."""
    x = float_input(x, "elu_forward")
    xp = backend.get_array_module(x)
    alpha = float(alpha)  # keep float32 inputs float32 (see leaky_relu_forward)
    # max(x, 0) + alpha * expm1(min(x, 0)): one branch is always 0. expm1 is accurate near 0,
    # and min(x, 0) keeps exp from overflowing on the unused branch.
    out = xp.expm1(xp.minimum(x, 0))
    out *= alpha
    out += xp.maximum(x, 0)
    return out, ActivationCache(out, alpha)


def elu_backward(dout, cache):
    """The derivative is 1 for x > 0 and ``alpha * exp(x) = out + alpha`` otherwise.

    Both at once: ``min(out, 0) + alpha + (1 - alpha) * [x > 0]``.
    """
    out, alpha = cache
    xp = backend.get_array_module(out)
    factor = _positive(out)
    factor *= 1 - alpha
    factor += xp.minimum(out, 0)
    factor += alpha
    factor *= dout
    return factor


# ---------------------------------------------------------------------------- sigmoid
def sigmoid_forward(x):
    """sigmoid(x); the output is the cache. x: any shape -> out: same shape."""
    out = sigmoid(float_input(x, "sigmoid_forward"))
    return out, ActivationCache(out)


def sigmoid_backward(dout, cache):
    """sigma'(x) = sigma(x) * (1 - sigma(x))."""
    out = cache.saved
    return dout * out * (1 - out)


# ---------------------------------------------------------------------------- tanh
def tanh_forward(x):
    """tanh(x); the output is the cache. x: any shape -> out: same shape."""
    x = float_input(x, "tanh_forward")
    out = backend.get_array_module(x).tanh(x)
    return out, ActivationCache(out)


def tanh_backward(dout, cache):
    """tanh'(x) = 1 - tanh(x)^2."""
    out = cache.saved
    return dout * (1 - out * out)


# ---------------------------------------------------------------------------- CReLU
def crelu_forward(x):
    """Concatenated ReLU ``concat(max(x, 0), max(-x, 0))`` along the channel axis 1 (Shang et
    al., 2016, "Understanding and Improving Convolutional Neural Networks via Concatenated
    Rectified Linear Units"). x: (N, C, ...) -> out: (N, 2C, ...): channel c of the output is
    the positive part of input channel c, channel C + c its negative part, so nothing is lost
    (x = out[:, :C] - out[:, C:]). The cache keeps the output, as ReLU's does.
    """
    x = float_input(x, "crelu_forward")
    if x.ndim < 2:
        raise ValueError(f"crelu_forward: expected input of shape (N, C, ...) with a channel "
                         f"axis 1, got {tuple(x.shape)}")
    xp = backend.get_array_module(x)
    C = x.shape[1]
    out = xp.empty((x.shape[0], 2 * C, *x.shape[2:]), dtype=x.dtype)
    # Written straight into the two halves (no concatenate copy), in two passes:
    # max(-x, 0) = max(x, 0) - x, exact in floating point (one side of it is always 0).
    positive = out[:, :C]
    xp.maximum(x, 0, out=positive)
    xp.subtract(positive, x, out=out[:, C:])
    return out, ActivationCache(out)


def crelu_backward(dout, cache):
    """dx = dout[:, :C] where x > 0, ``-dout[:, C:]`` where x < 0, 0 at x = 0 (as ReLU).

    Read from the output: ``out[:, :C] > 0`` exactly where x > 0, ``out[:, C:] > 0`` exactly
    where x < 0. dout: (N, 2C, ...) -> dx: (N, C, ...).
    """
    out = cache.saved
    C = out.shape[1] // 2
    dx = _positive(out[:, :C])
    dx *= dout[:, :C]
    from_negative = _positive(out[:, C:])
    from_negative *= dout[:, C:]
    dx -= from_negative
    return dx


# ---------------------------------------------------------------------------- Swish
def _is_one(beta) -> bool:
    """True for the default beta = 1 given as a number (never reads an array: no device sync)."""
    return isinstance(beta, float) and beta == 1.0


def swish_forward(x, beta=1.0):
    """``x * sigmoid(beta * x)`` (Ramachandran et al., 2017, "Searching for Activation
    Functions"; beta = 1 is also known as SiLU). beta = 0 gives x / 2; as beta grows it tends
    to ReLU. x: any shape -> same shape. beta: a number, or a 1-element array for a trainable
    beta (kept in the cache as a 0-d array in x's dtype). The cache keeps x and beta only;
    backward recomputes the sigmoid, as PyTorch does, so it holds one array instead of two."""
    x = float_input(x, "swish_forward")
    if isinstance(beta, (int, float)):
        beta = float(beta)  # a numpy float64 would promote float32 input (see leaky_relu)
    else:
        beta = backend.get_array_module(x).asarray(beta, dtype=x.dtype).reshape(())
    return x * sigmoid(x if _is_one(beta) else beta * x), ActivationCache(x, beta)


def _swish_parts(cache):
    """``(s, g)`` with ``s = sigmoid(beta x)`` and ``g = x s (1 - s)``, shared by both
    derivatives: d/dx (x s) = s + beta g and d/dbeta (x s) = x g."""
    x, beta = cache
    s = sigmoid(x if _is_one(beta) else beta * x)
    g = 1 - s
    g *= s
    g *= x
    return s, g


def _swish_dx(dout, beta, s, g):
    """dx = dout * (s + beta g), computed in ``g``'s memory."""
    if not _is_one(beta):
        g *= beta
    g += s
    g *= dout
    return g


def swish_backward(dout, cache):
    """dx = dout * (s + beta x s (1 - s)) with s = sigmoid(beta x)."""
    s, g = _swish_parts(cache)
    return _swish_dx(dout, cache.param, s, g)


def swish_beta_backward(dout, cache):
    """Both gradients of a Swish with a trainable beta: ``(dx, dbeta)``.

    dx as in ``swish_backward``; dbeta = the sum over every element of ``dout * x^2 s (1 - s)``
    (d/dbeta of x sigmoid(beta x)), a 0-d array in x's dtype: one beta serves the whole input.
    """
    s, g = _swish_parts(cache)
    dbeta = (dout * cache.saved * g).sum()
    return _swish_dx(dout, cache.param, s, g), dbeta
