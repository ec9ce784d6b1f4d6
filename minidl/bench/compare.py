"""Before/after: the minidl/PyTorch ratios of several ``python -m minidl.bench --json`` files.

    python -m minidl.bench.compare before.json after.json [--labels before after]

One row per (case, implementation), one column pair (time ratio, memory ratio) per file and
kernel path. Ratios, not milliseconds, are compared: each was measured side by side with
PyTorch in its own run, so they survive a change of machine load between the runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _x(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(results: list[dict], labels: list[str]) -> str:
    """A markdown table of the time and memory ratios of each result set, side by side."""
    columns = []  # (label, kernels): one time and one memory column each
    for label, res in zip(labels, results):
        columns += [(label, kernels, res) for kernels in res["kernels"]]
    keys = []
    for res in results:
        for r in res["rows"]:
            if (r["case"], r["impl"]) not in keys:
                keys.append((r["case"], r["impl"]))
    head = " | ".join(f"{label} {kernels} time | {label} {kernels} mem"
                      for label, kernels, _ in columns)
    lines = [f"| case | impl | {head} |", "|" + " --- |" * (2 + 2 * len(columns))]
    for case, impl in keys:
        cells = []
        for _, kernels, res in columns:
            row = next((r for r in res["rows"] if (r["case"], r["impl"], r["kernels"])
                        == (case, impl, kernels)), None)
            ratio = (row or {}).get("ratio") or {}
            cells += [_x(ratio.get("total")), _x(ratio.get("memory"))]
        lines.append(f"| {case} | {impl} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minidl.bench.compare",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="JSON files of minidl.bench")
    parser.add_argument("--labels", nargs="+", help="a column label per file (default: names)")
    args = parser.parse_args(argv)
    labels = args.labels or [f.stem for f in args.files]
    if len(labels) != len(args.files):
        parser.error(f"{len(labels)} labels for {len(args.files)} files")
    results = []
    for f in args.files:
        try:
            results.append(json.loads(f.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            parser.error(f"{f}: not a readable JSON file ({err})")
        if results[-1].get("schema") != "minidl.bench/1":
            parser.error(f"{f}: not written by python -m minidl.bench --json")
    print(table(results, labels), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
