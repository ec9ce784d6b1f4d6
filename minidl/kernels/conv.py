"""Compiled Winograd F(2x2, 3x3) tile transforms (numba) for ``minidl.functional.conv``.

The same three transforms as ``minidl.functional._winograd`` (the reference these are
tested against, with the matrices B^T, A^T written out), each as one pass: a tile's 16
values are read once and combined in registers, where the reference's ``einsum`` makes a
strided pass per matrix. On the vgg38 layer (100x32x32x32, one thread) the input and
output transforms took about 9 and 7 ms against the 8 ms of the GEMMs between them.
Zero padding (or, when negative, cropping) is handled by bounds checks per source row, so
no padded copy of the input is made. Each kernel is serial and releases the GIL:
``functional.conv`` shares a layer's blocks of images out to threads, kernels and GEMMs
together (one hand-off per layer, where numba's own threads would start a parallel region
per block).
"""
from __future__ import annotations

import numba
import numpy as np



@numba.njit(cache=True, nogil=True)
def _input_tiles(src, ph, pw, V):
    """V[:, c, n, i, j] = B^T d B for the 4x4 tile d at padded pixel (2i, 2j) of src[n, c].
    src: (m, C, H, W), V: (16, C, m, th, tw)."""
    m, C, H, W = src.shape
    th, tw = V.shape[3], V.shape[4]
    width = 2 * tw + 2
    lo, hi = max(pw, 0), min(width, W + pw)  # padded columns that hold a pixel
    zero = np.zeros(1, dtype=src.dtype)[0]  # a literal 0 would widen float32 to float64
    for nc in range(m * C):
        n, c = nc // C, nc % C
        t = np.zeros((4, width), dtype=src.dtype)  # B^T d for one row of tiles
        for i in range(th):
            r = 2 * i - ph  # the tile's first source row
            inside = 0 <= r and r + 3 < H
            for col in range(lo, hi):  # B^T d: combine the 4 rows (zero rows: padding)
                s = col - pw
                if inside:
                    d0, d1, d2, d3 = src[n, c, r, s], src[n, c, r + 1, s], \
                        src[n, c, r + 2, s], src[n, c, r + 3, s]
                else:
                    d0 = src[n, c, r, s] if 0 <= r < H else zero
                    d1 = src[n, c, r + 1, s] if 0 <= r + 1 < H else zero
                    d2 = src[n, c, r + 2, s] if 0 <= r + 2 < H else zero
                    d3 = src[n, c, r + 3, s] if 0 <= r + 3 < H else zero
                t[0, col] = d0 - d2
                t[1, col] = d1 + d2
                t[2, col] = d2 - d1
                t[3, col] = d1 - d3
            for a in range(4):  # (B^T d) B: combine 4 columns, tile j starts at column 2j
                for j in range(tw):
                    e0, e1, e2, e3 = t[a, 2 * j], t[a, 2 * j + 1], t[a, 2 * j + 2], t[a, 2 * j + 3]
                    V[4 * a, c, n, i, j] = e0 - e2
                    V[4 * a + 1, c, n, i, j] = e1 + e2
                    V[4 * a + 2, c, n, i, j] = e2 - e1
                    V[4 * a + 3, c, n, i, j] = e1 - e3


