"""Compiled Winograd F(2x2, 3x3) tile transforms (numba) for ``minidl.functional.conv``.

The same three transforms as ``minidl.functional._winograd`` (the reference these are
tested against, with the matrices B^T, A^T written out), each as one pass over the source
rows, where the reference makes a strided NumPy pass per matrix entry. On the vgg38 layer
(100x32x32x32, one thread, blocks of one image as ``functional.conv`` cuts them; medians on a
busy machine) the input transform takes about 7 ms, the output transform 6 and its adjoint
7.5, against 15 ms for the forward's GEMMs and 19 for dU's. Every value of V is written
once (16 per 2x2 outputs), so the kernels are bound by those writes; splitting each tile
row by column parity (unit-stride reads in the second pass) took 13-25% off the input
transform and its adjoint at 16x16 and 32x32.
Zero padding (or, when negative, cropping) is handled by bounds checks per source row, so
no padded copy of the input is made. Each kernel is serial and releases the GIL:
``functional.conv`` shares a layer's blocks of images out to threads, kernels and GEMMs
together (one hand-off per layer, where numba's own threads would start a parallel region
per block).
"""
from __future__ import annotations

import numba
import numpy as np

from ..functional._winograd import out_array


@numba.njit(cache=True, nogil=True)
def _input_tiles(src, ph, pw, V):
    """V[:, c, n, i, j] = B^T d B for the 4x4 tile d at padded pixel (2i, 2j) of src[n, c].
    src: (m, C, H, W), V: (16, C, m, th, tw)."""
    m, C, H, W = src.shape
    th, tw = V.shape[3], V.shape[4]
    lo, hi = max(pw, 0), min(2 * tw + 2, W + pw)  # padded columns that hold a pixel
    zero = np.zeros(1, dtype=src.dtype)[0]  # a literal 0 would widen float32 to float64
    # B^T d of every tile row of one channel, split by padded column parity: e[a, i, j] is
    # column 2j, o[a, i, j] column 2j + 1, so the second pass reads unit strides (stride-2
    # reads of one interleaved row were 13-17% slower at 16x16 and 32x32). Columns outside
    # [lo, hi) stay zero.
    e = np.zeros((4, th, tw + 1), dtype=src.dtype)
    o = np.zeros((4, th, tw + 1), dtype=src.dtype)
    e_lo, e_hi = (lo + 1) // 2, (hi + 1) // 2  # tiles j whose column 2j holds a pixel
    o_lo, o_hi = lo // 2, hi // 2              # ... whose column 2j + 1 does
    for nc in range(m * C):
        n, c = nc // C, nc % C
        for i in range(th):
            r = 2 * i - ph  # the tile's first source row
            # B^T d: combine the 4 rows; even and odd columns in loops of their own and the
            # row test outside them, so that the loops vectorise
            if 0 <= r and r + 3 < H:
                for j in range(e_lo, e_hi):
                    s = 2 * j - pw
                    d0, d1, d2, d3 = src[n, c, r, s], src[n, c, r + 1, s], \
                        src[n, c, r + 2, s], src[n, c, r + 3, s]
                    e[0, i, j] = d0 - d2
                    e[1, i, j] = d1 + d2
                    e[2, i, j] = d2 - d1
                    e[3, i, j] = d1 - d3
                for j in range(o_lo, o_hi):
                    s = 2 * j + 1 - pw
                    d0, d1, d2, d3 = src[n, c, r, s], src[n, c, r + 1, s], \
                        src[n, c, r + 2, s], src[n, c, r + 3, s]
                    o[0, i, j] = d0 - d2
                    o[1, i, j] = d1 + d2
                    o[2, i, j] = d2 - d1
                    o[3, i, j] = d1 - d3
            else:  # a tile row reaching into the padding (or cropped away)
                for j in range(e_lo, e_hi):
                    s = 2 * j - pw
                    d0 = src[n, c, r, s] if 0 <= r < H else zero
                    d1 = src[n, c, r + 1, s] if 0 <= r + 1 < H else zero
                    d2 = src[n, c, r + 2, s] if 0 <= r + 2 < H else zero
                    d3 = src[n, c, r + 3, s] if 0 <= r + 3 < H else zero
                    e[0, i, j] = d0 - d2
                    e[1, i, j] = d1 + d2
                    e[2, i, j] = d2 - d1
                    e[3, i, j] = d1 - d3
                for j in range(o_lo, o_hi):
                    s = 2 * j + 1 - pw
                    d0 = src[n, c, r, s] if 0 <= r < H else zero
                    d1 = src[n, c, r + 1, s] if 0 <= r + 1 < H else zero
                    d2 = src[n, c, r + 2, s] if 0 <= r + 2 < H else zero
                    d3 = src[n, c, r + 3, s] if 0 <= r + 3 < H else zero
                    o[0, i, j] = d0 - d2
                    o[1, i, j] = d1 + d2
                    o[2, i, j] = d2 - d1
                    o[3, i, j] = d1 - d3
        # (B^T d) B: tile j combines columns 2j .. 2j+3; one output plane at a time (16
        # interleaved write streams ran at half the speed)
        for a in range(4):
            for i in range(th):
                for j in range(tw):
                    V[4 * a, c, n, i, j] = e[a, i, j] - e[a, i, j + 1]
            for i in range(th):
                for j in range(tw):
                    V[4 * a + 1, c, n, i, j] = o[a, i, j] + e[a, i, j + 1]
            for i in range(th):
                for j in range(tw):
                    V[4 * a + 2, c, n, i, j] = e[a, i, j + 1] - o[a, i, j]
            for i in range(th):
                for j in range(tw):
                    V[4 * a + 3, c, n, i, j] = o[a, i, j] - o[a, i, j + 1]


