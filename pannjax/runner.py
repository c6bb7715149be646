"""What the Hydra entry points in `experiments/` call: config -> objects -> run -> results.json.

Kept importable (and tested) so `experiments/*.py` stay thin (docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
from omegaconf import DictConfig, OmegaConf

from pannjax.build import build_policy, load_plugins
from pannjax.data import load_dataset
from pannjax.errors import ConfigError, DivergenceError
from pannjax.hw.report import NetworkReport, build_report
from pannjax.models import build_model
from pannjax.nn import abstract_layers
from pannjax.prune import pruning_from_config, weight_sparsity
from pannjax.results import write_results
from pannjax.rundir import owned_run_dir
from pannjax.sweep import flatten
from pannjax.train import OptimizerConfig, TrainerConfig, train_and_evaluate

log = logging.getLogger(__name__)


def to_container(cfg: DictConfig | Mapping) -> dict:
    """Resolved plain-Python copy of a config (what is frozen into dataclasses before jit)."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def trainer_config(cfg: Mapping[str, Any]) -> TrainerConfig:
    fields = dict(cfg)
    opt = dict(fields.pop("optimizer", {}) or {})
    if "step_milestones" in opt:
        opt["step_milestones"] = tuple(opt["step_milestones"])
    try:
        return TrainerConfig(optimizer=OptimizerConfig(**opt), **fields)
    except TypeError as e:
        raise ConfigError(f"trainer: {e}") from None


def seed_of(cfg: Mapping[str, Any]) -> int:
    """The run's `seed`, a whole number (one-line error otherwise)."""
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r}: expected a whole number, e.g. seed=0")
    return seed


def build_model_for(cfg: Mapping[str, Any], num_classes: int):
    model_cfg = dict(cfg["model"])
    name = model_cfg.pop("name", None)
    for key in ("width", "depth"):
        value = model_cfg.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"model.{key}={value!r}: expected a whole number >= 1")
    policy = build_policy(cfg["quant"], cfg["op"], cfg.get("layers") or ())
    return build_model(name, num_classes=num_classes, policy=policy, **model_cfg)


def network_report(model, state, dataset) -> NetworkReport:
    """The trained network's per-layer op counts and energy per example (`pannjax.hw.report`), from the
    shapes of one input (no toggle simulation: cheap enough to write with every run)."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    sample = jax.ShapeDtypeStruct((1, *dataset.train_images.shape[1:]), jnp.float32)
    return build_report(model, variables, sample, simulate=False)


def run_train(cfg: DictConfig | Mapping, run_dir: str | Path) -> dict[str, Any]:
    """Train the configured model on the configured data; write and return `results.json`'s record."""
    c = to_container(cfg)
    known = {"data", "model", "quant", "op", "trainer", "seed", "layers", "experiment", "prune", "plugins",
             "objective", "overwrite"}
    unknown = sorted(set(c) - known - {"hydra"})
    if unknown:
        raise ConfigError(f"{unknown[0]} is not a known top-level option; valid: {', '.join(sorted(known))}")
    load_plugins(c.get("plugins") or [])
    seed_of(c)
    data_cfg = dict(c["data"])
    dataset = load_dataset(data_cfg.pop("name", None), **data_cfg)
    model = build_model_for(c, dataset.num_classes)
    trainer = trainer_config(c["trainer"])
    sample = jax.ShapeDtypeStruct((1, *dataset.train_images.shape[1:]), jnp.float32)
    pruning = pruning_from_config(c.get("prune"), abstract_layers(model, sample, train=False))
    with owned_run_dir(run_dir, "train", c, resume=trainer.resume, overwrite=bool(c.get("overwrite", False)),
                       resume_key="trainer.resume"):
        return _train(c, run_dir, dataset, model, trainer, pruning)


def _train(c: Mapping[str, Any], run_dir, dataset, model, trainer, pruning) -> dict[str, Any]:
    t0 = time.perf_counter()
    init = {}
    if trainer.init_from:  # fine-tuning: params/BN statistics of matching path and shape from that run
        from pannjax.train.checkpoint import restore_run_variables

        _, start, _ = restore_run_variables(trainer.init_from, key="trainer.init_from")
        init = {"init_params": start["params"], "init_batch_stats": start["batch_stats"]}
    try:
        state, results = train_and_evaluate(model, dataset, trainer, seed_of(c), run_dir, tx_tail=pruning,
                                            **init)
    except DivergenceError as e:  # the run dir says so too: not completed, where it diverged
        write_results(run_dir, "train", {**stopped_record(seed_of(c), time.perf_counter() - t0), "diverged": e.record,
                                         "data": c["data"]["name"], "model": c["model"]["name"]}, c)
        raise
    report = network_report(model, state, dataset)
    report.save(run_dir)
    results.update({
        "data": c["data"]["name"], "model": c["model"]["name"], "quant": c["quant"], "op": c["op"],
        "experiment": (c.get("experiment") or {}).get("name"), "process_seconds": time.perf_counter() - t0,
        "energy_pj": report.total_energy_pj, "toggles": report.totals()["toggles"], "macs": report.total_macs,
        "prune": c.get("prune") or {"name": "none"}, "weight_sparsity": weight_sparsity(state.params),
    })
    results = write_results(run_dir, "train", results, c)
    log.info("test_accuracy %.4f  -> %s", results["test_accuracy"] or float("nan"), Path(run_dir) / "results.json")
    return results


def stopped_record(seed: int, wall_seconds: float) -> dict[str, Any]:
    """The common results keys of a run that stopped before it had a network to report."""
    return {"completed": False, "seed": seed, "test_accuracy": None, "energy_pj": None, "toggles": None,
            "wall_seconds": wall_seconds}


def objective(results: Mapping[str, Any], keys: Sequence[str] | str | None) -> float | tuple[float, ...]:
    """What an entry point returns to Hydra's sweeper (the Optuna sweeper optimises it): the `results.json`
    values named by the config key `objective` (dotted paths such as `summary.2bit.pann_accuracy` allowed).
    One key gives a float, several a tuple for a multi-objective study (`hydra/sweeper=optuna_pareto`:
    maximise accuracy, minimise energy)."""
    keys = [keys] if isinstance(keys, str) else list(keys or ["test_accuracy"])
    flat = flatten(results)
    values = []
    for key in keys:
        value = flat.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            numeric = sorted(k for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
            raise ConfigError(f"objective: {key!r} is not a number in results.json; choose from {', '.join(numeric)}")
        values.append(float(value))
    return values[0] if len(values) == 1 else tuple(values)


@contextlib.contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Turn a `ConfigError` into one line on stderr and exit status 2, a `DivergenceError` into one line
    and exit status 3 (no traceback)."""
    try:
        yield
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except DivergenceError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
