"""PoT wiring: config-driven PoT pruning in training, zero-weight skipping in the cost model and the
toggle simulator, the MAC-vs-BAC accelerator model, and the sweep summary."""

import dataclasses
import json
import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import yaml
from hydra import compose, initialize_config_dir

from pannjax.data import load_dataset
from pannjax.errors import ConfigError
from pannjax.hw.accelerator import AcceleratorModel, PeLayer, energy_ratio, shifter_luts
from pannjax.hw.report import build_report
from pannjax.hw.toggle_sim import COMPONENTS, MacConfig, reference_toggles, simulate_toggles
from pannjax.numerics import NumberFormat
from pannjax.ops import Analog, ContractionShape, MacOperator
from pannjax.ops.shift import ShiftOperator
from pannjax.prune import pruning_from_config, weight_sparsity
from pannjax.experiment import to_container
from pannjax.runner import build_model_for, trainer_config
from pannjax.sweep import collect_results, group_mean, markdown_table
from pannjax.train import create_train_state, make_optimizer, make_train_step
from pannjax.hw.units import table_ops
from pannjax.nn import abstract_layers

ROOT = Path(__file__).resolve().parents[1]
TABLES = ROOT / "pannjax" / "hw" / "tables"


def compose_train(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return to_container(compose("train", overrides=list(overrides)))


# -- pruning wired from the Hydra config ----------------------------------------------------------

SAMPLE = jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32)  # one digits image


def _layers(model, dataset):
    return abstract_layers(model, jax.ShapeDtypeStruct((1, *dataset.train_images.shape[1:]), jnp.float32),
                           train=False)


def test_config_wired_pruning_keeps_pruned_weights_zero_through_training():
    """prune=pot from configs/, chained after the configured optimiser, real digits batches: once a weight
    is pruned it is exactly 0 at every later step, the final sparsity is reached, stem/head stay dense."""
    c = compose_train("quant=pot", "op=shift", "prune=pot", "prune.final_sparsity=0.6", "prune.begin=0.0",
                      "prune.end=0.5", "prune.frequency=4", "model.width=8")
    data_cfg = dict(c["data"])
    dataset = load_dataset(data_cfg.pop("name"), **data_cfg)
    model = build_model_for(c, dataset.num_classes)
    trainer = trainer_config(c["trainer"])
    total = 24
    tx = optax.chain(make_optimizer(trainer.optimizer, total, total),
                     pruning_from_config(c["prune"], _layers(model, dataset))(total))
    state = create_train_state(model, tx, dataset.train_images[:64], seed=0)
    step = make_train_step(dataset.augment)
    seen_zero = {}
    for i, batch in enumerate(dataset.batches("train", 64, epoch=0, seed=0)):
        if i == total:
            break
        state, _ = step(state, batch)
        for name in ("conv1", "conv2"):
            w = np.asarray(state.params[name]["kernel"])
            if name in seen_zero:
                assert np.all(w[seen_zero[name]] == 0.0), f"a pruned weight of {name} came back at step {i + 1}"
            seen_zero[name] = w == 0.0
    sparsity = weight_sparsity(state.params)["layers"]
    for name in ("conv1", "conv2"):
        n = state.params[name]["kernel"].size
        assert sparsity[name] >= math.floor(0.6 * n) / n
    assert sparsity["stem"] == 0.0 and sparsity["head"] == 0.0  # excluded by configs/prune/pot.yaml


@pytest.mark.parametrize("overrides, message", [
    (("quant=pot", "prune=pot", "+prune.rate=0.5"), "prune.rate is not a known option"),
    (("quant=uniform", "prune=pot"), "needs quant=pot"),
    (("quant=pot", "prune=pot", "prune.begin=0.8", "prune.end=0.5"), "prune.begin=0.8, prune.end=0.5"),
    (("quant=pot", "prune=pot", "prune.frequency=0"), "prune.frequency=0"),
    (("quant=pot", "prune=pot", "prune.final_sparsity=1.0"), "final_sparsity=1.0"),
    (("quant=pot", "+prune.final_sparsity=0.5"), "prune.name=none"),
    (("quant=pot", "prune.name=magnitude"), "prune.name='magnitude' is unknown"),
    (("quant=pot", "prune=pot", "prune.exclude=.*"), "prune.exclude='.*' excludes every layer"),
])
def test_bad_prune_keys_are_one_line_config_errors(overrides, message):
    c = compose_train(*overrides)
    layers = abstract_layers(build_model_for(c, 10), SAMPLE, train=False)
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        pruning_from_config(c["prune"], layers)
    assert "\n" not in str(e.value)


