"""Measurements on trained or training models, as pure functions (each tested on a problem
with a known answer): the loss-landscape band, gradient predictiveness and effective
beta-smoothness along the gradient (Santurkar et al. 2018), filter grids, magnitude pruning."""
from .filters import filter_grid
from .landscape import (ModelObjective, effective_beta, gradient_predictiveness, landscape_step,
                        loss_band, probe_along_gradient)
from .pruning import magnitude_mask, prune_layers, sparsity

__all__ = ["filter_grid", "ModelObjective", "effective_beta", "gradient_predictiveness",
           "landscape_step", "loss_band", "probe_along_gradient", "magnitude_mask",
           "prune_layers", "sparsity"]
