"""Tables (markdown) and plots of a study from its run folders, beside the document's figures.

``write_report`` reads ``<out-root>/<study>/<run>/`` (metrics.csv, test_summary.json and the
measurements: landscape.csv, filters.npy, pruning.json, conv_weight.npy, bias_correction.json),
and ``<run>-seed<k>/`` for a repeated study (the table gives mean ± sd over the repeats, the
curves show the first), then writes into the results folder: the plots, a copy of each run's
small files, ``summary.json`` and the generated part of ``README.md`` (between two markers;
the text around them, such as the point-by-point comparison with the document, is kept when
the report is written again).

Cost columns: ``params`` and ``mult_adds`` are counted from the run's config.json by
``minidl.summary`` (one example of the data set's shape); ``train_cpu_seconds`` and
``cpu_seconds_per_epoch`` are the process CPU time minidl.train records (``cpu_seconds`` in
metrics.csv), or the wall time for a run from before it did, marked "(wall)";
``time_reduction`` is ``1 - time / time of the study's baseline run``.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from minidl import analysis, models, plots, train
from minidl.config import TrainConfig
from minidl.data.sources import SOURCES
from minidl.metrics import CSVLog
from minidl.summary import summary as count_cost

from .study import Study

BEGIN, END = "<!-- report: begin (written by python -m coursework report) -->", "<!-- report: end -->"
COPIED = ("metrics.csv", "test_summary.json", "config.json", "landscape.csv",
          "landscape_summary.json", "pruning.json", "bias_correction.json")
LABELS = {"test_acc": "test acc", "test_loss": "test loss", "train_seconds": "training s",
          "seconds_per_epoch": "s / epoch", "val_acc": "best val acc",
          "final_val_acc": "final val acc", "train_loss": "final train loss",
          "pruned_conv_acc": "pruned conv: test acc",
          "pruned_conv_fc_acc": "pruned conv + fc: test acc",
          "gamma_zero_filters": "conv filters with Gamma = 0",
          "params": "parameters", "mult_adds": "mult-adds", "train_cpu_seconds": "training CPU s",
          "cpu_seconds_per_epoch": "CPU s / epoch", "time_reduction": "time reduction",
          "test_errors": "test errors", "test_errors_corrected": "test errors, bias raised",
          "class_test_acc": "omitted class: test acc",
          "class_test_acc_corrected": "omitted class, bias raised: test acc",
          "bias_shift": "bias raised by", "train_acc": "final train acc"}
PERCENT = {"test_acc", "val_acc", "final_val_acc", "train_acc", "pruned_conv_acc", "pruned_conv_fc_acc",
           "time_reduction", "class_test_acc", "class_test_acc_corrected"}
SECONDS = {"train_seconds", "seconds_per_epoch", "train_cpu_seconds", "cpu_seconds_per_epoch"}
COUNTS = {"params", "mult_adds", "test_errors", "test_errors_corrected"}
COST = ("params", "mult_adds")
# What bias_correction.json holds, under the names of our columns.
BIAS_METRICS = {"test_errors_corrected": "test_errors_after",
                "class_test_acc": "class_test_acc_before",
                "class_test_acc_corrected": "class_test_acc_after", "bias_shift": "shift"}


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _landscape_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _metric_rows(path: Path) -> list[dict]:
    """metrics.csv's rows, whatever its columns (older runs have no ``cpu_seconds``)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        header = tuple(next(csv.reader(f), ()))
    return CSVLog(path, header).read() if header else []


def repeat_folders(root: Path, run_name: str) -> list[Path]:
    """``<run>`` and ``<run>-seed<k>`` (k = 1, 2, ...) under ``root``, in seed order."""
    seeds = sorted((int(p.name.rsplit("-seed", 1)[1]), p) for p in root.glob(f"{run_name}-seed*")
                   if p.name.rsplit("-seed", 1)[1].isdigit())
    return [root / run_name] + [p for _, p in seeds]


def model_cost(config: dict) -> dict:
    """``{"params", "mult_adds"}`` of the model a config.json describes, counted for one example
    of its data set's shape without loading the data (empty when it cannot be built here)."""
    try:
        cfg = TrainConfig.from_dict(config)
        source = SOURCES[cfg.dataset]
        channels, h, w = source.image_shape
        data_options = {"in_channels": channels, "num_classes": source.num_classes,
                        "seed": cfg.seed, "image_size": h if h == w else (h, w)}
        model = models.build(cfg.model, **train.model_options(cfg, models.options(cfg.model),
                                                              data_options))
        cost = count_cost(model, source.image_shape)
    except (KeyError, ValueError, TypeError):  # an older or foreign config: no cost columns
        return {}
    return {"params": cost.params, "mult_adds": cost.mult_adds}


