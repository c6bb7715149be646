"""The gate-level part of the power-model study (`experiments/power.py`, config group `gates`): every unit's
toggles per operation under both toggle models, the calibrated model against fresh gate-level
simulations, the shipped calibration's validation, the MAC-vs-additions exchange rate under both models,
and the multiplier and adder architectures compared on one MAC.

Tables (lists of dicts; `markdown` renders them):

  unit_toggles     unit x widths x signedness x B x streams: ``registers`` and ``gates`` totals per
                   operation (`unit_toggles`, fan-in `fan_in`); streams "uniform" or "dnn" (ReLU'd
                   Gaussian activations, Gaussian weights, MSE-optimal clipping: `OperandStats.gaussian`)
  gate_check       the rows at `gates.check_bits` x `gates.check_acc_bits`, simulated at gate level
                   (`simulated_unit_toggles`, `gates.operations` operations, a seed the calibration did
                   not use) beside both models, with the gate model's relative error
  calibration      per unit, the shipped calibration's validation rows (`scripts/calibrate_gates.py`):
                   count, mean and worst relative error
  exchange_rate    R, the b_x-bit PANN additions per input with the toggles of one signed b x b MAC
                   (`equivalent_additions`), under each model
  architectures    a signed b x b MAC with B = 32 under each multiplier (yosys adder) and each adder
                   (yosys multiplier): gates (without flip-flops) and simulated toggles per MAC on
                   uniform and DNN-like streams, relative to the default (yosys, yosys)
"""

from __future__ import annotations

import numpy as np

from pannjax.errors import ConfigError
from pannjax.hw.gates import generators
from pannjax.hw.gates.model import calibration_table, default_stats, simulated_unit_toggles
from pannjax.hw.toggles import MODELS, TOGGLE_UNITS, equivalent_additions, unit_toggles

SIGNEDNESS = {"uu": (False, False), "us": (False, True), "ss": (True, True)}
STREAMS = ("uniform", "dnn")
CHECK_SEED = 11  # the calibration fits with seed 0 and validates with seed 7


def unit_configs(unit: str, bits, acc_bits: int, shift_w_bits: int):
    """(x_bits, w_bits, x_signed, w_signed, arch) of `unit` in the study grid at accumulator width B."""
    for b in bits:
        if unit in ("mac", "absdiff", "mf"):
            for xs, ws in SIGNEDNESS.values():
                if unit != "mac" or 2 * b <= acc_bits:
                    yield b, b, xs, ws, None
        elif unit == "mult":
            for s in (False, True):
                yield b, b, s, s, None
        elif unit == "add":
            for arch in ("split", "signed"):
                yield b, 8, False, True, arch
        elif unit == "shift":
            if b + 2 ** (shift_w_bits - 1) <= acc_bits:
                for xs in (False, True):
                    yield b, shift_w_bits, xs, True, None
        elif unit == "sign_select":
            for xs in (False, True):
                yield b, 1, xs, True, None
    if unit == "xnor":
        yield 1, 1, True, True, None


def _row(unit, xb, wb, xs, ws, arch, acc, kind, fan_in, additions) -> dict:
    x_stats, w_stats = default_stats(unit, xb, xs, "x", kind), default_stats(unit, wb, ws, "w", kind)
    row = {"unit": unit, "x_bits": xb, "w_bits": wb, "x_signed": xs, "w_signed": ws, "arch": arch or "",
           "acc_bits": acc, "streams": kind}
    for model in MODELS:
        row[model] = unit_toggles(unit, xb, wb, acc, xs, ws, fan_in, model, x_stats=x_stats, w_stats=w_stats,
                                  arch=arch, additions=additions if unit == "add" else None)["total"]
    return row


def check_config(cfg) -> None:
    """One-line errors for a bad `gates` config group, before anything runs."""
    unknown = [u for u in cfg.units if u not in TOGGLE_UNITS]
    if unknown:
        raise ConfigError(f"gates.units={list(cfg.units)}: {unknown} are not units; "
                          f"choose from {', '.join(TOGGLE_UNITS)}")
    if not float(cfg.additions) > 0:
        raise ConfigError(f"gates.additions={cfg.additions}: PANN's additions per input must be > 0")
    if not 2 <= int(cfg.shift_w_bits) <= 4:
        raise ConfigError(f"gates.shift_w_bits={cfg.shift_w_bits}: a PoT weight of 2..4 bits (sign + exponent field)")


def run_gate_study(cfg, fan_in: int, bits, acc_bits, x_bits, main_acc_bits: int) -> dict:
    """All gate-level tables (module docstring) for the `gates` config group `cfg`."""
    check_config(cfg)
    additions = float(cfg.additions)
    rows = [_row(unit, *c, acc, kind, fan_in, additions)
            for unit in cfg.units for acc in acc_bits
            for c in unit_configs(unit, bits, acc, int(cfg.shift_w_bits)) for kind in STREAMS]
    check = []
    for r in rows:
        if r["x_bits"] in cfg.check_bits or r["unit"] == "xnor":
            if r["acc_bits"] not in cfg.check_acc_bits:
                continue
            xs = default_stats(r["unit"], r["x_bits"], r["x_signed"], "x", r["streams"])
            ws = default_stats(r["unit"], r["w_bits"], r["w_signed"], "w", r["streams"])
            sim = simulated_unit_toggles(r["unit"], r["x_bits"], r["w_bits"], r["acc_bits"], r["x_signed"],
                                         r["w_signed"], fan_in, xs, ws, r["arch"] or None,
                                         additions if r["unit"] == "add" else None,
                                         operations=int(cfg.operations), seed=CHECK_SEED)["total"]
            check.append({**r, "simulated": sim, "rel_error": r["gates"] / sim - 1.0,
                          "registers_over_simulated": r["registers"] / sim})
    exchange = [{"mac_bits": b, "x_bits": bx, **{model: equivalent_additions(b, bx, main_acc_bits, True, False, fan_in,
                                                                             model=model) for model in MODELS}}
                for b in bits for bx in x_bits]
    return {"unit_toggles": rows, "gate_check": check, "calibration": calibration_summary(),
            "exchange_rate": exchange,
            "architectures": architectures(list(cfg.arch_bits), fan_in, int(cfg.operations)),
            "max_abs_rel_error_gates_vs_sim": max((abs(c["rel_error"]) for c in check), default=None)}


