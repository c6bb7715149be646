"""Straight-through estimators (Bengio et al. 2013, "Estimating or propagating gradients through
stochastic neurons"): the forward pass applies a step function, the backward pass treats it as the
identity. Implemented with `jax.custom_vjp` so the rule is explicit and composes with jit/vmap."""

from __future__ import annotations

import functools

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


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def fake_quant(x: jax.Array, s: jax.Array, lo: float, hi: float) -> jax.Array:
    """round(clip(x / s, lo, hi)) * s with the gradients of LSQ (Esser et al., ICLR 2020, Eq. 3), i.e. those
    autodiff gives through `round_ste(clip(x / s, lo, hi)) * s`:

        d/dx = 1 for lo <= x/s <= hi, else 0;     d/ds = round(x/s) - x/s inside, lo or hi outside,

    summed over the elements that share a step (`s` broadcasts against `x`). One fused rule instead of the
    chain of divide, clip, round and multiply: the backward pass recomputes x/s from the saved inputs
    instead of keeping masks and quotients, which halves the memory traffic of a fake-quantized layer."""
    return jnp.round(jnp.clip(x / s, lo, hi)) * s


def _fake_quant_fwd(x, s, lo, hi):
    return fake_quant(x, s, lo, hi), (x, s)


def _fake_quant_bwd(lo, hi, res, g):
    x, s = res
    v = x / s
    inside = (v >= lo) & (v <= hi)
    dx = jnp.where(inside, g, 0.0).astype(x.dtype)
    ds = g * jnp.where(inside, jnp.round(v) - v, jnp.clip(v, lo, hi))
    s_shape = jnp.shape(s)
    lead = ds.ndim - len(s_shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(s_shape) if n == 1 and ds.shape[lead + i] != 1)
    ds = jnp.sum(ds, axis=axes, keepdims=True).reshape(s_shape) if axes else ds.reshape(s_shape)
    return dx, ds.astype(jnp.result_type(s))


fake_quant.defvjp(_fake_quant_fwd, _fake_quant_bwd)
