"""Per-layer power/energy report of a pannjax network.

For every arithmetic layer (`pannjax.nn.describe_layers`): its operator's op counts
(`Operator.cost`, so any operator works without special cases), their energy from an `EnergyTable`
(pJ per example), the share of the network total, and for integer multiply-accumulate layers the
expected toggles per MAC from the analytic model (`bitflips_mac`, uniform operands) and -- given a real
batch -- toggles measured by the bit-accurate simulator on the layer's real integer operand streams
(captured with `pannjax.nn.capture`), plus the analytic model evaluated on the measured operand
statistics. `energy_activity_pJ` rescales the table energy of the layer by simulated / analytic-uniform
toggles: the table figures describe random operands, real data switch less (or more).

The simulator runs on a random sample of at most `max_sim_macs` MACs (whole dot products) per layer.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from pannjax.errors import ConfigError
from pannjax.hw.bitflips import OperandStats, bitflips_mac
from pannjax.hw.energy import EnergyTable
from pannjax.hw.toggle_sim import MacConfig, mean_toggles

if TYPE_CHECKING:  # pannjax.ops needs flax.struct; pannjax.hw imports no Flax at import time
    from pannjax.ops import OpCount

_MAC_KINDS = ("mul", "cim_mac")


@dataclasses.dataclass(frozen=True)
class LayerPower:
    """One layer's costs, per example. Toggles are per MAC (dicts by component, with "total")."""

    path: str
    kind: str
    operator: str
    x_format: str
    w_format: str
    acc_bits: int
    fan_in: int
    macs: int
    ops: tuple["OpCount", ...]
    energy_pj: float
    toggles_analytic: dict[str, float] | None = None
    toggles_analytic_measured: dict[str, float] | None = None
    toggles_simulated: dict[str, float] | None = None
    simulated_macs: int = 0

    @property
    def energy_activity_pj(self) -> float | None:
        if not (self.toggles_simulated and self.toggles_analytic and self.toggles_analytic["total"]):
            return None
        return self.energy_pj * self.toggles_simulated["total"] / self.toggles_analytic["total"]


@dataclasses.dataclass(frozen=True)
class NetworkReport:
    layers: tuple[LayerPower, ...]
    table_path: str
    technology: str
    acc_bits: int
    batch_size: int | None

    @property
    def total_energy_pj(self) -> float:
        return float(sum(l.energy_pj for l in self.layers))

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
                "macs": l.macs, "fan_in": l.fan_in,
                "ops": "; ".join(f"{o.kind}{list(o.bits)}x{o.count}" for o in l.ops),
                "toggles_per_mac_analytic": None if l.toggles_analytic is None else l.toggles_analytic["total"],
                "toggles_per_mac_analytic_measured":
                    None if l.toggles_analytic_measured is None else l.toggles_analytic_measured["total"],
                "toggles_per_mac_simulated": None if l.toggles_simulated is None else l.toggles_simulated["total"],
                "acc_share_simulated": None if l.toggles_simulated is None else
                    (l.toggles_simulated["acc_input"] + l.toggles_simulated["accumulator"]) / max(l.toggles_simulated["total"], 1e-12),
                "energy_pJ": l.energy_pj,
                "energy_activity_pJ": l.energy_activity_pj,
                "share": l.energy_pj / total,
            })
        return out

    def totals(self) -> dict[str, Any]:
        act = [l.energy_activity_pj for l in self.layers]
        return {"macs": self.total_macs, "energy_pJ": self.total_energy_pj,
                "energy_activity_pJ": float(sum(a for a in act if a is not None)) if any(a is not None for a in act) else None,
                "layers": len(self.layers), "table": self.table_path, "technology": self.technology,
                "acc_bits": self.acc_bits, "batch_size": self.batch_size}

    def as_dict(self) -> dict[str, Any]:
        return {"layers": self.rows(), "totals": self.totals(),
                "components": {l.path: {"analytic": l.toggles_analytic, "analytic_measured": l.toggles_analytic_measured,
                                        "simulated": l.toggles_simulated, "simulated_macs": l.simulated_macs}
                               for l in self.layers}}

    def format_table(self) -> str:
        """A readable fixed-width table (per example) with a totals line."""
        cols = [("layer", 28, "s"), ("operator", 8, "s"), ("bits", 20, "s"), ("macs", 11, "d"),
                ("toggles_per_mac_analytic", 8, ".2f"), ("toggles_per_mac_simulated", 8, ".2f"),
                ("energy_pJ", 12, ".1f"), ("share", 7, ".1%")]
        heads = ["layer", "operator", "bits", "MACs", "tog/MAC", "tog/MAC", "energy pJ", "share"]
        heads2 = ["", "", "", "", "analytic", "simul.", "", ""]

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
                     + (f"; activity-scaled {t['energy_activity_pJ']:.1f} pJ" if t["energy_activity_pJ"] else ""))
        return "\n".join(lines)

    def save(self, out_dir: str | Path, stem: str = "power_report") -> dict[str, Path]:
        """Write `<stem>.json` (rows, totals, component breakdowns) and `<stem>.csv` (rows)."""
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
        return {"json": jp, "csv": cp}


# ---------------------------------------------------------------------------------------------------
# Operand streams of one layer
# ---------------------------------------------------------------------------------------------------