# -- zero weights skipped by the cost model ------------------------------------------------------

def test_density_scales_counts_only_for_operators_that_skip_zero_weights():
    shape, fx, fw = ContractionShape(outputs=100, fan_in=36), NumberFormat("int", 4, False), NumberFormat("int", 4)
    shift = {o.kind: o for o in table_ops(ShiftOperator().cost(shape, fx, fw, 24, density=0.3))}
    assert shift["shift"].count == shift["add"].count == 1080 and shift["shift"].bits == (4, 7)
    mac = {o.kind: o.count for o in table_ops(MacOperator().cost(shape, fx, fw, 24, density=0.3))}
    assert mac == {"mul": 3600, "add": 3600}  # a MAC array computes every product
    analog = table_ops(Analog(ShiftOperator(), rows=12).cost(shape, fx, fw, 24,
                                                                                         density=0.3))
    assert {o.kind: o.count for o in analog}["cim_mac"] == 3600  # a crossbar reads every cell
    with pytest.raises(ConfigError, match="density=-0.1"):
        table_ops(MacOperator().cost(shape, fx, fw, density=-0.1))


def test_report_costs_shift_layers_at_their_real_weight_density():
    """A pruned PoT conv (stride 1, VALID): shift ops per example = output positions x non-zero weights."""
    c = compose_train("quant=pot", "op=shift", "quant.first_last=same", "model.width=4")
    model = build_model_for(c, 10)
    x = jnp.ones((1, 8, 8, 1))
    variables = model.init(jax.random.key(0), x)
    kernel = np.array(variables["params"]["conv2"]["kernel"])
    kernel[np.random.default_rng(0).random(kernel.shape) < 0.7] = 0.0
    params = {**variables["params"], "conv2": {**variables["params"]["conv2"], "kernel": jnp.asarray(kernel)}}
    report = build_report(model, {**variables, "params": params}, jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32),
                          simulate=False)
    conv2 = next(l for l in report.layers if l.path == "conv2")
    ops = {o.kind: o.count for o in conv2.ops}
    positions = 4 * 4  # conv2 runs on the 4x4 map after the stride-2 conv1
    assert ops["shift"] == ops["add"] == positions * int(np.count_nonzero(kernel))
    conv1 = next(l for l in report.layers if l.path == "conv1")
    assert {o.kind: o.count for o in conv1.ops}["shift"] == conv1.macs  # unpruned PoT: no zero weights


# -- zero weights skipped by the toggle simulator ------------------------------------------------

def test_toggle_sim_zero_skip_matches_reference_and_equals_dropping_the_operations():
    rng = np.random.default_rng(1)
    cfg = MacConfig(4, 4, 16, x_signed=False, w_signed=True, skip_zero_weights=True)
    k, units = 40, 6
    x = rng.integers(0, 16, (k, units))
    w = rng.integers(-8, 8, (k, units)) * (rng.random((k, units)) < 0.5)
    sim = simulate_toggles(x, w, cfg)
    for u in range(units):
        ref = reference_toggles(x[:, u], w[:, u], cfg)
        for c in COMPONENTS:
            assert np.array_equal(np.asarray(sim[c][:, u]), [r[c] for r in ref]), (u, c)
        # independent check: a clock-gated zero-weight operation is as if it never happened
        keep = w[:, u] != 0
        plain = reference_toggles(x[keep, u], w[keep, u], MacConfig(4, 4, 16, x_signed=False, w_signed=True))
        for c in COMPONENTS:
            assert int(np.asarray(sim[c][:, u]).sum()) == sum(r[c] for r in plain)
        assert all(np.asarray(sim[c][~keep, u]).sum() == 0 for c in COMPONENTS)
    ungated = simulate_toggles(x, w, MacConfig(4, 4, 16, x_signed=False, w_signed=True))
    assert sum(int(np.asarray(ungated[c]).sum()) for c in COMPONENTS) > sum(int(np.asarray(sim[c]).sum())
                                                                          for c in COMPONENTS)


