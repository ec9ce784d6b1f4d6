"""Winograd F(2x2, 3x3): gradient checks, agreement with loops (any block size, both kernel
paths), the transforms' matrices, float32 rounding, and the im2col fallback."""
import numpy as np
import pytest

from minidl import backend, kernels
from minidl.functional import _winograd, conv
from minidl.functional.conv import conv2d_backward, conv2d_forward
from minidl.gradcheck import numerical_gradient, rel_error

GRAD_TOL = 1e-6    # centred differences in float64 (as for the other methods)
AGREE_TOL = 1e-10  # float64: winograd and loops differ only by rounding
DEFAULT_MIN_CHANNELS = conv.WINOGRAD_MIN_CHANNELS  # before the fixture below lowers it

# (N, C, H, W, F, padding, groups): odd and even sizes (a last tile half outside the output),
# no padding, padding 2 and 3 (the dx correlation then crops dout), per-axis padding,
# groups 2, depthwise with a channel multiplier, an input smaller than one tile.
CASES = [
    pytest.param(2, 3, 5, 6, 4, 1, 1, id="odd-H-pad1"),
    pytest.param(3, 4, 7, 4, 6, 0, 2, id="pad0-groups2"),
    pytest.param(2, 2, 6, 6, 2, 2, 2, id="pad2-depthwise"),
    pytest.param(1, 2, 4, 5, 3, 3, 1, id="pad3"),
    pytest.param(2, 3, 3, 3, 6, (1, 0), 3, id="pad(1,0)-depthwise-x2"),
    pytest.param(2, 2, 9, 8, 4, (0, 2), 1, id="pad(0,2)"),
    pytest.param(2, 1, 3, 3, 2, 0, 1, id="one-output-pixel"),
]


@pytest.fixture(autouse=True)
def any_channel_count(monkeypatch):
    """Winograd on these small layers too (it leaves layers with few channels to im2col)."""
    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 1)


@pytest.fixture(params=["numpy", "numba"])
def kernel_mode(request, monkeypatch):
    """Each test on the NumPy reference transforms and, with numba, the compiled ones."""
    if request.param == "numba" and not kernels.numba_available():
        pytest.skip('numba not installed (pip install -e ".[fast]")')
    monkeypatch.setenv(kernels.ENV_VAR, request.param)
    return request.param


def _arrays(N, C, H, W, F, groups, xp=np, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C // groups, 3, 3))
    b = rng.standard_normal(F)
    return xp.asarray(x), xp.asarray(w), xp.asarray(b)


def _run(x, w, b, method, **hyper):
    out, cache = conv2d_forward(x, w, b, method=method, **hyper)
    xp = backend.get_array_module(out)
    dout = xp.asarray(np.random.default_rng(1).standard_normal(out.shape))
    return cache, (out,) + conv2d_backward(dout, cache)


@pytest.mark.parametrize("N, C, H, W, F, padding, groups", CASES)
def test_gradients_match_finite_differences(N, C, H, W, F, padding, groups, kernel_mode):
    x, w, b = _arrays(N, C, H, W, F, groups)
    hyper = dict(padding=padding, groups=groups, method="winograd")
    out, cache = conv2d_forward(x, w, b, **hyper)
    assert cache.method == "winograd"
    dout = np.random.default_rng(2).standard_normal(out.shape)
    dx, dw, db = conv2d_backward(dout, cache)

    def loss():
        return float(np.sum(conv2d_forward(x, w, b, **hyper)[0] * dout))

    assert rel_error(dx, numerical_gradient(loss, x)) < GRAD_TOL
    assert rel_error(dw, numerical_gradient(loss, w)) < GRAD_TOL
    assert rel_error(db, numerical_gradient(loss, b)) < GRAD_TOL


@pytest.mark.parametrize("N, C, H, W, F, padding, groups", CASES)
def test_agrees_with_loops_for_any_block_size(N, C, H, W, F, padding, groups, kernel_mode, xp,
                                              monkeypatch):
    x, w, b = _arrays(N, C, H, W, F, groups, xp)
    hyper = dict(padding=padding, groups=groups)
    _, reference = _run(x, w, b, "loops", **hyper)
    for budget in (1, 1 << 30):  # one image per block; the whole batch in one block
        monkeypatch.setattr(conv, "WINOGRAD_CPU_BLOCK_BYTES", budget)
        monkeypatch.setattr(conv, "WINOGRAD_GPU_BLOCK_BYTES", budget)
        cache, result = _run(x, w, b, "winograd", **hyper)
        assert cache.method == "winograd"
        for name, ref, got in zip(("out", "dx", "dw", "db"), reference, result):
            assert got.shape == ref.shape and got.dtype == ref.dtype, name
            diff = float(xp.max(xp.abs(got - ref)))
            assert diff < AGREE_TOL, f"budget {budget}: {name} off by {diff:.2e}"


@pytest.mark.parametrize("hyper", [dict(stride=2, padding=1), dict(dilation=2, padding=2),
                                   dict(kernel=(5, 5), padding=2), dict(kernel=(1, 1)),
                                   dict(min_channels=4), dict(min_channels=5)],
                         ids=["stride2", "dilation2", "5x5", "1x1", "3-channels", "4-filters"])
def test_other_shapes_run_im2col(hyper, monkeypatch):
    hyper = dict(hyper)
    kernel = hyper.pop("kernel", (3, 3))
    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", hyper.pop("min_channels", 1))
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 8, 7)), rng.standard_normal((4, 3) + kernel), None
    cache, result = _run(x, w, b, "winograd", **hyper)
    assert cache.method == "im2col"
    _, reference = _run(x, w, b, "loops", **hyper)
    for ref, got in zip(reference[:3], result[:3]):
        assert np.max(np.abs(got - ref)) < AGREE_TOL


