"""2-D convolution four ways: explicit loops (the reference), im2col + GEMM, FFT, and
Winograd's F(2x2, 3x3) for 3x3 kernels at stride 1.

Like PyTorch's ``conv2d`` this is a cross-correlation (the kernel is not flipped) with zero
padding, stride, dilation and groups (depthwise when ``groups == C``). The algorithms
share one signature and return the same numbers; ``method`` picks one ("winograd" runs
im2col for any other kernel size, stride or dilation, and for layers with few channels, so a
whole network can ask for it):

    out, cache = conv2d_forward(x, w, b, stride, padding, dilation, groups, method)
    dx, dw, db = conv2d_backward(dout, cache)

Shapes: x: (N, C, H, W), w: (F, C/groups, kh, kw), b: (F,) or None, out: (N, F, Ho, Wo) with
``Ho = (H + 2*ph - dh*(kh-1) - 1) // sh + 1`` (likewise Wo). Below, ``Cg = C/groups``,
``Fg = F/groups``, ``Hp, Wp`` is the padded input and ``K = Cg*kh*kw`` is the patch length.
A batch of zero images is valid: empty outputs and zero weight gradients.

Cost of forward or backward (each algorithm's docstring explains it), with ``L = Ho*Wo``:

    method  time                                              memory kept for backward
    loops   N*F*L Python iterations, O(N*F*K*L) in total      O(N*C*Hp*Wp) padded input
    im2col  O(N*C*kh*kw*L) copy + O(N*F*K*L) in BLAS          none (x itself is referenced);
                                                              O(N*C*kh*kw*L) patch matrix
                                                              with ``keep_patches=True``
    fft     O((N*C + F*Cg + N*F) * Hp*Wp*log(Hp*Wp))          O((N*C + F*Cg) * Hp*Wp) spectra
            + O(N*F*Cg*Hp*Wp) spectral products
    winograd  O((N*C + N*F) * 4*L) transforms + O(N*F*Cg*4*L)  none (x itself is referenced)
            in BLAS: 16 multiplies per 2x2 outputs, not 36
"""
from __future__ import annotations

import contextlib
import math
import threading
from typing import NamedTuple

import numpy as np

from .. import _threads, backend, kernels
from .._shapes import conv_output_size, float_input, pair, positive_int
from . import _winograd
from ._windows import Tap, clipped_taps, crop_hw, pad_hw

METHODS = ("loops", "im2col", "fft", "winograd")
# "auto" (the default of Conv2d and the models) picks the fastest algorithm this install has:
# Winograd where its compiled transforms run (numba, CPU arrays; its NumPy transforms lose to
# im2col), im2col everywhere else, GPU included. All give the same numbers.
CHOICES = METHODS + ("auto",)


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
    """What ``conv2d_forward`` hands to ``conv2d_backward``.

    ``saved`` depends on the method:

    - loops: ``(x_pad, w)``, the zero-padded input (x itself without padding) and the weight;
    - im2col: ``(x, w)``, the input itself (not a copy: do not modify it before the
      backward), whose patches the backward rebuilds block by block; or, when
      ``patches_kept``, ``(patches, w)``: the list of every block's patch matrix
      (G, Cg*kh*kw, m*Ho*Wo), columns ordered (n, i, j), kh*kw times the input at stride 1;
    - fft: ``(x_spec, w_spec)``, the spectra of the padded input (N, G, Cg, Hp, Wp//2+1) and
      of the dilated kernel (G, Fg, Cg, Hp, Wp//2+1);
    - winograd: ``(x, w)``, the input itself (not a copy), whose tiles the backward transforms
      again block by block. ``method`` is "im2col" where winograd does not apply.

    ``w`` is cast to the input's ``dtype``; ``has_bias`` says whether a ``db`` is due.
    """

    method: str
    geom: ConvGeometry
    dtype: object
    has_bias: bool
    patches_kept: bool
    saved: tuple


