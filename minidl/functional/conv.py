"""2-D convolution three ways: explicit loops (the reference), im2col + GEMM, and FFT.

Like PyTorch's ``conv2d`` this is a cross-correlation (the kernel is not flipped) with zero
padding, stride, dilation and groups (depthwise when ``groups == C``). The three algorithms
share one signature and return the same numbers; ``method`` picks one:

    out, cache = conv2d_forward(x, w, b, stride, padding, dilation, groups, method)
    dx, dw, db = conv2d_backward(dout, cache)

Shapes: x: (N, C, H, W), w: (F, C/groups, kh, kw), b: (F,) or None, out: (N, F, Ho, Wo) with
``Ho = (H + 2*ph - dh*(kh-1) - 1) // sh + 1`` (likewise Wo). Below, ``Cg = C/groups``,
``Fg = F/groups``, ``Hp, Wp`` is the padded input and ``K = Cg*kh*kw`` is the patch length.

Cost of forward or backward (each algorithm's docstring explains it), with ``L = Ho*Wo``:

    method  time                                              memory kept for backward
    loops   N*F*L Python iterations, O(N*F*K*L) in total      O(N*C*Hp*Wp)
    im2col  O(N*C*kh*kw*L) copy + O(N*F*K*L) in BLAS          O(N*C*kh*kw*L) patch matrix
    fft     O((N*C + F*Cg + N*F) * Hp*Wp*log(Hp*Wp))          O((N*C + F*Cg) * Hp*Wp) spectra
            + O(N*F*Cg*Hp*Wp) spectral products
"""
from __future__ import annotations

from typing import NamedTuple

from .. import backend
from .._shapes import conv_output_size, pair, positive_int
from ._windows import crop_hw, pad_hw, window_slice

METHODS = ("loops", "im2col", "fft")


class ConvGeometry(NamedTuple):
    """The validated sizes and hyper-parameters of one convolution."""

    N: int
    C: int
    H: int
    W: int
    F: int
    kh: int
    kw: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    Ho: int
    Wo: int

    @property
    def dilated_kernel(self) -> tuple[int, int]:
        """Extent of the kernel on the input once its taps are spread ``dilation`` apart."""
        dil_h, dil_w = self.dilation
        return dil_h * (self.kh - 1) + 1, dil_w * (self.kw - 1) + 1

    @property
    def padded(self) -> tuple[int, int]:
        return self.H + 2 * self.padding[0], self.W + 2 * self.padding[1]


class ConvCache(NamedTuple):
    """What ``conv2d_forward`` hands to ``conv2d_backward``; ``saved`` depends on the method."""

    method: str
    geom: ConvGeometry
    dtype: object
    has_bias: bool
    saved: tuple


# ---------------------------------------------------------------------------- public API
def conv2d_forward(x, w, b, stride=1, padding=0, dilation=1, groups=1, method="im2col"):
    """Convolve ``x`` with ``w`` (plus bias ``b``); return ``(out, cache)`` for the backward.

    x: (N, C, H, W), w: (F, C/groups, kh, kw), b: (F,) or None -> out: (N, F, Ho, Wo).
    stride, padding, dilation: int or (h, w) pair. method: "loops" | "im2col" | "fft".
    The output has the dtype of ``x``; ``w`` and ``b`` are cast to it.
    """
    if method not in METHODS:
        raise ValueError(f"conv2d_forward: unknown method {method!r}; expected one of {METHODS}")
    geom = conv_geometry(x.shape if hasattr(x, "shape") else None,
                         w.shape if hasattr(w, "shape") else None,
                         None if b is None else tuple(b.shape),
                         stride, padding, dilation, groups)
    w = w.astype(x.dtype, copy=False)
    b = None if b is None else b.astype(x.dtype, copy=False)
    out, saved = _FORWARD[method](x, w, geom)
    if b is not None:
        out += b.reshape(1, -1, 1, 1)  # out is freshly allocated, so in place is safe
    return out, ConvCache(method, geom, x.dtype, b is not None, saved)


