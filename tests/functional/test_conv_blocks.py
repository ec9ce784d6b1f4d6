"""im2col in blocks: any block size, kept or rebuilt patches, the tap clipping, memory, and
the edges (zero images, non-float input) of conv2d_forward/backward and Conv2d."""
import tracemalloc

import numpy as np
import pytest

from minidl import backend
from minidl.functional import conv
from minidl.functional._windows import clipped_taps, pad_hw
from minidl.functional.conv import METHODS, conv2d_backward, conv2d_forward
from minidl.layers import Conv2d

AGREE_TOL = 1e-10  # float64: block sizes and dx algorithms differ only by rounding

# (N, C, H, W, F, kernel, stride, padding, dilation, groups); together: partial last blocks,
# stride 2 (col2im), F > 2C at stride 1 (col2im), padding wider than the kernel reach
# (negative padding in the dx correlation), dilation, groups, depthwise.
CASES = [
    pytest.param(5, 3, 7, 6, 4, (3, 3), 1, 1, 1, 1, id="3x3-same"),
    pytest.param(5, 2, 7, 6, 5, (3, 3), 1, 1, 1, 1, id="F>2C-col2im"),
    pytest.param(3, 4, 9, 7, 6, (3, 2), 2, (1, 2), 1, 2, id="stride2-groups2"),
    pytest.param(4, 2, 6, 6, 3, (1, 1), 1, 2, 1, 1, id="1x1-pad2"),
    pytest.param(3, 3, 8, 9, 3, (3, 3), (1, 2), 2, (2, 1), 3, id="depthwise-dil"),
    pytest.param(2, 2, 5, 5, 2, (2, 3), 3, 0, 1, 1, id="stride3-gaps"),
]


def _arrays(N, C, H, W, F, kernel, groups, xp=np, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C // groups) + kernel)
    b = rng.standard_normal(F)
    return xp.asarray(x), xp.asarray(w), xp.asarray(b)


def _run(x, w, b, method="im2col", keep_patches=False, **hyper):
    out, cache = conv2d_forward(x, w, b, method=method, keep_patches=keep_patches, **hyper)
    xp = backend.get_array_module(out)
    dout = xp.asarray(np.random.default_rng(1).standard_normal(out.shape))
    return (out,) + conv2d_backward(dout, cache)


@pytest.mark.parametrize("N, C, H, W, F, kernel, stride, padding, dilation, groups", CASES)
def test_block_sizes_and_kept_patches_agree_with_loops(N, C, H, W, F, kernel, stride, padding,
                                                       dilation, groups, xp, monkeypatch):
    x, w, b = _arrays(N, C, H, W, F, kernel, groups, xp)
    hyper = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    reference = _run(x, w, b, method="loops", **hyper)
    for budget in (1, 2 * C * kernel[0] * kernel[1] * H * W * 8, 1 << 30):  # 1, ~2, N images
        monkeypatch.setattr(conv, "CPU_BLOCK_BYTES", budget)
        monkeypatch.setattr(conv, "GPU_BLOCK_BYTES", budget)
        for keep in (False, True):
            result = _run(x, w, b, keep_patches=keep, **hyper)
            for name, ref, got in zip(("out", "dx", "dw", "db"), reference, result):
                assert got.shape == ref.shape, (budget, keep, name)
                diff = float(xp.max(xp.abs(got - ref)))
                assert diff < AGREE_TOL, f"budget {budget} keep {keep}: {name} off by {diff:.2e}"


def test_kept_patches_survive_a_change_of_block_budget(monkeypatch):
    x, w, b = _arrays(7, 3, 6, 5, 4, (3, 3), 1)
    reference = _run(x, w, b, method="loops", padding=1)
    monkeypatch.setattr(conv, "CPU_BLOCK_BYTES", 1)  # one image per block
    out, cache = conv2d_forward(x, w, b, padding=1, keep_patches=True)
    monkeypatch.setattr(conv, "CPU_BLOCK_BYTES", 1 << 30)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    for ref, got in zip(reference, (out,) + conv2d_backward(dout, cache)):
        assert np.max(np.abs(got - ref)) < AGREE_TOL


def test_cache_holds_the_input_not_a_patch_matrix():
    x, w, b = _arrays(2, 3, 6, 6, 4, (3, 3), 1)
    _, cache = conv2d_forward(x, w, b, padding=1)
    assert not cache.patches_kept and cache.saved[0] is x
    _, cache = conv2d_forward(x, w, b, padding=1, keep_patches=True)
    assert cache.patches_kept
    assert sum(p.size for p in cache.saved[0]) == 3 * 9 * 2 * 36  # C*kh*kw * N*Ho*Wo
    _, cache = conv2d_forward(x, w, b, padding=1, method="fft", keep_patches=True)
    assert not cache.patches_kept  # only im2col builds patches


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("F", [16, 40], ids=["dx-correlation", "dx-col2im"])
def test_peak_memory_stays_far_below_the_patch_matrix(F, monkeypatch):
    budget = 256 << 10
    monkeypatch.setattr(conv, "CPU_BLOCK_BYTES", budget)
    N, C, H, W = 32, 16, 16, 16
    x, w, b = (a.astype(np.float32) for a in _arrays(N, C, H, W, F, (3, 3), 1))
    patch_bytes = N * C * 9 * H * W * 4
    out, _ = conv2d_forward(x, w, b, padding=1)
    dout = np.ones_like(out)

    def step(keep):
        def run():
            out, cache = conv2d_forward(x, w, b, padding=1, keep_patches=keep)
            conv2d_backward(dout, cache)
        return run

    # out, dx and a few block-sized buffers, well under the 4.5 MiB patch matrix
    bound = out.nbytes + x.nbytes + 4 * budget
    assert bound < 0.75 * patch_bytes
    assert _peak_bytes(step(False)) < bound
    assert _peak_bytes(step(True)) > patch_bytes


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("stride", [1, 2])
def test_a_batch_of_zero_images(method, stride, xp):
    x, w, b = _arrays(0, 4, 6, 5, 6, (3, 3), 2, xp)
    out, cache = conv2d_forward(x, w, b, stride=stride, padding=1, groups=2, method=method)
    Ho, Wo = (6 - 1) // stride + 1, (5 - 1) // stride + 1
    assert out.shape == (0, 6, Ho, Wo) and out.dtype == x.dtype
    dx, dw, db = conv2d_backward(xp.zeros(out.shape), cache)
    assert dx.shape == (0, 4, 6, 5) and dw.shape == w.shape and db.shape == (6,)
    assert float(xp.abs(dw).max()) == 0 and float(xp.abs(db).max()) == 0


def test_layer_takes_a_batch_of_zero_images():
    layer = Conv2d(3, 4, 3, padding=1, keep_patches=True)
    y = layer(np.zeros((0, 3, 8, 8), dtype=np.float32))
    assert y.shape == (0, 4, 8, 8)
    assert layer.backward(np.zeros_like(y)).shape == (0, 3, 8, 8)
    assert not layer.weight.grad.any()


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_])
@pytest.mark.parametrize("method", METHODS)
def test_non_float_input_is_refused(method, dtype):
    x = np.ones((1, 2, 4, 4), dtype=dtype)
    with pytest.raises(TypeError, match=rf"conv2d_forward: x must be a floating-point array.*"
                                        rf"got a {np.dtype(dtype)} array"):
        conv2d_forward(x, np.ones((1, 2, 3, 3)), None, method=method)
    layer = Conv2d(2, 1, 3, method=method)
    with pytest.raises(TypeError, match=r"^Conv2d\(2, 1, kernel_size=\(3, 3\).*floating-point"):
        layer(x)


