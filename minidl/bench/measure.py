"""Measure one case: every minidl contender (implementation x kernel path) and PyTorch, together.

``measure_op`` and ``measure_step`` time the contenders interleaved, then measure their
memory, and return one ``Measurement`` per minidl contender. ``gemm_rate`` gives the float32
matrix-multiply ceiling.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .. import kernels
from . import cases, step, timing


@dataclass
class Measurement:
    """What was measured for one minidl contender of a case, and PyTorch's figures beside it.

    samples / torch_samples: one tuple of phase seconds per repeat ((forward, backward) for
    an op, (step,) for a training step). memory_mib: peak extra resident memory of one
    forward+backward (ops) or the max RSS of a fresh process running the step. check: the
    largest |minidl - torch| of the forward output over max |torch|, or the two first-step
    losses' relative difference: evidence that both sides compute the same thing.
    detail: for a training step, what its fresh processes reported (``step.peak_rss``).
    """

    case: object
    impl: str
    kernels: str
    compiled: bool
    samples: list
    torch_samples: list | None = None
    check: float | None = None
    memory_mib: float | None = None
    torch_memory_mib: float | None = None
    detail: dict | None = None


def memory_method() -> str:
    """How op memory is measured here: "peak RSS" (Linux, glibc) or "tracemalloc" (minidl only)."""
    return "peak RSS" if timing.rss_method_available() else "tracemalloc"


def _peak_extra_mib(fn, method: str, traced: bool = True):
    """Peak extra memory of ``fn()`` after one untimed call (first-call allocations such as
    compiled kernels or scratch buffers are not "extra"); None when it cannot be measured."""
    fn()
    if method == "peak RSS":
        return timing.peak_extra_rss_mib(fn)
    return timing.peak_traced_mib(fn) if traced else None


def _compiled(mode: str) -> bool:
    with timing.kernel_path(mode):
        return kernels.enabled()


def _relative_difference(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), 1e-30))


def measure_op(case, modes, torch_twins, repeats: int, warmup: int = 1) -> list[Measurement]:
    """Forward and backward of ``case`` per implementation and kernel path, and in PyTorch
    (``torch_twins`` is the module ``minidl.bench.torch_twins``, or None without torch)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.x_shape).astype(np.float32)
    # one weight draw for every implementation, so they all compute the same function
    layers = {impl: case.build(impl, np.random.default_rng(1)) for impl in case.impls}
    first = next(iter(layers.values()))
    dout = rng.standard_normal(first.forward(x).shape).astype(np.float32)

    contenders, passes = {}, {}
    for impl, layer in layers.items():
        for mode in modes:
            def forward(layer=layer, mode=mode):
                with timing.kernel_path(mode):
                    return layer.forward(x)

            def backward(_, layer=layer, mode=mode):
                with timing.kernel_path(mode):
                    return layer.backward(dout)
            passes[impl, mode] = (forward, backward)
            contenders[impl, mode] = (lambda f=forward, b=backward: timing.timed_pass(f, b))

    torch_run = None
    if torch_twins is not None:
        torch = torch_twins.torch
        module = torch_twins.twin(first)
        xt = torch.from_numpy(x).requires_grad_(True)
        dt = torch.from_numpy(dout)
        params = list(module.parameters())

        def torch_forward():
            return module(xt)

        def torch_backward(y):
            y.backward(dt)

        def torch_run(run=timing.timed_pass):
            xt.grad = None  # fresh gradients each pass, as zero_grad(set_to_none=True) does
            for p in params:
                p.grad = None
            return run(torch_forward, torch_backward)
        contenders["torch"] = torch_run

    checks = {}
    if torch_run is not None:
        with torch.no_grad():
            reference = module(xt).numpy()
        for key, (forward, _) in passes.items():
            checks[key] = _relative_difference(forward(), reference)

    samples = timing.interleaved(contenders, repeats, warmup)
    method = memory_method()
    torch_memory = None
    if torch_run is not None:  # tracemalloc does not see torch's allocations
        torch_memory = _peak_extra_mib(lambda: torch_run(lambda f, b: b(f())), method,
                                       traced=False)
    out = []
    for (impl, mode), (forward, backward) in passes.items():
        with timing.kernel_path(mode):
            memory = _peak_extra_mib(lambda f=forward, b=backward: b(f()), method)
        out.append(Measurement(
            case, impl, mode, _compiled(mode), samples[impl, mode],
            torch_samples=samples.get("torch"), check=checks.get((impl, mode)),
            memory_mib=memory, torch_memory_mib=torch_memory))
    return out


def _timed(fn):
    """``fn`` as a contender of ``timing.interleaved``: returns its wall time as a 1-tuple."""
    def run():
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start,)
    return run


def measure_step(case, modes, torch_twins, repeats: int, subprocess_steps: int = 2):
    """The training step of ``case`` per kernel path and in PyTorch, timed here interleaved;
    its memory is the max RSS of a fresh process per contender (``step.peak_rss``)."""
    x, y = step.batch(case)
    contenders, losses = {}, {}

    for mode in modes:
        train = step.minidl_step(case.build_model(), x, y)

        def minidl_run(train=train, mode=mode):
            with timing.kernel_path(mode):
                return train()
        losses[mode] = minidl_run()  # the first step: the warm-up, and a loss to compare
        contenders[mode] = _timed(minidl_run)
    if torch_twins is not None:
        torch_run = step.torch_step(torch_twins.twin(case.build_model()), x, y)
        losses["torch"] = torch_run()
        contenders["torch"] = _timed(torch_run)
    samples = timing.interleaved(contenders, repeats, warmup=0)

    theirs = None if torch_twins is None else step.peak_rss(case, "torch", subprocess_steps)
    out = []
    for mode in modes:
        check = (None if torch_twins is None else
                 abs(losses[mode] - losses["torch"]) / abs(losses["torch"]))
        ours = step.peak_rss(case, "minidl", subprocess_steps, kernels=mode)
        out.append(Measurement(case, "model", mode, _compiled(mode), samples[mode],
                               torch_samples=samples.get("torch"), check=check,
                               memory_mib=ours["max_rss_mib"],
                               torch_memory_mib=None if theirs is None else theirs["max_rss_mib"],
                               detail={"minidl_process": ours, "torch_process": theirs}))
    return out


def gemm_rate(n: int, repeats: int, torch=None) -> dict:
    """float32 (n x n) @ (n x n) GFLOP/s of NumPy's BLAS, and of torch's when given."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    c = np.empty_like(a)

    contenders = {"numpy": _timed(lambda: np.matmul(a, b, out=c))}
    if torch is not None:
        at, bt, ct = (torch.from_numpy(v) for v in (a, b, c.copy()))
        contenders["torch"] = _timed(lambda: torch.mm(at, bt, out=ct))
    samples = timing.interleaved(contenders, repeats)
    flops = 2 * n ** 3
    return {"n": n, **{f"{name}_gflops": flops / (timing.median_ms(s) * 1e-3) / 1e9
                       for name, s in samples.items()}}


def forward_backward_flops(case) -> dict:
    """FLOPs per phase: {"forward", "backward"} for ops, {"step"} for a training step
    (forward + both gradients of every Conv2d / Linear: 3 x 2 x mult-adds)."""
    if case.group == "step":
        return {"step": 6 * cases.forward_macs(case.build_model(), case.x_shape)}
    fwd, bwd = case.flops()
    return {"forward": fwd, "backward": bwd}
