"""Tables (markdown) and plots of a study from its run folders, beside the document's figures.

``write_report`` reads ``<out-root>/<study>/<run>/`` (metrics.csv, test_summary.json and the
measurements: landscape.csv, filters.npy, pruning.json, conv_weight.npy), then writes into
the results folder: the plots, a copy of each run's small files, ``summary.json`` and the
generated part of ``README.md`` (between two markers; the text around them, such as the
point-by-point comparison with the document, is kept when the report is written again).
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from minidl import analysis, plots
from minidl.metrics import METRIC_COLUMNS, CSVLog

from .study import Study

BEGIN, END = "<!-- report: begin (written by python -m coursework report) -->", "<!-- report: end -->"
COPIED = ("metrics.csv", "test_summary.json", "config.json", "landscape.csv",
          "landscape_summary.json", "pruning.json")
LABELS = {"test_acc": "test acc", "test_loss": "test loss", "train_seconds": "training s",
          "seconds_per_epoch": "s / epoch", "val_acc": "best val acc",
          "final_val_acc": "final val acc", "train_loss": "final train loss",
          "pruned_conv_acc": "pruned conv: test acc",
          "pruned_conv_fc_acc": "pruned conv + fc: test acc",
          "gamma_zero_filters": "conv filters with Gamma = 0"}
PERCENT = {"test_acc", "val_acc", "final_val_acc", "pruned_conv_acc", "pruned_conv_fc_acc"}
SECONDS = {"train_seconds", "seconds_per_epoch"}


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _landscape_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def collect(study: Study, out_root) -> list[dict]:
    """One dict per run of ``study`` that has written something, in the study's order."""
    found = []
    for run in study.runs:
        folder = Path(out_root) / study.name / run.name
        rows = CSVLog(folder / "metrics.csv", METRIC_COLUMNS).read() if \
            (folder / "metrics.csv").is_file() else []
        landscape = _landscape_rows(folder / "landscape.csv")
        if not rows and not landscape:
            continue
        summary, pruning = _json(folder / "test_summary.json"), _json(folder / "pruning.json")
        metrics = {"test_acc": summary.get("test_acc"), "test_loss": summary.get("test_loss")}
        if rows:
            metrics.update({
                "epochs": rows[-1]["epoch"], "train_seconds": sum(r["seconds"] for r in rows),
                "seconds_per_epoch": float(np.median([r["seconds"] for r in rows])),
                "val_acc": max(r["val_acc"] for r in rows),
                "final_val_acc": rows[-1]["val_acc"], "train_loss": rows[-1]["train_loss"]})
        if pruning:
            metrics.update({k: pruning[k] for k in ("pruned_conv_acc", "pruned_conv_fc_acc")})
        conv_path, gamma_path = folder / "conv_weight.npy", folder / "conv_gamma.npy"
        gamma = np.load(gamma_path) if gamma_path.is_file() else None
        if gamma is not None:  # DessiLBI's structural sparsity: filters whose Gamma is zero
            metrics["gamma_zero_filters"] = int(np.sum(~gamma.reshape(len(gamma), -1).any(axis=1)))
        found.append({"run": run, "folder": folder, "rows": rows, "metrics": metrics,
                      "landscape": landscape, "config": _json(folder / "config.json"),
                      "filters": np.load(folder / "filters.npy")
                      if (folder / "filters.npy").is_file() else None,
                      "conv_weight": np.load(conv_path) if conv_path.is_file() else None,
                      "conv_gamma": gamma})
    return found


def _cell(key: str, value) -> str:
    if value is None:
        return "—"
    if key in PERCENT:
        return f"{100 * value:.2f}%"
    if isinstance(value, int):
        return str(value)
    if key in SECONDS:
        return f"{value:.1f}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.0f}"


