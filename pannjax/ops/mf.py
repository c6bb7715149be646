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
import numpy as np
from flax import struct

from pannjax.numerics import NumberFormat
from pannjax.ops.base import ContractionShape, Operator, UnitOp, linear_conv, wider_float
from pannjax.ops.integer import IntegerWeights, datapath, input_grid, integer_contraction, l1_limit
from pannjax.quant.ste import sign_ste


@struct.dataclass
class MfOperator(Operator):
    """y = sum sign(x)|w| + sign(w)|x| as two MAC contractions of transformed operands (module docstring)."""

    name = "mf"

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

    def integer_weights(self, quantizer_w, kernel, x_step: float, x_max: int) -> IntegerWeights:
        """sign(x)|w| + sign(w)|x| adds magnitudes of activations and weights, so both are held in one
        format: |w| on the activations' grid s_x 2^-k (`pannjax.ops.integer.input_grid`; exact when the steps
        agree), sign(w) as -1/0/+1; one accumulator unit s_x 2^-k."""
        view = self.integer_view(quantizer_w, kernel)
        magnitude, k = input_grid(np.abs(np.asarray(view.codes)), view.scale, x_step, x_max)
        sign = np.sign(np.asarray(view.codes)).astype(np.int32)
        fan_in = int(np.prod(sign.shape[:-1]))
        limit = fan_in * 2.0**k + l1_limit(magnitude)  # per unit of max |x|
        return IntegerWeights("mf", {"magnitude": magnitude, "sign": sign}, np.full(sign.shape[-1], 2.0**-k),
                              limit, attrs={"grid_bits": k})


@datapath("mf")
def mf_datapath(x, arrays, attrs, geometry) -> list:
    """sum sign(x) |w|_g + 2^k sum sign(w) |x|: two integer contractions on the common grid
    (`MfOperator.integer_weights`)."""
    x = x.astype(jnp.int32)
    magnitudes = integer_contraction(jnp.sign(x), arrays["magnitude"],
                                     {**geometry, "x_abs": 1, "w_abs": int(geometry.get("w_abs", 2**31))})
    signs = integer_contraction(jnp.abs(x), arrays["sign"], {**geometry, "w_abs": 1})
    return [(magnitudes + (signs << attrs["grid_bits"]), True)]
