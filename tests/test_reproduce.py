"""scripts/reproduce.py: a 4-config digits sweep through the joblib launcher, table, plot, resume."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pannjax.errors import ConfigError
from pannjax.reproduce import compare_expected, count_jobs, experiment_names, load_experiment, table_rows

ROOT = Path(__file__).resolve().parents[1]


def test_count_jobs_of_a_grid():
    assert count_jobs({"quant.w_bits": "2,4", "seed": "0,1,2"}) == 6
    assert count_jobs({"a": 3}) == 1
    assert count_jobs({"x": "range(0,5)"}) is None
    assert count_jobs(None) == 1


def test_table_rows_group_seeds_into_means():
    rows = [{"bits": 2, "seed": 0, "acc": 0.5}, {"bits": 2, "seed": 1, "acc": 0.7}, {"bits": 4, "seed": 0, "acc": 0.9}]
    grouped, columns = table_rows(rows, {"columns": ["bits", "acc"], "group_by": ["bits"]})
    assert columns == ["bits", "n", "acc.mean", "acc.std"]
    assert [(g["bits"], g["n"]) for g in grouped] == [(2, 2), (4, 1)]
    assert grouped[0]["acc.mean"] == pytest.approx(0.6) and grouped[0]["acc.std"] == pytest.approx(0.1)
    assert table_rows(rows, {"columns": ["acc"]}) == (rows, ["acc"])


def test_compare_expected_matches_rows():
    rows = [{"quant.name": "pot", "test_accuracy": 0.90}, {"quant.name": "uniform", "test_accuracy": 0.95}]
    out = compare_expected(rows, {"source": "T2", "rows": [{"match": {"quant.name": "pot"}, "value": 0.92},
                                                         {"match": {"quant.name": "apot"}, "value": 0.93}]})
    assert out[0]["measured"] == 0.90 and out[0]["delta"] == pytest.approx(-0.02)
    assert out[1]["measured"] is None


def test_every_experiment_config_loads():
    names = experiment_names()
    assert "digits_bits" in names
    for name in names:
        load_experiment(name)
    with pytest.raises(ConfigError, match="not found"):
        load_experiment("no_such_experiment")


def _reproduce(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "reproduce.py"), *args], capture_output=True,
                          text=True, timeout=600, env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})


def test_joblib_sweep_of_four_configs_then_table_plot_and_resume(tmp_path):
    out = tmp_path / "sweep"
    args = ("digits_bits", "hydra/launcher=local", "trainer.epochs=1", "trainer.progress=false", "--out", str(out))
    proc = _reproduce(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(out.glob("*/results.json"))) == 4
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "quant.w_bits" not in line]
    assert len(table) == 4, proc.stdout
    assert (out / "summary.png").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert sorted((r["quant.w_bits"], r["quant.x_bits"]) for r in summary["rows"]) == [(2, 2), (2, 4), (4, 2), (4, 4)]
    assert all(0.0 < r["test_accuracy.mean"] <= 1.0 and r["energy_pj.mean"] > 0 for r in summary["rows"])

    # a second invocation resumes: every job finds its finished checkpoint and the numbers do not change
    again = _reproduce(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    key = lambda rows: [(r["quant.w_bits"], r["quant.x_bits"], r["test_accuracy.mean"]) for r in rows]  # noqa: E731
    assert key(json.loads((out / "summary.json").read_text())["rows"]) == key(summary["rows"])


def test_unknown_experiment_is_one_line_error():
    proc = _reproduce("no_such_experiment")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: experiment 'no_such_experiment' not found")
