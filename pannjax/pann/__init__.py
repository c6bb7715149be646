"""PANN (Spingarn-Eliezer et al., arXiv 2202.02783): power-budget solver, post-training conversion,
power accounting and the deployment-time power-accuracy sweep. The quantizer is
`pannjax.quant.pann.PannQuantizer`; training with it is `quant=pann` in experiments/train.py."""

from pannjax.pann.budget import (Layer, PannChoice, activation_error, budget_per_mac, budget_table,
                                 format_budget_table, solve_budget, weight_error)
from pannjax.pann.convert import (FloatRun, collect_layer_inputs, conv_bn_pairs, convert, fold_batchnorm,
                                  freeze_weights, load_float_run, pann_policy, uniform_policy)
from pannjax.pann.power import mac_toggles, network_toggles, pann_toggles, summarize

__all__ = [
    "FloatRun", "Layer", "PannChoice", "activation_error", "budget_per_mac", "budget_table", "collect_layer_inputs",
    "conv_bn_pairs", "convert", "fold_batchnorm", "format_budget_table", "freeze_weights", "load_float_run",
    "mac_toggles", "network_toggles", "pann_policy", "pann_toggles", "solve_budget", "summarize", "uniform_policy",
    "weight_error",
]
