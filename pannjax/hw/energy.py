"""Energy tables: pJ per operation, keyed by the `OpCount.kind` strings operators report.

The numbers live in YAML (`pannjax/hw/tables/energy_45nm.yaml`), each row with its source; this module
only evaluates the row's scaling `model` at the requested bit widths:

  linear_bits      E(b) = linear interpolation/extrapolation through `anchors` {bits: pJ}
                   (adder energy linear in width: QKeras QTools rule on Horowitz ISSCC 2014 figures)
  product_bits     E(b_1, .., b_n) = energy * prod(b_i) / prod(ref_bits)   (array multiplier ~ b_x b_w)
  table            E(b) = values[b] exactly (floats: 16 or 32 bits)
  barrel_shifter   E(b, M) = mux_energy_per_bit * (b + M) * ceil(log2(M + 1))   (log-depth shifter of a
                   b-bit operand by 0..M places; bits = (b, M), or (b,) for a b-bit rotate: b * ceil(log2 b))
  per_bit          E(n) = energy_per_bit * n                                (n = bits[0])
  walden           E(b) = fom_pj_per_step * 2^b                             (Walden FOM, ADC of b bits)
  constant         E = energy

An unknown kind raises a one-line `ConfigError` naming the kind and the table file.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterable

import yaml

from pannjax.errors import ConfigError

DEFAULT_TABLE = Path(__file__).parent / "tables" / "energy_45nm.yaml"
MODELS = ("linear_bits", "product_bits", "table", "barrel_shifter", "per_bit", "walden", "constant")


@dataclasses.dataclass(frozen=True)
class EnergyTable:
    """A loaded energy table: `kinds` maps an op kind to its row (a dict with `model` and parameters)."""

    path: str
    technology: str
    kinds: dict[str, dict[str, Any]]
    memory: dict[str, float]

    @classmethod
    def load(cls, path: str | Path | None = None) -> "EnergyTable":
        p = Path(path) if path is not None else DEFAULT_TABLE
        if not p.is_file():
            raise ConfigError(f"energy table {p} not found")
        data = yaml.safe_load(p.read_text())
        kinds = data.get("kinds") or {}
        for kind, row in kinds.items():
            if row.get("model") not in MODELS:
                raise ConfigError(f"{p}: kind {kind!r} has model={row.get('model')!r}; expected one of {MODELS}")
        return cls(str(p), str(data.get("technology", "?")), kinds, dict(data.get("memory") or {}))

    def energy_pj(self, kind: str, bits: Iterable[int]) -> float:
        """Energy of one operation of `kind` on operands of widths `bits` (pJ)."""
        if kind not in self.kinds:
            raise ConfigError(f"no energy model for op kind {kind!r} in {self.path}; add a row under 'kinds:'")
        row, bits = self.kinds[kind], tuple(int(b) for b in bits)
        if not bits or min(bits) < 1:
            raise ConfigError(f"op kind {kind!r}: bits={bits} must be positive widths")
        model = row["model"]
        if model == "linear_bits":
            (b0, e0), (b1, e1) = sorted((int(k), float(v)) for k, v in row["anchors"].items())[:2]
            return max(e0 + (bits[0] - b0) * (e1 - e0) / (b1 - b0), 0.0)
        if model == "product_bits":
            ref = row["ref_bits"]
            if len(bits) != len(ref):
                raise ConfigError(f"op kind {kind!r} expects {len(ref)} widths, got bits={bits}")
            return float(row["energy"]) * math.prod(bits) / math.prod(ref)
        if model == "table":
            values = {int(k): float(v) for k, v in row["values"].items()}
            if bits[0] not in values:
                raise ConfigError(f"op kind {kind!r}: no entry for {bits[0]} bits in {self.path} "
                                  f"(have {sorted(values)})")
            return values[bits[0]]
        if model == "barrel_shifter":
            if len(bits) >= 2:  # (data bits, largest shift M): ceil(log2(M+1)) stages of b + M muxes
                b, m = bits[0], bits[1]
                return float(row["mux_energy_per_bit"]) * (b + m) * max(1, math.ceil(math.log2(m + 1)))
            b = bits[0]
            return float(row["mux_energy_per_bit"]) * b * max(1, math.ceil(math.log2(b)))
        if model == "per_bit":
            return float(row["energy_per_bit"]) * bits[0]
        if model == "walden":
            return float(row["fom_pj_per_step"]) * 2.0 ** bits[0]
        return float(row["energy"])  # constant

    def cost_pj(self, op_counts) -> float:
        """Total energy (pJ) of a sequence of `OpCount`s (kind, bits, count)."""
        return float(sum(self.energy_pj(c.kind, c.bits) * c.count for c in op_counts))
