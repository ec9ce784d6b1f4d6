"""The README's example is code a newcomer pastes first: it must run and its claims must hold."""
import re
import runpy
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_example_runs_and_gradcheck_passes(tmp_path, capsys):
    blocks = _python_blocks()
    assert blocks, "README.md has no python example"
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    namespace = runpy.run_path(str(script))
    assert namespace["net"][0].weight.grad.shape == (8, 1, 3, 3)
    assert namespace["dx"].shape == namespace["x"].shape
    assert max(namespace["errors"].values()) < 1e-6


def test_readme_test_command_is_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in README.read_text() and "make test" in ci
