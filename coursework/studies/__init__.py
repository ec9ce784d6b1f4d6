"""Every study, by name: one module per source document (``sclayer_000``: seed 000,
``survey_001``: seed 001, ``slides_002``: seed 002, ``mlp_cw2``: seed 003, ``fudan_project2``:
seed 004), each listing its studies as data in ``STUDIES``."""
from __future__ import annotations

from ..study import Study
from . import fudan_project2, mlp_cw2, sclayer_000, slides_002, survey_001

STUDIES: dict[str, Study] = {s.name: s for module in (fudan_project2, mlp_cw2, sclayer_000,
                                                        survey_001, slides_002)
                             for s in module.STUDIES}


def get(name: str) -> Study:
    """The study called ``name``; a ValueError lists the valid names."""
    try:
        return STUDIES[name]
    except KeyError:
        raise ValueError(f"unknown study {name!r}; choose from {', '.join(STUDIES)}") from None
