"""docs/extending.md followed literally: the example operator (docs/examples/ternary_operator.py), registered
from outside the package, is usable from config, in the ENOS search and in the power report.

Also the test template of the guide: copy this file, replace the example's module and names."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pannjax.build import build_operator, build_policy, load_plugins, operator_names
from pannjax.errors import ConfigError
from pannjax.hw.report import build_report
from pannjax.models import build_model

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "ternary_operator.py"
EXAMPLE_CONFIGS = ROOT / "docs" / "examples" / "configs"
PLUGIN_ARGS = (f"plugins=[{EXAMPLE}]", f"hydra.searchpath=[file://{EXAMPLE_CONFIGS}]", "op=ternary")


def _example_module():
    spec = importlib.util.spec_from_file_location("ternary_example_under_test", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cli(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_operator_math_matches_a_reference():
    """Step 1 of the guide: the operator computes what its docstring says (here: MAC on alpha*t weights)."""
    module = _example_module()
    w = jax.random.normal(jax.random.key(0), (3, 3, 4, 5))
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 4))
    wt = np.asarray(module.ternarize(w, 0.7))
    wn = np.asarray(w)
    for c in range(5):  # per output channel: values are {-alpha, 0, alpha} with the TWN threshold
        delta = 0.7 * np.abs(wn[..., c]).mean()
        keep = np.abs(wn[..., c]) > delta
        alpha = np.abs(wn[..., c])[keep].mean()
        np.testing.assert_allclose(wt[..., c], alpha * np.sign(wn[..., c]) * keep, rtol=1e-6)
    op = module.TernaryOperator()
    y = op.conv(x, w, (1, 1), "SAME")
    ref = jax.lax.conv_general_dilated(x, jnp.asarray(wt), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-5, atol=1e-5)
    grad = jax.grad(lambda w: op.dense(x[:, 0, 0, :], w[0, 0]).sum())(w)
    assert np.all(np.isfinite(np.asarray(grad))) and np.any(np.asarray(grad) != 0)  # straight-through


def test_registered_from_outside_the_package_and_in_the_power_report():
    """Step 2-3: `plugins` registers it; the network report costs it with no special case."""
    load_plugins([str(EXAMPLE)])
    assert "ternary" in operator_names()
    op = build_operator({"name": "ternary", "threshold": 0.5})
    assert op.threshold == 0.5
    with pytest.raises(ConfigError, match="not a known option"):
        build_operator({"name": "ternary", "thresh": 0.5})
    policy = build_policy({"name": "uniform", "w_bits": 8, "x_bits": 8}, {"name": "ternary"})
    model = build_model("digits_cnn", num_classes=10, policy=policy)
    x = jnp.zeros((1, 8, 8, 1))
    variables = model.init(jax.random.key(0), x, train=False)
    report = build_report(model, variables, jax.ShapeDtypeStruct(x.shape, x.dtype), simulate=False)
    rows = report.rows()
    assert {r["operator"] for r in rows} == {"ternary"}
    layer = report.layers[1]
    assert {o.kind for o in layer.ops} == {"add", "mul"}
    assert sum(o.count for o in layer.ops if o.kind == "add") == layer.macs
    assert layer.toggles_analytic["total"] > 0  # the sign_select unit has a bit-flip model
    assert report.total_energy_pj > 0


def test_missing_plugin_is_one_line_error():
    with pytest.raises(ConfigError, match="does not exist"):
        load_plugins(["./no_such_plugin.py"])
    with pytest.raises(ConfigError, match="cannot import"):
        load_plugins(["no_such_module_xyz"])


def test_usable_from_config_in_training(tmp_path):
    """Step 4: one command-line override trains a network whose every layer uses it."""
    proc = _cli("train.py", *PLUGIN_ARGS, "trainer.epochs=1", "trainer.progress=false",
                f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["op"]["name"] == "ternary"
    assert results["test_accuracy"] > 0.3 and results["energy_pj"] > 0
    assert "ternary" in (tmp_path / "run" / "power_report.csv").read_text()


def test_usable_as_a_search_candidate(tmp_path):
    """Step 5: the same plugin is one more candidate of the ENOS search, costed by its own `cost`."""
    from pannjax.schema import compose_checked
    from pannjax.search.runner import run_search_experiment

    candidate = "+search.candidates.tern={quant: {name: uniform, w_bits: 8, x_bits: 8}, op: {name: ternary}}"
    cfg = compose_checked("search", [
        f"plugins=[{EXAMPLE}]", candidate, "search.use=[mac8,tern]", "search.epochs=1", "search.alpha_start_epoch=0",
        "search.retrain_epochs=0", "search.baseline_epochs=0", "search.bn_recalibration_batches=2", "model.width=4",
        "trainer.progress=false"])
    run_search_experiment(cfg, tmp_path / "search")  # in-process (the command line: the training test above)
    results = json.loads((tmp_path / "search" / "results.json").read_text())
    assert "tern" in results["candidates"]
    table = results["energy_table_pj"]
    assert all(0 < table[layer]["tern"] < table[layer]["mac8"] for layer in table)  # adds are cheaper than MACs
    assert set(results["assignment"].values()) <= {"mac8", "tern"}
