"""What experiments/train.py calls: config -> data, model, trainer -> training -> report -> results.json.

Kept importable (and tested) so `experiments/*.py` stay thin (docs/architecture.md); the set-up and exit
helpers every entry point shares are in `pannjax.experiment`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from omegaconf import DictConfig

from pannjax.build import build_policy, check_patterns
from pannjax.distributed import is_main
from pannjax.errors import DivergenceError
from pannjax.experiment import load_data, model_factory, seed_of, setup, stopped_record
from pannjax.hw.report import NetworkReport, build_report
from pannjax.hw.system import AcceleratorConfig
from pannjax.nn import abstract_layers
from pannjax.prune import pruning_from_config, weight_sparsity
from pannjax.results import write_results
from pannjax.rundir import owned_run_dir
from pannjax.schema import build
from pannjax.train import TrainerConfig, train_and_evaluate

log = logging.getLogger(__name__)


def trainer_config(cfg: Mapping[str, Any]) -> TrainerConfig:
    """`TrainerConfig` of config block `trainer` (its schema's checks, then the ranges)."""
    return build(TrainerConfig, cfg, "trainer")


def build_model_for(cfg: Mapping[str, Any], num_classes: int):
    """The configured model with the configured arithmetic (`quant`, `op`, `layers`)."""
    build = model_factory(cfg["model"], num_classes)
    return build(build_policy(cfg["quant"], cfg["op"], cfg.get("layers") or ()))


def network_report(model, state, dataset, accelerator: AcceleratorConfig | None = None) -> NetworkReport:
    """The trained network's per-layer op counts and energy per example (`pannjax.hw.report`), from the
    shapes of one input (no toggle simulation: cheap enough to write with every run), with the data movement
    on `accelerator` where one is given."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    sample = jax.ShapeDtypeStruct((1, *dataset.train_images.shape[1:]), jnp.float32)
    return build_report(model, variables, sample, simulate=False, accelerator=accelerator)


def accelerator_config(c: Mapping[str, Any]) -> AcceleratorConfig:
    """The `accelerator` block as an `AcceleratorConfig` (one-line errors naming `accelerator.<key>`)."""
    return build(AcceleratorConfig, c.get("accelerator") or {}, "accelerator")


def run_train(cfg: DictConfig | Mapping, run_dir: str | Path) -> dict[str, Any]:
    """Train the configured model on the configured data; write and return `results.json`'s record."""
    c = setup(cfg, "train")
    dataset = load_data(c)
    model = build_model_for(c, dataset.num_classes)
    trainer = trainer_config(c["trainer"])
    sample = jax.ShapeDtypeStruct((1, *dataset.train_images.shape[1:]), jnp.float32)
    layers = abstract_layers(model, sample, train=False)
    check_patterns({f"layers[{i}].pattern": layer.get("pattern") for i, layer in enumerate(c.get("layers") or [])},
                   [layer.path for layer in layers])
    pruning = pruning_from_config(c.get("prune"), layers)
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
    report = network_report(model, state, dataset, accelerator_config(c))
    if is_main():  # one writer in a multi-process run
        report.save(run_dir)
    results.update({
        "data": c["data"]["name"], "model": c["model"]["name"], "quant": c["quant"], "op": c["op"],
        "experiment": (c.get("experiment") or {}).get("name"), "process_seconds": time.perf_counter() - t0,
        **report.energy_record(), "macs": report.total_macs,
        "prune": c.get("prune") or {"name": "none"}, "weight_sparsity": weight_sparsity(state.params),
    })
    results = write_results(run_dir, "train", results, c)
    log.info("test_accuracy %.4f  -> %s", results["test_accuracy"] or float("nan"), Path(run_dir) / "results.json")
    return results