def test_layer_keep_patches_option():
    rng = np.random.default_rng(0)
    kept = Conv2d(2, 3, 3, padding=1, keep_patches=True, rng=rng).astype(np.float64)
    plain = Conv2d(2, 3, 3, padding=1).astype(np.float64)
    plain.load_state_dict(kept.state_dict())
    assert "keep_patches=True" in repr(kept) and "keep_patches" not in repr(plain)
    x = rng.standard_normal((3, 2, 5, 4))
    dout = rng.standard_normal((3, 3, 5, 4))
    assert np.allclose(kept(x), plain(x), rtol=0, atol=1e-12)
    assert np.allclose(kept.backward(dout), plain.backward(dout), rtol=0, atol=1e-12)
    assert np.allclose(kept.weight.grad, plain.weight.grad, rtol=0, atol=1e-12)
    assert kept._cache.patches_kept and not plain._cache.patches_kept


@pytest.mark.parametrize("src, kernel, stride, padding, dilation", [
    ((7, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((9, 8), (3, 2), (2, 3), (2, 0), (2, 3)),
    ((5, 5), (3, 3), (1, 1), (-1, 3), (1, 1)),   # negative padding crops
    ((4, 6), (2, 2), (3, 1), (3, 2), (1, 2)),    # some taps see only padding
])
def test_clipped_taps_match_a_brute_force_sweep(src, kernel, stride, padding, dilation):
    out_hw = tuple((s + 2 * p - d * (k - 1) - 1) // st + 1
                   for s, k, st, p, d in zip(src, kernel, stride, padding, dilation))
    taps = {(t.row, t.col): t for t in clipped_taps(src, out_hw, kernel, stride, padding,
                                                    dilation)}
    for a in range(kernel[0]):
        for b in range(kernel[1]):
            pairs = [((i, j), (r, c)) for i in range(out_hw[0]) for j in range(out_hw[1])
                     for r, c in [(i * stride[0] + a * dilation[0] - padding[0],
                                   j * stride[1] + b * dilation[1] - padding[1])]
                     if 0 <= r < src[0] and 0 <= c < src[1]]
            if not pairs:
                assert (a, b) not in taps
                continue
            t = taps[(a, b)]
            outs = [(i, j) for i in range(out_hw[0])[t.out[0]] for j in range(out_hw[1])[t.out[1]]]
            srcs = [(r, c) for r in range(src[0])[t.src[0]] for c in range(src[1])[t.src[1]]]
            assert list(zip(outs, srcs)) == pairs


@pytest.mark.parametrize("value", [0, -np.inf])
def test_pad_hw_matches_np_pad(value, xp):
    x = xp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32))
    got = pad_hw(x, (2, 1), value)
    expected = np.pad(backend.asnumpy(x), ((0, 0), (0, 0), (2, 2), (1, 1)),
                      constant_values=value)
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(backend.asnumpy(got), expected)
    assert pad_hw(x, (0, 0)) is x


def test_a_zeroed_buffer_is_kept_for_its_shape_and_fresh_for_another():
    """``_zeroed`` (the patch buffer, whose padding entries no block writes): the same array
    while the shape holds, a new zero-filled one when it changes (a smaller last block)."""
    scratch, like = {}, np.zeros(1, np.float32)
    first = conv._zeroed(scratch, "patches", (2, 3), like)
    assert first.dtype == np.float32 and not first.any()
    first[0, 0] = 5.0  # a block's write
    assert conv._zeroed(scratch, "patches", (2, 3), like) is first
    smaller = conv._zeroed(scratch, "patches", (1, 3), like)
    assert not np.shares_memory(first, smaller) and not smaller.any()
