"""The compiled Winograd transforms against the NumPy reference (minidl.functional._winograd),
float32 and float64, with padding, cropping, odd sizes and non-contiguous blocks."""
import numpy as np
import pytest

from minidl.functional import _winograd as reference

TOL = {np.float32: 1e-6, np.float64: 1e-14}  # relative to the largest value; rounding only

# (m, C, H, W, padding, out_hw): the forward (pad 1, 0, 2), dx's correlation (pad 2 - p,
# negative crops), odd outputs whose last tiles reach past the edge, a 1-pixel output.
SHAPES = [
    (3, 4, 8, 8, (1, 1), (8, 8)),
    (2, 3, 7, 5, (0, 0), (5, 3)),
    (2, 2, 5, 6, (2, 2), (7, 8)),
    (1, 3, 9, 8, (-1, 0), (5, 6)),
    (2, 2, 3, 3, (0, 0), (1, 1)),
    (1, 2, 4, 7, (1, 2), (4, 9)),
]


@pytest.fixture
def compiled(numba_kernels):
    from minidl.kernels import conv
    return conv


def _close(got, ref, dtype):
    assert got.dtype == dtype and got.shape == ref.shape
    scale = max(float(np.max(np.abs(ref))), 1.0)
    assert float(np.max(np.abs(got - ref))) <= TOL[dtype] * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, C, H, W, padding, out_hw", SHAPES)
def test_input_transform(compiled, m, C, H, W, padding, out_hw, dtype):
    src = np.random.default_rng(0).standard_normal((m + 1, C, H, W)).astype(dtype)[1:]
    tiles = reference.tiles_for(out_hw)
    _close(compiled.input_transform(src, padding, tiles),
           reference.input_transform(src, padding, tiles), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, C, H, W, padding, out_hw", SHAPES)
def test_output_transform_and_its_adjoint(compiled, m, C, H, W, padding, out_hw, dtype):
    rng = np.random.default_rng(1)
    tiles = reference.tiles_for(out_hw)
    M = rng.standard_normal((16, C, m * tiles[0] * tiles[1])).astype(dtype)
    ref = np.full((m, C) + out_hw, np.nan, dtype=dtype)
    reference.output_transform(M, tiles, ref)
    got = np.full((m, C) + out_hw, np.nan, dtype=dtype)
    compiled.output_transform(M, tiles, got)
    _close(got, ref, dtype)  # every output written (no NaN left), the same values
    strided = np.full((m, 2 * C) + out_hw, np.nan, dtype=dtype)[:, ::2]  # a non-contiguous out
    compiled.output_transform(M, tiles, strided)
    _close(strided, ref, dtype)
    bias = rng.standard_normal(C).astype(dtype)
    with_bias = ref + bias.reshape(-1, 1, 1)  # the bias added to each finished output
    reference.output_transform(M, tiles, ref, bias)
    np.testing.assert_array_equal(ref, with_bias)
    for target in (got, strided):
        compiled.output_transform(M, tiles, target, bias)
        _close(target, with_bias, dtype)

    dout = rng.standard_normal((m, C) + out_hw).astype(dtype)
    _close(compiled.output_transform_adjoint(dout, tiles),
           reference.output_transform_adjoint(dout, tiles), dtype)


@pytest.mark.parametrize("impl", ["reference", "compiled"])
def test_transforms_write_into_a_given_buffer(impl, request):
    """With ``out`` (a flat buffer, as conv's per-thread scratch passes) the transforms write
    there and return a view of it, with the values they return without one."""
    module = reference if impl == "reference" else request.getfixturevalue("compiled")
    rng = np.random.default_rng(2)
    src = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
    tiles = reference.tiles_for((7, 5))
    size = 16 * 3 * 2 * tiles[0] * tiles[1]
    for transform, args in ((module.input_transform, (src, (1, 1), tiles)),
                            (module.output_transform_adjoint, (src, tiles))):
        want = transform(*args)
        buffer = np.full(size + 5, np.nan, dtype=np.float32)  # longer than needed: a prefix
        got = transform(*args, out=buffer[:size])
        assert np.shares_memory(got, buffer) and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert np.isnan(buffer[size:]).all()  # nothing written past the prefix
