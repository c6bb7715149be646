"""Flax layers that take quantizer and operator pytrees, and the per-layer arithmetic policy."""

from pannjax.nn.bound import BoundLayer, abstract_layers, bound_layers
from pannjax.nn.graph import Node, trace_graph
from pannjax.nn.layers import QConv, QDense
from pannjax.nn.policy import FLOAT_MAC, ArithPolicy, LayerArith

__all__ = ["FLOAT_MAC", "ArithPolicy", "BoundLayer", "LayerArith", "Node", "QConv", "QDense", "abstract_layers",
           "bound_layers", "trace_graph"]
