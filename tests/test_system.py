"""System energy (pannjax.hw.system): a layer's data movement through an accelerator's memories, by ZigZag,
added to the cost engine's compute energy; checked against a hand count and against ZigZag run directly."""

import csv
import dataclasses
import json
from pathlib import Path

from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir

from pannjax.errors import ConfigError
from pannjax.hw import system
from pannjax.hw.system import AcceleratorConfig, layer_workload, memory_cost, run_zigzag, zigzag_hardware
from pannjax.numerics import NumberFormat
from pannjax.ops import Analog, InMemory, MacOperator
from pannjax.runner import run_train

ROOT = Path(__file__).resolve().parents[1]

#: one PE; an 8-bit weight register, a 32-bit output register, and DRAM behind an 8-bit port
TINY = {
    "name": "tiny",
    "memories": {
        "reg_w": {"size": 8, "r_cost": 0.5, "w_cost": 0.7, "area": 0, "latency": 1, "operands": ["I2"],
                  "ports": [{"name": "r_port_1", "type": "read", "bandwidth_min": 8, "bandwidth_max": 8,
                             "allocation": ["I2, tl"]},
                            {"name": "w_port_1", "type": "write", "bandwidth_min": 8, "bandwidth_max": 8,
                             "allocation": ["I2, fh"]}], "served_dimensions": []},
        "reg_o": {"size": 32, "r_cost": 1.0, "w_cost": 1.5, "area": 0, "latency": 1, "operands": ["O"],
                  "ports": [{"name": "r_port_1", "type": "read", "bandwidth_min": 32, "bandwidth_max": 32,
                             "allocation": ["O, tl", "O, th"]},
                            {"name": "w_port_1", "type": "write", "bandwidth_min": 32, "bandwidth_max": 32,
                             "allocation": ["O, fh", "O, fl"]}], "served_dimensions": []},
        "dram": {"size": 10_000_000, "r_cost": 100, "w_cost": 120, "area": 0, "latency": 1,
                 "operands": ["I1", "I2", "O"],
                 "ports": [{"name": "rw_port_1", "type": "read_write", "bandwidth_min": 8, "bandwidth_max": 8,
                            "allocation": ["I1, fh", "I1, tl", "I2, fh", "I2, tl", "O, fh", "O, tl", "O, fl",
                                           "O, th"]}], "served_dimensions": ["D1"]},
    },
    "operational_array": {"unit_energy": 0.25, "unit_area": 1, "dimensions": ["D1"], "sizes": [1]},
}
#: the loops fixed: input channels innermost, then output channels
TINY_MAPPING = [{"name": "default", "spatial_mapping": {"D1": ["K, 1"]}, "temporal_ordering": [["C", 3], ["K", 2]],
                 "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"}}]


@dataclasses.dataclass(frozen=True)
class _Dense:
    path: str = "fc"
    kind: str = "dense"
    kernel_shape: tuple = (3, 2)  # C = 3 inputs, K = 2 outputs
    x_format: NumberFormat = NumberFormat("int", 8, True)
    w_format: NumberFormat = NumberFormat("int", 8, True)
    operator: Any = MacOperator()


def _tiny(tmp_path) -> AcceleratorConfig:
    (tmp_path / "hw.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))  # memories listed lowest first
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(TINY_MAPPING))
    return AcceleratorConfig("tiny", str(tmp_path / "hw.yaml"), str(tmp_path / "map.yaml"), lpf_limit=2,
                             cache_dir=str(tmp_path / "cache"))


