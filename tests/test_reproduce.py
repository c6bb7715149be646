"""scripts/reproduce.py: a 4-config digits sweep through the joblib launcher, table, plot, resume."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pannjax.errors import ConfigError
from pannjax.reproduce import (compare_expected, count_jobs, experiment_names, load_experiment, summarize,
                               table_rows)
from pannjax.experiment import objective
from pannjax.sweep import compare_table, verdict

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


def test_joblib_sweep_then_table_plot_and_resume(tmp_path):
    """digits_bits sweeps w_bits x x_bits over {2, 4}; values on the command line hold both fixed (one job: more
    would test the launcher no further, at their time)."""
    out = tmp_path / "sweep"
    args = ("digits_bits", "hydra/launcher=local", "trainer.epochs=1", "trainer.progress=false", "model.width=4",
            "quant.x_bits=4", "quant.w_bits=2", "--out", str(out))
    proc = _reproduce(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(out.glob("*/results.json"))) == 1
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "quant.w_bits" not in line]
    assert len(table) == 1, proc.stdout
    assert (out / "summary.png").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["quant.w_bits"], r["quant.x_bits"]) for r in summary["rows"]] == [(2, 4)]
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


def test_paper_experiments_record_their_source_and_claims(tmp_path):
    """Every paper-table experiment names its source; summaries print the published claims beside the table."""
    for name in ("pann_resnet20_cifar10_ptq", "pann_resnet20_cifar10_qat", "pot_cifar10_resnet20",
                 "enos_shufflenet_cifar10", "enos_shufflenet_cifar100", "enos_squeezenet_cifar10",
                 "enos_squeezenet_cifar100"):
        expected = load_experiment(name)["experiment"]["expected"]
        assert expected["source"] and expected["claims"], name
    run = tmp_path / "0"
    run.mkdir()
    common = {"entry": "search", "completed": False, "seed": 0, "energy_pj": None, "toggles": None,
              "wall_seconds": 1.0, "config_hash": "0" * 16, "version": "0.1.0", "git_commit": None}
    (run / "results.json").write_text(json.dumps({**common, "variant": "single", "lambda": 0.3, "test_accuracy": 0.9,
                                                  "energy_rel": 0.4}))
    meta = {"name": "enos_shufflenet_cifar10", **load_experiment("enos_shufflenet_cifar10")["experiment"]}
    summary = summarize(tmp_path, meta)
    assert "+10 to +20 %" in summary["text"] and "| single | 0.3 | 0.9 |" in summary["text"]
    assert (tmp_path / "summary.png").is_file()


def test_unknown_expected_key_is_a_one_line_error(tmp_path, monkeypatch):
    import pannjax.reproduce as reproduce

    (tmp_path / "bad.yaml").write_text("experiment:\n  name: bad\n  expected: {sauce: paper}\n")
    monkeypatch.setattr(reproduce, "CONFIG_DIR", tmp_path)
    with pytest.raises(ConfigError, match="expected.sauce is not a known key"):
        load_experiment("bad")


def test_objective_returns_results_values_for_the_sweeper():
    results = {"test_accuracy": 0.9, "energy_pj": 12.0, "summary": {"2bit": {"pann_accuracy": 0.8}}, "name": "x"}
    assert objective(results, None) == 0.9
    assert objective(results, ["summary.2bit.pann_accuracy"]) == 0.8
    assert objective(results, ["test_accuracy", "energy_pj"]) == (0.9, 12.0)
    with pytest.raises(ConfigError, match="'name' is not a number in results.json"):
        objective(results, ["name"])


def test_optuna_pareto_sweep_of_accuracy_and_energy(tmp_path):
    """configs/hydra/sweeper/optuna_pareto.yaml: two NSGA-II trials over the PANN QAT budget."""
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), "-m", "hydra/sweeper=optuna_pareto",
                           "objective=[test_accuracy,energy_pj]", "quant=pann", "quant.budget_bits=range(2,5)",
                           "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1", "trainer.epochs=1",
                           "trainer.progress=false", "trainer.checkpoint=false", "model.width=4",
                           f"hydra.sweep.dir={tmp_path}"], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert result["solutions"] and all(len(s["values"]) == 2 for s in result["solutions"])
    assert len(list(tmp_path.glob("*/results.json"))) == 2


def test_training_and_search_sweeps_resume_pann_sweeps_start_afresh(tmp_path):
    """Training and the ENOS search checkpoint every epoch, so a re-run reproduction resumes their jobs."""
    from pannjax.reproduce import sweep_command

    for entry, resumes in (("train", True), ("search", True), ("pann", False)):
        assert ("trainer.resume=true" in sweep_command("x", entry, tmp_path, [])) is resumes, entry


def test_compare_table_gives_means_and_verdicts_beyond_two_standard_errors():
    rows = [{"b": "bwn", "m": m, "acc": a} for m, accs in (("enos", (0.90, 0.92, 0.91)), ("uni", (0.80, 0.81, 0.79)),
                                                            ("mixed", (0.93, 0.80, 0.99)), ("sens", (0.96, 0.95, 0.97)))
            for a in accs]
    table, columns = compare_table(rows, "b", "m", "acc", "enos")
    assert columns == ["b", "enos", "uni", "mixed", "sens", "enos vs uni", "enos vs mixed", "enos vs sens"]
    row = table[0]
    assert row["enos"] == "0.9100 ± 0.0082 (3)"
    assert row["enos vs uni"] == "win (+0.1100)"      # 0.11 > 2 sqrt(1e-4/3 + 1e-4/3) = 0.016
    assert row["enos vs mixed"] == "tie (+0.0033)"    # the mixed runs spread by 0.08
    assert row["enos vs sens"] == "loss (-0.0500)"
    assert verdict([0.5], [0.4]) == "win" and verdict([], [0.4]) == "-"
    rows[3] = {**rows[3], "met": False}  # one of the uni runs missed its budget: it does not count
    for r in rows[:3] + rows[4:]:
        r["met"] = True
    row = compare_table(rows, "b", "m", "acc", "enos", require="met")[0][0]
    assert row["uni"] == "0.8000 ± 0.0100 (2); not matched (1)" and row["enos vs uni"].startswith("win")
    with pytest.raises(ConfigError, match="experiment.compare.against='nope' is not a value of 'm'"):
        compare_table(rows, "b", "m", "acc", "nope")


def test_an_experiment_extends_another_and_matched_configs_compose():
    """enos_matched_* take the comparison and sweep of enos_matched (merged under their own name); every
    method composes with a budget of another network's energy."""
    from pannjax.schema import compose_checked

    base, cifar = load_experiment("enos_matched"), load_experiment("enos_matched_squeezenet_cifar100")
    assert cifar["experiment"]["name"] == "enos_matched_squeezenet_cifar100"
    assert cifar["experiment"]["compare"] == base["experiment"]["compare"]
    assert cifar["hydra"]["sweeper"]["params"] == base["hydra"]["sweeper"]["params"]
    assert count_jobs(base["hydra"]["sweeper"]["params"]) == 96
    for method, use in (("enos", 8), ("sensitivity", 8), ("mac_mixed", 3), ("uni_operator", 1)):
        cfg = compose_checked("search", ["+experiment=enos_matched", f"+method={method}", "search.energy_budget_of=mf"])
        assert cfg.search.label == method and len(cfg.search.use) == use and cfg.search.baseline_epochs == 0
    assert list(cfg.search.use) == ["mf"]  # the uni-operator network is the budget's own
    cfg = compose_checked("search", ["+experiment=enos_matched_shufflenet_cifar10", "+method=enos"])
    assert (cfg.data.name, cfg.model.name, cfg.search.epochs, cfg.search.retrain_epochs) == ("cifar10", "shufflenet",
                                                                                             50, 150)


def test_an_experiment_that_extends_itself_is_a_one_line_error(tmp_path, monkeypatch):
    import pannjax.reproduce as reproduce

    (tmp_path / "a.yaml").write_text("defaults:\n  - b\nexperiment:\n  name: a\n")
    (tmp_path / "b.yaml").write_text("defaults:\n  - a\nexperiment:\n  name: b\n")
    monkeypatch.setattr(reproduce, "CONFIG_DIR", tmp_path)
    with pytest.raises(ConfigError, match=r"its defaults extend it again \(a -> b -> a\)"):
        load_experiment("a")
