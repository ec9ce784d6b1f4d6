"""Stateful layers: each holds its Parameters, calls ``minidl.functional`` and caches for backward."""
from .base import Layer, Parameter
from .containers import Residual, Sequential
from .conv import Conv2d
from .linear import Linear
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .normalization import BatchNorm1d, BatchNorm2d
from .activations import CReLU, ELU, LeakyReLU, ReLU, Sigmoid, Swish, Tanh
from .dropout import Dropout
from .reshape import Flatten
from .structure_composing import MixedSCLayer, SCLayer
from .lrn import LocalResponseNorm

__all__ = [
    "Layer", "Parameter", "Sequential", "Residual", "Conv2d", "Linear", "MaxPool2d", "AvgPool2d",
    "GlobalAvgPool2d", "BatchNorm1d", "BatchNorm2d", "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh",
    "Swish", "Dropout", "Flatten", "SCLayer", "MixedSCLayer",
    "LocalResponseNorm", "CReLU",
]
