"""Faults a run survives: a torn or damaged metrics.jsonl, a corrupt latest checkpoint (falls back to the
newest good one, same final numbers as an uninterrupted run), a batch larger than the data set; a resumed
run ends with the checkpoint set of an uninterrupted one."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pannjax.errors import ConfigError
from pannjax.runner import run_train

ROOT = Path(__file__).resolve().parents[1]
FAST = ("trainer.progress=false", "model.width=8", "quant=uniform", "trainer.tensorboard=false", "seed=5")


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[*FAST, *overrides])


#: one xdist worker runs the whole module (`--dist loadgroup`): its module fixture is made once
pytestmark = pytest.mark.xdist_group("test_run_faults")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run_train(_cfg("trainer.epochs=3"), tmp_path_factory.mktemp("full"))


def _lines(run_dir):
    return [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path, uninterrupted, caplog):
    run_train(_cfg("trainer.epochs=3", "trainer.stop_after_epochs=2"), tmp_path)
    metrics = tmp_path / "metrics.jsonl"
    text = metrics.read_text()
    metrics.write_text(text[: len(text) - 40])  # the second record cut short, as a kill mid-write leaves it
    resumed = run_train(_cfg("trainer.epochs=3", "trainer.resume=true"), tmp_path)
    assert "cut short" in caplog.text
    assert resumed["test_accuracy"] == uninterrupted["test_accuracy"]
    assert resumed["train_loss"] == uninterrupted["train_loss"]
    assert _lines(tmp_path) == [1, 3]  # epoch 2's record was the torn one: its history is lost, not invented
    assert "the missing history is lost" in caplog.text


def test_a_damaged_middle_line_is_one_clear_error(tmp_path):
    run_train(_cfg("trainer.epochs=3", "trainer.stop_after_epochs=2"), tmp_path)
    metrics = tmp_path / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("{not json\n" + lines[1] + "\n")
    with pytest.raises(ConfigError, match=r"metrics.jsonl line 1 is damaged"):
        run_train(_cfg("trainer.epochs=3", "trainer.resume=true"), tmp_path)


def test_a_corrupt_latest_checkpoint_falls_back_to_the_newest_good_one(tmp_path, uninterrupted, caplog):
    run_train(_cfg("trainer.epochs=3", "trainer.stop_after_epochs=2"), tmp_path)
    latest = tmp_path / "checkpoints" / "2"
    damaged = [p for p in latest.rglob("*") if p.is_file()]
    assert damaged
    for p in damaged:
        p.write_bytes(b"\0garbage")
    resumed = run_train(_cfg("trainer.epochs=3", "trainer.resume=true"), tmp_path)
    assert "checkpoint 2 unreadable" in caplog.text and "resuming from epoch 1" in caplog.text
    assert resumed["completed"] and resumed["steps"] == uninterrupted["steps"]
    assert resumed["test_accuracy"] == uninterrupted["test_accuracy"]
    assert resumed["train_loss"] == uninterrupted["train_loss"]
    assert _lines(tmp_path) == [1, 2, 3]
    aside = list((tmp_path / "checkpoints.damaged").iterdir())
    assert len(aside) == 1 and aside[0].name.startswith("2-")  # moved aside, not deleted


def test_a_batch_larger_than_the_data_set_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer.batch_size=100000 is larger than the 1437 training examples"):
        run_train(_cfg("trainer.batch_size=100000"), tmp_path)


def test_a_resumed_run_keeps_the_checkpoints_an_uninterrupted_one_keeps(tmp_path, uninterrupted):
    """keep_checkpoints=1: the latest and the best epoch stay. Orbax prunes only what its process saved,
    so without pruning on resume the epoch-1 checkpoint of the first process would stay too."""
    def kept(run_dir):
        return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())

    run_train(_cfg("trainer.epochs=3", "trainer.stop_after_epochs=1", "trainer.keep_checkpoints=1"), tmp_path)
    assert kept(tmp_path) == [1]
    run_train(_cfg("trainer.epochs=3", "trainer.keep_checkpoints=1", "trainer.resume=true"), tmp_path)
    accuracies = [json.loads(line)["test_accuracy"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    best = 1 + max(range(3), key=lambda i: accuracies[i])
    assert best != 1 and kept(tmp_path) == sorted({3, best})
