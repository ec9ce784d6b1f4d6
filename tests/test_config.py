"""TrainConfig <-> command line: defaults, generated options, round trips and validation."""
import dataclasses

import pytest

from minidl.config import (RESUMABLE_CHANGES, TrainConfig, build_parser, config_differences,
                           explicitly_set, option_name, parse_config, to_argv)
from minidl.functional.conv import METHODS as CONV_METHODS


def test_defaults_are_the_coursework_settings():
    cfg = TrainConfig(model="vgg38")
    assert (cfg.dataset, cfg.epochs, cfg.batch_size, cfg.lr, cfg.min_lr) == (
        "fashion_mnist", 100, 100, 1e-3, 2e-5)
    assert (cfg.optimizer, cfg.schedule, cfg.weight_decay) == ("adam", "cosine", 0)
    assert (cfg.device, cfg.seed) == ("cpu", 0)
    # model options not given are None: the model's own default applies (vgg38: width 32,
    # no dropout, im2col), and a given value always reaches the model
    assert (cfg.width, cfg.dropout, cfg.conv_method, cfg.activation) == (None,) * 4
    assert not (cfg.bn or cfg.residual or cfg.resume)
    assert cfg.augment == ()


def test_every_field_is_documented_and_becomes_an_option():
    help_text = build_parser(["vgg08", "vgg38"]).format_help()
    for f in dataclasses.fields(TrainConfig):
        assert len(f.metadata["help"]) > 10, f.name
        if f.name != "model":
            assert option_name(f.name) in help_text
    assert "--batch-size" in help_text and "(default: 100)" in help_text


def test_command_line_round_trip():
    argv = ["vgg38", "--bn", "--residual", "--epochs", "3", "--lr", "0.05", "--subset", "200",
            "--optimizer", "nesterov", "--schedule", "onecycle", "--conv-method", "fft",
            "--num-blocks-per-stage", "2", "--activation", "elu", "--random-erasing",
            "--augment", "--out", "runs/x", "--data-dir", "/data", "--weight-decay", "1e-4"]
    cfg = parse_config(argv)
    assert cfg.bn and cfg.residual and cfg.augment == ("crop", "flip", "erase")
    assert (cfg.epochs, cfg.lr, cfg.subset, cfg.num_blocks_per_stage) == (3, 0.05, 200, 2)
    assert (cfg.optimizer, cfg.schedule, cfg.conv_method, cfg.activation) == (
        "nesterov", "onecycle", "fft", "elu")
    assert parse_config(to_argv(cfg)) == cfg
    assert parse_config(to_argv(TrainConfig(model="vgg08"))) == TrainConfig(model="vgg08")


def test_json_round_trip(tmp_path):
    cfg = parse_config(["resnet18", "--lr", "0.1", "--subset", "50"])
    cfg.save_json(tmp_path / "config.json")
    assert TrainConfig.load_json(tmp_path / "config.json") == cfg
    with pytest.raises(ValueError, match="unknown option.*'learning_rate'"):
        TrainConfig.from_dict({**cfg.to_dict(), "learning_rate": 1})


