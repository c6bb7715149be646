"""`ShiftOperator`: bitshift-and-accumulate (BAC) for power-of-two weights, and the integer shift path.

With weights w_ij = sign_ij * 2^-shift_ij * s_w (PoT, `pannjax.quant.PotQuantizer`) and activations
x_i = c_i * s_x (integer codes c_i), every product is a shift instead of a multiplication
(Przewlocka-Rus & Kryjak, arXiv 2209.15257; Przewlocka-Rus et al., arXiv 2203.05025):

    y_j = s_x * s_w * 2^-M * sum_i sign_ij * (c_i << (M - shift_ij)),      M = max_shift

The left shift by M - shift (instead of a right shift by `shift`) keeps every product exact: it is the
same datapath as a right shift into an accumulator with M fractional bits. Zero weights (sign 0,
pruned) contribute nothing and are skipped by the hardware.

`shift_accumulate` (dense) and `shift_conv` (NHWC/HWIO, strides, padding, groups) are that integer
reference path, written with int32 shifts and adds only; they are plain functions so every shift-based
operator (this one, DeepShift) shares them. In float mode `dense`/`conv` are exactly MAC on the
fake-quantized PoT weights, so training uses fast XLA contractions; the integer path matches them bit
for bit whenever the float sums are exact (power-of-two scales, |sums| < 2^24).

DeepShift (Elhoushi et al., arXiv 1905.13298): with `weight_bits` set (default 5), the operator itself
rounds whatever weights it receives to signed powers of two (DeepShift-Q, via `PotQuantizer` with a
per-channel max scale and a straight-through gradient), so even `quant=float op=shift` trains in the
shift domain; on weights already PoT-quantized with <= weight_bits bits the rounding is the identity.

Cost per example: each non-zero weight's product is one "shift" unit operation: a shift of the b_x-bit
activation by up to M = 2^(b_w-1) - 1 positions (a barrel shifter) and one addition into the B-bit
accumulator (`pannjax.hw.units`). The weights priced are those the shifter receives
(`hardware_weights`: with `weight_bits` set, the operator's own PoT rounding of any non-PoT weights), so
`quant=float op=shift` costs shifts, never multiplications. Zero weights are skipped (`skips_zero_weights`): the
base class `Operator.cost(..., density=...)` scales both counts by the fraction of non-zero weights.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pannjax.errors import ConfigError
from pannjax.numerics import NumberFormat
from pannjax.ops.base import (ContractionShape, LinearOperator, Padding, UnitOp, check_conv_shapes,
                              normalize_padding, wider_float)
from pannjax.ops.integer import IntegerWeights, datapath, integer_contraction, l1_limit, per_channel
from pannjax.quant.base import IntegerView, Requantized
from pannjax.quant.pot import PotQuantizer


def _check_shift_operands(sign: jax.Array, shift: jax.Array, max_shift: int) -> None:
    if sign.shape != shift.shape:
        raise ConfigError(f"sign {sign.shape} and shift {shift.shape} must have the same shape")
    if not 0 <= max_shift <= 30:
        raise ConfigError(f"max_shift={max_shift}: expected 0..30 for an int32 accumulator")


def shift_accumulate(x_codes: jax.Array, sign: jax.Array, shift: jax.Array, max_shift: int) -> jax.Array:
    """y_j = sum_i sign_ij * (x_i << (max_shift - shift_ij)), all int32.

    x_codes: (..., C_in) integers; sign, shift: (C_in, C_out) integers, sign in {-1, 0, 1}, shift in
    0..max_shift. The caller guarantees no int32 overflow (|x| * 2^max_shift * C_in < 2^31)."""
    _check_shift_operands(sign, shift, max_shift)
    if x_codes.shape[-1] != sign.shape[0]:
        raise ConfigError(f"shift_accumulate: x {x_codes.shape} does not match weights {sign.shape}")
    x = x_codes.astype(jnp.int32)[..., :, None]
    shifted = jnp.left_shift(x, (max_shift - shift).astype(jnp.int32))
    return jnp.sum(sign.astype(jnp.int32) * shifted, axis=-2, dtype=jnp.int32)


def shift_conv(x_codes: jax.Array, sign: jax.Array, shift: jax.Array, max_shift: int,
               strides: Sequence[int] = (1, 1), padding: Padding = "SAME", groups: int = 1) -> jax.Array:
    """Integer convolution by shifts and adds: NHWC codes, HWIO sign/shift (I = C_in / groups).

    Patches are extracted (exact: codes are small integers) and each group is a `shift_accumulate`."""
    check_conv_shapes(x_codes, sign, groups)
    _check_shift_operands(sign, shift, max_shift)
    kh, kw, cg, c_out = sign.shape
    patches = jax.lax.conv_general_dilated_patches(
        x_codes.astype(jnp.float32), (kh, kw), tuple(strides), normalize_padding(padding),
        dimension_numbers=("NHWC", "HWIO", "NHWC")).astype(jnp.int32)  # features ordered (C_in, kh, kw)
    n, ho, wo, _ = patches.shape
    og = c_out // groups
    patches = patches.reshape(n, ho, wo, groups, cg * kh * kw)

    def weights(a):  # HWIO -> (groups, C_g * kh * kw, O_g), rows ordered like the patch features
        return a.reshape(kh, kw, cg, groups, og).transpose(3, 2, 0, 1, 4).reshape(groups, cg * kh * kw, og)

    out = jax.vmap(lambda xg, sg, hg: shift_accumulate(xg, sg, hg, max_shift), in_axes=(3, 0, 0), out_axes=3)(
        patches, weights(sign), weights(shift))
    return out.reshape(n, ho, wo, c_out)


@datapath("shift")
def shift_datapath(x, arrays, attrs, geometry) -> list:
    """Bitshift-and-accumulate on the stored sign and shift fields, grouped by shift amount:

        sum_i sign_i (x_i << (M - shift_i)) = sum_e (sum_{i: M - shift_i = e} sign_i x_i) << e,

    the same integers as `shift_accumulate` / `shift_conv` (addition is associative modulo 2^32), as M + 1
    sign-select contractions (`integer_contraction` on ternary weights) whose sums are shifted and added."""
    sign, shift, m = arrays["sign"], arrays["shift"], attrs["max_shift"]
    ternary = {**geometry, "w_abs": 1}
    acc = None
    for e in range(m + 1):
        part = integer_contraction(x, jnp.where(m - shift == e, sign, 0), ternary) << e
        acc = part if acc is None else acc + part
    return [(acc, True)]


def _pot_parts(w: IntegerView) -> tuple[jax.Array, jax.Array, int]:
    if not all(hasattr(w, a) for a in ("sign", "shift", "max_shift")):
        raise ConfigError("the shift operator's integer path needs power-of-two weights "
                          "(PotQuantizer.integer); got a plain IntegerView")
    return w.sign, w.shift, w.max_shift


def _rescale(acc: jax.Array, x: IntegerView, w: IntegerView) -> jax.Array:
    """acc * s_x * s_w: one scale for the activations, one per tensor or per output channel for weights."""
    c_out = acc.shape[-1]
    if jnp.size(x.scale) != 1 or jnp.size(w.scale) not in (1, c_out):
        raise ConfigError(f"integer path needs a per-tensor activation scale and per-tensor or per-output-channel "
                          f"weight scales; got shapes {jnp.shape(x.scale)} and {jnp.shape(w.scale)}")
    return acc.astype(jnp.float32) * (jnp.reshape(x.scale, ()) * jnp.reshape(w.scale, (-1,)))


@struct.dataclass
class ShiftOperator(LinearOperator):
    """Bitshift-and-accumulate. Float path: `x @ w` / `lax.conv_general_dilated` on PoT-valued weights
    (identical to MAC). Integer path: `dense_integer` / `conv_integer` from the quantizers' integer
    views, computed with shifts and adds only. See the module docstring for the formula and cost."""

    name = "shift"
    skips_zero_weights = True  # a pruned (zero) weight is not shifted nor accumulated (arXiv 2209.15257)
    # DeepShift-Q (Elhoushi et al., arXiv 1905.13298, Sec. 3.1): round the weights the operator receives
    # to signed powers of two, sign(w) * 2^round(log2|w|), with a straight-through gradient -- here
    # `PotQuantizer(weight_bits, scale_mode="max")` (per output channel, levels max|w| * 2^-k), so
    # `quant=float op=shift` really computes with shifts. Idempotent on weights a PotQuantizer of
    # <= weight_bits bits already produced (`quant=pot op=shift` is unchanged). None: no rounding.
    weight_bits: int | None = struct.field(pytree_node=False, default=5)

    @property
    def _rounding(self) -> PotQuantizer:
        return PotQuantizer(bits=self.weight_bits, per_channel=True, channel_axis=-1, scale_mode="max")

    def weight_transform(self, w: jax.Array) -> jax.Array:
        """The weights as signed powers of two (DeepShift-Q rounding, STE gradient), or `w` unchanged."""
        if self.weight_bits is None:
            return w
        return self._rounding.quantize(w)

    def hardware_weights(self, quantizer_w):
        """PoT weights of <= weight_bits bits pass unchanged (the rounding is the identity on them); any
        other weights reach the shifter as this operator's own `weight_bits`-bit PoT rounding."""
        if self.weight_bits is None or (isinstance(quantizer_w, PotQuantizer) and quantizer_w.bits <= self.weight_bits):
            return quantizer_w
        return Requantized(quantizer_w, self._rounding)

    def weight_format(self, quantizer_w) -> NumberFormat:
        """The shifter takes the stored code (sign and exponent field), not the value it stands for."""
        return self.hardware_weights(quantizer_w).format

    # -- integer reference path ----------------------------------------------------------------
    def integer_weights(self, quantizer_w, kernel, x_step: float, x_max: int) -> IntegerWeights:
        """The shifter's stored fields: per weight its sign (-1, 0, 1) and shift (0..max_shift); one
        accumulator unit is s_w 2^-max_shift (the "shift" datapath)."""
        view = self.hardware_weights(quantizer_w).integer(jnp.asarray(kernel))
        sign, shift, max_shift = _pot_parts(view)
        sign, shift = np.asarray(sign, np.int32), np.asarray(shift, np.int32)
        return IntegerWeights("shift", {"sign": sign, "shift": shift}, per_channel(view.scale, np.shape(kernel)),
                              l1_limit(np.abs(sign) * 2.0 ** (int(max_shift) - shift)),
                              attrs={"max_shift": int(max_shift)})

    def dense_integer(self, x: IntegerView, w: IntegerView) -> jax.Array:
        """The dense output from integer views: int32 shift-accumulate, then one rescale."""
        sign, shift, max_shift = _pot_parts(w)
        return _rescale(shift_accumulate(x.codes, sign, shift, max_shift), x, w)

    def conv_integer(self, x: IntegerView, w: IntegerView, strides: Sequence[int] = (1, 1),
                     padding: Padding = "SAME", groups: int = 1) -> jax.Array:
        sign, shift, max_shift = _pot_parts(w)
        return _rescale(shift_conv(x.codes, sign, shift, max_shift, strides, padding, groups), x, w)

    # -- cost ----------------------------------------------------------------------------------
    def digital_cost(self, shape: ContractionShape, x_format: NumberFormat, w_format: NumberFormat,
                     acc_bits: int) -> tuple[UnitOp, ...]:
        """Per dense product one "shift" unit operation (shift into the accumulator; zero weights skipped via
        `Operator.cost(density=...)`). A float activation times a power of two is an exponent addition
        ("fshift"); only float weights (``weight_bits=None`` with a float quantizer) multiply ("fmac")."""
        if w_format.is_float:
            return (UnitOp("fmac", wider_float(x_format, w_format), None, acc_bits, shape.fan_in, shape.macs),)
        if x_format.is_float:
            return (UnitOp("fshift", x_format, w_format, acc_bits, shape.fan_in, shape.macs),)
        return (UnitOp("shift", x_format, w_format, acc_bits, shape.fan_in, shape.macs),)
