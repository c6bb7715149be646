"""Pruning adapted to logarithmic (power-of-two) weights: masks, a sparsity schedule, an optax
transformation that keeps pruned weights exactly zero during QAT, and its Hydra wiring."""

from pannjax.prune.from_config import pruning_from_config, weight_sparsity
from pannjax.prune.pot_pruning import (PotPruneState, kernel_density, polynomial_sparsity, pot_prune_mask,
                                       pot_pruning, prunable_layers)

__all__ = ["PotPruneState", "kernel_density", "polynomial_sparsity", "pot_prune_mask", "pot_pruning",
           "prunable_layers", "pruning_from_config", "weight_sparsity"]
