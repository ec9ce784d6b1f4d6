"""python -m minidl.bench: runs in --quick form, its JSON schema, ratios computed from the
measured numbers, FLOP counts, the PyTorch twins, and the command line's errors.

No timing is asserted anywhere: the numbers depend on the machine and its load.
"""
import json
import statistics

import numpy as np
import pytest

from minidl import models
from minidl.bench import cases, cli, measure, report, step

ROW_KEYS = {"case", "group", "shape", "impl", "kernels", "compiled", "flops", "ms", "gflops",
            "gemm_fraction", "memory_mib", "torch", "ratio", "check", "samples_ms", "detail"}


def _run(tmp_path, *args) -> dict:
    path = tmp_path / "bench.json"
    assert cli.main(["--quick", "--json", str(path), *args]) == 0
    return json.loads(path.read_text())


def _assert_row_is_consistent(r):
    """Every derived figure of a row follows from the measured samples and the FLOP count."""
    assert set(r) == ROW_KEYS
    assert r["ms"]["total"] == pytest.approx(statistics.median(r["samples_ms"]["minidl"]))
    assert r["gflops"] == pytest.approx(sum(r["flops"].values()) / (r["ms"]["total"] * 1e6))
    if r["torch"] is None:
        assert r["ratio"] is None
        return
    t = r["torch"]
    assert t["ms"]["total"] == pytest.approx(statistics.median(r["samples_ms"]["torch"]))
    for phase, ms in r["ms"].items():
        assert r["ratio"][phase] == pytest.approx(ms / t["ms"][phase])
    if r["memory_mib"] is not None and t["memory_mib"]:
        assert r["ratio"]["memory"] == pytest.approx(r["memory_mib"] / t["memory_mib"])


# ---------------------------------------------------------------------------- pure pieces
def test_row_ratios_come_from_the_measured_numbers():
    case = cases.CASES["relu"]
    m = measure.Measurement(case, "layer", "numpy", False,
                            samples=[(0.002, 0.004), (0.001, 0.003), (0.003, 0.005)],
                            torch_samples=[(0.001, 0.001), (0.002, 0.002), (0.004, 0.001)],
                            memory_mib=30.0, torch_memory_mib=20.0, check=0.0)
    r = report.row(m, {"forward": 4_000_000, "backward": 2_000_000}, gemm_gflops=10.0)
    assert r["ms"] == pytest.approx({"forward": 2.0, "backward": 4.0, "total": 6.0})
    # the total is the median of the per-repeat sums (2, 4, 5 ms), not a sum of medians
    assert r["torch"]["ms"] == pytest.approx({"forward": 2.0, "backward": 1.0, "total": 4.0})
    assert r["ratio"] == pytest.approx({"forward": 1.0, "backward": 4.0, "total": 1.5,
                                        "memory": 1.5})
    assert r["gflops"] == pytest.approx(1.0)           # 6 MFLOP in 6 ms
    assert r["gemm_fraction"] == pytest.approx(0.1)
    assert r["torch"]["gflops"] == pytest.approx(1.5)
    _assert_row_is_consistent(r)


