"""``python -m minidl.bench profile``: where one training step's time goes, per kind of op.

The same vgg38 ``--bn --residual`` step as the bench's ``step`` case, in minidl (once per
kernel path) and in PyTorch, interleaved repeat by repeat; for each, the milliseconds spent
in each kind of layer (forward and backward apart), the loss, the optimiser, and what is
left (the residual additions, Python between layers). Medians over the repeats.

minidl: every layer's ``forward`` and ``backward`` is wrapped (an instance attribute, removed
afterwards) to time its call, and a container's own ("self") time is its total less its
children's, so nothing is counted twice. PyTorch: ``torch.profiler`` over the step; each
top-level event (``aten::conv2d``, ``autograd::engine::evaluate_function:
ConvolutionBackward0``, ``Optimizer.step#Adam.step``, ...) is put in the same categories,
scaled to the time of a plain (unprofiled) step run just before. minidl's timers add a few
microseconds per layer call; compare the categories, and the bench's ``step`` row for the
totals.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict

from .. import layers as L, losses, optim
from . import cases, step, timing

# torch event name (lower case) fragment -> category, first match wins; backward events are
# named after their autograd function (ConvolutionBackward0, NativeBatchNormBackward0, ...)
_TORCH_CATEGORIES = (
    ("optimizer", "Adam"), ("zero_grad", "zero_grad"),
    ("convolution", "Conv2d"), ("conv2d", "Conv2d"), ("batch_norm", "BatchNorm2d"),
    ("batchnorm", "BatchNorm2d"), ("leaky_relu", "LeakyReLU"), ("leakyrelu", "LeakyReLU"),
    ("adaptive_avg", "GlobalAvgPool2d"), ("mean", "GlobalAvgPool2d"),
    ("avg_pool", "AvgPool2d"), ("avgpool", "AvgPool2d"),
    ("linear", "Linear"), ("addmm", "Linear"), ("mm", "Linear"), ("t", "Linear"),
    ("cross_entropy", "loss"), ("log_softmax", "loss"), ("nll", "loss"),
    ("add", "residual add"), ("flatten", "Flatten"), ("view", "Flatten"),
    ("reshape", "Flatten"),
)


def _torch_category(name: str) -> tuple[str, str]:
    """(category, phase) of a top-level torch profiler event."""
    low = name.lower()
    phase = "bwd" if "backward" in low or low.startswith("autograd::") else "fwd"
    tail = low.split(":")[-1].strip()
    if low.startswith("optimizer."):
        return ("zero_grad" if "zero_grad" in low else "Adam"), "step"
    for fragment, category in _TORCH_CATEGORIES:
        if fragment in (tail if len(fragment) <= 2 else low):
            if category == "zero_grad":
                return "zero_grad", "step"
            return category, phase
    return f"other ({name})", phase


class _LayerTimer:
    """Wraps every layer of a model to add its forward / backward self time per type name."""

    def __init__(self, model):
        self.model = model
        self.totals = defaultdict(float)   # (type name, phase) -> seconds
        self._stack = []                    # children's seconds inside the open calls

    def _wrap(self, layer, phase: str):
        bound = getattr(type(layer), "forward" if phase == "fwd" else "backward")
        key = (_category(layer), phase)

        def timed(arg):
            self._stack.append(0.0)
            start = time.perf_counter()
            out = bound(layer, arg)
            elapsed = time.perf_counter() - start
            inside = self._stack.pop()
            self.totals[key] += elapsed - inside
            if self._stack:
                self._stack[-1] += elapsed
            return out
        return timed

    def __enter__(self):
        for _, layer in self.model.named_layers():
            object.__setattr__(layer, "forward", self._wrap(layer, "fwd"))
            object.__setattr__(layer, "backward", self._wrap(layer, "bwd"))
        return self

    def __exit__(self, *exc):
        for _, layer in self.model.named_layers():
            layer.__dict__.pop("forward", None)
            layer.__dict__.pop("backward", None)


def _category(layer) -> str:
    """A residual block's self time is its addition; other containers (Sequential, the model
    itself) only pass arrays between their children; a leaf is named by its type."""
    if isinstance(layer, L.Residual):
        return "residual add"
    return "containers" if layer.children() else type(layer).__name__


def minidl_profile(model, x, y):
    """A ``profile()`` running one step of ``model`` on (x, y): {(category, phase): seconds}."""
    opt = optim.Adam(model.parameters(), lr=1e-3)
    crit = losses.CrossEntropyLoss()
    model.train()

    def profile():
        parts = defaultdict(float)
        t0 = time.perf_counter()
        opt.zero_grad()
        t1 = time.perf_counter()
        with _LayerTimer(model) as timer:
            logits = model(x)
            t2 = time.perf_counter()
            loss = crit(logits, y)
            dlogits = crit.backward()
            t3 = time.perf_counter()
            model.backward(dlogits)
        t4 = time.perf_counter()
        opt.step()
        t5 = time.perf_counter()
        float(loss)
        for key, seconds in timer.totals.items():
            parts[key] += seconds
        parts[("zero_grad", "step")] += t1 - t0
        parts[("loss", "fwd+bwd")] += t3 - t2
        parts[("Adam", "step")] += t5 - t4
        parts[("total", "step")] += t5 - t0
        return parts
    return profile


def torch_profile(module, x, y):
    """The same for a torch module: {(category, phase): seconds} from torch.profiler.

    The profiler's own overhead per op is not small against a step of a few hundred ops, so
    each call also runs one step unprofiled, and the profiled parts are scaled to its time:
    the split is the profiler's, the total the plain step's.
    """
    from torch.profiler import ProfilerActivity, profile as torch_profiler
    one_step = step.torch_step(module, x, y)

    def profile():
        t0 = time.perf_counter()
        one_step()
        plain = time.perf_counter() - t0
        with torch_profiler(activities=[ProfilerActivity.CPU]) as prof:
            one_step()
        parts = defaultdict(float)
        for event in prof.events():
            if event.cpu_parent is None:
                parts[_torch_category(event.name)] += event.cpu_time_total / 1e6
        profiled = sum(parts.values())
        for key in parts:
            parts[key] *= plain / profiled
        parts[("total", "step")] = plain
        return parts
    return profile


def run(case, modes, repeats: int, with_torch: bool = True, log=print) -> dict:
    """{contender: {(category, phase): median seconds}}, contenders interleaved per repeat."""
    model_x, y = step.batch(case)
    contenders = {}
    for mode in modes:
        profile = minidl_profile(case.build_model(), model_x, y)

        def call(profile=profile, mode=mode):
            with timing.kernel_path(mode):
                return profile()
        contenders[f"minidl {mode}"] = call
    if with_torch:
        from .torch_twins import twin
        contenders["torch"] = torch_profile(twin(case.build_model()), model_x, y)
    for fn in contenders.values():
        fn()  # warm-up: page faults, BLAS threads, numba compilation
    samples = {name: [] for name in contenders}
    for r in range(repeats):
        for name, fn in contenders.items():
            samples[name].append(fn())
        log(f"repeat {r + 1}/{repeats}: " + ", ".join(
            f"{n} {1e3 * s[-1][('total', 'step')]:.0f} ms" for n, s in samples.items()))
    medians = {}
    for name, runs in samples.items():
        keys = set().union(*runs)
        medians[name] = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
    return medians


def table(medians: dict) -> str:
    """Markdown: one row per (category, phase), one column per contender, in ms; then the
    gap of each minidl contender to torch per row, biggest first in the order of the first."""
    names = list(medians)
    keys = sorted(set().union(*medians.values()),
                  key=lambda k: (k[0] == "total", -max(m.get(k, 0) for m in medians.values())))
    head = "| op | phase | " + " | ".join(f"{n} ms" for n in names)
    if "torch" in medians:
        head += " | " + " | ".join(f"{n} - torch" for n in names if n != "torch")
    lines = [head + " |", "|" + " --- |" * (2 + len(names) + ("torch" in medians)
                                              * (len(names) - 1))]
    for key in keys:
        cells = [f"{1e3 * medians[n].get(key, 0.0):.1f}" for n in names]
        if "torch" in medians:
            cells += [f"{1e3 * (medians[n].get(key, 0.0) - medians['torch'].get(key, 0.0)):+.1f}"
                      for n in names if n != "torch"]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    step_cases = [name for name, c in cases.CASES.items() if c.group == "step"]
    p = argparse.ArgumentParser(
        prog="python -m minidl.bench profile",
        description="Per-op milliseconds of one training step: minidl (per kernel path) "
                    "and PyTorch, interleaved; medians.")
    p.add_argument("case", nargs="?", default="step", choices=step_cases)
    p.add_argument("--kernels", nargs="+", default=["numpy", "auto"],
                   choices=("numpy", "auto", "numba"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the case's)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--markdown", metavar="FILE", help="also write the table here")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    case = cases.CASES[args.case]
    if args.batch is not None:
        case = case.with_batch(args.batch)
    medians = run(case, args.kernels, args.repeats, not args.no_torch,
                  log=lambda m: print(m, file=sys.stderr, flush=True))
    text = table(medians)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"`python -m minidl.bench profile {' '.join(argv or sys.argv[1:])}`\n\n"
                    + text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
