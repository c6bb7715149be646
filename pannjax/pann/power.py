"""Power of PANN and MAC layers in bit flips (toggles), from `pannjax.hw.bitflips`, per layer and per network.

Units: toggles per MAC (per input element of a dot product, "MAC-equivalent" for PANN layers) and
toggles per example (summed over a layer's MACs). Every figure is the analytic expectation on uniform
operand codes (`pannjax.hw.bitflips`, PANN Sec. 3 structure, formulas derived there).

* MAC layer, two's complement ("signed" arithmetic): `bitflips_mac` with the layer's operand formats.
* MAC layer, "split" (unsigned) arithmetic (PANN Sec. 3's conversion of a trained network to unsigned
  arithmetic): the weight's sign selects one of two unsigned accumulators, so each is a b_x x (b_w - 1)
  unsigned MAC over about fan_in / 2 products, plus one B-bit subtraction per output.
* PANN layer: R additions of the b_x-bit activation per input element (`bitflips_repeated_addition`):
  "split" -- two unsigned accumulators of about fan_in / 2 elements each, plus the final subtraction;
  "signed" -- one accumulator adding +-x (sign-extended). A signed input (the image at the stem) makes
  the addends signed in either case, so it is costed as "signed".
  Toggles per MAC-equivalent = R * toggles per addition + (B / 2) / fan_in.
The final subtraction is costed as B/2 toggles per output (a fresh two's complement word; our
assumption, amortised over fan_in it is < 0.1 toggles per MAC for fan_in >= 288).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from pannjax.errors import ConfigError
from pannjax.hw.bitflips import OperandStats, bitflips_mac, bitflips_repeated_addition
from pannjax.hw.energy import EnergyTable
from pannjax.ops import OpCount

ARITHMETICS = ("split", "signed")


def _final_subtraction(acc_bits: int, fan_in: int) -> float:
    return 0.5 * acc_bits / fan_in


@functools.lru_cache(maxsize=4096)
def mac_toggles(x_bits: int, w_bits: int, fan_in: int, acc_bits: int = 32, x_signed: bool = False,
                w_signed: bool = True, arithmetic: str = "signed") -> float:
    """Toggles per MAC of a b_x x b_w MAC layer with reduction length `fan_in` (see module docstring)."""
    if arithmetic not in ARITHMETICS:
        raise ConfigError(f"arithmetic={arithmetic!r}: expected one of {ARITHMETICS}")
    if arithmetic == "split" and w_signed and not x_signed:
        mag_bits = max(1, w_bits - 1)
        t = bitflips_mac(x_bits, mag_bits, acc_bits, fan_in=max(1, round(fan_in / 2)),
                         x_stats=OperandStats.uniform(x_bits, False), w_stats=OperandStats.uniform(mag_bits, False))
        return t.total + _final_subtraction(acc_bits, fan_in)
    return bitflips_mac(x_bits, w_bits, acc_bits, fan_in=fan_in, x_stats=OperandStats.uniform(x_bits, x_signed),
                        w_stats=OperandStats.uniform(w_bits, w_signed)).total


def budget_mac_toggles(bits: int, signed: bool, fan_in: int, acc_bits: int = 32) -> float:
    """Toggles per MAC of the reference b x b MAC (both operands signed, or both unsigned) that defines a
    power budget "the power of a b-bit MAC network"."""
    return bitflips_mac(bits, bits, acc_bits, signed, fan_in).total


@functools.lru_cache(maxsize=4096)
def pann_toggles(x_bits: int, additions: float, fan_in: int, acc_bits: int = 32, accumulation: str = "split",
                 x_signed: bool = False) -> float:
    """Toggles per input element (per MAC-equivalent) of a PANN layer: R additions of a b_x-bit activation."""
    if accumulation not in ARITHMETICS:
        raise ConfigError(f"accumulation={accumulation!r}: expected one of {ARITHMETICS}")
    if additions <= 0:
        raise ConfigError(f"additions={additions}: expected > 0")
    if accumulation == "split" and not x_signed:
        per_add = bitflips_repeated_addition(x_bits, acc_bits, additions, max(1, round(fan_in / 2)), False)
        return additions * per_add["total"] + _final_subtraction(acc_bits, fan_in)
    stats = OperandStats.uniform(x_bits, x_signed)
    per_add = bitflips_repeated_addition(x_bits, acc_bits, additions, fan_in, True, x_stats=stats)
    return additions * per_add["total"]


@dataclasses.dataclass(frozen=True)
class LayerToggles:
    """One arithmetic layer's power per example. `additions` is the realised R of a PANN layer."""

    path: str
    kind: str  # "pann", "mac" or "float"
    macs: int
    fan_in: int
    x_format: str
    w_format: str
    additions: float | None
    toggles_per_mac: float | None
    energy_pj: float

    @property
    def toggles(self) -> float | None:
        return None if self.toggles_per_mac is None else self.toggles_per_mac * self.macs