def markdown_table(study: Study, found) -> str:
    """Runs as rows; each column of the study as "ours" then "the report"."""
    # The width a run trained at (it differs from the run's name under --narrow).
    widths = any("--num-filters" in (*study.settings, *r["run"].argv) for r in found)
    head = ["run", "data set", "epochs"] + (["width trained"] if widths else [])
    for key in study.columns:
        head += [f"{LABELS.get(key, key)}", "report"]
    lines = ["| " + " | ".join(head) + " |",
             "| --- | --- |" + " ---: |" * (len(head) - 2)]
    for r in found:
        m, run = r["metrics"], r["run"]
        cells = [f"{run.name} ({run.label})", r["config"].get("dataset", "?"),
                 str(m.get("epochs", "—"))]
        if widths:
            # config.json says "width" since the option got one name ("num_filters" before);
            # None: the model's own default width.
            width = r["config"].get("width", r["config"].get("num_filters"))
            cells.append("model default" if width is None else str(width))
        for key in study.columns:
            cells += [_cell(key, m.get(key)), _cell(key, run.report.get(key))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- plots
def plot_curves(found, path, title) -> Path:
    """Train loss, validation loss and validation accuracy against epoch, one line per run."""
    fig = Figure(figsize=(14, 4))
    for ax, key, label in zip(fig.subplots(1, 3), ("train_loss", "val_loss", "val_acc"),
                              ("training loss", "validation loss", "validation accuracy")):
        for r in found:
            ax.plot([row["epoch"] for row in r["rows"]], [row[key] for row in r["rows"]],
                    marker="o", markersize=3, label=r["run"].name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title)
    return plots.save_figure(fig, path)


def plot_filters(weight, path, title) -> Path:
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    image = analysis.filter_grid(weight)
    ax.imshow(image, cmap=None if image.ndim == 3 else "gray", interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    return plots.save_figure(fig, path)


def plot_weight_magnitude(found, path) -> Path:
    """|W| of the pruned conv layer per run (and DessiLBI's |Gamma|): a row per filter."""
    panels = [(r["run"].label, name, r[key]) for r in found
              for key, name in (("conv_weight", "W"), ("conv_gamma", "Gamma"))
              if r[key] is not None]
    fig = Figure(figsize=(6 * len(panels), 5))
    for ax, (label, name, weight) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        w = np.abs(weight).reshape(len(weight), -1)
        shown = ax.imshow(w, aspect="auto", cmap="magma", interpolation="nearest")
        ax.set_title(f"{label}: |{name}| of the last conv layer")
        ax.set_xlabel("input channel x kernel position")
        ax.set_ylabel("filter")
        fig.colorbar(shown, ax=ax)
    return plots.save_figure(fig, path)


LANDSCAPE_FIGURES = (
    ("loss_landscape.png", "loss", "loss", "Loss landscape: min-max band over learning rates"),
    ("gradient_predictiveness.png", "grad_change_max", "max_k ||g - g(x - s_k g)||",
     "Gradient predictiveness: band over learning rates"),
    ("beta_smoothness.png", "beta", "max_k ||g - g(x - s_k g)|| / ||s_k g||",
     "Effective beta-smoothness: band over learning rates"),
)


def landscape_groups(found) -> dict[str, list[dict]]:
    """Landscape runs grouped by model: the run name up to "-lr"."""
    groups: dict[str, list[dict]] = {}
    for r in found:
        if r["landscape"]:
            groups.setdefault(r["run"].name.split("-lr")[0], []).append(r)
    return groups


def plot_landscape(found, results) -> list[Path]:
    """The three figures of Santurkar et al. (Figs. 8-10 of the report): one band per model."""
    paths = []
    groups = landscape_groups(found)
    for filename, key, ylabel, title in LANDSCAPE_FIGURES:
        fig = Figure(figsize=(9, 4.5))
        ax = fig.subplots()
        for model, runs in groups.items():
            lo, hi = analysis.loss_band([[row[key] for row in r["landscape"]] for r in runs])
            steps = np.arange(1, len(lo) + 1)
            ax.fill_between(steps, lo, hi, alpha=0.35, label=model)
            ax.plot(steps, (lo + hi) / 2, linewidth=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        paths.append(plots.save_figure(fig, Path(results) / filename))
    return paths


def landscape_table(found) -> str:
    """Mean over steps of each model's band: how wide, how large."""
    lines = ["| model | runs | steps | mean loss band width | mean max gradient change | "
             "mean effective beta | max effective beta |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for model, runs in landscape_groups(found).items():
        lo, hi = analysis.loss_band([[row["loss"] for row in r["landscape"]] for r in runs])
        _, change = analysis.loss_band([[row["grad_change_max"] for row in r["landscape"]]
                                        for r in runs])
        _, beta = analysis.loss_band([[row["beta"] for row in r["landscape"]] for r in runs])
        lines.append(f"| {model} | {len(runs)} | {len(lo)} | {np.nanmean(hi - lo):.4f} | "
                     f"{np.nanmean(change):.4f} | {np.nanmean(beta):.3f} | {np.nanmax(beta):.3f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- README
def _generated(study: Study, found, out_root, figures) -> str:
    missing = [r.name for r in study.runs if r.name not in {f["run"].name for f in found}]
    parts = [f"Source: {study.source}. Runs read from `{out_root}/{study.name}/`."]
    if study.columns:
        parts += ["Each measured column is followed by the report's figure for the same run "
                  "(on the report's data set and length: compare like with like).",
                  markdown_table(study, found)]
    if any(r["landscape"] for r in found):
        parts.append(landscape_table(found))
    if missing:
        parts.append(f"Not run yet: {', '.join(missing)}.")
    parts += [f"![{Path(f).stem}]({Path(f).name})" for f in figures]
    parts.append(f"The report: {study.notes}")
    return "\n\n".join(parts)


def write_readme(path: Path, title: str, generated: str) -> None:
    """Replace the text between the markers in ``path`` (or start the file with them)."""
    block = f"{BEGIN}\n{generated}\n{END}"
    if path.is_file() and BEGIN in (text := path.read_text()) and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        path.write_text(before + block + after)
    else:
        path.write_text(f"# {title}\n\n{block}\n")


def write_report(study: Study, out_root, results) -> list[dict]:
    """Write the table, plots and copies of the runs' small files into ``results``."""
    found = collect(study, out_root)
    if not found:
        raise FileNotFoundError(f"no runs of {study.name} under {Path(out_root) / study.name}")
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    figures = []
    trained = [r for r in found if r["rows"]]
    if trained:
        figures.append(plot_curves(trained, results / "curves.png", study.title))
    for r in found:
        if r["filters"] is not None:
            figures.append(plot_filters(r["filters"], results / f"{r['run'].name}-filters.png",
                                        f"{r['run'].label}: first-layer filters"))
    if any(r["conv_weight"] is not None for r in found):
        figures.append(plot_weight_magnitude(found, results / "conv_weight_magnitude.png"))
    if any(r["landscape"] for r in found):
        figures += plot_landscape(found, results)
    for r in found:
        for name in COPIED:
            if (r["folder"] / name).is_file():
                shutil.copyfile(r["folder"] / name, results / f"{r['run'].name}-{name}")
    summary = {r["run"].name: {"metrics": r["metrics"], "report": r["run"].report}
               for r in found}
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_readme(results / "README.md", study.title, _generated(study, found, out_root, figures))
    return found
