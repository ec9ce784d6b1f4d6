"""Results as rows (plain dicts, the JSON schema), a markdown table and a bar chart of ratios.

Row schema (``row(...)``)::

    case, group ("conv" | "batchnorm" | "activation" | "step"), shape, impl, kernels, compiled
    flops      {"forward", "backward"} or {"step"}        FLOPs per phase
    ms         {phase: median ms, ..., "total": median of the per-repeat sums}
    gflops     total FLOPs / total seconds;  gemm_fraction: gflops / NumPy's GEMM GFLOP/s
    memory_mib peak extra resident memory of one forward+backward (ops); for the step the
               max RSS of a fresh process over the steps after its first (``step.py``)
    torch      {"ms", "gflops", "memory_mib"} measured in the same run, or None
    ratio      {phase: ms / torch ms, ..., "memory": memory_mib / torch memory_mib}, or None
    check      forward output (ops) or first-step loss (step) difference to torch, relative
    samples_ms {"minidl": [total ms per repeat], "torch": [...] or None}
    detail     step only: what the fresh processes measuring memory reported, else None
"""
from __future__ import annotations

import json
import math

from . import timing


def _phase_ms(samples, names) -> dict:
    ms = {name: timing.median_ms(samples, i) for i, name in enumerate(names)}
    if len(names) > 1:
        ms["total"] = timing.median_ms(samples)
    else:
        ms = {"total": ms[names[0]]}
    return ms


def _ratio(ours, theirs):
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def row(m, flops: dict, gemm_gflops: float | None) -> dict:
    """One result row from a ``measure.Measurement`` and the case's FLOPs per phase."""
    phases = ("forward", "backward") if "forward" in flops else ("step",)
    total_flops = sum(flops.values())
    ms = _phase_ms(m.samples, phases)
    gflops = total_flops / (ms["total"] * 1e-3) / 1e9
    out = {
        "case": m.case.name, "group": m.case.group, "shape": m.case.describe(), "impl": m.impl,
        "kernels": m.kernels, "compiled": m.compiled, "flops": dict(flops), "ms": ms,
        "gflops": gflops, "gemm_fraction": _ratio(gflops, gemm_gflops),
        "memory_mib": m.memory_mib, "torch": None, "ratio": None, "check": m.check,
        "samples_ms": {"minidl": [1e3 * sum(s) for s in m.samples], "torch": None},
        "detail": m.detail,
    }
    if m.torch_samples is not None:
        tms = _phase_ms(m.torch_samples, phases)
        out["torch"] = {"ms": tms, "gflops": total_flops / (tms["total"] * 1e-3) / 1e9,
                        "memory_mib": m.torch_memory_mib}
        out["ratio"] = {key: _ratio(ms[key], tms[key]) for key in ms}
        out["ratio"]["memory"] = _ratio(m.memory_mib, m.torch_memory_mib)
        out["samples_ms"]["torch"] = [1e3 * sum(s) for s in m.torch_samples]
    return out


