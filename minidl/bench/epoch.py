"""``python -m minidl.bench epoch``: one training epoch of vgg38 ``--bn --residual`` on
Fashion-MNIST, minidl (per kernel path) and the same network in PyTorch, side by side.

What ``python -m minidl.train vgg38 --bn --residual`` does in an epoch: 57,000 shuffled
training images in batches of 100 (570 steps; forward, cross-entropy, backward, Adam), then
the 3,000 validation images in eval mode. Every contender trains its own copy of the same
initial weights on the same batches, and the contenders take turns batch by batch, so a
burst of load from elsewhere on the machine falls on all of them; each one's epoch time is
the sum of its own steps. ``--steps N`` stops after N steps and extrapolates the training
part to the full epoch from their mean, and the validation part from the same fraction of
the validation batches (``--no-val`` skips it). The learning rate is constant (timing does
not depend on it); the losses and accuracies are reported to show that every contender
really learns the same thing.

Two ratios to PyTorch are reported, of the epoch times and of the median step times. They
part when the machine is busy: load stalls a library whose threads meet in many short
parallel regions (PyTorch) far more than one whose threads meet less often, and a few
stalled steps move a sum, not a median (on a shared machine one PyTorch step took 837 ms
at the median and up to 6 s in the same epoch).

Peak memory is not measured here (the contenders share one process): the bench's ``step``
case measures it per library in fresh processes.
"""
from __future__ import annotations

import argparse
import datetime
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .. import data, losses, models, optim
from ..functional.conv import CHOICES as _CONV_CHOICES
from ..metrics import count_correct
from . import report, timing

MODEL = ("vgg38", {"bn": True, "residual": True})
KERNEL_CHOICES = ("numpy", "auto", "numba")
METHOD_CHOICES = _CONV_CHOICES[1:]  # every algorithm but the loops reference, and "auto"


def build(splits, conv_method: str = "auto", seed: int = 0):
    """The vgg38 --bn --residual network for ``splits``' images (seeded: equal copies)."""
    name, options = MODEL
    return models.build(name, in_channels=splits.in_channels, num_classes=splits.num_classes,
                        seed=seed, conv_method=conv_method, **options)


class _Minidl:
    """One minidl contender: a model, Adam and the loss, under ``MINIDL_KERNELS=mode``."""

    def __init__(self, model, mode: str, lr: float):
        self.model, self.mode = model, mode
        self.opt = optim.Adam(model.parameters(), lr=lr)
        self.loss_fn = losses.CrossEntropyLoss()

    def step(self, x, y):
        """(loss, correct) of one training step, as Python numbers."""
        with timing.kernel_path(self.mode):
            logits = self.model(x)
            loss = self.loss_fn(logits, y)
            self.opt.zero_grad()
            self.model.backward(self.loss_fn.backward())
            self.opt.step()
        return float(loss), int(count_correct(logits, y))

    def evaluate(self, x, y):
        """(summed loss, correct) of one validation batch in eval mode."""
        with timing.kernel_path(self.mode):
            self.model.eval()
            logits = self.model(x)
            loss = float(self.loss_fn(logits, y)) * len(x)
            self.model.train()
        return loss, int(count_correct(logits, y))


class _Torch:
    """The PyTorch contender: the twin of a minidl model (same weights), torch's Adam."""

    def __init__(self, model, lr: float):
        import torch

        from .torch_twins import twin
        self.torch = torch
        self.module = twin(model)
        self.opt = torch.optim.Adam(self.module.parameters(), lr=lr)

    def step(self, x, y):
        torch = self.torch
        self.module.train()
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        self.opt.zero_grad(set_to_none=True)
        logits = self.module(xt)
        loss = torch.nn.functional.cross_entropy(logits, yt)
        loss.backward()
        self.opt.step()
        return loss.item(), int((logits.argmax(1) == yt).sum())

    def evaluate(self, x, y):
        torch = self.torch
        self.module.eval()
        with torch.no_grad():
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            logits = self.module(xt)
            loss = float(torch.nn.functional.cross_entropy(logits, yt, reduction="sum"))
        self.module.train()
        return loss, int((logits.argmax(1) == yt).sum())


