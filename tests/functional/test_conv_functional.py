"""conv2d_forward/backward: gradient checks, the three methods agree, PyTorch, dtypes, errors."""
import itertools

import numpy as np
import pytest

from minidl import backend
from minidl.functional.conv import METHODS, conv2d_backward, conv2d_forward
from minidl.gradcheck import numerical_gradient, rel_error

GRAD_TOL = 1e-6    # centred differences in float64 on a smooth (bilinear) op
AGREE_TOL = 1e-10  # the methods differ only by float64 rounding

# (C, F, kernel, stride, padding, dilation, groups) on tiny non-square inputs; together they
# cover 1x1 / 3x3 / 2x3 kernels, strides, paddings and dilations (also per-axis), groups 2
# and depthwise (groups == C, with and without a channel multiplier).
GRAD_CASES = [
    pytest.param(2, 3, (1, 1), 1, 0, 1, 1, id="1x1"),
    pytest.param(2, 2, (1, 1), 2, 1, 1, 1, id="1x1-stride2-pad1"),
    pytest.param(2, 2, (3, 3), 1, 1, 1, 1, id="3x3-same"),
    pytest.param(2, 2, (3, 3), 2, 1, 2, 1, id="3x3-stride2-dil2"),
    pytest.param(2, 2, (2, 3), (2, 1), (1, 0), 1, 1, id="2x3-stride(2,1)"),
    pytest.param(4, 2, (3, 3), 1, (0, 1), (1, 2), 2, id="3x3-groups2-dil(1,2)"),
    pytest.param(3, 3, (3, 3), (1, 2), 1, 1, 3, id="depthwise"),
    pytest.param(2, 4, (2, 3), 1, 1, 1, 2, id="depthwise-x2"),
]


def _arrays(rng, N, C, H, W, F, kernel, groups, bias, xp=np):
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C // groups) + tuple(kernel))
    b = rng.standard_normal(F) if bias else None
    return xp.asarray(x), xp.asarray(w), (None if b is None else xp.asarray(b))


def _run(method, x, w, b, dout_seed=1, **hyper):
    out, cache = conv2d_forward(x, w, b, method=method, **hyper)
    xp = backend.get_array_module(out)
    dout = xp.asarray(np.random.default_rng(dout_seed).standard_normal(out.shape))
    return (out,) + conv2d_backward(dout, cache)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("C, F, kernel, stride, padding, dilation, groups", GRAD_CASES)
@pytest.mark.parametrize("method", METHODS)
def test_gradients_match_finite_differences(method, C, F, kernel, stride, padding, dilation,
                                            groups, bias, rng):
    x, w, b = _arrays(rng, 2, C, 5, 6, F, kernel, groups, bias)
    hyper = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    out, cache = conv2d_forward(x, w, b, method=method, **hyper)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv2d_backward(dout, cache)

    def loss():
        return float(np.sum(conv2d_forward(x, w, b, method=method, **hyper)[0] * dout))

    assert rel_error(dx, numerical_gradient(loss, x)) < GRAD_TOL
    assert rel_error(dw, numerical_gradient(loss, w)) < GRAD_TOL
    if bias:
        assert rel_error(db, numerical_gradient(loss, b)) < GRAD_TOL
    else:
        assert db is None


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("groups", ["1", "2", "depthwise"])
@pytest.mark.parametrize("stride, padding, dilation",
                         [(1, 0, 1), (2, 1, 1), ((2, 1), (1, 2), (2, 1)), (1, 2, 2), (3, 1, 1)])
@pytest.mark.parametrize("kernel", [(1, 1), (3, 3), (2, 3)], ids=["1x1", "3x3", "2x3"])
def test_the_methods_agree(kernel, stride, padding, dilation, groups, bias, xp):
    N, C, H, W = 2, 4, 9, 7
    G = {"1": 1, "2": 2, "depthwise": C}[groups]
    F = 2 * C if groups == "depthwise" else 6
    x, w, b = _arrays(np.random.default_rng(3), N, C, H, W, F, kernel, G, bias, xp)
    hyper = dict(stride=stride, padding=padding, dilation=dilation, groups=G)
    reference = _run("loops", x, w, b, **hyper)
    for method in ("im2col", "fft", "winograd"):  # winograd: im2col unless 3x3 at stride 1
        result = _run(method, x, w, b, **hyper)
        for name, ref, got in zip(("out", "dx", "dw", "db"), reference, result):
            if ref is None:
                assert got is None
                continue
            assert got.shape == ref.shape, (method, name)
            diff = float(xp.max(xp.abs(got - ref)))
            assert diff < AGREE_TOL, f"{method} {name} differs from loops by {diff:.2e}"


@pytest.mark.parametrize("N, C, H, W, F, kernel, stride, padding, dilation, groups", [
    (2, 3, 8, 6, 5, (3, 3), 1, 1, 1, 1),
    (3, 4, 11, 9, 6, (2, 3), (2, 1), (1, 2), (1, 2), 2),
    (2, 6, 10, 10, 6, (3, 3), 2, 1, 1, 6),
    (1, 2, 7, 12, 4, (1, 1), 3, 0, 1, 1),
    (2, 4, 13, 8, 8, (3, 2), 2, 2, 3, 4),
])
@pytest.mark.parametrize("method", METHODS)
def test_matches_torch(method, N, C, H, W, F, kernel, stride, padding, dilation, groups, rng):
    torch = pytest.importorskip("torch")
    x, w, b = _arrays(rng, N, C, H, W, F, kernel, groups, True)
    out, dx, dw, db = _run(method, x, w, b, stride=stride, padding=padding, dilation=dilation,
                           groups=groups)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride, padding, dilation, groups)
    yt.backward(torch.tensor(np.random.default_rng(1).standard_normal(out.shape)))
    assert rel_error(out, yt.detach().numpy()) < AGREE_TOL
    assert rel_error(dx, xt.grad.numpy()) < AGREE_TOL
    assert rel_error(dw, wt.grad.numpy()) < AGREE_TOL
    assert rel_error(db, bt.grad.numpy()) < AGREE_TOL


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", METHODS)
def test_dtype_follows_input(method, dtype, xp):
    x, w, b = _arrays(np.random.default_rng(0), 2, 4, 6, 5, 4, (3, 3), 2, True, xp)
    x32 = x.astype(dtype)
    w32, b32 = w.astype(np.float32), b.astype(np.float32)  # parameters are float32 by default
    results = _run(method, x32, w32, b32, padding=1, groups=2)
    assert all(r.dtype == dtype for r in results), [r.dtype for r in results]
    exact = _run(method, x32.astype(np.float64), w32.astype(np.float64), b32.astype(np.float64),
                 padding=1, groups=2)
    for got, ref in zip(results, exact):
        assert rel_error(got, ref) < 1e-5