@numba.njit(cache=True, nogil=True)
def _output_tiles(M, out, bias, has_bias):
    """out[n, f, 2i:2i+2, 2j:2j+2] = A^T M A (clipped at the edge), plus bias[f] if
    has_bias. M: (16, F, m, th, tw), out: (m, F, Ho, Wo), bias: (F,) (unread without)."""
    m, F, Ho, Wo = out.shape
    th, tw = M.shape[3], M.shape[4]
    r = np.empty((2, 4, tw), dtype=M.dtype)  # A^T M for one row of tiles
    for nf in range(m * F):
        n, f = nf // F, nf % F
        for i in range(th):
            for b in range(4):  # A^T M: rows 0+1+2 and 1-2-3 of the tile (k = 4*row + col)
                for j in range(tw):
                    m1, m2 = M[4 + b, f, n, i, j], M[8 + b, f, n, i, j]
                    r[0, b, j] = M[b, f, n, i, j] + m1 + m2
                    r[1, b, j] = m1 - m2 - M[12 + b, f, n, i, j]
            for k in range(2):  # (A^T M) A: columns 0+1+2 and 1-2-3
                y = 2 * i + k
                if y < Ho:
                    for j in range(tw):
                        x = 2 * j
                        out[n, f, y, x] = r[k, 0, j] + r[k, 1, j] + r[k, 2, j]
                        if x + 1 < Wo:
                            out[n, f, y, x + 1] = r[k, 1, j] - r[k, 2, j] - r[k, 3, j]
        if has_bias:  # added to the finished plane, still in cache: out = (A^T M A) + b
            bf = bias[f]
            for y in range(Ho):
                for x in range(Wo):
                    out[n, f, y, x] += bf


@numba.njit(cache=True, nogil=True)
def _output_tiles_adjoint(dout, dM):
    """dM[:, f, n, i, j] = A dY A^T for the 2x2 tile dY of dout[n, f] at (2i, 2j) (zero
    beyond the edge). dout: (m, F, Ho, Wo), dM: (16, F, m, th, tw)."""
    m, F, Ho, Wo = dout.shape
    th, tw = dM.shape[3], dM.shape[4]
    # A dY for one row of tiles, split by column parity as in _input_tiles: e[:, j] from
    # column 2j, o[:, j] from 2j + 1 (zero past the edge)
    e = np.zeros((4, tw), dtype=dout.dtype)
    o = np.zeros((4, tw), dtype=dout.dtype)
    zero = np.zeros(1, dtype=dout.dtype)[0]
    for nf in range(m * F):
        n, f = nf // F, nf % F
        for i in range(th):
            y = 2 * i
            for parity in range(2):
                q = e if parity == 0 else o
                for j in range((Wo - parity + 1) // 2):
                    col = 2 * j + parity
                    y0 = dout[n, f, y, col]
                    y1 = dout[n, f, y + 1, col] if y + 1 < Ho else zero
                    q[0, j] = y0  # A dY: rows (y0, y0 + y1, y0 - y1, -y1)
                    q[1, j] = y0 + y1
                    q[2, j] = y0 - y1
                    q[3, j] = -y1
            for a in range(4):  # (A dY) A^T: the same on columns 2j and 2j+1
                for j in range(tw):
                    dM[4 * a, f, n, i, j] = e[a, j]
                for j in range(tw):
                    dM[4 * a + 1, f, n, i, j] = e[a, j] + o[a, j]
                for j in range(tw):
                    dM[4 * a + 2, f, n, i, j] = e[a, j] - o[a, j]
                for j in range(tw):
                    dM[4 * a + 3, f, n, i, j] = -o[a, j]


def input_transform(src, padding: tuple[int, int], tiles: tuple[int, int], out=None):
    """As ``_winograd.input_transform``: src (m, C, Hs, Ws) -> V (16, C, m*th*tw)."""
    src = np.ascontiguousarray(src)
    m, C = src.shape[:2]
    V = out_array(out, (16, C, m) + tuple(tiles), src)
    _input_tiles(src, padding[0], padding[1], V)
    return V.reshape(16, C, -1)


def output_transform(M, tiles: tuple[int, int], out, bias=None):
    """As ``_winograd.output_transform``: M (16, F, m*th*tw) into out (m, F, Ho, Wo), plus
    bias (F,) when given."""
    m, F = out.shape[:2]
    M = np.ascontiguousarray(M).reshape((16, F, m) + tuple(tiles))
    target = out if out.flags.c_contiguous else np.empty(out.shape, dtype=out.dtype)
    has_bias = bias is not None
    _output_tiles(M, target, bias if has_bias else np.zeros(1, dtype=M.dtype), has_bias)
    if target is not out:
        out[...] = target


def output_transform_adjoint(dout, tiles: tuple[int, int], out=None):
    """As ``_winograd.output_transform_adjoint``: dout (m, F, Ho, Wo) -> (16, F, m*th*tw)."""
    dout = np.ascontiguousarray(dout)
    m, F = dout.shape[:2]
    dM = out_array(out, (16, F, m) + tuple(tiles), dout)
    _output_tiles_adjoint(dout, dM)
    return dM.reshape(16, F, -1)