def test_data_movement_of_a_fixed_mapping_is_the_hand_count(tmp_path, monkeypatch):
    """y_k = sum_c w_kc x_c, K = 2, C = 3, loops C inside K, one PE. By hand, in words of each port:
    W: each weight read once from DRAM (6), written once into its register (6), read once by the MAC (6);
    I: no register, each MAC reads its input from DRAM (6); O: every MAC reads the partial sum from the
    output register and writes it back (6 + 6; ZigZag reads the zero start too), each output is read once
    towards DRAM (2) and written there (2: 8-bit outputs, one word each). Energy = accesses x the file's
    per-access energies."""
    monkeypatch.setattr(system, "_MEMORY", {})
    m = memory_cost(_Dense(), _tiny(tmp_path), acc_bits=32)
    assert m.accesses["W"]["reg_w"] == {"rd_out_to_low": 6, "wr_in_by_low": 0, "rd_out_to_high": 0, "wr_in_by_high": 6}
    assert m.accesses["W"]["dram"]["rd_out_to_low"] == 6 and m.accesses["I"]["dram"]["rd_out_to_low"] == 6
    assert m.accesses["O"]["reg_o"] == {"rd_out_to_low": 6, "wr_in_by_low": 6, "rd_out_to_high": 2, "wr_in_by_high": 0}
    assert m.accesses["O"]["dram"]["wr_in_by_low"] == 2
    hand = {"W": {"reg_w": 6 * 0.7 + 6 * 0.5, "dram": 6 * 100}, "I": {"dram": 6 * 100},
            "O": {"reg_o": 6 * 1.5 + 6 * 1.0 + 2 * 1.0, "dram": 2 * 120}}
    for op, levels in hand.items():
        assert m.energy_by_operand[op] == pytest.approx(levels, rel=1e-12)
    assert m.energy_pj == pytest.approx(sum(sum(v.values()) for v in hand.values()), rel=1e-12)
    assert m.latency_cycles >= 6 and 0 < m.utilization <= 1


def test_mapped_layers_are_cached_in_memory_and_on_disk(tmp_path, monkeypatch):
    accelerator = _tiny(tmp_path)
    monkeypatch.setattr(system, "_MEMORY", {})
    first = memory_cost(_Dense(), accelerator, 32)
    monkeypatch.setattr(system, "_MEMORY", {})  # a new process: only the disk cache is left

    def no_zigzag(*a, **k):
        raise AssertionError("mapped again")

    monkeypatch.setattr(system, "run_zigzag", no_zigzag)
    assert memory_cost(_Dense(), accelerator, 32) == first
    files = list((tmp_path / "cache").glob("*.json"))
    assert len(files) == 1
    for damaged in ('{"energy_pj": 1', '{"energy_pj": 1.0}'):  # a torn or foreign file is mapped again
        files[0].write_text(damaged)
        monkeypatch.setattr(system, "_MEMORY", {})
        with pytest.raises(AssertionError, match="mapped again"):
            memory_cost(_Dense(), accelerator, 32)
    other = dataclasses.replace(_Dense(), kernel_shape=(4, 2))  # another shape is another key
    hardware, mapping = accelerator.path("hardware").read_text(), accelerator.path("mapping")
    assert (system._key(layer_workload(other, 32), hardware, mapping, accelerator)
            != system._key(layer_workload(_Dense(), 32), hardware, mapping, accelerator))