def test_float32_rounding_stays_close_to_im2col(kernel_mode):
    """The transforms add up to 9 terms per value: float32 results stay within a few ulps
    (relative to the largest value) of im2col's on a vgg-like layer."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16, 12, 12)).astype(np.float32)
    w = (0.1 * rng.standard_normal((16, 16, 3, 3))).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    _, ours = _run(x, w, b, "winograd", padding=1)
    _, exact = _run(*(a.astype(np.float64) for a in (x, w, b)), "im2col", padding=1)
    for got, ref in zip(ours, exact):
        assert got.dtype == np.float32
        assert np.max(np.abs(got - ref)) / np.max(np.abs(ref)) < 1e-6


def test_transform_matrices_compute_a_3x3_correlation():
    """Y = A^T [(G g G^T) * (B^T d B)] A is the 2x2 valid correlation of a 4x4 tile d with g."""
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
    B, G, A = _winograd.B_T.T, _winograd.G, _winograd.A_T.T
    Y = A.T @ ((G @ g @ G.T) * (B.T @ d @ B)) @ A
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(Y, direct, rtol=0, atol=1e-12)


def test_filter_transform_is_G_g_Gt_per_filter_and_channel():
    """U[4a + b, group, f, c] = (G g G^T)[a, b] for the group's filter f and channel c."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 2, 3, 3))  # 2 groups of 3 filters
    U = _winograd.filter_transform(w, 2)
    assert U.shape == (16, 2, 3, 2)
    G = _winograd.G
    for f in range(6):
        for c in range(2):
            expected = (G @ w[f, c] @ G.T).reshape(16)
            np.testing.assert_allclose(U[:, f // 3, f % 3, c], expected, rtol=0, atol=1e-12)


def test_transform_adjoints_match_their_forward_maps():
    """<T(u), v> == <u, T*(v)> for the output transform and the filter transform: the
    backward pass's dW rests on these adjoints being exact."""
    rng = np.random.default_rng(0)
    tiles, (m, F, Ho, Wo) = (3, 2), (2, 3, 5, 4)
    M, dout = rng.standard_normal((16, F, m * 6)), rng.standard_normal((m, F, Ho, Wo))
    out = np.empty((m, F, Ho, Wo))
    _winograd.output_transform(M, tiles, out)
    lhs = np.sum(out * dout)
    assert abs(lhs - np.sum(M * _winograd.output_transform_adjoint(dout, tiles))) < 1e-10
    w, dU = rng.standard_normal((6, 2, 3, 3)), rng.standard_normal((16, 2, 3, 2))
    lhs = np.sum(_winograd.filter_transform(w, 2) * dU)
    assert abs(lhs - np.sum(w * _winograd.filter_transform_adjoint(dU))) < 1e-10


def test_layers_as_wide_as_vgg38s_run_winograd_by_default(monkeypatch):
    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", DEFAULT_MIN_CHANNELS)
    x = np.zeros((1, 32, 4, 4), dtype=np.float32)
    _, cache = conv2d_forward(x, np.zeros((32, 32, 3, 3)), None, padding=1, method="winograd")
    assert cache.method == "winograd"
    _, cache = conv2d_forward(x[:, :3], np.zeros((32, 3, 3, 3)), None, padding=1,
                              method="winograd")
    assert cache.method == "im2col"  # vgg38's first layer: 3 input channels


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_blocks_shared_out_to_threads_give_the_same_result(threads, kernel_mode, monkeypatch):
    x, w, b = _arrays(7, 4, 6, 5, 4, 2)
    _, reference = _run(x, w, b, "loops", padding=1, groups=2)
    monkeypatch.setattr(conv, "WINOGRAD_CPU_BLOCK_BYTES", 1)  # one image per block
    monkeypatch.setattr(conv, "SERIAL_BELOW", 0)
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", str(threads))
    _, result = _run(x, w, b, "winograd", padding=1, groups=2)
    for name, ref, got in zip(("out", "dx", "dw", "db"), reference, result):
        diff = float(np.max(np.abs(got - ref)))
        assert diff < AGREE_TOL, f"{threads} threads: {name} off by {diff:.2e}"


@pytest.mark.parametrize("threads", [2, 3])
def test_thread_count_changes_no_bit_of_the_result(threads, kernel_mode, monkeypatch):
    """dW sums its blocks in fixed chunks, added in order, so runs reproduce bit for bit on
    any thread setting (resume and the Ray-vs-serial studies compare results exactly)."""
    x, w, b = (a.astype(np.float32) for a in _arrays(11, 4, 6, 5, 4, 2))
    monkeypatch.setattr(conv, "WINOGRAD_CPU_BLOCK_BYTES", 1)  # one image per block: 6 chunks
    monkeypatch.setattr(conv, "SERIAL_BELOW", 0)
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "1")
    _, one = _run(x, w, b, "winograd", padding=1, groups=2)
    monkeypatch.setenv("MINIDL_KERNEL_THREADS", str(threads))
    _, shared = _run(x, w, b, "winograd", padding=1, groups=2)
    for got, want in zip(shared, one):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode, expected", [("numpy", "im2col"), ("numba", "winograd")])
def test_auto_runs_winograd_only_where_the_compiled_transforms_do(mode, expected, monkeypatch):
    """'auto' (the layers' default) takes Winograd only with numba's kernels: its NumPy
    transforms are slower than im2col. Either way the numbers equal loops'."""
    if mode == "numba" and not kernels.numba_available():
        pytest.skip('numba not installed (pip install -e ".[fast]")')
    monkeypatch.setenv(kernels.ENV_VAR, mode)
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    dout = rng.standard_normal((2, 4, 6, 5))
    out, cache = conv2d_forward(x, w, b, 1, 1, method="auto")
    assert cache.method == expected
    ref, ref_cache = conv2d_forward(x, w, b, 1, 1, method="loops")
    assert rel_error(out, ref) < AGREE_TOL
    for got, want in zip(conv2d_backward(dout, cache), conv2d_backward(dout, ref_cache)):
        assert rel_error(got, want) < AGREE_TOL
    _, strided = conv2d_forward(x, w, b, 2, 1, method="auto")  # stride 2: im2col on both paths
    assert strided.method == "im2col"


def test_auto_on_a_gpu_array_is_im2col(monkeypatch):
    """'auto' follows ``kernels.active``, which is False for CuPy arrays (tests/kernels): forced
    False here, a winograd-sized layer runs im2col."""
    monkeypatch.setattr(kernels, "active", lambda *arrays: False)
    x, w = np.ones((1, 16, 4, 4)), np.ones((16, 16, 3, 3))
    assert conv2d_forward(x, w, None, 1, 1, method="auto")[1].method == "im2col"


def test_an_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown method 'fast'.*'winograd', 'auto'"):
        conv2d_forward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), None, method="fast")


