"""Worked example for docs/extending.md: a ternary-weight operator added to pannjax from outside the package.

Ternary weight networks (Li, Zhang & Liu, "Ternary Weight Networks", arXiv 1605.04711, Sec. 2.2): each
output channel's weights become alpha * t with t in {-1, 0, +1},

    t = sign(w) * [|w| > delta],   delta = 0.7 * mean|w|,   alpha = mean(|w| : |w| > delta)      (Eq. 9-10)

so a product x * t is an addition, a subtraction or nothing and the layer needs one multiplication by
alpha per output. Gradients are straight-through (d alpha*t / d w = 1), as in the paper's training.

Cost per example: one "sign_select" unit operation per product (+-x into the B-bit accumulator; this
example does not model zero gating: set `skips_zero_weights = True` and the layer's weight density scales
the count), plus one b_x x 8-bit "mult" per output for alpha. Both units exist in pannjax/hw/units.py, so
the energy table and the toggle models price them with nothing else to add.

Use it (nothing in pannjax is edited):
    python experiments/train.py plugins=[docs/examples/ternary_operator.py] \
        hydra.searchpath=[file://docs/examples/configs] op=ternary
"""

import jax
import jax.numpy as jnp
from flax import struct

from pannjax.build import register_operator
from pannjax.numerics import NumberFormat
from pannjax.ops import ContractionShape, LinearOperator, UnitOp


def ternarize(w: jax.Array, threshold: float) -> jax.Array:
    """alpha * t per output channel (last axis), with a straight-through gradient."""
    axes = tuple(range(w.ndim - 1))
    delta = threshold * jnp.mean(jnp.abs(w), axis=axes, keepdims=True)
    keep = jnp.abs(w) > delta
    alpha = jnp.sum(jnp.abs(w) * keep, axis=axes, keepdims=True) / jnp.maximum(jnp.sum(keep, axis=axes, keepdims=True), 1)
    t = jnp.sign(w) * keep
    return w + jax.lax.stop_gradient(alpha * t - w)


@struct.dataclass
class TernaryOperator(LinearOperator):
    """y = x . (alpha * t): the linear contraction (inherited) on ternarised weights (module docstring)."""

    name = "ternary"
    threshold: float = struct.field(pytree_node=False, default=0.7)

    def weight_transform(self, w):
        return ternarize(w, self.threshold)

    def digital_cost(self, shape: ContractionShape, x_format, w_format, acc_bits):
        if x_format.is_float:
            return (UnitOp("fadd", x_format, None, acc_bits, shape.fan_in, shape.macs),
                    UnitOp("fmult", x_format, None, acc_bits, 1, shape.outputs))
        return (UnitOp("sign_select", x_format, w_format, acc_bits, shape.fan_in, shape.macs),
                UnitOp("mult", x_format, NumberFormat("int", 8), acc_bits, 1, shape.outputs))


register_operator("ternary", TernaryOperator)