def test_training_on_the_edge_accelerator_reports_zigzags_figures(tmp_path, monkeypatch):
    """experiments/train.py accelerator=edge: per layer compute + memory = the total, the layers sum to
    results.json's energy_pj, and one layer's figures are ZigZag's own, run directly on that layer with the
    cost engine's energy per MAC as the PE array's unit energy."""
    monkeypatch.setattr(system, "_MEMORY", {})
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["accelerator=edge", f"accelerator.cache_dir={tmp_path / 'cache'}",
                                          "accelerator.lpf_limit=2", "quant=uniform", "trainer.epochs=1",
                                          "trainer.progress=false", "model.width=4"])
    res = run_train(cfg, tmp_path / "run")
    rows = list(csv.DictReader(open(tmp_path / "run" / "power_report.csv")))
    for row in rows:
        compute, memory = float(row["energy_compute_pJ"]), float(row["energy_memory_pJ"])
        assert float(row["energy_pJ"]) == pytest.approx(compute + memory)
        assert float(row["energy_memory_pJ"]) == pytest.approx(sum(float(row[f"energy_memory_{op}_pJ"])
                                                                   for op in "WIO"))
    assert res["energy_pj"] == pytest.approx(sum(float(r["energy_pJ"]) for r in rows))
    assert res["energy_pj"] == pytest.approx(res["energy_compute_pj"] + res["energy_memory_pj"])
    assert res["energy_memory_pj"] > res["energy_compute_pj"] > 0 and res["latency_cycles"] > 0
    assert (tmp_path / "run" / "power_report.png").stat().st_size > 10_000  # the stacked bars

    report = json.loads((tmp_path / "run" / "power_report.json").read_text())
    row = next(r for r in rows if r["layer"] == "conv1")
    from pannjax.nn import abstract_layers  # the layer as the report saw it
    from pannjax.runner import accelerator_config, build_model_for

    import jax
    import jax.numpy as jnp

    model = build_model_for(cfg, 10)
    layer = next(l for l in abstract_layers(model, jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32), train=False)
                 if l.path == "conv1")
    accelerator = accelerator_config(cfg)
    hardware = zigzag_hardware(accelerator, float(row["energy_compute_pJ"]) / int(row["macs"]), tmp_path / "hw.yaml")
    cme = run_zigzag(layer_workload(layer, 32), hardware, accelerator)
    assert float(row["energy_pJ"]) == pytest.approx(cme.energy_total, rel=1e-9)
    assert float(row["energy_memory_pJ"]) == pytest.approx(cme.mem_energy, rel=1e-9)
    assert float(row["latency_cycles"]) == cme.latency_total2
    memory = report["components"]["conv1"]["memory"]
    assert {op: sum(levels.values()) for op, levels in memory["energy_by_operand"].items()} == pytest.approx(
        {str(op): sum(v) for op, v in cme.mem_energy_breakdown.items()})


def test_bad_accelerator_options_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"accelerator.hardware='nope.yaml': no ZigZag hardware file"):
        AcceleratorConfig("mine", "nope.yaml", "zigzag/edge.mapping.yaml")
    with pytest.raises(ConfigError, match=r"accelerator.lpf_limit=0: expected a whole number >= 1"):
        AcceleratorConfig("edge", "zigzag/edge.hardware.yaml", "zigzag/edge.mapping.yaml", lpf_limit=0)


def test_search_prices_the_data_movement_the_report_prices(tmp_path, monkeypatch):
    """experiments/search.py accelerator=edge: its per-layer per-candidate table is the power report of the
    all-candidate network on edge (compute + data movement) and the derived network's energy is the table's
    sum (PANN and the other entry points are held to the report in tests/test_export.py)."""
    import jax
    import jax.numpy as jnp

    from omegaconf import OmegaConf

    from pannjax.build import build_policy
    from pannjax.hw.report import build_report
    from pannjax.models import build_model
    from pannjax.runner import accelerator_config
    from pannjax.search.runner import run_search_experiment

    monkeypatch.setattr(system, "_MEMORY", {})
    overrides = ["accelerator=edge", f"accelerator.cache_dir={tmp_path / 'cache'}", "accelerator.lpf_limit=2"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("search", overrides=[*overrides, "search.epochs=1", "search.alpha_start_epoch=0.5",
                                           "search.retrain_epochs=0", "search.baseline_epochs=0",
                                           "search.use=[mac8,shift4]", "model.width=4", "trainer.progress=false",
                                           "trainer.tensorboard=false"])
    res = run_search_experiment(cfg, tmp_path / "search")
    assert res["energy_pj"] == pytest.approx(res["energy_compute_pj"] + res["energy_memory_pj"], rel=1e-12)
    assert res["energy_memory_pj"] > 0 and res["latency_cycles"] > 0
    table = res["energy_table_pj"]
    assert res["energy_pj"] == pytest.approx(sum(table[p][c] for p, c in res["assignment"].items()), rel=1e-9)
    accelerator = accelerator_config(cfg)
    sample = jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32)
    for name in ("mac8", "shift4"):
        spec = OmegaConf.to_container(cfg.search.candidates[name])
        model = build_model("digits_cnn", num_classes=10, width=4, policy=build_policy(spec["quant"], spec["op"]))
        variables = model.init(jax.random.key(0), jnp.zeros(sample.shape), train=False)
        abstract = jax.eval_shape(lambda: variables)
        report = build_report(model, abstract, sample, simulate=False, accelerator=accelerator)
        assert {p: v[name] for p, v in table.items()} == pytest.approx(
            {l.path: l.energy_total_pj for l in report.layers}, rel=1e-9)
        assert all(l.energy_memory_pj > 0 for l in report.layers)


