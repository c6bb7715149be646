"""`PotQuantizer`: b-bit power-of-two (logarithmic) weight quantization, sign + exponent code.

Levels (in units of the scale s), K magnitudes 2^0 .. 2^-(K-1):

  * paper variant (`zero_level=False`, default): all 2^b codes are signed powers of two, 1 sign bit and
    b-1 exponent bits, K = 2^(b-1):   {±2^0, ±2^-1, ..., ±2^-(2^(b-1)-1)}
        b=2: ±{1, 1/2}   b=3: ±{1, ..., 1/8}   b=4: ±{1, ..., 1/128}
    There is no zero: a weight can only become zero by pruning (`pannjax.prune`), which is how the
    BAC accelerator skips work (Przewlocka-Rus & Kryjak, "Energy Efficient Hardware Acceleration of
    Neural Networks with Power-of-Two Quantisation", ICCVG 2022, arXiv 2209.15257, Sec. 1 and abstract:
    PoT weights at <= 4 bits, MAC -> bitshift-and-accumulate, zero weights obtained by a pruning method
    adapted to logarithmic quantisation).
  * zero-code variant (`zero_level=True`): one exponent code is reserved for zero, K = 2^(b-1) - 1:
        {0, ±2^0, ..., ±2^-(2^(b-1)-2)}      b=2: {0, ±1} (ternary)   b=4: {0, ±1, ..., ±1/64}
    (the encoding most PoT implementations use, e.g. Miyashita et al. 2016, APoT's PoT baseline
    Li et al. ICLR 2020 Eq. 3 up to its extra level).
  Only the abstract and introduction of arXiv 2209.15257 / 2203.05025 were reachable from here, so
  the exact code table is *chosen*: the paper variant is our reading (all codes used, zero from
  pruning); the zero-code variant is the option.

Quantization, with u = w / s:

    e = clip(round(log2 |u|), -(K-1), 0),        Q(w) = s * sign(u) * 2^e

i.e. rounding in the log domain (as DeepShift-Q, Elhoushi et al. 2021, and Miyashita et al. 2016).
|u| > 1 clips to the largest level; in the paper variant any non-zero |u| below the smallest level
clamps up to 2^-(K-1); in the zero-code variant |u| < 2^-(K-1) / 2 (nearer zero than the smallest
level) gives 0. In both variants an exactly zero weight (a pruned one) stays 0: it is not a code the
quantizer rounds to but a weight the accelerator skips (sign 0 in the integer view).

Gradients (straight-through, LSQ form, Esser et al. ICLR 2020 Eq. 3): dQ/dw = 1 for |u| <= 1 and 0 for
|u| > 1; dQ/ds = Q(w)/s - u inside, sign(u) outside, scaled by g = 1/sqrt(N) (N weights per scale).

Scale modes (`scale_mode`): "learned" (a layer parameter, initialised to max|w| so the largest weight
sits on level 1), "max" (s = max|w| of the current tensor, no gradient), "fixed" (`fixed_scale`).
Granularity: per tensor, or per output channel along `channel_axis`.

Integer view (`PotIntegerView`): per weight its `sign` in {-1, 0, 1} and `shift` = -e in 0..K-1 (the
b-bit hardware word), and integer `codes` = sign * 2^(K-1-shift) with `scale` = s * 2^-(K-1), so
codes * scale == quantize(w) exactly, as for every quantizer. Widths are limited to 2..5 bits: the
integer codes then need at most 2^(b-1)+1 <= 17 bits and stay exact in int32 and float32 paths.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from pannjax.errors import ConfigError
from pannjax.numerics import NumberFormat
from pannjax.quant.base import IntegerView, Quantizer
from pannjax.quant.scale import FullScale



@jax.custom_vjp
def value_ste(u: jax.Array, q: jax.Array) -> jax.Array:
    """Returns `q` (the quantized value of `u`, computed without gradient); the gradient flows to `u`
    unchanged (straight-through estimator, Bengio et al. 2013)."""
    return q


def _value_ste_fwd(u, q):
    return q, None


def _value_ste_bwd(_, g):
    return g, jnp.zeros_like(g)


value_ste.defvjp(_value_ste_fwd, _value_ste_bwd)


@dataclasses.dataclass(frozen=True)
class PotIntegerView(IntegerView):
    """`IntegerView` of power-of-two weights: value = sign * 2^-shift * s = codes * scale.

    sign: int32 in {-1, 0, 1} (0 only for zero weights); shift: int32 in 0..max_shift (0 where sign is 0);
    codes = sign * 2^(max_shift - shift); scale = s * 2^-max_shift."""

    sign: jax.Array
    shift: jax.Array
    max_shift: int


@struct.dataclass
class PotQuantizer(FullScale, Quantizer):
    """b-bit power-of-two weight quantizer (see module docstring for levels, rounding and gradients)."""

    bits: int = struct.field(pytree_node=False, default=4)
    zero_level: bool = struct.field(pytree_node=False, default=False)
    per_channel: bool = struct.field(pytree_node=False, default=True)
    channel_axis: int = struct.field(pytree_node=False, default=-1)
    scale_mode: str = struct.field(pytree_node=False, default="learned")
    fixed_scale: float = struct.field(pytree_node=False, default=1.0)
    scale: jax.Array | None = None

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 2 <= self.bits <= 5:
            raise ConfigError(f"bits={self.bits!r}: power-of-two quantization needs an integer in 2..5 "
                              "(1 sign bit + exponent bits; 5 bits already span shifts 0..15)")
        self.check_scale_mode()
        if self.scale_mode == "fixed" and not self.fixed_scale > 0:
            raise ConfigError(f"fixed_scale={self.fixed_scale!r}: must be > 0")

    @property
    def learned_fields(self) -> tuple[str, ...]:
        return ("scale",) if self.scale_mode == "learned" else ()

    # -- levels ------------------------------------------------------------------------------
    @property
    def n_magnitudes(self) -> int:
        """K, the number of non-zero magnitudes 2^0 .. 2^-(K-1)."""
        return 2 ** (self.bits - 1) - (1 if self.zero_level else 0)

    @property
    def max_shift(self) -> int:
        return self.n_magnitudes - 1

    @property
    def format(self) -> NumberFormat:
        return NumberFormat("int", self.bits, True)

    @property
    def value_format(self) -> NumberFormat:
        """The integer values sign * 2^(M - shift) span +-2^M: M + 2 bits, two's complement."""
        return NumberFormat("int", self.max_shift + 2, True)

    def levels(self) -> tuple[float, ...]:
        """All representable values in units of the scale, ascending (exact powers of two)."""
        mags = [2.0 ** -k for k in range(self.n_magnitudes)]
        return tuple(sorted([-m for m in mags] + ([0.0] if self.zero_level else []) + mags))

    # -- quantization ------------------------------------------------------------------------
    def _sign_shift(self, u: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Integer sign and shift of unit-scale values u (no gradient)."""
        mag = jnp.abs(u)
        e = jnp.clip(jnp.round(jnp.log2(jnp.maximum(mag, 1e-30))), -self.max_shift, 0)
        shift = (-e).astype(jnp.int32)
        sign = jnp.sign(u).astype(jnp.int32)
        if self.zero_level:
            sign = jnp.where(mag < 2.0 ** -self.max_shift / 2, 0, sign)
        return sign, jnp.where(sign == 0, 0, shift)

    def _unit(self, x: jax.Array, s: jax.Array) -> jax.Array:
        u = jnp.clip(x / s, -1.0, 1.0)
        sign, shift = self._sign_shift(jax.lax.stop_gradient(u))
        q = sign.astype(x.dtype) * jnp.exp2(-shift.astype(x.dtype))
        return value_ste(u, q)

    def quantize(self, x: jax.Array) -> jax.Array:
        s = self.scale_for(x)
        return self._unit(x, s) * s

    def integer(self, x: jax.Array) -> PotIntegerView:
        s = jax.lax.stop_gradient(self.scale_for(x))
        sign, shift = self._sign_shift(jnp.clip(x / s, -1.0, 1.0))
        codes = sign * jnp.left_shift(jnp.int32(1), self.max_shift - shift)
        return PotIntegerView(codes, s * 2.0 ** -self.max_shift, self.format, sign, shift, self.max_shift)