def _interleaved(contenders, batches, steps: int, call: str, label: str, log) -> dict:
    """Run ``contender.<call>(xb, yb)`` for each of the first ``steps`` batches, contenders in
    turn; return {name: {"seconds": [per batch], "loss": summed, "correct": n, "seen": n}}."""
    out = {name: {"seconds": [], "loss": 0.0, "correct": 0, "seen": 0} for name in contenders}
    started = time.perf_counter()
    for i, (xb, yb) in enumerate(batches):
        if i == steps:
            break
        for name, c in contenders.items():
            t0 = time.perf_counter()
            loss, correct = getattr(c, call)(xb, yb)
            record = out[name]
            record["seconds"].append(time.perf_counter() - t0)
            # a training step returns the batch's mean loss, an evaluation its sum
            record["loss"] += loss * len(xb) if call == "step" else loss
            record["correct"] += correct
            record["seen"] += len(xb)
        if (i + 1) % 10 == 0 or i + 1 == steps:
            elapsed = time.perf_counter() - started
            log(f"{label} {i + 1}/{steps}: " + ", ".join(
                f"{n} {1e3 * r['seconds'][-1]:.0f} ms" for n, r in out.items())
                + f"; {elapsed:.0f} s so far, about {elapsed / (i + 1) * (steps - i - 1):.0f} s"
                " left")
    return out


def _whole(seconds: list, batches: int) -> float:
    """The time of ``batches`` batches from the first ``len(seconds)`` timed: their sum when
    all were timed, else the first (which pays one-off costs: page faults, compiling numba
    kernels, BLAS threads starting) plus the mean of the others for each remaining batch."""
    if len(seconds) == batches or len(seconds) == 1:
        return sum(seconds) / len(seconds) * batches
    return seconds[0] + statistics.mean(seconds[1:]) * (batches - 1)


def cross(modes, conv_methods=("auto",)) -> list:
    """Every (kernel path, conv method) pair: the minidl contenders of ``run``."""
    return [(mode, method) for method in conv_methods for mode in modes]


def parse_contender(text: str) -> tuple:
    """``"auto/winograd"`` -> ("auto", "winograd"); ValueError naming the valid choices."""
    mode, _, method = text.partition("/")
    if mode not in KERNEL_CHOICES or method not in METHOD_CHOICES:
        raise ValueError(f"contender {text!r}: expected KERNELS/METHOD with KERNELS one of "
                         f"{', '.join(KERNEL_CHOICES)} and METHOD one of "
                         f"{', '.join(METHOD_CHOICES)}, e.g. auto/winograd")
    return mode, method


def run(pairs, steps: int | None, with_torch: bool, validate: bool, batch_size: int,
        lr: float, data_dir=None, log=print) -> dict:
    """Train the contenders through one epoch (or ``steps`` steps) and validate them (all
    of the validation split, or the same fraction of it); return the results dict.
    ``pairs``: the minidl contenders as (kernel path, conv method), e.g. ``cross(["numpy",
    "auto"])``; PyTorch is one more when ``with_torch``."""
    splits = data.load_dataset("fashion_mnist", data_dir=data_dir, seed=0)
    x_train, y_train = splits.train
    train = data.BatchIterator(x_train, y_train, batch_size, shuffle=True,
                               rng=np.random.default_rng(0))
    val = data.BatchIterator(*splits.val, batch_size, shuffle=False)
    full = {"train": len(train), "val": len(val) if validate else 0}
    steps = full["train"] if steps is None else min(steps, full["train"])
    timed = {"train": steps, "val": math.ceil(full["val"] * steps / full["train"])}
    methods = list(dict.fromkeys(method for _, method in pairs))
    contenders = {}
    for mode, method in pairs:
        name = f"minidl {mode}" + (f" {method}" if methods != ["auto"] else "")
        contenders[name] = _Minidl(build(splits, method), mode, lr)
    if with_torch:
        contenders["torch"] = _Torch(build(splits), lr)
    phases = {"train": _interleaved(contenders, train, timed["train"], "step", "train", log)}
    if validate:
        phases["val"] = _interleaved(contenders, val, timed["val"], "evaluate", "validation",
                                     log)
    rows = []
    for name in contenders:
        row = {"contender": name}
        for phase, records in phases.items():
            r = records[name]
            seconds = r["seconds"]
            row[phase] = {"batches": len(seconds), "seconds": sum(seconds),
                          "median_ms": 1e3 * statistics.median(seconds),
                          "epoch_seconds": _whole(seconds, full[phase]),
                          "loss": r["loss"] / r["seen"], "accuracy": r["correct"] / r["seen"],
                          "batch_seconds": seconds}
        row["epoch_seconds"] = sum(row[phase]["epoch_seconds"] for phase in phases)
        rows.append(row)
    torch_row = next((r for r in rows if r["contender"] == "torch"), None)
    for r in rows:
        r["x_torch"] = r["epoch_seconds"] / torch_row["epoch_seconds"] if torch_row else None
        r["x_torch_median_step"] = (r["train"]["median_ms"] / torch_row["train"]["median_ms"]
                                    if torch_row else None)
    model = "vgg38 --bn --residual" + ("" if methods == ["auto"] else
                                       f" --conv-method {' | '.join(methods)}")
    return {"schema": "minidl.bench.epoch/1", "model": model,
            "batch_size": batch_size, "lr": lr, "train_images": len(x_train),
            "val_images": len(splits.val[0]) if validate else 0, "full_batches": full,
            "timed_batches": timed, "extrapolated": timed["train"] != full["train"],
            "rows": rows}


