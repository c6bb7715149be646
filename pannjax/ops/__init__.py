"""Operators: how a layer contracts inputs with weights, and what that costs."""

from pannjax.ops.base import ComputeMode, ContractionShape, Operator, OpCount, normalize_padding
from pannjax.ops.mac import MacOperator

__all__ = ["ComputeMode", "ContractionShape", "MacOperator", "OpCount", "Operator", "normalize_padding"]