# ---------------------------------------------------------------------------- markdown
def _num(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _x(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(results: dict) -> str:
    """The ops table, the training-step table, and a line on the GEMM ceiling."""
    rows = results["rows"]
    lines = []
    ops = [r for r in rows if r["group"] != "step"]
    if ops:
        lines += ["| case | shape | impl | kernels | fwd ms | bwd ms | ms | GFLOP/s | % GEMM | MiB "
                  "| torch ms | torch MiB | x fwd | x bwd | x time | x mem |",
                  "|" + " --- |" * 16]
        for r in ops:
            t, q = r["torch"] or {}, r["ratio"] or {}
            lines.append(
                f"| {r['case']} | {r['shape']} | {r['impl']} | {_kernels(r)} | "
                f"{_num(r['ms'].get('forward'))} | {_num(r['ms'].get('backward'))} | "
                f"{_num(r['ms']['total'])} | {_num(r['gflops'])} | "
                f"{_num(None if r['gemm_fraction'] is None else 100 * r['gemm_fraction'], 0)} | "
                f"{_num(r['memory_mib'])} | {_num(t.get('ms', {}).get('total'))} | "
                f"{_num(t.get('memory_mib'))} | {_x(q.get('forward'))} | {_x(q.get('backward'))} | "
                f"{_x(q.get('total'))} | {_x(q.get('memory'))} |")
    steps = [r for r in rows if r["group"] == "step"]
    if steps:
        if lines:
            lines.append("")
        lines += ["| training step | kernels | ms | GFLOP/s | max RSS MiB | torch ms | "
                  "torch max RSS MiB | x time | x mem |", "|" + " --- |" * 9]
        for r in steps:
            t, q = r["torch"] or {}, r["ratio"] or {}
            lines.append(
                f"| {r['shape']} | {_kernels(r)} | {_num(r['ms']['total'], 0)} | "
                f"{_num(r['gflops'])} | {_num(r['memory_mib'], 0)} | "
                f"{_num(t.get('ms', {}).get('total'), 0)} | {_num(t.get('memory_mib'), 0)} | "
                f"{_x(q.get('total'))} | {_x(q.get('memory'))} |")
    gemm = results["gemm"]
    ceiling = (f"float32 GEMM ceiling ({gemm['n']}x{gemm['n']}): "
               f"NumPy {gemm['numpy_gflops']:.1f} GFLOP/s")
    if gemm.get("torch_gflops") is not None:
        ceiling += f", torch {gemm['torch_gflops']:.1f} GFLOP/s"
    lines += ["", ceiling + f". Memory of ops: {results['memory_method']}."]
    return "\n".join(lines) + "\n"


def header(results: dict) -> str:
    """Where, on what and under which load the table was measured (markdown, for files)."""
    m, load = results["machine"], results.get("load_average") or {}
    threads = ", ".join(f"{k}={v}" for k, v in m["threads_env"].items()) or "library defaults"
    lines = [f"`{results['command']}`", "",
             f"- minidl {m['minidl_commit'] or '(no git)'} from {m['minidl_source']}; "
             f"finished {results['created']}",
             f"- {m.get('cpu') or 'unknown CPU'}, {m['cpus']} CPUs; Python {m['python']}, "
             f"NumPy {m['numpy']} ({m.get('blas') or 'BLAS unknown'}), numba {m['numba']}, "
             f"torch {m['torch']} ({m['torch_threads']} threads)",
             f"- threads: {threads}"
             + (f" (minidl's pool: {m['kernel_threads']})" if m.get("kernel_threads") else "")
             + f"; 1-minute load average {_num(load.get('start'))} at the "
             f"start, {_num(load.get('end'))} at the end",
             f"- kernel paths: {', '.join(results['kernels'])}"
             + ("; --quick (a smoke run, not a measurement)" if results["quick"] else ""), ""]
    return "\n".join(lines) + "\n"


def _kernels(r) -> str:
    return r["kernels"] + (" (numba)" if r["compiled"] else "")


def write_json(results: dict, path) -> None:
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")


# ---------------------------------------------------------------------------- plot
def plot(results: dict, path) -> None:
    """Horizontal bars of minidl / torch: time (left) and memory (right), on a log axis and
    drawn from 1 (parity), so a bar to the right is how many times slower / larger minidl is."""
    from matplotlib.figure import Figure

    from ..plots import save_figure

    rows = [r for r in results["rows"] if r["ratio"] is not None]
    if not rows:
        raise ValueError("nothing to plot: no row has a PyTorch figure (is torch installed?)")
    labels = [f"{r['case']} {r['impl']} [{_kernels(r)}]" for r in rows]
    fig = Figure(figsize=(11, 0.32 * len(rows) + 1.5))
    for ax, key, title in zip(fig.subplots(1, 2, sharey=True), ("total", "memory"),
                              ("time, minidl / PyTorch", "memory, minidl / PyTorch")):
        values = [r["ratio"][key] if r["ratio"][key] is not None else float("nan") for r in rows]
        colours = ["tab:orange" if r["compiled"] else "tab:blue" for r in rows]
        ax.barh(range(len(rows)), [v - 1 for v in values], left=1, color=colours)
        for y, v in enumerate(values):
            if v == v:  # not NaN
                ax.annotate(f"{v:.2g}", (v, y), fontsize=7, va="center",
                            ha="left" if v >= 1 else "right",
                            xytext=(2 if v >= 1 else -2, 0), textcoords="offset points")
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xscale("log")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    fig.axes[0].set_yticks(range(len(rows)), labels, fontsize=8)
    fig.axes[0].invert_yaxis()
    fig.suptitle("python -m minidl.bench: below 1 minidl is faster / smaller "
                 "(orange: numba kernels)", fontsize=10)
    save_figure(fig, path)