def markdown(results: dict) -> str:
    """The results as a markdown table, seconds per epoch (extrapolated if so marked)."""
    timed, full = results["timed_batches"], results["full_batches"]
    note = (f"timed: {timed['train']} of {full['train']} training batches and {timed['val']} "
            f"of {full['val']} validation batches, extrapolated to the epoch"
            if results["extrapolated"] else
            f"a full epoch: {full['train']} training batches of {results['batch_size']} and "
            f"{full['val']} validation batches")
    lines = [f"{results['model']} on Fashion-MNIST ({results['train_images']} training, "
             f"{results['val_images']} validation images), Adam; {note}.", "",
             "| contender | train step ms (median) | x torch (median step) | train s | "
             "validation s | epoch s | x torch (epoch) | train loss | train acc | val acc |",
             "|" + " --- |" * 10]
    for r in results["rows"]:
        t, v = r["train"], r.get("val")
        x = "-" if r["x_torch"] is None else f"{r['x_torch']:.2f}x"
        xm = r.get("x_torch_median_step")
        xm = "-" if xm is None else f"{xm:.2f}x"
        lines.append(f"| {r['contender']} | {t['median_ms']:.0f} | {xm} | "
                     f"{t['epoch_seconds']:.0f} | "
                     f"{'-' if v is None else format(v['epoch_seconds'], '.0f')} | "
                     f"{r['epoch_seconds']:.0f} | {x} | {t['loss']:.4f} | "
                     f"{100 * t['accuracy']:.2f}% | "
                     f"{'-' if v is None else format(100 * v['accuracy'], '.2f') + '%'} |")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m minidl.bench epoch",
        description="Time one Fashion-MNIST epoch of vgg38 --bn --residual (batch 100, Adam) "
                    "per minidl kernel path and in PyTorch, batch by batch in turn.")
    p.add_argument("--steps", type=int, default=None,
                   help="time only the first N training steps and extrapolate to the epoch "
                        "(default: the whole epoch, 570 steps)")
    p.add_argument("--kernels", nargs="+", default=["numpy", "auto"], choices=KERNEL_CHOICES,
                   help="minidl kernel paths (MINIDL_KERNELS), default: numpy auto")
    p.add_argument("--conv-method", nargs="+", default=["auto"], choices=METHOD_CHOICES,
                   help="minidl's convolution algorithm(s), each a contender per kernel path "
                        "(default auto, the model's default: winograd where the numba kernels "
                        "run, im2col on the NumPy path)")
    p.add_argument("--contenders", nargs="+", metavar="KERNELS/METHOD",
                   help="the minidl contenders as pairs instead of every --kernels x "
                        "--conv-method, e.g. numpy/im2col auto/im2col auto/winograd")
    p.add_argument("--no-torch", action="store_true", help="time minidl only")
    p.add_argument("--no-val", action="store_true", help="skip the validation pass")
    p.add_argument("--batch", type=int, default=100, help="batch size (default 100)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    p.add_argument("--data-dir", default=None, help="where Fashion-MNIST is (default: searched)")
    p.add_argument("--json", metavar="FILE", help="also write the results (every step time)")
    p.add_argument("--markdown", metavar="FILE", help="also write the table")
    return p


def main(argv=None) -> int:
    p = parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps must be at least 1, got {args.steps}")
    if args.batch < 2:
        p.error(f"--batch must be at least 2 (BatchNorm needs two examples), got {args.batch}")
    try:
        pairs = ([parse_contender(c) for c in args.contenders] if args.contenders
                 else cross(args.kernels, args.conv_method))
    except ValueError as err:
        p.error(str(err))
    with_torch = not args.no_torch
    if with_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("PyTorch is not installed: timing minidl only", file=sys.stderr)
            with_torch = False

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    from .cli import _load_average, machine
    load_start = _load_average()
    where = machine(_torch_module() if with_torch else None)  # the commit that was imported
    results = run(pairs, args.steps, with_torch, not args.no_val, args.batch, args.lr,
                  args.data_dir, log)
    results.update(command="python -m minidl.bench epoch " + " ".join(argv),
                   created=datetime.datetime.now(datetime.timezone.utc).isoformat(
                       timespec="seconds"),
                   kernels=list(dict.fromkeys(mode for mode, _ in pairs)), quick=False,
                   load_average={"start": load_start, "end": _load_average()},
                   machine=where)
    table = markdown(results)
    if args.json:
        report.write_json(results, args.json)
    if args.markdown:
        Path(args.markdown).write_text(report.header(results) + table)
    print(table, end="")
    return 0


def _torch_module():
    from . import torch_twins
    return torch_twins


if __name__ == "__main__":
    raise SystemExit(main())