def conv2d_backward(dout, cache):
    """Gradients of the loss with respect to x, w and b; ``db`` is None without a bias.

    dout: (N, F, Ho, Wo) -> dx: (N, C, H, W), dw: (F, C/groups, kh, kw), db: (F,) or None.
    ``dout`` is never modified.
    """
    geom = cache.geom
    expected = (geom.N, geom.F, geom.Ho, geom.Wo)
    if tuple(dout.shape) != expected:
        raise ValueError(f"conv2d_backward: expected dout of shape {expected}, "
                         f"got {tuple(dout.shape)}")
    dout = dout.astype(cache.dtype, copy=False)  # gradients follow the forward's dtype
    dx, dw = _BACKWARD[cache.method](dout, cache.saved, geom)
    db = dout.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return dx, dw, db


def conv_geometry(x_shape, w_shape, b_shape, stride, padding, dilation, groups) -> ConvGeometry:
    """Validate shapes and hyper-parameters; a ValueError names expected and actual shapes.

    x_shape: (N, C, H, W), w_shape: (F, C/groups, kh, kw), b_shape: (F,) or None.
    """
    who = "conv2d_forward"
    if x_shape is None or len(x_shape) != 4:
        raise ValueError(f"{who}: expected x of shape (N, C, H, W), got {_shape(x_shape)}")
    if w_shape is None or len(w_shape) != 4:
        raise ValueError(f"{who}: expected w of shape (F, C/groups, kh, kw), got {_shape(w_shape)}")
    stride, padding = pair(stride, "stride"), pair(padding, "padding")
    dilation = pair(dilation, "dilation")
    if min(stride) < 1:
        raise ValueError(f"{who}: stride must be positive, got {stride}")
    if min(padding) < 0:
        raise ValueError(f"{who}: padding must be non-negative, got {padding}")
    if min(dilation) < 1:
        raise ValueError(f"{who}: dilation must be positive, got {dilation}")
    groups = positive_int(groups, "groups", who)
    N, C, H, W = (int(s) for s in x_shape)
    F, Cg, kh, kw = (int(s) for s in w_shape)
    x_shape, w_shape = (N, C, H, W), (F, Cg, kh, kw)
    if C % groups or F % groups:
        raise ValueError(f"{who}: groups={groups} must divide both the input channels and the "
                         f"filters, got x of shape {x_shape} and w of shape {w_shape}")
    if Cg * groups != C:
        raise ValueError(f"{who}: w of shape {w_shape} with groups={groups} expects x of shape "
                         f"(N, {Cg * groups}, H, W), got x of shape {x_shape}")
    if kh < 1 or kw < 1 or F < 1:
        raise ValueError(f"{who}: w must have at least one filter and a non-empty kernel, "
                         f"got w of shape {w_shape}")
    if b_shape is not None and tuple(b_shape) != (F,):
        raise ValueError(f"{who}: expected b of shape ({F},), got {tuple(b_shape)}")
    geom = ConvGeometry(N, C, H, W, F, kh, kw, stride, padding, dilation, groups, 0, 0)
    (khd, kwd), (Hp, Wp) = geom.dilated_kernel, geom.padded
    if khd > Hp or kwd > Wp:
        raise ValueError(f"{who}: kernel {(kh, kw)} with dilation {dilation} spans {(khd, kwd)}, "
                         f"larger than the padded input {(Hp, Wp)} (x of shape {x_shape}, "
                         f"padding {padding})")
    Ho = conv_output_size(H, kh, stride[0], padding[0], dilation[0])
    Wo = conv_output_size(W, kw, stride[1], padding[1], dilation[1])
    return geom._replace(Ho=Ho, Wo=Wo)


# ---------------------------------------------------------------------------- shared helpers
def _shape(shape):
    return None if shape is None else tuple(shape)


def _pad(x, geom: ConvGeometry):
    """Zero-pad H and W; x itself when there is no padding (no copy)."""
    return pad_hw(x, geom.padding)


def _crop(dx_padded, geom: ConvGeometry):
    """The (H, W) input region of a gradient on the padded grid."""
    return crop_hw(dx_padded, (geom.H, geom.W), geom.padding)


