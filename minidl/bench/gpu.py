"""``python -m minidl.bench gpu``: minidl on CuPy against PyTorch on CUDA, on one GPU.

What it measures, each contender in turn per repeat (interleaved, like the CPU bench), the
device synchronised before and after every timed call so the wall clock covers the work:

- the vgg38 conv layer (100x32x32x32 -> 32, 3x3 pad 1) forward+backward, per algorithm
  (minidl im2col / fft on CuPy against cuDNN);
- BatchNorm2d and LeakyReLU on the same feature-map size;
- one vgg38 --bn --residual training step (batch 100, Adam), minidl against its PyTorch twin;
- device->host copies per training step: the training loop's own body (``train.train_step``,
  the gradient-flow sums, the running totals and their one read) runs under PyTorch's
  profiler, whose CUPTI tracing sees every CUDA copy in the process, CuPy's included. A
  calibration first profiles one explicit ``float(cupy_array)``: if that copy is not seen,
  the count is reported as unavailable rather than as zero;
- memory: bytes CuPy's pool holds after the steps against ``torch.cuda.max_memory_reserved``.

Without CuPy or a CUDA device it stops with a message saying which (exit status 2).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

from .. import backend, losses, optim
from . import cases, step as step_mod, timing
from .measure import _relative_difference as relative_difference

MIB = 2.0 ** 20


def _cupy():
    """The cupy module, or SystemExit with the reason a GPU cannot be used."""
    try:
        return backend.gpu_module()
    except RuntimeError as err:
        raise SystemExit(f"python -m minidl.bench gpu: {err}") from None


def _torch_cuda():
    """torch when it is installed and sees CUDA, else None (minidl is then timed alone)."""
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    # full float32 on both sides: PyTorch's convolutions use TF32 by default, CuPy's GEMMs do not
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return torch


def _median_ms(contenders: dict, repeats: int, sync, warmup: int = 2) -> dict:
    """{name: median ms} of each contender, timed in turn per repeat (``timing.interleaved``)
    after ``warmup`` calls (CuPy compiles its kernels on first use, cuDNN picks its
    algorithms), the device idle before each timed call and drained after it."""
    def timed(fn):
        def call():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            return (time.perf_counter() - start,)
        return call
    samples = timing.interleaved({name: timed(fn) for name, fn in contenders.items()},
                                 repeats, warmup)
    return {name: timing.median_ms(s) for name, s in samples.items()}


def _layer_pass(layer, x, dout):
    """Forward then backward of a minidl layer; the backward takes a fixed ``dout``."""
    def run():
        layer.forward(x)
        layer.backward(dout)
    return run


def _torch_pass(module, xt, dt):
    def run():
        xt.grad = None
        module(xt).backward(dt)
    return run


def op_rows(cp, torch, batch: int, repeats: int, log) -> list[dict]:
    """The conv, BatchNorm and LeakyReLU cases: one row per minidl contender."""
    rows = []
    chosen = [(cases.CASES["vgg38-32"], ("im2col", "fft")),
              (cases.CASES["batchnorm2d"], ("layer",)),
              (cases.CASES["leaky-relu"], ("layer",))]
    for case, impls in chosen:
        case = case.with_batch(batch)
        log(f"gpu {case.name}: {case.describe()}")
        rng = np.random.default_rng(0)
        x_host = rng.standard_normal(case.x_shape).astype(np.float32)
        # one weight draw for every implementation, so they all compute the same function
        built = {impl: case.build(impl, np.random.default_rng(1)) for impl in impls}
        first = next(iter(built.values()))
        dout_host = rng.standard_normal(first.forward(x_host).shape).astype(np.float32)
        theirs, contenders = None, {}
        if torch is not None:
            from . import torch_twins  # noqa: PLC0415  (needs torch)
            module = torch_twins.twin(first).cuda()
            xt = torch.tensor(x_host, device="cuda", requires_grad=True)
            dt = torch.tensor(dout_host, device="cuda")
            with torch.no_grad():
                theirs = module(xt).cpu().numpy()
        x, dout = cp.asarray(x_host), cp.asarray(dout_host)
        checks = {}
        for impl, layer in built.items():
            layer.to("gpu")
            contenders[impl] = _layer_pass(layer, x, dout)
            if theirs is not None:  # same forward: the timings compare like with like
                checks[impl] = relative_difference(backend.asnumpy(layer.forward(x)), theirs)
        if torch is not None:
            contenders["torch"] = _torch_pass(module, xt, dt)
        ms = _median_ms(contenders, repeats, _sync(cp, torch))
        for impl in impls:
            rows.append({"case": case.name, "shape": case.describe(), "impl": impl,
                         "ms": ms[impl], "torch_ms": ms.get("torch"),
                         "ratio": ms[impl] / ms["torch"] if "torch" in ms else None,
                         "check": checks.get(impl)})
    return rows


def _sync(cp, torch):
    def sync():
        cp.cuda.Device().synchronize()
        if torch is not None:
            torch.cuda.synchronize()
    return sync


def step_row(cp, torch, batch: int, repeats: int, log) -> dict:
    """One vgg38 --bn --residual training step, minidl (CuPy) against PyTorch (CUDA)."""
    case = cases.CASES["step"].with_batch(batch)
    log(f"gpu {case.name}: {case.describe()}")
    model = case.build_model()
    x_host, y_host = step_mod.batch(case)
    contenders = {}
    twin = None
    if torch is not None:
        from . import torch_twins  # noqa: PLC0415
        twin = torch_twins.twin(model).cuda()
    pool = cp.get_default_memory_pool()
    pool.free_all_blocks()
    model.to("gpu")
    x, y = cp.asarray(x_host), cp.asarray(y_host)
    contenders["minidl"] = step_mod.minidl_step(model, x, y)
    if twin is not None:
        torch.cuda.reset_peak_memory_stats()
        contenders["torch"] = step_mod.torch_step(twin, x_host, y_host, device="cuda")
    first = {name: fn() for name, fn in contenders.items()}  # same weights: same first loss
    ms = _median_ms(contenders, repeats, _sync(cp, torch))
    row = {"case": case.name, "shape": case.describe(), "impl": "model", "ms": ms["minidl"],
           "torch_ms": ms.get("torch"), "ratio": ms["minidl"] / ms["torch"] if twin else None,
           "check": (abs(first["minidl"] - first["torch"]) / abs(first["torch"])
                     if twin else None),
           "pool_mib": pool.total_bytes() / MIB,
           "torch_reserved_mib": torch.cuda.max_memory_reserved() / MIB if twin else None,
           "torch_allocated_mib": torch.cuda.max_memory_allocated() / MIB if twin else None}
    return row


def copies_per_step(cp, torch, batch: int, steps: int, log) -> dict:
    """Device<->host copies and synchronisations per training step, counted by CUPTI.

    Runs the body of the training loop (``minidl.train.Trainer``'s per-batch lines) ``steps``
    times on host batches, as training does: copy the batch in, ``train_step``, the
    gradient-flow sums, the running totals and their one read.
    """
    if torch is None:
        return {"available": False, "why": "needs PyTorch with CUDA (its profiler counts copies)"}
    from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415

    from .. import metrics  # noqa: PLC0415
    from ..train import train_step  # noqa: PLC0415

    def count(fn) -> dict:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            cp.cuda.Device().synchronize()
        names = [e.name for e in prof.events()]
        return {"dtoh": sum("DtoH" in n or "Device -> Pageable" in n
                            or "Device -> Pinned" in n for n in names),
                "htod": sum("HtoD" in n or "Pageable -> Device" in n
                            or "Pinned -> Device" in n for n in names),
                "sync": sum("Synchronize" in n for n in names),
                "names": sorted(set(names))[:60]}

    probe = cp.arange(10, dtype=cp.float32)
    calibration = count(lambda: float(probe.sum()))
    if calibration["dtoh"] < 1:
        return {"available": False, "why": "the profiler did not see CuPy's copy in "
                "float(cupy_array)", "calibration": calibration}
    case = cases.CASES["step"].with_batch(batch)
    model = case.build_model(seed=1).to("gpu")
    x_host, y_host = step_mod.batch(case)
    loss_fn, opt = losses.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3)
    flow = metrics.GradientFlow(model)
    totals = metrics.RunningTotals("gpu")
    model.train()

    def loop():
        for _ in range(steps):
            xb, yb = backend.to_device(x_host, "gpu"), backend.to_device(y_host, "gpu")
            loss, correct = train_step(model, loss_fn, opt, xb, yb)
            flow.accumulate()
            totals.add(loss, correct, len(yb))
            totals.read()
    loop()  # warm-up: kernels compiled, memory pooled
    counted = count(loop)
    log(f"gpu copies: {counted['dtoh']} device->host, {counted['htod']} host->device in "
        f"{steps} steps")
    return {"available": True, "steps": steps, "calibration_dtoh": calibration["dtoh"],
            "dtoh_per_step": counted["dtoh"] / steps, "htod_per_step": counted["htod"] / steps,
            "sync_calls_per_step": counted["sync"] / steps, "event_names": counted["names"]}


def device_info(cp, torch) -> dict:
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"]
    return {"device": name.decode() if isinstance(name, bytes) else name,
            "cupy": cp.__version__, "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
            "numpy": np.__version__, "python": sys.version.split()[0],
            "torch": torch.__version__ if torch is not None else None,
            "cudnn": torch.backends.cudnn.version() if torch is not None else None}


def markdown(results: dict) -> str:
    """The results as a markdown table, the copy count below it."""
    lines = ["| case | shape | impl | minidl ms | torch ms | x time | check |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["rows"]:
        torch_ms = "-" if r["torch_ms"] is None else f"{r['torch_ms']:.2f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        check = "-" if r["check"] is None else f"{r['check']:.1e}"
        lines.append(f"| {r['case']} | {r['shape']} | {r['impl']} | {r['ms']:.2f} | "
                     f"{torch_ms} | {ratio} | {check} |")
    step = next((r for r in results["rows"] if r["case"] == "step"), None)
    if step is not None and step.get("torch_reserved_mib") is not None:
        lines.append("")
        lines.append(f"Step memory: CuPy pool {step['pool_mib']:.0f} MiB; torch reserved "
                     f"{step['torch_reserved_mib']:.0f} MiB (allocated peak "
                     f"{step['torch_allocated_mib']:.0f} MiB).")
    copies = results.get("copies")
    if copies is not None:
        lines.append("")
        if copies["available"]:
            lines.append(f"Copies per training-loop step (CUPTI, {copies['steps']} steps): "
                         f"{copies['dtoh_per_step']:g} device->host, "
                         f"{copies['htod_per_step']:g} host->device, "
                         f"{copies['sync_calls_per_step']:g} synchronize calls.")
        else:
            lines.append(f"Copies per step: not counted ({copies['why']}).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m minidl.bench gpu",
        description="Time minidl on CuPy against PyTorch on CUDA (conv layer, BatchNorm, "
                    "LeakyReLU, a vgg38 --bn --residual training step) and count the "
                    "training loop's device->host copies per step.")
    p.add_argument("--batch", type=int, default=100, help="batch size (default 100)")
    p.add_argument("--repeats", type=int, default=20, help="timed repeats (default 20)")
    p.add_argument("--steps", type=int, default=10,
                   help="training-loop steps whose copies are counted (default 10)")
    p.add_argument("--quick", action="store_true", help="batch 8, 3 repeats, 3 steps")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--markdown", metavar="FILE", help="also write the table as markdown")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.repeats, args.steps = 8, 3, 3
    for name in ("batch", "repeats", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    for option in ("json", "markdown"):
        path = getattr(args, option)
        if path and not Path(path).resolve().parent.is_dir():
            p.error(f"--{option} {path}: folder {Path(path).parent} does not exist")
    try:
        cp = _cupy()
    except SystemExit as stop:
        print(stop, file=sys.stderr)
        return 2
    torch = _torch_cuda()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if torch is None:
        log("PyTorch with CUDA is not installed: timing minidl only (no ratios, no copy count)")
    results = {"schema": "minidl.bench.gpu/1",
               "command": "python -m minidl.bench gpu " + " ".join(argv or sys.argv[1:]),
               "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                   timespec="seconds"),
               "machine": device_info(cp, torch), "batch": args.batch, "repeats": args.repeats}
    results["rows"] = op_rows(cp, torch, args.batch, args.repeats, log)
    results["rows"].append(step_row(cp, torch, args.batch, args.repeats, log))
    results["copies"] = copies_per_step(cp, torch, args.batch, args.steps, log)
    table = markdown(results)
    print(table, end="")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.markdown:
        m = results["machine"]
        head = (f"`{results['command']}`\n\n- {m['device']}; CuPy {m['cupy']} (CUDA runtime "
                f"{m['cuda_runtime']}), NumPy {m['numpy']}, torch {m['torch']} (cuDNN "
                f"{m['cudnn']}); finished {results['created']}\n- medians of {args.repeats} "
                f"interleaved repeats, batch {args.batch}, device synchronised around each "
                "call; float32 throughout (PyTorch's TF32 switched off)\n\n")
        Path(args.markdown).write_text(head + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
