"""Training plots written next to the metrics: learning curves and gradient flow by depth.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch),
so plotting works on headless machines and inside tests.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def save_figure(fig: Figure, path) -> Path:
    """Render ``fig`` on an Agg canvas and write it to ``path`` (format from the suffix)."""
    path = Path(path)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_curves(rows, path, title: str = "") -> Path:
    """Loss and accuracy against epoch, train and validation (rows as in metrics.csv)."""
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 4))
    for ax, metric, label in zip(fig.subplots(1, 2), ("loss", "acc"), ("loss", "accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            ax.plot(epochs, [r[f"{split}_{metric}"] for r in rows], style, marker="o",
                    markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_gradient_flow(rows, path, title: str = "") -> Path:
    """Mean |grad| of each conv/linear weight against depth, one line per epoch, log scale.

    rows: as in grad_flow.csv (epoch, depth, layer, mean_abs_grad). Vanishing gradients show
    as lines that fall by orders of magnitude towards the input (depth 0).
    """
    fig = Figure(figsize=(10, 4.5))
    ax = fig.subplots()
    epochs = sorted({r["epoch"] for r in rows})
    cmap = colormaps["viridis"]  # early epochs dark, late epochs light
    names = {}
    for k, epoch in enumerate(epochs):
        pts = sorted((r["depth"], r["mean_abs_grad"], r["layer"]) for r in rows
                     if r["epoch"] == epoch)
        depth = [p[0] for p in pts]
        # Exact zeros cannot be drawn on a log axis; leave a gap rather than fake a value.
        value = np.array([p[1] for p in pts], dtype=float)
        value[value <= 0] = np.nan
        names.update({p[0]: p[2] for p in pts})
        colour = cmap(k / max(len(epochs) - 1, 1))
        ax.plot(depth, value, marker="o", markersize=3, color=colour,
                label=f"epoch {epoch}" if k in (0, len(epochs) - 1) else None)
    if names:
        ax.set_yscale("log")
        ticks = sorted(names)
        ax.set_xticks(ticks)
        ax.set_xticklabels([names[t] for t in ticks], rotation=90, fontsize=6)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no gradients recorded", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("layer (input -> output)")
    ax.set_ylabel("mean |grad| of weight")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title or "gradient flow")
    return save_figure(fig, path)
