"""`UniformQuantizer`: b-bit uniform (linear) fixed-point quantization with an optional learned step.

Formula (LSQ, Esser et al., "Learned Step Size Quantization", ICLR 2020, Eq. 1):

    v_bar = round(clip(v / s, -Q_N, Q_P)),     v_hat = v_bar * s

with Q_N = 2^(b-1), Q_P = 2^(b-1) - 1 for signed (two's complement) and Q_N = 0, Q_P = 2^b - 1 for
unsigned operands. `round` has a straight-through gradient, so autodiff through `clip` and the division
gives exactly LSQ's gradients for v (1 inside the range, 0 outside) and for s (Eq. 3). The step
gradient is scaled by g = 1 / sqrt(N * Q_P) (LSQ Sec. 2.2), N = elements per step value.

Step modes (`step_mode`):
  * "lsq"   - s is learned (a layer parameter), initialised to 2 <|v|> / sqrt(Q_P) (LSQ Sec. 2.1);
  * "max"   - s = max|v| / Q_P from the current tensor (no gradient): symmetric max calibration, the
              usual choice for weights when nothing is learned;
  * "fixed" - s = `fixed_step`, a constant.
Granularity: per tensor, or per channel along `channel_axis` (one s per output channel).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

from pannjax.errors import ConfigError
from pannjax.numerics import NumberFormat
from pannjax.quant.base import IntegerView, Quantizer
from pannjax.quant.scale import EPS, reduce_axes
from pannjax.quant.ste import fake_quant, round_ste, scale_grad

STEP_MODES = ("lsq", "max", "fixed")


@struct.dataclass
class UniformQuantizer(Quantizer):
    """b-bit uniform quantizer. `signed=None` means "signed iff the layer's input can be negative"."""

    bits: int = struct.field(pytree_node=False, default=8)
    signed: bool | None = struct.field(pytree_node=False, default=True)
    per_channel: bool = struct.field(pytree_node=False, default=False)
    channel_axis: int = struct.field(pytree_node=False, default=-1)
    step_mode: str = struct.field(pytree_node=False, default="lsq")
    fixed_step: float = struct.field(pytree_node=False, default=1.0)
    step: jax.Array | None = None

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 16:
            raise ConfigError(f"bits={self.bits!r}: uniform quantization needs an integer in 1..16")
        if self.signed and self.bits < 2:
            raise ConfigError(
                "bits=1 with signed=true: a 1-bit two's complement code has no positive level; "
                "use signed=false or a binary quantizer"
            )
        if self.step_mode not in STEP_MODES:
            raise ConfigError(f"step_mode={self.step_mode!r}: expected one of {STEP_MODES}")
        if self.step_mode == "fixed" and not self.fixed_step > 0:
            raise ConfigError(f"fixed_step={self.fixed_step!r}: must be > 0")

    @property
    def learned_fields(self) -> tuple[str, ...]:
        return ("step",) if self.step_mode == "lsq" else ()

    def with_input_sign(self, signed: bool) -> "UniformQuantizer":
        return self if self.signed is not None else self.replace(signed=signed)

    # -- levels ------------------------------------------------------------------------------
    @property
    def _signed(self) -> bool:
        if self.signed is None:
            raise ConfigError(
                "UniformQuantizer(signed=None) is unresolved: a layer resolves it with "
                "with_input_sign(); set signed explicitly when using the quantizer alone"
            )
        return self.signed

    @property
    def q_neg(self) -> int:
        return 2 ** (self.bits - 1) if self._signed else 0

    @property
    def q_pos(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self._signed else 2**self.bits - 1

    @property
    def format(self) -> NumberFormat:
        return NumberFormat("int", self.bits, self._signed)

    # -- step --------------------------------------------------------------------------------
    def init_learned(self, x: jax.Array) -> dict[str, jax.Array]:
        if self.step_mode != "lsq":
            return {}
        mean_abs = jnp.mean(jnp.abs(x), axis=reduce_axes(x, self.per_channel, self.channel_axis), keepdims=True)
        return {"step": jnp.maximum(2.0 * mean_abs / math.sqrt(self.q_pos), EPS)}

    def step_for(self, x: jax.Array) -> jax.Array:
        """The step s used for tensor `x` (broadcastable to x)."""
        if self.step_mode == "fixed":
            return jnp.asarray(self.fixed_step, x.dtype)
        if self.step_mode == "max":
            max_abs = jnp.max(jnp.abs(x), axis=reduce_axes(x, self.per_channel, self.channel_axis), keepdims=True)
            return jax.lax.stop_gradient(jnp.maximum(max_abs / self.q_pos, EPS))
        if self.step is None:
            raise ConfigError(
                "UniformQuantizer(step_mode='lsq') has no learned step bound: use it inside a "
                "QConv/QDense, or call with_learned(**init_learned(x)) first"
            )
        n = x.size // self.step.size
        # |s|: a step is positive (LSQ's s > 0); gradient descent can carry the raw parameter below zero,
        # which would mirror the asymmetric range [-Q_N, Q_P] and zero every unsigned code
        return jnp.maximum(jnp.abs(scale_grad(self.step, 1.0 / math.sqrt(n * self.q_pos))), EPS)

    # -- quantization ------------------------------------------------------------------------
    def _codes(self, x: jax.Array, s: jax.Array) -> jax.Array:
        return round_ste(jnp.clip(x / s, -self.q_neg, self.q_pos))

    def quantize(self, x: jax.Array) -> jax.Array:
        return fake_quant(x, self.step_for(x), -self.q_neg, self.q_pos)

    def integer(self, x: jax.Array) -> IntegerView:
        s = jax.lax.stop_gradient(self.step_for(x))
        return IntegerView(self._codes(x, s).astype(jnp.int32), s, self.format)
