"""The results schema: every entry point's results.json validates (the record a real run writes), the
provenance keys are right, a wrong record is refused with its key named, and docs/results.md is the
schema's own table."""

import json
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pannjax import __version__
from pannjax.errors import ConfigError
from pannjax.pann.experiment import run_pann
from pannjax.results import COMMON, SCHEMAS, check_column, markdown, read_results, validate
from pannjax.rundir import config_hash
from pannjax.experiment import to_container
from pannjax.runner import run_train
from pannjax.sweep import collect_results

ROOT = Path(__file__).resolve().parents[1]


def _compose(name, *overrides):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(name, overrides=list(overrides))


#: one xdist worker runs the whole module (`--dist loadgroup`): its module fixture is made once
pytestmark = pytest.mark.xdist_group("test_results")


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("train")
    cfg = _compose("train", "trainer.epochs=1", "model.width=4", "trainer.progress=false", "trainer.tensorboard=false",
                   "quant=uniform")
    return run_dir, to_container(cfg), run_train(cfg, run_dir)


def test_a_train_run_writes_a_valid_record_with_its_provenance(train_run):
    run_dir, c, returned = train_run
    saved = read_results(run_dir / "results.json")
    assert saved == returned and validate(saved) == "train"
    assert set(COMMON) - {"diverged"} <= set(saved) and saved["entry"] == "train" and saved["completed"] is True
    assert saved["version"] == __version__ and saved["config_hash"] == config_hash(c)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert saved["git_commit"] is None if not head else saved["git_commit"].split("+")[0] == head
    assert saved["energy_pj"] > 0 and saved["toggles"] > 0 and saved["wall_seconds"] > 0
    assert 0.2 < saved["test_accuracy"] <= 1.0  # one epoch of the width-4 CNN on digits learns


def test_pann_table_mode_writes_a_valid_record(tmp_path):
    res = run_pann(to_container(_compose("pann", "mode=table")), tmp_path)
    saved = read_results(tmp_path / "results.json")
    assert validate(saved) == "pann.table" and saved == res
    assert saved["test_accuracy"] is None and saved["tables"]["unsigned"]


@pytest.mark.parametrize("change, message", [
    ({"energy_pJ": 1.0}, r"key 'energy_pJ' is not in the train results schema"),
    ({"total_seconds": 1.0}, r"key 'total_seconds' is not in the train results schema"),
    ({"test_accuracy": "0.9"}, r"test_accuracy='0.9': expected number or null \(train results schema\)"),
    ({"seed": True}, r"seed=True: expected integer"),
    ({"completed": 1}, r"completed=1: expected boolean"),
    ({"entry": "nope"}, r"entry='nope', mode=None is not a results schema"),
])
def test_a_wrong_record_is_refused_naming_the_key(train_run, change, message):
    saved = json.loads((train_run[0] / "results.json").read_text())
    with pytest.raises(ConfigError, match=message) as e:
        validate({**saved, **change}, "x/results.json")
    assert "\n" not in str(e.value) and str(e.value).startswith("x/results.json: ")


def test_a_completed_record_must_have_its_entry_keys_an_unfinished_one_need_not(train_run):
    saved = json.loads((train_run[0] / "results.json").read_text())
    del saved["macs"]
    with pytest.raises(ConfigError, match=r"the train results lack 'macs'"):
        validate(saved)
    assert validate({**saved, "completed": False}) == "train"
    del saved["wall_seconds"]
    with pytest.raises(ConfigError, match=r"lack 'wall_seconds'"):
        validate({**saved, "completed": False})


def test_aggregators_refuse_an_old_record_and_an_unknown_column(tmp_path, train_run):
    run = tmp_path / "0_old"
    run.mkdir()
    saved = json.loads((train_run[0] / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**saved, "energy_pJ": saved.pop("energy_pj")}))
    with pytest.raises(ConfigError, match=r"0_old/results.json: key 'energy_pJ' is not in the train results"):
        collect_results(tmp_path)
    check_column("summary.2bit.pann_accuracy", "experiment.columns[0]", "pann")
    check_column("quant.name", "--columns")
    with pytest.raises(ConfigError, match=r"experiment.plot.x='energy_pJ' is not a results.json key of train runs"):
        check_column("energy_pJ", "experiment.plot.x", "train")


def test_docs_results_page_is_the_schema_table():
    text = (ROOT / "docs" / "results.md").read_text()
    assert markdown() in text
    for name, schema in SCHEMAS.items():
        for key in schema:
            assert f"| `{key}` |" in text, (name, key)
