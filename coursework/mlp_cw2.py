"""Moved: the MLP coursework 2 ladder is the study ``cw2`` of ``python -m coursework``.

``python -m coursework.mlp_cw2 list|run|table [NAMES...] [options]`` still works: it says where
the command went and runs ``python -m coursework list|run|report cw2 [NAMES...] [options]``
(runs now go to ``runs/coursework/cw2/<name>``, the table to ``coursework/results/cw2``).
"""
from __future__ import annotations

import sys

from .__main__ import main as coursework_main

COMMANDS = {"list": "list", "run": "run", "table": "report"}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        argv = [COMMANDS[argv[0]], "cw2", *argv[1:]]
        print(f"note: python -m coursework.mlp_cw2 is now: python -m coursework "
              f"{' '.join(argv[:2])} ...", file=sys.stderr)
    return coursework_main(argv)


if __name__ == "__main__":
    sys.exit(main())
