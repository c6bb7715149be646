"""The power-model study: the register model's tables after PANN (arXiv 2202.02783, Sec. 3-4) -- toggles
per MAC by component and bit width, analytic vs the register simulator, signed vs unsigned accumulation,
weight-only quantization, repeated additions and MAC/addition power equivalence -- and, under
`results["gates"]`, every unit under both toggle models against the gate-level simulator
(`pannjax.hw.gate_study`), written as `power_tables.md`, PNG plots and a results dict.
`experiments/power.py` is its Hydra entry point; see that file for the outputs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping

import numpy as np
from omegaconf import DictConfig, OmegaConf

from pannjax.errors import ConfigError
from pannjax.hw.bitflips import OperandStats, bitflips_mac, bitflips_multiplier, bitflips_repeated_addition
from pannjax.hw.gate_study import check_config as check_gate_config
from pannjax.hw.gate_study import markdown as gate_markdown
from pannjax.hw.gate_study import md_table as _md_table
from pannjax.hw.gate_study import run_gate_study
from pannjax.hw.toggle_sim import MacConfig, mean_toggles
from pannjax.hw.toggles import equivalent_additions
from pannjax.rundir import owned_run_dir
from pannjax.results import write_results


def _uniform_streams(cfg: MacConfig, fan_in: int, units: int, rng) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = cfg.code_range("x")
    x = rng.integers(lo, hi + 1, (fan_in, units)).astype(np.int16)
    lo, hi = cfg.code_range("w")
    w = rng.integers(lo, hi + 1, (fan_in, units)).astype(np.int16)
    return x, w


def signed_vs_unsigned_accumulation(bits: int, acc_bits: int, fan_in: int, units: int, seed: int) -> dict:
    """Simulated accumulator toggles (sign-extension lines + register) for zero-mean signed products vs
    unsigned products of the same magnitudes: x ~ uniform signed codes, w ~ uniform signed codes
    (zero-mean products) against |x|, |w| (clipped to the unsigned range of the same width)."""
    rng = np.random.default_rng(seed)
    cs = MacConfig(bits, bits, acc_bits, True, True)
    x, w = _uniform_streams(cs, fan_in, units, rng)
    x = np.clip(x, -(1 << (bits - 1)) + 1, None)  # symmetric range: |x| fits the unsigned code range
    w = np.clip(w, -(1 << (bits - 1)) + 1, None)
    cu = MacConfig(bits, bits, acc_bits, False, False)
    s = mean_toggles(x, w, cs)
    u = mean_toggles(np.abs(x), np.abs(w), cu)
    acc_s = s["acc_input"] + s["accumulator"]
    acc_u = u["acc_input"] + u["accumulator"]
    return {"bits": bits, "acc_bits": acc_bits, "signed_acc_toggles": acc_s, "unsigned_acc_toggles": acc_u,
            "ratio": acc_s / acc_u, "signed_total": s["total"], "unsigned_total": u["total"]}


def _whole_list(cfg: DictConfig, key: str, lo: int, hi: int) -> list[int]:
    values = cfg.get(key)
    values = list(values) if isinstance(values, (list, tuple)) or OmegaConf.is_list(values) else [values]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi for v in values):
        raise ConfigError(f"{key}={values}: expected a list of whole numbers in {lo}..{hi}")
    return values


def check_config(cfg: DictConfig | Mapping) -> DictConfig:
    """The study's config checked against its schema (`pannjax.hw.study_options`, every default filled in),
    then the ranges of its widths: one-line errors, before anything runs."""
    from pannjax.experiment import setup  # pannjax.hw is imported by the packages the lifecycle builds on

    cfg = OmegaConf.create(setup(cfg, "power"))
    bits = _whole_list(cfg, "bits", 1, 16)
    accs = _whole_list(cfg, "acc_bits", 2, 32)
    if any(a < 2 * min(bits) for a in accs):
        raise ConfigError(f"acc_bits={accs}: each accumulator must hold a {min(bits)}x{min(bits)} product "
                          f"(at least {2 * min(bits)} bits)")
    main = cfg.get("main_acc_bits")
    if main not in accs:
        raise ConfigError(f"main_acc_bits={main!r}: expected one of acc_bits={accs}")
    if 2 * max(bits) > main:
        raise ConfigError(f"main_acc_bits={main}: too narrow for the {max(bits)}x{max(bits)} MAC of bits={bits}")
    _whole_list(cfg, "weight_bits", 1, 8)
    _whole_list(cfg, "fan_in", 1, 1 << 20)
    if cfg.gates.enabled:
        check_gate_config(cfg.gates)
    return cfg


def run_power_study(cfg: DictConfig, out_dir: str | Path) -> dict:
    """All tables of the study (plain dicts/lists), written to `out_dir`; returns the results dict."""
    t0 = time.perf_counter()
    cfg = check_config(cfg)
    out_dir = Path(out_dir)
    with owned_run_dir(out_dir, "power", OmegaConf.to_container(cfg, resolve=True), overwrite=cfg.overwrite):
        return _study(cfg, out_dir, t0)


def _study(cfg: DictConfig, out_dir: Path, t0: float) -> dict:
    bits, accs, fan_in, b_main = list(cfg.bits), list(cfg.acc_bits), int(cfg.fan_in), int(cfg.main_acc_bits)
    rng = np.random.default_rng(int(cfg.simulate.seed))

    # 1. toggles per MAC vs bit width (b x b), signed vs unsigned, all B; accumulator share
    mac_rows = []
    for signed in (True, False):
        for b_acc in accs:
            for b in bits:
                if 2 * b > b_acc:
                    continue
                t = bitflips_mac(b, b, b_acc, signed, fan_in)
                mac_rows.append({"signed": signed, "bits": b, "acc_bits": b_acc, **t.as_dict(),
                                 "acc_share": t.accumulator_share})

    # 2. simulator check of the analytic model at B = main (uniform operands)
    checks = []
    for signed in (True, False):
        for b in bits:
            mc = MacConfig(b, b, b_main, signed, signed)
            x, w = _uniform_streams(mc, fan_in, int(cfg.simulate.units), rng)
            sim = mean_toggles(x, w, mc)
            ana = next(r for r in mac_rows if r["signed"] == signed and r["bits"] == b and r["acc_bits"] == b_main)
            checks.append({"signed": signed, "bits": b, "analytic": ana["total"], "simulated": sim["total"],
                           "rel_error": (ana["total"] - sim["total"]) / sim["total"]})

    # 3. signed vs unsigned accumulation (the paper's finding), simulated
    sign_rows = [signed_vs_unsigned_accumulation(b, b_main, fan_in, int(cfg.simulate.units), int(cfg.simulate.seed))
                 for b in bits]

    # 4. quantizing only the weights: multiplier toggles at b_x = 8 vs b_w
    wq_rows = []
    for bw in cfg.weight_bits:
        bw = int(bw)
        row = {"x_bits": 8, "w_bits": bw,
               "dedicated_8xbw": bitflips_multiplier(8, bw, True)["total"],
               "both_quantized_bwxbw": bitflips_multiplier(bw, bw, True)["total"]}
        for signed in (True, False):  # b_w-bit weights fed to a fixed 8x8 multiplier (sign/zero-extended)
            w8 = OperandStats.uniform(bw, signed).widened(8)
            row[f"in_8x8_unit_{'signed' if signed else 'unsigned'}"] = bitflips_multiplier(
                8, 8, x_stats=OperandStats.uniform(8, signed), w_stats=w8)["total"]
        row["full_8x8"] = bitflips_multiplier(8, 8, True)["total"]
        wq_rows.append(row)

    # 5. MAC vs repeated additions, and the power equivalence
    pann_signed = bool(cfg.pann.signed)
    add_rows = []
    for bx in cfg.pann.x_bits:
        for r in cfg.pann.additions:
            a = bitflips_repeated_addition(int(bx), b_main, float(r), fan_in, pann_signed)
            add_rows.append({"x_bits": int(bx), "additions_per_input": float(r), "toggles_per_addition": a["total"],
                             "toggles_per_input": a["total"] * float(r)})
    eq_rows = []
    for b in bits:
        for bx in cfg.pann.x_bits:
            p_mac = next(r["total"] for r in mac_rows if r["signed"] and r["bits"] == b and r["acc_bits"] == b_main)
            eq_rows.append({"mac_bits": b, "x_bits": int(bx), "mac_toggles": p_mac,
                            "equivalent_additions": equivalent_additions(b, int(bx), b_main, True, pann_signed,
                                                                         fan_in, mac_toggles=p_mac)})

    gates = run_gate_study(cfg.gates, fan_in, bits, accs, [int(b) for b in cfg.pann.x_bits], b_main) \
        if cfg.gates.enabled else None
    results = {
        "gates": gates,
        "toggles_per_mac": mac_rows, "simulator_check": checks, "signed_vs_unsigned_accumulation": sign_rows,
        "weight_only_quantization": wq_rows, "repeated_additions": add_rows, "power_equivalence": eq_rows,
        "max_abs_rel_error_analytic_vs_sim": max(abs(c["rel_error"]) for c in checks),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    (out_dir / "power_tables.md").write_text(_markdown(results, b_main)
                                             + ("\n" + gate_markdown(gates, b_main) if gates else ""))
    if cfg.plots:
        _plots(results, out_dir, b_main)
    results.update({"completed": True, "test_accuracy": None, "energy_pj": None, "toggles": None,
                    "seed": int(cfg.simulate.seed), "wall_seconds": time.perf_counter() - t0})
    return write_results(out_dir, "power", results, results["config"])


def _markdown(res: dict, b_main: int) -> str:
    mac = [r for r in res["toggles_per_mac"] if r["acc_bits"] == b_main]
    parts = [f"# Power-model tables (toggles; B = {b_main} unless stated)", "",
             "## Toggles per b x b MAC, by component", "",
             _md_table(mac, ["signed", "bits", "inputs", "multiplier", "product", "acc_input", "accumulator",
                             "total", "acc_share"], {"acc_share": ".1%"}), "",
             "## Analytic vs simulated (uniform operands)", "",
             _md_table(res["simulator_check"], ["signed", "bits", "analytic", "simulated", "rel_error"],
                       {"rel_error": "+.2%"}), "",
             "## Signed vs unsigned accumulation (simulated, same magnitudes)", "",
             _md_table(res["signed_vs_unsigned_accumulation"], ["bits", "signed_acc_toggles",
                                                                "unsigned_acc_toggles", "ratio"]), "",
             "## Quantizing only the weights (b_x = 8)", "",
             _md_table(res["weight_only_quantization"], ["x_bits", "w_bits", "dedicated_8xbw",
                                                         "in_8x8_unit_signed", "in_8x8_unit_unsigned",
                                                         "both_quantized_bwxbw", "full_8x8"]), "",
             "## Repeated additions (PANN unit)", "",
             _md_table(res["repeated_additions"], ["x_bits", "additions_per_input", "toggles_per_addition",
                                                  "toggles_per_input"]), "",
             "## Power equivalence: additions per input with the toggles of one b-bit MAC", "",
             _equivalence_grid(res["power_equivalence"]), ""]
    return "\n".join(parts)


def _equivalence_grid(rows: list[dict]) -> str:
    macs = sorted({r["mac_bits"] for r in rows})
    bxs = sorted({r["x_bits"] for r in rows})
    val = {(r["mac_bits"], r["x_bits"]): r["equivalent_additions"] for r in rows}
    lines = ["| MAC bits \\ b_x | " + " | ".join(str(b) for b in bxs) + " |", "|" + "---|" * (len(bxs) + 1)]
    for m in macs:
        lines.append(f"| {m} | " + " | ".join(f"{val[(m, b)]:.2f}" for b in bxs) + " |")
    return "\n".join(lines)


def _plots(res: dict, out_dir: Path, b_main: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = ["inputs", "multiplier", "product", "acc_input", "accumulator"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, signed in zip(axes, (True, False)):
        rows = [r for r in res["toggles_per_mac"] if r["signed"] == signed and r["acc_bits"] == b_main]
        b = [r["bits"] for r in rows]
        bottom = np.zeros(len(rows))
        for c in comps:
            v = np.array([r[c] for r in rows])
            ax.bar(b, v, bottom=bottom, label=c)
            bottom += v
        ax.set_title(f"{'signed' if signed else 'unsigned'} b x b MAC, B = {b_main}")
        ax.set_xlabel("bit width b")
    axes[0].set_ylabel("toggles per MAC")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out_dir / "toggles_vs_bits.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    for signed, ls in ((True, "-"), (False, "--")):
        for b_acc in sorted({r["acc_bits"] for r in res["toggles_per_mac"]}):
            rows = [r for r in res["toggles_per_mac"] if r["signed"] == signed and r["acc_bits"] == b_acc]
            ax.plot([r["bits"] for r in rows], [r["acc_share"] for r in rows], ls, marker="o",
                    label=f"{'signed' if signed else 'unsigned'}, B={b_acc}")
    ax.set_xlabel("bit width b")
    ax.set_ylabel("accumulator share of MAC toggles")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "accumulator_share.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    rows = [r for r in res["toggles_per_mac"] if r["acc_bits"] == b_main]
    for signed in (True, False):
        rr = [r for r in rows if r["signed"] == signed]
        ax.plot([r["bits"] for r in rr], [r["total"] for r in rr], "k-" if signed else "k--", marker="s",
                label=f"{'signed' if signed else 'unsigned'} MAC (b x b)")
    for rep in sorted({r["additions_per_input"] for r in res["repeated_additions"]}):
        rr = [r for r in res["repeated_additions"] if r["additions_per_input"] == rep]
        ax.plot([r["x_bits"] for r in rr], [r["toggles_per_input"] for r in rr], marker=".",
                label=f"R = {rep:g} additions (b_x)")
    ax.set_xlabel("bit width (b for MAC, b_x for additions)")
    ax.set_ylabel("toggles per input element")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "mac_vs_additions.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    for bx in sorted({r["x_bits"] for r in res["power_equivalence"]}):
        rr = [r for r in res["power_equivalence"] if r["x_bits"] == bx]
        ax.plot([r["mac_bits"] for r in rr], [r["equivalent_additions"] for r in rr], marker="o", label=f"b_x = {bx}")
    ax.set_xlabel("MAC bit width b (signed)")
    ax.set_ylabel("equivalent additions R per input")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "equivalence.png", dpi=120)
    plt.close(fig)
