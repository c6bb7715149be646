"""The differentiable energy of a search network.

For each searchable layer l and candidate k, e_lk (pJ per example) is the energy of layer l when it
runs candidate k: `Operator.cost` of the layer's contraction with the candidate's operand formats,
priced by the cost engine (`pannjax.hw.cost.price_layer`) -- exactly what `pannjax.hw.report.build_report`
reports for that layer in the network where every searchable layer uses k: its arithmetic and, on an
accelerator, its data movement at the candidate's operand precisions (ZigZag, `pannjax.hw.system`; cached
by layer shape and precisions, so candidates of the same precisions share one mapping). The table is
computed once, from shapes only (`abstract_layers`: `bound_layers` under `jax.eval_shape`), never per step.

Expected energy under the architecture distribution (ENOS's energy term, Nasrin et al., arXiv
2104.05217: operator probabilities weight the per-operator energies of each layer):

    E(alpha) = E_fixed + sum_l softmax(alpha_l) . e_l

with E_fixed the energy of the excluded layers (reference arithmetic). `E_ref` is the all-reference
(all-MAC) network's energy; objectives use E(alpha) / E_ref, a dimensionless fraction.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from pannjax.errors import ConfigError
from pannjax.hw.cost import Pricing, price_layer
from pannjax.hw.energy import EnergyTable
from pannjax.hw.system import AcceleratorConfig
from pannjax.nn import ArithPolicy, abstract_layers
from pannjax.search.space import SearchSpace


@dataclasses.dataclass(frozen=True)
class EnergyModel:
    """`per_layer`: {layer path: e_l (K,) in pJ}; `fixed_pj`: excluded layers; `reference_pj`: E_ref.
    `order`: searchable layer paths in call (input-to-output) order."""

    per_layer: dict[str, np.ndarray]
    fixed_pj: float
    reference_pj: float
    order: tuple[str, ...]
    candidates: tuple[str, ...]

    def tree(self, like: Any) -> Any:
        """The per-layer vectors as a pytree shaped like a gates/alpha tree ({..: {layer: {"g": (K,)}}})."""
        flat = traverse_util.flatten_dict(like)
        return traverse_util.unflatten_dict({key: jnp.asarray(self.per_layer["/".join(key[:-1])], jnp.float32)
                                             for key in flat})

    def expected_pj(self, probs: Any, energy_tree: Any) -> jax.Array:
        """E_fixed + sum_l probs_l . e_l (differentiable in probs)."""
        terms = jax.tree_util.tree_leaves(jax.tree_util.tree_map(jnp.dot, probs, energy_tree))
        return self.fixed_pj + sum(terms)

    def assignment_pj(self, assignment: dict[str, str]) -> float:
        """Energy of a discrete assignment {path: candidate name}."""
        return self.fixed_pj + float(sum(self.per_layer[p][self.candidates.index(n)] for p, n in assignment.items()))


def _layer_energies(model_for: Callable[[ArithPolicy], nn.Module], policy: ArithPolicy, sample: jax.ShapeDtypeStruct,
                    pricing: Pricing) -> dict[str, float]:
    model = model_for(policy)
    return {layer.path: price_layer(layer, pricing).energy_total_pj
            for layer in abstract_layers(model, sample, train=False)}


def energy_model(model_for: Callable[[ArithPolicy], nn.Module], space: SearchSpace, input_shape: tuple[int, ...],
                 table: EnergyTable | str | None = None, acc_bits: int = 32,
                 accelerator: AcceleratorConfig | None = None) -> EnergyModel:
    """The energy table of `space` on the model `model_for(policy)` for one example of `input_shape`, with
    data movement on `accelerator` where one is given."""
    pricing = Pricing.make(table, None, acc_bits, accelerator=accelerator)
    sample = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    columns = []
    for k, candidate in enumerate(space.candidates):
        try:
            columns.append(_layer_energies(model_for, space.uniform_policy(k), sample, pricing))
        except ConfigError as e:  # e.g. an in-memory candidate on an accelerator without its macro
            raise ConfigError(f"search.use: candidate {candidate.name}: {e}; or drop it from search.use") from None
    reference = _layer_energies(model_for, space.reference_policy(), sample, pricing)
    order = tuple(p for p in reference if space.searches(p))
    per_layer = {p: np.array([col[p] for col in columns], np.float64) for p in order}
    fixed = float(sum(e for p, e in reference.items() if not space.searches(p)))
    return EnergyModel(per_layer, fixed, float(sum(reference.values())), order, space.names)
