"""The operator interface: how a layer contracts its (quantized) inputs with its (quantized) weights.

An operator is a frozen `flax.struct` dataclass with only static fields (it holds no parameters).
It offers
  * `dense(x, w)`                              x: (..., C_in), w: (C_in, C_out)
  * `conv(x, w, strides, padding, groups)`     x: NHWC, w: HWIO with I = C_in / groups
  * `cost(shape, x_format, w_format, acc_bits, density, additions)`   the layer's work per example as
                                               unit operations (`pannjax.hw.units.UnitOp`), which every
                                               pricer reads (energy table, toggle models)
  * `hardware_weights(quantizer_w)`            the quantizer whose integer view is what the datapath
                                               receives (after the operator's own weight rounding)
and says where it computes (`mode`, `analog`; see Computing modes).

Costs come from the numbers a layer computes with: an operator that rounds the weights it receives
(`weight_transform`: powers of two for shift, signs for BWN) prices the rounded weights
(`hardware_weights`), and PANN's addition-count weights (`NumberFormat.kind == "count"`) are priced as
`additions` (their realised mean |w_int|, R) additions of the activation per product, never as
multiplications (only operators with `accepts_counts`, i.e. MAC, run them).

Zero weights. `density` is the fraction of non-zero (quantized) weights of the layer, e.g. after pruning.
An operator whose digital datapath skips a product when its weight is zero (`skips_zero_weights = True`,
e.g. the bitshift-and-accumulate unit of Przewlocka-Rus & Kryjak, arXiv 2209.15257, whose pruned
weights are not computed) costs only density x its per-product counts: every count its `digital_cost`
reports is per weight-product, so all are scaled by `density` (rounded to whole operations). A MAC
array without zero gating computes every product (`skips_zero_weights = False`, the default), and an
analog crossbar reads every cell whatever its weight, so density changes nothing there.

Computing modes. An operator computes in digital logic. Compute-in-memory is a wrapper around any
operator (`pannjax.ops.in_memory.InMemory`): `dense`/`conv` take the wrapper as `in_memory` and hand it their
reduction on the transformed operands, so whatever an operator does around the reduction (XNOR's input
binarisation and scaling) stays its own. `mode` ("digital" here) and `analog` say where an operator
computes; `in_mode_of(op)` puts another operator in the same mode (the first/last MAC layers of a network).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pannjax.errors import ConfigError
from pannjax.hw.units import OpCount, UnitOp  # noqa: F401  (OpCount re-exported)
from pannjax.numerics import NumberFormat
from pannjax.ops.integer import IntegerWeights, l1_limit, per_channel

Padding = str | tuple[tuple[int, int], ...]


@dataclasses.dataclass(frozen=True)
class ContractionShape:
    """What one layer contracts per example: `outputs` output elements, each a reduction over
    `fan_in` products (so MACs = outputs * fan_in)."""

    outputs: int
    fan_in: int

    @property
    def macs(self) -> int:
        return self.outputs * self.fan_in


def check_density(density: float) -> None:
    if not 0.0 <= density <= 1.0:
        raise ConfigError(f"density={density!r}: expected a fraction of non-zero weights in [0, 1]")


def wider_float(x_format: NumberFormat, w_format: NumberFormat) -> NumberFormat:
    """The float format a float unit computes in when either operand is float: the wider operand's
    width (fp32 unless both are fp16)."""
    return NumberFormat("float", 32 if max(x_format.bits, w_format.bits) > 16 else 16)


def normalize_padding(padding: str | Sequence) -> Padding:
    """'SAME'/'VALID' or per-spatial-dim (low, high) pairs, as a hashable value."""
    if isinstance(padding, str):
        p = padding.upper()
        if p not in ("SAME", "VALID"):
            raise ConfigError(f"padding={padding!r}: expected 'SAME', 'VALID' or (lo, hi) pairs")
        return p
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def check_conv_shapes(x: jax.Array, w: jax.Array, groups: int) -> None:
    """Raise a one-line error when NHWC input and HWIO kernel do not fit together."""
    if x.ndim != 4 or w.ndim != 4:
        raise ConfigError(f"conv expects NHWC input and HWIO kernel, got shapes {x.shape} and {w.shape}")
    c_in, c_out = x.shape[-1], w.shape[-1]
    if c_in % groups or c_out % groups:
        raise ConfigError(f"groups={groups} must divide input channels {c_in} and output channels {c_out}")
    if w.shape[2] * groups != c_in:
        raise ConfigError(
            f"kernel expects {w.shape[2]}x{groups} input channels but input has {c_in} (shape {x.shape})"
        )


def linear_conv(x: jax.Array, w: jax.Array, strides, padding, groups: int) -> jax.Array:
    """The ordinary convolution y = sum x * w (NHWC input, HWIO kernel, I = C_in / groups): the contraction
    of MAC and of every operator that is a MAC on transformed operands (shift on PoT weights, BWN, ...)."""
    return jax.lax.conv_general_dilated(x, w, window_strides=strides, padding=padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


class Operator:
    """Base of every operator. Subclasses are `flax.struct.dataclass`es with static fields and implement
    `dense_digital`, `conv_digital` and `digital_cost`."""

    name: str = "operator"
    #: True when the digital contraction is the ordinary linear one (`linear_conv` / matmul) on the
    #: quantized activations and the `weight_transform`-ed quantized weights, so operators with this flag
    #: (in the same mode) differ only in their weights; a single-path search runs one contraction for all.
    linear_contraction: bool = False
    skips_zero_weights: bool = False  # digital datapath clock-gates products whose weight is zero
    #: True when PANN addition-count weights run on this operator as repeated additions (MAC only)
    accepts_counts: bool = False
    mode: str = "digital"  # where the reduction happens: digital logic, or an in-memory macro ("aimc", "dimc")
    analog: bool = False   # the reduction is digitised by ADCs (an analog macro)
    noise_std: float = 0.0  # read noise of an analog macro (training only)

    # -- what subclasses implement -------------------------------------------------------------
    def dense_digital(self, x: jax.Array, w: jax.Array) -> jax.Array:  # pragma: no cover
        raise NotImplementedError

    def conv_digital(self, x, w, strides, padding, groups) -> jax.Array:  # pragma: no cover
        raise NotImplementedError

    def digital_cost(self, shape: ContractionShape, x_format: NumberFormat, w_format: NumberFormat,
                     acc_bits: int) -> tuple[UnitOp, ...]:  # pragma: no cover
        """Unit operations per example of the digital datapath, given the hardware operand formats."""
        raise NotImplementedError

    def hardware_weights(self, quantizer_w):
        """The quantizer whose `integer` view and `format` describe the weights the datapath receives:
        `quantizer_w` itself unless the operator re-rounds it (`weight_transform`)."""
        return quantizer_w

    def weight_format(self, quantizer_w) -> NumberFormat:
        """The weight format the datapath computes with: the hardware weights' integer values
        (`value_format`; a MAC multiplies a power-of-two weight's value, not its code). An operator that
        decodes the stored code itself (the shifter) overrides this."""
        return self.hardware_weights(quantizer_w).value_format

    def input_format(self, x_format: NumberFormat) -> NumberFormat:
        """The activation format the datapath receives (XNOR binarises; identity by default)."""
        return x_format

    def weight_transform(self, w: jax.Array) -> jax.Array:
        """The operator's own rounding of the weights it receives (DeepShift-Q powers of two, binarisation),
        applied once before the contraction (analog: before the crossbar chunks). Identity by default."""
        return w

    # -- public API ----------------------------------------------------------------------------
    def in_mode_of(self, op: "Operator") -> "Operator":
        """`op` computing where this operator computes (itself when digital; `InMemory` re-wraps)."""
        return op

    def dense(self, x: jax.Array, w: jax.Array, rng: jax.Array | None = None, in_memory=None) -> jax.Array:
        """y = x w under this operator; with `in_memory` (an `InMemory` macro) the reduction runs there."""
        if w.ndim != 2 or x.shape[-1] != w.shape[0]:
            raise ConfigError(f"dense expects x (..., {w.shape[0] if w.ndim == 2 else '?'}) and w (C_in, C_out); "
                              f"got x {x.shape} and w {w.shape}")
        w = self.weight_transform(w)
        if in_memory is None:
            return self.dense_digital(x, w)
        return in_memory.contract(self.dense_digital, lambda x, w: in_memory.dense_partials(self, x, w), x, w, rng)

    def conv(self, x: jax.Array, w: jax.Array, strides: Sequence[int] = (1, 1), padding: Padding = "SAME",
             groups: int = 1, rng: jax.Array | None = None, in_memory=None) -> jax.Array:
        """The convolution under this operator (NHWC, HWIO); `in_memory` as in `dense`."""
        check_conv_shapes(x, w, groups)
        w = self.weight_transform(w)
        strides, padding = tuple(int(s) for s in strides), normalize_padding(padding)
        if in_memory is None:
            return self.conv_digital(x, w, strides, padding, groups)
        return in_memory.contract(lambda x, w: self.conv_digital(x, w, strides, padding, groups),
                                  lambda x, w: in_memory.conv_partials(self, x, w, strides, padding, groups),
                                  x, w, rng)

    def cost(self, shape: ContractionShape, x_format: NumberFormat, w_format: NumberFormat,
             acc_bits: int = 32, density: float = 1.0, additions: float | None = None) -> tuple[UnitOp, ...]:
        """Unit operations per example (`pannjax.hw.units.UnitOp`). `w_format` is the hardware weight
        format (`weight_format(quantizer_w)`), `density` the fraction of non-zero weights and
        `additions` the realised mean |w_int| of addition-count weights.

        `digital_cost`, scaled by `density` when the operator skips zero weights (module docstring); count
        weights on an operator that `accepts_counts`: `additions` * MACs additions of the activation (PANN;
        arch "split" -- two unsigned accumulators -- unless the count format is signed). An in-memory macro
        prices itself (`InMemory.cost`)."""
        check_density(density)
        x_format = self.input_format(x_format)
        if w_format.kind == "count":
            return self._count_cost(shape, x_format, w_format, acc_bits, additions)
        units = tuple(self.digital_cost(shape, x_format, w_format, acc_bits))
        if not self.skips_zero_weights or density == 1.0:
            return units
        return tuple(u.scaled(density) for u in units)

    def check_weights(self, quantizer_w, where: str = "op") -> None:
        """One-line error, at set-up, when this operator cannot compute with `quantizer_w`'s weights: PANN
        addition counts need an operator that `accepts_counts` (op=mac, digital); operators that
        re-round the weights themselves (shift, bwn, xnor) take any."""
        if self.weight_format(quantizer_w).kind == "count":
            self._refuse_counts(where)

    # -- integer datapath (export) ------------------------------------------------------------------
    def integer_weights(self, quantizer_w, kernel, x_step: float, x_max: int) -> IntegerWeights:
        """The integer weights this operator's digital datapath stores for `kernel` and the datapath that
        consumes them (`pannjax.ops.integer`), given the layer's activation step `x_step` and largest
        |activation code| `x_max` (which a datapath adding activations to weights aligns them to); a one-line
        error where there is no integer datapath."""
        raise ConfigError(f"op={self.name} has no integer datapath to export (MAC, shift, BWN, XNOR, adder, MF "
                          "and PANN additions have)")

    def integer_view(self, quantizer_w, kernel):
        """The integer view (codes, scale, format) of the weights the digital datapath receives; a one-line
        error for float weights."""
        view = self.hardware_weights(quantizer_w).integer(jnp.asarray(kernel))
        if view.format.is_float:
            raise ConfigError(f"op={self.name} with float weights: export needs integer weights (quant=uniform, "
                              "pot, apot or pann)")
        return view

    def _refuse_counts(self, where: str = "op") -> None:
        if not self.accepts_counts:
            raise ConfigError(f"{where}={self.name} (mode {self.mode}) cannot run PANN addition-count weights "
                              "(quant=pann): they run as repeated additions on op=mac in digital mode, or are "
                              "re-rounded by op=shift, op=bwn or op=xnor")

    def _count_cost(self, shape, x_format, w_format, acc_bits, additions) -> tuple[UnitOp, ...]:
        self._refuse_counts()
        if additions is None:
            raise ConfigError("PANN addition-count weights are priced by their realised mean |w_int|; "
                              "cost the layer with its weights (pannjax.nn.bound_layers on real variables)")
        if x_format.is_float:
            raise ConfigError("PANN additions need fixed-point activations; the activation quantizer is float")
        return (UnitOp("add", x_format, w_format, acc_bits, shape.fan_in, int(round(additions * shape.macs)),
                       per_input=float(additions), arch="signed" if w_format.signed else "split"),)


class LinearOperator(Operator):
    """Base of operators whose digital contraction is the ordinary linear one on the (transformed)
    quantized operands: `x @ w` and `linear_conv` (MAC, shift on powers of two, binary weights). They differ
    in `weight_transform` and in what their `digital_cost` charges for the same arithmetic."""

    linear_contraction = True
    #: the integer datapath of non-count weights (`pannjax.ops.integer`)
    integer_datapath: str = "mac"

    def integer_weights(self, quantizer_w, kernel, x_step: float, x_max: int) -> IntegerWeights:
        """The hardware weights' integer values (`hardware_weights(quantizer_w).integer`): PANN addition counts
        run on the "additions" datapath (split or signed accumulation), any other integer weights on
        `integer_datapath`; scale = the weight scale per output channel."""
        view = self.integer_view(quantizer_w, kernel)
        scale = per_channel(view.scale, np.shape(kernel))
        if view.format.kind == "count":
            self._refuse_counts()
            return IntegerWeights("additions", {"w": np.asarray(view.codes, np.int32)}, scale, l1_limit(view.codes),
                                  attrs={"accumulation": "signed" if view.format.signed else "split"})
        return IntegerWeights(self.integer_datapath, {"w": np.asarray(view.codes, np.int32)}, scale,
                              l1_limit(view.codes))

    def dense_digital(self, x: jax.Array, w: jax.Array) -> jax.Array:
        return jnp.matmul(x, w)

    def conv_digital(self, x, w, strides, padding, groups) -> jax.Array:
        return linear_conv(x, w, strides, padding, groups)
