"""The training loop and the Hydra entry point, on the real digits data with tiny budgets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pannjax.errors import ConfigError
from pannjax.runner import run_train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=list(overrides))


FAST = ("trainer.epochs=2", "trainer.progress=false", "model.width=8")


def test_train_writes_results_and_metrics(tmp_path):
    results = run_train(compose_train(*FAST, "quant=uniform"), tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    for key in ("test_accuracy", "train_loss", "epochs", "steps", "seed", "wall_seconds", "params"):
        assert key in on_disk, key
    assert on_disk["epochs"] == 2 and on_disk["steps"] == 2 * (1437 // 64)
    assert on_disk == json.loads(json.dumps(results, default=float)) or on_disk["test_accuracy"] == results["test_accuracy"]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert on_disk["test_accuracy"] > 0.5  # two epochs of a real CNN on real digits


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path):
    """Stop after one epoch (as a killed or time-limited job would), resume, compare with one run."""
    cfg = (*FAST, "trainer.epochs=3", "quant=uniform", "seed=3")
    full = run_train(compose_train(*cfg), tmp_path / "full")
    first = run_train(compose_train(*cfg, "trainer.stop_after_epochs=1"), tmp_path / "split")
    assert first["epochs"] == 1 and not first["completed"]
    resumed = run_train(compose_train(*cfg, "trainer.resume=true"), tmp_path / "split")
    assert resumed["completed"] and resumed["steps"] == full["steps"]
    assert resumed["test_accuracy"] == full["test_accuracy"]
    assert resumed["train_loss"] == full["train_loss"]
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


OTHER_CIFAR_MODELS = ("model=squeezenet", "model=shufflenet model.scale=0.5 model.stage_repeats=[1,1,1]")


@pytest.mark.parametrize("model", ["model=resnet20 model.width=4",
                                   *(pytest.param(m, marks=pytest.mark.slow) for m in OTHER_CIFAR_MODELS)])
def test_cifar_pipeline_trains_paper_models_on_mocked_tfds(mock_cifar, tmp_path, model):
    """The CIFAR path end to end (tfds data_source, augmentation, training, evaluation) for a few steps. The
    pipeline does not depend on the model: the default suite runs it with ResNet-20 (every model's training
    step is checked in test_models); `pytest -m slow` with the other CIFAR models too."""
    cfg = compose_train("data=cifar10", *model.split(), "trainer=cifar", "trainer.epochs=1", "trainer.batch_size=4",
                        "trainer.progress=false", "trainer.checkpoint=false", f"data.data_dir={tmp_path}/tfds")
    results = run_train(cfg, tmp_path / "run")
    assert results["steps"] == 3 and results["epochs"] == 1
    # 12 mocked test images: the accuracy is a whole count of them; three steps from a random init leave
    # the training cross-entropy near ln(10) = 2.30 (a NaN or a broken loss fails both); the test loss,
    # with batch statistics three steps old, is finite and above it
    assert results["test_accuracy"] * 12 == pytest.approx(round(results["test_accuracy"] * 12), abs=1e-9)
    assert 1.5 < results["train_loss"] < 3.5 and 1.5 < results["test_loss"] < 1e3


def test_same_seed_same_numbers_different_seed_different_numbers(tmp_path):
    a = run_train(compose_train(*FAST, "trainer.epochs=1", "trainer.checkpoint=false"), tmp_path / "a")
    b = run_train(compose_train(*FAST, "trainer.epochs=1", "trainer.checkpoint=false"), tmp_path / "b")
    c = run_train(compose_train(*FAST, "trainer.epochs=1", "trainer.checkpoint=false", "seed=1"), tmp_path / "c")
    assert a["train_loss"] == b["train_loss"] and a["test_accuracy"] == b["test_accuracy"]
    assert a["train_loss"] != c["train_loss"]


@pytest.mark.parametrize("override,key", [
    ("quant.w_bits=0", "bits"),
    ("model.name=resnet7", "resnet7"),
    ("model.depth=21", "depth"),
    ("op.name=nope", "op.name"),
    ("+op.mode.adc=3", "op.mode.adc"),
    ("trainer.optimizer.name=rmsprop", "trainer.optimizer.name"),
    ("+quant.wbits=3", "quant.wbits"),
    ("+layers=[{pattern: stem, quant: {name: uniform, w_bits: 99}}]", "bits"),
])
def test_misconfiguration_names_the_bad_key(tmp_path, override, key):
    overrides = [*FAST, override] if "quant." not in override else [*FAST, "quant=uniform", override]
    if override.startswith("model.depth"):
        overrides = [*FAST[:2], "model=resnet20", override]
    if override.startswith("+layers"):
        overrides = [*FAST, "layers=[{pattern: stem, quant: {name: uniform, w_bits: 99}}]"]
    with pytest.raises(ConfigError, match=key.replace("[", r"\[")) as e:
        run_train(compose_train(*overrides), tmp_path)
    assert "\n" not in str(e.value)


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def test_cli_sweep_and_run_dir(tmp_path):
    """`-m quant.w_bits=2,4` sweeps; each job writes results.json and the resolved config."""
    proc = _run_cli("-m", "quant=uniform", "quant.w_bits=2,4", *FAST[1:], "trainer.epochs=1",
                    f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = sorted((tmp_path / "sweep").glob("*/results.json"))
    assert len(results) == 2
    bits = sorted(json.loads(p.read_text())["quant"]["w_bits"] for p in results)
    assert bits == [2, 4]
    assert all((p.parent / ".hydra" / "config.yaml").exists() for p in results)


def test_cli_bad_input_exits_with_one_line(tmp_path):
    proc = _run_cli("quant=uniform", "quant.x_bits=0", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bits" in errors[0] and "Traceback" not in proc.stderr


def test_cli_cifar_without_data_says_how_to_supply_it(tmp_path):
    proc = _run_cli("data=cifar10", f"data.data_dir={tmp_path}/empty", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 2
    assert "prepare_data.py" in proc.stderr and "Traceback" not in proc.stderr
