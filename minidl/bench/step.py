"""One training step (forward, cross-entropy, backward, Adam) in minidl and in PyTorch.

The step's peak memory is the maximum resident set size of a fresh process that builds the
model and trains: ``peak_rss(case, "minidl" | "torch")`` starts one with
``python -m minidl.bench.step`` and reads the JSON line it prints. A fresh process, because
arrays freed earlier in a long benchmark would otherwise hide the step's own peak. The
figure is the peak over the steps after the first (where Linux lets the peak be reset): the
first step also compiles numba kernels, a one-off cost that is reported apart.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from .. import losses, optim
from . import cases, timing


def batch(case, seed: int = 0):
    """Random float32 inputs x: ``case.x_shape`` and integer labels (N,)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.x_shape).astype(np.float32)
    y = rng.integers(0, case.classes, case.N)
    return x, y


def minidl_step(model, x, y, lr: float = 1e-3):
    """A ``step()`` that trains ``model`` on (x, y) and returns the loss (a Python float)."""
    opt = optim.Adam(model.parameters(), lr=lr)
    crit = losses.CrossEntropyLoss()
    model.train()

    def step():
        opt.zero_grad()
        loss = crit(model(x), y)
        model.backward(crit.backward())
        opt.step()
        return float(loss)
    return step


def torch_step(module, x, y, lr: float = 1e-3, device: str = "cpu"):
    """The same step for a torch ``module`` (e.g. ``torch_twins.twin(model)``) on ``device``
    ("cpu" or "cuda"; the module must already be there)."""
    import torch
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    module.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(module(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def _max_rss_mib() -> float:
    """This process's peak resident size so far."""
    try:
        # not ru_maxrss: on Linux that starts at the parent's size when forked from a big one
        return timing.proc_status_kib("VmHWM") / 1024
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024  # bytes / KiB


def measure_in_this_process(case, library: str, steps: int) -> dict:
    """Build ``case``'s model in ``library``, run one warm-up step and ``steps`` more.

    Returns max_rss_mib (the peak resident size during the steps after the first, or the
    process's lifetime peak where it cannot be reset), lifetime_max_rss_mib, the resident
    size once the model is built, and the step times.
    """
    model = case.build_model()
    x, y = batch(case)
    if library == "torch":
        from .torch_twins import twin
        module = twin(model)
        del model  # the torch process keeps only torch's copy of the network
        step = torch_step(module, x, y)
    else:
        step = minidl_step(model, x, y)
    built = _max_rss_mib()
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    lifetime_before_reset = _max_rss_mib()
    if timing.rss_method_available():
        timing.reset_peak_rss()  # from here on, the peak of training alone
    seconds, loss = [], None
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        seconds.append(time.perf_counter() - start)
    peak = _max_rss_mib()
    return {"library": library, "max_rss_mib": peak,
            "lifetime_max_rss_mib": max(peak, lifetime_before_reset),
            "max_rss_after_build_mib": built, "first_step_ms": 1e3 * first,
            "step_ms": [1e3 * s for s in seconds], "loss": loss}


def peak_rss(case, library: str, steps: int = 2, kernels: str | None = None) -> dict:
    """``measure_in_this_process`` in a fresh interpreter (``MINIDL_KERNELS=kernels`` if given)."""
    env = dict(os.environ)
    if kernels is not None:
        env["MINIDL_KERNELS"] = kernels
    cmd = [sys.executable, "-m", "minidl.bench.step", case.name, "--library", library,
           "--batch", str(case.N), "--steps", str(steps)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    step_cases = [name for name, c in cases.CASES.items() if c.group == "step"]
    parser = argparse.ArgumentParser(
        prog="python -m minidl.bench.step",
        description="Run training steps in this fresh process; print its max RSS as JSON.")
    parser.add_argument("case", choices=step_cases)
    parser.add_argument("--library", choices=("minidl", "torch"), default="minidl")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the case's)")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    case = cases.CASES[args.case]
    if args.batch is not None:
        case = case.with_batch(args.batch)
    print(json.dumps(measure_in_this_process(case, args.library, args.steps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
