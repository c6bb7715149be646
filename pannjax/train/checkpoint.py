"""Orbax checkpoints of the `TrainState`: the latest N are kept for resuming, and the best by test
accuracy is kept as well (`AnyPreservationPolicy(LatestN, BestN)`)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from pannjax.errors import ConfigError
from pannjax.train.state import TrainState

log = logging.getLogger(__name__)


def _saved_tree(state: TrainState) -> dict:
    return {"step": state.step, "params": state.params, "batch_stats": state.batch_stats,
            "opt_state": state.opt_state, "rng": jax.random.key_data(state.rng)}


def checkpoint_manager(directory: str | os.PathLike, keep: int = 2, read_only: bool = False) -> ocp.CheckpointManager:
    """Manager for `directory`; checkpoint steps are epoch numbers."""
    options = ocp.CheckpointManagerOptions(
        preservation_policy=pp.AnyPreservationPolicy([
            pp.LatestN(n=keep),
            pp.BestN(get_metric_fn=lambda m: m["test_accuracy"], n=1),
        ]),
        enable_async_checkpointing=False,
        read_only=read_only,
        create=not read_only,
    )
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def save_checkpoint(manager: ocp.CheckpointManager, epoch: int, state: TrainState, metrics: dict[str, float]) -> None:
    manager.save(epoch, args=ocp.args.StandardSave(_saved_tree(state)), metrics=metrics)
    manager.wait_until_finished()


def _reason(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"


def restore_checkpoint(manager: ocp.CheckpointManager, state: TrainState, epoch: int | None = None) -> tuple[TrainState, int]:
    """Restore into the structure of `state` (a freshly initialised state of the same config).
    Returns the restored state and its epoch; raises a one-line ConfigError if nothing is there.

    Without `epoch`, the newest checkpoint that can be read: when newer ones cannot (a kill mid-write, a
    damaged disk), they are moved aside to `<checkpoints>.damaged/<epoch>` (never deleted) with one
    warning line, so training continues from the newest good one; when none can be read, the first
    failure is reported as a model/config mismatch."""
    steps = [epoch] if epoch is not None else sorted(manager.all_steps(), reverse=True)
    if not steps or steps[0] is None:
        raise ConfigError(f"no checkpoint found in {manager.directory}: train first, or drop trainer.resume")
    target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _saved_tree(state))
    failed: list[tuple[int, Exception]] = []
    for step in steps:
        try:
            tree: Any = manager.restore(step, args=ocp.args.StandardRestore(target))
            break
        except Exception as e:  # noqa: BLE001 - a damaged checkpoint fails in many ways; try the next older
            failed.append((step, e))
    else:
        step, e = failed[0]
        raise ConfigError(f"checkpoint {manager.directory}/{step} does not match this model/config ({_reason(e)}); "
                          "use the config it was trained with") from None
    if failed:
        aside = Path(str(manager.directory) + ".damaged")
        aside.mkdir(exist_ok=True)
        for bad, _ in failed:
            shutil.move(str(Path(manager.directory) / str(bad)), str(aside / f"{bad}-{int(time.time())}"))
        manager.reload()
        log.warning("checkpoint %s unreadable (%s): resuming from epoch %d; moved to %s",
                    ", ".join(str(b) for b, _ in failed), _reason(failed[0][1]), step, aside)
    epoch = step
    restored = state.replace(step=tree["step"], params=tree["params"], batch_stats=tree["batch_stats"],
                             opt_state=tree["opt_state"], rng=jax.random.wrap_key_data(tree["rng"]))
    return restored, epoch
