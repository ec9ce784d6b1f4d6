"""Bookkeeping for training runs: batched evaluation, gradient flow, CSV logs."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from . import backend

METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds",
                  "cpu_seconds")
# Columns added after minidl first wrote its logs: a file from before one of them is still
# read (that cell None), and a resumed run rewrites it with the new header.
LATER_COLUMNS = ("cpu_seconds",)
GRAD_FLOW_COLUMNS = ("epoch", "depth", "layer", "mean_abs_grad")


def count_correct(logits, targets):
    """Number of rows whose argmax equals the target, as a 0-d array on the logits' device.

    logits: (N, C), targets: (N,) -> 0-d integer array (no host sync until it is read).
    """
    return (logits.argmax(axis=1) == targets).sum()


class RunningTotals:
    """Sums of ``loss * batch size`` and right predictions over an epoch, kept on the device.

    ``add`` never waits for the device; ``read`` copies both sums to the host in one transfer
    (the training loop's one read per step). The sums are float64 whatever the model's dtype,
    so a mean over 60,000 examples does not lose digits, and a resumed epoch continues from
    the host values saved in its checkpoint with the same arithmetic.
    """

    def __init__(self, device: str = "cpu", loss_sum: float = 0.0, correct: int = 0,
                 seen: int = 0):
        self.device = device
        self.seen = seen
        self._sums = backend.to_device(np.array([loss_sum, correct], dtype=np.float64), device)

    def add(self, loss, correct, n: int) -> None:
        """Add a batch of ``n`` examples: its mean ``loss`` and ``correct`` count (0-d arrays)."""
        xp = backend.get_array_module(self._sums)
        batch = xp.stack([xp.asarray(loss, dtype=xp.float64) * n,
                          xp.asarray(correct, dtype=xp.float64)])
        self._sums = self._sums + batch
        self.seen += n

    def sums(self) -> tuple[float, int, int]:
        """``(loss_sum, correct, seen)`` on the host (one transfer), for a checkpoint."""
        loss_sum, correct = backend.asnumpy(self._sums).tolist()
        return loss_sum, int(correct), self.seen

    def read(self) -> tuple[float, float]:
        """``(mean loss, accuracy)`` so far (one transfer); ``(nan, nan)`` before any example."""
        loss_sum, correct, seen = self.sums()
        if seen == 0:
            return math.nan, math.nan
        return loss_sum / seen, correct / seen


class GradientFlow:
    """Mean |grad| of every conv/linear weight (parameters named ``weight`` with >= 2 dims),
    accumulated over the steps of an epoch so deep networks' vanishing gradients show by depth.
    """

    def __init__(self, model):
        self.named = [(name, p) for name, p in model.named_parameters()
                      if name.rsplit(".", 1)[-1] == "weight" and p.data.ndim >= 2]
        self.reset()

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.named]

    def reset(self) -> None:
        self.sums = [0.0] * len(self.named)
        self.count = 0

    def accumulate(self) -> None:
        """Add the current gradients' mean |grad| (kept on the device: no sync per step)."""
        for i, (_, p) in enumerate(self.named):
            xp = backend.get_array_module(p.grad)
            self.sums[i] = self.sums[i] + xp.abs(p.grad).mean()
        self.count += 1

    def _host_sums(self) -> np.ndarray:
        """The per-weight sums as a host float64 array (one sync per weight)."""
        return np.array([float(backend.asnumpy(s)) for s in self.sums], dtype=np.float64)

    def means(self) -> np.ndarray:
        """Mean |grad| per weight, averaged over the accumulated steps (host float64 array)."""
        return self._host_sums() / max(self.count, 1)

    def state(self) -> dict:
        """Accumulators as host arrays, for a mid-epoch checkpoint."""
        return {"sums": self._host_sums(), "count": self.count}

    def load_state(self, state: dict) -> None:
        sums = np.asarray(state["sums"], dtype=np.float64).reshape(-1)
        if len(sums) != len(self.named):
            raise ValueError(f"GradientFlow: checkpoint has {len(sums)} layers, model has "
                             f"{len(self.named)}")
        self.sums = [float(s) for s in sums]
        self.count = int(state["count"])

    def rows(self, epoch: int) -> list[dict]:
        """Rows for grad_flow.csv: one per weight, depth 0 = closest to the input."""
        return [{"epoch": epoch, "depth": depth, "layer": name, "mean_abs_grad": value}
                for depth, (name, value) in enumerate(zip(self.names, self.means()))]


class CSVLogError(ValueError):
    """A log file that is not what minidl wrote; the message names it and what to do."""


class CSVLog:
    """An append-only CSV file with a fixed header, flushed row by row so a crash loses nothing."""

    def __init__(self, path, columns):
        self.path = Path(path)
        self.columns = tuple(columns)

    def create(self) -> None:
        """Start an empty file with just the header (overwriting an older one)."""
        self._rewrite([])

    def append(self, rows) -> None:
        if isinstance(rows, dict):
            rows = [rows]
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writerows(rows)

    def read(self) -> list[dict]:
        """All rows with numeric fields converted to int/float; a CSVLogError if damaged."""
        if not self.path.is_file():
            return []
        try:
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                header = tuple(reader.fieldnames or ())
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise self._damaged(str(err)) from None
        older = tuple(c for c in self.columns if c not in LATER_COLUMNS)
        if header != self.columns and header != older:
            raise self._damaged(f"its header is {list(header)}, expected {list(self.columns)}")
        for i, row in enumerate(rows, start=2):
            # DictReader puts missing cells as None values, extra cells under the key None
            if None in row or None in row.values():
                raise self._damaged(f"line {i} does not have {len(header)} cells")
            row.update((k, _number(v)) for k, v in row.items())
            for later in set(LATER_COLUMNS) & set(self.columns):  # unknown in an older row
                if row.get(later, "") == "":
                    row[later] = None
            if not isinstance(row["epoch"], int):
                raise self._damaged(f"line {i} has epoch {row['epoch']!r}")
        return rows

    def keep_until(self, epoch: int) -> None:
        """Drop rows after ``epoch`` (written after the checkpoint a resumed run starts from)."""
        self._rewrite([row for row in self.read() if row["epoch"] <= epoch])

    def _rewrite(self, rows) -> None:
        """Replace the file by the header and ``rows`` in one atomic step (no row is lost
        to a crash half-way)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.columns)
                writer.writeheader()
                writer.writerows(rows)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _damaged(self, why: str) -> CSVLogError:
        return CSVLogError(f"{self.path} is damaged ({why}); repair it, or delete it to keep "
                           "training (the checkpoints are intact; the rows of earlier epochs "
                           "would be lost)")


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
