"""Narrow configurations of every model, shared by the model tests."""
import pytest

# The point of these is the wiring, not the capacity: each builds and runs in milliseconds.
SMALL = {
    "vgg08": dict(num_filters=4),
    "vgg38": dict(num_filters=4, num_blocks_per_stage=2, bn=True, residual=True),
    "resnet18": dict(width=4),
    "resnet32": dict(width=2),
    "vgg11": dict(width=4, hidden=8, bn=True),
    "vgg16": dict(width=4, hidden=8),
    "vgg19": dict(width=4, hidden=8),
    "vgg14_mixed": dict(width=4, hidden=8),
    "sfnet": dict(width=4, hidden=8, mixed_channels=4),
    "lenet5": dict(),
    "alexnet": dict(width=6, hidden=8),
    "mobilenet": dict(width_mult=0.125),
    "mlp": dict(hidden=(8, 6), dropout=0.5, input_dropout=0.2),
}


@pytest.fixture
def small():
    """``{model name: options}`` that build a narrow version of each registered model."""
    return SMALL
