"""One run over two local processes (`jax.distributed`, gloo CPU collectives, one CPU device each) gives
the numbers of one process with two devices and the same global batch; a kill of one process (and a damaged
newest checkpoint) followed by a resume of both ends with the same numbers; only process 0 writes the run's
files."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pannjax.distributed import DistributedConfig, follower_argv, launch_index, local_commands
from pannjax.errors import ConfigError
from pannjax.train.checkpoint import restore_run_variables

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [str(ROOT / "experiments" / "train.py"), "model.width=4", "trainer.epochs=4", "trainer.progress=false",
         "trainer.tensorboard=false"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _launch(run_dir: Path, *extra: str) -> list[subprocess.Popen]:
    runs = local_commands(2, [*TRAIN, f"hydra.run.dir={run_dir}", *extra], _port(), devices_per_process=1)
    return [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for cmd, env in runs]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same run in one process with two devices."""
    run_dir = tmp_path_factory.mktemp("one_process")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run([sys.executable, *TRAIN, f"hydra.run.dir={run_dir}"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_two_processes_killed_and_resumed_give_the_one_process_numbers(tmp_path, reference):
    run_dir = tmp_path / "two_processes"
    procs = _launch(run_dir)
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "2").is_dir():  # epoch 2 checkpointed: kill process 1 mid-run
        assert time.time() < deadline and all(p.poll() is None for p in procs), procs[0].communicate()[0][-3000:]
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    procs[0].send_signal(signal.SIGKILL)  # it would wait for its peer in the next all-reduce
    for p in procs:
        p.wait(timeout=60)
    assert [p.returncode for p in procs] == [-signal.SIGKILL] * 2
    assert not (run_dir / "results.json").exists()
    for f in (run_dir / "checkpoints" / "2").rglob("*"):  # and the newest checkpoint is damaged too
        if f.is_file():
            f.write_bytes(b"\0garbage")

    procs = _launch(run_dir, "trainer.resume=true")
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    assert "resumed from" in outs[0] and "unreadable" in outs[0]
    assert [d.name.split("-")[0] for d in (run_dir / "checkpoints.damaged").iterdir()] == ["2"]  # moved once

    mine, ref = _metrics(run_dir), _metrics(reference)
    assert [r["epoch"] for r in mine] == [1, 2, 3, 4]
    for a, b in zip(mine, ref):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["test_accuracy"] == b["test_accuracy"]
    results, ref_results = (json.loads((d / "results.json").read_text()) for d in (run_dir, reference))
    assert results["test_accuracy"] == ref_results["test_accuracy"] and results["devices"] == 2
    assert (results["processes"], ref_results["processes"]) == (2, 1)
    assert results["config_hash"] == ref_results["config_hash"]  # the process layout is not part of the run
    _, params, epoch = restore_run_variables(run_dir)
    _, ref_params, _ = restore_run_variables(reference)
    assert epoch == 4
    for a, b in zip(*(sorted(__import__("flax").traverse_util.flatten_dict(p).items()) for p in (params, ref_params))):
        np.testing.assert_allclose(np.asarray(a[1]), np.asarray(b[1]), rtol=1e-5, atol=1e-6)

    # process 0 wrote the run's files; process 1 wrote none (no .hydra, no log of its own)
    overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "distributed.process_id=0" in overrides and "distributed.process_id=1" not in overrides
    assert sorted(p.name for p in run_dir.glob("*.log")) == ["train.log"]


def test_launch_index_and_follower_arguments(monkeypatch):
    for var in ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert launch_index(["distributed.process_id=3"]) == 3 and launch_index([]) == 0
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "2")
    assert launch_index([]) == 2
    assert follower_argv(["train.py", "a=1"])[-2:] == ["hydra.output_subdir=null", "hydra/job_logging=stdout"]
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert follower_argv(["train.py", "a=1"]) == ["train.py", "a=1"]


def test_distributed_keys_are_checked():
    with pytest.raises(ConfigError, match="^distributed.coordinator_address=None: a run of 2 processes needs"):
        DistributedConfig(num_processes=2, process_id=0)
    with pytest.raises(ConfigError, match=r"^distributed.process_id=2: expected 0..1"):
        DistributedConfig(num_processes=2, process_id=2, coordinator_address="h:1")
    assert not DistributedConfig().explicit and DistributedConfig(num_processes=1).explicit is False


@pytest.mark.slow  # three processes for a minute; the search runs through the training loop tested above
def test_a_two_process_search_gives_the_one_process_numbers(tmp_path):
    """One epoch of single-level ENOS search and the derivation, in two processes and in one with two devices."""
    args = [str(ROOT / "experiments" / "search.py"), "search.epochs=1", "search.alpha_start_epoch=0.5",
            "search.retrain_epochs=0", "search.baseline_epochs=0", "model.width=4", "trainer.progress=false",
            "trainer.tensorboard=false"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    one = subprocess.Popen([sys.executable, *args, f"hydra.run.dir={tmp_path / 'one'}"], env=env, cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    two = [subprocess.Popen(cmd, env=e, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for cmd, e in local_commands(2, [*args, f"hydra.run.dir={tmp_path / 'two'}"], _port(), 1)]
    for p in (one, *two):
        out = p.communicate(timeout=600)[0]
        assert p.returncode == 0, out[-3000:]
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert a["search_history"][0]["search_loss"] == pytest.approx(b["search_history"][0]["search_loss"], rel=1e-6)
    assert a["probabilities"] == b["probabilities"] and a["assignment"] == b["assignment"]
    assert a["test_accuracy"] == b["test_accuracy"] and a["energy_rel"] == b["energy_rel"]