# -- MAC vs BAC accelerator model ----------------------------------------------------------------

def _lin(anchors, b):
    (b0, e0), (b1, e1) = sorted((int(k), float(v)) for k, v in anchors.items())
    return e0 + (b - b0) * (e1 - e0) / (b1 - b0)


def test_asic_ratio_from_the_energy_table_rows():
    rows = yaml.safe_load((TABLES / "energy_45nm.yaml").read_text())["kinds"]
    mul = rows["mul"]["energy"] * 4 * 4 / 64
    shift = rows["shift"]["mux_energy_per_bit"] * (4 + 7) * 3  # 3 stages shift a 4-bit operand by 0..7
    add = _lin(rows["add"]["anchors"], 32)
    uniform = [PeLayer("a", 10, 90, 4, 4, "mac"), PeLayer("b", 5, 36, 8, 8, "mac")]
    pot = [PeLayer("a", 10, 90, 4, 4, "bac", density=0.4), PeLayer("b", 5, 36, 8, 8, "mac")]
    e_head = 5 * 36 * (rows["mul"]["energy"] + add)
    expected = (900 * (mul + add) + e_head) / (900 * 0.4 * (shift + add) + e_head)
    assert energy_ratio(uniform, pot, AcceleratorModel.load("asic_45nm"), 32) == pytest.approx(expected, rel=1e-12)


def test_fpga_ratio_from_the_table_dsp_and_lut_figures():
    view = yaml.safe_load((TABLES / "accelerator.yaml").read_text())["views"]["fpga_zu"]
    assert shifter_luts(4, 7) == 11 * 2  # 11 output bits, each 4 data + 3 select inputs > 6: two LUT6
    assert shifter_luts(4, 3) == 7 * 1   # 4 data + 2 select = 6 inputs: one LUT6
    m = AcceleratorModel.load("fpga_zu")
    assert m.pe_energy_pj("mac", 4, 4, 32) == view["dsp_mac_pj"] * view["dsp_toggle_scale"][12]
    assert m.pe_energy_pj("mac", 16, 8, 32) == view["dsp_mac_pj"] * view["dsp_toggle_scale"][18]
    assert m.pe_energy_pj("bac", 4, 4, 20) == pytest.approx(view["lut_op_pj"] * (22 + 20))
    layers = [PeLayer("a", 7, 50, 4, 3, "mac")]
    pot = [PeLayer("a", 7, 50, 4, 3, "bac", density=0.5)]
    expected = (view["dsp_mac_pj"] * view["dsp_toggle_scale"][12]) / (0.5 * view["lut_op_pj"] * (7 + 32))
    assert energy_ratio(layers, pot, m, 32) == pytest.approx(expected)
    with pytest.raises(ConfigError, match="does not fit one DSP48E2"):
        m.pe_energy_pj("mac", 32, 4, 32)


# -- sweep summary --------------------------------------------------------------------------------

