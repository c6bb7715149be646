"""ENOS search: compile-once steps, expected energy, sequential freezing, derivation, CIFAR mock, end to end."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pannjax.data import load_dataset
from pannjax.models import build_model
from pannjax.nn import bound_layers
from pannjax.search import (GATES, SearchConfig, build_search_space, energy_model, inherit_params, search_apply_fn,
                            search_init)
from pannjax.search.layers import contraction_groups
from pannjax.search.loop import create_search_state
from pannjax.results import read_results
from pannjax.search.runner import run_search_experiment
from pannjax.search.steps import freeze_next, make_search_step, probabilities
from pannjax.train.state import OptimizerConfig, make_optimizer

CANDIDATES = {
    "mac8": {"quant": {"name": "uniform", "w_bits": 8, "x_bits": 8}, "op": {"name": "mac"}},
    "mac4": {"quant": {"name": "uniform", "w_bits": 4, "x_bits": 4}, "op": {"name": "mac"}},
    "shift4": {"quant": {"name": "pot", "w_bits": 4, "x_bits": 8}, "op": {"name": "shift"}},
    "mac8_cim": {"quant": {"name": "uniform", "w_bits": 8, "x_bits": 8},
                 "op": {"name": "mac", "mode": {"kind": "aimc", "adc_bits": 6, "rows": 64}}},
}


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    return dataclasses.replace(ds, train_images=ds.train_images[:192], train_labels=ds.train_labels[:192],
                               test_images=ds.test_images[:64], test_labels=ds.test_labels[:64])


def small_cnn(policy, width=4):
    return build_model("digits_cnn", num_classes=10, policy=policy, width=width)


def test_expected_energy_equals_manual_sum(digits):
    space = build_search_space(CANDIDATES, ["mac8", "mac4", "shift4", "mac8_cim"], "mac8", exclude="^stem$")
    energy = energy_model(lambda p: small_cnn(p, width=8), space, digits.image_shape)
    # Independent figure from the 45 nm table: conv2 of the width-8 CNN is a 3x3, 16->16 conv on a 4x4 map.
    macs = 4 * 4 * 16 * (9 * 16)
    assert energy.per_layer["conv2"][0] == pytest.approx(macs * (0.2 + 0.1))                 # 8x8 mul + 32b add
    assert energy.per_layer["conv2"][1] == pytest.approx(macs * (0.2 * 16 / 64 + 0.1))       # 4x4 mul + 32b add
    assert energy.per_layer["conv2"][0] > energy.per_layer["conv2"][2]                      # shift cheaper than mac8
    assert energy.order == ("conv1", "conv2", "head")                                       # stem excluded
    rng = np.random.default_rng(0)
    alpha = {name: {"g": jnp.asarray(rng.normal(size=4), jnp.float32)} for name in energy.order}
    frozen = {name: {"g": jnp.asarray(False)} for name in energy.order}
    choice = {name: {"g": jnp.asarray(0, jnp.int32)} for name in energy.order}
    got = energy.expected_pj(probabilities(alpha, frozen, choice), energy.tree(alpha))
    manual = energy.fixed_pj
    for name in energy.order:
        a = np.asarray(alpha[name]["g"], np.float64)
        p = np.exp(a - a.max()) / np.exp(a - a.max()).sum()
        manual += float(p @ energy.per_layer[name])
    assert float(got) == pytest.approx(manual, rel=1e-5)
    assert energy.reference_pj == pytest.approx(energy.fixed_pj + sum(e[0] for e in energy.per_layer.values()))


def test_sequential_freezing_masks_the_frozen_layer(digits):
    space = build_search_space(CANDIDATES, ["mac8", "mac4"], "mac8")
    energy = energy_model(small_cnn, space, digits.image_shape)
    cfg = SearchConfig(variant="sequential", lam=1.0, alpha_start_epoch=0.0)
    tx = make_optimizer(OptimizerConfig(learning_rate=0.05), 10, 5)
    state = create_search_state(small_cnn(space.reference_policy()), space, cfg, tx, digits.train_images[:16], 0)
    state = state.replace(alpha=jax.tree_util.tree_map(lambda a: a.at[1].set(2.0), state.alpha))
    state, path = freeze_next(state, energy.order, "forward")
    assert path == "stem" and int(state.choice["stem"]["g"]) == 1
    step = make_search_step(cfg, energy, energy.tree(state.alpha), 10, 0)
    batch = {"image": digits.train_images[:16], "label": digits.train_labels[:16]}
    new, _ = step(state, batch)
    np.testing.assert_array_equal(new.alpha["stem"]["g"], state.alpha["stem"]["g"])       # frozen: unchanged
    assert not np.allclose(new.alpha["conv1"]["g"], state.alpha["conv1"]["g"])           # others: searched
    probs = probabilities(new.alpha, new.frozen, new.choice)
    np.testing.assert_array_equal(probs["stem"]["g"], [0.0, 1.0])


def test_second_order_bilevel_through_the_crossbar(digits):
    """The unrolled (second-order) alpha gradient differentiates through the weight gradient, including the
    analog candidate's custom crossbar VJP: with xi = 0 it is the first-order step, with xi > 0 it differs."""
    space = build_search_space(CANDIDATES, ["mac8", "mac8_cim"], "mac8")
    energy = energy_model(small_cnn, space, digits.image_shape)
    tx = make_optimizer(OptimizerConfig(learning_rate=0.05), 10, 5)
    train = {"image": digits.train_images[:16], "label": digits.train_labels[:16]}
    val = {"image": digits.train_images[16:32], "label": digits.train_labels[16:32]}
    alphas = {}
    for name, second_order, xi in (("first", False, 0.0), ("xi=0", True, 0.0), ("xi=1", True, 1.0)):
        cfg = SearchConfig(variant="bilevel", lam=0.3, alpha_start_epoch=0.0, second_order=second_order, unroll_lr=xi)
        state = create_search_state(small_cnn(space.reference_policy()), space, cfg, tx, train["image"], 0)
        new, m = make_search_step(cfg, energy, energy.tree(state.alpha), 10, 0)(state, train, val)
        assert np.isfinite(float(m["loss"]))
        alphas[name] = np.concatenate([np.asarray(a) for a in jax.tree_util.tree_leaves(new.alpha)])
    np.testing.assert_allclose(alphas["xi=0"], alphas["first"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(alphas["xi=1"], alphas["first"], atol=1e-6)


def test_hook_with_one_hot_gates_equals_derived_network(digits):
    """The search network with one-hot gates computes exactly the derived (plain pannjax) network."""
    space = build_search_space(CANDIDATES, ["mac8", "shift4", "mac8_cim"], "mac8")
    model = small_cnn(space.reference_policy())
    x = jnp.asarray(digits.train_images[:8])
    variables = search_init(model, space, False, jax.random.key(0), x)
    chosen = {"stem": "mac8", "conv1": "shift4", "conv2": "mac8_cim", "head": "shift4"}
    gates = {p: {"g": jax.nn.one_hot(space.names.index(n), 3)} for p, n in chosen.items()}
    apply = search_apply_fn(model, space, False)
    y_search = apply({**variables, GATES: gates}, x, train=False)
    derived = small_cnn(space.derived_policy(chosen))
    derived_params = inherit_params(variables["params"], chosen)
    fresh = derived.init(jax.random.key(1), x, train=False)
    assert jax.tree_util.tree_structure(fresh["params"]) == jax.tree_util.tree_structure(derived_params)
    y_derived = derived.apply({"params": derived_params, "batch_stats": variables["batch_stats"]}, x, train=False)
    np.testing.assert_allclose(y_search, y_derived, rtol=1e-5, atol=1e-5)
    records = {r.path: r for r in bound_layers(derived, fresh, x)}
    assert records["conv1"].operator.name == "shift" and records["conv2"].operator.analog
    # single path: one shared contraction (analog reuses its crossbar chunks), same forward value
    assert contraction_groups(space.candidates) == [[0, 1, 2]]
    y_path = search_apply_fn(model, space, True)({**variables, GATES: gates}, x, train=False)
    np.testing.assert_allclose(y_path, y_derived, rtol=1e-5, atol=1e-5)


def test_single_path_of_linear_operators_keeps_each_weight_rounding(digits):
    """Shift (DeepShift-Q rounding of 8-bit weights), MAC and binary weights share one contraction in the
    single-path forward, each with its own weight rounding, whatever their order."""
    candidates = {**CANDIDATES, "shift_q": {"quant": {"name": "uniform", "w_bits": 8, "x_bits": 8}, "op": {"name": "shift"}},
                  "bwn": {"quant": {"name": "uniform", "w_bits": 8, "x_bits": 8}, "op": {"name": "bwn"}}}
    space = build_search_space(candidates, ["shift_q", "mac8", "bwn"], "mac8")
    assert contraction_groups(space.candidates) == [[0, 1, 2]]
    other_rows = {**candidates, "cim32": {"quant": {"name": "uniform", "w_bits": 8, "x_bits": 8},
                                          "op": {"name": "mac", "mode": {"kind": "analog", "rows_per_array": 32}}}}
    grouped = build_search_space(other_rows, ["mac8", "mac8_cim", "cim32", "bwn"], "mac8").candidates
    assert contraction_groups(grouped) == [[0, 1, 3], [2]]   # analog chunks of another size: own group
    model = small_cnn(space.reference_policy())
    x = jnp.asarray(digits.train_images[:8])
    variables = search_init(model, space, False, jax.random.key(0), x)
    for chosen in ({"stem": "mac8", "conv1": "shift_q", "conv2": "bwn", "head": "mac8"},
                   {"stem": "shift_q", "conv1": "mac8", "conv2": "mac8", "head": "bwn"}):
        gates = {p: {"g": jax.nn.one_hot(space.names.index(n), 3)} for p, n in chosen.items()}
        derived = small_cnn(space.derived_policy(chosen))
        y_derived = derived.apply({"params": inherit_params(variables["params"], chosen),
                                   "batch_stats": variables["batch_stats"]}, x, train=False)
        y_path = search_apply_fn(model, space, True)({**variables, GATES: gates}, x, train=False)
        np.testing.assert_allclose(y_path, y_derived, rtol=1e-5, atol=1e-5)


def test_shufflenet_search_step_on_mock_cifar(mock_cifar):
    data = load_dataset("cifar10")
    space = build_search_space(CANDIDATES, ["mac8", "shift4"], "mac8", exclude="^(stem|head|conv5|stage[34])")

    def shufflenet(policy):
        return build_model("shufflenet", num_classes=10, policy=policy, scale=0.5, stage_repeats=(1, 1, 1))

    energy = energy_model(shufflenet, space, data.image_shape)
    assert energy.order == ("stage2_unit0/shortcut_dwconv", "stage2_unit0/shortcut_conv", "stage2_unit0/conv1",
                            "stage2_unit0/dwconv", "stage2_unit0/conv2")
    cfg = SearchConfig(variant="variational", lam=0.3)
    tx = make_optimizer(OptimizerConfig(learning_rate=0.05), 4, 2)
    state = create_search_state(shufflenet(space.reference_policy()), space, cfg, tx, data.train_images[:4], 0)
    step = make_search_step(cfg, energy, energy.tree(state.alpha), 4, 0)
    new, m = step(state, {"image": data.train_images[:4], "label": data.train_labels[:4]})
    assert np.isfinite(float(m["loss"])) and 0 < float(m["energy_rel"]) < 1.0 + 1e-6
    assert int(new.step) == 1


@pytest.mark.parametrize("variant,use", [("single", ["mac8", "mac4"]), ("bilevel", ["mac8", "shift4"]),
                                         ("sequential", ["mac8", "mac4", "shift4"]),
                                         ("variational", ["mac8", "mac4", "mac8_cim"])])
def test_variant_end_to_end_on_digits_compiles_once(tmp_path, variant, use):
    cfg = {
        "seed": 0, "data": {"name": "digits"}, "model": {"name": "digits_cnn", "width": 4},
        "trainer": {"epochs": 1, "batch_size": 128, "eval_batch_size": 512, "progress": False, "tensorboard": False,
                    "checkpoint": False, "optimizer": {"learning_rate": 0.05}},
        "search": {"variant": variant, "lambda": 1.0, "epochs": 2, "alpha_start_epoch": 0.0,
                   "retrain_epochs": 1 if variant == "single" else 0, "baseline_epochs": 0,
                   "bn_recalibration_batches": 2, "use": use, "reference": "mac8", "candidates": CANDIDATES,
                   "freeze_order": "forward"},
    }
    traces = []
    results = run_search_experiment(cfg, tmp_path, on_trace=lambda: traces.append(1))
    assert len(traces) == 1, f"{variant} step traced {len(traces)} times"
    saved = read_results(tmp_path / "results.json")  # the search results schema
    assert saved["variant"] == variant and saved["completed"] is True and set(saved["assignment"]) == {"stem", "conv1", "conv2", "head"}
    assert set(saved["assignment"].values()) <= set(use)
    assert 0 < saved["energy_rel"] <= 1.0 + 1e-9        # every candidate is at most as dear as all-mac8
    expected = sum(saved["energy_table_pj"][p][n] for p, n in saved["assignment"].items())
    assert saved["energy_pj"] == pytest.approx(expected)          # report == table of the chosen candidates
    assert 0.0 <= saved["accuracy_before_retraining"] <= 1.0
    assert (saved["accuracy_after_retraining"] is not None) == (variant == "single")
    steps = saved["search_history"][-1]["step"]
    assert steps == 2 * (1437 * (4 if variant == "bilevel" else 5) // 5 // 128)
    if variant == "sequential":  # every layer frozen by the end, in forward order
        assert [f["layer"] for f in saved["frozen_order"]] == ["stem", "conv1", "conv2", "head"]
    assert results["lambda"] == 1.0
