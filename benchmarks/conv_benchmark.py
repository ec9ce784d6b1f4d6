"""Convolution benchmarks: minidl's im2col against PyTorch's CPU conv, and the three methods.

    python -m benchmarks.conv_benchmark [--repeats 7]

1. Forward + backward of the VGG-38 layer (batch 100, 32 -> 32 channels, 32x32, 3x3,
   padding 1, float32), minidl im2col and ``torch.nn.functional.conv2d`` timed alternately
   in the same process so both see the same machine load; medians and the median ratio.
2. loops / im2col / fft on a small shape: median time and peak memory (tracemalloc, which
   numpy reports its array buffers to).
3. im2col against fft as the kernel grows: FFT cost does not depend on kh*kw.
PyTorch is optional: without it the torch column is skipped with a note.
"""
from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from typing import NamedTuple

import numpy as np

from minidl._shapes import conv_output_size
from minidl.functional.conv import METHODS, conv2d_backward, conv2d_forward

try:
    import torch
except ImportError:  # the comparison column is optional
    torch = None


class ConvCase(NamedTuple):
    """A benchmark shape: x (N, C, H, W), w (F, C, k, k), padding."""

    N: int
    C: int
    H: int
    W: int
    F: int
    k: int
    padding: int

    def __str__(self) -> str:
        return (f"x ({self.N}, {self.C}, {self.H}, {self.W}), w ({self.F}, {self.C}, {self.k}, "
                f"{self.k}), padding {self.padding}")


VGG38_LAYER = ConvCase(N=100, C=32, H=32, W=32, F=32, k=3, padding=1)
SMALL = ConvCase(N=4, C=8, H=16, W=16, F=8, k=3, padding=1)


def make_arrays(case: ConvCase, dtype=np.float32, seed: int = 0):
    """Random x, w, b and an upstream gradient dout for ``case``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((case.N, case.C, case.H, case.W)).astype(dtype)
    w = rng.standard_normal((case.F, case.C, case.k, case.k)).astype(dtype)
    b = rng.standard_normal(case.F).astype(dtype)
    Ho = conv_output_size(case.H, case.k, 1, case.padding)
    Wo = conv_output_size(case.W, case.k, 1, case.padding)
    dout = rng.standard_normal((case.N, case.F, Ho, Wo)).astype(dtype)
    return x, w, b, dout


def minidl_step(x, w, b, dout, padding: int, method: str) -> None:
    out, cache = conv2d_forward(x, w, b, padding=padding, method=method)
    conv2d_backward(dout, cache)


def torch_step(xt, wt, bt, doutt, padding: int) -> None:
    for t in (xt, wt, bt):
        t.grad = None
    torch.nn.functional.conv2d(xt, wt, bt, padding=padding).backward(doutt)


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_bytes(fn) -> int:
    """Peak traced allocation while ``fn`` runs (inputs allocated before are not counted)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def versus_torch(case: ConvCase, repeats: int) -> None:
    """Interleaved minidl-im2col / torch timings of forward + backward on ``case``."""
    x, w, b, dout = make_arrays(case)
    ours = lambda: minidl_step(x, w, b, dout, case.padding, "im2col")  # noqa: E731
    print(f"== im2col forward+backward vs PyTorch CPU: {case}, float32")
    if torch is None:
        print("   (PyTorch is not installed: timing minidl only)")
        ours()  # warm-up: first-touch page faults and BLAS thread start-up
        times = [seconds(ours) for _ in range(repeats)]
        print(f"   minidl im2col  median {1e3 * statistics.median(times):8.1f} ms")
        return
    xt, wt, bt, doutt = (torch.from_numpy(a) for a in (x, w, b, dout))
    for t in (xt, wt, bt):
        t.requires_grad_(True)
    theirs = lambda: torch_step(xt, wt, bt, doutt, case.padding)  # noqa: E731
    ours(), theirs()  # warm-up
    mine, ref, ratios = [], [], []
    for _ in range(repeats):
        mine.append(seconds(ours))
        ref.append(seconds(theirs))
        ratios.append(mine[-1] / ref[-1])
    print(f"   torch {torch.__version__}, {torch.get_num_threads()} threads; {repeats} repeats, "
          f"alternating")
    print(f"   minidl im2col  median {1e3 * statistics.median(mine):8.1f} ms")
    print(f"   torch          median {1e3 * statistics.median(ref):8.1f} ms")
    print(f"   ratio minidl/torch: median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}); target <= 3x")


def compare_methods(case: ConvCase, repeats: int, methods=METHODS) -> None:
    """Median time (methods alternating) and peak memory of forward + backward on ``case``."""
    x, w, b, dout = make_arrays(case)
    steps = {m: (lambda m=m: minidl_step(x, w, b, dout, case.padding, m)) for m in methods}
    for step in steps.values():
        step()  # warm-up
    times = {m: [] for m in methods}
    for _ in range(repeats):
        for method, step in steps.items():
            times[method].append(seconds(step))
    print(f"== methods, forward+backward: {case}, float32, {repeats} repeats")
    print(f"   {'method':8s} {'median ms':>10s} {'peak MiB':>9s}")
    for method, step in steps.items():
        peak = peak_bytes(step) / 2 ** 20
        print(f"   {method:8s} {1e3 * statistics.median(times[method]):10.1f} {peak:9.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement")
    args = parser.parse_args(argv)
    versus_torch(VGG38_LAYER, args.repeats)
    print()
    compare_methods(SMALL, max(3, args.repeats // 2))
    for k in (3, 7, 11):
        print()
        compare_methods(ConvCase(N=16, C=16, H=32, W=32, F=16, k=k, padding=k // 2),
                        args.repeats, methods=("im2col", "fft"))


if __name__ == "__main__":
    main()