def test_scratch_buffers_are_reused_and_grown():
    """``_front`` hands a thread's blocks views of one flat buffer per key, grown only when a
    block needs more (so blocks stop allocating), each view contiguous and of its shape."""
    scratch, like = {}, np.zeros(1, np.float32)
    first = conv._front(scratch, "V", (16, 4, 10), like)
    assert first.shape == (16, 4, 10) and first.flags.c_contiguous and first.dtype == np.float32
    smaller = conv._front(scratch, "V", (16, 4, 3), like)  # a last, smaller block
    assert np.shares_memory(first, smaller) and smaller.flags.c_contiguous
    other = conv._front(scratch, "M", (16, 4, 10), like)
    assert not np.shares_memory(first, other)
    grown = conv._front(scratch, "V", (16, 4, 11), like)
    assert grown.shape == (16, 4, 11) and not np.shares_memory(first, grown)
    assert conv._front(scratch, "V", (16, 4, 10), like).base is grown.base


def test_the_bias_is_added_to_the_finished_outputs(kernel_mode):
    """Winograd adds the bias inside its output transform, block by block: the same float32
    sums as adding it to the bias-free output afterwards, bit for bit."""
    x, w, b = (a.astype(np.float32) for a in _arrays(3, 4, 7, 6, 4, 1))
    with_bias, cache = conv2d_forward(x, w, b, padding=1, method="winograd")
    without, _ = conv2d_forward(x, w, None, padding=1, method="winograd")
    assert cache.method == "winograd"
    np.testing.assert_array_equal(with_bias, without + b.reshape(1, -1, 1, 1))
