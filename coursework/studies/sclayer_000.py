"""Studies of seed 000 (issue 11): filled in by the efficient-architecture work."""
from __future__ import annotations

STUDIES = ()
