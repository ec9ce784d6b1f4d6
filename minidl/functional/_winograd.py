"""Winograd's minimal filtering F(2x2, 3x3) for 3x3 convolutions at stride 1 (Lavin & Gray,
2016, "Fast Algorithms for Convolutional Neural Networks").

A 2x2 block of outputs depends on a 4x4 tile ``d`` of the (padded) input. Winograd's
transforms compute it with 16 multiplies instead of 36:

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (* elementwise; g: one 3x3 filter)

Summed over input channels, the 16 elementwise products become 16 matrix products
(one per position of the 4x4 transformed tile), so the work is three cheap transforms and
16 GEMMs of (F, C) @ (C, tiles): 2.25x fewer multiplies than im2col's one GEMM. Tiles
start every 2 pixels; the last row and column of tiles may reach past the output (odd sizes)
and those outputs are dropped. Shapes below: a block of m images has ``th x tw`` tiles
each, ``T = m*th*tw`` columns; transformed arrays are (16, channels, T), rows of the 4x4
tile position ordered (a, b).

This file is the NumPy reference: each transform applies its small matrix to the 4 (or 2)
rows of every tile at once, then to the columns, as sums of strided slices (``einsum`` on
tile views was 20x slower). ``minidl.kernels.conv`` computes the same transforms in one
compiled pass.
"""
from __future__ import annotations

import numpy as np

from .. import backend

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])  # input
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])        # filter
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])                                # output


def tiles_for(out_hw: tuple[int, int]) -> tuple[int, int]:
    """Tiles per image along H and W: each covers 2x2 outputs."""
    return (out_hw[0] + 1) // 2, (out_hw[1] + 1) // 2


def _const(matrix, like):
    """A transform matrix in the array module and dtype of ``like``."""
    return backend.get_array_module(like).asarray(matrix, dtype=like.dtype)