def calibration_summary() -> list[dict]:
    """Per unit: the shipped calibration's validation rows, their mean and worst relative error."""
    by_unit: dict[str, list] = {}
    for key, rs in calibration_table().get("validation", {}).items():
        for r in rs:
            by_unit.setdefault(key.split("|")[0], []).append((key, r))
    out = []
    for unit, rs in sorted(by_unit.items()):
        key, worst = max(rs, key=lambda kr: abs(kr[1]["rel_error"]))
        mean = float(np.mean([abs(r["rel_error"]) for _, r in rs]))
        out.append({"unit": unit, "rows": len(rs), "mean_abs_error": mean,
                    "worst_error": worst["rel_error"], "worst_config": key, "worst_streams": worst["streams"],
                    "worst_fan_in": worst["fan_in"]})
    return out


def architectures(widths, fan_in: int, operations: int) -> list[dict]:
    """A signed b x b -> 32 MAC under each multiplier and each adder architecture (module docstring)."""
    from pannjax.hw.gates.simulate import simulate
    from pannjax.hw.gates.streams import unit_streams

    out = []
    for b in widths:
        variants = [(m, "yosys") for m in generators.MULTIPLIERS] + \
                   [("yosys", a) for a in generators.ADDERS if a != "yosys"]
        base = None
        for mult, adder in variants:
            nl = generators.unit_netlist("mac", x_bits=b, w_bits=b, acc_bits=32, x_signed=True, w_signed=True,
                                         mult_arch=mult, adder_arch=adder)
            row = {"bits": b, "multiplier": mult, "adder": adder,
                   "gates": sum(n for k, n in nl.gate_counts().items() if k != "DFF")}
            for kind in STREAMS:
                xs, ws = default_stats("mac", b, True, "x", kind), default_stats("mac", b, True, "w", kind)
                lanes = 64
                t = max(1, operations // (lanes * fan_in)) * fan_in
                streams = unit_streams("mac", xs, ws, fan_in, t, lanes, np.random.default_rng(CHECK_SEED))
                row[kind] = simulate(nl, streams).per_operation()["total"]
            base = base or row
            row.update({f"{k}_vs_default": row[k] / base[k] for k in ("gates", *STREAMS)})
            out.append(row)
    return out


def md_table(rows, cols, fmt=None) -> str:
    """A markdown table of `cols`; floats formatted by `fmt[col]` (default ".2f")."""
    fmt = fmt or {}
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(format(r[c], fmt.get(c, ".2f")) if isinstance(r[c], float) else str(r[c])
                                       for c in cols) + " |")
    return "\n".join(lines)


def markdown(res: dict, main_acc_bits: int) -> str:
    main = [r for r in res["unit_toggles"] if r["acc_bits"] == main_acc_bits]
    exchange = res["exchange_rate"]
    bxs = sorted({r["x_bits"] for r in exchange})
    grid = ["| MAC bits \\ b_x | " + " | ".join(f"{b} (registers / gates)" for b in bxs) + " |",
            "|" + "---|" * (len(bxs) + 1)]
    for m in sorted({r["mac_bits"] for r in exchange}):
        cells = {r["x_bits"]: r for r in exchange if r["mac_bits"] == m}
        grid.append(f"| {m} | " + " | ".join(f"{cells[b]['registers']:.2f} / {cells[b]['gates']:.2f}" for b in bxs)
                    + " |")
    cols = ["unit", "x_bits", "w_bits", "x_signed", "w_signed", "arch", "acc_bits", "streams"]
    return "\n".join([
        f"## Toggles per operation of every unit, both models (B = {main_acc_bits}; every B in results.json)", "",
        md_table(main, [*cols, "registers", "gates"]), "",
        "## Gate model vs gate-level simulation (fresh streams)", "",
        md_table(res["gate_check"], [*cols, "registers", "gates", "simulated", "rel_error"],
                 {"rel_error": "+.2%"}), "",
        "## Shipped calibration: validation per unit", "",
        md_table(res["calibration"], ["unit", "rows", "mean_abs_error", "worst_error", "worst_config", "worst_streams",
                                    "worst_fan_in"], {"mean_abs_error": ".2%", "worst_error": "+.2%"}), "",
        f"## Exchange rate: b_x-bit additions per input with the toggles of one signed b x b MAC (B = {main_acc_bits})",
        "", "\n".join(grid), "",
        "## Multiplier and adder architectures (signed b x b MAC, B = 32, simulated)", "",
        md_table(res["architectures"], ["bits", "multiplier", "adder", "gates", "uniform", "dnn", "gates_vs_default",
                                      "uniform_vs_default", "dnn_vs_default"]), ""])


__all__ = ["architectures", "calibration_summary", "check_config", "markdown", "md_table", "run_gate_study",
           "unit_configs"]