# ---------------------------------------------------------------------------- public API
def conv2d_forward(x, w, b, stride=1, padding=0, dilation=1, groups=1, method="im2col",
                   keep_patches=False):
    """Convolve ``x`` with ``w`` (plus bias ``b``); return ``(out, cache)`` for the backward.

    x: (N, C, H, W), w: (F, C/groups, kh, kw), b: (F,) or None -> out: (N, F, Ho, Wo).
    stride, padding, dilation: int or (h, w) pair. method: "loops" | "im2col" | "fft" |
    "winograd" (3x3 kernels at stride 1 and dilation 1 with enough channels, see
    ``winograd_applies``; im2col for any other) | "auto" (winograd where numba's kernels run,
    else im2col). ``cache.method`` names the algorithm that ran.
    x must be a floating-point array; the output has its dtype (``w`` and ``b`` are cast).
    keep_patches: im2col only; keep the patch matrix (kh*kw times the input's memory) in the
    cache so that the backward pass need not rebuild it. On a CPU the rebuild, block by block
    in cache, costs about as much as reading the kept matrix back, so it is off by default.
    """
    if method not in CHOICES:
        raise ValueError(f"conv2d_forward: unknown method {method!r}; expected one of {CHOICES}")
    geom = conv_geometry(x.shape if hasattr(x, "shape") else None,
                         w.shape if hasattr(w, "shape") else None,
                         None if b is None else tuple(b.shape),
                         stride, padding, dilation, groups)
    float_input(x, "conv2d_forward", "x")
    if method == "auto":
        method = "winograd" if kernels.active(x) else "im2col"
    if method == "winograd" and not winograd_applies(geom):
        method = "im2col"
    w = w.astype(x.dtype, copy=False)
    b = None if b is None else b.astype(x.dtype, copy=False)
    if method == "im2col":  # adds the bias block by block, while each block is in cache
        out, saved = _im2col_forward(x, w, b, geom, bool(keep_patches))
    elif method == "winograd":  # adds it in the output transform, likewise
        out, saved = _winograd_forward(x, w, b, geom)
    else:
        out, saved = _FORWARD[method](x, w, geom)
        if b is not None:
            out += b.reshape(1, -1, 1, 1)  # out is freshly allocated, so in place is safe
    patches_kept = method == "im2col" and isinstance(saved[0], list)
    return out, ConvCache(method, geom, x.dtype, b is not None, patches_kept, saved)


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


# ---------------------------------------------------------------------------- blocks on threads
# im2col and Winograd work a block of images at a time, sized to stay in a core's cache. On a
# CPU a layer's blocks are shared out to the threads of minidl's one pool (``minidl._threads``;
# NumPy's copies and BLAS release the GIL), each thread taking the next block as it finishes
# one, so a core slowed by another process takes fewer. BLAS runs every block's GEMMs on the
# calling thread, always (``blas_single_threaded``): OpenBLAS's result depends on its thread
# count for some shapes (a dW product (288, 1568) @ (1568, 32) differs between 1 and 2
# threads), so this keeps the bits the same for any thread count, and equal on the GPU
# stand-in (NumPy underneath) and the CPU. Layers under SERIAL_BELOW values stay on the
# calling thread.
SERIAL_BELOW = 1 << 16
# A weight gradient is summed over a layer's blocks in GRAD_CHUNKS runs of consecutive
# blocks (fewer with fewer blocks), the unit handed to a thread; the runs' sums are then
# added in order. The grouping depends on the blocks alone, so the result is bit for bit the
# same for any thread count (and on a GPU, which runs the chunks one after another).
GRAD_CHUNKS = 8


def _block_runs(fn, items: list, src) -> list:
    """``[fn(item, scratch) for item in items]``, the items shared out to the pool's threads
    on a CPU (in order on the calling thread on a GPU, for small arrays, with one thread, or
    on a pool thread already). ``scratch`` is a dict private to one thread, for buffers
    reused from one item to the next. Where NumPy's BLAS does the GEMMs (NumPy arrays, the
    GPU stand-in's too) it runs them single-threaded."""
    workers = min(_threads.threads(), len(items))
    if (backend.get_array_module(src) is not np or src.size < SERIAL_BELOW or workers < 2
            or _threads.in_pool()):
        workers = 1
    results = [None] * len(items)
    todo, lock = iter(range(len(items))), threading.Lock()

    def work():
        scratch = {}
        while True:
            with lock:
                k = next(todo, None)
            if k is None:
                return
            results[k] = fn(items[k], scratch)

    pin = (_threads.blas_single_threaded() if isinstance(src, np.ndarray)
           else contextlib.nullcontext())  # a real GPU array: cuBLAS, nothing to pin
    with pin:  # the calling thread is one of the workers
        _threads.run_together(lambda _: work(), workers)
    return results


