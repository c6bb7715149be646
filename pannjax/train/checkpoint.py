"""Orbax checkpoints of the `TrainState`: the latest N are kept for resuming, and the best by test
accuracy is kept as well (`AnyPreservationPolicy(LatestN, BestN)`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from pannjax.errors import ConfigError
from pannjax.train.state import TrainState


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


def restore_checkpoint(manager: ocp.CheckpointManager, state: TrainState, epoch: int | None = None) -> tuple[TrainState, int]:
    """Restore into the structure of `state` (a freshly initialised state of the same config).
    Returns the restored state and its epoch; raises a one-line ConfigError if nothing is there."""
    epoch = manager.latest_step() if epoch is None else epoch
    if epoch is None:
        raise ConfigError(f"no checkpoint found in {manager.directory}: train first, or drop trainer.resume")
    target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _saved_tree(state))
    try:
        tree: Any = manager.restore(epoch, args=ocp.args.StandardRestore(target))
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise ConfigError(
            f"checkpoint {manager.directory}/{epoch} does not match this model/config "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); use the config it was trained with"
        ) from None
    restored = state.replace(step=tree["step"], params=tree["params"], batch_stats=tree["batch_stats"],
                             opt_state=tree["opt_state"], rng=jax.random.wrap_key_data(tree["rng"]))
    return restored, epoch
