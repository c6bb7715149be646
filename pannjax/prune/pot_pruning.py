"""Pruning adapted to power-of-two (logarithmic) weights, applied during QAT as an optax transformation.

Why PoT needs it. The paper's b-bit PoT code (`PotQuantizer(zero_level=False)`) spends all 2^b codes on
±2^-k and has no zero, so a bitshift-and-accumulate (BAC) unit can only skip a product when the weight
was pruned (Przewlocka-Rus & Kryjak, "Energy Efficient Hardware Acceleration of Neural Networks with
Power-of-Two Quantisation", ICCVG 2022, arXiv 2209.15257: "a new pruning method adapted to logarithmic
quantisation" that omits the computation for zero weights). Only the abstract and introduction of the
paper were reachable from here, so the rule below is *chosen*, built on what PoT quantization implies:

  1. Log-domain ranking relative to each channel's PoT grid. A weight's level is
     round(log2 |w / s|) with s its (per-channel) PoT scale, so ranking by u = |w| / s ranks by PoT level
     (largest shift first) and, inside a level, by distance to the next level down. The p fraction of
     weights with the smallest u in each kernel are pruned (ties broken by position, so exactly
     floor(p * n) weights). With per-channel scales this differs from plain magnitude pruning: a weight
     is small relative to its own channel's grid.
  2. Underflow pruning (`prune_underflow`, default on): a weight nearer to zero than to the smallest
     level 2^-(K-1) (u < 2^-K) is always pruned. Without a zero code the quantizer would inflate it to
     2^-(K-1); pruning it both lowers the quantization error and skips a shift. This is the zero the
     paper's code lacks, obtained by pruning instead of by a reserved code.
  3. Gradual schedule (`polynomial_sparsity`, Zhu & Gupta, "To prune, or not to prune", 2017, Eq. 1):
        s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_1 - t_0))^3   for t_0 <= t <= t_1,
     masks refreshed every `frequency` steps; a pruned weight never comes back (masks only shrink).

How the mask is applied. `pot_pruning(targets, ...)` is an optax `GradientTransformation` to chain after
the optimiser, over the layers with PoT weights (`prunable_layers` of the model's bound layers, each
ranked with its own quantizer); its state holds the step and a boolean keep-mask per kernel, and it rewrites the updates
so that new_params = where(keep, params + updates, 0) exactly (update -params where pruned). So pruned
weights are exactly zero in the parameters after every step, whatever the optimiser's momentum, and no
model or training-loop code changes (`TrainState.apply_gradients` already calls `tx.update(g, s, params)`).
The zeros then flow through `PotQuantizer` (zero stays zero, sign 0 in the integer view), so the
operator cost (`ShiftOperator.cost(density=...)`) and the toggle simulator can skip them;
`kernel_density(params)` gives the per-layer fraction of non-zero weights they need.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, NamedTuple, Sequence

import flax
import jax
import jax.numpy as jnp
import optax

from pannjax.errors import ConfigError
from pannjax.nn.bound import bind_quantizer, params_at
from pannjax.quant.pot import PotQuantizer


def polynomial_sparsity(final_sparsity: float, begin_step: int, end_step: int, initial_sparsity: float = 0.0,
                        power: int = 3) -> optax.Schedule:
    """Gradual pruning schedule step -> sparsity (Zhu & Gupta 2017, Eq. 1): `initial_sparsity` until
    `begin_step`, then s_f + (s_i - s_f)(1 - progress)^power, `final_sparsity` from `end_step` on."""
    for name, v in (("final_sparsity", final_sparsity), ("initial_sparsity", initial_sparsity)):
        if not 0.0 <= v < 1.0:
            raise ConfigError(f"{name}={v!r}: expected a fraction in [0, 1)")
    if not 0 <= begin_step < end_step:
        raise ConfigError(f"begin_step={begin_step}, end_step={end_step}: expected 0 <= begin_step < end_step")
    if power < 1:
        raise ConfigError(f"power={power!r}: expected >= 1")

    def schedule(step):
        progress = jnp.clip((jnp.asarray(step, jnp.float32) - begin_step) / (end_step - begin_step), 0.0, 1.0)
        return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - progress) ** power

    return schedule


def pot_prune_mask(w: jax.Array, sparsity: float | jax.Array, quantizer: PotQuantizer,
                   prune_underflow: bool = True) -> jax.Array:
    """Boolean keep-mask of kernel `w` for target `sparsity` (see module docstring, rules 1 and 2).

    `quantizer` gives the PoT scale s of `w` (bound to its learned scale when scale_mode='learned')
    and the number of levels K."""
    s = jax.lax.stop_gradient(quantizer.scale_for(w))
    u = jnp.abs(w) / s
    flat = u.reshape(-1)
    n_prune = jnp.floor(jnp.asarray(sparsity, jnp.float32) * flat.size).astype(jnp.int32)
    rank = jnp.argsort(jnp.argsort(flat, stable=True), stable=True)
    keep = (rank >= n_prune).reshape(w.shape)
    if prune_underflow:
        keep = keep & (u >= 2.0 ** -quantizer.n_magnitudes)
    return keep


class PotPruneState(NamedTuple):
    count: jax.Array  # int32 steps seen
    masks: Any        # {layer path: bool keep-mask of its kernel}


def _path(key: tuple) -> str:
    return "/".join(str(k) for k in key)


def prunable_layers(layers: Sequence[Any], exclude: str | None = None) -> dict[str, PotQuantizer]:
    """{layer path: its (unbound) weight quantizer} of the layers (`pannjax.nn.bound_layers` /
    `abstract_layers` records) whose weights are power-of-two codes and whose path does not match the
    regex `exclude` (e.g. r'^(stem|head)$' keeps the first and last layers dense)."""
    return {l.path: l.quantizer_w for l in layers
            if isinstance(l.quantizer_w, PotQuantizer) and not (exclude and re.search(exclude, l.path))}


def pot_pruning(targets: Mapping[str, PotQuantizer], schedule: optax.Schedule, frequency: int = 100,
                prune_underflow: bool = True) -> optax.GradientTransformation:
    """optax transformation that prunes the kernels of `targets` ({layer path: the layer's PoT weight
    quantizer}, see `prunable_layers`) gradually and keeps pruned weights exactly zero. Each kernel is
    ranked on its own layer's grid: the quantizer bound to the layer's current parameters
    (`pannjax.nn.bound.bind_quantizer`, the learned scale as it is at that step).

    Chain it last: `optax.chain(optimizer, pot_pruning(prunable_layers(layers), polynomial_sparsity(0.5, 0, 1000)))`."""
    if not targets:
        raise ConfigError("pot_pruning: no layer with power-of-two weights to prune")
    wrong = {p: type(q).__name__ for p, q in targets.items() if not isinstance(q, PotQuantizer)}
    if wrong:
        got = ", ".join(f"{p}: {t}" for p, t in wrong.items())
        raise ConfigError(f"pot_pruning needs a PotQuantizer per layer; {got}")
    if frequency < 1:
        raise ConfigError(f"frequency={frequency!r}: expected >= 1 step")

    def init(params):
        return PotPruneState(jnp.zeros((), jnp.int32),
                             {p: jnp.ones(params_at(params, p)["kernel"].shape, bool) for p in targets})

    def update(updates, state, params=None):
        if params is None:
            raise ConfigError("pot_pruning needs params: call tx.update(grads, state, params)")
        refresh = state.count % frequency == 0
        sparsity = schedule(state.count)
        flat_u = flax.traverse_util.flatten_dict(updates)
        masks = {}
        for path, quantizer in targets.items():
            node = params_at(params, path)
            kernel, key = node["kernel"], (*path.split("/"), "kernel")
            q = bind_quantizer(quantizer, node, "quantizer_w")
            m = jax.lax.cond(refresh, lambda m, p, q: m & pot_prune_mask(p, sparsity, q, prune_underflow),
                             lambda m, p, q: m, state.masks[path], kernel, q)
            flat_u[key] = jnp.where(m, flat_u[key], -kernel)
            masks[path] = m
        return flax.traverse_util.unflatten_dict(flat_u), PotPruneState(state.count + 1, masks)

    return optax.GradientTransformation(init, update)


def kernel_density(params: Any) -> dict[str, float]:
    """Fraction of non-zero weights of every kernel, by '/'-joined path (what the cost model needs)."""
    flat = flax.traverse_util.flatten_dict(params)
    return {_path(k): float(jnp.mean(v != 0)) for k, v in flat.items() if k[-1] == "kernel"}
