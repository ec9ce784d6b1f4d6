"""The survey's studies (seed 001, section VII): each run is the survey's setting and differs
from the others of its study in the one thing the study varies; each study runs end to end at
its --quick size on a fake Fashion-MNIST and reports."""
import json
import math

import pytest

from coursework import studies
from coursework.__main__ import main
from coursework.studies import survey_001
from minidl import layers as L
from minidl import models
from minidl.config import parse_config
from minidl.train import EXIT_OK, model_options
from tests.fake_data import write_fake_fashion_mnist

NAMES = ("kernel-sizes", "activations", "momentum-vs-adam")
CIFAR_TRAIN = 50_000
# What a run of each study may change; everything else must equal the study's first run.
VARIED = {"kernel-sizes": {"model", "model_kwargs"},
          "activations": {"activation", "model_kwargs"},
          "momentum-vs-adam": {"optimizer"}}  # within one network


def _config(study, run, quick=False):
    return parse_config(study.train_argv(run, quick) + ["--out", "o"])


def _steps(cfg) -> int:
    """Optimiser steps of a full-data CIFAR-10 run of ``cfg``."""
    n_train = CIFAR_TRAIN - round(cfg.val_fraction * CIFAR_TRAIN)
    return cfg.epochs * math.ceil(n_train / cfg.batch_size)


def _model(study, run):
    """The model of ``run`` at its --quick width, as minidl.train builds it for CIFAR-10."""
    cfg = _config(study, run, quick=True)
    data_options = {"in_channels": 3, "num_classes": 10, "seed": 0, "image_size": 32}
    return models.build(cfg.model, **model_options(cfg, models.options(cfg.model), data_options))


def _layers(model, kind):
    return [layer for _, layer in model.named_layers() if isinstance(layer, kind)]


# ---------------------------------------------------------------------- the survey's setting
def test_the_survey_studies_are_registered():
    assert [s.name for s in survey_001.STUDIES] == list(NAMES)
    assert all(studies.get(name) is s for name, s in zip(NAMES, survey_001.STUDIES))
    assert [r.name for r in studies.get("kernel-sizes").runs] == \
        ["vgg19-3x3", "vgg19-5x5", "vgg14-mixed"]
    assert [r.name for r in studies.get("activations").runs] == [
        f"{a}{n}" for n in ("", "-bn", "-lrn")
        for a in ("relu", "leaky-relu", "elu", "swish", "swish-trainable", "crelu")]
    assert [r.name for r in studies.get("momentum-vs-adam").runs] == \
        ["alexnet-momentum", "alexnet-adam", "vgg19-momentum", "vgg19-adam"]


@pytest.mark.parametrize("name", NAMES)
def test_full_setting_is_the_surveys(name):
    study = studies.get(name)
    for run in study.runs:
        cfg = _config(study, run)
        assert (cfg.dataset, cfg.subset, cfg.schedule) == ("cifar10", None, "constant")
        assert cfg.model_kwargs["init"] == "he"
        if cfg.model == "alexnet":  # the paper's network: its own width, FC and dropout
            assert (cfg.width, cfg.dropout) == (96, None) and "hidden" not in cfg.model_kwargs
        else:  # VGG-19, "keeping dropout probability 0.2"
            assert (cfg.width, cfg.dropout) == (64, 0.2)
        if name == "momentum-vs-adam":  # "alexnet, 300000 step, learning rate 0.005"
            assert cfg.lr == 0.005 and _steps(cfg) == 300_000
        else:  # "20000 step, learning rate 0.0002, optimizer ADAM"
            assert (cfg.optimizer, cfg.lr) == ("adam", 2e-4)
            assert abs(_steps(cfg) - 20_000) / 20_000 < 0.01
        assert cfg.problems() == []


@pytest.mark.parametrize("name", NAMES)
def test_runs_differ_only_in_what_the_study_varies(name):
    study = studies.get(name)
    groups = {}  # momentum-vs-adam: one comparison per network
    for run in study.runs:
        cfg = _config(study, run)
        groups.setdefault(cfg.model if name == "momentum-vs-adam" else "", []).append(cfg)
    for first, *others in groups.values():
        for other in others:
            changed = {k for k, v in first.to_dict().items() if other.to_dict()[k] != v}
            assert changed and changed <= VARIED[name]
    if name == "momentum-vs-adam":
        assert [[c.optimizer for c in g] for g in groups.values()] == [["momentum", "adam"]] * 2
    if name == "activations":  # the activation and the norm, and nothing else of the model
        for cfg in (_config(study, r) for r in study.runs):
            assert set(cfg.model_kwargs) == {"init", "kernel_size", "norm"}
            assert cfg.model_kwargs["kernel_size"] == 3