def layer_streams(operands, max_macs: int | None = 1 << 21, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x_stream, w_stream), each (K, units) int, of a random sample of the layer's output elements in
    output-stationary order: column u holds the reduction of one output (n, h, w, o), in kernel (HWIO)
    order -- kh, kw, then input channel innermost. All outputs when `max_macs` is None."""
    x, w = operands.x_codes, operands.w_codes
    if operands.kind == "dense":
        rows = x.reshape(-1, x.shape[-1])
        groups, k = 1, w.shape[0]
        wmat = w
        patches = rows[:, None, :]
    else:
        kh, kw, cg, n_out = w.shape
        g = operands.groups
        from pannjax.ops import normalize_padding
        pt = jax.lax.conv_general_dilated_patches(
            np.asarray(x, np.float32), (kh, kw), tuple(operands.strides), normalize_padding(operands.padding),
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

@functools.lru_cache(maxsize=256)
def _uniform_mac_toggles(x_bits: int, w_bits: int, x_signed: bool, w_signed: bool, acc_bits: int,
                         fan_in: int) -> dict[str, float]:
    return bitflips_mac(x_bits, w_bits, acc_bits, fan_in=fan_in, x_stats=OperandStats.uniform(x_bits, x_signed),
                        w_stats=OperandStats.uniform(w_bits, w_signed)).as_dict()


def _int_formats(ops, x_format, w_format) -> bool:
    return any(o.kind in _MAC_KINDS for o in ops) and not (x_format.is_float or w_format.is_float)


def weight_density(variables, record) -> float:
    """Fraction of non-zero quantized weights of one described layer (1.0 when `variables` are abstract
    shapes): what an operator that skips zero weights pays for (`Operator.cost(..., density)`)."""
    node = variables.get("params", {})
    for part in record.path.split("/"):
        if part not in node:
            return 1.0
        node = node[part]
    kernel = node.get("kernel")
    if kernel is None or isinstance(kernel, jax.ShapeDtypeStruct):
        return 1.0
    qw = record.quantizer_w
    learned = node.get("quantizer_w") if qw.learned_fields else None
    if learned:
        qw = qw.with_learned(**learned)
    return float(np.mean(np.asarray(qw.quantize(kernel)) != 0))


def build_report(model, variables, x, acc_bits: int = 32, table: EnergyTable | str | None = None,
                 simulate: bool | None = None, max_sim_macs: int | None = 1 << 21, seed: int = 0,
                 **call_kwargs) -> NetworkReport:
    """Per-layer report of `model` (a Flax module built from pannjax.nn layers) with `variables`.

    `x`: a real input batch (array) or a `jax.ShapeDtypeStruct`; with a real batch (and `simulate` not
    False) toggles are simulated on the layer's captured operands. Energies are per example. Each layer
    is costed at its real weight density (`weight_density`): operators that skip zero weights (e.g.
    shift on pruned PoT weights) pay only for the non-zero ones, in the op counts and in the simulator."""
    from pannjax.nn import describe_layers  # model-facing glue; pannjax.hw itself imports no Flax

    if not isinstance(table, EnergyTable):
        table = EnergyTable.load(table)
    records = describe_layers(model, variables, x, **call_kwargs)
    real = isinstance(x, (np.ndarray, jax.Array))
    simulate = real if simulate is None else simulate
    if simulate and not real:
        raise ConfigError("simulate=True needs a real input batch, not a shape")
    operands = None
    if simulate:
        from pannjax.nn.capture import capture_layer_operands
        operands = capture_layer_operands(model, variables, x, **call_kwargs)
        if [o.path for o in operands] != [r.path for r in records]:
            raise ConfigError("captured layers do not match described layers (model is not deterministic?)")
    layers = []
    for i, rec in enumerate(records):
        fx, fw = rec.quantizer_x.format, rec.quantizer_w.format
        shape = rec.contraction
        ops = tuple(rec.operator.cost(shape, fx, fw, acc_bits, density=weight_density(variables, rec)))
        energy = table.cost_pj(ops)
        analytic = measured = simulated = None
        sim_macs = 0
        if _int_formats(ops, fx, fw) and not getattr(rec.operator.mode, "is_analog", False) \
                and fx.bits + fw.bits <= acc_bits and max(fx.bits, fw.bits) <= 16:
            analytic = _uniform_mac_toggles(fx.bits, fw.bits, fx.signed, fw.signed, acc_bits, shape.fan_in)
            if operands is not None and operands[i].x_codes is not None and operands[i].w_codes is not None:
                op = operands[i]
                xs, ws = layer_streams(op, max_sim_macs, seed + i)
                cfg = MacConfig(fx.bits, fw.bits, acc_bits, fx.signed, fw.signed,
                                skip_zero_weights=getattr(rec.operator, "skips_zero_weights", False))
                simulated = mean_toggles(xs.astype(np.int16), ws.astype(np.int16), cfg)
                sim_macs = int(xs.size)
                measured = bitflips_mac(fx.bits, fw.bits, acc_bits, fan_in=shape.fan_in,
                                        x_stats=OperandStats.from_codes(xs, fx.bits, fx.signed),
                                        w_stats=OperandStats.from_codes(ws, fw.bits, fw.signed)).as_dict()
        layers.append(LayerPower(
            path=rec.path, kind=rec.kind, operator=getattr(rec.operator, "name", type(rec.operator).__name__),
            x_format=str(fx), w_format=str(fw), acc_bits=acc_bits, fan_in=shape.fan_in, macs=shape.macs,
            ops=ops, energy_pj=energy, toggles_analytic=analytic, toggles_analytic_measured=measured,
            toggles_simulated=simulated, simulated_macs=sim_macs))
    batch = int(x.shape[0]) if hasattr(x, "shape") and len(x.shape) else None
    return NetworkReport(tuple(layers), table.path, table.technology, acc_bits, batch)
