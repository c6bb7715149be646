"""`MacOperator`: ordinary multiply-accumulate, y_j = sum_i x_i * w_ij (the reference operator)."""

from __future__ import annotations

from flax import struct

from pannjax.numerics import NumberFormat
from pannjax.ops.base import ComputeMode, ContractionShape, LinearOperator, OpCount


@struct.dataclass
class MacOperator(LinearOperator):
    """Dense: `x @ w`. Conv: `lax.conv_general_dilated` (NHWC/HWIO, any stride, padding, groups, so
    depthwise convs are groups == C_in). Cost per output: fan_in multiplies (b_x x b_w) and fan_in
    additions into the B-bit accumulator; float operands count fmul/fadd instead."""

    name = "mac"
    mode: ComputeMode = struct.field(pytree_node=False, default_factory=ComputeMode)

    def digital_cost(self, shape: ContractionShape, x_format: NumberFormat, w_format: NumberFormat,
                     acc_bits: int) -> tuple[OpCount, ...]:
        if x_format.is_float or w_format.is_float:
            bits = max(x_format.bits, w_format.bits)
            return (OpCount("fmul", (bits,), shape.macs), OpCount("fadd", (bits,), shape.macs))
        return (OpCount("mul", (x_format.bits, w_format.bits), shape.macs),
                OpCount("add", (acc_bits,), shape.macs))
