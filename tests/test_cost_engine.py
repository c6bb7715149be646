"""The cost engine is the one place a layer is priced: every entry point reports the same per-layer energy and
toggles for the same network, under every quantizer and operator, from the numbers the layer computes with."""

import jax
import jax.numpy as jnp
import pytest

from pannjax.build import build_policy
from pannjax.errors import ConfigError
from pannjax.hw import unit_toggles
from pannjax.hw.accelerator import AcceleratorModel, pe_layers
from pannjax.hw.cost import Pricing, price_network
from pannjax.hw.energy import EnergyTable
from pannjax.hw.report import build_report
from pannjax.models import build_model
from pannjax.nn import bound_layers
from pannjax.pann.power import network_toggles, summarize
from pannjax.search.energy import _layer_energies

QUANTS = {
    "float": {"name": "float"},
    "uniform": {"name": "uniform", "w_bits": 4, "x_bits": 4},
    "pot": {"name": "pot", "w_bits": 4, "x_bits": 4},
    "apot": {"name": "apot", "w_bits": 5, "x_bits": 4},
    "pann": {"name": "pann", "x_bits": 4, "additions": 2.0},
}
OPS = ("mac", "shift", "adder", "mf", "bwn", "xnor")
SAMPLE = jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32)


def _network(quant: str, op: str):
    policy = build_policy(QUANTS[quant], {"name": op})
    model = build_model("digits_cnn", num_classes=10, policy=policy, width=8)
    variables = model.init(jax.random.key(0), jnp.zeros(SAMPLE.shape), train=False)
    return model, variables, policy


def _valid(quant: str, op: str) -> bool:
    return quant != "pann" or op in ("mac", "shift", "bwn", "xnor")  # counts run as additions (MAC) or are re-rounded


@pytest.mark.parametrize("quant", list(QUANTS))
@pytest.mark.parametrize("op", OPS)
def test_every_entry_point_reports_the_same_figures(quant, op):
    if not _valid(quant, op):  # refused when the policy is built, before any training
        with pytest.raises(ConfigError, match=rf"^op={op} \(mode digital\) cannot run PANN addition-count weights "
                                              r"\(quant=pann\): they run as repeated additions on op=mac"):
            _network(quant, op)
        return
    model, variables, policy = _network(quant, op)
    report = build_report(model, variables, SAMPLE, simulate=False)  # experiments/train.py's power report
    pann = summarize(network_toggles(model, variables, SAMPLE))  # experiments/pann.py's power figures
    by_path = {l.path: l for l in report.layers}
    for row in pann["layers"]:
        layer = by_path[row["path"]]
        assert row["energy_pj"] == pytest.approx(layer.energy_pj, rel=1e-12)
        assert row["toggles"] == (None if layer.toggles is None else pytest.approx(layer.toggles, rel=1e-12))
    counted = [l.toggles for l in report.layers if l.toggles is not None]  # a float layer has none, not zero
    assert report.totals()["toggles"] == pann["toggles"] == (pytest.approx(sum(counted)) if counted else None)
    if quant != "float":
        assert counted
    if (quant, op) == ("float", "mac"):
        assert not counted and pann["toggles"] is None
    # the ENOS energy table is built from shapes alone (abstract variables): equal to the report on shapes
    abstract = jax.eval_shape(lambda: variables)
    shape_report = build_report(model, abstract, SAMPLE, simulate=False)
    search = _layer_energies(lambda p: build_model("digits_cnn", num_classes=10, policy=p, width=8), policy, SAMPLE,
                             Pricing.make(toggle_model=None))
    assert search == pytest.approx({l.path: l.energy_pj for l in shape_report.layers}, rel=1e-12)
    # every integer layer, whatever its operator, has a toggle figure; float layers have none
    for layer in report.layers:
        integer = not any(u.is_float for u in layer.units)
        assert (layer.toggles is not None) == integer, (layer.path, layer.units)
        if integer:
            assert layer.toggles > 0
    # the PE accelerator view prices MAC and shift layers with the same table decomposition
    if op in ("mac", "shift") and quant != "float" and quant != "pann":
        pe = AcceleratorModel.load("asic_45nm")
        layers = bound_layers(model, variables, SAMPLE)
        energies = pe.network_energy_pj(pe_layers(layers), acc_bits=32)
        for layer in report.layers:
            assert energies[layer.path] == pytest.approx(layer.energy_pj, rel=1e-9)


