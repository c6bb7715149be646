"""What the Hydra entry points in `experiments/` call: config -> objects -> run -> results.json.

Kept importable (and tested) so `experiments/*.py` stay thin (DESIGN.md).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from omegaconf import DictConfig, OmegaConf

from pannjax.build import build_policy
from pannjax.data import load_dataset
from pannjax.errors import ConfigError
from pannjax.models import build_model
from pannjax.runlog import write_results
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


def build_model_for(cfg: Mapping[str, Any], num_classes: int):
    model_cfg = dict(cfg["model"])
    name = model_cfg.pop("name", None)
    policy = build_policy(cfg["quant"], cfg["op"], cfg.get("layers") or ())
    return build_model(name, num_classes=num_classes, policy=policy, **model_cfg)


def run_train(cfg: DictConfig | Mapping, run_dir: str | Path) -> dict[str, Any]:
    """Train the configured model on the configured data; write and return `results.json`'s record."""
    c = to_container(cfg)
    known = {"data", "model", "quant", "op", "trainer", "seed", "layers"}
    unknown = sorted(set(c) - known - {"hydra"})
    if unknown:
        raise ConfigError(f"{unknown[0]} is not a known top-level option; valid: {', '.join(sorted(known))}")
    data_cfg = dict(c["data"])
    dataset = load_dataset(data_cfg.pop("name", None), **data_cfg)
    model = build_model_for(c, dataset.num_classes)
    trainer = trainer_config(c["trainer"])
    t0 = time.perf_counter()
    _, results = train_and_evaluate(model, dataset, trainer, int(c["seed"]), run_dir)
    results.update({
        "data": c["data"]["name"], "model": c["model"]["name"], "quant": c["quant"], "op": c["op"],
        "process_seconds": time.perf_counter() - t0,
    })
    write_results(run_dir, results)
    log.info("test_accuracy %.4f  -> %s", results["test_accuracy"] or float("nan"), Path(run_dir) / "results.json")
    return results


@contextlib.contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Turn a `ConfigError` into one line on stderr and exit status 2 (no traceback)."""
    try:
        yield
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