# ---------------------------------------------------------------------------- loops
def _loops_forward(x, w, geom: ConvGeometry):
    """Reference convolution: one Python iteration per (sample, filter, output pixel).

    Each output is ``sum(patch * w[f])`` over the Cg x kh x kw input patch under the filter,
    the definition read off the page. Time: N*F*Ho*Wo Python iterations doing
    O(Cg*kh*kw) work each, i.e. O(N*F*Cg*kh*kw*Ho*Wo) multiply-adds, very slow in practice.
    Memory: O(N*C*Hp*Wp) for the padded input kept for the backward pass.
    """
    xp = backend.get_array_module(x)
    x_pad = _pad(x, geom)
    (sh, sw), (dil_h, dil_w) = geom.stride, geom.dilation
    (khd, kwd) = geom.dilated_kernel
    Cg, Fg = geom.C // geom.groups, geom.F // geom.groups
    out = xp.zeros((geom.N, geom.F, geom.Ho, geom.Wo), dtype=x.dtype)
    for n in range(geom.N):
        for f in range(geom.F):
            c0 = (f // Fg) * Cg  # filter f only sees the input channels of its own group
            for i in range(geom.Ho):
                for j in range(geom.Wo):
                    patch = x_pad[n, c0:c0 + Cg, i * sh:i * sh + khd:dil_h,
                                  j * sw:j * sw + kwd:dil_w]
                    out[n, f, i, j] = (patch * w[f]).sum()
    return out, (x_pad, w)


def _loops_backward(dout, saved, geom: ConvGeometry):
    """Reference backward: each output pixel sends ``dout * w[f]`` back to its patch
    (summing where patches overlap) and ``dout * patch`` to its filter. Same costs as forward.
    """
    x_pad, w = saved
    xp = backend.get_array_module(x_pad)
    (sh, sw), (dil_h, dil_w) = geom.stride, geom.dilation
    (khd, kwd) = geom.dilated_kernel
    Cg, Fg = geom.C // geom.groups, geom.F // geom.groups
    dx_pad = xp.zeros(x_pad.shape, dtype=x_pad.dtype)
    dW = xp.zeros_like(w)
    for n in range(geom.N):
        for f in range(geom.F):
            c0 = (f // Fg) * Cg
            for i in range(geom.Ho):
                for j in range(geom.Wo):
                    window = (n, slice(c0, c0 + Cg), slice(i * sh, i * sh + khd, dil_h),
                              slice(j * sw, j * sw + kwd, dil_w))
                    grad = dout[n, f, i, j]
                    dx_pad[window] += grad * w[f]
                    dW[f] += grad * x_pad[window]
    return _crop(dx_pad, geom), dW


# ---------------------------------------------------------------------------- im2col
def _im2col(x_pad, geom: ConvGeometry):
    """Serialise every patch into a column: (groups, Cg*kh*kw, N*Ho*Wo).

    Rows are ordered (c, p, q) with c outermost, so each group's rows form one block; columns
    are ordered (n, i, j), so the whole batch shares one matrix. ``as_strided`` presents the
    patches as a view without copying (tap (p, q) of output pixel (i, j) is input row
    ``i*sh + p*dh``); one ``ascontiguousarray`` then writes the matrix.
    """
    xp = backend.get_array_module(x_pad)
    (sh, sw), (dil_h, dil_w) = geom.stride, geom.dilation
    sN, sC, sH, sW = x_pad.strides
    patches = xp.lib.stride_tricks.as_strided(
        x_pad, shape=(geom.C, geom.kh, geom.kw, geom.N, geom.Ho, geom.Wo),
        strides=(sC, dil_h * sH, dil_w * sW, sN, sh * sH, sw * sW))
    return xp.ascontiguousarray(patches).reshape(geom.groups, -1, geom.N * geom.Ho * geom.Wo)


def _im2col_forward(x, w, geom: ConvGeometry):
    """Convolution as one matrix product per group (Chellapilla, Puri & Simard, 2006,
    "High Performance Convolutional Neural Networks for Document Processing").

    With the patch matrix cols: (G, Cg*kh*kw, N*Ho*Wo) and the filters as (G, Fg, Cg*kh*kw),
    ``out[g] = W[g] @ cols[g]`` covers the whole batch in one GEMM per group: a few large
    products keep BLAS efficient (one GEMM per sample would synchronise its threads N times).
    The (F, N) result is transposed to (N, F, Ho, Wo), a copy the size of the output.
    Time: O(N*C*kh*kw*Ho*Wo) to copy patches plus O(N*F*Cg*kh*kw*Ho*Wo) multiply-adds in BLAS.
    Memory: O(N*C*kh*kw*Ho*Wo), kh*kw times the input at stride 1, cached for the backward.
    """
    xp = backend.get_array_module(x)
    G = geom.groups
    cols = _im2col(_pad(x, geom), geom)                        # (G, K, N*L)
    out = w.reshape(G, geom.F // G, -1) @ cols                 # (G, Fg, N*L)
    out = out.reshape(geom.F, geom.N, geom.Ho, geom.Wo).transpose(1, 0, 2, 3)
    return xp.ascontiguousarray(out), (cols, w)


def _im2col_backward(dout, saved, geom: ConvGeometry):
    """dW reuses the cached patch matrix: ``dW[g] = dout[g] @ cols[g]^T`` (one GEMM per group).

    dx is col2im of ``W^T @ dout``, built one kernel row p at a time: rows (c, p, q) of the
    column gradient, for every c and q, are a (Cg*kw, Fg) @ (Fg, N*Ho*Wo) GEMM per group;
    each tap's block is then summed into the strided window of the padded input that the tap
    read (overlapping patches add up). Only 1/kh of the (C*kh*kw, N*Ho*Wo) column gradient
    exists at a time, and there are only kh GEMMs, each big enough to keep BLAS efficient.
    Time: O(N*F*Cg*kh*kw*Ho*Wo) multiply-adds for each of dW and dx.
    Memory: O(N*C*kw*Ho*Wo) for one kernel row of the column gradient.
    """
    cols, w = saved
    xp = backend.get_array_module(cols)
    G, N, L = geom.groups, geom.N, geom.Ho * geom.Wo
    Fg, Cg = geom.F // G, geom.C // G
    dil_h, dil_w = geom.dilation
    dout_mat = xp.ascontiguousarray(dout.transpose(1, 0, 2, 3)).reshape(G, Fg, N * L)
    # (K, N*L) @ (N*L, Fg) rather than its transpose: BLAS splits the larger output dimension
    # across threads, which stays fast when other processes compete for the cores.
    dW = (cols @ dout_mat.swapaxes(-1, -2)).swapaxes(-1, -2).reshape(w.shape)

    w_rows = w.reshape(G, Fg, Cg, geom.kh, geom.kw)
    dx_pad = xp.zeros((geom.C, N) + geom.padded, dtype=cols.dtype)  # channel-major, like cols
    dcols_row = xp.empty((G, Cg * geom.kw, N * L), dtype=cols.dtype)  # reused for every row
    taps = dcols_row.reshape(geom.C, geom.kw, N, geom.Ho, geom.Wo)     # a view of it
    for p in range(geom.kh):
        w_p = w_rows[:, :, :, p, :].reshape(G, Fg, Cg * geom.kw)
        xp.matmul(w_p.swapaxes(-1, -2), dout_mat, out=dcols_row)
        for q in range(geom.kw):
            # Tap (p, q) of the dilated kernel reads the input ``dilation`` apart.
            window = window_slice(p * dil_h, q * dil_w, geom.stride, (geom.Ho, geom.Wo))
            dx_pad[window] += taps[:, q]
    dx = _crop(dx_pad, geom).transpose(1, 0, 2, 3)
    return xp.ascontiguousarray(dx), dW


# ---------------------------------------------------------------------------- FFT
def _dilate_kernel(w, geom: ConvGeometry):
    """Spread the taps ``dilation`` apart with zeros between: (F, Cg, khd, kwd)."""
    dil_h, dil_w = geom.dilation
    if dil_h == 1 and dil_w == 1:
        return w
    xp = backend.get_array_module(w)
    w_dil = xp.zeros(w.shape[:2] + geom.dilated_kernel, dtype=w.dtype)
    w_dil[:, :, ::dil_h, ::dil_w] = w
    return w_dil


def _fft_forward(x, w, geom: ConvGeometry):
    """Convolution via the convolution theorem (Mathieu, Henaff & LeCun, 2014,
    "Fast Training of Convolutional Networks through FFTs").

    The dilated kernel and padded input are transformed at the input's size (Hp, Wp); the
    cross-correlation is ``irfft2(X * conj(Wf))`` summed over each group's channels. No
    circular wrap-around reaches the valid outputs, since every tap stays inside Hp x Wp.
    The full stride-1 map is computed and every ``stride``-th entry kept. Time:
    O((N*C + F*Cg + N*F) * Hp*Wp*log(Hp*Wp)) for the transforms plus O(N*F*Cg*Hp*Wp)
    spectral products, independent of kh*kw (it pays off for large kernels, not for 3x3,
    nor for stride > 1, whose skipped outputs are computed anyway). Memory:
    O((N*C + F*Cg + N*F) * Hp*Wp) for the spectra, kept for the backward pass.
    """
    xp = backend.get_array_module(x)
    G, (Hp, Wp), (khd, kwd) = geom.groups, geom.padded, geom.dilated_kernel
    x_spec = xp.fft.rfft2(_pad(x, geom))                          # (N, C, Hp, Wp//2+1)
    w_spec = xp.fft.rfft2(_dilate_kernel(w, geom), s=(Hp, Wp))    # zero-padded to (Hp, Wp)
    x_spec = x_spec.reshape((geom.N, G, -1) + x_spec.shape[-2:])  # (N, G, Cg, Hp, Wq)
    w_spec = w_spec.reshape((G, -1) + w_spec.shape[-3:])          # (G, Fg, Cg, Hp, Wq)
    out_spec = xp.einsum("ngcuv,gfcuv->ngfuv", x_spec, w_spec.conj())
    full = xp.fft.irfft2(out_spec.reshape((geom.N, geom.F) + out_spec.shape[-2:]), s=(Hp, Wp))
    (sh, sw) = geom.stride
    out = full[:, :, :Hp - khd + 1:sh, :Wp - kwd + 1:sw]         # valid part, every stride-th
    return xp.ascontiguousarray(out).astype(x.dtype, copy=False), (x_spec, w_spec)


def _fft_backward(dout, saved, geom: ConvGeometry):
    """Backward in the frequency domain, reusing the cached spectra.

    ``dout`` is scattered back onto the stride-1 grid (zeros at the skipped outputs), then
    ``dx = irfft2(D * Wf)`` (a true convolution with the kernel) and
    ``dW = irfft2(conj(D) * X)`` summed over the batch (a correlation of input and dout,
    read at the dilated taps). No wrap-around: both results fit inside Hp x Wp.
    Time and memory as the forward pass.
    """
    x_spec, w_spec = saved
    xp = backend.get_array_module(x_spec)
    G, (Hp, Wp), (khd, kwd) = geom.groups, geom.padded, geom.dilated_kernel
    (sh, sw), (dil_h, dil_w) = geom.stride, geom.dilation
    dfull = xp.zeros((geom.N, geom.F, Hp, Wp), dtype=dout.dtype)
    dfull[:, :, :Hp - khd + 1:sh, :Wp - kwd + 1:sw] = dout
    d_spec = xp.fft.rfft2(dfull)
    d_spec = d_spec.reshape((geom.N, G, -1) + d_spec.shape[-2:])   # (N, G, Fg, Hp, Wq)

    dx_spec = xp.einsum("ngfuv,gfcuv->ngcuv", d_spec, w_spec)
    dx_pad = xp.fft.irfft2(dx_spec.reshape((geom.N, geom.C) + dx_spec.shape[-2:]), s=(Hp, Wp))
    dw_spec = xp.einsum("ngfuv,ngcuv->gfcuv", d_spec.conj(), x_spec)
    dw_full = xp.fft.irfft2(dw_spec.reshape((geom.F, -1) + dw_spec.shape[-2:]), s=(Hp, Wp))
    dW = dw_full[:, :, :khd:dil_h, :kwd:dil_w]  # the dilated kernel's real taps
    dtype = dout.dtype
    return (xp.ascontiguousarray(_crop(dx_pad, geom)).astype(dtype, copy=False),
            xp.ascontiguousarray(dW).astype(dtype, copy=False))


_FORWARD = {"loops": _loops_forward, "im2col": _im2col_forward, "fft": _fft_forward}
_BACKWARD = {"loops": _loops_backward, "im2col": _im2col_backward, "fft": _fft_backward}
