"""python -m minidl.bench gpu: its refusal without a GPU, its table, and (on a GPU) a quick run.

No timing is asserted: the numbers depend on the device and its load.
"""
import json

import pytest

from minidl import backend
from minidl.bench import cli, gpu


@pytest.mark.skipif(backend.gpu_available(), reason="checks the message shown without a GPU")
def test_without_a_gpu_it_says_why_and_exits_2(capsys):
    assert cli.main(["gpu", "--quick"]) == 2
    assert "device 'gpu' requested but" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--batch", "--repeats", "--steps"])
def test_counts_below_one_are_refused(option, capsys):
    with pytest.raises(SystemExit) as stop:
        gpu.main([option, "0"])
    assert stop.value.code == 2
    assert f"{option} must be at least 1, got 0" in capsys.readouterr().err


def test_missing_output_folder_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu.main(["--json", str(tmp_path / "nowhere" / "b.json")])
    assert "does not exist" in capsys.readouterr().err


def _results(copies):
    rows = [{"case": "vgg38-32", "shape": "s", "impl": "im2col", "ms": 3.0, "torch_ms": 1.5,
             "ratio": 2.0, "check": 1e-6},
            {"case": "step", "shape": "s", "impl": "model", "ms": 40.0, "torch_ms": None,
             "ratio": None, "check": None, "pool_mib": 900.0, "torch_reserved_mib": None,
             "torch_allocated_mib": None}]
    return {"rows": rows, "copies": copies}


def test_table_shows_ratios_and_the_copy_count():
    copies = {"available": True, "steps": 10, "dtoh_per_step": 1.0, "htod_per_step": 2.0,
              "sync_calls_per_step": 1.0}
    table = gpu.markdown(_results(copies))
    assert "| vgg38-32 | s | im2col | 3.00 | 1.50 | 2.00x | 1.0e-06 |" in table
    assert "| step | s | model | 40.00 | - | - | - |" in table
    assert "1 device->host, 2 host->device" in table


def test_table_says_why_copies_were_not_counted():
    table = gpu.markdown(_results({"available": False, "why": "needs PyTorch with CUDA"}))
    assert "not counted (needs PyTorch with CUDA)" in table


def test_quick_run_on_the_cupy_standin(tmp_path, monkeypatch):
    """The minidl half of the bench on the CPU stand-in for CuPy (no CUDA: no torch column)."""
    from tests.gpu_standin import install
    install(monkeypatch)
    monkeypatch.setattr(gpu, "_torch_cuda", lambda: None)
    path = tmp_path / "gpu.json"
    assert gpu.main(["--quick", "--json", str(path), "--markdown", str(tmp_path / "g.md")]) == 0
    results = json.loads(path.read_text())
    assert [(r["case"], r["impl"]) for r in results["rows"]] == [
        ("vgg38-32", "im2col"), ("vgg38-32", "fft"), ("batchnorm2d", "layer"),
        ("leaky-relu", "layer"), ("step", "model")]
    assert all(r["ms"] > 0 and r["torch_ms"] is None for r in results["rows"])
    assert results["copies"] == {"available": False,
                                 "why": "needs PyTorch with CUDA (its profiler counts copies)"}
    assert "CPU stand-in for CuPy" in (tmp_path / "g.md").read_text()


@pytest.mark.gpu
def test_quick_run_on_the_gpu(tmp_path):
    if not backend.gpu_available():
        pytest.skip("cupy/CUDA device not available")
    path = tmp_path / "gpu.json"
    assert gpu.main(["--quick", "--json", str(path)]) == 0
    results = json.loads(path.read_text())
    assert {r["case"] for r in results["rows"]} == {"vgg38-32", "batchnorm2d", "leaky-relu",
                                                   "step"}
    for r in results["rows"]:
        assert r["ms"] > 0
        if r["check"] is not None:  # minidl and PyTorch computed the same forward / first loss
            assert r["check"] < 1e-3, r
    copies = results["copies"]
    if copies["available"]:  # the rule: at most one device->host copy per step
        assert copies["dtoh_per_step"] <= 1, copies