def test_sweep_rows_table_and_seed_means(tmp_path):
    for i, (q, seed, acc) in enumerate([("uniform", 0, 0.9), ("uniform", 1, 0.8), ("pot", 0, 0.7)]):
        run = tmp_path / f"{i}_run"
        (run / ".hydra").mkdir(parents=True)
        record = {"entry": "train", "completed": False, "quant": {"name": q}, "seed": seed, "test_accuracy": acc,
                  "energy_pj": None, "toggles": None, "wall_seconds": 1.0, "config_hash": "0" * 16,
                  "version": "0.1.0", "git_commit": None}  # the common keys of the results schema
        (run / "results.json").write_text(json.dumps(record))
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"quant={q}", f"seed={seed}"]))
    rows = collect_results(tmp_path)
    assert [(r["quant.name"], r["seed"]) for r in rows] == [("uniform", 0), ("uniform", 1), ("pot", 0)]
    assert rows[0]["overrides"] == "quant=uniform seed=0"
    table = markdown_table(rows, ["quant.name", "test_accuracy", "missing"])
    assert table.splitlines()[2] == "| uniform | 0.9 | - |"
    means = group_mean(rows, ["quant.name"], ["test_accuracy"])
    assert means[0]["n"] == 2 and means[0]["test_accuracy.mean"] == pytest.approx(0.85)
    assert means[0]["test_accuracy.std"] == pytest.approx(0.05) and means[1]["test_accuracy.mean"] == 0.7


@pytest.mark.parametrize("overrides, expected", [
    (("quant=pot", "quant.w_bits=4", "quant.x_bits=4", "op=shift"), ("pot", "shift", 4, "none")),
    (("+experiment=pot_vs_uniform", "+arith=uniform_mac"), ("uniform", "mac", 4, "none")),
    (("+experiment=pot_vs_uniform", "+arith=pot_shift"), ("pot", "shift", 4, "none")),
    (("+experiment=pot_sparsity",), ("pot", "shift", 4, "pot")),
    (("+experiment=pot_cifar10_resnet20", "quant.w_bits=3"), ("pot", "shift", 3, "pot")),
])
def test_pot_experiment_configs_compose(overrides, expected):
    c = compose_train(*overrides)
    assert (c["quant"]["name"], c["op"]["name"], c["quant"]["w_bits"], c["prune"]["name"]) == expected


def test_data_movement_narrows_the_mac_to_bac_ratio_by_the_same_traffic(tmp_path):
    """scripts/pot_energy.py's engine figures: without data movement the engine's ratio is the PE model's;
    on the edge accelerator both networks move the same (dense) tensors, so the ratio is
    (C_uniform + M) / (C_pot + M) at every sparsity, nearer 1 than without."""
    import importlib.util

    from pannjax.hw.accelerator import pe_layers

    spec = importlib.util.spec_from_file_location("pot_energy", ROOT / "scripts" / "pot_energy.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    uniform = script.network_layers("digits_cnn", "uniform", "mac", 4, 4)
    pot = script.network_layers("digits_cnn", "pot", "shift", 4, 4)
    accelerator = script.load_accelerator("edge", 2)
    accelerator = dataclasses.replace(accelerator, cache_dir=str(tmp_path / "cache"))
    arithmetic = script.Pricing.make(toggle_model=None)
    moving = script.Pricing.make(toggle_model=None, accelerator=accelerator)
    pe = AcceleratorModel.load("asic_45nm")
    for density in (1.0, 0.5):
        e_u, e_p = (script.engine_energy(layers, d, arithmetic) for layers, d in ((uniform, 1.0), (pot, density)))
        model = energy_ratio(pe_layers(uniform), script.with_density(pe_layers(pot), density), pe, 32)
        assert e_u["energy_pj"] / e_p["energy_pj"] == pytest.approx(model, rel=1e-9)
        m_u, m_p = (script.engine_energy(layers, d, moving) for layers, d in ((uniform, 1.0), (pot, density)))
        assert m_u["energy_memory_pj"] == pytest.approx(m_p["energy_memory_pj"], rel=1e-12)
        assert m_u["energy_memory_pj"] > 0
        assert (m_u["energy_compute_pj"], m_p["energy_compute_pj"]) == pytest.approx(
            (e_u["energy_pj"], e_p["energy_pj"]))
        with_memory = m_u["energy_pj"] / m_p["energy_pj"]
        assert with_memory == pytest.approx((e_u["energy_pj"] + m_u["energy_memory_pj"])
                                            / (e_p["energy_pj"] + m_u["energy_memory_pj"]), rel=1e-9)
        assert 1.0 < with_memory < model
    with pytest.raises(SystemExit, match="--accelerator nope: no .*; choose one of aimc, dimc, edge, none"):
        script.load_accelerator("nope", None)