def filter_transform(w, groups: int):
    """U = G g G^T for every filter and channel. w: (F, Cg, 3, 3) -> (16, groups, Fg, Cg).

    Two ``tensordot`` calls (one GEMM each) rather than one ``einsum``: 3-4x faster on the
    vgg38 layer's 32x32 filters (0.06 against 0.19 ms), paid twice per layer and step.
    """
    F, Cg = w.shape[:2]
    xp = backend.get_array_module(w)
    G_ = _const(G, w)
    wG = xp.tensordot(w, G_, axes=([3], [1]))    # g G^T: (F, Cg, 3, 4), axes (f, c, p, b)
    U = xp.tensordot(G_, wG, axes=([1], [2]))    # G (g G^T): (4, F, Cg, 4), axes (a, f, c, b)
    return xp.ascontiguousarray(U.transpose(0, 3, 1, 2)).reshape(16, groups, F // groups, Cg)


def filter_transform_adjoint(dU):
    """The weight gradient from U's: dg = G^T dU G. dU: (16, groups, Fg, Cg) -> (F, Cg, 3, 3)."""
    xp = backend.get_array_module(dU)
    _, groups, Fg, Cg = dU.shape
    G_ = _const(G, dU)
    dU = dU.reshape(4, 4, groups * Fg, Cg)
    t = xp.tensordot(G_, dU, axes=([0], [0]))    # G^T dU: (3, 4, F, Cg), axes (p, b, f, c)
    dg = xp.tensordot(t, G_, axes=([1], [0]))    # (G^T dU) G: (3, F, Cg, 3), axes (p, f, c, q)
    return xp.ascontiguousarray(dg.transpose(1, 2, 0, 3))


def padded_region(src, padding: tuple[int, int], size: tuple[int, int]):
    """src: (m, C, Hs, Ws) placed in a zero (m, C, *size) array: pixel (r, c) of the result is
    src[r - ph, c - pw] where that exists, else 0 (a negative padding crops src)."""
    xp = backend.get_array_module(src)
    (ph, pw), (Hs, Ws) = padding, src.shape[2:]
    region = xp.zeros(src.shape[:2] + tuple(size), dtype=src.dtype)
    r0, r1 = max(ph, 0), min(size[0], Hs + ph)   # rows of region that hold a src pixel
    c0, c1 = max(pw, 0), min(size[1], Ws + pw)
    if r0 < r1 and c0 < c1:
        region[:, :, r0:r1, c0:c1] = src[:, :, r0 - ph:r1 - ph, c0 - pw:c1 - pw]
    return region


def _combine(matrix, parts):
    """``matrix @ parts`` for a list of arrays: ``[sum_i matrix[a, i] * parts[i] for a]``,
    zero coefficients skipped and +-1 as additions (the transforms are mostly those)."""
    out = []
    for row in matrix:
        total = None
        for coef, part in zip(row, parts):
            if coef == 0:
                continue
            term = part if coef == 1 else -part if coef == -1 else coef * part
            total = term if total is None else total + term
        out.append(total)
    return out


def out_array(out, shape, like):
    """``out`` (a contiguous buffer to write into) viewed as ``shape``, or a new array (dtype
    and module of ``like``): where a transform writes, here and in ``kernels.conv``."""
    xp = backend.get_array_module(like)
    return xp.empty(shape, dtype=like.dtype) if out is None else out.reshape(shape)


def input_transform(src, padding: tuple[int, int], tiles: tuple[int, int], out=None):
    """V = B^T d B for every 4x4 tile d of src zero-padded by ``padding``; tile (i, j) starts
    at padded pixel (2i, 2j). src: (m, C, Hs, Ws) -> V: (16, C, m*th*tw), columns (n, i, j),
    written into ``out`` (contiguous, 16*C*m*th*tw values) when given."""
    (th, tw), (m, C) = tiles, src.shape[:2]
    region = padded_region(src, padding, (2 * th + 2, 2 * tw + 2))
    V = out_array(out, (16, C, m, th, tw), src)
    # row a of every tile at once: padded rows a, a+2, ... (m, C, th, 2*tw+2)
    rows = _combine(B_T, [region[:, :, a:a + 2 * th:2] for a in range(4)])       # B^T d
    planes = (v for r in rows for v in _combine(B_T, [r[..., b:b + 2 * tw:2] for b in range(4)]))
    for k, v in enumerate(planes):                                               # (B^T d) B
        V[k] = v.transpose(1, 0, 2, 3)
    return V.reshape(16, C, m * th * tw)


def output_transform(M, tiles: tuple[int, int], out, bias=None):
    """Y = A^T M A for every tile, written into out: (m, F, Ho, Wo) (tile outputs beyond
    Ho, Wo dropped), plus bias (F,) when given. M: (16, F, m*th*tw)."""
    (th, tw), (m, F) = tiles, out.shape[:2]
    M = M.reshape(4, 4, F, m, th, tw).transpose(0, 1, 3, 2, 4, 5)  # (4, 4, m, F, th, tw)
    for i, r in enumerate(_combine(A_T, [M[a] for a in range(4)])):             # A^T M
        for j, y in enumerate(_combine(A_T, [r[b] for b in range(4)])):          # (A^T M) A
            target = out[:, :, i::2, j::2]  # output (2*ti + i, 2*tj + j) of every tile
            target[...] = y[:, :, :target.shape[2], :target.shape[3]]
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)


def output_transform_adjoint(dout, tiles: tuple[int, int], out=None):
    """The gradient of M given dout: A dY A^T for every 2x2 tile dY of dout (zero beyond its
    edge). dout: (m, F, Ho, Wo) -> (16, F, m*th*tw), written into ``out`` when given."""
    (th, tw), (m, F) = tiles, dout.shape[:2]
    dY = padded_region(dout, (0, 0), (2 * th, 2 * tw))
    dM = out_array(out, (16, F, m, th, tw), dout)
    A = A_T.T
    cols = [_combine(A, [dY[:, :, i::2, j::2] for i in range(2)]) for j in range(2)]  # A dY
    planes = (v for a in range(4) for v in _combine(A, [cols[j][a] for j in range(2)]))
    for k, v in enumerate(planes):                                                   # .. A^T
        dM[k] = v.transpose(1, 0, 2, 3)
    return dM.reshape(16, F, m * th * tw)
