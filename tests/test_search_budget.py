"""ENOS under an energy budget: dual ascent on lambda inside the jitted step, and the budgeted derivation
(the most probable assignment within the tolerance, an exact integer program)."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from pannjax.errors import ConfigError
from pannjax.results import read_results
from pannjax.search.derive import budgeted_assignment
from pannjax.search.energy import EnergyModel
from pannjax.search.loop import budget_keeping_choice
from pannjax.search.runner import run_search_experiment, search_config
from pannjax.search.space import build_search_space
from pannjax.search.steps import SearchState, freeze_next

CANDIDATES = {
    "mac8": {"quant": {"name": "uniform", "w_bits": 8, "x_bits": 8}, "op": {"name": "mac"}},
    "mac4": {"quant": {"name": "uniform", "w_bits": 4, "x_bits": 4}, "op": {"name": "mac"}},
    "shift4": {"quant": {"name": "pot", "w_bits": 4, "x_bits": 8}, "op": {"name": "shift"}},
}


def _brute_force(logp, cost, fixed, lo, hi, frozen):
    """The most probable assignment with fixed + sum cost in [lo, hi], by enumeration."""
    best = None
    for picks in itertools.product(*[range(len(row)) for row in logp]):
        if any(f is not None and p != f for p, f in zip(picks, frozen)):
            continue
        e = fixed + sum(c[p] for c, p in zip(cost, picks))
        score = sum(lp[p] for lp, p in zip(logp, picks))
        if lo <= e <= hi and (best is None or score > best[0] + 1e-12):
            best = (score, picks)
    return None if best is None else best[1]


@pytest.mark.parametrize("budget", [0.1, 0.45, 0.5, 0.6, 0.8])  # 0.1: unreachable; 0.5: in a gap
def test_budgeted_assignment_is_the_most_probable_one_within_the_tolerance(budget):
    """Against enumeration of all 3^4 assignments of a 4-layer, 3-candidate space (one layer frozen)."""
    space = build_search_space(CANDIDATES, ["mac8", "mac4", "shift4"], "mac8")
    rng = np.random.default_rng(3)
    paths = ["a", "b", "c", "d"]
    per_layer = {p: np.sort(rng.uniform(1, 10, 3))[::-1] * (i + 1) for i, p in enumerate(paths)}
    ref = float(sum(v[0] for v in per_layer.values())) + 2.0
    energy = EnergyModel(per_layer, 2.0, ref, tuple(paths), space.names)
    alpha = {p: {"g": jnp.asarray(rng.normal(size=3), jnp.float32)} for p in paths}
    frozen = {p: {"g": jnp.asarray(p == "b")} for p in paths}
    choice = {p: {"g": jnp.asarray(1 if p == "b" else 0, jnp.int32)} for p in paths}
    chosen, met = budgeted_assignment(alpha, frozen, choice, space, energy, budget, 0.02)

    logp = [np.asarray(alpha[p]["g"]) - np.log(np.exp(np.asarray(alpha[p]["g"])).sum()) for p in paths]
    cost = [per_layer[p] / ref for p in paths]
    froz = [1 if p == "b" else None for p in paths]
    want = _brute_force(logp, cost, 2.0 / ref, 0.98 * budget, 1.02 * budget, froz)
    assert met is (want is not None) is (budget in (0.45, 0.6, 0.8))
    if want is None:  # the most probable one below the window, else (the budget is unreachable) the cheapest
        want = _brute_force(logp, cost, 2.0 / ref, -np.inf, 0.98 * budget, froz)
    if want is None:
        want = _brute_force([-c for c in cost], cost, 2.0 / ref, -np.inf, np.inf, froz)
    assert chosen == {p: space.names[k] for p, k in zip(paths, want)}
    assert chosen["b"] == "mac4"  # the frozen layer keeps its choice


def test_budget_keys_are_checked():
    with pytest.raises(ConfigError, match="^search.energy_budget and search.energy_budget_pj are both set"):
        search_config({"energy_budget": 0.5, "energy_budget_pj": 100.0})
    with pytest.raises(ConfigError, match="^search.energy_budget_pj and search.energy_budget_of are both set"):
        search_config({"energy_budget_of": "mac4", "energy_budget_pj": 100.0})
    with pytest.raises(ConfigError, match="^search.energy_budget=-0.5: expected an energy > 0"):
        search_config({"energy_budget": -0.5})
    with pytest.raises(ConfigError, match=r"^search.budget_tolerance=1.5: expected a fraction in \(0, 1\)"):
        search_config({"budget_tolerance": 1.5})


def test_a_budgeted_search_lands_on_its_budget_and_compiles_once(tmp_path):
    """Single-level search on digits at half the all-MAC energy: lambda moves every step (logged per epoch in
    metrics.jsonl) without re-tracing the step, the expected energy is pulled to the budget, and the
    derived network lands within 2 % of it."""
    cfg = {
        "seed": 0, "data": {"name": "digits"}, "model": {"name": "digits_cnn", "width": 4},
        "trainer": {"epochs": 1, "batch_size": 64, "progress": False, "tensorboard": False, "checkpoint": False,
                    "optimizer": {"learning_rate": 0.05}},
        "search": {"variant": "single", "lambda": 0.0, "energy_budget": 0.5, "dual_lr": 0.5, "epochs": 3,
                   "alpha_start_epoch": 0.0, "alpha_lr": 0.1, "retrain_epochs": 0, "baseline_epochs": 0, "bn_recalibration_batches": 2,
                   "use": ["mac8", "mac4", "shift4"], "reference": "mac8", "candidates": CANDIDATES},
    }
    traces = []
    run_search_experiment(cfg, tmp_path, on_trace=lambda: traces.append(1))
    assert len(traces) == 1
    saved = read_results(tmp_path / "results.json")
    assert saved["energy_budget"] == 0.5
    assert saved["energy_budget_pj"] == pytest.approx(0.5 * saved["energy_reference_pj"])
    assert saved["budget_met"] is True
    assert abs(saved["energy_rel"] - 0.5) <= 0.02 * 0.5
    lambdas = [r["lambda"] for r in saved["search_history"]]
    assert len(set(lambdas)) == 3 and lambdas[0] != 0.0  # the multiplier moved in every epoch
    assert abs(saved["search_history"][-1]["search_energy_rel"] - 0.5) < 0.1  # E(alpha) pulled to the budget
    assert saved["lambda_final"] == lambdas[-1]


def test_sequential_freezing_under_a_budget_keeps_it_reachable():
    """Layer "a" is the most confident and prefers the expensive mac8; at a budget only reachable with both
    layers on the cheap shift4, budget-keeping freezing fixes it at shift4 where argmax would fix mac8."""
    space = build_search_space(CANDIDATES, ["mac8", "mac4", "shift4"], "mac8")
    per_layer = {"a": np.array([10.0, 6.0, 2.0]), "b": np.array([10.0, 6.0, 2.0])}
    energy = EnergyModel(per_layer, 0.0, 20.0, ("a", "b"), space.names)
    state = SearchState(step=jnp.zeros((), jnp.int32), params={}, batch_stats={},
                        alpha={"a": {"g": jnp.asarray([4.0, 0, 0])}, "b": {"g": jnp.asarray([0.0, 0, 1])}},
                        opt_w=(), opt_a=(), rng=None, frozen={p: {"g": jnp.asarray(False)} for p in "ab"},
                        choice={p: {"g": jnp.asarray(0, jnp.int32)} for p in "ab"}, lam=jnp.asarray(0.0),
                        apply_fn=None, tx_w=None, tx_a=None)
    by_argmax, path = freeze_next(state, energy.order, "confident")
    assert path == "a" and int(by_argmax.choice["a"]["g"]) == 0
    kept, path = freeze_next(state, energy.order, "confident", budget_keeping_choice(space, energy, 0.2, 0.02))
    assert path == "a" and int(kept.choice["a"]["g"]) == 2 and bool(kept.frozen["a"]["g"])
    assert not bool(kept.frozen["b"]["g"])
