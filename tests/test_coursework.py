"""The MLP coursework 2 ladder (``coursework/mlp_cw2.py``): specs that parse, and list/run/table
end to end on a fake Fashion-MNIST with 2-filter networks (each run well under a second)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coursework import mlp_cw2
from minidl import models
from minidl.config import TrainConfig, build_parser
from minidl.data import write_idx
from minidl.train import EXIT_USAGE, model_options

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_TRAIN, N_TEST, N_CLASSES = 60, 20, 10
RUN_NAMES = ["vgg08", "vgg38-bn-res-re-l2-drop"]  # the shallow net and every option at once


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Fashion-MNIST's four IDX gz files holding random 28x28 images and labels."""
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz",
                  rng.integers(0, N_CLASSES, size=n).astype(np.uint8))
    return root


def _run_args(data_dir, out_root, *names, epochs=1):
    return ["run", *names, "--dataset", "fashion_mnist", "--data-dir", str(data_dir),
            "--out-root", str(out_root), "--subset", "40", "--epochs", str(epochs),
            "--extra=--num-filters 2 --num-blocks-per-stage 1 --no-progress"]


# ---------------------------------------------------------------------- the specs
@pytest.mark.parametrize("exp", mlp_cw2.LADDER, ids=lambda e: e.name)
def test_every_rung_parses_with_the_train_cli(exp):
    argv = mlp_cw2.train_argv(exp, "runs/x")
    args = build_parser(models.available()).parse_args(argv)  # SystemExit on an unknown option
    cfg = TrainConfig(**vars(args))
    assert cfg.problems() == []
    # the report's settings (section 5)
    assert (cfg.dataset, cfg.val_fraction, cfg.batch_size, cfg.seed, cfg.epochs) == (
        "cifar100", 0.05, 100, 0, 100)
    assert (cfg.optimizer, cfg.lr, cfg.schedule, cfg.min_lr) == ("adam", 1e-3, "cosine", 2e-5)
    # every model option the rung sets is one its model takes
    options = model_options(cfg, models.options(cfg.model), {})
    assert set(options) <= set(models.options(cfg.model))


def test_the_ladder_adds_one_change_per_rung():
    cfgs = {e.name: TrainConfig(**vars(build_parser().parse_args(mlp_cw2.train_argv(e, "o"))))
            for e in mlp_cw2.LADDER}
    assert cfgs["vgg08"].model == "vgg08" and not cfgs["vgg38"].bn and not cfgs["vgg38"].residual
    assert cfgs["vgg38-bn"].bn and not cfgs["vgg38-bn"].residual
    assert cfgs["vgg38-res"].residual and not cfgs["vgg38-res"].bn
    base = cfgs["vgg38-bn-res"]
    assert base.bn and base.residual and not base.random_erasing and base.weight_decay == 0
    assert cfgs["vgg38-bn-res-re"].random_erasing
    assert cfgs["vgg38-bn-res-re-l2"].weight_decay == 1e-3  # section 5.3: p = 0.001
    drop = cfgs["vgg38-bn-res-re-l2-drop"]
    assert drop.dropout == 0.5 and drop.weight_decay == 1e-3 and drop.random_erasing
    reported = {e.name: (e.report_val, e.report_test) for e in mlp_cw2.LADDER}
    assert reported["vgg38-bn-res"] == (0.6212, 0.6112)
    assert reported["vgg38-bn-res-re-l2"] == (0.6589, 0.6541)


def test_overrides_replace_the_report_settings():
    exp = mlp_cw2.EXPERIMENTS["vgg38-bn-res"]
    argv = mlp_cw2.train_argv(exp, "o", dataset="fashion_mnist", epochs=3, subset=50,
                              device="gpu", extra=["--num-filters", "4"])
    assert argv.count("--dataset") == 1 and argv.count("--epochs") == 1
    cfg = TrainConfig(**vars(build_parser().parse_args(argv)))
    assert (cfg.dataset, cfg.epochs, cfg.subset, cfg.device, cfg.num_filters, cfg.out) == (
        "fashion_mnist", 3, 50, "gpu", 4, "o")


