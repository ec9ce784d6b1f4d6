"""Pooling ops against a per-window loop reference, including overlapping windows and ties."""
import numpy as np
import pytest

from minidl import backend
from minidl.functional import pooling as F

# (kernel, stride, padding): non-overlapping, overlapping with and without padding, rectangular.
GEOMETRIES = [(2, 2, 0), (3, 1, 0), (3, 1, 1), (3, 2, 1), ((3, 2), (2, 1), (1, 1))]


def _loop_pool(x, kernel, stride, padding, dout, reduce):
    """Reference pooling by explicit loops over every window (slow, obviously right).

    Returns (out, dx); the backward sends dout to the first maximum (max) or spreads it
    evenly over the kh*kw window including padding (mean, count_include_pad=True).
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    N, C, H, W = x.shape
    fill = -np.inf if reduce == "max" else 0.0
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    out = np.zeros((N, C, Ho, Wo))
    dxpad = np.zeros(xpad.shape)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    win = xpad[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    grad = dxpad[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    if reduce == "max":
                        out[n, c, i, j] = win.max()
                        a, b = np.unravel_index(np.argmax(win), win.shape)
                        grad[a, b] += dout[n, c, i, j]
                    else:
                        out[n, c, i, j] = win.mean()
                        grad += dout[n, c, i, j] / (kh * kw)
    return out, dxpad[:, :, ph:ph + H, pw:pw + W]


def _pairs(k, s, p):
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    return pair(k), pair(s), pair(p)


@pytest.mark.parametrize("reduce", ["max", "avg"])
@pytest.mark.parametrize("k,s,p", GEOMETRIES)
def test_matches_loop_reference(xp, rng, reduce, k, s, p):
    x = rng.standard_normal((2, 3, 7, 6))
    forward, backward = ((F.maxpool2d_forward, F.maxpool2d_backward) if reduce == "max"
                         else (F.avgpool2d_forward, F.avgpool2d_backward))
    out, cache = forward(xp.asarray(x), k, s, p)
    dout = rng.standard_normal(out.shape)
    dx = backward(xp.asarray(dout), cache)
    ref_out, ref_dx = _loop_pool(x, *_pairs(k, s, p), dout, reduce)
    np.testing.assert_allclose(backend.asnumpy(out), ref_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(backend.asnumpy(dx), ref_dx, rtol=1e-12, atol=1e-12)


def test_overlapping_windows_add_their_gradients():
    # 3x3 stride 1 on a 4x4 input: the centre pixels lie in all four windows.
    x = np.zeros((1, 1, 4, 4))
    _, cache = F.avgpool2d_forward(x, 3, 1, 0)
    dx = F.avgpool2d_backward(np.ones((1, 1, 2, 2)), cache)
    counts = np.array([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]]) / 9
    np.testing.assert_allclose(dx[0, 0], counts)
    # One global maximum in the centre wins every window: its gradient is the sum of all four.
    x[0, 0, 1, 1] = 5.0
    x += np.arange(16).reshape(1, 1, 4, 4) * 1e-3
    _, cache = F.maxpool2d_forward(x, 3, 1, 0)
    dx = F.maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    assert dx[0, 0, 1, 1] == 10.0 and dx.sum() == 10.0


def test_max_ties_route_to_first_maximum():
    x = np.ones((1, 1, 2, 2))
    out, cache = F.maxpool2d_forward(x, 2)
    dx = F.maxpool2d_backward(np.full((1, 1, 1, 1), 3.0), cache)
    np.testing.assert_array_equal(dx[0, 0], [[3.0, 0.0], [0.0, 0.0]])


def test_max_padding_never_wins():
    x = -np.ones((1, 1, 3, 3)) * 7  # all negative: a zero pad would win, -inf must not
    out, _ = F.maxpool2d_forward(x, 3, 2, 1)
    np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), -7.0))


def test_avg_counts_padding_in_divisor():
    out, _ = F.avgpool2d_forward(np.ones((1, 1, 2, 2)), 3, 1, 1)
    np.testing.assert_allclose(out[0, 0], np.full((2, 2), 4 / 9))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_follows_input(dtype, rng):
    x = rng.standard_normal((2, 2, 5, 5)).astype(dtype)
    for forward, backward in [(F.maxpool2d_forward, F.maxpool2d_backward),
                              (F.avgpool2d_forward, F.avgpool2d_backward)]:
        out, cache = forward(x, 3, 2, 1)
        assert out.dtype == dtype
        assert backward(np.ones(out.shape, dtype=np.float64), cache).dtype == dtype
    out, cache = F.global_avgpool2d_forward(x)
    assert out.dtype == dtype and F.global_avgpool2d_backward(out, cache).dtype == dtype


def test_global_avgpool(xp, rng):
    x = rng.standard_normal((3, 4, 5, 6))
    out, cache = F.global_avgpool2d_forward(xp.asarray(x))
    np.testing.assert_allclose(backend.asnumpy(out), x.mean(axis=(2, 3)), rtol=1e-12)
    dout = rng.standard_normal((3, 4))
    dx = backend.asnumpy(F.global_avgpool2d_backward(xp.asarray(dout), cache))
    np.testing.assert_allclose(dx, np.broadcast_to(dout[:, :, None, None] / 30, x.shape))


@pytest.mark.parametrize("kwargs,match", [
    ({"kernel_size": 0}, "kernel_size must be positive"),
    ({"kernel_size": 2, "stride": 0}, "stride must be positive"),
    ({"kernel_size": 2, "padding": -1}, "non-negative"),
    ({"kernel_size": 3, "padding": 2}, "at most half"),
    ({"kernel_size": (2, 3), "padding": (1, 2)}, "at most half"),
    ({"kernel_size": "big"}, "kernel_size must be an int"),
])
def test_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.check_pool_params(**kwargs, who="pool")


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"larger than the padded input \(4, 4\)"):
        F.maxpool2d_forward(np.zeros((1, 1, 2, 2)), 5, 1, 1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got \(2, 2\)"):
        F.avgpool2d_forward(np.zeros((2, 2)), 2)
