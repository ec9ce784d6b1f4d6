"""One commented dataclass holds every training option; the command line is generated from it.

Each field's ``metadata`` carries its help text (and ``choices`` where the set is closed), so
adding an option is one line here and ``--help``, ``config.json`` and resume checks follow
(nanoGPT's single-source-of-defaults habit, without its ``exec``-based overrides).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .backend import DEVICES
from .data.augment import AUGMENTATIONS, augmentation_names
from .functional.conv import CHOICES as CONV_METHODS
from .optim import OPTIMIZERS, SCHEDULES

# Options renamed since older config.json files (old name -> new), with the old defaults.
RENAMED = {"num_filters": "width", "conv": "conv_method"}
OLD_DEFAULTS = {"width": 32, "conv_method": "im2col", "dropout": 0.0}

# When the learning-rate schedule advances (--schedule-step).
SCHEDULE_STEPS = ("epoch", "batch")

# Fields a resumed run may change: everything else must match the folder's config.json.
RESUMABLE_CHANGES = ("epochs", "resume", "no_progress", "no_plots", "device")


def _opt(default, help: str, **extra):
    """A dataclass field whose metadata becomes the argparse option's help/choices/metavar.

    A dict default (``model_kwargs``) becomes a fresh empty dict per instance."""
    metadata = {"help": help, **extra}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


# Types a --model-kwargs value may have after parsing (tuples may nest them).
KWARG_TYPES = (bool, int, float, str, type(None))


def model_kwarg_value(value, key: str = "value"):
    """``value`` as stored in TrainConfig.model_kwargs: lists (JSON's form of a tuple) become
    tuples, so a config.json read back compares equal; a ValueError for other containers."""
    if isinstance(value, (list, tuple)):
        return tuple(model_kwarg_value(v, key) for v in value)
    if not isinstance(value, KWARG_TYPES):
        raise ValueError(f"model option {key}: a value must be a number, True/False, None, "
                         f"a string or a tuple of these, got {type(value).__name__} {value!r}")
    return value


class _Names(argparse.Action):
    """``--augment crop,flip erase`` (commas or spaces, repeatable): adds the names to the
    option's tuple; no names at all means ``bare``. An unknown name is a usage error."""

    def __init__(self, option_strings, dest, names=(), bare=(), **kwargs):
        self.names, self.bare = tuple(names), tuple(bare)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        given = [n for v in values for n in v.replace(",", " ").split()] or list(self.bare)
        unknown = [n for n in given if n not in self.names]
        if unknown:
            parser.error(f"argument {option_string}: unknown name(s) "
                         f"{', '.join(map(repr, unknown))}; choose from {', '.join(self.names)}")
        already = getattr(namespace, self.dest) or ()
        setattr(namespace, self.dest, tuple(n for n in self.names if n in (*already, *given)))


def parse_model_kwarg(text: str) -> tuple[str, object]:
    """``"hidden=(800, 800)"`` -> ``("hidden", (800, 800))``.

    The value is read as a Python literal (``5``, ``0.1``, ``True``, ``None``, ``(3, 5)``,
    ``3,5``); anything that is not one (``relu``, ``max_overlap``) is kept as the string.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with KEY an option name of the model, got {text!r}")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = raw.strip()  # not a literal: a word such as relu is meant as a string
    try:
        return key, model_kwarg_value(value, key)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


class KeyValues(argparse.Action):
    """``--model-kwargs a=1 b=2`` (repeatable): merges the pairs into one dict; a key given
    twice is an error rather than a silent overwrite."""

    def __call__(self, parser, namespace, pairs, option_string=None):
        merged = dict(getattr(namespace, self.dest) or {})
        for key, value in pairs:
            if key in merged:
                parser.error(f"argument {option_string}: {key} is given twice "
                             f"({merged[key]!r} and {value!r})")
            merged[key] = value
        setattr(namespace, self.dest, merged)


@dataclass
class TrainConfig:
    """Every option of ``python -m minidl.train``; defaults are the coursework's settings."""

    # --- what to train (model options left unset keep the model's own default; one given is
    # always passed to the model, even when it equals some default)
    model: str = _opt("", "architecture to train", positional=True)
    bn: bool = _opt(False, "add BatchNorm after every convolution (fixes the broken vgg38)")
    residual: bool = _opt(False, "wrap blocks in residual (skip) connections (He et al., 2016)")
    width: typing.Optional[int] = _opt(
        None, "channels of the first stage, later stages scale from it (the model's own when "
              "not given: 32 for vgg08/vgg38, 64 for resnet18, vgg11, vgg16, sfnet)",
        aliases=("--num-filters",))
    num_blocks_per_stage: typing.Optional[int] = _opt(
        None, "convolutional blocks per stage (the model's own depth when not given)")
    activation: typing.Optional[str] = _opt(
        None, "hidden activation, e.g. relu, leaky_relu, elu, swish (the model's own when not "
              "given)")
    dropout: typing.Optional[float] = _opt(
        None, "dropout probability before the classifier (the model's own when not given, "
              "0 for most: no dropout)")
    conv_method: typing.Optional[str] = _opt(
        None, "convolution algorithm (the layer's method); all give the same numbers "
              "(auto when not given: winograd on 3x3 stride-1 layers where numba's kernels run, "
              "im2col elsewhere)", choices=CONV_METHODS, aliases=("--conv",))
    pool: typing.Optional[str] = _opt(
        None, "lenet5's pooling: max, or avg (LeCun's sub-sampling; with --activation tanh "
              "LeCun's network) (max when not given)", choices=("max", "avg"))
    no_shortcut: bool = _opt(False, "resnet18 without shortcut connections: the plain network "
                                    "of the same depth (He et al., 2016, Fig. 4)")
    width_mult: typing.Optional[float] = _opt(
        None, "mobilenet's width multiplier alpha, scaling every layer's channels (1.0 when "
              "not given)")
    stem_stride: typing.Optional[int] = _opt(
        None, "mobilenet's stem stride: 1 for 28/32-pixel images, 2 the paper's ImageNet form "
              "(1 when not given)")
    no_separable: bool = _opt(False, "mobilenet with one full 3x3 convolution in place of each "
                                     "depthwise-separable block (the paper's Table 4)")
    global_pool: bool = _opt(False, "vgg16/sfnet: global average pooling in place of the last "
                                    "max pool and the flattened head (without it: the SfNet "
                                    "paper's form)")
    model_kwargs: dict = _opt(
        {}, "any option of the model's builder as KEY=VALUE pairs (timm's spelling), e.g. "
            "--model-kwargs kernel_size=5 hidden=(800,800) norm=lrn; a value is read as a "
            "Python literal (int, float, True/False, None, tuple) and otherwise kept as a "
            "string. An unknown KEY is refused with the model's list of options; a KEY that "
            "a named option above also sets (e.g. width with --width) is refused",
        metavar="KEY=VALUE")

    # --- data
    dataset: str = _opt("fashion_mnist", "dataset name (fashion_mnist, cifar10, cifar100, ...)")
    data_dir: typing.Optional[str] = _opt(
        None, "folder holding the dataset files (the dataset's standard location when not given)")
    val_fraction: float = _opt(0.05, "fraction of the training set held out for validation")
    subset: typing.Optional[int] = _opt(
        None, "use only N training examples (quick experiments and tests)")
    augment: tuple = _opt(
        (), "training augmentations, comma or space separated, applied in this order: crop "
            "(random crop after 4-pixel zero padding), jitter (random shifts of up to 2 pixels, "
            "Hinton et al.'s jittered inputs), flip (horizontal), erase (random erasing, Zhong "
            "et al., 2017, p 0.5); a bare --augment means crop,flip",
        names=AUGMENTATIONS, bare=("crop", "flip"), flags={"--random-erasing": ("erase",)},
        metavar="NAME")

    # --- knowledge distillation (Hinton et al., 2015; the slides' "Dark knowledge")
    teacher: typing.Optional[str] = _opt(
        None, "run folder of a trained teacher: its config.json builds the model, its best "
              "checkpoint gives the weights; the student learns from the teacher's soft "
              "targets (the teacher in eval mode, on the same augmented batch) and the labels; "
              "train_loss is then that objective, val/test loss plain cross-entropy",
        metavar="RUN_FOLDER")
    temperature: typing.Optional[float] = _opt(
        None, "softmax temperature T of the soft targets (with --teacher; 20 when not given, "
              "the paper's MNIST setting)", metavar="T")
    soft_weight: typing.Optional[float] = _opt(
        None, "weight W in [0, 1] of the soft-target term, the hard targets weighted 1 - W "
              "(with --teacher; 0.9 when not given: the hard term down-weighted as the slides "
              "advise; W = 0 is plain training)", metavar="W")
    exclude_class: typing.Optional[int] = _opt(
        None, "leave class K out of the training (transfer) set; validation and test keep it "
              "(the slides' transfer set without a 3)", metavar="K")

    # --- optimisation
    epochs: int = _opt(100, "number of passes over the training set")
    batch_size: int = _opt(100, "examples per mini-batch (training and evaluation)")
    drop_last: bool = _opt(False, "drop the last training batch when it is smaller than "
                                  "--batch-size (a last batch of one example is always "
                                  "dropped: batch statistics need two)")
    optimizer: str = _opt("adam", "update rule", choices=OPTIMIZERS)
    lr: float = _opt(1e-3, "initial learning rate")
    min_lr: float = _opt(2e-5, "final learning rate of the decaying schedules")
    schedule: str = _opt("cosine", "learning-rate schedule, stepped as --schedule-step says",
                         choices=SCHEDULES)
    schedule_step: str = _opt(
        "epoch", "when the schedule advances: after every epoch, or after every batch (it then "
                 "spans epochs x batches steps, e.g. one-cycle per batch as in the SfNet paper)",
        choices=SCHEDULE_STEPS)
    weight_decay: float = _opt(0.0, "L2 coefficient added to the gradient by the optimiser")

    # --- running
    device: str = _opt("cpu", "where to train: cpu (NumPy) or gpu (CuPy)", choices=DEVICES)
    seed: int = _opt(0, "seed for initialisation, the validation split, shuffling and dropout")
    out: typing.Optional[str] = _opt(
        None, "experiment folder (runs/<model>[-bn][-res]-<dataset> when not given)")
    resume: bool = _opt(False, "continue from <out>/checkpoints/latest.npz (only --epochs and "
                               "--device may change)")
    no_progress: bool = _opt(False, "no progress bars (the per-epoch summary lines remain)")
    no_plots: bool = _opt(False, "do not draw curves.png and gradient_flow.png (their CSV files "
                                 "are still written; saves time in studies of many runs)")

    def __post_init__(self):
        # config.json stores tuples as lists: normalise so a saved run compares equal.
        if not isinstance(self.model_kwargs, dict):
            raise ValueError(f"model_kwargs must be a dict of model options, got "
                             f"{self.model_kwargs!r}")
        self.model_kwargs = {k: model_kwarg_value(v, k) for k, v in self.model_kwargs.items()}
        if isinstance(self.augment, bool):  # config.json before the list: crop+flip or none
            self.augment = ("crop", "flip") if self.augment else ()
        self.augment = augmentation_names(self.augment)

    @property
    def num_filters(self):
        """The older name of ``width`` (read-only; ``--num-filters`` still sets it)."""
        return self.width

    def default_out(self) -> str:
        """``runs/<model>[-bn][-res]-<dataset>``, the folder used when ``out`` is not given."""
        parts = [self.model] + (["bn"] if self.bn else []) + (["res"] if self.residual else [])
        return str(Path("runs") / "-".join(parts + [self.dataset]))

    def problems(self) -> list[str]:
        """Human-readable reasons this configuration cannot run (empty when it can)."""
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.width is None or self.width >= 1, f"--width must be >= 1, got {self.width}"),
            (self.num_blocks_per_stage is None or self.num_blocks_per_stage >= 0,
             f"--num-blocks-per-stage must be >= 0, got {self.num_blocks_per_stage}"),
            # NaN fails every comparison, so "not (x > 0)" also refuses --lr nan.
            (math.isfinite(self.lr) and self.lr > 0, f"--lr must be a finite number > 0, "
                                                     f"got {self.lr}"),
            (math.isfinite(self.min_lr) and self.min_lr >= 0,
             f"--min-lr must be a finite number >= 0, got {self.min_lr}"),
            (not (self.min_lr > self.lr) or self.schedule == "constant",
             f"--min-lr ({self.min_lr}) must not exceed --lr ({self.lr}): the schedule would "
             "raise the learning rate instead of decaying it"),
            (math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             f"--weight-decay must be a finite number >= 0, got {self.weight_decay}"),
            (self.width_mult is None or (math.isfinite(self.width_mult) and self.width_mult > 0),
             f"--width-mult must be a finite number > 0, got {self.width_mult}"),
            (self.stem_stride is None or self.stem_stride >= 1,
             f"--stem-stride must be >= 1, got {self.stem_stride}"),
            (self.dropout is None or 0 <= self.dropout < 1,
             f"--dropout must be in [0, 1), got {self.dropout}"),
            (0 <= self.val_fraction < 1,  # NaN fails this too
             f"--val-fraction must be in [0, 1), got {self.val_fraction}"),
            (self.subset is None or self.subset >= 1, f"--subset must be >= 1, got {self.subset}"),
            (self.temperature is None or (math.isfinite(self.temperature) and
                                          self.temperature > 0),
             f"--temperature must be a finite number > 0, got {self.temperature}"),
            (self.soft_weight is None or 0 <= self.soft_weight <= 1,
             f"--soft-weight must be in [0, 1], got {self.soft_weight}"),
            (self.teacher is not None or (self.temperature is None and self.soft_weight is None),
             "--temperature and --soft-weight need --teacher (the run folder of the teacher)"),
            (self.exclude_class is None or self.exclude_class >= 0,
             f"--exclude-class must be a class index >= 0, got {self.exclude_class}"),
        ]
        return [message for ok, message in checks if not ok]

    def to_dict(self) -> dict:
        """The options as JSON would give them back (tuples as lists), as in config.json."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a dict such as config.json; unknown keys are an error naming them.

        A config.json of an older minidl is read too: ``num_filters`` and ``conv`` are now
        ``width`` and ``conv_method``, and model options saved at the old defaults (which were
        not passed to the model) become None, "not given"; ``augment: true`` is crop+flip and
        ``random_erasing: true`` adds "erase" to it.
        """
        values = dict(values)
        if "random_erasing" in values:  # before --augment took a list: now "erase"
            erase = values.pop("random_erasing")
            augment = values.get("augment", False)
            augment = (("crop", "flip") if augment else ()) if isinstance(augment, bool) \
                else tuple(augment)
            values["augment"] = augment + (("erase",) if erase else ())
        if RENAMED.keys() & values.keys():  # written by an older minidl
            for old, new in RENAMED.items():
                if old in values:
                    values[new] = values.pop(old)
            for name, default in OLD_DEFAULTS.items():
                if values.get(name) == default:
                    values[name] = None
            values.setdefault("drop_last", False)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"TrainConfig: unknown option(s) {unknown}")
        return cls(**values)

    def save_json(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load_json(cls, path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def config_differences(old: TrainConfig, new: TrainConfig,
                       ignore=RESUMABLE_CHANGES) -> list[tuple[str, object, object]]:
    """``[(field, old value, new value)]`` for fields that differ, except those in ``ignore``."""
    a, b = old.to_dict(), new.to_dict()
    return [(k, a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]]


def option_name(field_name: str) -> str:
    """``batch_size`` -> ``--batch-size``."""
    return "--" + field_name.replace("_", "-")


def _scalar_type(hint):
    """The concrete type behind ``Optional[T]``, e.g. ``int`` for ``Optional[int]``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


class _HelpFormatter(argparse.HelpFormatter):
    """Append "(default: X)" to help text, except for flags and options without a default."""

    def _get_help_string(self, action):
        text = action.help or ""
        no_default = action.default is None or action.default is False or \
            (isinstance(action.default, (tuple, dict)) and not action.default)
        if action.option_strings and not no_default and action.default is not argparse.SUPPRESS:
            text += " (default: %(default)s)"
        return text


def build_parser(model_choices=None,
                 prog: str = "python -m minidl.train") -> argparse.ArgumentParser:
    """An argparse parser with one option per TrainConfig field (help and defaults from it)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train a minidl model; writes config.json, metrics.csv, checkpoints/, "
                    "curves.png, gradient_flow.png, grad_flow.csv and test_summary.json "
                    "into the experiment folder.",
        formatter_class=_HelpFormatter)
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        meta = dict(f.metadata)
        kind = _scalar_type(hints[f.name])
        kwargs = {"help": meta["help"]}
        if meta.get("positional"):
            if model_choices is not None:
                kwargs["choices"] = list(model_choices)
                kwargs["metavar"] = "MODEL"
                kwargs["help"] += f": {', '.join(model_choices)}"
            parser.add_argument(f.name, **kwargs)
            continue
        names = [option_name(f.name), *meta.get("aliases", ())]
        if meta.get("aliases"):
            kwargs["help"] += f" ({', '.join(meta['aliases'])}: the older spelling)"
        if kind is bool:
            parser.add_argument(*names, dest=f.name, action="store_true", default=f.default,
                                **kwargs)
            continue
        if "names" in meta:
            parser.add_argument(*names, dest=f.name, action=_Names, nargs="*", default=(),
                                metavar=meta["metavar"], names=meta["names"],
                                bare=meta["bare"], **kwargs)
            for flag, adds in meta.get("flags", {}).items():
                parser.add_argument(flag, dest=f.name, action=_Names, nargs=0,
                                    names=meta["names"], bare=adds,
                                    help=f"the older spelling of {names[0]} {','.join(adds)}")
            continue
        if kind is dict:
            parser.add_argument(*names, dest=f.name, action=KeyValues, nargs="+", default={},
                                type=parse_model_kwarg, metavar=meta["metavar"], **kwargs)
            continue
        if "choices" in meta:
            kwargs["choices"] = list(meta["choices"])
        parser.add_argument(*names, dest=f.name, type=kind, default=f.default,
                            metavar=None if "choices" in meta else meta.get("metavar",
                                                                            f.name.upper()),
                            **kwargs)
    return parser


def parse_config(argv=None, model_choices=None) -> TrainConfig:
    """Parse a command line into a TrainConfig (argparse exits with code 2 on bad input)."""
    args = build_parser(model_choices).parse_args(argv)
    return TrainConfig(**vars(args))


def to_argv(config: TrainConfig) -> list[str]:
    """The command line that reproduces ``config`` (only options that differ from defaults)."""
    defaults = TrainConfig()
    argv = [config.model]
    for f in dataclasses.fields(TrainConfig):
        value = getattr(config, f.name)
        if f.metadata.get("positional") or value == getattr(defaults, f.name):
            continue
        if isinstance(value, bool):
            argv.append(option_name(f.name))
        elif isinstance(value, dict):
            argv += [option_name(f.name), *(f"{k}={v!r}" for k, v in value.items())]
        elif isinstance(value, tuple):
            argv += [option_name(f.name), ",".join(value)]
        else:
            argv += [option_name(f.name), str(value)]
    return argv


def explicitly_set(config: TrainConfig) -> set[str]:
    """Names of fields whose value differs from the dataclass default (for the model options,
    whose default is None or False, "differs" means "given")."""
    defaults = TrainConfig()
    return {f.name for f in dataclasses.fields(TrainConfig)
            if getattr(config, f.name) != getattr(defaults, f.name)}
