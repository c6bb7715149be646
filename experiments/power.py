"""Regenerate the power-model results as tables, plots and results.json: the register model after PANN
(arXiv 2202.02783, Sec. 3-4) and every unit under both toggle models against the gate-level simulator.

    python experiments/power.py                       # full study, a few minutes on 2 CPU cores
    python experiments/power.py fan_in=64 plots=false bits=[2,4,8]
    python experiments/power.py gates.enabled=false   # the register-model tables only (~30 s)
    python experiments/power.py checkpoint=<export run dir> [power_batch=64]   # an exported program instead

Outputs in the Hydra run dir: results.json (the gate-level tables under "gates": unit_toggles,
gate_check, calibration, exchange_rate, architectures), power_tables.md, and (plots=true) PNG figures:
  toggles_vs_bits.png      toggles per MAC vs bit width, signed vs unsigned, by component
  accumulator_share.png    accumulator share of the MAC's toggles vs bit width, per B
  mac_vs_additions.png     toggles of one b x b MAC vs R additions of a b_x-bit activation
  equivalence.png          R such that R b_x-bit additions toggle as much as one b-bit MAC
With checkpoint=<a run dir of experiments/export.py>: the exported program's per-layer power report instead,
simulated at gate level on the operand streams it computes (pannjax/export/power.py): power_report.{json,csv}.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pannjax.experiment import exit_on_config_error, to_container
from pannjax.export.power import run_program_power
from pannjax.hw.study import run_power_study
from pannjax.rundir import refuse_before_hydra
from pannjax.schema import check_command_line


@hydra.main(version_base="1.3", config_path="../configs", config_name="power")
def main(cfg: DictConfig) -> None:
    if cfg.checkpoint:
        with exit_on_config_error():
            res = run_program_power(to_container(cfg), HydraConfig.get().runtime.output_dir)
        print(f"{res['program']}: {res['energy_pj']:.1f} pJ, {res['toggles']:.4g} toggles per example "
              f"(simulated on {res['images']} test images' streams)")
        return
    with exit_on_config_error():
        res = run_power_study(cfg, HydraConfig.get().runtime.output_dir)
    print(Path(HydraConfig.get().runtime.output_dir) / "power_tables.md")
    print(f"analytic vs simulated: max |rel. error| {res['max_abs_rel_error_analytic_vs_sim']:.2%}; "
          f"signed/unsigned accumulator toggles at b=8: "
          f"{next(r['ratio'] for r in res['signed_vs_unsigned_accumulation'] if r['bits'] == max(cfg.bits)):.2f}x; "
          f"{res['wall_seconds']:.1f} s")
    if res["gates"]:
        print(f"gate model vs gate-level simulation: max |rel. error| "
              f"{res['gates']['max_abs_rel_error_gates_vs_sim']:.2%} over {len(res['gates']['gate_check'])} rows")


if __name__ == "__main__":
    check_command_line("power", sys.argv[1:])  # a config Hydra cannot compose: one line, exit 2
    refuse_before_hydra(source_key="checkpoint", source_what="export")  # before Hydra writes .hydra/
    main()
