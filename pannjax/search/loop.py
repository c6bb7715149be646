"""`run_search`: the epoch loop around one jitted search step (any variant), with the sequential
freezing schedule and, for bi-level search, a held-out split carved from the training data.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from pannjax.data.base import Dataset
from pannjax.runlog import append_metrics
from pannjax.search.energy import EnergyModel
from pannjax.search.layers import GATES, search_apply_fn, search_init
from pannjax.search.space import SearchSpace
from pannjax.search.steps import SearchConfig, SearchState, freeze_next, make_search_step
from pannjax.train.divergence import check_losses
from pannjax.train.state import OptimizerConfig, make_optimizer

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
        choice=jax.tree_util.tree_map(lambda a: jnp.zeros((), jnp.int32), alpha),
        apply_fn=search_apply_fn(model, space, cfg.single_path), tx_w=tx_w, tx_a=tx_a)


def freeze_steps(cfg: SearchConfig, layers: int, total_steps: int, alpha_start: int) -> list[int]:
    """Steps after which the sequential variant freezes its next layer: every `freeze_every_steps`, or
    evenly spaced between the end of the warm-up and the end of the search (the last layer at the end)."""
    if cfg.freeze_every_steps:
        return [alpha_start + (i + 1) * cfg.freeze_every_steps for i in range(layers)]
    span = max(total_steps - alpha_start, layers)
    return [alpha_start + math.ceil((i + 1) * span / layers) for i in range(layers)]


def run_search(model: nn.Module, dataset: Dataset, space: SearchSpace, energy: EnergyModel, cfg: SearchConfig,
               optimizer: OptimizerConfig, batch_size: int, seed: int, run_dir=None, progress: bool = True,
               on_trace: Callable[[], None] | None = None) -> tuple[SearchState, list[dict[str, Any]]]:
    """Search `cfg.epochs` epochs; returns the final state and per-epoch records (also appended to
    `run_dir/metrics.jsonl` when given)."""
    train_ds, val_ds = hold_out(dataset, cfg.val_fraction, seed) if cfg.variant == "bilevel" else (dataset, None)
    steps_per_epoch = train_ds.steps_per_epoch(batch_size)
    total = steps_per_epoch * cfg.epochs
    alpha_start = int(round(cfg.alpha_start_epoch * steps_per_epoch))
    tx_w = make_optimizer(optimizer, total, steps_per_epoch)
    state = create_search_state(model, space, cfg, tx_w, train_ds.train_images[:batch_size], seed)
    step = make_search_step(cfg, energy, energy.tree(state.alpha), total, alpha_start, dataset.augment, on_trace)
    freezes = freeze_steps(cfg, len(energy.order), total, alpha_start) if cfg.variant == "sequential" else []
    history, frozen_log = [], []
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        sums, n = {}, 0
        batches = train_ds.batches("train", batch_size, epoch=epoch, seed=seed)
        if val_ds is not None:
            val_iter = _cycle(val_ds, batch_size, seed)
        for batch in tqdm(batches, total=steps_per_epoch, desc=f"search {epoch + 1}/{cfg.epochs}",
                          disable=not (progress and sys.stderr.isatty()), leave=False):
            state, m = step(state, batch, next(val_iter)) if val_ds is not None else step(state, batch)
            host = jax.device_get(m)
            check_losses([host["loss"]], int(state.step), epoch + 1, None, {"params": state.params}, None,
                         what="search")
            for k, v in host.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
            while freezes and int(state.step) >= freezes[0]:
                freezes.pop(0)
                state, path = freeze_next(state, energy.order, cfg.freeze_order)
                if path is not None:
                    frozen_log.append({"step": int(state.step), "layer": path})
        record = {"epoch": epoch + 1, "step": int(state.step), **{f"search_{k}": v / n for k, v in sums.items()},
                  "wall_seconds": time.perf_counter() - t0}
        history.append(record)
        if run_dir is not None:
            append_metrics(run_dir, record)
        log.info("search epoch %d/%d  loss %.4f  acc %.3f  E/E_ref %.3f", epoch + 1, cfg.epochs,
                 record["search_loss"], record["search_accuracy"], record["search_energy_rel"])
    if frozen_log:
        history[-1]["frozen_order"] = frozen_log
    return state, history


def _cycle(dataset: Dataset, batch_size: int, seed: int):
    epoch = 0
    while True:
        yield from dataset.batches("train", batch_size, epoch=epoch, seed=seed + 1)
        epoch += 1
