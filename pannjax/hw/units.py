"""What a layer's hardware does: `UnitOp` records (which arithmetic unit, at which operand formats, how
many times per example), and how each unit breaks into the elementary operations of an energy table.

An operator states its layer's work as unit operations (`Operator.cost`), from the numbers the layer
really computes with (the operand formats after the quantizers and the operator's own weight rounding);
every pricer reads only these records: the energy table (`table_ops`, pJ), the toggle models
(`pannjax.hw.toggles.unit_toggles`), and later accelerator views. Units:

  unit          one operation is                                       table decomposition (per operation)
  mac           x * w added into the B-bit accumulator                 mul(b_x, b_w) + add(B)
  mult          x * w (a rescaling multiply, not accumulated)          mul(b_x, b_w)
  add           PANN: one addition of the activation x into an         add(B)
                accumulator (a weight w is |w| such additions)
  accumulate    one B-bit addition of a partial sum (crossbar chunks)  add(B)
  shift         sign * (x << (M - e)) into the accumulator (PoT)       shift(b_x, M) + add(B), M = 2^(b_w-1) - 1
  absdiff       -|x - w| into the accumulator (AdderNet)               add(d) + abs(d) + add(B), d = max(b_x, b_w) + 1
  sign_select   +-x into the accumulator (binary weights)              add(B)
  mf            sign(x)|w| + sign(w)|x| into the accumulator (MF-Net)  add(d) + add(B)
  xnor          popcount(XNOR) of two fan_in-bit words (per output)    xnor(n) + popcount(n), n = fan_in
  fmac / fadd / fmult   float multiply-add, add, multiply             fmul(b) + fadd(b) / fadd(b) / fmul(b)
  fshift        float x times 2^k: an exponent addition, then fadd     add(e) + fadd(b), e = exponent bits
  cim_mac       one crossbar cell operation (analog)                   cim_mac(b_x, b_w)
  adc           one conversion of a crossbar column's partial sum      adc(b_adc) (b_adc in `x`)

`fan_in` is the number of terms one output accumulates (the reduction length, or for `add` the input
elements per output; the additions per output are then `per_input` * fan_in); `count` is the number of
operations per example (already scaled by the weight density for units that skip zero weights).
No Flax here.
"""

from __future__ import annotations

import dataclasses

from pannjax.errors import ConfigError
from pannjax.numerics import NumberFormat

FLOAT_EXPONENT_BITS = {16: 5, 32: 8}


@dataclasses.dataclass(frozen=True)
class OpCount:
    """`count` elementary operations of `kind` on operands of widths `bits`, per example: the rows an
    `EnergyTable` prices ("mul", "add", "shift", "abs", "xnor", "popcount", "fmul", "fadd", "cim_mac",
    "adc", ...)."""

    kind: str
    bits: tuple[int, ...]
    count: int


@dataclasses.dataclass(frozen=True)
class UnitOp:
    """`count` operations per example of arithmetic unit `unit` (module table).

    x, w: operand formats as the unit receives them (w None for units without a weight operand);
    acc_bits: accumulator width B; fan_in: terms per output; per_input: operations per input element
    (PANN's R for `add`, else 1); arch: a variant of the unit where it has several (`add`: "split" --
    two unsigned accumulators -- or "signed")."""

    unit: str
    x: NumberFormat
    w: NumberFormat | None
    acc_bits: int
    fan_in: int
    count: int
    per_input: float = 1.0
    arch: str | None = None

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ConfigError(f"unknown arithmetic unit {self.unit!r}; expected one of {', '.join(UNITS)}")
        if self.count < 0 or self.fan_in < 1:
            raise ConfigError(f"unit {self.unit}: count={self.count}, fan_in={self.fan_in} must be >= 0 and >= 1")

    @property
    def is_float(self) -> bool:
        return self.unit in FLOAT_UNITS

    def scaled(self, factor: float) -> "UnitOp":
        """The same unit with `round(count * factor)` operations (e.g. a weight density)."""
        return dataclasses.replace(self, count=int(round(self.count * factor)))


def _pair(u: UnitOp) -> tuple[int, int]:
    return u.x.bits, u.w.bits


def _diff_bits(u: UnitOp) -> int:
    return max(u.x.bits, u.w.bits) + 1


def max_shift(w_bits: int) -> int:
    """M = 2^(b_w-1) - 1: the largest shift of a b_w-bit power-of-two weight (sign + exponent field)."""
    return 2 ** (w_bits - 1) - 1


# unit -> elementary ops of one operation as (kind, bits)
UNITS = {
    "mac": lambda u: [("mul", _pair(u)), ("add", (u.acc_bits,))],
    "mult": lambda u: [("mul", _pair(u))],
    "add": lambda u: [("add", (u.acc_bits,))],
    "accumulate": lambda u: [("add", (u.acc_bits,))],
    "shift": lambda u: [("shift", (u.x.bits, max_shift(u.w.bits))), ("add", (u.acc_bits,))],
    "absdiff": lambda u: [("add", (_diff_bits(u),)), ("abs", (_diff_bits(u),)), ("add", (u.acc_bits,))],
    "sign_select": lambda u: [("add", (u.acc_bits,))],
    "mf": lambda u: [("add", (_diff_bits(u),)), ("add", (u.acc_bits,))],
    "xnor": lambda u: [("xnor", (u.fan_in,)), ("popcount", (u.fan_in,))],
    "fmac": lambda u: [("fmul", (u.x.bits,)), ("fadd", (u.x.bits,))],
    "fadd": lambda u: [("fadd", (u.x.bits,))],
    "fmult": lambda u: [("fmul", (u.x.bits,))],
    "fshift": lambda u: [("add", (FLOAT_EXPONENT_BITS[u.x.bits],)), ("fadd", (u.x.bits,))],
    "cim_mac": lambda u: [("cim_mac", _pair(u))],
    "adc": lambda u: [("adc", (u.x.bits,))],
}
FLOAT_UNITS = frozenset({"fmac", "fadd", "fmult", "fshift"})


def table_ops(units) -> tuple[OpCount, ...]:
    """The elementary operations (`OpCount`s, per example) of a sequence of unit operations."""
    out = []
    for u in units:
        out.extend(OpCount(kind, tuple(bits), u.count) for kind, bits in UNITS[u.unit](u))
    return tuple(out)
