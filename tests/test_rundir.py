"""A run dir holds one run: a fresh run into a used dir stops with one line (nothing touched) unless resumed
or overwritten (moved aside, never deleted); a second process is locked out; resume refuses a changed
config and names the keys; pann.py never writes into the run it reads."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pannjax.errors import ConfigError
from pannjax.rundir import LOCK, check_apart, config_hash, owned_run_dir
from pannjax.experiment import to_container
from pannjax.runner import run_train

ROOT = Path(__file__).resolve().parents[1]
FAST = ("trainer.epochs=2", "trainer.progress=false", "model.width=8", "trainer.tensorboard=false")
ENV = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[*FAST, *overrides])


def _cli(script, *args):
    return subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args], capture_output=True,
                          text=True, timeout=300, env=ENV)


#: one xdist worker runs the whole module (`--dist loadgroup`): its module fixture is made once
pytestmark = pytest.mark.xdist_group("test_rundir")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished")
    proc = _cli("train.py", f"hydra.run.dir={run}", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run


def _snapshot(run):
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}


def test_a_fresh_run_into_a_used_dir_stops_and_changes_nothing(finished):
    before = _snapshot(finished)
    proc = _cli("train.py", f"hydra.run.dir={finished}", *FAST, "trainer.batch_size=100000")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: hydra.run.dir={finished} holds a previous run (run.json, results.json, metrics.jsonl, checkpoints, "
        "power_report.json, power_report.csv): resume it with trainer.resume=true, or pass "
        "overwrite=true to move its files to previous/<time>/, or choose another run dir"]
    assert _snapshot(finished) == before  # .hydra/ included: refused before Hydra wrote anything


def test_in_process_refusal_and_overwrite_moves_the_old_run_aside(tmp_path):
    run_train(_cfg("trainer.epochs=1"), tmp_path)
    old = json.loads((tmp_path / "results.json").read_text())
    with pytest.raises(ConfigError, match=r"holds a previous run \(run.json, results.json, metrics.jsonl"):
        run_train(_cfg("trainer.epochs=1", "seed=1"), tmp_path)
    new = run_train(_cfg("trainer.epochs=1", "seed=1", "overwrite=true"), tmp_path)
    (aside,) = (tmp_path / "previous").iterdir()
    assert json.loads((aside / "results.json").read_text()) == old  # nothing lost
    assert (aside / "checkpoints").is_dir() and new["seed"] == 1 and new["steps"] == 1437 // 64
    assert json.loads((tmp_path / "run.json").read_text())["config_hash"] == new["config_hash"]


def test_resume_with_a_changed_config_names_the_keys(tmp_path):
    run_train(_cfg("trainer.stop_after_epochs=1"), tmp_path)
    with pytest.raises(ConfigError, match=r"trainer.resume=true with a changed config \(trainer.epochs: 2 -> 3; "
                                          r"trainer.optimizer.learning_rate: .* -> 0.5\)"):
        run_train(_cfg("trainer.resume=true", "trainer.epochs=3", "trainer.optimizer.learning_rate=0.5"), tmp_path)
    resumed = run_train(_cfg("trainer.resume=true", "trainer.progress=true"), tmp_path)  # exempt key
    assert resumed["completed"] and resumed["epochs"] == 2


def test_a_second_process_is_locked_out_and_a_stale_lock_is_taken_over(tmp_path, caplog):
    cfg = to_container(_cfg())
    (tmp_path / LOCK).write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename}))
    with pytest.raises(ConfigError, match=rf"is in use by process {os.getppid()}"):
        with owned_run_dir(tmp_path, "train", cfg):
            pass
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK).write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename}))
    with owned_run_dir(tmp_path, "train", cfg):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert "no longer runs" in caplog.text and not (tmp_path / LOCK).exists()


def test_config_hash_ignores_only_the_resume_exempt_keys():
    a = to_container(_cfg())
    assert config_hash(a) == config_hash(to_container(_cfg("trainer.progress=true", "trainer.resume=true")))
    assert config_hash(a) != config_hash(to_container(_cfg("trainer.epochs=3")))


def test_pann_never_writes_into_the_run_it_reads(finished):
    before = _snapshot(finished)
    proc = _cli("pann.py", f"hydra.run.dir={finished}", f"checkpoint={finished}", "budget_bits=[4]")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: hydra.run.dir={finished} is the run checkpoint={finished} reads: write this run's outputs to "
        "another dir"]
    assert _snapshot(finished) == before


def test_a_run_dir_apart_from_its_source_is_checked_through_links(tmp_path):
    """A run may not write into the run it reads, nor into the dir holding it (power.py reads
    `<export run>/program`)."""
    (tmp_path / "export" / "program").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "export")
    with pytest.raises(ConfigError, match=r"^hydra.run.dir=.*link is the run checkpoint=.*export reads: write"):
        check_apart(tmp_path / "link", "checkpoint", tmp_path / "export")
    with pytest.raises(ConfigError, match=r"^hydra.run.dir=.*link holds the export checkpoint=.*program reads"):
        check_apart(tmp_path / "link", "checkpoint", tmp_path / "export" / "program", "export")
    check_apart(tmp_path / "link" / "program" / "power", "checkpoint", tmp_path / "export" / "program")  # inside
    check_apart(tmp_path / "other", "checkpoint", tmp_path / "export" / "program")
