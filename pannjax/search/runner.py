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
from pannjax.distributed import is_main
from pannjax.errors import ConfigError, DivergenceError
from pannjax.hw.report import build_report
from pannjax.rundir import owned_run_dir
from pannjax.results import write_results
from pannjax.experiment import load_data, model_factory, seed_of, setup, stopped_record
from pannjax.runner import accelerator_config, trainer_config
from pannjax.search.derive import (assignment, best_within_budget, budgeted_assignment, inherit_params,
                                   layer_probabilities)
from pannjax.search.energy import energy_model
from pannjax.search.loop import frozen_order, run_search
from pannjax.search.space import build_search_space
from pannjax.search.options import SearchRun
from pannjax.search.sensitivity import check_space, sensitivities, supernet_config
from pannjax.search.steps import SearchConfig
from pannjax.schema import RENAMED, build
from pannjax.train import train_and_evaluate
from pannjax.train.loop import evaluate, overlay
from pannjax.train.state import TrainState

log = logging.getLogger(__name__)

def search_config(search: Mapping[str, Any]) -> SearchConfig:
    """`SearchConfig` of the keys of config block `search` the jitted step reads."""
    names = {RENAMED.get(f.name, f.name) for f in dataclasses.fields(SearchConfig)}
    return build(SearchConfig, {k: v for k, v in search.items() if k in names}, "search")


def search_run(search: Mapping[str, Any]) -> SearchRun:
    """`SearchRun` of the other keys of config block `search`."""
    names = {f.name for f in dataclasses.fields(SearchRun)}
    return build(SearchRun, {k: v for k, v in search.items() if k in names}, "search")


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
    scfg, run = search_config(c["search"]), search_run(c["search"])
    trainer = trainer_config(c["trainer"])
    with owned_run_dir(run_dir, "search", c, resume=trainer.resume, overwrite=bool(c["overwrite"]),
                       resume_key="trainer.resume"):
        return _search(c, run_dir, scfg, run, trainer, on_trace)


