"""`bound_layers`: the one walk over a model that every consumer outside `pannjax.nn` uses.

It runs `model.apply` once under a Flax method interceptor and returns one `BoundLayer` per `QConv` /
`QDense` call, in call order: the module path, the contraction's shapes, the operator, both quantizers
already bound to the layer's learned parameters (e.g. LSQ steps) with the input signedness resolved, the
float kernel, and -- on request -- the layer's input batch. Everything a pricer, the toggle simulator,
calibration, weight freezing, pruning, PANN power or the ENOS energy table needs is a property of the
record, so no consumer looks parameters up by path strings or writes its own interceptor.

The walk traces the model under `jax.eval_shape` (nothing is computed) unless the inputs are captured
(one `jax.jit`-compiled apply on the real batch). With abstract variables (`jax.ShapeDtypeStruct` leaves)
the kernel is None and weight statistics are unknown (density 1).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pannjax.errors import ConfigError
from pannjax.hw.accumulator import AccumulatorWidth, observed_bits, worst_case_bits
from pannjax.nn.layers import QConv, QDense
from pannjax.numerics import NumberFormat
from pannjax.ops import ContractionShape, MacOperator, Operator, UnitOp
from pannjax.ops.base import normalize_padding
from pannjax.quant import Quantizer
from pannjax.quant.base import IntegerView


def _is_concrete(tree: Any) -> bool:
    return not any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree_util.tree_leaves(tree))


def bind_quantizer(quantizer: Quantizer, params: Any, name: str) -> Quantizer:
    """`quantizer` with its learned fields set from `params[name]` (a layer's own parameters)."""
    learned = params.get(name) if quantizer.learned_fields else None
    return quantizer.with_learned(**learned) if learned else quantizer


@dataclasses.dataclass(frozen=True, eq=False)
class BoundLayer:
    """One arithmetic layer call, bound to its parameters (see module docstring).

    Shapes include the batch. `kernel` is the stored float kernel (numpy; None when abstract), `inputs`
    the layer's input batch when captured (`bound_layers(..., capture_inputs=True)`)."""

    path: str
    kind: str  # "conv" or "dense"
    operator: Operator
    quantizer_w: Quantizer
    quantizer_x: Quantizer
    input_signed: bool
    input_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    strides: tuple[int, ...] = (1, 1)
    padding: Any = "SAME"
    groups: int = 1
    kernel: np.ndarray | None = None
    inputs: np.ndarray | None = None

    # -- shapes ---------------------------------------------------------------------------------
    @property
    def contraction(self) -> ContractionShape:
        """Per-example outputs and reduction length (fan-in = kh kw C_in / groups for a conv)."""
        return ContractionShape(outputs=math.prod(self.output_shape[1:]), fan_in=math.prod(self.kernel_shape[:-1]))

    @property
    def macs(self) -> int:
        return self.contraction.macs

    # -- the numbers the hardware computes with ---------------------------------------------------
    @property
    def hardware_quantizer_w(self) -> Quantizer:
        """The weight quantizer as the datapath sees it (after the operator's own rounding)."""
        return self.operator.hardware_weights(self.quantizer_w)

    @property
    def x_format(self) -> NumberFormat:
        """Activation format the datapath receives."""
        return self.operator.input_format(self.quantizer_x.format)

    @property
    def w_format(self) -> NumberFormat:
        """Weight format the datapath computes with (`Operator.weight_format`)."""
        return self.operator.weight_format(self.quantizer_w)

    def weights(self) -> np.ndarray | None:
        """The float weights the contraction uses: `operator.weight_transform(quantizer_w.quantize(kernel))`."""
        if self.kernel is None:
            return None
        return np.asarray(self.operator.weight_transform(self.quantizer_w.quantize(jnp.asarray(self.kernel))))

    def weight_view(self) -> IntegerView | None:
        """Integer codes and scale of the hardware weights; None for float weights or abstract kernels."""
        if self.kernel is None or self.w_format.is_float:
            return None
        return self.hardware_quantizer_w.integer(jnp.asarray(self.kernel))

    def input_view(self) -> IntegerView | None:
        """Integer codes of the captured input batch; None for float activations or when not captured."""
        if self.inputs is None or self.quantizer_x.format.is_float:
            return None
        return self.quantizer_x.integer(jnp.asarray(self.inputs))

    @property
    def density(self) -> float:
        """Fraction of non-zero hardware weights (1.0 when the kernel is abstract)."""
        view = self.weight_view()
        if view is not None:
            return float(np.mean(np.asarray(view.codes) != 0))
        w = self.weights()
        return 1.0 if w is None else float(np.mean(w != 0))

    @property
    def additions(self) -> float | None:
        """Mean |w_int| of addition-count (PANN) weights: the R the layer really runs (with an abstract kernel,
        the quantizer's target `additions`); None for other weights."""
        if self.w_format.kind != "count":
            return None
        view = self.weight_view()
        if view is None:
            return float(self.hardware_quantizer_w.additions)
        return float(np.mean(np.abs(np.asarray(view.codes))))

    def accumulator_width(self) -> AccumulatorWidth | None:
        """Worst-case and, with captured inputs, observed accumulator widths of a digital integer layer whose
        accumulator sums w_int x_int (a linear operator or PANN counts; `pannjax.hw.accumulator`); None for
        float, abstract, analog (its sums are digitised per crossbar chunk) or other layers."""
        view = self.weight_view()
        linear = self.operator.linear_contraction or self.w_format.kind == "count"
        if view is None or self.x_format.is_float or not linear or self.operator.analog:
            return None
        worst = worst_case_bits(np.asarray(view.codes), self.x_format)
        inputs = self.input_view()
        if inputs is None:
            return AccumulatorWidth(worst)
        x, w = jnp.asarray(inputs.codes, jnp.float32), jnp.asarray(view.codes, jnp.float32)
        mac = MacOperator()
        acc = mac.dense(x, w) if self.kind == "dense" else mac.conv(x, w, self.strides,
                                                                     normalize_padding(self.padding), self.groups)
        return AccumulatorWidth(worst, observed_bits(np.asarray(acc)))

    def units(self, acc_bits: int = 32) -> tuple[UnitOp, ...]:
        """The layer's work per example as unit operations (`Operator.cost` on the hardware formats)."""
        return tuple(self.operator.cost(self.contraction, self.x_format, self.w_format, acc_bits,
                                        density=self.density, additions=self.additions))

    def at_density(self, density: float) -> "BoundLayer":
        """This layer as if a fraction `density` of its hardware weights were non-zero: a nominal pruning
        level priced without a pruned kernel (e.g. of an abstract layer)."""
        if not 0.0 <= density <= 1.0:
            raise ConfigError(f"layer {self.path}: density={density!r}, expected a fraction in [0, 1]")
        return _AtDensity(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, nominal_density=density)


@dataclasses.dataclass(frozen=True, eq=False)
class _AtDensity(BoundLayer):
    """`BoundLayer.at_density`: the layer with its weight density given, not measured."""

    nominal_density: float = 1.0

    @property
    def density(self) -> float:
        return self.nominal_density


def params_at(params: Any, path: str) -> Any:
    """The parameters of the module at '/'-joined `path` in a params tree (a layer's own scope)."""
    for key in path.split("/"):
        params = params[key]
    return params


def bound_layers(model: nn.Module, variables: Any, x: Any, capture_inputs: bool = False,
                 **call_kwargs) -> list[BoundLayer]:
    """Every QConv/QDense call of `model.apply(variables, x, **call_kwargs)` as a `BoundLayer`, in call order.

    `x` may be an array or a `jax.ShapeDtypeStruct`. Without `capture_inputs` nothing is computed: the
    model is traced under `jax.eval_shape` and each layer's kernel and learned quantizer parameters are
    read from `variables` at the layer's own scope. With `capture_inputs` (a real batch and concrete
    variables) one jit-compiled apply also returns each layer's input batch."""
    static: list[dict] = []

    def run(variables, x):
        inputs = []

        def interceptor(next_fun, args, kwargs, context):
            module = context.module
            if context.method_name != "__call__" or not isinstance(module, (QConv, QDense)):
                return next_fun(*args, **kwargs)
            out = next_fun(*args, **kwargs)
            conv = isinstance(module, QConv)
            static.append(dict(
                path="/".join(module.scope.path), kind="conv" if conv else "dense", operator=module.operator,
                quantizer_x=module.quantizer_x.with_input_sign(module.input_signed),
                quantizer_w=module.quantizer_w, input_signed=bool(module.input_signed),
                input_shape=tuple(args[0].shape), kernel_shape=tuple(module.variables["params"]["kernel"].shape),
                output_shape=tuple(out.shape),
                **(dict(strides=tuple(module.strides), padding=module.padding, groups=module.groups) if conv else {})))
            inputs.append(args[0])
            return out

        with nn.intercept_methods(interceptor):
            model.apply(variables, x, **call_kwargs)
        return inputs

    concrete = _is_concrete(variables)
    if capture_inputs:
        if not concrete or isinstance(x, jax.ShapeDtypeStruct):
            raise ConfigError("bound_layers(capture_inputs=True) needs concrete variables and a real input batch")
        captured = [np.asarray(a) for a in jax.device_get(jax.jit(run)(variables, x))]
    else:
        jax.eval_shape(run, variables, x)
        captured = [None] * len(static)
    layers = []
    for s, inp in zip(static, captured):
        if concrete:
            node = params_at(variables.get("params", {}), s["path"])
            s = dict(s, quantizer_x=bind_quantizer(s["quantizer_x"], node, "quantizer_x"),
                     quantizer_w=bind_quantizer(s["quantizer_w"], node, "quantizer_w"),
                     kernel=np.asarray(jax.device_get(node["kernel"])))
        layers.append(BoundLayer(**s, inputs=inp))
    return layers


def abstract_layers(model: nn.Module, sample: Any, **call_kwargs) -> list[BoundLayer]:
    """`bound_layers` on shapes alone: the model initialised under `jax.eval_shape` (nothing computed) on
    `sample` (an array or `jax.ShapeDtypeStruct`), so each layer carries its path, shapes, operator and
    unbound quantizers, no parameter values. `call_kwargs` go to the model's call (e.g. ``train=False``)."""
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(sample.shape, sample.dtype),
                                                  **call_kwargs))
    return bound_layers(model, variables, sample, **call_kwargs)
