"""`MacOperator`: ordinary multiply-accumulate, y_j = sum_i x_i * w_ij (the reference operator)."""

from __future__ import annotations

from flax import struct

from pannjax.numerics import NumberFormat
from pannjax.ops.base import ContractionShape, LinearOperator, UnitOp, wider_float


@struct.dataclass
class MacOperator(LinearOperator):
    """Dense: `x @ w`. Conv: `lax.conv_general_dilated` (NHWC/HWIO, any stride, padding, groups, so
    depthwise convs are groups == C_in). Cost per output: fan_in "mac" unit operations (b_x x b_w
    multiply into the B-bit accumulator); float operands: "fmac". PANN addition-count weights run here
    as repeated additions (`accepts_counts`, see `Operator.cost`)."""

    name = "mac"
    accepts_counts = True

    def digital_cost(self, shape: ContractionShape, x_format: NumberFormat, w_format: NumberFormat,
                     acc_bits: int) -> tuple[UnitOp, ...]:
        if x_format.is_float or w_format.is_float:
            return (UnitOp("fmac", wider_float(x_format, w_format), None, acc_bits, shape.fan_in, shape.macs),)
        return (UnitOp("mac", x_format, w_format, acc_bits, shape.fan_in, shape.macs),)
