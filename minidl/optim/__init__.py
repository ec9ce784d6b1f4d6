"""Optimisers (state kept outside the layers) and per-epoch learning-rate schedules."""
from .base import Optimizer
from .dessilbi import DessiLBI  # registers "dessilbi" before OPTIMIZERS is re-exported below
from .optimizers import OPTIMIZERS, SGD, AdaGrad, Adam, RMSProp, build_optimizer
from .schedules import (SCHEDULES, ConstantLR, CosineAnnealingLR, CosineAnnealingWarmRestarts,
                        LRScheduler, OneCycleLR, StepLR, build_schedule)

__all__ = [
    "Optimizer", "SGD", "AdaGrad", "RMSProp", "Adam", "DessiLBI", "build_optimizer", "OPTIMIZERS",
    "LRScheduler", "ConstantLR", "StepLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
    "OneCycleLR", "build_schedule", "SCHEDULES",
]
