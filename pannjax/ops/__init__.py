"""Arithmetic operators: frozen pytree dataclasses with dense/conv forms and a `cost` in unit operations."""

from pannjax.ops.base import (ContractionShape, LinearOperator, Operator, OpCount, UnitOp,
                              normalize_padding)
from pannjax.ops.adder import AdderOperator, adder_lr_scaling
from pannjax.ops.bwn import BwnOperator
from pannjax.ops.in_memory import Analog, InMemory
from pannjax.ops.mac import MacOperator
from pannjax.ops.mf import MfOperator
from pannjax.ops.shift import ShiftOperator, shift_accumulate, shift_conv
from pannjax.ops.xnor import XnorOperator, xnor_popcount_conv, xnor_popcount_dense

__all__ = [
    "AdderOperator", "Analog", "BwnOperator", "ContractionShape", "InMemory", "LinearOperator", "MacOperator",
    "MfOperator", "OpCount", "Operator", "UnitOp", "ShiftOperator", "XnorOperator", "adder_lr_scaling",
    "normalize_padding", "shift_accumulate", "shift_conv", "xnor_popcount_conv", "xnor_popcount_dense",
]