def test_conv_flops_count_two_per_multiply_add():
    case = cases.ConvCase("t", N=2, C=4, H=8, W=8, F=6, k=3, padding=0, groups=2)
    fwd, bwd = case.flops()
    assert fwd == 2 * (2 * 6 * 6 * 6) * (4 // 2) * 9  # N*F*Ho*Wo outputs, Cg*k*k each
    assert bwd == 2 * fwd


def test_forward_macs_of_vgg38_by_hand():
    model = models.build("vgg38", bn=True, residual=True, in_channels=3, num_classes=10)
    per_layer = lambda c_in, hw: 32 * c_in * 9 * hw * hw  # noqa: E731
    expected = per_layer(3, 32)                                     # entry
    for hw in (32, 16, 8):                                          # the three stages
        expected += 10 * per_layer(32, hw)                          # 5 blocks x 2 convs
        expected += per_layer(32, hw) + per_layer(32, hw // 2)      # reduction: conv, pool, conv
    expected += 32 * 10                                             # the classifier
    assert cases.forward_macs(model, (5, 3, 32, 32)) == 5 * expected
    assert "forward" not in model.features.entry.conv.__dict__     # the wrappers are gone
    assert model.training


def test_select_scales_every_case_for_quick_and_keeps_the_order():
    chosen = cases.select(["relu", "vgg38-32"], quick=True)
    assert [c.name for c in chosen] == ["vgg38-32", "relu"]
    assert all(c.N == cases.QUICK_BATCH for c in chosen)
    with pytest.raises(ValueError, match="unknown case.*'vgg39'.*vgg38-32"):
        cases.select(["vgg39"])


# ---------------------------------------------------------------------------- the command line
def test_list_names_every_case(capsys):
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in cases.CASES:
        assert name in out


@pytest.mark.parametrize("args, message", [
    (["--only", "vgg39"], "unknown case(s) 'vgg39'"),
    (["--repeats", "0"], "--repeats must be at least 1"),
    (["--kernels", "fortran"], "invalid choice: 'fortran'"),
    (["--no-torch", "--plot", "x.png"], "cannot be combined with --no-torch"),
    (["--json", "/no/such/folder/out.json"], "does not exist"),
])
def test_command_line_errors_name_the_problem(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_step_subprocess_refuses_an_unknown_case(capsys):
    with pytest.raises(SystemExit):
        step.main(["vgg39"])
    assert "invalid choice: 'vgg39'" in capsys.readouterr().err


def test_quick_run_without_torch(tmp_path, capsys):
    results = _run(tmp_path, "--no-torch", "--only", "relu", "loops-small", "--kernels", "numpy")
    assert results["schema"] == "minidl.bench/1"
    assert results["machine"]["torch"] is None
    rows = results["rows"]
    assert [(r["case"], r["impl"]) for r in rows] == [
        ("loops-small", "loops"), ("loops-small", "im2col"), ("loops-small", "fft"),
        ("relu", "layer")]
    for r in rows:
        _assert_row_is_consistent(r)
        assert r["kernels"] == "numpy" and not r["compiled"]
        assert r["memory_mib"] >= 0
        assert len(r["samples_ms"]["minidl"]) == cli.QUICK_REPEATS
    table = capsys.readouterr().out
    assert "| loops-small |" in table and "| relu |" in table


@pytest.mark.slow
def test_quick_run_against_torch_both_kernel_paths(tmp_path):
    pytest.importorskip("torch")
    png, md = tmp_path / "ratios.png", tmp_path / "table.md"
    results = _run(tmp_path, "--only", "vgg38-32", "batchnorm2d", "leaky-relu", "--kernels",
                   "both", "--plot", str(png), "--markdown", str(md))
    assert results["kernels"] == ["numpy", "auto"]
    assert results["gemm"]["numpy_gflops"] > 0 and results["gemm"]["torch_gflops"] > 0
    rows = results["rows"]
    assert [(r["case"], r["impl"], r["kernels"]) for r in rows] == [
        ("vgg38-32", "im2col", "numpy"), ("vgg38-32", "im2col", "auto"),
        ("vgg38-32", "fft", "numpy"), ("vgg38-32", "fft", "auto"),
        ("vgg38-32", "winograd", "numpy"), ("vgg38-32", "winograd", "auto"),
        ("batchnorm2d", "layer", "numpy"), ("batchnorm2d", "layer", "auto"),
        ("leaky-relu", "layer", "numpy"), ("leaky-relu", "layer", "auto")]
    for r in rows:
        _assert_row_is_consistent(r)
        assert r["check"] < 1e-4  # minidl and its torch twin computed the same forward
        assert r["torch"]["memory_mib"] is not None
    assert png.stat().st_size > 0
    assert md.read_text().startswith("`python -m minidl.bench --quick")
    assert "| vgg38-32 |" in md.read_text()


@pytest.mark.slow
def test_quick_training_step_in_fresh_processes(tmp_path):
    pytest.importorskip("torch")
    results = _run(tmp_path, "--only", "step", "--kernels", "numpy")
    (r,) = results["rows"]
    _assert_row_is_consistent(r)
    assert r["group"] == "step" and set(r["ms"]) == {"total"}
    model = models.build("vgg38", bn=True, residual=True, in_channels=3, num_classes=10)
    assert r["flops"] == {"step": 6 * cases.forward_macs(model, (cases.QUICK_BATCH, 3, 32, 32))}
    assert r["check"] < 1e-4  # same network, same weights: the same first loss as PyTorch
    # max RSS of a fresh process: at least what numpy / torch need to import
    assert r["memory_mib"] > 20 and r["torch"]["memory_mib"] > 20
    ours, theirs = r["detail"]["minidl_process"], r["detail"]["torch_process"]
    assert ours["library"] == "minidl" and theirs["library"] == "torch"
    assert r["memory_mib"] == ours["max_rss_mib"] <= ours["lifetime_max_rss_mib"]
    assert r["torch"]["memory_mib"] == theirs["max_rss_mib"] <= theirs["lifetime_max_rss_mib"]


def test_torch_twin_of_vgg38_computes_the_same_loss(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("MINIDL_KERNELS", "numpy")  # the kernels have their own tests
    from minidl.bench import torch_twins
    case = cases.CASES["step"].with_batch(3)
    x, y = step.batch(case)
    ours = step.minidl_step(case.build_model(), x, y)
    theirs = step.torch_step(torch_twins.twin(case.build_model()), x, y)
    for _ in range(2):  # the second step also checks that Adam moved both alike
        assert ours() == pytest.approx(theirs(), rel=1e-4)


def test_twin_refuses_a_layer_it_cannot_mirror():
    pytest.importorskip("torch")
    from minidl import layers as L
    from minidl.bench import torch_twins
    with pytest.raises(NotImplementedError, match="no PyTorch twin for Swish"):
        torch_twins.twin(L.Sequential(L.Swish()))


def test_markdown_shows_dashes_where_torch_is_missing():
    case = cases.CASES["relu"]
    m = measure.Measurement(case, "layer", "numpy", False, samples=[(0.001, 0.001)],
                            memory_mib=1.0)
    results = {"rows": [report.row(m, {"forward": 1, "backward": 1}, None)],
               "gemm": {"n": 8, "numpy_gflops": 1.0}, "memory_method": "peak RSS"}
    line = report.markdown(results).splitlines()[2]
    assert line.startswith("| relu |") and line.endswith("| - | - | - | - | - | - |")
    assert np.isfinite(results["rows"][0]["gflops"])


def test_compare_puts_the_ratios_of_each_file_side_by_side(tmp_path, capsys):
    from minidl.bench import compare
    case = cases.CASES["relu"]
    paths = []
    for name, ours, modes in (("old", 0.004, ["numpy"]), ("new", 0.001, ["numpy", "auto"])):
        rows = [report.row(measure.Measurement(case, "layer", mode, mode == "auto",
                                               samples=[(ours, ours)],
                                               torch_samples=[(0.001, 0.001)],
                                               memory_mib=2.0, torch_memory_mib=1.0),
                           {"forward": 1, "backward": 1}, None) for mode in modes]
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"schema": "minidl.bench/1", "kernels": modes, "rows": rows}))
        paths.append(str(path))
    assert compare.main(paths) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("| case | impl | old numpy time | old numpy mem | new numpy time | "
                        "new numpy mem | new auto time | new auto mem |")
    assert lines[2] == "| relu | layer | 4.00x | 2.00x | 1.00x | 2.00x | 1.00x | 2.00x |"
    with pytest.raises(SystemExit):
        compare.main([paths[0], "--labels", "a", "b"])
    assert "2 labels for 1 files" in capsys.readouterr().err


def test_commit_is_marked_when_the_measured_source_has_uncommitted_changes(tmp_path,
                                                                          monkeypatch):
    """The results name the code that ran: the commit, plus "+uncommitted" where the
    package's tracked files differ from it (untracked files elsewhere do not count)."""
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    bench_dir = tmp_path / "pkg" / "bench"
    bench_dir.mkdir(parents=True)
    (bench_dir / "cli.py").write_text("x = 1\n")

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=tmp_path, check=True, capture_output=True, text=True)

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "--short", "HEAD").stdout.strip()
    monkeypatch.setattr(cli, "__file__", str(bench_dir / "cli.py"))
    assert cli._git_commit() == head
    (tmp_path / "notes.txt").write_text("untracked, outside the package\n")
    assert cli._git_commit() == head
    (bench_dir / "cli.py").write_text("x = 2\n")
    assert cli._git_commit() == head + "+uncommitted"


def test_the_pool_size_is_reported_with_or_without_numba(monkeypatch):
    """minidl's one pool shares the NumPy path's work too, so its size is part of every
    result's machine record and header, not only where numba is installed."""
    from minidl import _threads, kernels

    monkeypatch.setenv("MINIDL_KERNEL_THREADS", "3")
    monkeypatch.setattr(kernels, "numba_available", lambda: False)
    info = cli.machine(None)
    assert info["kernel_threads"] == _threads.threads() == 3 and info["numba"] is None
    results = {"command": "python -m minidl.bench", "created": "now", "machine": info,
               "load_average": {}, "kernels": ["numpy"], "quick": False}
    assert "(minidl's pool: 3)" in report.header(results)
