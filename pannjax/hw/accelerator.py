"""MAC vs BAC accelerator energy: uniform weights on multiply-accumulate vs power-of-two weights on
bitshift-and-accumulate, per processing element (PE) and per network.

Przewlocka-Rus & Kryjak (arXiv 2209.15257) replace every multiplier of an FPGA accelerator by a shifter
(PoT weights, <= 4 bits) and report the PoT version at least 1.4x more energy efficient than the
uniform one; pruned (zero) weights are skipped. This module is that comparison as a model:

    E_net(arith) = sum_layers  macs_l * d_l * E_PE(arith, b_x, b_w, B_l)

with d_l the layer's weight density for a PE that skips zero weights (the BAC; 1 for the MAC) and
E_PE from one of the views in `tables/accelerator.yaml`:

  * "asic_45nm" (`model: energy_table`): E_MAC = E_mul(b_x, b_w) + E_add(B), E_BAC = E_shift(b_x, M) +
    E_add(B), rows of `energy_45nm.yaml` (Horowitz ISSCC 2014, scaled by width), M = 2^(b_w-1) - 1.
  * "fpga_zu" (`model: fpga`), Zynq UltraScale+: a MAC is one DSP48E2 slice (multiplier and accumulator
    in the slice), E_MAC = dsp_mac_pj * s(max(b_x, b_w)) with s the toggle scaling of the smallest DSP
    configuration that fits (UG440: 27x18 -> 1, 18x18 -> 0.86, 12x12 -> 0.8); a BAC is LUT logic,
    E_BAC = lut_op_pj * (LUT_shift + B): the B-bit add/subtract accumulator is one LUT per bit (sign folded
    into the add/sub) and the shifter has b_x + M output bits, each a mux of min(b_x, M+1) data bits
    selected by ceil(log2(M+1)) bits, i.e. ceil((k-1)/(L-1)) LUT-L for k = data + select inputs.

Accumulator width B: `acc_bits` (e.g. 32, the report's default) or None for the lossless width of each
layer: product bits + ceil(log2 fan_in) with product bits b_x + b_w (MAC) or b_x + M + 1 (BAC: the
activation shifted by up to M places, signed). No Flax here: layers are plain `PeLayer`s.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from pannjax.errors import ConfigError
from pannjax.hw.energy import EnergyTable
from pannjax.hw.units import UnitOp, max_shift, table_ops
from pannjax.numerics import NumberFormat

DEFAULT_TABLE = Path(__file__).parent / "tables" / "accelerator.yaml"
ARITH_UNITS = {"mac": "mac", "bac": "shift"}  # PE kind -> the cost engine's unit it runs
ARITHS = tuple(ARITH_UNITS)


@dataclasses.dataclass(frozen=True)
class PeLayer:
    """One layer's work per example: `outputs` reductions of `fan_in` products at widths (x_bits, w_bits);
    `arith` "mac" (multiplier PE) or "bac" (shifter PE); `density` the fraction of non-zero weights."""

    path: str
    outputs: int
    fan_in: int
    x_bits: int
    w_bits: int
    arith: str = "mac"
    density: float = 1.0

    def __post_init__(self):
        if self.arith not in ARITHS:
            raise ConfigError(f"PeLayer {self.path}: arith={self.arith!r}, expected one of {ARITHS}")
        if not 0.0 <= self.density <= 1.0:
            raise ConfigError(f"PeLayer {self.path}: density={self.density!r}, expected a fraction in [0, 1]")

    @property
    def macs(self) -> int:
        return self.outputs * self.fan_in


def lossless_acc_bits(arith: str, x_bits: int, w_bits: int, fan_in: int) -> int:
    product = x_bits + w_bits if arith == "mac" else x_bits + max_shift(w_bits) + 1
    return product + max(1, math.ceil(math.log2(max(fan_in, 2))))


@dataclasses.dataclass(frozen=True)
class AcceleratorModel:
    """One view of `tables/accelerator.yaml`: `pe_energy_pj(arith, x_bits, w_bits, acc_bits)`."""

    name: str
    row: dict[str, Any]
    table: EnergyTable | None

    @classmethod
    def load(cls, view: str = "asic_45nm", path: str | Path | None = None) -> "AcceleratorModel":
        p = Path(path) if path is not None else DEFAULT_TABLE
        if not p.is_file():
            raise ConfigError(f"accelerator table {p} not found")
        views = yaml.safe_load(p.read_text()).get("views") or {}
        if view not in views:
            raise ConfigError(f"accelerator view {view!r} is not in {p}; available: {', '.join(sorted(views))}")
        row = views[view]
        if row.get("model") == "energy_table":
            return cls(view, row, EnergyTable.load(p.parent / row["table"]))
        if row.get("model") == "fpga":
            return cls(view, row, None)
        raise ConfigError(f"{p}: view {view!r} has model={row.get('model')!r}; expected energy_table or fpga")

    def pe_energy_pj(self, arith: str, x_bits: int, w_bits: int, acc_bits: int) -> float:
        """Energy of one operation (one product accumulated) of a MAC or BAC PE, pJ."""
        if arith not in ARITHS:
            raise ConfigError(f"arith={arith!r}: expected one of {ARITHS}")
        m = max_shift(w_bits)
        if self.table is not None:  # the cost engine's own unit decomposition, priced by the energy table
            unit = UnitOp(ARITH_UNITS[arith], NumberFormat("int", x_bits), NumberFormat("int", w_bits), acc_bits, 1, 1)
            return self.table.cost_pj(table_ops([unit]))
        if arith == "mac":
            width = max(x_bits, w_bits)
            fits = [int(k) for k in self.row["dsp_toggle_scale"] if width <= int(k)]
            if not fits:
                raise ConfigError(f"{x_bits}x{w_bits} multiply does not fit one DSP48E2 (27x18)")
            return float(self.row["dsp_mac_pj"]) * float(self.row["dsp_toggle_scale"][min(fits)])
        return float(self.row["lut_op_pj"]) * (shifter_luts(x_bits, m, int(self.row["lut_inputs"])) + acc_bits)

    def network_energy_pj(self, layers: Iterable[PeLayer], acc_bits: int | None = 32) -> dict[str, float]:
        """Energy per example of every layer and "total" (pJ); BAC layers pay only for non-zero weights."""
        out = {}
        for l in layers:
            b = acc_bits if acc_bits is not None else lossless_acc_bits(l.arith, l.x_bits, l.w_bits, l.fan_in)
            d = l.density if l.arith == "bac" else 1.0
            out[l.path] = l.macs * d * self.pe_energy_pj(l.arith, l.x_bits, l.w_bits, b)
        out["total"] = sum(out.values())
        return out


def shifter_luts(x_bits: int, m: int, lut_inputs: int = 6) -> int:
    """LUTs of a barrel shifter of a b_x-bit operand by 0..m places (module docstring)."""
    if m == 0:
        return 0
    k = min(x_bits, m + 1) + math.ceil(math.log2(m + 1))
    return (x_bits + m) * max(1, math.ceil((k - 1) / (lut_inputs - 1)))


def energy_ratio(uniform: Sequence[PeLayer], pot: Sequence[PeLayer], model: AcceleratorModel,
                 acc_bits: int | None = 32) -> float:
    """E(uniform-MAC network) / E(PoT-BAC network): how many times more energy efficient PoT is."""
    return model.network_energy_pj(uniform, acc_bits)["total"] / model.network_energy_pj(pot, acc_bits)["total"]


def pe_layers(layers) -> list[PeLayer]:
    """`PeLayer`s from `pannjax.nn.bound_layers`: a layer whose unit is "shift" becomes a BAC layer at its
    weight density, one whose unit is "mac" a MAC layer; any other layer raises (the PE model has no
    other unit)."""
    kinds = {unit: arith for arith, unit in ARITH_UNITS.items()}
    out = []
    for layer in layers:
        units = [u.unit for u in layer.units()]
        if len(units) != 1 or units[0] not in kinds:
            raise ConfigError(f"layer {layer.path} runs {'+'.join(units)}; the accelerator model prices integer "
                              f"{' and '.join(kinds)} layers")
        arith, shape = kinds[units[0]], layer.contraction
        out.append(PeLayer(layer.path, shape.outputs, shape.fan_in, layer.x_format.bits, layer.w_format.bits, arith,
                           layer.density if arith == "bac" else 1.0))
    return out


def break_even_dsp_pj(uniform: Sequence[PeLayer], pot: Sequence[PeLayer], model: AcceleratorModel,
                      target: float = 1.4, acc_bits: int | None = 32) -> float:
    """FPGA view: the DSP MAC energy (pJ) at which E(uniform)/E(PoT) reaches `target`, the other figures
    kept. Both energies are linear in dsp_mac_pj (E_u = d a, E_p = d b + c), so d = target c / (a - target b);
    inf when no DSP energy reaches the target."""
    if model.table is not None:
        raise ConfigError(f"break_even_dsp_pj needs an fpga view, got {model.name!r}")

    def energy(layers, dsp_pj):
        m = AcceleratorModel(model.name, {**model.row, "dsp_mac_pj": dsp_pj}, None)
        return m.network_energy_pj(layers, acc_bits)["total"]

    a, c = energy(uniform, 1.0), energy(pot, 0.0)
    b = energy(pot, 1.0) - c
    return target * c / (a - target * b) if a > target * b else math.inf