@numba.njit(cache=True, nogil=True)
def _output_tiles(M, out):
    """out[n, f, 2i:2i+2, 2j:2j+2] = A^T M A (clipped at the edge). M: (16, F, m, th, tw),
    out: (m, F, Ho, Wo)."""
    m, F, Ho, Wo = out.shape
    th, tw = M.shape[3], M.shape[4]
    for nf in range(m * F):
        n, f = nf // F, nf % F
        for i in range(th):
            for j in range(tw):
                # A^T M: rows 0+1+2 and 1-2-3 of the 4x4 tile (k = 4*row + column)
                r00 = M[0, f, n, i, j] + M[4, f, n, i, j] + M[8, f, n, i, j]
                r01 = M[1, f, n, i, j] + M[5, f, n, i, j] + M[9, f, n, i, j]
                r02 = M[2, f, n, i, j] + M[6, f, n, i, j] + M[10, f, n, i, j]
                r03 = M[3, f, n, i, j] + M[7, f, n, i, j] + M[11, f, n, i, j]
                r10 = M[4, f, n, i, j] - M[8, f, n, i, j] - M[12, f, n, i, j]
                r11 = M[5, f, n, i, j] - M[9, f, n, i, j] - M[13, f, n, i, j]
                r12 = M[6, f, n, i, j] - M[10, f, n, i, j] - M[14, f, n, i, j]
                r13 = M[7, f, n, i, j] - M[11, f, n, i, j] - M[15, f, n, i, j]
                y, x = 2 * i, 2 * j
                out[n, f, y, x] = r00 + r01 + r02  # ... A: columns 0+1+2 and 1-2-3
                if x + 1 < Wo:
                    out[n, f, y, x + 1] = r01 - r02 - r03
                if y + 1 < Ho:
                    out[n, f, y + 1, x] = r10 + r11 + r12
                    if x + 1 < Wo:
                        out[n, f, y + 1, x + 1] = r11 - r12 - r13


@numba.njit(cache=True, nogil=True)
def _output_tiles_adjoint(dout, dM):
    """dM[:, f, n, i, j] = A dY A^T for the 2x2 tile dY of dout[n, f] at (2i, 2j) (zero
    beyond the edge). dout: (m, F, Ho, Wo), dM: (16, F, m, th, tw)."""
    m, F, Ho, Wo = dout.shape
    th, tw = dM.shape[3], dM.shape[4]
    zero = np.zeros(1, dtype=dout.dtype)[0]  # a literal 0 would widen float32 to float64
    for nf in range(m * F):
        n, f = nf // F, nf % F
        for i in range(th):
            for j in range(tw):
                y, x = 2 * i, 2 * j
                y00 = dout[n, f, y, x]
                y01 = dout[n, f, y, x + 1] if x + 1 < Wo else zero
                y10 = dout[n, f, y + 1, x] if y + 1 < Ho else zero
                y11 = dout[n, f, y + 1, x + 1] if y + 1 < Ho and x + 1 < Wo else zero
                # A dY: rows (y0, y0+y1, y0-y1, -y1) of each column, then the same on columns
                for a in range(4):
                    if a == 0:
                        q0, q1 = y00, y01
                    elif a == 1:
                        q0, q1 = y00 + y10, y01 + y11
                    elif a == 2:
                        q0, q1 = y00 - y10, y01 - y11
                    else:
                        q0, q1 = -y10, -y11
                    dM[4 * a, f, n, i, j] = q0
                    dM[4 * a + 1, f, n, i, j] = q0 + q1
                    dM[4 * a + 2, f, n, i, j] = q0 - q1
                    dM[4 * a + 3, f, n, i, j] = -q1


def input_transform(src, padding: tuple[int, int], tiles: tuple[int, int]):
    """As ``_winograd.input_transform``: src (m, C, Hs, Ws) -> V (16, C, m*th*tw)."""
    src = np.ascontiguousarray(src)
    m, C = src.shape[:2]
    V = np.empty((16, C, m) + tuple(tiles), dtype=src.dtype)
    _input_tiles(src, padding[0], padding[1], V)
    return V.reshape(16, C, -1)


def output_transform(M, tiles: tuple[int, int], out):
    """As ``_winograd.output_transform``: M (16, F, m*th*tw) into out (m, F, Ho, Wo)."""
    m, F = out.shape[:2]
    M = np.ascontiguousarray(M).reshape((16, F, m) + tuple(tiles))
    target = out if out.flags.c_contiguous else np.empty(out.shape, dtype=out.dtype)
    _output_tiles(M, target)
    if target is not out:
        out[...] = target


def output_transform_adjoint(dout, tiles: tuple[int, int]):
    """As ``_winograd.output_transform_adjoint``: dout (m, F, Ho, Wo) -> (16, F, m*th*tw)."""
    dout = np.ascontiguousarray(dout)
    m, F = dout.shape[:2]
    dM = np.empty((16, F, m) + tuple(tiles), dtype=dout.dtype)
    _output_tiles_adjoint(dout, dM)
    return dM.reshape(16, F, -1)
