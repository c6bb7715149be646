"""Orbax checkpoints of a run's state, and the one place runs are restored from.

Any `flax.struct` state of the epoch loop (`TrainState`, the ENOS `SearchState`) is saved as the dict of
its pytree fields (typed PRNG keys as their key data), so a checkpoint is everything needed to resume
bit-exactly. The latest N are kept for resuming and, where the loop gives a metric, the best one as well
(`AnyPreservationPolicy(LatestN, BestN)`); `prune_checkpoints` applies the same rule to what a resumed run
finds on disk. `restore_run_variables` reads another run's weights (fine-tuning, conversion, export)
without writing to its directory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from omegaconf import OmegaConf
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from pannjax.distributed import is_main
from pannjax.errors import ConfigError

log = logging.getLogger(__name__)

BEST_METRIC = "test_accuracy"


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _saved_tree(state: Any) -> dict:
    """The pytree fields of a `flax.struct` state by name, PRNG keys as raw key data."""
    return {f.name: jax.tree_util.tree_map(lambda x: jax.random.key_data(x) if _is_key(x) else x,
                                           getattr(state, f.name))
            for f in dataclasses.fields(state) if f.metadata.get("pytree_node", True)}


def _into(state: Any, tree: dict) -> Any:
    """`state` with every saved field replaced by `tree`'s (key data wrapped back where `state` holds keys)."""
    fields = {name: jax.tree_util.tree_map(lambda old, new: jax.random.wrap_key_data(new) if _is_key(old) else new,
                                           getattr(state, name), value)
              for name, value in tree.items()}
    return state.replace(**fields)


def checkpoint_manager(directory: str | os.PathLike, keep: int = 2, read_only: bool = False,
                       best_metric: str | None = BEST_METRIC) -> ocp.CheckpointManager:
    """Manager for `directory`; checkpoint steps are epoch numbers. `best_metric` None keeps the latest
    `keep` only (a loop with no per-epoch evaluation)."""
    policies = [pp.LatestN(n=keep)]
    if best_metric is not None:
        policies.append(pp.BestN(get_metric_fn=lambda m: m[best_metric], n=1))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=pp.AnyPreservationPolicy(policies),
        enable_async_checkpointing=False,
        read_only=read_only,
        create=not read_only,
    )
    return ocp.CheckpointManager(Path(directory).absolute(), options=options,
                                 item_handlers=ocp.StandardCheckpointHandler())


def save_checkpoint(manager: ocp.CheckpointManager, epoch: int, state: Any, metrics: dict[str, float] | None) -> None:
    manager.save(epoch, args=ocp.args.StandardSave(_saved_tree(state)), metrics=metrics or None)
    manager.wait_until_finished()


def prune_checkpoints(manager: ocp.CheckpointManager, keep: int, best_metric: str | None = BEST_METRIC) -> list[int]:
    """Delete what the preservation policy would not keep: all but the latest `keep` epochs and the best
    by `best_metric`. Orbax applies its policy only to checkpoints it saves itself, so a resumed run calls
    this on the set it finds. Returns the deleted epochs."""
    steps = sorted(manager.all_steps())
    kept = set(steps[-keep:])
    if best_metric is not None:
        scored = [(m[best_metric], s) for s in steps if (m := manager.metrics(s)) and best_metric in m]
        if scored:
            kept.add(max(scored)[1])
    gone = [s for s in steps if s not in kept]
    for step in gone:
        manager.delete(step)
    return gone


