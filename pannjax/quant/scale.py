"""Scale handling shared by quantizers: the axes of per-tensor / per-channel statistics, and the full
scale s of quantizers whose levels lie in [-s, s] (powers of two, additive powers of two).

Full-scale modes: "learned" (s is a parameter initialised to max|x| and trained with LSQ's gradient
scale 1/sqrt(N), Esser et al., ICLR 2020, Sec. 2.2), "max" (s = max|x| of the current tensor, no
gradient) and "fixed" (a constant).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from pannjax.errors import ConfigError
from pannjax.quant.ste import scale_grad

EPS = 1e-8
SCALE_MODES = ("learned", "max", "fixed")


def reduce_axes(x: jax.Array, per_channel: bool, channel_axis: int) -> tuple[int, ...]:
    """Axes a statistic of `x` reduces over: all of them, or all but `channel_axis`."""
    if not per_channel:
        return tuple(range(x.ndim))
    axis = channel_axis % x.ndim
    return tuple(a for a in range(x.ndim) if a != axis)


class FullScale:
    """Mixin for quantizers with fields `per_channel`, `channel_axis`, `scale_mode`, `fixed_scale` and a
    learned `scale` (None until bound)."""

    def check_scale_mode(self) -> None:
        if self.scale_mode not in SCALE_MODES:
            raise ConfigError(f"scale_mode={self.scale_mode!r}: expected one of {SCALE_MODES}")

    def _max_abs(self, x: jax.Array) -> jax.Array:
        axes = reduce_axes(x, self.per_channel, self.channel_axis)
        return jnp.maximum(jnp.max(jnp.abs(x), axis=axes, keepdims=True), EPS)

    def init_learned(self, x: jax.Array) -> dict[str, jax.Array]:
        return {"scale": self._max_abs(x)} if self.scale_mode == "learned" else {}

    def scale_for(self, x: jax.Array) -> jax.Array:
        """The scale s used for tensor `x` (broadcastable to x)."""
        if self.scale_mode == "fixed":
            return jnp.asarray(self.fixed_scale, x.dtype)
        if self.scale_mode == "max":
            return jax.lax.stop_gradient(self._max_abs(x))
        if self.scale is None:
            raise ConfigError(f"{type(self).__name__}(scale_mode='learned') has no learned scale bound: use it "
                              "inside a QConv/QDense, or call with_learned(**init_learned(x)) first")
        return scale_grad(self.scale, 1.0 / math.sqrt(x.size // self.scale.size))
