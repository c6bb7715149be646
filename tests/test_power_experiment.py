"""experiments/power.py end to end on a tiny configuration."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_power_experiment_writes_tables_plots_and_results(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "experiments" / "power.py"), f"hydra.run.dir={out}",
           "bits=[2,4]", "acc_bits=[16,32]", "fan_in=32", "weight_bits=[2,4]",
           "pann.x_bits=[2,4]", "pann.additions=[1,2]", "simulate.units=64"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    for key in ("toggles_per_mac", "simulator_check", "signed_vs_unsigned_accumulation",
                "weight_only_quantization", "repeated_additions", "power_equivalence", "wall_time_s"):
        assert key in res
    assert res["max_abs_rel_error_analytic_vs_sim"] < 0.05
    assert len(res["toggles_per_mac"]) == 2 * 2 * 2
    assert all(r["ratio"] > 1 for r in res["signed_vs_unsigned_accumulation"])
    for png in ("toggles_vs_bits.png", "accumulator_share.png", "mac_vs_additions.png", "equivalence.png"):
        assert (out / png).stat().st_size > 1000
    assert "Power equivalence" in (out / "power_tables.md").read_text()


def test_power_experiment_bad_config_is_one_line(tmp_path):
    cmd = [sys.executable, str(ROOT / "experiments" / "power.py"), f"hydra.run.dir={tmp_path}",
           "bits=[2]", "acc_bits=[16]", "main_acc_bits=2", "pann.x_bits=[2]", "pann.additions=[1]", "plots=false"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
