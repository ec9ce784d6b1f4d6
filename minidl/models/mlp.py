"""A multilayer perceptron: the nets of the slides' dark-knowledge experiment (seed 002, after
Hinton, Vinyals & Dean, 2015, "Distilling the Knowledge in a Neural Network").

The teacher is 784 -> 1200 -> 1200 -> 10 trained with dropout on the hidden layers and on the
input (Hinton et al. used 0.5 and 0.2; the slides add jittered inputs and weight constraints,
which are training options, not parts of the net): ``build("mlp", dropout=0.5,
input_dropout=0.2)``. The student is 784 -> 800 -> 800 -> 10, plain backprop with no dropout:
``build("mlp", hidden=(800, 800))``. Hidden units are rectified linear, as on the slides.
"""
from __future__ import annotations

from .. import layers as L
from .._shapes import positive_int
from ._blocks import (NamedSequential, activation_factory, check_int, check_probability,
                      dropout_layer, image_hw, make_rng)
from .registry import register


def _hidden_sizes(hidden, who: str) -> tuple:
    """``hidden`` (an int for one layer, or a sequence of ints) as a tuple of positive ints."""
    sizes = (hidden,) if not isinstance(hidden, (tuple, list)) else tuple(hidden)
    try:
        return tuple(positive_int(h, "hidden", who) for h in sizes)
    except ValueError:
        raise ValueError(f"{who}: hidden must be a positive int or a sequence of them, such "
                         f"as (1200, 1200), got {hidden!r}") from None


class MLP(NamedSequential):
    """x: (N, in_channels, H, W) or (N, in_channels * H * W) -> logits (N, num_classes).

    Children: ``flatten``, [``drop0``: input dropout], then per hidden layer ``fc1``, ``act1``,
    [``drop1``], ``fc2``, ..., and ``classifier``. ``hidden``: the hidden layers' widths;
    ``dropout``: after every hidden activation; ``input_dropout``: on the flattened input.
    ``image_size``: the side (or (H, W)) of the images, so the first layer takes
    in_channels * H * W features (784 for 28x28 Fashion-MNIST/MNIST).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, hidden=(1200, 1200),
                 dropout: float = 0.0, input_dropout: float = 0.0, activation: str = "relu",
                 image_size=28, seed: int | None = 0, rng=None):
        who = type(self).__name__
        check_int(who, 1, in_channels=in_channels, num_classes=num_classes)
        check_probability(who, dropout=dropout, input_dropout=input_dropout)
        sizes = _hidden_sizes(hidden, who)
        h, w = image_hw(image_size, who)
        super().__init__()
        rng = make_rng(seed, rng)
        self._summary = (f"hidden={sizes}, dropout={dropout}, input_dropout={input_dropout}, "
                         f"activation={activation!r}")
        act = activation_factory(activation)
        self.in_features = in_channels * h * w
        layers = [("flatten", L.Flatten()), ("drop0", dropout_layer(input_dropout, rng))]
        features = self.in_features
        for j, size in enumerate(sizes, start=1):
            layers += [(f"fc{j}", L.Linear(features, size, rng=rng)), (f"act{j}", act()),
                       (f"drop{j}", dropout_layer(dropout, rng))]
            features = act.channels(size)  # CReLU gives twice the features
        layers.append(("classifier", L.Linear(features, num_classes, rng=rng)))
        for name, layer in layers:
            if layer is not None:
                self.add_child(name, layer)


register("mlp")(MLP)
