"""experiments/power.py end to end on a tiny configuration."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pannjax.errors import ConfigError
from pannjax.hw import gate_study
from pannjax.hw.study_options import PowerGates
from pannjax.results import read_results

ROOT = Path(__file__).resolve().parents[1]


def test_power_experiment_writes_tables_plots_and_results(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "experiments" / "power.py"), f"hydra.run.dir={out}",
           "bits=[2,4]", "acc_bits=[16,32]", "fan_in=32", "weight_bits=[2,4]",
           "pann.x_bits=[2,4]", "pann.additions=[1,2]", "simulate.units=64", "gates.units=[mac,add,shift,xnor]",
           "gates.check_bits=[4]", "gates.check_acc_bits=[16]", "gates.arch_bits=[2]", "gates.operations=16384"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = read_results(out / "results.json")  # the power results schema
    for key in ("toggles_per_mac", "simulator_check", "signed_vs_unsigned_accumulation",
                "weight_only_quantization", "repeated_additions", "power_equivalence", "wall_seconds"):
        assert key in res
    assert res["max_abs_rel_error_analytic_vs_sim"] < 0.05
    assert len(res["toggles_per_mac"]) == 2 * 2 * 2
    assert all(r["ratio"] > 1 for r in res["signed_vs_unsigned_accumulation"])
    for png in ("toggles_vs_bits.png", "accumulator_share.png", "mac_vs_additions.png", "equivalence.png"):
        assert (out / png).stat().st_size > 1000
    assert "Power equivalence" in (out / "power_tables.md").read_text()
    gates = res["gates"]
    assert {r["unit"] for r in gates["unit_toggles"]} == {"mac", "add", "shift", "xnor"}
    assert len(gates["unit_toggles"]) == 2 * (2 * 3 + 2 * 2 + 2 * 2 + 1) * 2  # B x (configs) x streams
    assert len(gates["gate_check"]) == 2 * (3 + 2 + 2 + 1) and gates["max_abs_rel_error_gates_vs_sim"] < 0.1
    # real logic toggles well above its registers, and the additions a MAC buys are fewer in real logic
    assert all(r["gates"] > 1.5 * r["registers"] for r in gates["unit_toggles"] if r["unit"] == "mac")
    assert all(r["gates"] < r["registers"] for r in gates["exchange_rate"])
    arch = {(r["multiplier"], r["adder"]): r for r in gates["architectures"]}
    assert arch["yosys", "yosys"]["gates_vs_default"] == 1.0
    assert arch["yosys", "kogge_stone"]["gates"] > arch["yosys", "ripple"]["gates"]
    assert {r["unit"] for r in gates["calibration"]} >= {"mac", "mult", "add", "shift", "absdiff", "xnor"}
    assert "Gate model vs gate-level simulation" in (out / "power_tables.md").read_text()


def test_power_experiment_bad_config_is_one_line(tmp_path):
    cmd = [sys.executable, str(ROOT / "experiments" / "power.py"), f"hydra.run.dir={tmp_path}",
           "bits=[2]", "acc_bits=[16]", "main_acc_bits=2", "pann.x_bits=[2]", "pann.additions=[1]", "plots=false",
           "gates.enabled=false"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match=r"^gates.units=\['mac', 'madd'\]: \['madd'\] are not units"):
        gate_study.check_config(PowerGates(units=["mac", "madd"]))  # the check the entry point runs first
