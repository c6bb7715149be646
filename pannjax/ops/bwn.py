"""`BwnOperator`: binary weights, real activations (Binary-Weight-Networks, Rastegari et al.,
"XNOR-Net: ImageNet Classification Using Binary Convolutional Neural Networks", ECCV 2016, Sec. 3.1;
BinaryConnect, Courbariaux et al. NeurIPS 2015):

    W_b = alpha * sign(W),     alpha = mean |W| over each output channel's weights (per column of a dense
                               kernel, per O of an HWIO kernel): the optimal scale of Sec. 3.1, Eq. 4

and y = x (*) W_b, one ordinary convolution (`linear_conv`) on the binarised kernel.

Gradient: sign has the clipped straight-through estimator (`binarize_ste`, d/dw := 1 for |w| <= 1);
alpha keeps its gradient, so dW_b/dW = 1/n + alpha * 1_{|W| <= 1} as in XNOR-Net Sec. 3.1. Every
weight is +-alpha (a zero weight gives -alpha, see `binarize_ste`).

Cost per output: fan_in sign-controlled additions of the activation into the accumulator ("add",
B bits; float: "fadd") and one multiplication by alpha ("mul" b_x x b_x, float: "fmul").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from pannjax.numerics import NumberFormat
from pannjax.ops.base import ComputeMode, ContractionShape, LinearOperator, OpCount
from pannjax.quant.ste import binarize_ste


def binary_weights(w: jax.Array) -> jax.Array:
    """alpha * sign(w), alpha = mean |w| over all axes but the last (output channels), with the clipped
    STE for sign."""
    alpha = jnp.mean(jnp.abs(w), axis=tuple(range(w.ndim - 1)), keepdims=True)
    return alpha * binarize_ste(w)


def scaling_cost(shape: ContractionShape, x_format: NumberFormat, multiplies: int) -> OpCount:
    """`multiplies` rescaling multiplications per output (alpha, and beta/K for XNOR)."""
    if x_format.is_float:
        return OpCount("fmul", (x_format.bits,), multiplies * shape.outputs)
    return OpCount("mul", (x_format.bits, x_format.bits), multiplies * shape.outputs)


@struct.dataclass
class BwnOperator(LinearOperator):
    """Binary weights sign(w) * alpha with real activations: MAC on the binarised kernel (module docstring)."""

    name = "bwn"
    mode: ComputeMode = struct.field(pytree_node=False, default_factory=ComputeMode)

    def weight_transform(self, w: jax.Array) -> jax.Array:
        return binary_weights(w)

    def digital_cost(self, shape: ContractionShape, x_format: NumberFormat, w_format: NumberFormat,
                     acc_bits: int) -> tuple[OpCount, ...]:
        add = OpCount("fadd", (x_format.bits,), shape.macs) if x_format.is_float \
            else OpCount("add", (acc_bits,), shape.macs)
        return (add, scaling_cost(shape, x_format, 1))