def _reason(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"


def _as_saved_here(manager: ocp.CheckpointManager, step: int) -> Any:
    """The saved tree's shapes and dtypes on this process's first device: a target that restores a checkpoint
    whatever the process and device layout that wrote it (e.g. a multi-process run read by one process)."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    metadata = manager.item_metadata(step)
    return jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                                  metadata.tree, is_leaf=lambda m: hasattr(m, "shape"))


def _newest_readable(manager: ocp.CheckpointManager, target: Any | None, steps: list[int]):
    """(epoch, tree, [(epoch, error) of the newer unreadable ones]) of the newest of `steps` that
    restores (into `target`'s structure, or as saved when None); epoch None when none does."""
    failed: list[tuple[int, Exception]] = []
    for step in steps:
        try:
            args = ocp.args.StandardRestore(target if target is not None else _as_saved_here(manager, step))
            return step, manager.restore(step, args=args), failed
        except Exception as e:  # noqa: BLE001 - a damaged checkpoint fails in many ways; try the next older
            failed.append((step, e))
    return None, None, failed


def restore_checkpoint(manager: ocp.CheckpointManager, state: Any, epoch: int | None = None) -> tuple[Any, int]:
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
    step, tree, failed = _newest_readable(manager, target, steps)
    if step is None:
        bad, e = failed[0]
        raise ConfigError(f"checkpoint {manager.directory}/{bad} does not match this model/config ({_reason(e)}); "
                          "use the config it was trained with") from None
    if failed:
        aside = Path(str(manager.directory) + ".damaged")
        if is_main():  # one process moves them; the others wait for it (pannjax.distributed)
            aside.mkdir(exist_ok=True)
            for bad, _ in failed:
                shutil.move(str(Path(manager.directory) / str(bad)), str(aside / f"{bad}-{int(time.time())}"))
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("pannjax: damaged checkpoints moved aside")
        manager.reload()
        log.warning("checkpoint %s unreadable (%s): resuming from epoch %d; moved to %s",
                    ", ".join(str(b) for b, _ in failed), _reason(failed[0][1]), step, aside)
    return _into(state, tree), step


def restore_run_variables(run_dir: str | Path, key: str = "checkpoint") -> tuple[dict, dict, int]:
    """(resolved config, {"params", "batch_stats"}, epoch) of the newest readable orbax checkpoint of a run
    of experiments/train.py, read without writing to that run's directory; a missing or unreadable run dir
    or checkpoint, or non-finite weights, raise a one-line ConfigError naming `key`, the config key that
    gave `run_dir`."""
    from pannjax.train.divergence import first_nonfinite

    run_dir = Path(run_dir)
    cfg_path = run_dir / ".hydra" / "config.yaml"
    ckpt_dir = run_dir / "checkpoints"
    if not cfg_path.is_file():
        raise ConfigError(f"{key}={run_dir}: no .hydra/config.yaml there; give the run dir of "
                          "experiments/train.py (trained with trainer.checkpoint=true)")
    if not ckpt_dir.is_dir():
        raise ConfigError(f"{key}={run_dir}: no checkpoints/ directory; train with trainer.checkpoint=true")
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(cfg_path), resolve=True)
        if not isinstance(cfg.get("data"), dict) or not isinstance(cfg.get("model"), dict):
            raise KeyError("data/model")
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad run dir
        raise ConfigError(f"{key}={run_dir}: .hydra/config.yaml is unreadable ({type(e).__name__})") from None
    try:
        manager = checkpoint_manager(ckpt_dir, read_only=True)
        steps = sorted(manager.all_steps(), reverse=True)
    except Exception as e:  # noqa: BLE001 - foreign files
        raise ConfigError(f"{key}={run_dir}: the orbax checkpoints could not be listed ({type(e).__name__}); "
                          "re-run experiments/train.py") from None
    if not steps:
        raise ConfigError(f"{key}={run_dir}: checkpoints/ holds no checkpoint; train first")
    epoch, tree, failed = _newest_readable(manager, None, steps)
    if epoch is None:
        raise ConfigError(f"{key}={run_dir}: no orbax checkpoint there could be read ({_reason(failed[0][1])}); "
                          "re-run experiments/train.py") from None
    if failed:
        log.warning("%s: checkpoint %s unreadable (%s): using epoch %d", key, ", ".join(str(b) for b, _ in failed),
                    _reason(failed[0][1]), epoch)
    variables = {"params": jax.device_get(tree["params"]), "batch_stats": jax.device_get(tree.get("batch_stats", {}))}
    where = first_nonfinite(None, variables, None)
    if where.startswith("weights of"):
        raise ConfigError(f"{key}={run_dir}: epoch {epoch} holds non-finite {where}: that run diverged; "
                          "retrain it (e.g. with a lower trainer.optimizer.learning_rate)")
    return cfg, variables, int(epoch)
