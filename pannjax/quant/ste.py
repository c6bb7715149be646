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


@jax.custom_vjp
def sign_ste(x: jax.Array) -> jax.Array:
    """sign(x) in {-1, 0, 1} forward; d sign(x)/dx := 1 backward (plain straight-through)."""
    return jnp.sign(x)


def _sign_fwd(x):
    return jnp.sign(x), None


def _sign_bwd(_, g):
    return (g,)


sign_ste.defvjp(_sign_fwd, _sign_bwd)


@jax.custom_vjp
def binarize_ste(x: jax.Array) -> jax.Array:
    """+1 for x > 0, -1 otherwise forward; d/dx := 1 for |x| <= 1, else 0 backward (the clipped
    straight-through estimator of BinaryNet, Hubara et al. NeurIPS 2016, Sec. 1.3, used by XNOR-Net).
    Zero maps to -1, so a ReLU output binarises to active (+1) / inactive (-1) instead of all +1."""
    return jnp.where(x > 0, 1.0, -1.0).astype(x.dtype)


def _binarize_fwd(x):
    return binarize_ste(x), x


def _binarize_bwd(x, g):
    return (jnp.where(jnp.abs(x) <= 1, g, 0.0),)


binarize_ste.defvjp(_binarize_fwd, _binarize_bwd)
