"""Power of PANN and MAC layers in bit flips (toggles), per layer and per network -- views of the cost engine.

Every figure here is `pannjax.hw.unit_toggles` (per operation) or `pannjax.hw.cost.price_network` (per
layer), so PANN's budget solver, its experiment and every other entry point report the same numbers for
the same network. Units: toggles per MAC (per input element of a dot product, "MAC-equivalent" for PANN
layers) and toggles per example.

* MAC layer, two's complement ("signed" arithmetic): the "mac" unit at the layer's operand formats.
* MAC layer, "split" (unsigned) arithmetic (PANN Sec. 3's conversion of a trained network to unsigned
  arithmetic): the "mac" unit with ``arch="split"`` (two unsigned accumulators selected by the weight's sign).
* PANN layer: R additions of the b_x-bit activation per input element, the "add" unit ("split": two
  unsigned accumulators plus a final subtraction; "signed": one accumulator adding +-x). Toggles per
  MAC-equivalent = R * toggles per addition.
"""

from __future__ import annotations

from typing import Any

from pannjax.errors import ConfigError
from pannjax.hw.cost import LayerCost, Pricing, price_network, totals
from pannjax.hw.energy import EnergyTable
from pannjax.hw.system import AcceleratorConfig
from pannjax.hw.toggles import DEFAULT_MODEL, unit_toggles

ARITHMETICS = ("split", "signed")


def _check_arithmetic(name: str, value: str) -> None:
    if value not in ARITHMETICS:
        raise ConfigError(f"{name}={value!r}: expected one of {ARITHMETICS}")


def mac_toggles(x_bits: int, w_bits: int, fan_in: int, acc_bits: int = 32, x_signed: bool = False,
                w_signed: bool = True, arithmetic: str = "signed", model: str = DEFAULT_MODEL) -> float:
    """Toggles per MAC of a b_x x b_w MAC layer with reduction length `fan_in` (see module docstring)."""
    _check_arithmetic("arithmetic", arithmetic)
    arch = "split" if arithmetic == "split" else None
    return unit_toggles("mac", x_bits, w_bits, acc_bits, x_signed, w_signed, fan_in, model, arch=arch)["total"]


def budget_mac_toggles(bits: int, signed: bool, fan_in: int, acc_bits: int = 32, model: str = DEFAULT_MODEL) -> float:
    """Toggles per MAC of the reference b x b MAC (both operands signed, or both unsigned) that defines a
    power budget "the power of a b-bit MAC network"."""
    return unit_toggles("mac", bits, bits, acc_bits, signed, signed, fan_in, model)["total"]


def pann_toggles(x_bits: int, additions: float, fan_in: int, acc_bits: int = 32, accumulation: str = "split",
                 x_signed: bool = False, model: str = DEFAULT_MODEL) -> float:
    """Toggles per input element (per MAC-equivalent) of a PANN layer: R additions of a b_x-bit activation."""
    _check_arithmetic("accumulation", accumulation)
    if additions <= 0:
        raise ConfigError(f"additions={additions}: expected > 0")
    per_add = unit_toggles("add", x_bits, 8, acc_bits, x_signed, True, fan_in, model, arch=accumulation,
                           additions=additions)
    return additions * per_add["total"]


def network_toggles(model, variables: Any, sample, acc_bits: int = 32, arithmetic: str = "signed",
                    table: EnergyTable | None = None, toggle_model: str = DEFAULT_MODEL,
                    accelerator: AcceleratorConfig | None = None) -> list[LayerCost]:
    """Per-layer costs of `model` (pannjax.nn layers) with `variables`, per example, from the cost engine:
    PANN layers at the realised mean |w_int| of their kernel as R, integer MAC layers in `arithmetic`
    ("signed": two's complement, "split": unsigned accumulators), float layers without a toggle figure;
    with data movement on `accelerator` where one is given."""
    from pannjax.nn import bound_layers

    _check_arithmetic("arithmetic", arithmetic)
    pricing = Pricing.make(table, toggle_model, acc_bits, "split" if arithmetic == "split" else None, accelerator)
    return price_network(bound_layers(model, variables, sample), pricing)


def layer_kind(cost: LayerCost) -> str:
    """"pann" for a layer of repeated additions, "float" for one without a bit-flip model, else its units."""
    names = [u.unit for u in cost.units]
    if "add" in names:
        return "pann"
    return "float" if cost.toggles is None else "+".join(dict.fromkeys(names))


def _additions(cost: LayerCost) -> float | None:
    return next((u.per_input for u in cost.units if u.unit == "add"), None)


def summarize(layers: list[LayerCost]) -> dict[str, Any]:
    """Totals per example: toggles of all integer layers and of the PANN layers, MACs, energy (pJ; compute
    plus data movement on an accelerator, and each part), and a row per layer."""
    pann = [l for l in layers if layer_kind(l) == "pann"]
    t = totals(layers)
    return {
        "toggles": t["toggles"], "toggles_per_mac": t["toggles_per_mac"],
        "pann_toggles": float(sum(l.toggles for l in pann)),
        "pann_macs": int(sum(l.macs for l in pann)),
        "macs": t["macs"], "energy_pj": t["energy_pj"], "energy_compute_pj": t["energy_compute_pj"],
        "energy_memory_pj": t["energy_memory_pj"], "latency_cycles": t["latency_cycles"],
        "float_layers": t["layers_without_toggles"],
        "layers": [{"path": l.path, "kind": layer_kind(l), "macs": l.macs, "fan_in": l.fan_in, "x_format": l.x_format,
                    "w_format": l.w_format, "additions": _additions(l), "toggles_per_mac": l.toggles_per_mac,
                    "toggles": l.toggles, "energy_pj": l.energy_total_pj} for l in layers],
    }
