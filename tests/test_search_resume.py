"""The ENOS search runs through the training loop: stopped mid-search (as a killed or time-limited job
would be) and resumed, or cut during retraining and resumed, it ends with the numbers of an
uninterrupted search -- assignment, freezing order, energy and both accuracies."""

import json
import shutil

import pytest

from pannjax.search.runner import run_search_experiment

CANDIDATES = {
    "mac8": {"quant": {"name": "uniform", "w_bits": 8, "x_bits": 8}, "op": {"name": "mac"}},
    "mac4": {"quant": {"name": "uniform", "w_bits": 4, "x_bits": 4}, "op": {"name": "mac"}},
    "shift4": {"quant": {"name": "pot", "w_bits": 4, "x_bits": 8}, "op": {"name": "shift"}},
}
SAME = ("assignment", "probabilities", "frozen_order", "energy_pj", "energy_rel", "accuracy_before_retraining",
        "accuracy_after_retraining", "test_accuracy")


def _cfg(**trainer):
    return {
        "seed": 0, "data": {"name": "digits"}, "model": {"name": "digits_cnn", "width": 4},
        "trainer": {"epochs": 1, "batch_size": 128, "eval_batch_size": 512, "progress": False, "tensorboard": False,
                    "checkpoint": True, "optimizer": {"learning_rate": 0.05}, **trainer},
        "search": {"variant": "sequential", "lambda": 1.0, "epochs": 2, "alpha_start_epoch": 0.0,
                   "retrain_epochs": 2, "baseline_epochs": 0, "bn_recalibration_batches": 2,
                   "use": ["mac8", "mac4", "shift4"], "reference": "mac8", "candidates": CANDIDATES,
                   "freeze_order": "confident"},
    }


#: one xdist worker runs the whole module (`--dist loadgroup`): its module fixture is made once
pytestmark = pytest.mark.xdist_group("test_search_resume")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("search_full")
    return run_dir, run_search_experiment(_cfg(), run_dir)


def test_search_stopped_mid_search_and_resumed_matches_uninterrupted(tmp_path, uninterrupted):
    _, full = uninterrupted
    first = run_search_experiment(_cfg(stop_after_epochs=1), tmp_path)
    epoch_1 = (tmp_path / "metrics.jsonl").read_text().splitlines()[0]
    assert first["completed"] is False and first["search_epochs_done"] == 1 and "assignment" not in first
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["1"]
    resumed = run_search_experiment(_cfg(resume=True), tmp_path)
    assert resumed["completed"] is True
    # every layer frozen (11 steps per epoch): two in the stopped epoch, two after the resume
    assert [f["step"] for f in full["frozen_order"]] == [6, 11, 17, 22]
    for key in SAME:
        assert resumed[key] == full[key], key
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert lines[0] == epoch_1  # continued from the checkpoint, not searched again (its wall time is kept)


def test_search_cut_during_retraining_resumes_the_retraining(tmp_path, uninterrupted):
    full_dir, full = uninterrupted
    shutil.copytree(full_dir, tmp_path, dirs_exist_ok=True)
    # as a kill after the first retraining epoch leaves it: no results, retraining checkpoint 1 only
    (tmp_path / "results.json").unlink()
    shutil.rmtree(tmp_path / "retrain" / "checkpoints" / "2")
    metrics = tmp_path / "retrain" / "metrics.jsonl"
    epoch_1 = metrics.read_text().splitlines()[0]
    metrics.write_text(epoch_1 + "\n")
    resumed = run_search_experiment(_cfg(resume=True), tmp_path)
    for key in SAME:
        assert resumed[key] == full[key], key
    lines = metrics.read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2] and lines[0] == epoch_1
