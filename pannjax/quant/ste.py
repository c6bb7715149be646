"""Straight-through estimators (Bengio et al. 2013, "Estimating or propagating gradients through
stochastic neurons"): the forward pass applies a step function, the backward pass treats it as the
identity. Implemented with `jax.custom_vjp` so the rule is explicit and composes with jit/vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def round_ste(x: jax.Array) -> jax.Array:
    """round(x) forward (half to even, as `jnp.round`); d round(x)/dx := 1 backward."""
    return jnp.round(x)


def _round_fwd(x):
    return jnp.round(x), None


def _round_bwd(_, g):
    return (g,)


round_ste.defvjp(_round_fwd, _round_bwd)


def scale_grad(x: jax.Array, factor: float | jax.Array) -> jax.Array:
    """Identity forward; gradient multiplied by `factor` backward (LSQ's gradient scale, Esser et al.
    ICLR 2020, Sec. 2.2)."""
    return jax.lax.stop_gradient(x - x * factor) + x * factor