def _front(scratch, key, shape, like):
    """A contiguous ``shape`` array at the front of ``scratch[key]``, a flat buffer grown as
    needed (dtype and module of ``like``; uninitialised): a thread's blocks (the last one
    smaller) reuse one allocation, so they stop allocating and page-faulting fresh arrays
    block after block."""
    size = math.prod(shape)
    buffer = scratch.get(key)
    if buffer is None or buffer.size < size:
        buffer = scratch[key] = backend.get_array_module(like).empty(size, dtype=like.dtype)
    return buffer[:size].reshape(shape)


def _zeroed(scratch, key, shape, like):
    """``scratch[key]`` if it has ``shape``, else a new zero-filled array kept there: for a
    buffer some of whose entries no block writes (the patches' padding), which stay zero only
    while every block has the same shape (a smaller last block gets a fresh one)."""
    buffer = scratch.get(key)
    if buffer is None or buffer.shape != shape:
        buffer = scratch[key] = backend.get_array_module(like).zeros(shape, dtype=like.dtype)
    return buffer


def _chunks(blocks: list) -> list:
    """The blocks grouped in at most GRAD_CHUNKS runs of consecutive blocks, all of one
    length but the last."""
    size = max(1, -(-len(blocks) // GRAD_CHUNKS))  # ceil
    return [blocks[k:k + size] for k in range(0, len(blocks), size)]


def _sum_in_order(partials):
    """partials[0] + partials[1] + ..., added into the first, in order."""
    total = partials[0]
    for partial in partials[1:]:
        total += partial
    return total


# ---------------------------------------------------------------------------- im2col
# Each block's patch matrix is built into a buffer reused block after block and meets the
# filters in one GEMM while it is in cache. Measured on an idle 2-core machine with BLAS
# splitting each GEMM over 2 threads (before blocks went to threads; vgg38 layer, forward +
# backward, medians of 5): 96-107 ms with 0.5-4 MiB blocks, 146-159 ms with 24 MiB, 187-206
# ms with 64-256 MiB. A GPU prefers a few large kernels.
CPU_BLOCK_BYTES = 2 << 20  # one size for any BLAS setting: block GEMMs run on one thread
GPU_BLOCK_BYTES = 256 << 20


class Sweep(NamedTuple):
    """A kernel swept over a source grid: what building its patch matrix needs."""

    kernel: tuple[int, int]
    out_hw: tuple[int, int]
    taps: list[Tap]


def _forward_sweep(geom: ConvGeometry) -> Sweep:
    """The forward window over x: output (i, j) tap (p, q) reads x[i*sh + p*dh - ph, ...]."""
    kernel, out_hw = (geom.kh, geom.kw), (geom.Ho, geom.Wo)
    return Sweep(kernel, out_hw, clipped_taps((geom.H, geom.W), out_hw, kernel, geom.stride,
                                              geom.padding, geom.dilation))


def _input_grad_sweep(geom: ConvGeometry) -> Sweep:
    """At stride 1, dx is a correlation of dout with the flipped kernel: x pixel y received
    ``dout[y - p*dh + ph] * w[p]``, i.e. ``dout[y + p'*dh - ph']`` with ``p' = kh-1-p`` and
    padding ``ph' = dh*(kh-1) - ph`` (negative padding crops)."""
    (dh, dw), (ph, pw) = geom.dilation, geom.padding
    padding = (dh * (geom.kh - 1) - ph, dw * (geom.kw - 1) - pw)
    kernel, out_hw = (geom.kh, geom.kw), (geom.H, geom.W)
    return Sweep(kernel, out_hw, clipped_taps((geom.Ho, geom.Wo), out_hw, kernel, (1, 1),
                                              padding, geom.dilation))


def _fill_patches(patches, src, taps):
    """Copy the windows of src: (m, C, Hs, Ws) into patches: (C, kh, kw, m, Ho, Wo), one
    strided copy per tap. Entries whose tap falls on the padding are not written: they
    stay zero from the buffer's allocation, the same entries for every block."""
    src = src.transpose(1, 0, 2, 3)
    for t in taps:
        patches[:, t.row, t.col, :, t.out[0], t.out[1]] = src[:, :, t.src[0], t.src[1]]


def _add_patches(dsrc, dpatches, taps):
    """The adjoint of ``_fill_patches``: add each patch entry's gradient to the pixel it was
    read from (taps may overlap when stride < kernel: their sums accumulate)."""
    dsrc = dsrc.transpose(1, 0, 2, 3)
    for t in taps:
        dsrc[:, :, t.src[0], t.src[1]] += dpatches[:, t.row, t.col, :, t.out[0], t.out[1]]


def _image_blocks(N: int, C: int, sweep: Sweep, xp, itemsize: int) -> list:
    """(n0, n1) bounds of consecutive blocks of images covering N, each block's patch matrix
    within the block budget (at least one image per block)."""
    (kh, kw), (Ho, Wo) = sweep.kernel, sweep.out_hw
    per_image = C * kh * kw * Ho * Wo * itemsize
    budget = CPU_BLOCK_BYTES if xp is np else GPU_BLOCK_BYTES
    return list(_blocks(N, max(1, min(N, budget // max(per_image, 1)))))


def _blocks(N: int, nb: int):
    """(n0, n1) bounds of consecutive blocks of ``nb`` images covering N."""
    return ((n0, min(N, n0 + nb)) for n0 in range(0, N, nb))


def _patches(src, n0: int, n1: int, sweep: Sweep, scratch=None):
    """The patches of src[n0:n1] as (C, kh, kw, n1-n0, Ho, Wo), columns ordered (n, i, j),
    written into ``scratch``'s reused buffer, or into a new array when scratch is None (to
    keep it)."""
    shape = (src.shape[1],) + sweep.kernel + (n1 - n0,) + sweep.out_hw
    if scratch is None:
        patches = backend.get_array_module(src).zeros(shape, dtype=src.dtype)
    else:  # entries on the padding stay zero from the allocation, the same in every block
        patches = _zeroed(scratch, "patches", shape, src)
    _fill_patches(patches, src[n0:n1], sweep.taps)
    return patches


def _to_rows(block, G: int):
    """A view of a block (m, G*R, Ho, Wo) in the patches' order: (G, R, m, Ho*Wo)."""
    m = block.shape[0]
    return block.reshape(m, G, -1, block.shape[2] * block.shape[3]).transpose(1, 2, 0, 3)


def _rows_of(block, G: int, scratch):
    """A block (m, G*R, Ho, Wo) copied into the (G, R, m*Ho*Wo) matrices that meet the
    patches in a GEMM (into ``scratch``'s reused buffer)."""
    if block.shape[0] == 1:  # one image: already in that order
        return block.reshape(G, block.shape[1] // G, -1)
    rows = _to_rows(block, G)
    out = _front(scratch, "rows", rows.shape[:2] + (rows.shape[2] * rows.shape[3],), block)
    out.reshape(rows.shape)[...] = rows
    return out


def _correlate(src, w_mat, b, sweep: Sweep, keep_patches=False):
    """``out = w_mat @ patches(src)`` per group, block by block. src: (N, C, Hs, Ws),
    w_mat: (G, Fg, Cg*kh*kw), b: (F,) or None -> out: (N, F, Ho, Wo). Returns
    ``(out, kept)``: kept is the list of every block's patches (G, Cg*kh*kw, m*Ho*Wo) when
    ``keep_patches``, else None.
    """
    xp = backend.get_array_module(src)
    G, Fg, Kg = w_mat.shape
    out = xp.empty((src.shape[0], G * Fg) + sweep.out_hw, dtype=src.dtype)

    def block(bounds, scratch):
        n0, n1 = bounds
        patches = _patches(src, n0, n1, sweep, None if keep_patches else scratch)
        patches = patches.reshape(G, Kg, -1)
        if n1 - n0 == 1:  # one image: the GEMM's (g, f, i, j) order is out's own
            image = out[n0].reshape(G, Fg, -1)
            xp.matmul(w_mat, patches, out=image)
            if b is not None:
                image += b.reshape(G, Fg, 1)
        else:  # the GEMM's (g, f, n, i, j) order, copied into out's (n, g, f, i, j)
            prod = _front(scratch, "prod", (G, Fg, patches.shape[-1]), src)
            xp.matmul(w_mat, patches, out=prod)
            rows = _to_rows(out[n0:n1], G)
            if b is None:
                rows[...] = prod.reshape(rows.shape)
            else:  # add the bias while the block is in cache
                xp.add(prod.reshape(rows.shape), b.reshape(G, Fg, 1, 1), out=rows)
        return patches if keep_patches else None

    kept = _block_runs(block, _image_blocks(src.shape[0], src.shape[1], sweep, xp,
                                            src.itemsize), src)
    return out, (kept if keep_patches else None)


def _im2col_forward(x, w, b, geom: ConvGeometry, keep_patches=False):
    """Convolution as matrix products over patch matrices (Chellapilla, Puri & Simard, 2006,
    "High Performance Convolutional Neural Networks for Document Processing").

    A block of m images' patches forms a (C*kh*kw, m*Ho*Wo) matrix, rows ordered (c, p, q)
    so that each group's rows are one block; ``out[g] = W[g] @ patches[g]`` with the filters
    as (G, Fg, Cg*kh*kw). Patches are copied straight from x, one strided slice per tap, into
    a cache-sized buffer per thread, reused block after block; the padding is never
    materialised (its entries stay zero). On a CPU the blocks are shared out to threads (see
    ``_block_runs``). Time: O(N*C*kh*kw*Ho*Wo) copies plus O(N*F*Cg*kh*kw*Ho*Wo)
    multiply-adds in BLAS. Memory: one block per thread, plus, only with ``keep_patches``,
    every block's patches (kh*kw times the input at stride 1).
    """
    G = geom.groups
    out, kept = _correlate(x, w.reshape(G, geom.F // G, -1), b, _forward_sweep(geom),
                           keep_patches)
    return out, (kept if keep_patches else x, w)


def _im2col_backward(dout, saved, geom: ConvGeometry):
    """``dW[g] = dout[g] @ patches[g]^T`` summed over blocks, the patches rebuilt block by
    block from x (or read from the kept list); and dx:

    - stride 1 (and F <= 2C): the correlation of dout with the flipped, transposed kernel,
      by the same blocked patch-matrix GEMMs as the forward pass (no scatter at all);
    - otherwise: ``W^T @ dout`` per block, each tap's column gradient added back onto the
      input pixels it read (col2im).
    dW is summed in fixed chunks of blocks (GRAD_CHUNKS), added in order, so it does not
    depend on how many threads share the blocks. Time: O(N*F*Cg*kh*kw*Ho*Wo) multiply-adds
    for each of dW and dx, plus the copies. Memory: one block of patches per thread besides dx.
    """
    source, w = saved
    xp = backend.get_array_module(dout)
    G, N = geom.groups, geom.N
    Fg, Cg = geom.F // G, geom.C // G
    Kg = Cg * geom.kh * geom.kw
    sweep = _forward_sweep(geom)
    if isinstance(source, list):  # the kept patches, block by block: (n0, n1, patches)
        L, n0, blocks = geom.Ho * geom.Wo, 0, []
        for patches in source:
            blocks.append((n0, n0 + patches.shape[-1] // L, patches))
            n0 = blocks[-1][1]
    else:
        blocks = [(n0, n1, None) for n0, n1 in _image_blocks(N, geom.C, sweep, xp,
                                                             dout.itemsize)]

    def chunk_dw(chunk, scratch):  # (G, Kg, Fg): the chunk's part of dW, transposed
        dW_t = xp.zeros((G, Kg, Fg), dtype=dout.dtype)
        for n0, n1, patches in chunk:
            if patches is None:
                patches = _patches(source, n0, n1, sweep, scratch)
            d_rows = _rows_of(dout[n0:n1], G, scratch)
            # (Kg, m*L) @ (m*L, Fg): the long axis is the one summed over.
            dW_t += xp.matmul(patches.reshape(G, Kg, -1), d_rows.swapaxes(-1, -2))
        return dW_t

    partials = _block_runs(chunk_dw, _chunks(blocks), dout)
    dW_t = _sum_in_order(partials) if partials else xp.zeros((G, Kg, Fg), dtype=dout.dtype)
    dW = xp.ascontiguousarray(dW_t.swapaxes(-1, -2)).reshape(w.shape)

    w_mat = w.reshape(G, Fg, Kg)
    # The correlation copies F*kh*kw values per pixel, col2im adds back C*kh*kw (an add costs
    # about two copies): at F = C the correlation took half col2im's time, at 3 -> 64 twice.
    if geom.stride == (1, 1) and geom.F <= 2 * geom.C:
        w_flip = w_mat.reshape(G, Fg, Cg, geom.kh, geom.kw)[..., ::-1, ::-1]
        w_flip = w_flip.transpose(0, 2, 1, 3, 4).reshape(G, Cg, Fg * geom.kh * geom.kw)
        dx, _ = _correlate(dout, w_flip, None, _input_grad_sweep(geom))
        return dx, dW
    dx = xp.zeros((N, geom.C, geom.H, geom.W), dtype=dout.dtype)

    def col2im(bounds, scratch):  # blocks write disjoint images of dx
        n0, n1 = bounds
        d_rows = _rows_of(dout[n0:n1], G, scratch)
        dpatches = _front(scratch, "dpatches", (G, Kg, d_rows.shape[-1]), dout)
        xp.matmul(w_mat.swapaxes(-1, -2), d_rows, out=dpatches)
        _add_patches(dx[n0:n1], dpatches.reshape((geom.C,) + sweep.kernel + (n1 - n0,)
                                                 + sweep.out_hw), sweep.taps)

    _block_runs(col2im, _image_blocks(N, geom.C, sweep, xp, dout.itemsize), dout)
    return dx, dW


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
    x_spec = x_spec.reshape((geom.N, G, geom.C // G) + x_spec.shape[-2:])  # (N,G,Cg,Hp,Wq)
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
    d_spec = d_spec.reshape((geom.N, G, geom.F // G) + d_spec.shape[-2:])  # (N, G, Fg, Hp, Wq)

    dx_spec = xp.einsum("ngfuv,gfcuv->ngcuv", d_spec, w_spec)
    dx_pad = xp.fft.irfft2(dx_spec.reshape((geom.N, geom.C) + dx_spec.shape[-2:]), s=(Hp, Wp))
    dw_spec = xp.einsum("ngfuv,ngcuv->gfcuv", d_spec.conj(), x_spec)
    dw_full = xp.fft.irfft2(dw_spec.reshape((geom.F, -1) + dw_spec.shape[-2:]), s=(Hp, Wp))
    dW = dw_full[:, :, :khd:dil_h, :kwd:dil_w]  # the dilated kernel's real taps
    dtype = dout.dtype
    return (xp.ascontiguousarray(_crop(dx_pad, geom)).astype(dtype, copy=False),
            xp.ascontiguousarray(dW).astype(dtype, copy=False))


# ---------------------------------------------------------------------------- Winograd
# Images per block: the block's transformed input and output tiles, (C + F) * 16 values per
# 2x2 outputs, stay in a core's cache between the transforms and the GEMMs.
WINOGRAD_CPU_BLOCK_BYTES = 1 << 20
WINOGRAD_GPU_BLOCK_BYTES = 256 << 20
# The transforms cost in proportion to Cg + Fg per pixel, the multiplies they save to
# Cg * Fg: with few channels on either side im2col is faster. Measured (one thread, fwd+bwd,
# batch 100, 32x32): 32 -> 32 channels 120 ms against im2col's 137; 3 -> 64, 113 against 53.
WINOGRAD_MIN_CHANNELS = 16
# Why 2x2 output tiles only: larger tiles save more multiplies (F(4x4, 3x3): 36 per 16
# outputs against 64, transformed arrays 2.25x the input against 4x) but round worse in
# float32, their transforms having coefficients up to 8 and 1/24. Measured against a float64
# direct sum, max error relative to the largest output (16 -> 16 channels at 12x12, as
# test_float32_rounding_stays_close_to_im2col; 32 -> 32 at 32x32 in brackets): F(2x2)
# 2.1e-7 (2.9e-7); F(4x4) with Lavin & Gray's points 0, +-1, +-2 3.5-4.4e-6 (5.3e-6), with
# the best of 91 point sets tried (0, +-1, -1/2, 3/2) 1.6e-6; F(3x3, 3x3) at best 1.3e-6. All
# exceed the 1e-6 that float32 Winograd is held to, so none of them is used.


def winograd_applies(geom: ConvGeometry) -> bool:
    """Whether "winograd" runs F(2x2, 3x3) here: a 3x3 kernel at stride 1, no dilation, and
    at least WINOGRAD_MIN_CHANNELS input and output channels per group (else im2col)."""
    Cg, Fg = geom.C // geom.groups, geom.F // geom.groups
    return ((geom.kh, geom.kw) == (3, 3) and geom.stride == (1, 1) and geom.dilation == (1, 1)
            and min(Cg, Fg) >= WINOGRAD_MIN_CHANNELS)


def _winograd_transforms(x):
    """The tile transforms: compiled kernels when active for x, else the NumPy reference."""
    if kernels.active(x):
        from ..kernels import conv as compiled  # imports numba; compiled on first call
        return compiled
    return _winograd


def _winograd_blocks(N: int, channels: int, tiles_per_image: int, like):
    """(n0, n1) blocks of images whose (16, channels, tiles) arrays fit the block budget."""
    per_image = 16 * channels * tiles_per_image * like.itemsize
    budget = (WINOGRAD_CPU_BLOCK_BYTES if backend.get_array_module(like) is np
              else WINOGRAD_GPU_BLOCK_BYTES)
    return _blocks(N, max(1, min(N, budget // max(per_image, 1))))


def _correlate_block(t, src, U, padding, tiles, out, scratch, bias=None):
    """One block of ``_winograd_correlate``: out (m, F, Ho, Wo) = ``A^T [U @ V] A`` (+ bias,
    (F,) or None) with V = B^T d B of src (m, C, Hs, Ws); V and M live in the thread's
    scratch buffers."""
    xp = backend.get_array_module(src)
    _, groups, Fg, Cg = U.shape
    T = src.shape[0] * tiles[0] * tiles[1]
    V = t.input_transform(src, padding, tiles,
                          out=_front(scratch, "V", (16, groups * Cg, T), src))
    M = xp.matmul(U, V.reshape(16, groups, Cg, T),  # 16 x groups GEMMs
                  out=_front(scratch, "M", (16, groups, Fg, T), src))
    t.output_transform(M.reshape(16, groups * Fg, T), tiles, out, bias)


def _winograd_correlate(src, w, groups: int, padding, out_hw, bias=None):
    """Correlate src: (N, C, Hs, Ws), zero-padded by ``padding`` (negative crops), with 3x3
    filters w: (F, C/groups, 3, 3) at stride 1 (plus bias: (F,) or None) -> (N, F, *out_hw),
    block by block: ``out = A^T [U @ V] A`` with U = G w G^T: (16, groups, Fg, Cg) and
    V = B^T d B."""
    xp, t = backend.get_array_module(src), _winograd_transforms(src)
    (N, C), F = src.shape[:2], w.shape[0]
    tiles = _winograd.tiles_for(out_hw)
    U = _winograd.filter_transform(w, groups)
    out = xp.empty((N, F) + tuple(out_hw), dtype=src.dtype)

    def block(bounds, scratch):
        n0, n1 = bounds
        _correlate_block(t, src[n0:n1], U, padding, tiles, out[n0:n1], scratch, bias)

    _block_runs(block, list(_winograd_blocks(N, C + F, tiles[0] * tiles[1], src)), src)
    return out


def _winograd_forward(x, w, b, geom: ConvGeometry):
    """Convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, 2016, "Fast
    Algorithms for Convolutional Neural Networks"); the transforms are in ``_winograd``.

    Each 2x2 block of outputs is computed from a 4x4 input tile with 16 multiplies per
    (filter, channel) instead of im2col's 36: the multiplies are 16 GEMMs of
    (Fg, Cg) @ (Cg, tiles) per group, on tiles transformed block by block (no patch matrix;
    the padding is never materialised). Time: O((C + F) * 16 * N*Ho*Wo/4) for the
    transforms plus O(N*F*Cg*4*Ho*Wo) multiply-adds in BLAS. Memory: one block of tiles.
    Rounding differs from the direct sum by a few ulps (the transforms add and subtract up to
    9 terms; each multiply is by 1, -1 or 0.5). The bias is added in the output transform,
    while each block's outputs are in cache (the same sums as adding it afterwards).
    """
    out_hw = (geom.Ho, geom.Wo)
    return _winograd_correlate(x, w, geom.groups, geom.padding, out_hw, b), (x, w)


def _winograd_backward(dout, saved, geom: ConvGeometry):
    """dx: at stride 1, the correlation of dout with the flipped, transposed kernel (padding
    ``2 - ph``, see ``_input_grad_sweep``), by the same Winograd blocks as the forward pass.
    dW: the forward pass's chain rule in the tile domain, ``dU = sum over tiles of
    (A dY A^T) V^T`` (16 GEMMs per group summed over the batch), then ``dW = G^T dU G``.
    Both in one pass over blocks of images: each block's dx, then its part of dU, while the
    block's dout is still in cache. Time and memory as the forward pass, twice.
    """
    x, w = saved
    xp, t = backend.get_array_module(dout), _winograd_transforms(dout)
    G, (ph, pw) = geom.groups, geom.padding
    Fg, Cg = geom.F // G, geom.C // G
    w_flip = w.reshape(G, Fg, Cg, 3, 3)[..., ::-1, ::-1].transpose(0, 2, 1, 3, 4)
    U_flip = _winograd.filter_transform(xp.ascontiguousarray(w_flip).reshape(geom.C, Fg, 3, 3),
                                        G)
    tiles = _winograd.tiles_for((geom.Ho, geom.Wo))       # the forward's (dU's) tiles
    dx_tiles = _winograd.tiles_for((geom.H, geom.W))      # the dx correlation's
    dx = xp.empty((geom.N, geom.C, geom.H, geom.W), dtype=dout.dtype)

    def chunk(blocks, scratch):  # dx of the chunk's images and the chunk's part of dU
        dU = xp.zeros((16, G, Fg, Cg), dtype=dout.dtype)
        for n0, n1 in blocks:
            _correlate_block(t, dout[n0:n1], U_flip, (2 - ph, 2 - pw), dx_tiles, dx[n0:n1],
                             scratch)
            T = (n1 - n0) * tiles[0] * tiles[1]
            V = t.input_transform(x[n0:n1], geom.padding, tiles,
                                  out=_front(scratch, "V", (16, geom.C, T), x))
            dM = t.output_transform_adjoint(dout[n0:n1], tiles,  # M's buffer: 2 per thread
                                            out=_front(scratch, "M", (16, geom.F, T), dout))
            dU += xp.matmul(dM.reshape(16, G, Fg, T), V.reshape(16, G, Cg, T).swapaxes(-1, -2),
                            out=_front(scratch, "dU_block", (16, G, Fg, Cg), dout))
        return dU

    # dU is summed by fixed chunks of blocks, added in order, whatever the number of threads:
    # dW comes out bit for bit the same on any machine and thread setting.
    tile_count = max(tiles[0] * tiles[1], dx_tiles[0] * dx_tiles[1])  # a block does both
    blocks = list(_winograd_blocks(geom.N, geom.C + geom.F, tile_count, dout))
    partials = _block_runs(chunk, _chunks(blocks), dout)
    dU = _sum_in_order(partials) if partials else xp.zeros((16, G, Fg, Cg), dtype=dout.dtype)
    return dx, _winograd.filter_transform_adjoint(dU)


_FORWARD = {"loops": _loops_forward, "fft": _fft_forward}  # im2col, winograd: see above
_BACKWARD = {"loops": _loops_backward, "im2col": _im2col_backward, "fft": _fft_backward,
             "winograd": _winograd_backward}