def test_bad_choices_exit_with_code_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_config(["nonet"], model_choices=["vgg08", "vgg38"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nonet'" in err and "vgg08" in err and "vgg38" in err
    with pytest.raises(SystemExit):
        parse_config(["vgg08", "--device", "tpu"])
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


def test_default_out_folder_names_the_variant():
    assert TrainConfig(model="vgg38").default_out() == "runs/vgg38-fashion_mnist"
    cfg = TrainConfig(model="vgg38", bn=True, residual=True, dataset="cifar100")
    assert cfg.default_out() == "runs/vgg38-bn-res-cifar100"


def test_differences_ignore_what_a_resume_may_change():
    old = TrainConfig(model="vgg08", epochs=10)
    new = dataclasses.replace(old, epochs=20, resume=True, no_progress=True, no_plots=True,
                              device="gpu")
    assert config_differences(old, new) == []
    assert set(RESUMABLE_CHANGES) == {"epochs", "resume", "no_progress", "no_plots", "device"}
    changed = dataclasses.replace(new, lr=0.1, bn=True)
    assert config_differences(old, changed) == [("bn", False, True), ("lr", 1e-3, 0.1)]


def test_explicitly_set_and_problems():
    cfg = TrainConfig(model="m", bn=True, dropout=0.5)
    assert explicitly_set(cfg) == {"model", "bn", "dropout"}
    assert cfg.problems() == []
    bad = TrainConfig(model="m", epochs=0, dropout=1.0, lr=-1, subset=0, batch_size=0)
    text = " ".join(bad.problems())
    for option in ("--epochs", "--dropout", "--lr", "--subset", "--batch-size"):
        assert option in text


# The options and defaults the training issue asks for, spelt as on the command line.
ISSUE_DEFAULTS = {"--epochs": 100, "--batch-size": 100, "--lr": 1e-3, "--min-lr": 2e-5,
                  "--optimizer": "adam", "--schedule": "cosine", "--conv-method": None,
                  "--device": "cpu", "--seed": 0}
ISSUE_FLAGS = ("--bn", "--residual", "--resume", "--no-progress", "--drop-last", "--no-plots")
ISSUE_VALUES = {"--dataset": "cifar100", "--data-dir": "/data", "--weight-decay": 1e-4,
                "--dropout": 0.2, "--width": 16, "--num-blocks-per-stage": 2,
                "--activation": "relu", "--subset": 500, "--out": "runs/x"}


def _field(option: str) -> str:
    return option[2:].replace("-", "_")


def test_every_issue_option_parses_with_its_default():
    cfg = parse_config(["vgg38"])
    for option, default in ISSUE_DEFAULTS.items():
        assert getattr(cfg, _field(option)) == default, option
    for flag in ISSUE_FLAGS:
        assert getattr(cfg, _field(flag)) is False
        assert getattr(parse_config(["vgg38", flag]), _field(flag)) is True, flag
    for option, value in ISSUE_VALUES.items():
        assert getattr(parse_config(["vgg38", option, str(value)]), _field(option)) == value
    # --augment (crop + flip) and --random-erasing were flags; now they fill one list
    assert cfg.augment == ()
    assert parse_config(["vgg38", "--augment"]).augment == ("crop", "flip")
    assert parse_config(["vgg38", "--random-erasing"]).augment == ("erase",)


@pytest.mark.parametrize("option, valid", [("--conv-method", CONV_METHODS),
                                           ("--device", ("cpu", "gpu"))])
def test_closed_choices(option, valid, capsys):
    for value in valid:
        assert getattr(parse_config(["vgg38", option, value]), _field(option)) == value
    with pytest.raises(SystemExit):
        parse_config(["vgg38", option, "abacus"])
    err = capsys.readouterr().err
    assert "invalid choice: 'abacus'" in err and all(v in err for v in valid)


@pytest.mark.parametrize("old, new", [("--conv", "--conv-method"), ("--num-filters", "--width")])
def test_older_spellings_still_parse(old, new):
    value = "fft" if "conv" in old else "16"
    assert parse_config(["vgg38", old, value]) == parse_config(["vgg38", new, value])


def test_config_json_of_an_older_minidl_is_read():
    old = {**TrainConfig(model="vgg38").to_dict(), "num_filters": 32, "conv": "im2col",
           "dropout": 0.0}
    for key in ("width", "conv_method", "drop_last"):
        del old[key]
    # saved at the old defaults (never passed to the model): "not given" now
    assert TrainConfig.from_dict(old) == TrainConfig(model="vgg38")
    assert TrainConfig.from_dict({**old, "num_filters": 8}).width == 8


@pytest.mark.parametrize("options, message", [
    ({"lr": float("nan")}, "--lr must be a finite number"),
    ({"lr": float("inf")}, "--lr must be a finite number"),
    ({"min_lr": 0.1, "lr": 0.01}, "--min-lr (0.1) must not exceed --lr (0.01)"),
    ({"weight_decay": float("nan")}, "--weight-decay must be a finite"),
    ({"val_fraction": float("nan")}, "--val-fraction"),
    ({"width": 0}, "--width must be >= 1"),
])
def test_silently_wrong_numbers_are_problems(options, message):
    assert any(message in p for p in TrainConfig(model="vgg38", **options).problems())


def test_min_lr_above_lr_is_fine_for_a_constant_schedule():
    assert TrainConfig(model="vgg38", min_lr=0.1, lr=0.01, schedule="constant").problems() == []


# The model options of the efficient-architecture issue (11), spelt as on the command line.
def test_paper_model_options_parse_and_are_checked(capsys):
    cfg = parse_config(["mobilenet", "--width-mult", "0.5", "--stem-stride", "2",
                        "--no-separable"])
    assert (cfg.width_mult, cfg.stem_stride, cfg.no_separable) == (0.5, 2, True)
    assert explicitly_set(cfg) == {"model", "width_mult", "stem_stride", "no_separable"}
    cfg = parse_config(["lenet5", "--pool", "avg", "--activation", "tanh"])
    assert (cfg.pool, cfg.activation) == ("avg", "tanh")
    assert parse_config(["resnet18", "--no-shortcut"]).no_shortcut is True
    assert parse_config(["vgg16", "--global-pool"]).global_pool is True
    defaults = parse_config(["vgg16"])
    assert (defaults.pool, defaults.width_mult, defaults.stem_stride) == (None, None, None)
    assert not (defaults.no_shortcut or defaults.no_separable or defaults.global_pool)
    with pytest.raises(SystemExit):
        parse_config(["lenet5", "--pool", "sum"])
    assert "invalid choice: 'sum'" in capsys.readouterr().err
    bad = TrainConfig(model="mobilenet", width_mult=0.0, stem_stride=0)
    text = " ".join(bad.problems())
    assert "--width-mult" in text and "--stem-stride" in text
    assert TrainConfig(model="mobilenet", width_mult=float("nan")).problems()


def test_a_config_json_without_the_paper_options_still_loads():
    values = TrainConfig(model="vgg16").to_dict()
    for name in ("pool", "no_shortcut", "width_mult", "stem_stride", "no_separable",
                 "global_pool"):
        del values[name]
    assert TrainConfig.from_dict(values) == TrainConfig(model="vgg16")


# --model-kwargs (issue 11): any builder option, values read as Python literals.
def test_model_kwargs_values_are_python_literals_else_strings():
    cfg = parse_config(["vgg19", "--model-kwargs", "kernel_size=5", "hidden=(800, 800)",
                        "norm=lrn", "p=0.25", "bn=True", "head=None", "sizes=3,5",
                        "--model-kwargs", "name='relu'", "ks=[3, 5]"])
    assert cfg.model_kwargs == {"kernel_size": 5, "hidden": (800, 800), "norm": "lrn",
                                "p": 0.25, "bn": True, "head": None, "sizes": (3, 5),
                                "name": "relu", "ks": (3, 5)}
    assert isinstance(cfg.model_kwargs["bn"], bool) and cfg.model_kwargs["head"] is None
    assert parse_config(to_argv(cfg)) == cfg
    assert explicitly_set(cfg) == {"model", "model_kwargs"}
    assert parse_config(["vgg19"]).model_kwargs == {}


def test_model_kwargs_survive_config_json_and_are_compared_on_resume(tmp_path):
    cfg = parse_config(["mlp", "--model-kwargs", "hidden=(1200, 1200)", "dropout=0.5"])
    cfg.save_json(tmp_path / "config.json")
    assert '"hidden": [\n      1200,' in (tmp_path / "config.json").read_text()  # JSON list
    loaded = TrainConfig.load_json(tmp_path / "config.json")
    assert loaded == cfg and loaded.model_kwargs["hidden"] == (1200, 1200)
    assert config_differences(loaded, cfg) == []
    other = parse_config(["mlp", "--model-kwargs", "hidden=(800, 800)", "dropout=0.5"])
    assert config_differences(cfg, other) == [
        ("model_kwargs", {"hidden": [1200, 1200], "dropout": 0.5},
         {"hidden": [800, 800], "dropout": 0.5})]


@pytest.mark.parametrize("argv, message", [
    (["--model-kwargs", "kernel_size"], "expected KEY=VALUE"),
    (["--model-kwargs", "=5"], "expected KEY=VALUE"),
    (["--model-kwargs", "kernel size=5"], "expected KEY=VALUE"),
    (["--model-kwargs", "a=1", "a=2"], "a is given twice (1 and 2)"),
    (["--model-kwargs", "a=1", "--model-kwargs", "a=1"], "a is given twice"),
    (["--model-kwargs", "a={1: 2}"], "a: a value must be a number"),
    (["--model-kwargs", "a={1, 2}"], "got set"),
    (["--model-kwargs"], "expected at least one argument"),
])
def test_bad_model_kwargs_exit_with_code_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_config(["vgg19", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_model_kwargs_from_a_dict_are_checked():
    assert TrainConfig(model="m", model_kwargs={"k": [1, [2, 3]]}).model_kwargs == {
        "k": (1, (2, 3))}
    with pytest.raises(ValueError, match="model option k: a value must"):
        TrainConfig(model="m", model_kwargs={"k": {"nested": 1}})
    with pytest.raises(ValueError, match="model_kwargs must be a dict"):
        TrainConfig(model="m", model_kwargs=["k=1"])


# --augment NAME ... (issue 11): a list, applied in a fixed order.
@pytest.mark.parametrize("argv, expected", [
    (["--augment"], ("crop", "flip")),                       # bare: today's meaning
    (["--augment", "flip"], ("flip",)),
    (["--augment", "erase,flip,crop"], ("crop", "flip", "erase")),
    (["--augment", "crop", "flip", "erase"], ("crop", "flip", "erase")),
    (["--augment", "flip,", "jitter"], ("jitter", "flip")),
    (["--augment", "flip", "--random-erasing"], ("flip", "erase")),
    (["--random-erasing", "--augment"], ("crop", "flip", "erase")),
    (["--augment", "flip", "--augment", "flip"], ("flip",)),
])
def test_augment_takes_a_list(argv, expected):
    cfg = parse_config(["vgg38", *argv])
    assert cfg.augment == expected
    assert parse_config(to_argv(cfg)) == cfg
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_augmentation_exits_with_code_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_config(["vgg38", "--augment", "crop,flop"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unknown name(s) 'flop'; choose from crop, jitter, flip, erase" in err
    with pytest.raises(ValueError, match="unknown augmentation.*'rotate'"):
        TrainConfig(model="vgg38", augment=("rotate",))


@pytest.mark.parametrize("augment, random_erasing, expected", [
    (True, False, ("crop", "flip")), (False, False, ()), (True, True, ("crop", "flip", "erase")),
    (False, True, ("erase",)),
])
def test_config_json_with_augment_flags_still_loads(augment, random_erasing, expected):
    values = {**TrainConfig(model="vgg38").to_dict(), "augment": augment,
              "random_erasing": random_erasing}
    cfg = TrainConfig.from_dict(values)
    assert cfg.augment == expected
    assert TrainConfig.from_dict({**values, "random_erasing": False}).augment == \
        (("crop", "flip") if augment else ())
