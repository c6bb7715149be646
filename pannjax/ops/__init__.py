"""Arithmetic operators: frozen pytree dataclasses with dense/conv forms and op-count `cost`."""

from pannjax.ops.base import ComputeMode, ContractionShape, Operator, OpCount, normalize_padding
from pannjax.ops.mac import MacOperator
from pannjax.ops.shift import ShiftOperator, shift_accumulate, shift_conv

__all__ = [
    "ComputeMode", "ContractionShape", "MacOperator", "OpCount", "Operator", "ShiftOperator",
    "normalize_padding", "shift_accumulate", "shift_conv",
]
