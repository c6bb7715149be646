"""`BwnOperator`: binary weights, real activations (Binary-Weight-Networks, Rastegari et al.,
"XNOR-Net: ImageNet Classification Using Binary Convolutional Neural Networks", ECCV 2016, Sec. 3.1;
BinaryConnect, Courbariaux et al. NeurIPS 2015):

    W_b = alpha * sign(W),     alpha = mean |W| over each output channel's weights (per column of a dense
                               kernel, per O of an HWIO kernel): the optimal scale of Sec. 3.1, Eq. 4

and y = x (*) W_b, one ordinary convolution (`linear_conv`) on the binarised kernel.

Gradient: sign has the clipped straight-through estimator (`binarize_ste`, d/dw := 1 for |w| <= 1);
alpha keeps its gradient, so dW_b/dW = 1/n + alpha * 1_{|W| <= 1} as in XNOR-Net Sec. 3.1. Every
weight is +-alpha (a zero weight gives -alpha, see `binarize_ste`).

Cost per output: fan_in "sign_select" unit operations (the activation or its negation added into the
B-bit accumulator; float activations: "fadd") and one multiplication by alpha ("mult" b_x x b_x, float:
"fmult"). The weights the datapath receives are one sign bit each (`SignWeights`), whatever the weight
quantizer produced.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from pannjax.numerics import NumberFormat
from pannjax.ops.base import ContractionShape, LinearOperator, UnitOp
from pannjax.ops.integer import datapath, integer_contraction
from pannjax.quant.base import IntegerView, Quantizer, Requantized
from pannjax.quant.ste import binarize_ste

SIGN_BIT = NumberFormat("int", 1, True)  # one stored sign bit per weight; codes are -1 / +1


def binary_weights(w: jax.Array) -> jax.Array:
    """alpha * sign(w), alpha = mean |w| over all axes but the last (output channels), with the clipped
    STE for sign."""
    alpha = jnp.mean(jnp.abs(w), axis=tuple(range(w.ndim - 1)), keepdims=True)
    return alpha * binarize_ste(w)


@struct.dataclass
class SignWeights(Quantizer):
    """Binary weights alpha * sign(w) (`binary_weights`); integer view: codes sign(w) in {-1, +1}, scale alpha."""

    def quantize(self, x: jax.Array) -> jax.Array:
        return binary_weights(x)

    def integer(self, x: jax.Array) -> IntegerView:
        alpha = jnp.mean(jnp.abs(x), axis=tuple(range(x.ndim - 1)), keepdims=True)
        return IntegerView(binarize_ste(x).astype(jnp.int32), alpha, SIGN_BIT)

    @property
    def format(self) -> NumberFormat:
        return SIGN_BIT


@datapath("sign_select")
def sign_select_datapath(x, arrays, attrs, geometry) -> list:
    """Each activation added or subtracted as its weight's sign bit says (weights +-1: the sum of x w)."""
    return [(integer_contraction(x, arrays["w"], geometry), True)]


def scaling_cost(shape: ContractionShape, x_format: NumberFormat, multiplies: int, acc_bits: int) -> UnitOp:
    """`multiplies` rescaling multiplications per output (alpha, and beta/K for XNOR)."""
    unit = "fmult" if x_format.is_float else "mult"
    return UnitOp(unit, x_format, x_format, acc_bits, 1, multiplies * shape.outputs)


@struct.dataclass
class BwnOperator(LinearOperator):
    """Binary weights sign(w) * alpha with real activations: MAC on the binarised kernel (module docstring)."""

    name = "bwn"
    integer_datapath = "sign_select"

    def weight_transform(self, w: jax.Array) -> jax.Array:
        return binary_weights(w)

    def hardware_weights(self, quantizer_w) -> Quantizer:
        return Requantized(quantizer_w, SignWeights())

    def digital_cost(self, shape: ContractionShape, x_format: NumberFormat, w_format: NumberFormat,
                     acc_bits: int) -> tuple[UnitOp, ...]:
        unit = "fadd" if x_format.is_float else "sign_select"
        return (UnitOp(unit, x_format, w_format, acc_bits, shape.fan_in, shape.macs),
                scaling_cost(shape, x_format, 1, acc_bits))
