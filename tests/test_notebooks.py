"""The teaching notebooks: each one runs top to bottom in a fresh kernel, and is stored clean.

Every ``notebooks/*.ipynb`` is one test item (new notebooks join by existing). It executes at the
CI size (``MINIDL_NOTEBOOK_SIZE=ci`` unless the caller chose a size) with ``notebooks/`` as its
working directory, within ``NOTEBOOK_TIMEOUT_S`` seconds for the whole notebook; its ``assert``
cells are its claims, so a broken claim fails here with the cell's source and error.
"""
import os
import re
import time
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
README = NOTEBOOK_DIR / "README.md"
NOTEBOOK_TIMEOUT_S = 300  # the whole notebook, not one cell: the CI size aims for under 40 s
KERNEL = "python3"

pytestmark = pytest.mark.notebook

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # tracebacks arrive coloured for a terminal


def _ids(paths):
    return [p.stem for p in paths]


def _failure_report(path, index, cell, error):
    """The failing cell's index, source and error, readable without opening the notebook."""
    header = f"{path.name}: code cell at index {index} failed"
    if isinstance(error, nbclient.exceptions.CellExecutionError):
        # Its text is the cell's source, then the kernel's traceback (coloured for a terminal).
        return f"{header}\n{_ANSI.sub('', str(error)).strip()}"
    # A timeout (its text previews the cell) or a dead kernel: no traceback from the kernel.
    header += f" (a notebook may take {NOTEBOOK_TIMEOUT_S} s in all)"
    text = f"{type(error).__name__}: {error}"
    if cell.source not in text:
        text = f"---- cell source ----\n{cell.source}\n---- error ----\n{text}"
    return f"{header}\n{text}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_executes(path):
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    env.setdefault("MINIDL_NOTEBOOK_SIZE", "ci")
    # pytest -n 2 runs two kernels at once: one thread each, or small GEMMs (and numba's
    # parallel kernels) oversubscribe the cores and slow down many times (`make test` sets these).
    for threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MINIDL_KERNEL_THREADS"):
        env.setdefault(threads, "1")
    deadline = time.monotonic() + NOTEBOOK_TIMEOUT_S
    current = {}

    def remember(cell, cell_index, **_):
        current.update(cell=cell, index=cell_index)

    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
        # Each cell may use what is left of the notebook's budget, so the limit is per notebook.
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        on_cell_start=remember)
    report = None
    try:
        client.execute(env=env)
    except Exception as error:  # a failing cell, a timeout, a dead kernel: one readable report
        if not current:  # the kernel did not start: pytest's own traceback says why
            raise
        report = _failure_report(path, current["index"], current["cell"], error)
    if report:  # failed outside the except block, so the report is not buried in a chain
        pytest.fail(report, pytrace=False)


def _listed_in_readme():
    """{notebook file name: its one-line description} from the lines of notebooks/README.md."""
    listed = {}
    for line in README.read_text().splitlines():
        match = re.search(r"\(([\w-]+\.ipynb)\)", line)
        if match:
            description = line.split(match.group(0), 1)[1].strip(" |:-—–")
            listed[match.group(1)] = description
    return listed


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_valid_and_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL, \
        f"{path.name}: kernelspec name must be {KERNEL!r}"
    dirty = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} are stored with outputs or execution "
                       "counts; clear them (jupyter nbconvert --clear-output --inplace)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_states_its_size_switch(path):
    """The CI size is chosen by MINIDL_NOTEBOOK_SIZE, read in the first code cell."""
    nb = nbformat.read(path, as_version=4)
    first_code = next(c.source for c in nb.cells if c.cell_type == "code")
    assert "MINIDL_NOTEBOOK_SIZE" in first_code, \
        f"{path.name}: the first code cell must read MINIDL_NOTEBOOK_SIZE"


def test_readme_lists_every_notebook_with_a_description():
    listed = _listed_in_readme()
    missing = [p.name for p in NOTEBOOKS if p.name not in listed]
    assert not missing, f"notebooks/README.md does not list {missing}"
    undescribed = [name for name, text in listed.items() if len(text.split()) < 3]
    assert not undescribed, f"notebooks/README.md: no one-line description for {undescribed}"


def test_readme_lists_only_notebooks_that_exist():
    absent = [name for name in _listed_in_readme() if not (NOTEBOOK_DIR / name).is_file()]
    assert not absent, f"notebooks/README.md lists notebooks that do not exist: {absent}"