def test_list_prints_every_command(capsys):
    assert mlp_cw2.main(["list"]) == 0
    out = capsys.readouterr().out
    commands = [line for line in out.splitlines() if line.startswith("python -m minidl.train ")]
    assert len(commands) == len(mlp_cw2.LADDER)
    for exp, command in zip(mlp_cw2.LADDER, commands):
        assert f"# {exp.name}:" in out
        assert command.endswith(f"--out runs/mlp_cw2-cifar100/{exp.name}")
    assert "val 0.6212, test 0.6112" in out


def test_unknown_experiment_is_a_usage_error(capsys):
    assert mlp_cw2.main(["run", "vgg99"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "vgg99" in err and "vgg38-bn-res" in err


def test_table_without_runs_says_so(tmp_path, capsys):
    assert mlp_cw2.main(["table", "--out-root", str(tmp_path)]) == 1
    assert "no runs" in capsys.readouterr().err
    assert not (tmp_path / "summary.md").exists()


# ---------------------------------------------------------------------- end to end
def test_run_table_skip_and_resume(data_dir, tmp_path, capsys):
    root = tmp_path / "runs"
    assert mlp_cw2.main(_run_args(data_dir, root, *RUN_NAMES)) == 0
    for name in RUN_NAMES:
        summary = json.loads((root / name / "test_summary.json").read_text())
        assert summary["epochs"] == 1 and summary["dataset"] == "fashion_mnist"
    config = json.loads((root / RUN_NAMES[1] / "config.json").read_text())
    assert (config["dropout"], config["weight_decay"], config["random_erasing"]) == (0.5, 1e-3, True)
    capsys.readouterr()

    assert mlp_cw2.main(["table", "--out-root", str(root)]) == 0
    printed = capsys.readouterr().out
    text = (root / "summary.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| vgg")]
    assert [row.split("|")[1].strip() for row in rows] == RUN_NAMES
    assert "| vgg08 | fashion_mnist | 1 |" in text and "0.4848" in text and "0.6524" in text
    assert rows[0] in printed
    assert "Not run yet: vgg38, vgg38-bn," in text
    png = root / "val_accuracy.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000

    # a second run skips both finished runs: nothing is rewritten
    before = {n: (root / n / "metrics.csv").stat().st_mtime_ns for n in RUN_NAMES}
    assert mlp_cw2.main(_run_args(data_dir, root, *RUN_NAMES)) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == 2 and "python -m minidl.train" not in out
    assert {n: (root / n / "metrics.csv").stat().st_mtime_ns for n in RUN_NAMES} == before

    # more epochs: the finished run is resumed from its checkpoint, not restarted
    assert mlp_cw2.main(_run_args(data_dir, root, "vgg08", epochs=2)) == 0
    out = capsys.readouterr().out
    assert "--resume" in out and "resuming" in out
    assert json.loads((root / "vgg08" / "test_summary.json").read_text())["epochs"] == 2
    assert mlp_cw2.main(["table", "--out-root", str(root)]) == 0
    assert "| vgg08 | fashion_mnist | 2 |" in (root / "summary.md").read_text()


def test_changed_configuration_is_refused_not_skipped(data_dir, tmp_path, capsys):
    root = tmp_path / "runs"
    assert mlp_cw2.main(_run_args(data_dir, root, "vgg08")) == 0
    args = _run_args(data_dir, root, "vgg08")
    args[-1] = "--extra=--num-filters 3 --no-progress"
    assert mlp_cw2.main(args) == EXIT_USAGE
    assert "--num-filters: 2 in config.json, 3 now" in capsys.readouterr().err


def test_module_entry_point_lists_the_ladder():
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "coursework.mlp_cw2", "list", "vgg08"],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# vgg08:") and "python -m minidl.train vgg08" in done.stdout