@pytest.mark.parametrize("method", METHODS)
def test_backward_leaves_dout_and_inputs_untouched(method, rng):
    x, w, b = _arrays(rng, 2, 2, 5, 4, 2, (3, 3), 1, True)
    saved = [a.copy() for a in (x, w, b)]
    out, cache = conv2d_forward(x, w, b, padding=1, stride=(1, 2), method=method)
    dout = rng.standard_normal(out.shape)
    dout_given = dout.copy()
    conv2d_backward(dout, cache)
    conv2d_backward(dout, cache)  # a second backward through the same cache also works
    assert np.array_equal(dout, dout_given)
    for before, after in zip(saved, (x, w, b)):
        assert np.array_equal(before, after)


# ----------------------------------------------------------------------------- bad input
def _x(*shape):
    return np.zeros(shape)


@pytest.mark.parametrize("x, w, b, hyper, pattern", [
    (_x(2, 3, 5, 5), _x(4, 2, 3, 3), None, {},
     r"expects x of shape \(N, 2, H, W\), got x of shape \(2, 3, 5, 5\)"),
    (_x(2, 3, 5, 5), _x(4, 1, 3, 3), None, {"groups": 2}, r"groups=2 must divide.*\(2, 3, 5, 5\)"),
    (_x(2, 4, 5, 5), _x(3, 2, 3, 3), None, {"groups": 2}, r"groups=2 must divide.*\(3, 2, 3, 3\)"),
    (_x(1, 1, 4, 4), _x(1, 1, 3, 3), None, {"dilation": 2},
     r"spans \(5, 5\), larger than the padded input \(4, 4\)"),
    (_x(1, 1, 2, 6), _x(1, 1, 3, 3), None, {}, r"larger than the padded input \(2, 6\)"),
    (_x(3, 5, 5), _x(4, 3, 3, 3), None, {}, r"expected x of shape \(N, C, H, W\), got \(3, 5, 5\)"),
    (_x(2, 3, 5, 5), _x(4, 3, 3), None, {}, r"expected w of shape .*got \(4, 3, 3\)"),
    (_x(2, 3, 5, 5), _x(4, 3, 3, 3), _x(3), {}, r"expected b of shape \(4,\), got \(3,\)"),
    (_x(2, 3, 5, 5), _x(4, 3, 3, 3), None, {"stride": 0}, "stride must be positive"),
    (_x(2, 3, 5, 5), _x(4, 3, 3, 3), None, {"padding": -1}, "padding must be non-negative"),
    (_x(2, 3, 5, 5), _x(4, 3, 3, 3), None, {"dilation": (1, 0)}, "dilation must be positive"),
    (_x(2, 3, 5, 5), _x(4, 3, 3, 3), None, {"groups": 0}, "groups must be a positive int"),
    (_x(2, 3, 5, 5), _x(4, 3, 3, 3), None, {"stride": (1, 2, 3)},
     "stride must be an int or a pair"),
])
@pytest.mark.parametrize("method", METHODS)
def test_bad_input_raises_value_error(method, x, w, b, hyper, pattern):
    with pytest.raises(ValueError, match=pattern):
        conv2d_forward(x, w, b, method=method, **hyper)


def test_padding_makes_room_for_the_kernel():
    out, _ = conv2d_forward(_x(1, 1, 4, 4), _x(1, 1, 3, 3), None, padding=1, dilation=2)
    assert out.shape == (1, 1, 2, 2)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError,
                       match=r"unknown method 'direct'.*'loops', 'im2col', 'fft', 'winograd'"):
        conv2d_forward(_x(1, 1, 4, 4), _x(1, 1, 3, 3), None, method="direct")


@pytest.mark.parametrize("method", METHODS)
def test_backward_rejects_wrong_dout_shape(method):
    out, cache = conv2d_forward(_x(2, 1, 4, 4), _x(3, 1, 3, 3), None, method=method)
    pattern = r"expected dout of shape \(2, 3, 2, 2\), got \(2, 3, 4, 4\)"
    with pytest.raises(ValueError, match=pattern):
        conv2d_backward(_x(2, 3, 4, 4), cache)


def test_output_size_formula_on_a_non_square_grid():
    cases = itertools.product([(7, 10)], [1, 2, 3], [0, 1, 2], [1, 2])
    for (H, W), stride, padding, dilation in cases:
        out, _ = conv2d_forward(_x(1, 1, H, W), _x(1, 1, 2, 3), None, stride, padding, dilation)
        Ho = (H + 2 * padding - dilation * 1 - 1) // stride + 1
        Wo = (W + 2 * padding - dilation * 2 - 1) // stride + 1
        assert out.shape == (1, 1, Ho, Wo)
