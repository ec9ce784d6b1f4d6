"""The command line: ``python -m minidl.bench [--quick] [--only CASE ...] [--kernels both] ...``.

Prints a markdown table (minidl and PyTorch side by side, their ratios); ``--json``,
``--markdown`` and ``--plot`` also write it to files. ``--list`` shows the named cases.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from .. import _threads, kernels
from . import cases, measure, report

KERNEL_CHOICES = ("auto", "numpy", "numba", "both")  # both: numpy and auto, interleaved
FULL_REPEATS = {"op": 7, "step": 5}
QUICK_REPEATS = 2
GEMM_SIZE = {False: 2048, True: 256}  # by --quick
# the other measurements, each its own module and command line: one Fashion-MNIST epoch of
# vgg38 --bn --residual (epoch.py), and a training step's time per kind of op (profile.py)
SUBCOMMANDS = ("epoch", "profile", "gpu")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m minidl.bench",
        description="Time minidl's layers and a vgg38 training step against PyTorch's CPU "
                    "build, interleaved in one run; report ms, GFLOP/s, peak memory, ratios. "
                    "'python -m minidl.bench epoch --help': a whole Fashion-MNIST epoch; "
                    "'python -m minidl.bench profile --help': a step's time per kind of op.")
    p.add_argument("--only", nargs="+", metavar="CASE",
                   help="run only these cases (see --list); default: all")
    p.add_argument("--list", action="store_true", help="list the named cases and exit")
    p.add_argument("--quick", action="store_true",
                   help=f"every case at batch {cases.QUICK_BATCH}, {QUICK_REPEATS} repeats: a "
                        "smoke run in seconds, not a measurement")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed repeats per contender (default {FULL_REPEATS['op']} for ops, "
                        f"{FULL_REPEATS['step']} for the training step)")
    p.add_argument("--kernels", choices=KERNEL_CHOICES, default="auto",
                   help="MINIDL_KERNELS for minidl: auto (numba when installed), numpy, numba, "
                        "or both (numpy and auto side by side)")
    p.add_argument("--no-torch", action="store_true", help="time minidl only")
    p.add_argument("--json", metavar="FILE",
                   help="write the results as JSON ('-': print it instead of the table)")
    p.add_argument("--markdown", metavar="FILE", help="write the table as markdown")
    p.add_argument("--plot", metavar="FILE", help="write a bar chart of the ratios (PNG, SVG, ...)")
    return p


def _check_args(p, args) -> None:
    if args.repeats is not None and args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.kernels == "numba" and not kernels.numba_available():
        p.error('--kernels numba: numba is not installed (pip install -e ".[fast]")')
    for option in ("json", "markdown", "plot"):
        path = getattr(args, option)
        if path and path != "-" and not Path(path).resolve().parent.is_dir():
            p.error(f"--{option} {path}: folder {Path(path).parent} does not exist")
    if args.plot and args.no_torch:
        p.error("--plot draws minidl/torch ratios: it cannot be combined with --no-torch")


def _torch_twins(no_torch: bool):
    """The torch_twins module, or None when torch is not installed or not wanted."""
    if no_torch:
        return None
    try:
        from . import torch_twins
    except ImportError:
        return None
    return torch_twins


def _git_commit() -> str | None:
    """The commit of the minidl source being measured (None outside a git checkout), with
    "+uncommitted" when the package's tracked files differ from it."""
    package = Path(__file__).resolve().parents[1]

    def git(*args):
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True,
                                  cwd=package, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return None
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return commit + ("+uncommitted" if changed else "")


def machine(torch_twins) -> dict:
    """Where and with what the numbers were measured."""
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "numpy": np.__version__,
            "threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                         "MKL_NUM_THREADS", "MINIDL_KERNEL_THREADS")
                            if k in os.environ},
            "minidl_source": str(Path(__file__).resolve().parents[2]),
            "minidl_commit": _git_commit(), "numba": None, "torch": None, "torch_threads": None}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in f
                                if line.startswith("model name")), None)
    except OSError:
        info["cpu"] = platform.processor() or None
    try:
        info["blas"] = np.show_config(mode="dicts")["Build Dependencies"]["blas"].get("name")
    except Exception:  # older NumPy: no dict form of the build configuration
        info["blas"] = None
    # minidl's pool shares kernels, NumPy passes and conv blocks alike, numba or not
    info["kernel_threads"] = _threads.threads()
    if kernels.numba_available():
        import numba
        info["numba"] = numba.__version__
    if torch_twins is not None:
        info["torch"] = torch_twins.torch.__version__
        info["torch_threads"] = torch_twins.torch.get_num_threads()
    return info


def run(args, torch_twins, log) -> dict:
    """Measure every selected case; return the results dict (``report`` documents its rows)."""
    selected = cases.select(args.only, args.quick)
    load_before = _load_average()
    where = machine(torch_twins)  # now: a commit made during a long run is not what ran
    modes = ["numpy", "auto"] if args.kernels == "both" else [args.kernels]
    warmup = 1
    torch = None if torch_twins is None else torch_twins.torch
    gemm = measure.gemm_rate(GEMM_SIZE[args.quick],
                             args.repeats or (QUICK_REPEATS if args.quick else 5), torch)
    log(f"float32 GEMM: {gemm['numpy_gflops']:.1f} GFLOP/s (NumPy)")
    measured = []
    for case in selected:
        kind = "step" if case.group == "step" else "op"
        repeats = args.repeats or (QUICK_REPEATS if args.quick else FULL_REPEATS[kind])
        log(f"{case.name}: {case.describe()}, {repeats} repeats")
        if kind == "step":
            found = measure.measure_step(case, modes, torch_twins, repeats,
                                         subprocess_steps=1 if args.quick else 2)
        else:
            found = measure.measure_op(case, modes, torch_twins, repeats, warmup)
        measured.append((case, found))
    rows = []
    for case, found in measured:
        flops = measure.forward_backward_flops(case)
        rows.extend(report.row(m, flops, gemm["numpy_gflops"]) for m in found)
    return {"schema": "minidl.bench/1",
            "command": "python -m minidl.bench " + " ".join(args.argv),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "quick": args.quick, "kernels": modes, "machine": where,
            "load_average": {"start": load_before, "end": _load_average()},
            "gemm": gemm, "memory_method": measure.memory_method(), "rows": rows}


def _load_average():
    """The 1-minute load average: how busy the machine was (None where unknown)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:  # python -m minidl.bench epoch|profile ...
        from importlib import import_module
        return import_module(f".{argv[0]}", __package__).main(argv[1:])
    p = parser()
    args = p.parse_args(argv)
    args.argv = argv
    if args.list:
        for name, case in cases.CASES.items():
            print(f"{name:12s} {case.group:10s} {case.describe()}  [{', '.join(case.impls)}]")
        return 0
    _check_args(p, args)
    try:
        cases.select(args.only)
    except ValueError as err:
        p.error(str(err))
    torch_twins = _torch_twins(args.no_torch)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if torch_twins is None and not args.no_torch:
        log("PyTorch is not installed: timing minidl only (no ratios)")
        if args.plot:
            p.error("--plot needs PyTorch installed (it draws minidl/torch ratios)")
    results = run(args, torch_twins, log)
    table = report.markdown(results)
    if args.json:
        if args.json == "-":
            print(json.dumps(results, indent=1))
        else:
            report.write_json(results, args.json)
    if args.markdown:
        Path(args.markdown).write_text(report.header(results) + table)
    if args.json != "-":
        print(table, end="")
    if args.plot:
        report.plot(results, args.plot)
    return 0