def _kernel(params: Any, path: str) -> np.ndarray:
    node = params
    for key in path.split("/"):
        node = node[key]
    return np.asarray(node["kernel"])


def network_toggles(model, variables: Any, sample, acc_bits: int = 32, arithmetic: str = "signed",
                    table: EnergyTable | None = None) -> list[LayerToggles]:
    """Per-layer power of `model` (pannjax.nn layers) with `variables`, per example.

    PANN layers (weight quantizer `PannQuantizer`) use the realised mean |w_int| of their kernel as R;
    uniform integer MAC layers are costed in `arithmetic` ("signed": two's complement, "split": unsigned
    accumulators); float layers get no toggle figure. Energies (pJ per example) come from the energy
    table: the operator's op counts for MAC layers, R * MACs additions of `acc_bits` for PANN layers."""
    from pannjax.nn import describe_layers
    from pannjax.quant.pann import PannQuantizer

    table = table or EnergyTable.load()
    out = []
    for rec in describe_layers(model, variables, sample):
        shape = rec.contraction
        fx, fw = rec.quantizer_x.format, rec.quantizer_w.format
        if isinstance(rec.quantizer_w, PannQuantizer):
            codes = np.asarray(rec.quantizer_w.integer(_kernel(variables["params"], rec.path)).codes)
            r = float(np.mean(np.abs(codes)))
            per_mac = pann_toggles(fx.bits, round(r, 6), shape.fan_in, acc_bits, rec.quantizer_w.accumulation,
                                   fx.signed)
            ops = (OpCount("add", (acc_bits,), int(round(r * shape.macs))),)
            out.append(LayerToggles(rec.path, "pann", shape.macs, shape.fan_in, str(fx), f"R={r:.3f}", r, per_mac,
                                    table.cost_pj(ops)))
            continue
        energy = table.cost_pj(rec.operator.cost(shape, fx, fw, acc_bits))
        if fx.is_float or fw.is_float:
            out.append(LayerToggles(rec.path, "float", shape.macs, shape.fan_in, str(fx), str(fw), None, None, energy))
            continue
        per_mac = mac_toggles(fx.bits, fw.bits, shape.fan_in, acc_bits, fx.signed, fw.signed, arithmetic)
        out.append(LayerToggles(rec.path, "mac", shape.macs, shape.fan_in, str(fx), str(fw), None, per_mac, energy))
    return out


def summarize(layers: list[LayerToggles]) -> dict[str, Any]:
    """Totals per example: toggles of all integer layers and of the PANN layers, MACs, energy (pJ)."""
    pann = [l for l in layers if l.kind == "pann"]
    counted = [l for l in layers if l.toggles is not None]
    macs_counted = sum(l.macs for l in counted)
    return {
        "toggles": float(sum(l.toggles for l in counted)),
        "toggles_per_mac": float(sum(l.toggles for l in counted) / max(macs_counted, 1)),
        "pann_toggles": float(sum(l.toggles for l in pann)),
        "pann_macs": int(sum(l.macs for l in pann)),
        "macs": int(sum(l.macs for l in layers)),
        "energy_pJ": float(sum(l.energy_pj for l in layers)),
        "float_layers": [l.path for l in layers if l.kind == "float"],
        "layers": [dataclasses.asdict(l) | {"toggles": l.toggles} for l in layers],
    }