def _in_memory(name: str, tmp_path) -> AcceleratorConfig:
    data = yaml.safe_load((ROOT / "configs" / "accelerator" / f"{name}.yaml").read_text())
    return AcceleratorConfig(**{**data, "lpf_limit": 2, "cache_dir": str(tmp_path / "cache")})


def test_an_in_memory_layer_is_priced_by_zigzags_macro_model(tmp_path, monkeypatch):
    """A 64 -> 16 dense layer in a 64-row x 16-column analog macro fits it whole: one macro activation, every row
    and column used (its hand-count terms below pass only for that mapping). ZigZag's macro model then charges, by
    hand, 8 weight bits x 16 columns x 8/2 bit-serial cycles ADC conversions and 64 rows x 4 cycles DAC conversions
    at its own per-conversion energies (its `ImcArray` at the same resolution); the ADC term follows the wrapper's
    adc_bits. A digital macro has neither. The template gets the wrapper's geometry and the layer's precisions."""
    from zigzag.datatypes import OADimension
    from zigzag.hardware.architecture.imc_array import ImcArray

    monkeypatch.setattr(system, "_MEMORY", {})
    aimc = _in_memory("aimc", tmp_path)
    parts = {}
    for adc_bits in (4, 8):
        layer = _Dense(kernel_shape=(64, 16), operator=Analog(MacOperator(), rows=64, cols=16, adc_bits=adc_bits))
        m = memory_cost(layer, aimc, 32)
        macro = ImcArray(True, 2, [8, 8], adc_bits, 8, 0.0, {OADimension("D1"): 16, OADimension("D2"): 64})
        assert m.macro_energy_by_part["adcs"] == pytest.approx(macro.get_adc_cost()[2] * 8 * 16 * 4, rel=1e-9)
        assert m.macro_energy_by_part["dacs"] == pytest.approx(macro.get_dac_cost()[2] * 64 * 4, rel=1e-9)
        assert m.macro_energy_pj == pytest.approx(sum(m.macro_energy_by_part.values()), rel=1e-12)
        assert m.energy_pj > 0 and 0 < m.utilization <= 1  # the cycles of loading the weights count too
        parts[adc_bits] = m.macro_energy_by_part
    assert parts[8]["adcs"] > parts[4]["adcs"] and parts[8]["mults"] == pytest.approx(parts[4]["mults"])
    digital = memory_cost(_Dense(kernel_shape=(64, 16), operator=InMemory(MacOperator(), "dimc", rows=64, cols=16)),
                          _in_memory("dimc", tmp_path), 32)
    assert digital.macro_energy_by_part["adcs"] == digital.macro_energy_by_part["dacs"] == 0
    assert digital.macro_energy_by_part["adders_regular"] > 0

    narrow = _Dense(kernel_shape=(64, 16), x_format=NumberFormat("int", 3, False), w_format=NumberFormat("int", 4),
                    operator=InMemory(MacOperator(), "aimc", rows=32, cols=8, adc_bits=5, bit_serial=4))
    hardware = yaml.safe_load(system.macro_hardware(narrow, aimc))
    assert hardware["operational_array"]["input_precision"] == [4, 4]  # 3-bit activations take 4-bit cycles
    assert hardware["operational_array"]["sizes"] == [8, 32] and hardware["operational_array"]["adc_resolution"] == 5
    assert hardware["operational_array"]["bit_serial_precision"] == 4 and hardware["memories"]["cells"]["size"] == 4


