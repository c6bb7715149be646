"""`run_search`: one jitted search step (any variant) run by the training loop, with the sequential
freezing schedule and, for bi-level search, a held-out split carved from the training data.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pannjax.data.base import Dataset
from pannjax.distributed import batch_rows
from pannjax.errors import ConfigError
from pannjax.search.derive import budgeted_assignment
from pannjax.search.energy import EnergyModel
from pannjax.search.layers import GATES, search_apply_fn, search_init
from pannjax.search.space import SearchSpace
from pannjax.search.steps import SearchConfig, SearchState, freeze_next, make_search_step
from pannjax.train.divergence import first_nonfinite
from pannjax.train.loop import EpochProgram, TrainerConfig, run_epochs
from pannjax.train.sharding import data_mesh, replicate, shard_batch
from pannjax.train.state import make_optimizer

log = logging.getLogger(__name__)


def hold_out(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """(train part, held-out part) of the training split, a seeded random partition; the held-out part
    is returned as the *train* split of a second Dataset so it can be batched the same way."""
    n = len(dataset.train_labels)
    order = np.random.default_rng([seed, 7]).permutation(n)
    n_val = max(1, int(round(fraction * n)))
    val, train = order[:n_val], order[n_val:]
    return (dataclasses.replace(dataset, train_images=dataset.train_images[train], train_labels=dataset.train_labels[train]),
            dataclasses.replace(dataset, train_images=dataset.train_images[val], train_labels=dataset.train_labels[val]))


def create_search_state(model: nn.Module, space: SearchSpace, cfg: SearchConfig, tx_w: optax.GradientTransformation,
                        sample_images: np.ndarray, seed: int) -> SearchState:
    init_key, run_key = jax.random.split(jax.random.key(seed))
    variables = jax.jit(lambda k, x: search_init(model, space, cfg.single_path, k, x))(init_key, jnp.asarray(sample_images))
    alpha = jax.tree_util.tree_map(jnp.zeros_like, variables[GATES])
    tx_a = optax.adamw(cfg.alpha_lr, b1=0.5, b2=0.999, weight_decay=cfg.alpha_weight_decay)  # DARTS' alpha Adam
    params = variables["params"]
    return SearchState(
        step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables.get("batch_stats", {}), alpha=alpha,
        opt_w=tx_w.init(params), opt_a=tx_a.init(alpha), rng=run_key,
        frozen=jax.tree_util.tree_map(lambda a: jnp.zeros((), bool), alpha),
        choice=jax.tree_util.tree_map(lambda a: jnp.zeros((), jnp.int32), alpha), lam=jnp.asarray(cfg.lam, jnp.float32),
        apply_fn=search_apply_fn(model, space, cfg.single_path), tx_w=tx_w, tx_a=tx_a)


def freeze_steps(cfg: SearchConfig, layers: int, total_steps: int, alpha_start: int) -> list[int]:
    """Steps after which the sequential variant freezes its next layer: every `freeze_every_steps`, or
    evenly spaced between the end of the warm-up and the end of the search (the last layer at the end)."""
    if cfg.freeze_every_steps:
        return [alpha_start + (i + 1) * cfg.freeze_every_steps for i in range(layers)]
    span = max(total_steps - alpha_start, layers)
    return [alpha_start + math.ceil((i + 1) * span / layers) for i in range(layers)]


def budget_keeping_choice(space: SearchSpace, energy: EnergyModel, budget: float,
                          tolerance: float) -> Callable[[SearchState], dict[str, int]]:
    """The sequential variant's choice under an energy budget: each layer is fixed at its candidate in the
    most probable assignment that meets the budget given the layers already fixed
    (`pannjax.search.derive.budgeted_assignment`), so the budget stays reachable to the last freeze."""

    def choose(state: SearchState) -> dict[str, int]:
        picked, _ = budgeted_assignment(state.alpha, state.frozen, state.choice, space, energy, budget, tolerance)
        return {p: space.names.index(n) for p, n in picked.items()}

    return choose


def run_search(model: nn.Module, dataset: Dataset, space: SearchSpace, energy: EnergyModel, cfg: SearchConfig,
               trainer: TrainerConfig, seed: int, run_dir: str | Path,
               on_trace: Callable[[], None] | None = None) -> tuple[SearchState, list[dict[str, Any]]]:
    """Search `cfg.epochs` epochs through the training loop (`pannjax.train.run_epochs`: checkpoints in
    `run_dir/checkpoints`, `metrics.jsonl`, resume with `trainer.resume`, `trainer.stop_after_epochs`,
    divergence); returns the final state and the per-epoch records. The optimiser, batch size and
    checkpointing come from `trainer`, the number of epochs from `cfg`. Like training, the search is data
    parallel over every device of the run (`pannjax.train.sharding`; all processes' in a multi-process run).
    The sequential variant's freezing is a function of the step count and the state, so a resumed search
    freezes the same layers at the same steps; each freeze is an event `{"step", "layer"}` of its epoch's
    record."""
    batch_size = trainer.batch_size
    mesh = data_mesh()  # data parallel over every device of the run, as training (pannjax.train.sharding)
    if batch_size % mesh.size:
        raise ConfigError(f"trainer.batch_size={batch_size} must be a multiple of the {mesh.size} devices used for "
                          "data-parallel search")
    rows = batch_rows(batch_size)  # a multi-process run reads this process's rows of each batch
    train_ds, val_ds = hold_out(dataset, cfg.val_fraction, seed) if cfg.variant == "bilevel" else (dataset, None)
    steps_per_epoch = train_ds.steps_per_epoch(batch_size)
    total = steps_per_epoch * cfg.epochs
    alpha_start = int(round(cfg.alpha_start_epoch * steps_per_epoch))
    tx_w = make_optimizer(trainer.optimizer, total, steps_per_epoch)
    state = create_search_state(model, space, cfg, tx_w, train_ds.train_images[:batch_size], seed)
    step = make_search_step(cfg, energy, energy.tree(state.alpha), total, alpha_start, dataset.augment, on_trace)
    freezes = freeze_steps(cfg, len(energy.order), total, alpha_start) if cfg.variant == "sequential" else []
    budget = cfg.budget_rel(energy.reference_pj)
    choose = None if budget is None else budget_keeping_choice(space, energy, budget, cfg.budget_tolerance)

    def inputs(epoch):
        batches = (shard_batch(b, mesh, batch_size)
                   for b in train_ds.batches("train", batch_size, epoch=epoch, seed=seed, rows=rows))
        if val_ds is None:
            return ((b,) for b in batches)
        return zip(batches, (shard_batch(b, mesh, batch_size) for b in _cycle(val_ds, batch_size, seed, rows)))

    def freeze_due(state):
        """Freeze layers until as many are frozen as the schedule says by this step."""
        due = sum(int(state.step) >= f for f in freezes)
        events = []
        while sum(bool(f) for f in jax.tree_util.tree_leaves(jax.device_get(state.frozen))) < due:
            state, path = freeze_next(state, energy.order, cfg.freeze_order, choose)
            if path is None:
                break
            state = state.replace(frozen=replicate(state.frozen, mesh), choice=replicate(state.choice, mesh))
            events.append({"step": int(state.step), "layer": path})
        return state, events

    program = EpochProgram(
        name="search", step=step, inputs=inputs, steps_per_epoch=steps_per_epoch,
        end_of_epoch=lambda state: {"lambda": float(state.lam)},  # with a budget, the multiplier's trajectory
        where_nonfinite=lambda state, _: first_nonfinite(None, {"params": state.params}, None),
        prefix="search_", after_step=freeze_due if freezes else None, best_metric=None,
        log_line=lambda r: (f"loss {r['search_loss']:.4f}  acc {r['search_accuracy']:.3f}  "
                            f"E/E_ref {r['search_energy_rel']:.3f}  lambda {r['lambda']:.3f}"))
    return run_epochs(program, state, dataclasses.replace(trainer, epochs=cfg.epochs), run_dir,
                      prepare=lambda s: replicate(s, mesh))


def frozen_order(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sequential variant's freezes in order, from the epoch records."""
    return [event for record in history for event in record.get("events", ())]


def _cycle(dataset: Dataset, batch_size: int, seed: int, rows: slice | None):
    epoch = 0
    while True:
        yield from dataset.batches("train", batch_size, epoch=epoch, seed=seed + 1, rows=rows)
        epoch += 1
