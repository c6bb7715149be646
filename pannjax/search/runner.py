"""What `experiments/search.py` calls: config -> search -> derived network -> retraining -> results.json.

results.json holds the per-layer assignment (and final probabilities), energy in pJ per example and
relative to the all-reference (all-MAC) network (from `pannjax.hw.report.build_report` on both
networks), test accuracy of the derived network before retraining (inherited weights, BatchNorm
statistics re-estimated on `bn_recalibration_batches` training batches) and after retraining, the
all-MAC baseline's accuracy when `search.baseline_epochs > 0`, lambda, variant and wall times (the
`search` results schema, `pannjax.results`). Search, retraining and baseline run through the training
loop and are checkpointed in the run dir, `checkpoints/`, `retrain/` and `baseline/`: `trainer.resume=true`
continues a killed search where it stopped; `trainer.stop_after_epochs` stops the search phase.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
from omegaconf import DictConfig

from pannjax.data.base import Dataset
from pannjax.errors import ConfigError, DivergenceError
from pannjax.hw.report import build_report
from pannjax.rundir import owned_run_dir
from pannjax.results import write_results
from pannjax.experiment import load_data, model_factory, seed_of, setup, stopped_record
from pannjax.runner import trainer_config
from pannjax.search.derive import assignment, inherit_params, layer_probabilities
from pannjax.search.energy import energy_model
from pannjax.search.loop import frozen_order, run_search
from pannjax.search.space import build_search_space
from pannjax.search.steps import SearchConfig
from pannjax.train import train_and_evaluate
from pannjax.train.loop import evaluate, overlay
from pannjax.train.state import TrainState

log = logging.getLogger(__name__)

_LOOP_KEYS = {"candidates", "use", "reference", "exclude", "lambda", "retrain_epochs", "retrain_learning_rate",
              "baseline_epochs", "acc_bits", "energy_table"}


def search_config(search: Mapping[str, Any]) -> SearchConfig:
    fields = {k: v for k, v in search.items() if k not in _LOOP_KEYS}
    if "lambda" in search:  # else SearchConfig's default, the same as configs/search.yaml's
        lam = search["lambda"]
        if isinstance(lam, bool) or not isinstance(lam, (int, float)):
            raise ConfigError(f"search.lambda={lam!r}: expected a number >= 0")
        fields["lam"] = float(lam)
    for key in ("retrain_epochs", "baseline_epochs"):
        value = search.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"search.{key}={value!r}: expected a whole number >= 0 (0: none)")
    lr = search.get("retrain_learning_rate")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
        raise ConfigError(f"search.retrain_learning_rate={lr!r}: expected a number > 0")
    acc = search.get("acc_bits", 32)
    if isinstance(acc, bool) or not isinstance(acc, int) or not 2 <= acc <= 64:
        raise ConfigError(f"search.acc_bits={acc!r}: expected an accumulator width in 2..64 bits")
    known = {f.name for f in dataclasses.fields(SearchConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"search.{unknown[0]} is not a known option; valid: "
                          f"{', '.join(sorted((known - {'lam'}) | _LOOP_KEYS))}")
    return SearchConfig(**fields)


def recalibrated_state(model, params, batch_stats, dataset: Dataset, batches: int, batch_size: int, seed: int) -> TrainState:
    """A TrainState of `model` with `params`, its BatchNorm statistics re-estimated on training batches."""

    @jax.jit
    def update(stats, images):
        _, upd = model.apply({"params": params, "batch_stats": stats}, images, train=True, mutable=["batch_stats"])
        return upd["batch_stats"]

    for i, batch in enumerate(dataset.batches("train", batch_size, epoch=0, seed=seed + 11)):
        if i >= batches:
            break
        batch_stats = update(batch_stats, batch["image"])
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats, opt_state=None,
                      rng=jax.random.key(seed), apply_fn=model.apply, tx=None)


def _fresh_variables(model, sample, seed: int) -> dict:
    return jax.jit(lambda k, x: model.init(k, x, train=False))(jax.random.key(seed), jnp.asarray(sample))


def run_search_experiment(cfg: DictConfig | Mapping, run_dir: str | Path,
                          on_trace: Callable[[], None] | None = None) -> dict[str, Any]:
    """Search, derive, retrain, report (see module docstring); writes and returns results.json's record.
    `on_trace` is called whenever the search step is traced (tests check it runs once)."""
    c = setup(cfg, "search")
    run_dir = Path(run_dir)
    scfg = search_config(c["search"])
    trainer = trainer_config(c["trainer"])
    with owned_run_dir(run_dir, "search", c, resume=trainer.resume, overwrite=bool(c.get("overwrite", False)),
                       resume_key="trainer.resume"):
        return _search(c, run_dir, scfg, trainer, on_trace)


def _search(c: Mapping[str, Any], run_dir: Path, scfg: SearchConfig, trainer,
            on_trace: Callable[[], None] | None) -> dict[str, Any]:
    seed, s = seed_of(c), dict(c["search"])
    dataset = load_data(c)
    model_name = c["model"]["name"]
    model_for = model_factory(c["model"], dataset.num_classes)

    space = build_search_space(s["candidates"], s["use"], s["reference"], s.get("exclude"))
    acc_bits = int(s.get("acc_bits", 32))
    energy = energy_model(model_for, space, dataset.image_shape, s.get("energy_table"), acc_bits)
    t = time.perf_counter()
    try:
        state, history = run_search(model_for(space.reference_policy()), dataset, space, energy, scfg, trainer, seed,
                                    run_dir, on_trace=on_trace)
    except DivergenceError as e:  # no assignment is derived from a diverged search
        write_results(run_dir, "search", {**stopped_record(seed, time.perf_counter() - t), "diverged": e.record,
                                          "variant": scfg.variant}, c)
        raise
    searched = history[-1]["epoch"] if history else 0
    if searched < scfg.epochs:  # trainer.stop_after_epochs: trainer.resume=true continues the search
        results = {**stopped_record(seed, history[-1]["wall_seconds"] if history else 0.0), "variant": scfg.variant,
                   "search_epochs": scfg.epochs, "search_epochs_done": searched, "search_history": history}
        results = write_results(run_dir, "search", results, c)
        log.info("search stopped after epoch %d of %d: resume with trainer.resume=true", searched, scfg.epochs)
        return results
    chosen = assignment(state.alpha, state.frozen, state.choice, space)

    derived = model_for(space.derived_policy(chosen))
    sample = dataset.train_images[: trainer.batch_size]
    fresh = _fresh_variables(derived, sample, seed)
    params = overlay(fresh["params"], inherit_params(state.params, chosen))
    before_state = recalibrated_state(derived, params, overlay(fresh.get("batch_stats", {}), state.batch_stats),
                                      dataset, scfg.bn_recalibration_batches, trainer.batch_size, seed)
    before = evaluate(before_state, dataset, trainer.eval_batch_size)

    times = {"search_seconds": history[-1]["wall_seconds"], "retrain_seconds": 0.0, "baseline_seconds": 0.0}
    retrain_epochs = int(s.get("retrain_epochs", 0))
    after = None
    final_state = before_state
    if retrain_epochs > 0:
        opt = dataclasses.replace(trainer.optimizer, learning_rate=float(s.get("retrain_learning_rate",
                                                                            trainer.optimizer.learning_rate)))
        retrainer = dataclasses.replace(trainer, epochs=retrain_epochs, optimizer=opt, stop_after_epochs=None)
        final_state, retrained = train_and_evaluate(derived, dataset, retrainer, seed, run_dir / "retrain",
                                                    init_params=before_state.params,
                                                    init_batch_stats=before_state.batch_stats)
        after, times["retrain_seconds"] = retrained["test_accuracy"], retrained["wall_seconds"]

    reference_model = model_for(space.reference_policy())
    baseline = None
    baseline_epochs = int(s.get("baseline_epochs", 0))
    if baseline_epochs > 0:
        base_trainer = dataclasses.replace(trainer, epochs=baseline_epochs, stop_after_epochs=None)
        _, base = train_and_evaluate(reference_model, dataset, base_trainer, seed, run_dir / "baseline")
        baseline, times["baseline_seconds"] = base["test_accuracy"], base["wall_seconds"]

    shape = jax.ShapeDtypeStruct((1, *dataset.image_shape), jnp.float32)
    derived_report = build_report(derived, {"params": final_state.params, "batch_stats": final_state.batch_stats},
                                  shape, acc_bits=acc_bits, table=s.get("energy_table"), simulate=False)
    ref_vars = jax.eval_shape(lambda: reference_model.init(jax.random.key(0), jnp.zeros(shape.shape), train=False))
    ref_report = build_report(reference_model, ref_vars, shape, acc_bits=acc_bits, table=s.get("energy_table"),
                              simulate=False)
    derived_report.save(run_dir, "power_report")
    e_derived, e_ref = derived_report.total_energy_pj, ref_report.total_energy_pj
    accuracy = after if after is not None else before["accuracy"]
    experiment = c.get("experiment")
    results = {
        "completed": True, "variant": scfg.variant, "lambda": scfg.lam, "seed": seed, "data": c["data"]["name"],
        "model": model_name, "experiment": experiment.get("name") if isinstance(experiment, dict) else experiment,
        "candidates": list(space.names), "reference": space.reference.name,
        "assignment": chosen, "probabilities": layer_probabilities(state.alpha, space),
        "energy_pj": e_derived, "toggles": derived_report.totals()["toggles"], "energy_reference_pj": e_ref,
        "energy_rel": e_derived / e_ref, "energy_saving": 1.0 - e_derived / e_ref,
        "energy_table_pj": {p: dict(zip(space.names, v.tolist())) for p, v in energy.per_layer.items()},
        "accuracy_before_retraining": before["accuracy"], "accuracy_after_retraining": after,
        "test_accuracy": accuracy, "baseline_accuracy": baseline,
        "accuracy_loss_vs_baseline": None if baseline is None else baseline - accuracy,
        "search_history": history, "frozen_order": frozen_order(history), "search_epochs": scfg.epochs,
        "retrain_epochs": retrain_epochs, "baseline_epochs": baseline_epochs, **times,
        "wall_seconds": sum(times.values()),
    }
    results = write_results(run_dir, "search", results, c)
    log.info("assignment %s", chosen)
    log.info("energy %.1f pJ (%.3f of all-%s), accuracy before %.4f after %s baseline %s", e_derived, e_derived / e_ref,
             space.reference.name, before["accuracy"], after, baseline)
    return results

