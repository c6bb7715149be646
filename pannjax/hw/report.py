"""Per-layer power/energy report of a pannjax network.

Every arithmetic layer (`pannjax.nn.bound_layers`) is priced by the cost engine (`pannjax.hw.cost`): its
unit operations (`Operator.cost` on the numbers the layer computes with), their energy from an
`EnergyTable` (pJ per example), the share of the network total, and toggles per MAC from the chosen
toggle model (`unit_toggles`, uniform operands) for every integer layer whatever its operator. Given a
real batch, every integer layer's units (MAC, PANN addition, shift, abs-difference, sign-select, MF,
XNOR-popcount) are also run by the gate-level simulator on the layer's own operand streams
(`pannjax.hw.gates.layer_sim`), beside the toggle model evaluated on the measured operand statistics;
`energy_activity_pJ` rescales the table energy of such a layer by simulated / gate-model-on-uniform-codes
toggles (the table figures describe random operands, real data switch less, or more).

The simulator runs on a random sample of at most `max_sim_macs` MACs (whole dot products) per layer;
a layer's rescaling multiplies (`mult` units, once per output) keep their modelled figure.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from pannjax.errors import ConfigError
from pannjax.hw.accumulator import AccumulatorWidth
from pannjax.hw.bitflips import OperandStats
from pannjax.hw.cost import LayerCost, Pricing, price_layer, totals
from pannjax.hw.energy import EnergyTable
from pannjax.hw.gates.model import ACCUMULATION_GROUPS
from pannjax.hw.system import OPERANDS, AcceleratorConfig
from pannjax.hw.toggles import unit_op_arguments, unit_op_toggles, unit_toggles
from pannjax.hw.units import OpCount
from pannjax.results import ENERGY_KEYS


@dataclasses.dataclass(frozen=True)
class LayerPower:
    """One layer's costs per example (`cost`, from the cost engine) and, for integer layers given a real
    batch, toggles per MAC of its simulated units: gate-level on its operand streams, and modelled on
    their measured statistics."""

    cost: LayerCost
    toggles_analytic_measured: dict[str, float] | None = None
    toggles_simulated: dict[str, float] | None = None
    simulated_macs: int = 0
    toggles_gates_uniform: float | None = None  # gate model on uniform codes, per MAC: the simulator's reference
    accumulator: AccumulatorWidth | None = None  # worst-case / observed widths (`pannjax.hw.accumulator`)
    cost_acc32: LayerCost | None = None  # with acc_bits="auto": the same layer's arithmetic at a 32-bit accumulator

    def __getattr__(self, name):  # path, kind, operator, formats, macs, energy_pj, energy_total_pj, memory ...
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.cost, name)

    @property
    def ops(self) -> tuple[OpCount, ...]:
        return self.cost.ops

    @property
    def toggles_analytic(self) -> dict[str, float] | None:
        """Toggles per MAC of the layer by component (the cost engine's model, uniform operand codes)."""
        comps = self.cost.toggle_components
        return None if comps is None else {k: v / max(self.cost.macs, 1) for k, v in comps.items()}

    @property
    def energy_activity_pj(self) -> float | None:
        """Table energy x simulated / gate-model-on-uniform-codes toggles of the simulated units (both count
        the same gates): the activity of the real streams relative to the random codes the table assumes. None
        for a layer whose compute is an in-memory macro's (ZigZag's model, not the table's units)."""
        if not (self.toggles_simulated and self.toggles_gates_uniform):
            return None
        if self.cost.memory is not None and self.cost.memory.macro_energy_pj is not None:
            return None
        return self.cost.energy_pj * self.toggles_simulated["total"] / self.toggles_gates_uniform


@dataclasses.dataclass(frozen=True)
class NetworkReport:
    layers: tuple[LayerPower, ...]
    table_path: str
    technology: str
    acc_bits: int | str  # a width for every layer, or "auto" (each layer's worst-case width)
    batch_size: int | None
    accelerator: str | None = None  # the accelerator data movement is priced on (None: arithmetic only)

    @property
    def _engine_totals(self) -> dict[str, Any]:
        """The cost engine's network totals of the layers (`pannjax.hw.cost.totals`)."""
        return totals([l.cost for l in self.layers])

    @property
    def total_energy_pj(self) -> float:
        """Energy per example: compute plus, on an accelerator, data movement."""
        return self._engine_totals["energy_pj"]

    @property
    def compute_energy_pj(self) -> float:
        return self._engine_totals["energy_compute_pj"]

    @property
    def memory_energy_pj(self) -> float | None:
        """Data movement per example (None: no accelerator, the arithmetic alone)."""
        return self._engine_totals["energy_memory_pj"]

    @property
    def latency_cycles(self) -> float | None:
        """Cycles per example, layers run one after the other (None: no accelerator)."""
        return self._engine_totals["latency_cycles"]

    def energy_record(self) -> dict[str, float | None]:
        """The energy keys every results.json carries (the results schema): `energy_pj` (compute plus data
        movement), `energy_compute_pj`, `energy_memory_pj` and `latency_cycles` (None without an accelerator),
        `toggles` (None when no layer has a bit-flip model)."""
        t = self._engine_totals
        return {k: t[k] for k in ENERGY_KEYS}

    @property
    def total_macs(self) -> int:
        return int(sum(l.macs for l in self.layers))

    def rows(self) -> list[dict[str, Any]]:
        """Flat per-layer rows (the CSV/JSON/table content), energies per example in pJ."""
        total = self.total_energy_pj or 1.0
        out = []
        for l in self.layers:
            out.append({
                "layer": l.path, "kind": l.kind, "operator": l.operator,
                "bits": f"{l.x_format}x{l.w_format}->acc{l.acc_bits}",
                "macs": l.macs, "fan_in": l.fan_in, "density": l.density,
                "units": "; ".join(f"{u.unit}x{u.count}" for u in l.units),
                "ops": "; ".join(f"{o.kind}{list(o.bits)}x{o.count}" for o in l.ops),
                "toggles": l.toggles,
                "toggles_per_mac_analytic": None if l.toggles_analytic is None else l.toggles_analytic["total"],
                "toggles_per_mac_analytic_measured":
                    None if l.toggles_analytic_measured is None else l.toggles_analytic_measured["total"],
                "toggles_per_mac_simulated": None if l.toggles_simulated is None else l.toggles_simulated["total"],
                "acc_share_simulated": None if l.toggles_simulated is None else
                    sum(l.toggles_simulated.get(g, 0.0) for g in ACCUMULATION_GROUPS)
                    / max(l.toggles_simulated["total"], 1e-12),
                "energy_pJ": l.energy_total_pj,
                "energy_compute_pJ": l.energy_pj,
                "energy_memory_pJ": l.energy_memory_pj,
                **{f"energy_memory_{op}_pJ": None if l.memory is None else l.memory.operand_energy.get(op, 0.0)
                   for op in OPERANDS},
                "latency_cycles": None if l.memory is None else l.memory.latency_cycles,
                "utilization": None if l.memory is None else l.memory.utilization,
                "energy_activity_pJ": l.energy_activity_pj,
                "share": l.energy_total_pj / total,
                "acc_bits_worst": None if l.accumulator is None else l.accumulator.worst,
                "acc_bits_observed": None if l.accumulator is None else l.accumulator.observed,
            })
        return out

    def totals(self) -> dict[str, Any]:
        act = [l.energy_activity_pj for l in self.layers]
        t = self._engine_totals
        return {"macs": t["macs"], "energy_pJ": t["energy_pj"],
                "energy_compute_pJ": t["energy_compute_pj"], "energy_memory_pJ": t["energy_memory_pj"],
                "latency_cycles": t["latency_cycles"],
                "accelerator": self.accelerator,
                "toggles": t["toggles"],
                "toggle_model": self.layers[0].toggle_model if self.layers else None,
                "energy_activity_pJ": float(sum(a for a in act if a is not None)) if any(a is not None for a in act) else None,
                "layers": len(self.layers), "table": self.table_path, "technology": self.technology,
                "acc_bits": self.acc_bits, "batch_size": self.batch_size, **self._acc32_totals()}

    def _acc32_totals(self) -> dict[str, Any]:
        """With acc_bits="auto": the network priced at 32-bit accumulators, and the toggles it saves."""
        if self.acc_bits != "auto":
            return {}
        at32 = [l.cost_acc32 for l in self.layers]
        out = {"energy_acc32_pJ": float(sum(c.energy_pj for c in at32)), "toggles_acc32": totals(at32)["toggles"]}
        out["toggles_saved_vs_acc32"] = (None if out["toggles_acc32"] is None
                                         else out["toggles_acc32"] - (self._engine_totals["toggles"] or 0.0))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"layers": self.rows(), "totals": self.totals(),
                "components": {l.path: {"analytic": l.toggles_analytic, "analytic_measured": l.toggles_analytic_measured,
                                        "simulated": l.toggles_simulated, "simulated_macs": l.simulated_macs,
                                        "memory": None if l.memory is None else dataclasses.asdict(l.memory)}
                               for l in self.layers}}

    def format_table(self) -> str:
        """A readable fixed-width table (per example) with a totals line."""
        cols = [("layer", 28, "s"), ("operator", 8, "s"), ("bits", 20, "s"), ("macs", 11, "d"),
                ("toggles_per_mac_analytic", 8, ".2f"), ("toggles_per_mac_simulated", 8, ".2f"),
                ("energy_compute_pJ", 12, ".1f"), ("energy_memory_pJ", 12, ".1f"), ("share", 7, ".1%")]
        heads = ["layer", "operator", "bits", "MACs", "tog/MAC", "tog/MAC", "compute pJ", "memory pJ", "share"]
        heads2 = ["", "", "", "", "analytic", "simul.", "", "", ""]

        def fmt(v, w, f):
            if v is None:
                return "-".rjust(w)
            return str(v)[:w].ljust(w) if f == "s" else format(v, f).rjust(w)

        lines = ["  ".join(h.ljust(w) if f == "s" else h.rjust(w) for h, (_, w, f) in zip(heads, cols)),
                 "  ".join(h.ljust(w) if f == "s" else h.rjust(w) for h, (_, w, f) in zip(heads2, cols))]
        lines.append("-" * len(lines[0]))
        for r in self.rows():
            lines.append("  ".join(fmt(r[k], w, f) for k, w, f in cols))
        lines.append("-" * len(lines[0]))
        t = self.totals()
        lines.append(f"total: {t['macs']:,} MACs, {t['energy_pJ']:.1f} pJ per example "
                     f"({t['energy_pJ'] / 1e6:.4f} uJ; {self.technology} table {Path(self.table_path).name})"
                     + (f"; activity-scaled {t['energy_activity_pJ']:.1f} pJ" if t["energy_activity_pJ"] else "")
                     + ("" if self.accelerator is None else
                        f"; on {self.accelerator}: compute {t['energy_compute_pJ']:.1f} + memory "
                        f"{t['energy_memory_pJ']:.1f} pJ, {t['latency_cycles']:.0f} cycles"))
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """Energy per example of every layer as a stacked bar: compute, then data movement of W, I and O."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.rows()
        names = [r["layer"] for r in rows]
        parts = [("compute", [r["energy_compute_pJ"] for r in rows])] + [
            (f"memory {op}", [r[f"energy_memory_{op}_pJ"] or 0.0 for r in rows]) for op in OPERANDS]
        fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(rows)), 4.0))
        bottom = [0.0] * len(rows)
        for label, values in parts:
            ax.bar(names, values, bottom=bottom, label=label)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_ylabel("energy per example (pJ)")
        ax.set_title(f"compute and data movement on {self.accelerator}")
        ax.tick_params(axis="x", labelrotation=90)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return Path(path)

    def save(self, out_dir: str | Path, stem: str = "power_report") -> dict[str, Path]:
        """Write `<stem>.json` (rows, totals, component breakdowns), `<stem>.csv` (rows) and, on an
        accelerator, `<stem>.png` (`plot`)."""
        from pannjax.runlog import to_jsonable

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        jp, cp = out_dir / f"{stem}.json", out_dir / f"{stem}.csv"
        jp.write_text(json.dumps(to_jsonable(self.as_dict()), indent=2) + "\n")
        rows = self.rows()
        with open(cp, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["layer"])
            wr.writeheader()
            wr.writerows(rows)
        if self.accelerator is None:
            return {"json": jp, "csv": cp}
        return {"json": jp, "csv": cp, "png": self.plot(out_dir / f"{stem}.png")}


# ---------------------------------------------------------------------------------------------------
# Operand streams of one layer
# ---------------------------------------------------------------------------------------------------

def layer_streams(layer, x_codes: np.ndarray, w_codes: np.ndarray, max_macs: int | None = 1 << 21,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x_stream, w_stream), each (K, units) int, of a random sample of the layer's output elements in
    output-stationary order: column u holds the reduction of one output (n, h, w, o), in kernel (HWIO)
    order -- kh, kw, then input channel innermost. All outputs when `max_macs` is None. `layer` gives the
    kind, strides, padding and groups (a `BoundLayer`); `x_codes`, `w_codes` its integer operands."""
    x, w = np.asarray(x_codes), np.asarray(w_codes)
    if layer.kind == "dense":
        rows = x.reshape(-1, x.shape[-1])
        groups, k = 1, w.shape[0]
        wmat = w
        patches = rows[:, None, :]
    else:
        from pannjax.ops import normalize_padding  # pannjax.hw imports no Flax at import time

        kh, kw, cg, n_out = w.shape
        g = layer.groups
        pt = jax.lax.conv_general_dilated_patches(
            np.asarray(x, np.float32), (kh, kw), tuple(layer.strides), normalize_padding(layer.padding),
            dimension_numbers=("NHWC", "HWIO", "NHWC"))
        pt = np.asarray(pt).reshape(-1, g, cg, kh * kw)  # features ordered (C, kh, kw)
        patches = np.rint(pt.transpose(0, 1, 3, 2).reshape(pt.shape[0], g, kh * kw * cg)).astype(np.int32)
        wmat = w.reshape(kh * kw * cg, n_out)
        groups, k = g, kh * kw * cg
    n_pos, n_out = patches.shape[0], wmat.shape[1]
    total_units = n_pos * n_out
    units = total_units if max_macs is None else int(min(total_units, max(1, max_macs // k)))
    rng = np.random.default_rng(seed)
    idx = np.arange(total_units) if units == total_units else np.sort(rng.choice(total_units, units, replace=False))
    pos, out = idx // n_out, idx % n_out
    grp = out // (n_out // groups)
    xs = patches[pos, grp, :].T
    ws = wmat[:, out]
    return np.ascontiguousarray(xs), np.ascontiguousarray(ws)


# ---------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------

def _simulate_layer(layer, cost: LayerCost, toggle_model: str, max_sim_macs: int | None, seed: int,
                    x_codes: np.ndarray | None = None):
    """Per MAC of the layer, by component: (gate-level simulated, `toggle_model` on the measured operand
    statistics, MACs sampled, gate model on uniform codes) over its units that have a netlist
    (`pannjax.hw.gates.layer_sim`), on the layer's captured operands (or the input codes `x_codes`);
    Nones when there is none to run (float or analog layers, no captured batch)."""
    from pannjax.hw.gates.layer_sim import SIMULATED_UNITS, simulate_unit_op

    units = [u for u in cost.units if u.count and u.unit in SIMULATED_UNITS]
    xv, wv = layer.input_view(), layer.weight_view()
    if x_codes is None and xv is not None:
        x_codes = xv.codes
    if not units or x_codes is None or wv is None:
        return None, None, 0, None
    xs, ws = layer_streams(layer, x_codes, wv.codes, max_sim_macs, seed)
    simulated, measured, uniform = {}, {}, 0.0
    for u in units:
        args = unit_op_arguments(u)  # the cost engine's configuration of this unit
        stats = {"x_stats": OperandStats.from_codes(xs, u.x.bits, u.x.signed)} if u.unit != "xnor" else {}
        if u.unit in ("mac", "absdiff", "mf"):
            stats["w_stats"] = OperandStats.from_codes(ws, args["w_bits"], args["w_signed"])
        parts = ((simulated, simulate_unit_op(u, xs, ws)),
                 (measured, unit_toggles(**args, model=toggle_model, **stats)))
        for into, per_op in parts:
            for k, v in per_op.items():
                into[k] = into.get(k, 0.0) + v * u.count / max(cost.macs, 1)
        uniform += unit_op_toggles(u, "gates")["total"] * u.count / max(cost.macs, 1)
    return simulated, measured, int(xs.size), uniform


def _priced_at_least(layer, pricing: Pricing, bits: int) -> LayerCost:
    """The layer priced at the narrowest accumulator of at least `bits` that its units take (a unit's
    accumulator also holds one full-width term: a MAC's x_bits + w_bits, whatever the weights' values)."""
    arithmetic = dataclasses.replace(pricing, accelerator=None)  # the width first, the data movement once
    for b in range(bits, 64):
        try:
            price_layer(layer, dataclasses.replace(arithmetic, acc_bits=b))
        except ConfigError:
            continue
        return price_layer(layer, dataclasses.replace(pricing, acc_bits=b))
    return price_layer(layer, dataclasses.replace(pricing, acc_bits=64))


def build_report(model, variables, x, acc_bits: int | str = 32, table: EnergyTable | str | None = None,
                 simulate: bool | None = None, max_sim_macs: int | None = 1 << 21, seed: int = 0,
                 toggle_model: str = "gates", layer_inputs: Mapping[str, np.ndarray] | None = None,
                 accelerator: AcceleratorConfig | None = None, **call_kwargs) -> NetworkReport:
    """Per-layer report of `model` (a Flax module built from pannjax.nn layers) with `variables`.

    `x`: a real input batch (array) or a `jax.ShapeDtypeStruct`; with a real batch (and `simulate` not
    False) integer layers are simulated at gate level on their captured operands. Energies are per example. Every figure
    comes from the cost engine (`pannjax.hw.cost.price_layer`), at each layer's real weight density.
    `acc_bits`: the accumulator width B of every layer, or "auto": each integer layer at its worst-case width
    (`pannjax.hw.accumulator`), or at the narrowest its units take when that is wider (they also hold one
    full-width term); float or other layers at 32; the 32-bit figures in the totals beside.
    Every row reports the worst-case width and, given a real batch, the width that batch used.
    `layer_inputs` ({layer path: integer input codes of `x`}): the operand streams to simulate instead of
    the codes the fake-quant forward captures -- e.g. those the exported integer program computes
    (`pannjax.export.layer_inputs`). `accelerator` (not `none`): each layer's data movement on it, by ZigZag
    (`pannjax.hw.system.memory_cost`), added to its compute energy."""
    from pannjax.nn import bound_layers  # model-facing glue; pannjax.hw itself imports no Flax

    auto = acc_bits == "auto"
    if not auto and (isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 2 <= acc_bits <= 64):
        raise ConfigError(f"acc_bits={acc_bits!r}: expected an accumulator width in 2..64 bits or auto")
    pricing = Pricing.make(table, toggle_model, 32 if auto else acc_bits, accelerator=accelerator)
    at32 = dataclasses.replace(pricing, accelerator=None)  # auto: the totals' 32-bit comparison, arithmetic only
    real = isinstance(x, (np.ndarray, jax.Array))
    simulate = real if simulate is None else simulate
    if simulate and not real:
        raise ConfigError("simulate=True needs a real input batch, not a shape")
    layers = []
    for i, layer in enumerate(bound_layers(model, variables, x, capture_inputs=simulate or real, **call_kwargs)):
        width = layer.accumulator_width()
        if auto and width is None and layer.kernel is None:
            raise ConfigError(f"acc_bits=auto needs the network's weights: layer {layer.path} has none (abstract)")
        cost_at_b = price_layer(layer, at32 if auto else pricing)  # at acc_bits (auto: 32, the totals' comparison)
        cost = (_priced_at_least(layer, pricing, width.worst) if width is not None else price_layer(layer, pricing)) \
            if auto else cost_at_b
        given = None if layer_inputs is None else layer_inputs.get(layer.path)
        simulated, measured, n, uniform = _simulate_layer(layer, cost, toggle_model, max_sim_macs, seed + i, given) \
            if simulate else (None, None, 0, None)
        layers.append(LayerPower(cost, measured, simulated, n, uniform, width, cost_at_b if auto else None))
    batch = int(x.shape[0]) if hasattr(x, "shape") and len(x.shape) else None
    return NetworkReport(tuple(layers), pricing.table.path, pricing.table.technology, acc_bits, batch,
                         None if pricing.accelerator is None else pricing.accelerator.name)
