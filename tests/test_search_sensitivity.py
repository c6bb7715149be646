"""The sensitivity-driven mixed-precision baseline: the measured loss increase is the derived networks'
loss difference, Hutchinson's trace estimate agrees with the exact Hessian, and `search=sensitivity` ends
at the least-sensitive assignment within the energy budget."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from pannjax.data import load_dataset
from pannjax.models import build_model
from pannjax.results import read_results
from pannjax.search import SearchConfig, build_search_space, inherit_params
from pannjax.search.loop import create_search_state
from pannjax.search.runner import run_search_experiment
from pannjax.search.sensitivity import (gated_loss, hessian_traces, loss_increase, one_hot_gates, reference_variables,
                                       supernet_config)
from pannjax.train.loop import overlay
from pannjax.train.state import OptimizerConfig, make_optimizer
from pannjax.train.steps import cross_entropy

CANDIDATES = {
    "mac8": {"quant": {"name": "uniform", "w_bits": 8, "x_bits": 8}, "op": {"name": "mac"}},
    "mac2": {"quant": {"name": "uniform", "w_bits": 2, "x_bits": 2}, "op": {"name": "mac"}},
    "shift4": {"quant": {"name": "pot", "w_bits": 4, "x_bits": 8}, "op": {"name": "shift"}},
}


#: one xdist worker runs the whole module (`--dist loadgroup`): its module fixture is made once
pytestmark = pytest.mark.xdist_group("test_search_sensitivity")


@pytest.fixture(scope="module")
def setting():
    ds = load_dataset("digits")
    space = build_search_space(CANDIDATES, list(CANDIDATES), "mac8")
    model_for = lambda policy: build_model("digits_cnn", num_classes=10, policy=policy, width=2)  # noqa: E731
    cfg = supernet_config(SearchConfig(variant="sensitivity", energy_budget=0.5))
    tx = make_optimizer(OptimizerConfig(name="sgd", learning_rate=0.1), 10, 10)
    state = create_search_state(model_for(space.reference_policy()), space, cfg, tx, ds.train_images[:32], 0)
    batch = {"image": jnp.asarray(ds.train_images[:32]), "label": jnp.asarray(ds.train_labels[:32])}
    order = tuple(sorted("/".join(k[:-1]) for k in traverse_util.flatten_dict(state.alpha)))
    return space, model_for, state, batch, order


def test_the_measured_loss_increase_is_that_of_the_derived_networks(setting):
    """s_lk = CE(derived network with layer l at k) - CE(all-reference network), both with the supernet's
    weights (inherited as the runner does) and BatchNorm on batch statistics."""
    space, model_for, state, batch, order = setting
    s = loss_increase(state, space, order, [batch])

    def derived_loss(chosen):
        model = model_for(space.derived_policy(chosen))
        fresh = model.init(jax.random.key(0), batch["image"], train=False)
        params = overlay(fresh["params"], inherit_params(state.params, chosen))
        logits, _ = model.apply({"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True,
                                mutable=["batch_stats"])
        return float(cross_entropy(logits, batch["label"]))

    reference = derived_loss({p: "mac8" for p in order})
    for p in order:
        assert s[p][0] == 0.0
        for k, name in enumerate(space.names[1:], 1):
            want = derived_loss({q: name if q == p else "mac8" for q in order}) - reference
            assert s[p][k] == pytest.approx(want, abs=2e-5)
    assert all(s[p][1] > 1e-3 for p in order)  # 2-bit operands cost every layer accuracy


def test_hutchinson_trace_agrees_with_the_exact_hessian(setting):
    """Tr(H_l)/n_l in the all-reference network against its exact Hessian in all kernels (reverse-over-reverse
    autodiff): within four standard deviations of the estimator, Var[v^T (Hv)_l] = 2 (||H_l,:||_F^2 - sum_i
    H_ii^2) per probe."""
    space, model_for, state, batch, order = setting
    samples = 200
    model = model_for(space.reference_policy())
    variables = reference_variables(state, model, space, order, batch["image"])
    est = hessian_traces(model, variables, order, [batch], samples, seed=0)

    flat = traverse_util.flatten_dict(variables["params"])
    keys = [(*p.split("/"), "kernel") for p in order]
    sizes = [flat[k].size for k in keys]

    def loss_of(vector):
        parts = jnp.split(vector, np.cumsum(sizes)[:-1])
        params = {**flat, **{k: w.reshape(flat[k].shape) for k, w in zip(keys, parts)}}
        logits, _ = model.apply({"params": traverse_util.unflatten_dict(params),
                                 "batch_stats": variables["batch_stats"]}, batch["image"], train=True,
                                mutable=["batch_stats"])
        return cross_entropy(logits, batch["label"])

    h = np.asarray(jax.jit(jax.jacrev(jax.grad(loss_of)))(jnp.concatenate([flat[k].ravel() for k in keys])),
                   np.float64)
    start = 0
    for p, n in zip(order, sizes):
        rows = h[start:start + n]
        trace = np.trace(h[start:start + n, start:start + n])
        std = np.sqrt(2 * (np.sum(rows ** 2) - np.sum(np.diag(h)[start:start + n] ** 2)) / samples)
        assert abs(est[p] * n - trace) <= 4 * std + 1e-6, (p, est[p] * n, trace, std)
        assert std < 0.2 * abs(trace)  # a test that separates right from wrong
        start += n

    # the supernet's single path with reference gates is the all-reference network: same loss
    supernet = gated_loss(state, state.params, one_hot_gates(state.alpha, {}, 0), batch["image"], batch["label"])
    assert float(supernet) == pytest.approx(float(loss_of(jnp.concatenate([flat[k].ravel() for k in keys]))), abs=1e-5)


def test_search_sensitivity_ends_at_the_least_sensitive_assignment_within_the_budget(tmp_path):
    cfg = {
        "seed": 0, "data": {"name": "digits"}, "model": {"name": "digits_cnn", "width": 4},
        "trainer": {"epochs": 1, "batch_size": 64, "progress": False, "tensorboard": False, "checkpoint": False,
                    "optimizer": {"learning_rate": 0.05}},
        "search": {"variant": "sensitivity", "energy_budget_of": "shift4", "epochs": 1, "sensitivity_batches": 2,
                   "retrain_epochs": 1, "baseline_epochs": 0, "bn_recalibration_batches": 2,
                   "use": list(CANDIDATES), "reference": "mac8", "candidates": CANDIDATES},
    }
    run_search_experiment(cfg, tmp_path)
    r = read_results(tmp_path / "results.json")
    assert r["variant"] == "sensitivity" and r["sensitivity_measure"] == "loss" and r["energy_rel_argmax"] is None
    paths, names = sorted(r["sensitivity"]), list(CANDIDATES)
    table, ref = r["energy_table_pj"], r["energy_reference_pj"]
    fixed = ref - sum(table[p]["mac8"] for p in paths)
    budget = (fixed + sum(table[p]["shift4"] for p in paths)) / ref  # the all-shift4 network's energy
    assert r["energy_budget"] == pytest.approx(budget, rel=1e-9) and 0.3 < budget < 0.7
    assert r["budget_met"] is True and abs(r["energy_rel"] - budget) <= 0.02 * budget
    assert r["accuracy_after_retraining"] is not None and r["sensitivity_seconds"] > 0
    assert all(r["sensitivity"][p]["mac8"] == 0.0 for p in paths)
    best = None
    for picks in itertools.product(names, repeat=len(paths)):  # enumeration of all 3^4 assignments
        e = (fixed + sum(table[p][n] for p, n in zip(paths, picks))) / ref
        s = sum(r["sensitivity"][p][n] for p, n in zip(paths, picks))
        if abs(e - budget) <= 0.02 * budget and (best is None or s < best[0]):
            best = (s, dict(zip(paths, picks)))
    assert r["assignment"] == best[1]
    assert best[1] != {p: "shift4" for p in paths}  # the solver had a choice: not the all-shift4 network
