"""Compute-in-memory as a wrapper: `InMemory(inner, kind, rows, cols, adc_bits, bit_serial, noise_std)`
runs any operator's contraction in an SRAM macro instead of digital logic.

The weights stay in the macro's cells; each column reduces `rows` products of one output. Two kinds:

  * "aimc" (analog in-memory computing): the reduction is split into chunks of at most `rows` products
    (one array column each), every chunk's partial sum is digitised by an ADC of `adc_bits` bits, and the
    digitised partial sums are added digitally -- the standard CIM macro model (Peng et al.,
    "DNN+NeuroSim", IEDM 2019, Sec. II). The ADC is a uniform signed quantizer whose full scale is the
    largest partial-sum magnitude of the batch (an ideally calibrated ADC); Gaussian read noise of std
    `noise_std` x full scale is added before conversion when an rng is given (training for robustness).
    The ADC is straight-through in the backward pass (rounding and clipping), so the gradient is the exact
    contraction's, computed by one VJP of the exact contraction rather than one per chunk
    (`crossbar_contraction`).
  * "dimc" (digital in-memory computing): bit-serial inputs, 1-bit products in the cells and digital adder
    trees per column (e.g. Chih et al., ISSCC 2021): the result is the exact digital contraction, so the
    forward pass, the gradient and the integer export are the inner operator's.

What a layer computes is the inner operator's arithmetic on its operands (its weight rounding, input
binarisation and output scaling included); the wrapper only decides where the reduction happens. Prices:
without an accelerator the cost engine prices an "aimc" layer as `cim_mac` cell operations, one `adc`
conversion per chunk and output and the digital accumulation of the chunks (energy table rows), a "dimc"
layer as its inner operator's digital units (the same arithmetic, every product computed: a macro does not
skip zero weights). On an in-memory accelerator (`accelerator=aimc|dimc`) the macro is priced by ZigZag's
in-memory-computing model instead (`pannjax.hw.system`), from the array size (`rows` x `cols` weights),
the ADC resolution and the input bits per cycle `bit_serial`, which the forward model does not use.

`wrap(inner, kind, **fields)` is what `op.mode` builds: the inner operator itself for kind "digital"
(after checking the fields), an `InMemory` otherwise; "analog" is accepted for "aimc" and `rows_per_array`
for `rows` (earlier spellings). `Analog(inner, ...)` is `InMemory(inner, "aimc", ...)`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import struct

from pannjax.errors import ConfigError
from pannjax.hw.units import UnitOp
from pannjax.numerics import NumberFormat
from pannjax.ops.base import ContractionShape, Operator, Padding, check_density
from pannjax.quant.ste import round_ste

IN_MEMORY_KINDS = ("aimc", "dimc")
MODE_KINDS = ("digital",) + IN_MEMORY_KINDS
KIND_ALIASES = {"analog": "aimc"}
FIELD_ALIASES = {"rows_per_array": "rows"}
Contraction = Callable[[jax.Array, jax.Array], jax.Array]


BIT_SERIAL = {"aimc": 2, "dimc": 1}  # input bits per cycle of ZigZag's example macros (zigzag-dse 3.9.1)


def check_mode_fields(rows: int | None = None, cols: int | None = None, adc_bits: int | None = None,
                      bit_serial: int | None = None, noise_std: float | None = None) -> None:
    """One-line errors for fields no macro can have (what `op.mode` and `InMemory` accept; None: not given)."""
    for key, value, lo, hi in (("rows", rows, 1, None), ("cols", cols, 1, None), ("adc_bits", adc_bits, 1, 16),
                               ("bit_serial", bit_serial, 1, 32)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
            raise ConfigError(f"mode.{key}={value!r}: expected a whole number in {lo}..{hi or 'inf'}")
    if bit_serial is not None and bit_serial & (bit_serial - 1):
        raise ConfigError(f"mode.bit_serial={bit_serial}: expected a power of two (input bits per macro cycle)")
    if noise_std is not None and (not isinstance(noise_std, (int, float)) or isinstance(noise_std, bool)
                                  or noise_std < 0):
        raise ConfigError(f"mode.noise_std={noise_std!r}: expected a number >= 0")


def adc(partial: jax.Array, macro: "InMemory", rng: jax.Array | None) -> jax.Array:
    """Digitise crossbar partial sums with a signed `macro.adc_bits` ADC (module docstring)."""
    full_scale = jax.lax.stop_gradient(jnp.maximum(jnp.max(jnp.abs(partial)), 1e-8))
    if rng is not None and macro.noise_std > 0:
        partial = partial + macro.noise_std * full_scale * jax.random.normal(rng, partial.shape, partial.dtype)
    levels = 2 ** (macro.adc_bits - 1) - 1 if macro.adc_bits > 1 else 1
    step = full_scale / levels
    return round_ste(jnp.clip(partial / step, -levels, levels)) * step


def digitise(partials: Sequence[jax.Array], macro: "InMemory", rng: jax.Array | None) -> jax.Array:
    """The analog output: the sum over crossbar chunks of each chunk's ADC-digitised partial sum (chunk i
    draws its read noise from `fold_in(rng, i)`)."""
    return sum(adc(p, macro, None if rng is None else jax.random.fold_in(rng, i)) for i, p in enumerate(partials))


def crossbar_contraction(exact: Contraction, partials: Callable[[jax.Array, jax.Array], list], x: jax.Array,
                         w: jax.Array, macros: Sequence["InMemory"], rngs: Sequence[jax.Array | None],
                         which: int | jax.Array = 1) -> jax.Array:
    """y = exact(x, w) if which == 0, else digitise(partials(x, w), macros[which - 1], rngs[which - 1]).

    `partials` splits the reduction of `exact` into crossbar chunks (their sum is `exact(x, w)`), so with
    the ADC taken as the identity in the backward pass (straight-through rounding and clipping, constant
    full scale) the gradient of every branch is that of the exact contraction: the backward pass runs the
    VJP of `exact` once instead of one contraction per chunk. `which` may be a traced index (a single-path
    search picks the exact sum or one of several ADCs per step): the forward pass then runs only the
    selected branch (`lax.switch`), and the backward pass holds no conditional."""
    branches = [lambda x, w, rngs: exact(x, w)]
    branches += [lambda x, w, rngs, m=m, j=j: digitise(partials(x, w), m, rngs[j]) for j, m in enumerate(macros)]

    static = isinstance(which, int)

    @jax.custom_vjp
    def contract(x, w, rngs, index):
        return branches[which](x, w, rngs) if static else jax.lax.switch(index, branches, x, w, rngs)

    def forward(x, w, rngs, index):
        return contract(x, w, rngs, index), (x, w)

    def backward(res, g):
        _, vjp = jax.vjp(exact, *res)
        return (*vjp(g), None, None)

    contract.defvjp(forward, backward)
    return contract(x, w, tuple(rngs), jnp.asarray(which, jnp.int32))


@struct.dataclass
class InMemory(Operator):
    """`inner`'s arithmetic computed in an in-memory macro of `kind` "aimc" or "dimc" (module docstring):
    `rows` products per column, `cols` weights per row, `adc_bits` per conversion (aimc), `bit_serial`
    input bits per cycle (default: the kind's, `BIT_SERIAL`), `noise_std` read noise (aimc, training only)."""

    inner: Operator = struct.field(pytree_node=False, default=None)
    kind: str = struct.field(pytree_node=False, default="aimc")
    rows: int = struct.field(pytree_node=False, default=128)
    cols: int = struct.field(pytree_node=False, default=128)
    adc_bits: int = struct.field(pytree_node=False, default=8)
    bit_serial: int | None = struct.field(pytree_node=False, default=None)
    noise_std: float = struct.field(pytree_node=False, default=0.0)

    def __post_init__(self):
        if not isinstance(self.inner, Operator) or isinstance(self.inner, InMemory):
            raise ConfigError(f"InMemory(inner={self.inner!r}): wrap one digital pannjax operator")
        if self.kind not in IN_MEMORY_KINDS:
            raise ConfigError(f"mode.kind={self.kind!r}: an in-memory macro is one of {IN_MEMORY_KINDS}")
        if self.bit_serial is None:
            object.__setattr__(self, "bit_serial", BIT_SERIAL[self.kind])
        check_mode_fields(self.rows, self.cols, self.adc_bits, self.bit_serial, self.noise_std)
        if self.kind == "dimc" and self.noise_std:
            raise ConfigError(f"mode.noise_std={self.noise_std}: a digital macro (dimc) computes exactly and has "
                              "no read noise; set it on mode=aimc")

    # -- what the wrapper is: the inner arithmetic, in memory ------------------------------------
    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def mode(self) -> str:
        return self.kind

    @property
    def analog(self) -> bool:
        return self.kind == "aimc"

    @property
    def linear_contraction(self) -> bool:
        return self.inner.linear_contraction

    def in_mode_of(self, op: Operator) -> Operator:
        return self.replace(inner=op)

    def hardware_weights(self, quantizer_w):
        return self.inner.hardware_weights(quantizer_w)

    def weight_format(self, quantizer_w) -> NumberFormat:
        return self.inner.weight_format(quantizer_w)

    def input_format(self, x_format: NumberFormat) -> NumberFormat:
        return self.inner.input_format(x_format)

    def weight_transform(self, w: jax.Array) -> jax.Array:
        return self.inner.weight_transform(w)

    # -- forward: the inner operator's, its reduction in the macro --------------------------------
    def dense(self, x: jax.Array, w: jax.Array, rng: jax.Array | None = None, in_memory=None) -> jax.Array:
        return self.inner.dense(x, w, rng, in_memory=self)

    def conv(self, x: jax.Array, w: jax.Array, strides: Sequence[int] = (1, 1), padding: Padding = "SAME",
             groups: int = 1, rng: jax.Array | None = None, in_memory=None) -> jax.Array:
        return self.inner.conv(x, w, strides, padding, groups, rng, in_memory=self)

    def dense_digital(self, x: jax.Array, w: jax.Array) -> jax.Array:
        return self.inner.dense_digital(x, w)

    def conv_digital(self, x, w, strides, padding, groups) -> jax.Array:
        return self.inner.conv_digital(x, w, strides, padding, groups)

    def contract(self, exact: Contraction, partials: Callable[[jax.Array, jax.Array], list], x: jax.Array,
                 w: jax.Array, rng: jax.Array | None) -> jax.Array:
        """The macro's result of the reduction `exact` (whose crossbar chunks `partials` gives): exact for a
        digital macro, the digitised chunks for an analog one."""
        if not self.analog:
            return exact(x, w)
        return crossbar_contraction(exact, partials, x, w, (self,), (rng,))

    def dense_partials(self, op: Operator, x: jax.Array, w: jax.Array) -> list[jax.Array]:
        """`op`'s digital partial sums of a dense reduction split into chunks of `rows` rows (one column
        each); `w` already transformed. Their sum is `op.dense_digital(x, w)`."""
        rows = self.rows
        return [op.dense_digital(x[..., lo:lo + rows], w[lo:lo + rows]) for lo in range(0, w.shape[0], rows)]

    def conv_partials(self, op: Operator, x: jax.Array, w: jax.Array, strides: tuple[int, ...], padding: Padding,
                      groups: int) -> list[jax.Array]:
        """As `dense_partials` for a conv: each chunk holds rows // (kh kw) input channels of every group
        (normalised `strides`/`padding`, transformed `w`)."""
        kh, kw, cg, _ = w.shape
        chunk = max(1, self.rows // (kh * kw))  # input channels per column
        n, h, wd, _ = x.shape
        xg = x.reshape(n, h, wd, groups, cg)
        parts = []
        for lo in range(0, cg, chunk):
            hi = min(lo + chunk, cg)
            parts.append(op.conv_digital(xg[..., lo:hi].reshape(n, h, wd, groups * (hi - lo)), w[:, :, lo:hi, :],
                                         strides, padding, groups))
        return parts

    # -- cost ------------------------------------------------------------------------------------
    def cost(self, shape: ContractionShape, x_format: NumberFormat, w_format: NumberFormat,
             acc_bits: int = 32, density: float = 1.0, additions: float | None = None) -> tuple[UnitOp, ...]:
        """Unit operations per example without an accelerator's macro model (module docstring): density changes
        nothing (every cell is read); PANN addition counts are refused."""
        check_density(density)
        if w_format.kind == "count":
            self._refuse_counts()
        x_format = self.input_format(x_format)
        if not self.analog:
            return tuple(self.inner.digital_cost(shape, x_format, w_format, acc_bits))
        chunks = math.ceil(shape.fan_in / self.rows)
        return (
            UnitOp("cim_mac", x_format, w_format, acc_bits, shape.fan_in, shape.macs),
            UnitOp("adc", NumberFormat("int", self.adc_bits), None, acc_bits, chunks, shape.outputs * chunks),
            UnitOp("accumulate", NumberFormat("int", acc_bits), None, acc_bits, chunks,
                   shape.outputs * max(chunks - 1, 0)),
        )

    # -- integer datapath: a digital macro computes the inner operator's integers -----------------
    def integer_weights(self, quantizer_w, kernel, x_step: float, x_max: int):
        self._digital_only()
        return self.inner.integer_weights(quantizer_w, kernel, x_step, x_max)

    def integer_view(self, quantizer_w, kernel):
        self._digital_only()
        return self.inner.integer_view(quantizer_w, kernel)

    def _digital_only(self) -> None:
        if self.analog:
            raise ConfigError(f"op={self.name} in mode {self.kind}: an analog macro's ADC full scale follows "
                              "each batch, so it has no fixed integer program; export digital or dimc networks")


def Analog(inner: Operator, rows: int = 128, cols: int = 128, adc_bits: int = 8, bit_serial: int | None = None,
           noise_std: float = 0.0) -> InMemory:
    """`inner` in an analog in-memory macro: `InMemory(inner, "aimc", ...)`."""
    return InMemory(inner, "aimc", rows, cols, adc_bits, bit_serial, noise_std)


def wrap(inner: Operator, kind: str = "digital", **fields) -> Operator:
    """What an `op.mode` block builds (module docstring): `inner` for "digital", else `InMemory`; a field
    given as None takes the macro's default."""
    fields = {FIELD_ALIASES.get(k, k): v for k, v in fields.items() if v is not None}
    known = [f.name for f in dataclasses.fields(InMemory) if f.name not in ("inner", "kind")]
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ConfigError(f"mode.{unknown[0]} is not a known option; valid: kind, {', '.join(known)}")
    kind = KIND_ALIASES.get(kind, kind)
    if kind not in MODE_KINDS:
        raise ConfigError(f"mode.kind={kind!r}: expected one of {MODE_KINDS} (analog = aimc)")
    if kind == "digital":
        check_mode_fields(**fields)
        return inner
    return InMemory(inner, kind, **fields)


__all__ = ["Analog", "BIT_SERIAL", "IN_MEMORY_KINDS", "InMemory", "MODE_KINDS", "adc", "crossbar_contraction",
           "digitise", "wrap"]
