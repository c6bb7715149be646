"""`MfOperator`: the multiplication-free (MF) operator of ENOS,

    y_j = sum_i sign(x_i) * |w_ij| + sign(w_ij) * |x_i|

(Nasrin et al., "ENOS: Energy-Aware Network Operator Search for Hybrid Digital and Compute-in-Memory
DNN Accelerators", arXiv 2104.05217: the "multiplication-free" operator named in its abstract; only
the abstract was reachable from here, so the form above is our reading of it). Each "product" is a
sign-controlled addition of two magnitudes, so a digital core needs adders only. Related but not
identical: Cetin's ef-operator sign(x*w) * (|x| + |w|) (Afrasiyabi et al., arXiv 1702.02676, abstract); only the form above is offered.

Computation: both terms are ordinary contractions of transformed operands,
    y = conv(sign(x), |w|) + conv(|x|, sign(w)),
so the operator costs two convolutions (`linear_conv`, any stride/padding/groups). sign(0) = 0 (a zero
activation after ReLU contributes nothing).

Gradients: sign uses the plain straight-through estimator (d sign(u)/du := 1, `sign_ste`; the operands
are not normalised to [-1, 1], so a clipped STE would cut most gradients) and |u| its true derivative
sign(u). So dy/dx = |w| + sign(w) sign(x), dy/dw = sign(x) sign(w) + |x| per term.

Cost per output: fan_in "mf" unit operations (the two sign-adjusted magnitudes added at max(b_x, b_w) + 1
bits, then accumulated into B bits); float operands: 2 * fan_in "fadd".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from pannjax.numerics import NumberFormat
from pannjax.ops.base import ComputeMode, ContractionShape, Operator, UnitOp, linear_conv, wider_float
from pannjax.quant.ste import sign_ste


@struct.dataclass
class MfOperator(Operator):
    """y = sum sign(x)|w| + sign(w)|x| as two MAC contractions of transformed operands (module docstring)."""

    name = "mf"
    mode: ComputeMode = struct.field(pytree_node=False, default_factory=ComputeMode)

    def dense_digital(self, x: jax.Array, w: jax.Array) -> jax.Array:
        return jnp.matmul(sign_ste(x), jnp.abs(w)) + jnp.matmul(jnp.abs(x), sign_ste(w))

    def conv_digital(self, x, w, strides, padding, groups) -> jax.Array:
        return (linear_conv(sign_ste(x), jnp.abs(w), strides, padding, groups)
                + linear_conv(jnp.abs(x), sign_ste(w), strides, padding, groups))

    def digital_cost(self, shape: ContractionShape, x_format: NumberFormat, w_format: NumberFormat,
                     acc_bits: int) -> tuple[UnitOp, ...]:
        if x_format.is_float or w_format.is_float:
            return (UnitOp("fadd", wider_float(x_format, w_format), None, acc_bits, shape.fan_in, 2 * shape.macs),)
        return (UnitOp("mf", x_format, w_format, acc_bits, shape.fan_in, shape.macs),)
