"""A diverging run stops with exit status 3 and one line naming the step, the epoch and the first layer at
fault; it writes no checkpoint after the last good one, and its results say it did not complete."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from pannjax.data import load_dataset
from pannjax.errors import DivergenceError
from pannjax.models import build_model
from pannjax.experiment import to_container
from pannjax.runner import build_model_for, trainer_config
from pannjax.train import train_and_evaluate
from pannjax.train.checkpoint import checkpoint_manager
from pannjax.train.divergence import check_losses, first_nonfinite

ROOT = Path(__file__).resolve().parents[1]


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return to_container(compose("train", overrides=list(overrides)))


def test_a_nan_run_exits_3_with_one_line_and_an_incomplete_result(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "experiments" / "train.py"), f"hydra.run.dir={out}", "trainer.epochs=1",
           "model.width=8", "trainer.optimizer.learning_rate=1e6", "trainer.log_every=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu"))
    assert proc.returncode == 3, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr
    assert err[0].startswith("error: training diverged: loss nan at step ")
    assert "(epoch 1); first non-finite: weights of " in err[0]
    results = json.loads((out / "results.json").read_text())
    assert results["completed"] is False and results["diverged"]["epoch"] == 1
    assert 1 <= results["diverged"]["step"] <= 22  # within the first epoch of 1437 // 64 steps
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())


def test_a_nan_search_exits_3_naming_the_layer(tmp_path):
    cmd = [sys.executable, str(ROOT / "experiments" / "search.py"), f"hydra.run.dir={tmp_path}", "search.epochs=1",
           "search.retrain_epochs=0", "search.baseline_epochs=0", "search.alpha_start_epoch=0", "model.width=4",
           "search.use=[mac8,shift4]", "trainer.optimizer.learning_rate=1e6", "trainer.progress=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu"))
    assert proc.returncode == 3, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: search diverged: loss nan at step ")
    assert "first non-finite: weights of " in err[0]
    saved = json.loads((tmp_path / "results.json").read_text())  # no assignment is reported for a diverged search
    assert saved["completed"] is False and "assignment" not in saved
    assert saved["diverged"]["step"] == int(err[0].split("at step ")[1].split()[0])


def test_divergence_after_a_good_epoch_keeps_the_good_checkpoint(tmp_path):
    c = _compose("trainer.epochs=2", "model.width=8", "trainer.progress=false", "trainer.tensorboard=false")
    data = dict(c["data"])
    dataset = load_dataset(data.pop("name"), **data)
    model = build_model_for(c, dataset.num_classes)
    good = trainer_config({**c["trainer"], "stop_after_epochs": 1})
    train_and_evaluate(model, dataset, good, 0, tmp_path)
    bad = trainer_config({**c["trainer"], "resume": True,
                          "optimizer": {**c["trainer"]["optimizer"], "learning_rate": 1e6}})
    with pytest.raises(DivergenceError) as e:
        train_and_evaluate(model, dataset, bad, 0, tmp_path)
    assert e.value.epoch == 2 and e.value.step > 1437 // 64
    manager = checkpoint_manager(tmp_path / "checkpoints", read_only=True)
    assert manager.all_steps() == [1]
    import orbax.checkpoint as ocp

    tree = manager.restore(1, args=ocp.args.StandardRestore())
    assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree_util.tree_leaves(tree["params"]))
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1]


def test_the_first_layer_at_fault_is_named():
    model = build_model("digits_cnn", num_classes=10, width=8)
    x = np.zeros((2, 8, 8, 1), np.float32)
    variables = jax.device_get(model.init(jax.random.key(0), x, train=False))
    assert first_nonfinite(model, variables, x) == "no layer (weights and layer inputs finite)"
    assert first_nonfinite(model, variables, np.full_like(x, np.nan)) == "input of stem"
    broken = jax.tree_util.tree_map(lambda a: a, variables)
    broken["params"]["conv2"]["kernel"] = np.asarray(broken["params"]["conv2"]["kernel"]) * np.inf
    assert first_nonfinite(model, broken, x) == "weights of conv2 (kernel)"
    check_losses([2.3, 2.2], 5, 1, lambda: first_nonfinite(model, variables, x))  # finite: nothing happens
    with pytest.raises(DivergenceError, match=r"loss inf at step 6 \(epoch 1\); first non-finite: input of stem"):
        check_losses([2.3, np.inf], 5, 1, lambda: first_nonfinite(model, variables, np.full_like(x, np.nan)))


def test_pann_conversion_refuses_a_diverged_checkpoint(tmp_path):
    """A run whose newest checkpoint holds NaN weights (e.g. written by an older pannjax) is refused with
    the layer named, not blamed on PANN's options."""
    import orbax.checkpoint as ocp

    from pannjax.errors import ConfigError
    from pannjax.train.checkpoint import restore_run_variables

    cmd = [sys.executable, str(ROOT / "experiments" / "train.py"), f"hydra.run.dir={tmp_path}", "trainer.epochs=1",
           "model.width=8", "trainer.progress=false", "trainer.tensorboard=false"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300,
                   env=dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu"))
    manager = checkpoint_manager(tmp_path / "checkpoints")
    tree = manager.restore(1, args=ocp.args.StandardRestore())
    tree["params"]["conv1"]["kernel"] = np.asarray(tree["params"]["conv1"]["kernel"]) * np.nan
    manager.save(2, args=ocp.args.StandardSave(tree), metrics={"test_accuracy": 0.0})
    manager.wait_until_finished()
    with pytest.raises(ConfigError, match=r"epoch 2 holds non-finite weights of conv1 \(kernel\)"):
        restore_run_variables(tmp_path)
