"""The Hydra `prune` group -> an optax transformation the training loop chains after the optimiser.

    prune: {name: none}                                   no pruning
    prune: {name: pot, final_sparsity: 0.5, begin: 0.1, end: 0.7, frequency: 10, ...}

`begin`/`end` are fractions of all training steps (so one config serves any epoch count): the sparsity
follows `polynomial_sparsity` from `initial_sparsity` at step round(begin * T) to `final_sparsity` at
round(end * T), masks refreshed every `frequency` steps (`pot_pruning`, pannjax/prune/pot_pruning.py).
`weight_sparsity` is what `results.json` records: the fraction of exactly-zero weights per kernel and
over all kernels.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import flax
import numpy as np
import optax

from pannjax.errors import ConfigError
from pannjax.prune.pot_pruning import polynomial_sparsity, pot_pruning, prunable_layers
from pannjax.quant.pot import PotQuantizer

POT_FIELDS = {"final_sparsity": 0.5, "initial_sparsity": 0.0, "begin": 0.1, "end": 0.7, "power": 3,
              "frequency": 10, "prune_underflow": True, "exclude": None}


def pruning_from_config(cfg: Mapping[str, Any] | None, layers: Sequence[Any]
                        ) -> Callable[[int], optax.GradientTransformation] | None:
    """`total_steps -> GradientTransformation` for `prune=pot`, None for `prune=none` (or no group).

    `layers`: the network's layers (`pannjax.nn.abstract_layers(model, sample)`); PoT pruning ranks each
    layer's weights on its own power-of-two grid, so it prunes the layers with `PotQuantizer` weights
    (quant=pot) whose path `prune.exclude` does not match, and needs at least one."""
    fields = dict(cfg or {"name": "none"})
    name = fields.pop("name", None)
    if name == "none":
        if fields:
            raise ConfigError(f"prune.{sorted(fields)[0]} is set but prune.name=none; use prune=pot to prune")
        return None
    if name != "pot":
        raise ConfigError(f"prune.name={name!r} is unknown; available: none, pot")
    unknown = sorted(set(fields) - set(POT_FIELDS))
    if unknown:
        raise ConfigError(f"prune.{unknown[0]} is not a known option; valid: {', '.join(sorted(POT_FIELDS))}")
    f = {**POT_FIELDS, **fields}
    if not any(isinstance(l.quantizer_w, PotQuantizer) for l in layers):
        kinds = sorted({type(l.quantizer_w).__name__ for l in layers})
        raise ConfigError(f"prune=pot ranks weights on the power-of-two grid: it needs quant=pot, "
                          f"got {', '.join(kinds)} weights")
    targets = prunable_layers(layers, f["exclude"])
    if not targets:
        raise ConfigError(f"prune.exclude={f['exclude']!r} excludes every layer with power-of-two weights")
    begin, end = float(f["begin"]), float(f["end"])
    if not 0.0 <= begin < end <= 1.0:
        raise ConfigError(f"prune.begin={begin}, prune.end={end}: expected fractions of training with "
                          "0 <= begin < end <= 1")
    if isinstance(f["frequency"], bool) or not isinstance(f["frequency"], int) or f["frequency"] < 1:
        raise ConfigError(f"prune.frequency={f['frequency']!r}: expected a whole number of steps >= 1")
    # validate the schedule's own ranges now, before any data is loaded
    polynomial_sparsity(f["final_sparsity"], 0, 1, f["initial_sparsity"], f["power"])

    def make(total_steps: int) -> optax.GradientTransformation:
        b = int(round(begin * total_steps))
        e = max(int(round(end * total_steps)), b + 1)
        schedule = polynomial_sparsity(f["final_sparsity"], b, e, f["initial_sparsity"], f["power"])
        return pot_pruning(targets, schedule, f["frequency"], bool(f["prune_underflow"]))

    return make


def weight_sparsity(params: Any) -> dict[str, Any]:
    """{"layers": {kernel path: fraction of zero weights}, "total": zero fraction over all kernels}."""
    flat = flax.traverse_util.flatten_dict(params)
    kernels = {"/".join(map(str, k[:-1])): np.asarray(v) for k, v in flat.items() if k[-1] == "kernel"}
    zeros = {p: int(np.sum(v == 0)) for p, v in kernels.items()}
    size = sum(v.size for v in kernels.values())
    return {"layers": {p: zeros[p] / kernels[p].size for p in kernels},
            "total": sum(zeros.values()) / size if size else 0.0}
