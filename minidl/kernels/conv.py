"""Compiled Winograd F(2x2, 3x3) tile transforms (numba) for ``minidl.functional.conv``.

The same three transforms as ``minidl.functional._winograd`` (the reference these are
tested against, with the matrices B^T, A^T written out), each as one pass over the source
rows, where the reference makes a strided NumPy pass per matrix entry. On the vgg38 layer
(100x32x32x32, one thread, idle-ish) the input and output transforms took about 9 and 4 ms
against the 8 ms of the GEMMs between them.
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
    t = np.zeros((4, th, width), dtype=src.dtype)  # B^T d of every tile row of one channel
    for nc in range(m * C):
        n, c = nc // C, nc % C
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
                t[0, i, col] = d0 - d2
                t[1, i, col] = d1 + d2
                t[2, i, col] = d2 - d1
                t[3, i, col] = d1 - d3
        # (B^T d) B: combine 4 columns, tile j starts at column 2j; one output plane at a
        # time (16 interleaved write streams ran at half the speed)
        for a in range(4):
            for i in range(th):
                for j in range(tw):
                    V[4 * a, c, n, i, j] = t[a, i, 2 * j] - t[a, i, 2 * j + 2]
            for i in range(th):
                for j in range(tw):
                    V[4 * a + 1, c, n, i, j] = t[a, i, 2 * j + 1] + t[a, i, 2 * j + 2]
            for i in range(th):
                for j in range(tw):
                    V[4 * a + 2, c, n, i, j] = t[a, i, 2 * j + 2] - t[a, i, 2 * j + 1]
            for i in range(th):
                for j in range(tw):
                    V[4 * a + 3, c, n, i, j] = t[a, i, 2 * j + 1] - t[a, i, 2 * j + 3]


@numba.njit(cache=True, nogil=True)
def _output_tiles(M, out):
    """out[n, f, 2i:2i+2, 2j:2j+2] = A^T M A (clipped at the edge). M: (16, F, m, th, tw),
    out: (m, F, Ho, Wo)."""
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


@numba.njit(cache=True, nogil=True)
def _output_tiles_adjoint(dout, dM):
    """dM[:, f, n, i, j] = A dY A^T for the 2x2 tile dY of dout[n, f] at (2i, 2j) (zero
    beyond the edge). dout: (m, F, Ho, Wo), dM: (16, F, m, th, tw)."""
    m, F, Ho, Wo = dout.shape
    th, tw = dM.shape[3], dM.shape[4]
    q = np.zeros((4, 2 * tw), dtype=dout.dtype)  # A dY for one row of tiles
    zero = np.zeros(1, dtype=dout.dtype)[0]
    for nf in range(m * F):
        n, f = nf // F, nf % F
        for i in range(th):
            y = 2 * i
            for col in range(Wo):  # A dY: rows (y0, y0 + y1, y0 - y1, -y1) of each column
                y0 = dout[n, f, y, col]
                y1 = dout[n, f, y + 1, col] if y + 1 < Ho else zero
                q[0, col] = y0
                q[1, col] = y0 + y1
                q[2, col] = y0 - y1
                q[3, col] = -y1
            for a in range(4):  # (A dY) A^T: the same on columns 2j and 2j+1
                for j in range(tw):
                    dM[4 * a, f, n, i, j] = q[a, 2 * j]
                for j in range(tw):
                    dM[4 * a + 1, f, n, i, j] = q[a, 2 * j] + q[a, 2 * j + 1]
                for j in range(tw):
                    dM[4 * a + 2, f, n, i, j] = q[a, 2 * j] - q[a, 2 * j + 1]
                for j in range(tw):
                    dM[4 * a + 3, f, n, i, j] = -q[a, 2 * j + 1]


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