def test_kernel_sizes_build_the_three_networks():
    study = studies.get("kernel-sizes")
    convs = {r.name: _layers(_model(study, r), L.Conv2d) for r in study.runs}
    assert [len(convs[n]) for n in ("vgg19-3x3", "vgg19-5x5", "vgg14-mixed")] == [16, 16, 11]
    assert {c.weight.data.shape[2:] for c in convs["vgg19-3x3"]} == {(3, 3)}
    assert {c.weight.data.shape[2:] for c in convs["vgg19-5x5"]} == {(5, 5)}
    assert {c.weight.data.shape[2:] for c in convs["vgg14-mixed"]} == {(3, 3), (5, 5)}


def test_optimiser_runs_train_alexnet_as_the_survey_does():
    study = studies.get("momentum-vs-adam")
    model = _model(study, study.run("alexnet-adam"))
    assert [c.weight.data.shape[2] for c in _layers(model, L.Conv2d)] == [11, 5, 3, 3, 3]
    assert len(_layers(model, L.LocalResponseNorm)) == 2 and len(_layers(model, L.Linear)) == 3


def test_activation_runs_build_their_activation_and_norm():
    study = studies.get("activations")
    kinds = {"relu": L.ReLU, "leaky-relu": L.LeakyReLU, "elu": L.ELU, "swish": L.Swish,
             "swish-trainable": L.Swish, "crelu": L.CReLU}
    norms = {"": (), "-bn": (L.BatchNorm2d,), "-lrn": (L.LocalResponseNorm,)}
    for run in study.runs:
        model = _model(study, run)
        act, suffix = next((a, run.name[len(a):]) for a in sorted(kinds, key=len, reverse=True)
                           if run.name.startswith(a))
        assert len(_layers(model, kinds[act])) == 18  # 16 convs and the 2 hidden FC layers
        for norm in (L.BatchNorm2d, L.LocalResponseNorm):
            assert len(_layers(model, norm)) == (16 if norms[suffix] == (norm,) else 0)
        betas = [n for n, _ in model.named_parameters() if n.endswith(".beta")]
        assert len(betas) == (18 if act == "swish-trainable" else 0)


def test_report_holds_the_surveys_findings():
    acts = studies.get("activations")
    assert "worst" in acts.run("crelu").report["test_acc"]
    assert "ReLU" in acts.run("leaky-relu").report["test_acc"]
    for run in acts.runs:
        if run.name.endswith(("-bn", "-lrn")):
            assert "about 2x" in run.report["train_cpu_seconds"]
    assert "CReLU" in acts.run("crelu-bn").report["test_acc"]
    assert "more than" in studies.get("kernel-sizes").run("vgg14-mixed").report[
        "train_cpu_seconds"]
    optimisers = studies.get("momentum-vs-adam")
    assert "less oscillation" in optimisers.run("alexnet-adam").report["val_acc"]
    assert optimisers.run("vgg19-adam").report == {}  # the survey trained AlexNet only


# ---------------------------------------------------------------------- --quick, end to end
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Fashion-MNIST's four IDX gz files holding random 28x28 images and labels."""
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fashion"))


# Every activation and every norm once (the 18 runs take a minute even at --quick size).
QUICK_RUNS = {"activations": ("relu", "swish", "crelu", "leaky-relu-bn", "swish-trainable-bn",
                              "elu-lrn")}


@pytest.mark.parametrize("name", NAMES)
def test_quick_study_runs_and_reports(name, data_dir, tmp_path):
    study = studies.get(name)
    out_root, results = tmp_path / "runs", tmp_path / "results"
    runs = [study.run(n) for n in QUICK_RUNS.get(name, [r.name for r in study.runs])]
    assert main(["run", name, *(r.name for r in runs), "--quick", "--dataset", "fashion_mnist",
                 "--data-dir", str(data_dir), "--out-root", str(out_root)]) == EXIT_OK
    assert main(["report", name, "--out-root", str(out_root), "--results",
                 str(results)]) == EXIT_OK
    summary = json.loads((results / "summary.json").read_text())
    assert list(summary) == [r.name for r in runs]
    readme = (results / "README.md").read_text()
    for run in runs:
        assert f"| {run.name} ({run.label})" in readme
        for finding in run.report.values():
            assert finding in readme
        config = json.loads((out_root / name / run.name / "config.json").read_text())
        assert (config["dataset"], config["subset"], config["width"]) == ("fashion_mnist", 50, 4)
    if name == "kernel-sizes":  # 5x5 kernels: more weights and more work than 3x3
        three, five = summary["vgg19-3x3"]["metrics"], summary["vgg19-5x5"]["metrics"]
        assert five["params"] > three["params"]
        assert 1 < five["mult_adds"] / three["mult_adds"] < 25 / 9
    if name == "activations":  # CReLU doubles the next layer's inputs
        assert summary["crelu"]["metrics"]["params"] > summary["relu"]["metrics"]["params"]
        assert summary["swish-trainable-bn"]["metrics"]["params"] == \
            summary["leaky-relu-bn"]["metrics"]["params"] + 18  # one beta per Swish layer