def _folder_metrics(folder: Path, rows: list[dict]) -> dict:
    """The metrics of one run folder (one repeat)."""
    summary, pruning = _json(folder / "test_summary.json"), _json(folder / "pruning.json")
    metrics = {"test_acc": summary.get("test_acc"), "test_loss": summary.get("test_loss")}
    if summary.get("test_acc") is not None and summary.get("test_examples"):
        metrics["test_errors"] = round((1 - summary["test_acc"]) * summary["test_examples"])
    if rows:
        seconds = [r["seconds"] for r in rows]
        # CPU time where minidl.train recorded it (the machine is shared), else wall time.
        cpu = [r.get("cpu_seconds") for r in rows]
        timed = all(c is not None and c != "" for c in cpu)
        metrics.update({
            "epochs": rows[-1]["epoch"], "train_seconds": sum(seconds),
            "seconds_per_epoch": float(np.median(seconds)),
            "train_cpu_seconds": float(sum(cpu) if timed else sum(seconds)),
            "cpu_seconds_per_epoch": float(np.median(cpu if timed else seconds)),
            "cpu_time_recorded": timed,
            "val_acc": max(r["val_acc"] for r in rows),
            "final_val_acc": rows[-1]["val_acc"], "train_loss": rows[-1]["train_loss"],
            "train_acc": rows[-1]["train_acc"]})
    if pruning:
        metrics.update({k: pruning[k] for k in ("pruned_conv_acc", "pruned_conv_fc_acc")})
    bias = _json(folder / "bias_correction.json")
    metrics.update({key: bias[name] for key, name in BIAS_METRICS.items() if name in bias})
    gamma_path = folder / "conv_gamma.npy"
    if gamma_path.is_file():  # DessiLBI's structural sparsity: filters whose Gamma is zero
        gamma = np.load(gamma_path)
        metrics["gamma_zero_filters"] = int(np.sum(~gamma.reshape(len(gamma), -1).any(axis=1)))
    return metrics


def _mean_sd(per_repeat: list[dict]) -> tuple[dict, dict]:
    """Mean and sample standard deviation over the repeats of every numeric metric."""
    mean, sd = {}, {}
    for key in per_repeat[0]:
        values = [m.get(key) for m in per_repeat]
        if any(v is None or isinstance(v, bool) for v in values):
            mean[key] = per_repeat[0][key] if len(set(map(str, values))) == 1 else None
            continue
        # Equal values keep their type (epochs stay an int); otherwise the float mean.
        mean[key] = values[0] if len(set(values)) == 1 else float(np.mean(values))
        if len(values) > 1:
            sd[key] = float(np.std(values, ddof=1))
    return mean, sd


def collect(study: Study, out_root) -> list[dict]:
    """One dict per run of ``study`` that has written something, in the study's order: the
    metrics averaged over its repeats (``sd``: their standard deviations, ``repeats``: how
    many), the first repeat's epoch rows, landscape and measurements."""
    found = []
    root = Path(out_root) / study.name
    cost_wanted = any(key in study.columns for key in COST)
    for run in study.runs:
        repeats = []
        for folder in repeat_folders(root, run.name):
            rows = _metric_rows(folder / "metrics.csv")
            landscape = _landscape_rows(folder / "landscape.csv")
            if rows or landscape:
                repeats.append((folder, rows, landscape, _folder_metrics(folder, rows)))
        if not repeats:
            continue
        # A repeat still training would pull the means towards its early epochs: average the
        # finished ones (with a test summary), or show the first one's progress until then.
        finished = [r for r in repeats if (r[0] / "test_summary.json").is_file()]
        repeats = finished or repeats[:1]
        folder, rows, landscape, _ = repeats[0]
        metrics, sd = _mean_sd([m for *_, m in repeats])
        config = _json(folder / "config.json")
        if cost_wanted:
            metrics.update(model_cost(config))
        conv_path, gamma_path = folder / "conv_weight.npy", folder / "conv_gamma.npy"
        found.append({"run": run, "folder": folder, "folders": [r[0] for r in repeats],
                      "rows": rows, "metrics": metrics, "sd": sd, "repeats": len(repeats),
                      "landscape": landscape, "config": config,
                      "filters": np.load(folder / "filters.npy")
                      if (folder / "filters.npy").is_file() else None,
                      "conv_weight": np.load(conv_path) if conv_path.is_file() else None,
                      "conv_gamma": np.load(gamma_path) if gamma_path.is_file() else None})
    _add_time_reduction(study, found)
    return found


