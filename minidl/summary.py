"""What a model costs, counted by shape propagation: per-layer output shape, parameters, mult-adds.

``summary(model, (3, 224, 224))`` walks the layer tree with shapes only (no batch is run, so an
ImageNet-sized VGG-16 counts instantly) and returns one row per leaf layer. On the command line::

    python -m minidl.summary mobilenet --width-mult 0.5 --input 3 224 224 --classes 1000 [--json]
    python -m minidl.summary vgg19 --model-kwargs kernel_size=5 activation=crelu --input 1 28 28

Mult-adds are multiply-accumulate operations of one example through ``Conv2d`` and ``Linear``
layers, the quantity the MobileNet and VGG papers tabulate:

    Conv2d:  C_out * (C_in / groups) * k_h * k_w * H_out * W_out
    Linear:  in_features * out_features

Biases, BatchNorm, activations, pooling and residual additions cost O(elements), not
O(elements * fan-in); they are listed with 0 mult-adds, as in the papers' tables.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
from dataclasses import asdict, dataclass
from typing import Callable

from . import layers as L
from ._shapes import conv_output_size
from .config import KeyValues  # --model-kwargs exactly as the train CLI takes it
from .config import parse_model_kwarg

Shape = tuple  # an example's shape without the batch axis: (C, H, W) or (features,)


@dataclass(frozen=True)
class Row:
    """One leaf layer: dotted name, class name, output shape (no batch axis), parameters, mult-adds."""
    name: str
    kind: str
    output_shape: Shape
    params: int
    mult_adds: int


@dataclass(frozen=True)
class Summary:
    """The rows of a model's leaf layers, in forward order, and their totals."""
    input_shape: Shape
    rows: tuple
    params: int       # every parameter of the model (the rows' params add up to it)
    mult_adds: int

    @property
    def output_shape(self) -> Shape:
        return self.rows[-1].output_shape if self.rows else self.input_shape

    def to_dict(self) -> dict:
        """``{"layers": [...], "params": N, "mult_adds": N, ...}`` for ``--json``."""
        return {"input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
                "layers": [{**asdict(r), "output_shape": list(r.output_shape)} for r in self.rows],
                "params": self.params, "mult_adds": self.mult_adds}

    def table(self) -> str:
        """The rows and totals as aligned text, the way torchinfo prints a PyTorch model."""
        header = ("layer", "type", "output shape", "params", "mult-adds")
        lines = [(r.name, r.kind, " x ".join(map(str, r.output_shape)), f"{r.params:,}",
                  f"{r.mult_adds:,}") for r in self.rows]
        widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
                  for i, h in enumerate(header)]
        fmt = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        body = [fmt.format(*header), rule, *(fmt.format(*line) for line in lines), rule]
        body.append(f"input {' x '.join(map(str, self.input_shape))}  ->  "
                    f"output {' x '.join(map(str, self.output_shape))}")
        body.append(f"parameters: {self.params:,} ({self.params / 1e6:.2f} M)")
        body.append(f"mult-adds:  {self.mult_adds:,} ({self.mult_adds / 1e6:.1f} M)")
        return "\n".join(body)

    def __str__(self) -> str:
        return self.table()


class SummaryError(ValueError):
    """A shape that does not fit a layer, or a layer with no counting rule."""


# ---------------------------------------------------------------- leaf rules: shape -> (shape, mult-adds)
_RULES: dict[type, Callable] = {}


def rule(*layer_types):
    """Decorator: ``fn(layer, shape) -> (output_shape, mult_adds)`` counts ``layer_types``.

    A new leaf layer class registers its rule here (subclasses inherit their parent's rule).
    """
    def decorator(fn):
        for t in layer_types:
            _RULES[t] = fn
        return fn
    return decorator


def _expect(layer, shape, ndim: int, channels: int | None = None) -> None:
    if len(shape) != ndim or (channels is not None and shape[0] != channels):
        want = f"{ndim}-d input" + (f" with {channels} channels/features" if channels else "")
        raise SummaryError(f"{layer.describe()} expects {want} per example, "
                           f"but receives shape {tuple(shape)}")


def _window(layer, shape, kernel, stride, padding, dilation=(1, 1)):
    h, w = (conv_output_size(s, k, st, p, d)
            for s, k, st, p, d in zip(shape[1:], kernel, stride, padding, dilation))
    if h < 1 or w < 1:
        raise SummaryError(f"{layer.describe()}: a {shape[1]}x{shape[2]} input is too small "
                           f"for its window (output would be {h}x{w})")
    return h, w


