"""The cost engine: one place where a layer is priced.

A layer reaches the engine as its unit operations per example (`pannjax.hw.units.UnitOp`, from
`BoundLayer.units`, i.e. `Operator.cost` on the hardware operand formats); `price_layer` turns them into
one `LayerCost` with every figure pannjax reports, each from a pluggable pricer:

  * energy (pJ per example): an `EnergyTable` over the units' elementary operations (`table_ops`);
  * toggles (per example): `unit_op_toggles` under a toggle model ("registers" or "gates"), summed over
    the units; None when any unit of the layer has no bit-flip model (float or analog layers);
  * data movement (pJ per example, latency, accesses) on the pricing's accelerator, where it names one:
    ZigZag's best mapping of the layer onto its memory hierarchy (`pannjax.hw.system.memory_cost`), with
    partial sums at the same accumulator width B. `energy_total_pj` = compute + data movement. There an
    in-memory layer's compute energy is ZigZag's model of the macro (`MemoryCost.macro_energy_pj`), not the
    energy table's cell and ADC rows.

`price_network(layers, ...)` prices a list of bound layers. Every entry point (training, search, PANN,
the power study, the PoT energy script) gets its figures here, so the same network gives the same
per-layer energy and toggles wherever it is reported. No Flax here: layers are duck-typed records with
`path`, `kind`, `operator`, `x_format`, `w_format`, `contraction`, `density` and `units(acc_bits)`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from pannjax.hw.energy import EnergyTable
from pannjax.hw.system import AcceleratorConfig, MemoryCost, memory_cost
from pannjax.hw.toggles import DEFAULT_MODEL, unit_op_toggles
from pannjax.hw.units import OpCount, UnitOp, table_ops


@dataclasses.dataclass(frozen=True)
class Pricing:
    """Which pricers the engine uses: the energy table, the toggle model (None: energy only), an optional
    MAC variant (`mac_arch="split"`: PANN's unsigned arithmetic), the accumulator width B (bits), and the
    accelerator whose data movement is added (None or `none`: the arithmetic alone)."""

    table: EnergyTable
    toggle_model: str | None = DEFAULT_MODEL
    acc_bits: int = 32
    mac_arch: str | None = None
    accelerator: AcceleratorConfig | None = None

    @classmethod
    def make(cls, table: EnergyTable | str | None = None, toggle_model: str | None = DEFAULT_MODEL, acc_bits: int = 32,
             mac_arch: str | None = None, accelerator: AcceleratorConfig | None = None) -> "Pricing":
        on = accelerator if accelerator is not None and accelerator.enabled else None
        return cls(table if isinstance(table, EnergyTable) else EnergyTable.load(table), toggle_model, acc_bits,
                   mac_arch, on)


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """One layer's figures per example: its unit operations, their elementary ops, compute energy
    `energy_pj` (pJ), toggles by component (None without a bit-flip model for every unit) and, on an
    accelerator, its data movement `memory`."""

    path: str
    kind: str
    operator: str
    x_format: str
    w_format: str
    acc_bits: int
    fan_in: int
    macs: int
    density: float
    units: tuple[UnitOp, ...]
    energy_pj: float
    toggle_components: dict[str, float] | None
    toggle_model: str
    memory: MemoryCost | None = None

    @property
    def energy_memory_pj(self) -> float | None:
        return None if self.memory is None else self.memory.energy_pj

    @property
    def energy_total_pj(self) -> float:
        """Compute plus, on an accelerator, data movement: the layer's energy per example."""
        return self.energy_pj + (self.energy_memory_pj or 0.0)

    @property
    def toggles(self) -> float | None:
        return None if self.toggle_components is None else self.toggle_components["total"]

    @property
    def ops(self) -> tuple[OpCount, ...]:
        return table_ops(self.units)

    @property
    def toggles_per_mac(self) -> float | None:
        return None if self.toggles is None else self.toggles / max(self.macs, 1)


def units_toggles(units: Iterable[UnitOp], model: str = DEFAULT_MODEL, mac_arch: str | None = None
                  ) -> dict[str, float] | None:
    """Toggles per example of a layer's unit operations, by component (summed over units, with "total");
    None when any unit has no bit-flip model."""
    total: dict[str, float] = {}
    for u in units:
        if u.count == 0:
            continue
        per_op = unit_op_toggles(u, model, mac_arch)
        if per_op is None:
            return None
        for k, v in per_op.items():
            total[k] = total.get(k, 0.0) + v * u.count
    return total or {"total": 0.0}


def operator_label(operator: Any) -> str:
    """How reports name a layer's operator: its name, and where it computes unless digital ("mac@aimc")."""
    name = getattr(operator, "name", type(operator).__name__)
    mode = getattr(operator, "mode", "digital")
    return name if mode == "digital" else f"{name}@{mode}"


def price_layer(layer: Any, pricing: Pricing) -> LayerCost:
    """All figures of one bound layer under `pricing`."""
    units = tuple(layer.units(pricing.acc_bits))
    shape = layer.contraction
    memory = None if pricing.accelerator is None else memory_cost(layer, pricing.accelerator, pricing.acc_bits)
    macro = None if memory is None else memory.macro_energy_pj  # an in-memory layer: ZigZag's macro model
    return LayerCost(
        path=layer.path, kind=layer.kind, operator=operator_label(layer.operator),
        x_format=str(layer.x_format), w_format=str(layer.w_format), acc_bits=pricing.acc_bits, fan_in=shape.fan_in,
        macs=shape.macs, density=layer.density, units=units,
        energy_pj=pricing.table.cost_pj(table_ops(units)) if macro is None else macro,
        toggle_components=None if pricing.toggle_model is None else
        units_toggles(units, pricing.toggle_model, pricing.mac_arch),
        toggle_model=pricing.toggle_model, memory=memory)


def price_network(layers: Iterable[Any], pricing: Pricing) -> list[LayerCost]:
    return [price_layer(layer, pricing) for layer in layers]


def totals(costs: Iterable[LayerCost]) -> dict[str, Any]:
    """Network totals per example: MACs, energy (pJ; compute plus data movement, and each part), latency
    (cycles, layers in sequence; None for compute and latency without an accelerator), toggles over the
    layers that have a toggle figure (None when none has), and the paths of those that have none."""
    costs = list(costs)
    counted = [c for c in costs if c.toggles is not None]
    moved = [c.memory for c in costs if c.memory is not None]
    on = bool(costs) and len(moved) == len(costs)
    toggles = float(sum(c.toggles for c in counted)) if counted else None
    return {"macs": int(sum(c.macs for c in costs)), "energy_pj": float(sum(c.energy_total_pj for c in costs)),
            "energy_compute_pj": float(sum(c.energy_pj for c in costs)),
            "energy_memory_pj": float(sum(m.energy_pj for m in moved)) if on else None,
            "latency_cycles": float(sum(m.latency_cycles for m in moved)) if on else None,
            "toggles": toggles,
            "toggles_per_mac": None if toggles is None else toggles / max(sum(c.macs for c in counted), 1),
            "layers_without_toggles": [c.path for c in costs if c.toggles is None]}