def test_in_memory_layers_need_a_macro_of_their_kind(tmp_path):
    edge = AcceleratorConfig(**{**yaml.safe_load((ROOT / "configs/accelerator/edge.yaml").read_text()),
                                "cache_dir": str(tmp_path)})
    analog = _Dense(operator=Analog(MacOperator()))
    with pytest.raises(ConfigError, match=r"^layer fc computes in memory \(mode aimc\); accelerator=edge has no "
                                          r"in-memory macro: choose accelerator=aimc or dimc, or mode=digital$"):
        memory_cost(analog, edge, 32)
    with pytest.raises(ConfigError, match=r"^layer fc computes in mode aimc, but accelerator=dimc's macro is digital "
                                          r"in-memory: choose accelerator=aimc$"):
        memory_cost(analog, _in_memory("dimc", tmp_path), 32)
    with pytest.raises(ConfigError, match=r"^layer fc: an in-memory macro computes on fixed-point operands"):
        memory_cost(dataclasses.replace(analog, x_format=NumberFormat("float", 32)), _in_memory("aimc", tmp_path), 32)
    # the search names the candidate and its key before it maps anything
    from omegaconf import OmegaConf

    from pannjax.models import build_model
    from pannjax.search.energy import energy_model
    from pannjax.search.space import build_search_space

    candidates = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "search.yaml").search.candidates)
    space = build_search_space(candidates, ["mac8_cim", "mac8"], "mac8")
    with pytest.raises(ConfigError, match=r"^search.use: candidate mac8_cim: layer stem computes in memory "
                                          r"\(mode aimc\); accelerator=edge has no in-memory macro: .*; or drop it "
                                          r"from search.use$"):
        energy_model(lambda p: build_model("digits_cnn", num_classes=10, policy=p, width=4), space, (8, 8, 1),
                     accelerator=edge)


def test_the_engine_takes_an_in_memory_layers_compute_from_the_macro(tmp_path, monkeypatch):
    """On accelerator=aimc a network in mode aimc has, per layer, ZigZag's macro energy as its compute energy
    (the energy table's cell and ADC rows are not used); the same network in digital mode is priced on aimc
    exactly as on edge (its PE array and memories)."""
    import jax
    import jax.numpy as jnp

    from pannjax.build import build_policy
    from pannjax.hw.cost import Pricing, price_network
    from pannjax.models import build_model
    from pannjax.nn import abstract_layers

    monkeypatch.setattr(system, "_MEMORY", {})
    sample = jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32)

    def layers(kind):
        policy = build_policy({"name": "uniform", "w_bits": 8, "x_bits": 8}, {"name": "mac", "mode": {"kind": kind}})
        return abstract_layers(build_model("digits_cnn", num_classes=10, width=4, policy=policy), sample, train=False)

    aimc = _in_memory("aimc", tmp_path)
    on_macro = price_network(layers("aimc"), Pricing.make(toggle_model=None, accelerator=aimc))
    table = price_network(layers("aimc"), Pricing.make(toggle_model=None))
    for cost, arithmetic in zip(on_macro, table):
        assert cost.energy_pj == cost.memory.macro_energy_pj > 0 and cost.operator == "mac@aimc"
        assert cost.energy_pj != pytest.approx(arithmetic.energy_pj)
        assert cost.energy_total_pj == pytest.approx(cost.energy_pj + cost.memory.energy_pj, rel=1e-12)
    edge = dataclasses.replace(aimc, name="edge", in_memory="", in_memory_mapping="")
    digital = [price_network(layers("digital"), Pricing.make(toggle_model=None, accelerator=a)) for a in (aimc, edge)]
    assert [(c.energy_pj, c.memory.energy_pj, c.memory.macro_energy_pj) for c in digital[0]] == [
        (c.energy_pj, c.memory.energy_pj, None) for c in digital[1]]
    # measured switching activity scales the table's units, not a macro's energy
    from pannjax.hw.report import LayerPower

    active = dict(toggles_simulated={"total": 3.0}, toggles_gates_uniform=2.0)
    assert LayerPower(digital[0][1], **active).energy_activity_pj == pytest.approx(1.5 * digital[0][1].energy_pj)
    assert LayerPower(on_macro[1], **active).energy_activity_pj is None
