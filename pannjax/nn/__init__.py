"""Flax layers that take quantizer and operator pytrees, and the per-layer arithmetic policy."""

from pannjax.nn.describe import LayerRecord, describe_layers
from pannjax.nn.layers import QConv, QDense
from pannjax.nn.policy import FLOAT_MAC, ArithPolicy, LayerArith

__all__ = ["FLOAT_MAC", "ArithPolicy", "LayerArith", "LayerRecord", "QConv", "QDense", "describe_layers"]
