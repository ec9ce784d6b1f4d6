"""Studies of seed 001 (issue 11): filled in by the efficient-architecture work."""
from __future__ import annotations

STUDIES = ()
