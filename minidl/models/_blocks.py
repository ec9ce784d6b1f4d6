"""Building blocks shared by the model families: named chains, post-activation residuals,
activations that know their channel multiplier, the two heads (pooled linear, flattened FC
layers), the He re-initialisation, and option checks."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import init as initialisers
from .. import layers as L
from .._shapes import positive_int, unit_interval
from ..layers.activations import get_activation
from ..layers.base import Layer


class NamedSequential(L.Sequential):
    """A Sequential whose children carry meaningful names ("conv1", "bn1", ...) instead of "0", "1".

    ``layers`` is a mapping or a sequence of ``(name, layer)`` pairs; ``None`` entries are
    skipped, so optional pieces (a BatchNorm when ``bn=False``) need no branching at call sites.
    A model built on it sets ``_summary`` to its key options, which ``repr`` shows.
    """

    _summary = ""

    def __init__(self, layers=()):
        super().__init__()
        items = layers.items() if isinstance(layers, Mapping) else layers
        for name, layer in items:
            if layer is not None:
                self.add_child(name, layer)

    def extra_repr(self) -> str:
        return self._summary


class ResidualBlock(L.Residual):
    """``y = act(body(x) + shortcut(x))``: the activation follows the sum (He et al., 2016).

    x: (N, C, H, W) -> (N, C', H', W'). The shortcut is the identity when None.
    """

    def __init__(self, body: Layer, shortcut: Layer | None = None, act: Layer | None = None):
        super().__init__(body, shortcut)
        if act is not None:
            self.act = act

    def forward(self, x):
        out = super().forward(x)
        return self.act(out) if "act" in self._children else out

    def backward(self, dout):
        if "act" in self._children:
            dout = self.act.backward(dout)
        return super().backward(dout)


def make_rng(seed, rng):
    """The generator every layer of a model draws its initial weights from, in creation order.

    An explicit ``rng`` wins; otherwise ``seed`` seeds a fresh one; with both None the layers
    fall back to ``minidl.init``'s global generator.
    """
    if rng is not None:
        return rng
    return None if seed is None else np.random.default_rng(seed)


class ActivationFactory:
    """Makes a fresh ``name`` activation layer per call, and says how it changes the channels.

    Each position needs its own layer, because layers cache their input for backward.
    ``channels(c)`` is the number of channels (or features) leaving an activation that
    receives ``c``: ``c`` for the element-wise ones, ``2 * c`` for CReLU, whose output
    concatenates both phases. Every model sizes the layer after an activation with it.
    """

    def __init__(self, name: str):
        self.name = name
        self.multiplier = get_activation(name).channel_multiplier  # also checks the name

    def __call__(self) -> Layer:
        return get_activation(self.name)

    def channels(self, c: int) -> int:
        return self.multiplier * c


def activation_factory(name: str) -> ActivationFactory:
    """``ActivationFactory(name)``: a fresh activation layer per call, and ``.channels(c)``."""
    return ActivationFactory(name)


def check_choice(model: str, **values_and_choices) -> None:
    """Raise a ValueError naming ``model`` unless each value is one of its choices.

    ``check_choice("VGG", norm=(norm, ("none", "bn", "lrn")))``.
    """
    for key, (value, choices) in values_and_choices.items():
        if value not in choices:
            raise ValueError(f"{model}: {key} must be one of {', '.join(map(repr, choices))}, "
                             f"got {value!r}")


def check_int(model: str, minimum: int, **values) -> None:
    """Raise a ValueError naming ``model`` unless every value is an int >= ``minimum``."""
    for key, value in values.items():
        positive_int(value, key, model, minimum)


def check_probability(model: str, **values) -> None:
    """Raise a ValueError naming ``model`` unless every value is in [0, 1)."""
    for key, value in values.items():
        unit_interval(value, key, model)


def dropout_layer(p: float, rng=None) -> Layer | None:
    """A Dropout layer, or None (left out of the chain) when ``p`` is 0.

    Its mask generator is spawned from the model's ``rng``: seeded like the weights, and
    spawning does not advance ``rng``, so turning dropout on leaves the initial weights alone.
    """
    if p == 0:
        return None
    return L.Dropout(p, rng=None if rng is None else rng.spawn(1)[0])


def image_hw(image_size, who: str) -> tuple:
    """``image_size`` (an int side, or an (H, W) pair) as a pair of positive ints."""
    pair = image_size if isinstance(image_size, (tuple, list)) else (image_size, image_size)
    if len(pair) != 2:
        raise ValueError(f"{who}: image_size must be an int or an (H, W) pair, got {image_size!r}")
    return tuple(positive_int(s, "image_size", who) for s in pair)


def check_input_size(model: Layer, x, image_hw: tuple) -> None:
    """Refuse a 4-d input whose HxW is not the ``image_hw`` a flattened (fc) head was sized
    for, naming the fix; other inputs pass (the layers report their own errors)."""
    if getattr(x, "ndim", 0) == 4 and tuple(x.shape[2:]) != tuple(image_hw):
        h, w = image_hw
        raise ValueError(
            f"{type(model).__name__}: built for {h}x{w} inputs (image_size) with head='fc', "
            f"got {x.shape[2]}x{x.shape[3]}: its pools and flattened head depend on the size; "
            f"build it with image_size={x.shape[2]} (or head='gap' for any input size)")


def fc_head(features: int, hidden: int, num_classes: int, act, dropout: float = 0.0,
            bn: bool = False, rng=None) -> NamedSequential:
    """[FC-hidden, [BN], act, [dropout]] x 2, FC: (N, features) -> (N, num_classes).

    Children ``fc1``, [``bn1``], ``act1``, [``drop1``], ``fc2``, ..., ``fc3``; each FC takes
    what the activation before it gives (``act.channels``: twice ``hidden`` after a CReLU).
    """
    head, h_in = [], features
    for j in (1, 2):
        head += [(f"fc{j}", L.Linear(h_in, hidden, rng=rng)),
                 (f"bn{j}", L.BatchNorm1d(hidden) if bn else None),
                 (f"act{j}", act()), (f"drop{j}", dropout_layer(dropout, rng))]
        h_in = act.channels(hidden)
    head.append(("fc3", L.Linear(h_in, num_classes, rng=rng)))
    return NamedSequential(head)


def add_head(model: Layer, channels: int, num_classes: int, dropout: float = 0.0,
             rng=None) -> None:
    """Attach ``pool`` (global average), ``flatten``, [``dropout``] and a linear ``classifier``.

    (N, channels, H, W) -> (N, num_classes), whatever H and W. Call it last in a constructor:
    the attributes are registered (and the classifier's weights drawn) in this order.
    """
    model.pool = L.GlobalAvgPool2d()
    model.flatten = L.Flatten()
    drop = dropout_layer(dropout, rng)
    if drop is not None:
        model.dropout = drop
    model.classifier = L.Linear(channels, num_classes, rng=rng)


INITS = ("pytorch", "he")


def apply_init(model: Layer, init: str, rng=None) -> None:
    """Re-draw every Conv2d and Linear weight of ``model`` by ``init``, in definition order.

    "pytorch": leave the layers' own PyTorch-default U(+-1/sqrt(fan_in)) draw. "he":
    N(0, 2 / fan_in) weights and zero biases (He et al., 2015): what lets a plain deep ReLU net
    (vgg19 without BatchNorm) train, where the default shrinks the signal at every layer.
    """
    check_choice(type(model).__name__, init=(init, INITS))
    if init == "pytorch":
        return
    for _, layer in model.named_layers():
        if isinstance(layer, (L.Conv2d, L.Linear)):
            layer.weight.data = initialisers.he_normal(layer.weight.data.shape, rng)
            if layer.bias is not None:
                layer.bias.data = np.zeros_like(layer.bias.data)