@rule(L.Conv2d)
def _conv(layer, shape):
    _expect(layer, shape, 3, layer.in_channels)
    h, w = _window(layer, shape, layer.kernel_size, layer.stride, layer.padding, layer.dilation)
    kh, kw = layer.kernel_size
    macs = layer.out_channels * (layer.in_channels // layer.groups) * kh * kw * h * w
    return (layer.out_channels, h, w), macs


@rule(L.Linear)
def _linear(layer, shape):
    _expect(layer, shape, 1, layer.in_features)
    return (layer.out_features,), layer.in_features * layer.out_features


@rule(L.MaxPool2d, L.AvgPool2d)
def _pool(layer, shape):
    _expect(layer, shape, 3)
    return (shape[0], *_window(layer, shape, layer.kernel_size, layer.stride, layer.padding)), 0


@rule(L.GlobalAvgPool2d)
def _global_pool(layer, shape):
    _expect(layer, shape, 3)
    return (shape[0],), 0


@rule(L.Flatten)
def _flatten(layer, shape):
    return (math.prod(shape),), 0


@rule(L.BatchNorm1d)
def _bn1d(layer, shape):
    _expect(layer, shape, 1, layer.num_features)
    return shape, 0


@rule(L.BatchNorm2d)
def _bn2d(layer, shape):
    _expect(layer, shape, 3, layer.num_features)
    return shape, 0


@rule(L.ReLU, L.LeakyReLU, L.ELU, L.Sigmoid, L.Tanh, L.Swish, L.Dropout, L.LocalResponseNorm)
def _elementwise(layer, shape):
    return shape, 0


@rule(L.CReLU)
def _crelu(layer, shape):
    # concat(relu(x), relu(-x)) on the channel axis: twice the channels, same spatial size.
    if len(shape) < 1:
        raise SummaryError(f"{layer.describe()} needs a channel axis, but receives shape ()")
    return (layer.channel_multiplier * shape[0], *shape[1:]), 0


# ---------------------------------------------------------------- walking the tree
def _leaf_rule(layer):
    for cls in type(layer).__mro__:
        if cls in _RULES:
            return _RULES[cls]
    return None


def _walk(layer, shape: Shape, name: str, rows: list) -> Shape:
    """Append the rows of ``layer`` (called as ``name``) for input ``shape``; return its output shape."""
    children = dict(layer.named_children())
    fn = _leaf_rule(layer)
    if fn is not None and not children:
        try:
            out, macs = fn(layer, tuple(int(s) for s in shape))
        except SummaryError as err:
            raise SummaryError(f"layer {name or type(layer).__name__}: {err}") from None
        rows.append(Row(name or type(layer).__name__, type(layer).__name__, tuple(out),
                        layer.num_parameters(), int(macs)))
        return tuple(out)

    def walk(child_name, x_shape):
        return _walk(children[child_name], x_shape, f"{name}.{child_name}" if name else child_name,
                     rows)

    if isinstance(layer, L.Residual):
        # body(x) + shortcut(x); any further children (a block's activation) follow the sum.
        out = walk("body", shape)
        short = walk("shortcut", shape) if "shortcut" in children else tuple(shape)
        if out != short:
            raise SummaryError(f"{layer.describe()}: body gives {out} but shortcut gives {short}")
        for child_name in children:
            if child_name not in ("body", "shortcut"):
                out = walk(child_name, out)
        return out
    if isinstance(layer, L.MixedSCLayer):
        # Two branches on the same x, concatenated along channels.
        a, b = walk("conv", shape), walk("sc", shape)
        return (a[0] + b[0], *a[1:])
    if isinstance(layer, (L.Sequential, L.SCLayer)):
        # Children applied in order (SCLayer: its max-pool, then its 1x1 conv).
        for child_name in children:
            shape = walk(child_name, shape)
        return tuple(shape)
    raise SummaryError(f"summary has no rule for {type(layer).__name__} ({layer.describe()}); "
                       "register one with @minidl.summary.rule(YourLayer)")


def summary(model, input_shape) -> Summary:
    """Rows and totals of ``model`` for one example of ``input_shape`` (no batch axis).

    ``input_shape``: e.g. ``(3, 224, 224)`` for images, ``(784,)`` for an MLP.
    """
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise SummaryError(f"input_shape must be a sequence of ints, got {input_shape!r}") from None
    if not shape or min(shape) < 1:
        raise SummaryError(f"input_shape must be non-empty positive sizes, got {input_shape!r}")
    rows: list[Row] = []
    _walk(model, shape, "", rows)
    total = model.num_parameters()
    counted = sum(r.params for r in rows)
    if counted != total:  # a composite layer holding parameters of its own: not supported yet
        raise SummaryError(f"rows hold {counted:,} parameters but the model has {total:,}")
    return Summary(shape, tuple(rows), total, sum(r.mult_adds for r in rows))


# ---------------------------------------------------------------- command line
PROG = "python -m minidl.summary"
FROM_INPUT = ("in_channels", "num_classes")  # set by --input and --classes


def _literal(text: str):
    """A flag's value read as the train CLI reads ``--model-kwargs`` values."""
    return parse_model_kwarg(f"value={text}")[1]


def _option_type(default):
    if isinstance(default, bool):
        return None
    if isinstance(default, (int, float, str)):
        return type(default)
    return _literal  # tuples (hidden), None defaults (mixed_conv_kernel)


def build_parser(model_name: str | None = None) -> argparse.ArgumentParser:
    """The CLI; with ``model_name`` it also takes that model's own options (``--width-mult``)."""
    from . import models

    parser = argparse.ArgumentParser(prog=PROG, description="Per-layer output shape, parameters "
                                     "and mult-adds of a model, counted from shapes alone.")
    parser.add_argument("model", choices=models.available(), metavar="MODEL",
                        help=f"one of: {', '.join(models.available())}")
    parser.add_argument("--input", nargs="+", type=int, default=[3, 32, 32], metavar="SIZE",
                        help="one example's shape, channels first (default: 3 32 32)")
    parser.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--model-kwargs", dest="model_kwargs", nargs="+", default={},
                        type=parse_model_kwarg, action=KeyValues, metavar="KEY=VALUE",
                        help="any option of the model's builder, spelt as for python -m "
                             "minidl.train: --model-kwargs kernel_size=5 hidden=(800,800) "
                             "norm=lrn (values are Python literals, else strings)")
    if model_name in models.available():
        group = parser.add_argument_group(f"options of {model_name}")
        for option, default in models.options(model_name).items():
            if option in (*FROM_INPUT, "seed", "rng"):
                continue
            flag = "--" + option.replace("_", "-")
            if isinstance(default, bool):
                group.add_argument(flag, dest=option, action=argparse.BooleanOptionalAction,
                                   default=argparse.SUPPRESS)
            else:
                kind = _option_type(default)
                shown = "" if default is inspect.Parameter.empty else f" (default {default!r})"
                group.add_argument(flag, dest=option, type=kind, default=argparse.SUPPRESS,
                                   help=f"model option {option}{shown}")
    return parser