def _search(c: Mapping[str, Any], run_dir: Path, scfg: SearchConfig, run: SearchRun, trainer,
            on_trace: Callable[[], None] | None) -> dict[str, Any]:
    seed = seed_of(c)
    dataset = load_data(c)
    model_name = c["model"]["name"]
    model_for = model_factory(c["model"], dataset.num_classes)

    space = build_search_space(run.candidates, run.use, run.reference, run.exclude)
    acc_bits, accelerator = run.acc_bits, accelerator_config(c)
    energy = energy_model(model_for, space, dataset.image_shape, run.energy_table, acc_bits, accelerator)
    energy_budget_of = name = scfg.energy_budget_of
    if name is not None:  # the budget is the energy of the all-<candidate> network
        if name not in run.candidates:
            raise ConfigError(f"search.energy_budget_of={name!r} is not defined under search.candidates (defined: "
                              f"{', '.join(run.candidates)})")
        uniform = energy_model(model_for, build_search_space(run.candidates, [name], run.reference, run.exclude),
                               dataset.image_shape, run.energy_table, acc_bits, accelerator)
        scfg = dataclasses.replace(scfg, energy_budget_of=None,
                                   energy_budget=uniform.assignment_pj({p: name for p in uniform.order})
                                   / energy.reference_pj)
    by_sensitivity = scfg.variant == "sensitivity"
    if by_sensitivity:
        check_space(space, scfg.sensitivity_measure)
    reference_model = model_for(space.reference_policy())
    t = time.perf_counter()
    try:
        state, history = run_search(reference_model, dataset, space, energy,
                                    supernet_config(scfg) if by_sensitivity else scfg, trainer, seed, run_dir,
                                    on_trace=on_trace)
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
    # the searched network on this host: what follows runs the same in every process of a multi-process run
    state = state.replace(**{k: jax.device_get(getattr(state, k)) for k in
                             ("params", "batch_stats", "alpha", "frozen", "choice", "lam")})
    budget = scfg.budget_rel(energy.reference_pj)
    times = {"search_seconds": history[-1]["wall_seconds"], "retrain_seconds": 0.0, "baseline_seconds": 0.0}
    argmax = None if by_sensitivity else assignment(state.alpha, state.frozen, state.choice, space)
    chosen, budget_met, sensitivity = argmax, None, None
    if by_sensitivity:
        t = time.perf_counter()
        sensitivity = sensitivities(state, reference_model, dataset, space, energy.order, scfg, trainer.batch_size,
                                    seed)
        times["sensitivity_seconds"] = time.perf_counter() - t
        chosen, budget_met = best_within_budget({p: -v for p, v in sensitivity.items()}, {}, space, energy, budget,
                                                scfg.budget_tolerance)
    elif budget is not None:
        chosen, budget_met = budgeted_assignment(state.alpha, state.frozen, state.choice, space, energy, budget,
                                                 scfg.budget_tolerance)
    if budget is not None and not budget_met:
        log.warning("no assignment lies within %.0f%% of the energy budget %.4f of E_ref: the derived network "
                    "is %s", 100 * scfg.budget_tolerance, budget,
                    "the best-scoring one below it" if energy.assignment_pj(chosen) / energy.reference_pj < budget
                    else "the cheapest (every assignment is above the budget)")

    derived = model_for(space.derived_policy(chosen))
    sample = dataset.train_images[: trainer.batch_size]
    fresh = _fresh_variables(derived, sample, seed)
    params = overlay(fresh["params"], inherit_params(state.params, chosen))
    before_state = recalibrated_state(derived, params, overlay(fresh.get("batch_stats", {}), state.batch_stats),
                                      dataset, scfg.bn_recalibration_batches, trainer.batch_size, seed)
    before = evaluate(before_state, dataset, trainer.eval_batch_size)

    retrain_epochs = run.retrain_epochs
    after = None
    final_state = before_state
    if retrain_epochs > 0:
        lr = trainer.optimizer.learning_rate if run.retrain_learning_rate is None else run.retrain_learning_rate
        opt = dataclasses.replace(trainer.optimizer, learning_rate=lr)
        retrainer = dataclasses.replace(trainer, epochs=retrain_epochs, optimizer=opt, stop_after_epochs=None)
        final_state, retrained = train_and_evaluate(derived, dataset, retrainer, seed, run_dir / "retrain",
                                                    init_params=before_state.params,
                                                    init_batch_stats=before_state.batch_stats)
        after, times["retrain_seconds"] = retrained["test_accuracy"], retrained["wall_seconds"]

    baseline = None
    baseline_epochs = run.baseline_epochs
    if baseline_epochs > 0:
        base_trainer = dataclasses.replace(trainer, epochs=baseline_epochs, stop_after_epochs=None)
        _, base = train_and_evaluate(reference_model, dataset, base_trainer, seed, run_dir / "baseline")
        baseline, times["baseline_seconds"] = base["test_accuracy"], base["wall_seconds"]

    shape = jax.ShapeDtypeStruct((1, *dataset.image_shape), jnp.float32)
    derived_report = build_report(derived, {"params": final_state.params, "batch_stats": final_state.batch_stats},
                                  shape, acc_bits=acc_bits, table=run.energy_table, simulate=False,
                                  accelerator=accelerator)
    ref_vars = jax.eval_shape(lambda: reference_model.init(jax.random.key(0), jnp.zeros(shape.shape), train=False))
    ref_report = build_report(reference_model, ref_vars, shape, acc_bits=acc_bits, table=run.energy_table,
                              simulate=False, accelerator=accelerator)
    if is_main():  # one writer in a multi-process run
        derived_report.save(run_dir, "power_report")
    e_derived, e_ref = derived_report.total_energy_pj, ref_report.total_energy_pj
    accuracy = after if after is not None else before["accuracy"]
    experiment = c.get("experiment")
    results = {
        "completed": True, "variant": scfg.variant, "lambda": scfg.lam, "seed": seed, "data": c["data"]["name"],
        "model": model_name, "experiment": experiment.get("name") if isinstance(experiment, dict) else experiment,
        "candidates": list(space.names), "reference": space.reference.name,
        "assignment": chosen, "probabilities": layer_probabilities(state.alpha, space),
        **derived_report.energy_record(), "energy_reference_pj": e_ref,
        "energy_rel": e_derived / e_ref, "energy_saving": 1.0 - e_derived / e_ref,
        "label": run.label, "energy_budget": budget, "energy_budget_of": energy_budget_of,
        "energy_budget_pj": None if budget is None else budget * e_ref,
        "budget_met": budget_met, "lambda_final": float(state.lam),
        "energy_rel_argmax": None if argmax is None else energy.assignment_pj(argmax) / energy.reference_pj,
        **({} if sensitivity is None else {
            "sensitivity_measure": scfg.sensitivity_measure,
            "sensitivity": {p: dict(zip(space.names, v.tolist())) for p, v in sensitivity.items()}}),
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