def test_shift_on_float_weights_prices_shifts_not_float_multiplies():
    model, variables, _ = _network("float", "shift")
    report = build_report(model, variables, SAMPLE, simulate=False)
    conv = {l.path: l for l in report.layers}["conv1"]
    kinds = {o.kind for o in conv.ops}
    assert "fmul" not in kinds and kinds == {"add", "fadd"}  # exponent add, then the float accumulation
    assert conv.w_format == "int5"  # the operator's own DeepShift-Q rounding (weight_bits=5) is what it prices
    t = EnergyTable.load()
    assert conv.energy_pj == pytest.approx(conv.macs * (t.energy_pj("add", (8,)) + t.energy_pj("fadd", (32,))))
    mac = {l.path: l for l in build_report(*_network("float", "mac")[:2], SAMPLE, simulate=False).layers}["conv1"]
    assert conv.energy_pj < 0.5 * mac.energy_pj


@pytest.mark.parametrize("op, w_bits", [("mac", 4), ("bwn", 1), ("xnor", 1)])
def test_the_weights_an_accelerator_moves_are_those_the_datapath_stores(op, w_bits):
    """BWN and XNOR layers store one sign bit per weight whatever the weight quantizer produced: that is the
    weight precision ZigZag's workload moves (a MAC layer moves its 4-bit codes)."""
    from pannjax.hw.system import layer_workload

    model, variables, _ = _network("uniform", op)
    conv = {l.path: l for l in bound_layers(model, variables, SAMPLE)}["conv1"]
    assert conv.w_format.bits == w_bits
    assert layer_workload(conv, acc_bits=24)["operand_precision"]["W"] == w_bits
    view = conv.hardware_quantizer_w.integer(jnp.asarray(variables["params"]["conv1"]["kernel"]))
    assert set(map(int, jnp.unique(view.codes))) <= ({-1, 1} if w_bits == 1 else set(range(-8, 8)))


def test_pann_layers_are_priced_as_their_realised_additions():
    model, variables, _ = _network("pann", "mac")
    report = build_report(model, variables, SAMPLE, simulate=False)
    conv = {l.path: l for l in report.layers}["conv1"]
    (unit,) = conv.units
    layer = {l.path: l for l in bound_layers(model, variables, SAMPLE)}["conv1"]
    assert unit.unit == "add" and unit.per_input == pytest.approx(layer.additions)
    assert abs(layer.additions - 2.0) < 0.05  # the exact scale rule realises R = 2 per output channel
    assert unit.count == round(layer.additions * conv.macs)
    assert [o.kind for o in conv.ops] == ["add"]  # no multiplier
    t = EnergyTable.load()
    assert conv.energy_pj == pytest.approx(unit.count * t.energy_pj("add", (32,)))
    per_add = unit_toggles("add", 4, 8, 32, False, True, conv.fan_in, additions=unit.per_input, arch="split")
    assert conv.toggles == pytest.approx(per_add["total"] * unit.count)


def test_price_network_matches_the_report_layer_by_layer():
    model, variables, _ = _network("uniform", "adder")
    costs = price_network(bound_layers(model, variables, SAMPLE), Pricing.make())
    report = build_report(model, variables, SAMPLE, simulate=False)
    assert [c.energy_pj for c in costs] == [l.energy_pj for l in report.layers]
    assert [c.toggles for c in costs] == [l.toggles for l in report.layers]
    assert {u.unit for c in costs[1:3] for u in c.units} == {"absdiff"}


@pytest.mark.parametrize("quant", ["pot", "apot"])
def test_a_mac_on_power_of_two_weights_multiplies_their_values(quant):
    """PoT / APoT weights are stored as b-bit codes of wider integer values: a MAC (and |x - w|, MF) computes
    with the values, so it is priced at the narrowest width that holds every value; the shifter takes the code."""
    import numpy as np

    for op, unit in (("mac", "mac"), ("adder", "absdiff"), ("shift", "shift")):
        model, variables, _ = _network(quant, op)
        for layer in bound_layers(model, variables, SAMPLE):
            codes = np.abs(np.asarray(layer.weight_view().codes))
            fmt = layer.w_format
            (u,) = layer.units()
            assert u.unit == unit and u.w == fmt
            if op == "shift":
                assert fmt == layer.quantizer_w.format  # sign + exponent field
            else:
                assert int(codes.max()).bit_length() + 1 == fmt.bits, (quant, op, fmt, codes.max())  # +v, signed
                assert fmt.bits > layer.quantizer_w.format.bits
