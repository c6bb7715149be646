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

How the mask is applied. `pot_pruning(...)` is an optax `GradientTransformation` to chain after the
optimiser; its state holds the step and a boolean keep-mask per kernel, and it rewrites the updates
so that new_params = where(keep, params + updates, 0) exactly (update -params where pruned). So pruned
weights are exactly zero in the parameters after every step, whatever the optimiser's momentum, and no
model or training-loop code changes (`TrainState.apply_gradients` already calls `tx.update(g, s, params)`).
The zeros then flow through `PotQuantizer` (zero stays zero, sign 0 in the integer view), so the
operator cost (`ShiftOperator.cost(density=...)`) and the toggle simulator can skip them;
`kernel_density(params)` gives the per-layer fraction of non-zero weights they need.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

from pannjax.errors import ConfigError
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
    masks: Any        # like params: bool keep-masks for pruned kernels, scalar True elsewhere


def _path(key: tuple) -> str:
    return "/".join(str(k) for k in key)


def _prunable(flat: dict, exclude: str | None) -> dict:
    return {k: (k[-1] == "kernel" and v.ndim >= 2 and not (exclude and re.search(exclude, _path(k))))
            for k, v in flat.items()}


def _bound_quantizer(quantizer: PotQuantizer, flat: dict, key: tuple) -> PotQuantizer:
    """The layer's quantizer with its learned scale (a sibling parameter `quantizer_w/scale`)."""
    if not quantizer.learned_fields:
        return quantizer
    scale_key = key[:-1] + ("quantizer_w", "scale")
    if scale_key not in flat:
        raise ConfigError(f"pruning {_path(key)}: scale_mode='learned' but no parameter {_path(scale_key)}")
    return quantizer.with_learned(scale=flat[scale_key])


def pot_pruning(quantizer: PotQuantizer, schedule: optax.Schedule, frequency: int = 100,
                prune_underflow: bool = True, exclude: str | None = None) -> optax.GradientTransformation:
    """optax transformation that prunes PoT kernels gradually and keeps pruned weights exactly zero.

    Chain it last: `optax.chain(optimizer, pot_pruning(qw, polynomial_sparsity(0.5, 0, 1000)))`.
    Kernels are the parameters named `kernel` (ndim >= 2) whose '/'-joined path does not match the
    regex `exclude` (e.g. r'^(stem|head)/' keeps the first and last layers dense)."""
    if not isinstance(quantizer, PotQuantizer):
        raise ConfigError(f"pot_pruning needs a PotQuantizer, got {type(quantizer).__name__}")
    if frequency < 1:
        raise ConfigError(f"frequency={frequency!r}: expected >= 1 step")

    def init(params):
        flat = flax.traverse_util.flatten_dict(params)
        prunable = _prunable(flat, exclude)
        masks = {k: jnp.ones(v.shape, bool) if prunable[k] else jnp.array(True) for k, v in flat.items()}
        return PotPruneState(jnp.zeros((), jnp.int32), flax.traverse_util.unflatten_dict(masks))

    def update(updates, state, params=None):
        if params is None:
            raise ConfigError("pot_pruning needs params: call tx.update(grads, state, params)")
        flat_p = flax.traverse_util.flatten_dict(params)
        flat_u = flax.traverse_util.flatten_dict(updates)
        flat_m = flax.traverse_util.flatten_dict(state.masks)
        prunable = _prunable(flat_p, exclude)
        refresh = state.count % frequency == 0
        sparsity = schedule(state.count)
        new_m, new_u = {}, {}
        for k, p in flat_p.items():
            m = flat_m[k]
            if prunable[k]:
                qk = _bound_quantizer(quantizer, flat_p, k)
                m = jax.lax.cond(refresh, lambda m, p, qk: m & pot_prune_mask(p, sparsity, qk, prune_underflow),
                                 lambda m, p, qk: m, m, p, qk)
                new_u[k] = jnp.where(m, flat_u[k], -p)
            else:
                new_u[k] = flat_u[k]
            new_m[k] = m
        unflat = flax.traverse_util.unflatten_dict
        return unflat(new_u), PotPruneState(state.count + 1, unflat(new_m))

    return optax.GradientTransformation(init, update)


def kernel_density(params: Any) -> dict[str, float]:
    """Fraction of non-zero weights of every kernel, by '/'-joined path (what the cost model needs)."""
    flat = flax.traverse_util.flatten_dict(params)
    return {_path(k): float(jnp.mean(v != 0)) for k, v in flat.items() if k[-1] == "kernel"}