def model_options(args: dict, shape) -> dict:
    """The keyword options of ``models.build`` from parsed arguments: the model's own flags
    and ``--model-kwargs`` (a key given both ways, or one that --input/--classes set, is a
    ValueError), and ``image_size`` from ``--input`` for models that take it."""
    from . import models

    defaults = models.options(args["model"])
    kwargs = dict(args["model_kwargs"])
    flags = {k: v for k, v in args.items() if k in defaults}
    for key in kwargs:
        if key in FROM_INPUT:
            raise ValueError(f"--model-kwargs cannot set {key}: --input and --classes do")
        if key in flags:
            raise ValueError(f"--model-kwargs {key}=... and --{key.replace('_', '-')} both "
                             f"set {key}; give one")
        if key not in defaults:
            raise ValueError(f"model {args['model']!r} has no option {key!r}; valid options: "
                             f"{', '.join(k for k in defaults if k not in ('rng',))}")
    options = {**flags, **kwargs}
    if "image_size" in defaults and "image_size" not in options and len(shape) == 3:
        h, w = shape[1:]
        options["image_size"] = h if h == w else (h, w)  # models whose head depends on it
    return options


def main(argv=None) -> int:
    """Print the summary of the model the command line names; returns the exit code."""
    from . import models

    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first)
    try:
        args = vars(parser.parse_args(argv))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    shape, classes, as_json = args["input"], args["classes"], args["json"]
    try:
        options = model_options(args, shape)
        model = models.build(args["model"], in_channels=shape[0], num_classes=classes,
                             **options)
        result = summary(model, shape)
    except (ValueError, TypeError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=1) if as_json else result.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
