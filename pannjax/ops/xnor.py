"""`XnorOperator`: both operands binarised, XNOR-Net scaling (Rastegari et al., "XNOR-Net: ImageNet
Classification Using Binary Convolutional Neural Networks", ECCV 2016, Sec. 3.2):

    y = (sign(x) (*) sign(w)) * alpha * K

  * alpha = mean |w| per output channel (Sec. 3.1, as `BwnOperator`);
  * K = the XNOR-Net K matrix (Sec. 3.2, Fig. 2): A = mean over input channels of |x| at every input
    position (per group for grouped convs), K = A (*) k with k the kh x kw box filter 1/(kh*kw), same
    strides and padding as the conv, so K holds beta for every output position of every example.
    Dense: K = mean |x| per example. `input_scale="none"` drops K (binary activations without
    scaling, as BinaryNet).
Binarisation is +1 for u > 0, -1 otherwise (`binarize_ste`): a ReLU output becomes active/inactive
(with sign(0) = +1 every post-ReLU activation would be +1). Zero padding contributes 0.

Arithmetic. With x_b, w_b in {-1, +1} encoded as bits (1 for +1), x_b . w_b = 2 * popcount(XNOR) - n over
the n valid bits. `xnor_popcount_dense` / `xnor_popcount_conv` compute exactly that on bit-packed
uint32 words (padding positions masked out): the integer reference, equal to the float path's
`linear_conv(sign x, sign w)` bit for bit (`XnorOperator.conv_integer` / `dense_integer`).

Gradients: clipped straight-through estimator for both signs (`binarize_ste`, 1 for |u| <= 1, as
XNOR-Net / BinaryNet); alpha and K keep their true gradients.

Cost per output: one "xnor" unit operation (XNOR of two fan_in-bit words and the popcount of the result)
and the rescaling multiplications (alpha, and K unless `input_scale="none"`; "mult" or "fmult" at the
activation width). Computing A and K is O(1/C_out) of this per output and not counted. The weights the
datapath receives (and an accelerator moves) are one sign bit each (`hardware_weights`).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pannjax.errors import ConfigError
from pannjax.numerics import NumberFormat
from pannjax.ops.base import (ContractionShape, Operator, Padding, UnitOp, check_conv_shapes,
                              linear_conv, normalize_padding)
from pannjax.ops.bwn import SIGN_BIT, SignWeights, scaling_cost
from pannjax.ops.integer import IntegerWeights, datapath, per_channel
from pannjax.quant.base import Quantizer, Requantized
from pannjax.quant.ste import binarize_ste

INPUT_SCALES = ("k_matrix", "none")
WORD = 32


def pack_bits(bits: jax.Array) -> jax.Array:
    """(..., n) booleans -> (..., ceil(n / 32)) uint32 words, bit b of word k = element 32 k + b."""
    n = bits.shape[-1]
    words = -(-n // WORD)
    bits = jnp.pad(bits, [(0, 0)] * (bits.ndim - 1) + [(0, words * WORD - n)])
    bits = bits.reshape(*bits.shape[:-1], words, WORD).astype(jnp.uint32)
    return jnp.sum(bits << jnp.arange(WORD, dtype=jnp.uint32), axis=-1, dtype=jnp.uint32)


def _popcount_dot(x_bits: jax.Array, x_valid: jax.Array, w_bits: jax.Array) -> jax.Array:
    """sum over valid positions of (+-1) x (+-1): 2 * popcount(XNOR & valid) - popcount(valid).

    x_bits, x_valid: (..., words); w_bits: (words, C_out). Returns int32 (..., C_out)."""
    xnor = ~(x_bits[..., :, None] ^ w_bits) & x_valid[..., :, None]
    agree = jnp.sum(jax.lax.population_count(xnor).astype(jnp.int32), axis=-2)
    valid = jnp.sum(jax.lax.population_count(x_valid).astype(jnp.int32), axis=-1)
    return 2 * agree - valid[..., None]


def xnor_popcount_dense(x_sign: jax.Array, w_sign: jax.Array) -> jax.Array:
    """Integer dot products of +-1 operands, x_sign (..., C_in), w_sign (C_in, C_out), by XNOR+popcount."""
    valid = jnp.ones(x_sign.shape, bool)
    return _popcount_dot(pack_bits(x_sign > 0), pack_bits(valid), pack_bits((w_sign > 0).T).T)


def xnor_popcount_conv(x_sign: jax.Array, w_sign: jax.Array, strides: Sequence[int] = (1, 1),
                       padding: Padding = "SAME", groups: int = 1) -> jax.Array:
    """Integer convolution of +-1 operands (NHWC / HWIO, zero padding contributes 0) by XNOR+popcount."""
    check_conv_shapes(x_sign, w_sign, groups)
    kh, kw, cg, c_out = w_sign.shape
    patches = jax.lax.conv_general_dilated_patches(  # features ordered (C_in, kh, kw), groups contiguous
        x_sign.astype(jnp.float32), (kh, kw), tuple(strides), normalize_padding(padding),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    n, ho, wo, _ = patches.shape
    patches = patches.reshape(n, ho, wo, groups, cg * kh * kw)
    og = c_out // groups
    w_rows = w_sign.reshape(kh, kw, cg, groups, og).transpose(3, 2, 0, 1, 4).reshape(groups, cg * kh * kw, og)
    w_words = jnp.swapaxes(pack_bits(jnp.swapaxes(w_rows > 0, 1, 2)), 1, 2)  # (G, words, O_g)
    out = jax.vmap(_popcount_dot, in_axes=(3, 3, 0), out_axes=3)(
        pack_bits(patches > 0), pack_bits(patches != 0), w_words)
    return out.reshape(n, ho, wo, c_out)


@datapath("xnor")
def xnor_datapath(x, arrays, attrs, geometry) -> list:
    """XNOR + popcount of sign(x) and the stored weight bits; with the K matrix (``attrs["k_matrix"]``) the
    count is multiplied by the integer K sum: sum of |x| over the input channels of the group and the
    kh x kw window (zero padding), i.e. K of the float path times C_g kh kw / s_x."""
    x = x.astype(jnp.int32)
    x_sign = jnp.where(x > 0, 1, -1).astype(jnp.int32)
    w_sign = arrays["w"]
    if geometry["kind"] == "dense":
        counts = xnor_popcount_dense(x_sign, w_sign)
        k_sum = jnp.sum(jnp.abs(x), axis=-1, keepdims=True)
    else:
        strides, padding = tuple(geometry["strides"]), normalize_padding(geometry["padding"])
        groups = geometry["groups"]
        counts = xnor_popcount_conv(x_sign, w_sign, strides, padding, groups)
        kh, kw, _, c_out = w_sign.shape
        n, h, wd, c_in = x.shape
        a = jnp.sum(jnp.abs(x).reshape(n, h, wd, groups, c_in // groups), axis=-1)
        pads = jax.lax.padtype_to_pads((h, wd), (kh, kw), strides, padding) if isinstance(padding, str) else padding
        k_sum = jax.lax.reduce_window(a, jnp.int32(0), jax.lax.add, (1, kh, kw, 1), (1, *strides, 1),
                                      ((0, 0), *pads, (0, 0)))
        k_sum = k_sum if groups == 1 else jnp.repeat(k_sum, c_out // groups, axis=-1)
    return [(counts * k_sum if attrs["k_matrix"] else counts, True)]


@struct.dataclass
class XnorOperator(Operator):
    """sign(x) (*) sign(w) * alpha * K (module docstring); `input_scale`: "k_matrix" or "none"."""

    name = "xnor"
    input_scale: str = struct.field(pytree_node=False, default="k_matrix")

    def __post_init__(self):
        if self.input_scale not in INPUT_SCALES:
            raise ConfigError(f"op.input_scale={self.input_scale!r}: expected one of {INPUT_SCALES}")

    # -- scales --------------------------------------------------------------------------------
    @staticmethod
    def _alpha(w: jax.Array) -> jax.Array:
        return jnp.mean(jnp.abs(w), axis=tuple(range(w.ndim - 1)))

    def _dense_scale(self, x: jax.Array, w: jax.Array) -> jax.Array:
        alpha = self._alpha(w)
        return alpha if self.input_scale == "none" else alpha * jnp.mean(jnp.abs(x), axis=-1, keepdims=True)

    def _conv_scale(self, x, w, strides, padding, groups) -> jax.Array:
        alpha = self._alpha(w)
        if self.input_scale == "none":
            return alpha
        kh, kw, _, c_out = w.shape
        n, h, wd, c_in = x.shape
        a = jnp.mean(jnp.abs(x).reshape(n, h, wd, groups, c_in // groups), axis=-1)  # (N, H, W, G)
        pads = jax.lax.padtype_to_pads((h, wd), (kh, kw), strides, padding) if isinstance(padding, str) else padding
        # K = A (*) box filter: a windowed sum (cheaper than a 1-channel convolution), zero padding
        k = jax.lax.reduce_window(a, 0.0, jax.lax.add, (1, kh, kw, 1), (1, *strides, 1),
                                  ((0, 0), *pads, (0, 0))) / (kh * kw)  # (N, Ho, Wo, G)
        return alpha * (k if groups == 1 else jnp.repeat(k, c_out // groups, axis=-1))

    # -- float path: binarise once, contract (analog: per crossbar chunk), rescale --------------
    def dense(self, x: jax.Array, w: jax.Array, rng: jax.Array | None = None, in_memory=None) -> jax.Array:
        return super().dense(binarize_ste(x), binarize_ste(w), rng, in_memory) * self._dense_scale(x, w)

    def conv(self, x: jax.Array, w: jax.Array, strides: Sequence[int] = (1, 1), padding: Padding = "SAME",
             groups: int = 1, rng: jax.Array | None = None, in_memory=None) -> jax.Array:
        check_conv_shapes(x, w, groups)
        strides, padding = tuple(int(s) for s in strides), normalize_padding(padding)
        y = super().conv(binarize_ste(x), binarize_ste(w), strides, padding, groups, rng, in_memory)
        return y * self._conv_scale(x, w, strides, padding, groups)

    def dense_digital(self, x: jax.Array, w: jax.Array) -> jax.Array:
        return jnp.matmul(x, w)

    def conv_digital(self, x, w, strides, padding, groups) -> jax.Array:
        return linear_conv(x, w, strides, padding, groups)

    # -- integer reference path (digital mode) ---------------------------------------------------
    def dense_integer(self, x: jax.Array, w: jax.Array) -> jax.Array:
        """`dense` computed with XNOR + popcount on bit-packed signs, then the same rescaling."""
        counts = xnor_popcount_dense(binarize_ste(x), binarize_ste(w))
        return counts.astype(x.dtype) * self._dense_scale(x, w)

    def conv_integer(self, x: jax.Array, w: jax.Array, strides: Sequence[int] = (1, 1),
                     padding: Padding = "SAME", groups: int = 1) -> jax.Array:
        strides, padding = tuple(int(s) for s in strides), normalize_padding(padding)
        counts = xnor_popcount_conv(binarize_ste(x), binarize_ste(w), strides, padding, groups)
        return counts.astype(x.dtype) * self._conv_scale(x, w, strides, padding, groups)

    def hardware_weights(self, quantizer_w) -> Quantizer:
        """The datapath stores one sign bit per weight (`SignWeights` of the quantized kernel), whatever the
        weight quantizer produced: that is what an accelerator moves."""
        return Requantized(quantizer_w, SignWeights())

    def integer_weights(self, quantizer_w, kernel, x_step: float, x_max: int) -> IntegerWeights:
        """The hardware weights' integer view: one bit per weight (sign of the quantized weight, +-1) and
        alpha = mean |w| per output channel; with the K matrix one accumulator unit is alpha s_x / (C_g kh kw)
        (dense: alpha s_x / C_in)."""
        view = self.integer_view(quantizer_w, kernel)
        bits = np.asarray(view.codes, np.int32)
        alpha = per_channel(view.scale, bits.shape)
        k_matrix = self.input_scale == "k_matrix"
        fan_in = float(np.prod(bits.shape[:-1]))
        scale = alpha / fan_in if k_matrix else alpha
        # |popcount| <= fan_in, and the K sum <= fan_in max|x|
        limit = np.full(bits.shape[-1], fan_in * fan_in if k_matrix else fan_in)
        return IntegerWeights("xnor", {"w": bits}, scale, limit, x_scaled=k_matrix, attrs={"k_matrix": k_matrix})

    def digital_cost(self, shape: ContractionShape, x_format: NumberFormat, w_format: NumberFormat,
                     acc_bits: int) -> tuple[UnitOp, ...]:
        return (UnitOp("xnor", SIGN_BIT, SIGN_BIT, acc_bits, shape.fan_in, shape.outputs),
                scaling_cost(shape, x_format, 1 if self.input_scale == "none" else 2, acc_bits))