def _add_time_reduction(study: Study, found) -> None:
    """``time_reduction`` of every run against the study's baseline run (CPU time)."""
    base = next((r for r in found if r["run"].name == study.baseline), None)
    if base is None or not base["metrics"].get("train_cpu_seconds"):
        return
    for r in found:
        if r["metrics"].get("train_cpu_seconds") is not None:
            r["metrics"]["time_reduction"] = \
                1 - r["metrics"]["train_cpu_seconds"] / base["metrics"]["train_cpu_seconds"]


def _cell(key: str, value, sd=None) -> str:
    """A table cell: percentages, seconds, counts with thousands separators; ``± sd`` when the
    value is a mean over repeats; a document's figure given as words is printed as it is."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if key in PERCENT:
        text, spread = f"{100 * value:.2f}%", sd is not None and f"{100 * sd:.2f}"
    elif key in COUNTS:
        text, spread = f"{value:,.0f}", sd is not None and f"{sd:,.1f}"
    elif isinstance(value, int):
        text, spread = str(value), sd is not None and f"{sd:.2f}"
    elif key in SECONDS:
        text, spread = f"{value:.1f}", sd is not None and f"{sd:.1f}"
    else:
        text = f"{value:.4f}" if abs(value) < 10 else f"{value:.0f}"
        spread = sd is not None and (f"{sd:.4f}" if abs(sd) < 10 else f"{sd:.0f}")
    return f"{text} ± {spread}" if spread else text


def markdown_table(study: Study, found) -> str:
    """Runs as rows; each column of the study as "ours" then "the report"."""
    # The width a run trained at (it differs from the run's name under --narrow).
    widths = any(option in (*study.settings, *r["run"].argv) for r in found
                 for option in ("--width", "--num-filters"))
    repeated = any(r["repeats"] > 1 for r in found)
    head = ["run", "data set", "epochs"] + (["width trained"] if widths else []) + \
        (["repeats"] if repeated else [])
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
        if repeated:
            cells.append(str(r["repeats"]))
        for key in study.columns:
            cell = _cell(key, m.get(key), r["sd"].get(key))
            if key in ("train_cpu_seconds", "cpu_seconds_per_epoch") and \
                    m.get("cpu_time_recorded") is False:
                cell += " (wall)"  # a run from before minidl.train recorded CPU time
            cells += [cell, _cell(key, run.report.get(key))]
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
def _table_notes(study: Study, found) -> list[str]:
    """What the table's cells mean where that is not obvious: repeats, time, cost."""
    notes = []
    if any(r["repeats"] > 1 for r in found):
        notes.append("A cell with ± is the mean and sample standard deviation over the run's "
                     "repeats (seeds 0, 1, ...); the curves show seed 0.")
    if {"train_cpu_seconds", "cpu_seconds_per_epoch", "time_reduction"} & set(study.columns):
        notes.append("Times are the CPU time of the training process (minidl.train's "
                     "`cpu_seconds`, validation included), less sensitive than wall time to the "
                     "other jobs on a shared machine; \"(wall)\" marks a run from before it "
                     "was recorded, timed by the wall clock instead."
                     + (f" Time reduction: 1 - time / time of `{study.baseline}`."
                        if study.baseline else ""))
    if set(COST) & set(study.columns):
        notes.append("Parameters and mult-adds are counted by `minidl.summary` for one example "
                     "of the data set's shape, at the width trained.")
    return notes


def _generated(study: Study, found, out_root, figures) -> str:
    missing = [r.name for r in study.runs if r.name not in {f["run"].name for f in found}]
    parts = [f"Source: {study.source}. Runs read from `{out_root}/{study.name}/`."]
    if study.columns:
        parts += ["Each measured column is followed by the report's figure for the same run "
                  "(on the report's data set and length: compare like with like).",
                  markdown_table(study, found)]
        parts += _table_notes(study, found)
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
        for folder in r["folders"]:
            for name in COPIED:
                if (folder / name).is_file():
                    shutil.copyfile(folder / name, results / f"{folder.name}-{name}")
    summary = {r["run"].name: {"metrics": r["metrics"], "sd": r["sd"], "repeats": r["repeats"],
                               "report": r["run"].report} for r in found}
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_readme(results / "README.md", study.title, _generated(study, found, out_root, figures))
    return found
