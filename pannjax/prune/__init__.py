"""Pruning adapted to logarithmic (power-of-two) weights: masks, a sparsity schedule, and an optax
transformation that keeps pruned weights exactly zero during QAT."""

from pannjax.prune.pot_pruning import (PotPruneState, kernel_density, polynomial_sparsity, pot_prune_mask,
                                       pot_pruning)

__all__ = ["PotPruneState", "kernel_density", "polynomial_sparsity", "pot_prune_mask", "pot_pruning"]
