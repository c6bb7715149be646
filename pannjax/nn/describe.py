"""Describe every arithmetic layer of a model without computing it.

`describe_layers` runs the model under `jax.eval_shape` (no FLOPs) with a Flax method interceptor that
records each `QConv`/`QDense` call: its path, quantizers, operator, and shapes. This is the contract the
hardware model uses to cost a whole network (DESIGN.md, "Contracts").
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax

from pannjax.nn.layers import QConv, QDense
from pannjax.ops import ContractionShape, Operator
from pannjax.quant import Quantizer


@dataclasses.dataclass(frozen=True)
class LayerRecord:
    """One arithmetic layer as seen by the hardware model (shapes exclude nothing: batch included)."""

    path: str
    kind: str  # "conv" or "dense"
    quantizer_w: Quantizer
    quantizer_x: Quantizer
    operator: Operator
    input_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    strides: tuple[int, ...] = (1, 1)
    padding: Any = "SAME"
    groups: int = 1

    @property
    def contraction(self) -> ContractionShape:
        """Per-example outputs and reduction length."""
        outputs = math.prod(self.output_shape[1:])
        fan_in = math.prod(self.kernel_shape[:-1])
        return ContractionShape(outputs=outputs, fan_in=fan_in)


def describe_layers(model: nn.Module, variables: Any, x: Any, **call_kwargs) -> list[LayerRecord]:
    """Records of every QConv/QDense call in `model.apply(variables, x, **call_kwargs)`, in call order.

    `x` may be an array or a `jax.ShapeDtypeStruct`; nothing is computed.
    """
    records: list[LayerRecord] = []

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or not isinstance(module, (QConv, QDense)):
            return next_fun(*args, **kwargs)
        out = next_fun(*args, **kwargs)
        inp = args[0]
        kernel = module.variables["params"]["kernel"]
        common = dict(
            path="/".join(module.scope.path),
            quantizer_w=module.quantizer_w,
            quantizer_x=module.quantizer_x.with_input_sign(module.input_signed),
            operator=module.operator,
            input_shape=tuple(inp.shape),
            kernel_shape=tuple(kernel.shape),
            output_shape=tuple(out.shape),
        )
        if isinstance(module, QConv):
            records.append(LayerRecord(kind="conv", strides=tuple(module.strides), padding=module.padding,
                                       groups=module.groups, **common))
        else:
            records.append(LayerRecord(kind="dense", **common))
        return out

    def run(variables, x):
        with nn.intercept_methods(interceptor):
            return model.apply(variables, x, **call_kwargs)

    jax.eval_shape(run, variables, x)
    return records
