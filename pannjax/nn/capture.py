"""Capture the integer operands every arithmetic layer really contracts, for the toggle simulator.

`capture_layer_operands` runs `model.apply` once on a real batch with a Flax method interceptor (as
`describe_layers` does) and, for each `QConv`/`QDense` call, records the integer codes of its input
activations and of its kernel as produced by the layer's own (bound) quantizers -- the streams its MAC
units are fed. Layers whose quantizers are not integer (float) get `None` codes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from pannjax.nn.layers import QConv, QDense
from pannjax.numerics import NumberFormat


@dataclasses.dataclass(frozen=True, eq=False)
class LayerOperands:
    """Integer operands of one layer call (numpy arrays; None for float arithmetic).

    x_codes: input codes, NHWC (conv) or (..., C_in) (dense); w_codes: kernel codes, HWIO or (C_in, C_out).
    """

    path: str
    kind: str
    x_codes: np.ndarray | None
    w_codes: np.ndarray | None
    x_format: NumberFormat
    w_format: NumberFormat
    strides: tuple[int, ...] = (1, 1)
    padding: Any = "SAME"
    groups: int = 1


def _bound_quantizer(module: nn.Module, name: str, quantizer):
    learned = module.variables.get("params", {}).get(name) if quantizer.learned_fields else None
    return quantizer.with_learned(**learned) if learned else quantizer


def capture_layer_operands(model: nn.Module, variables: Any, x: Any, **call_kwargs) -> list[LayerOperands]:
    """Operands of every QConv/QDense call of `model.apply(variables, x, **call_kwargs)`, in call order."""
    records: list[LayerOperands] = []

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or not isinstance(module, (QConv, QDense)):
            return next_fun(*args, **kwargs)
        out = next_fun(*args, **kwargs)
        inp = args[0]
        kernel = module.variables["params"]["kernel"]
        qx = _bound_quantizer(module, "quantizer_x", module.quantizer_x.with_input_sign(module.input_signed))
        qw = _bound_quantizer(module, "quantizer_w", module.quantizer_w)
        fx, fw = qx.format, qw.format
        xc = np.asarray(jax.device_get(qx.integer(inp).codes)) if not fx.is_float else None
        wc = np.asarray(jax.device_get(qw.integer(kernel).codes)) if not fw.is_float else None
        common = dict(path="/".join(module.scope.path), x_codes=xc, w_codes=wc, x_format=fx, w_format=fw)
        if isinstance(module, QConv):
            records.append(LayerOperands(kind="conv", strides=tuple(module.strides), padding=module.padding,
                                         groups=module.groups, **common))
        else:
            records.append(LayerOperands(kind="dense", **common))
        return out

    with nn.intercept_methods(interceptor):
        model.apply(variables, x, **call_kwargs)
    return records
