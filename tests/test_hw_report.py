"""Energy tables and the per-layer network report."""

import json

import jax
import numpy as np
import pytest

from pannjax.errors import ConfigError
from pannjax.hw.energy import EnergyTable
from pannjax.hw.report import build_report, layer_streams
from pannjax.models import build_model
from pannjax.nn import ArithPolicy, LayerArith, bound_layers
from pannjax.ops import MacOperator, OpCount
from pannjax.quant import UniformQuantizer


def _policy(bits=4):
    return ArithPolicy(LayerArith(UniformQuantizer(bits, signed=True, per_channel=True, step_mode="max"),
                                  UniformQuantizer(bits, signed=None, step_mode="max"), MacOperator()))


@pytest.fixture(scope="module")
def digits():
    model = build_model("digits_cnn", num_classes=10, policy=_policy())
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    return model, model.init(jax.random.key(1), x), x


def test_energy_table_has_horowitz_figures_and_scaling():
    t = EnergyTable.load()
    assert t.energy_pj("add", (8,)) == pytest.approx(0.03)
    assert t.energy_pj("add", (32,)) == pytest.approx(0.1)
    assert t.energy_pj("mul", (8, 8)) == pytest.approx(0.2)
    assert t.energy_pj("mul", (32, 32)) == pytest.approx(3.2)  # 3.1 quoted: quadratic scaling holds
    assert t.energy_pj("mul", (4, 4)) == pytest.approx(0.05)
    assert t.energy_pj("fmul", (32,)) == pytest.approx(3.7) and t.energy_pj("fadd", (16,)) == pytest.approx(0.4)
    assert t.energy_pj("adc", (8,)) == pytest.approx(2 * t.energy_pj("adc", (7,)))
    # ShiftOperator reports ("shift", (b_x, M)): 4-bit activations shifted by up to 7 places
    assert t.energy_pj("shift", (4, 7)) == pytest.approx(0.00088 * 11 * 3)
    assert t.energy_pj("shift", (4, 7)) < t.energy_pj("mul", (4, 4))
    for kind in ("xnor", "popcount", "abs", "cim_mac"):
        assert t.energy_pj(kind, (8,) if kind != "cim_mac" else (4, 4)) > 0
    ops = (OpCount("mul", (4, 4), 10), OpCount("add", (32,), 10))
    assert t.cost_pj(ops) == pytest.approx(10 * 0.05 + 10 * 0.1)


def test_unknown_kind_names_the_kind_and_the_table():
    with pytest.raises(ConfigError, match=r"op kind 'teleport'.*energy_45nm.yaml"):
        EnergyTable.load().energy_pj("teleport", (4,))
    with pytest.raises(ConfigError, match="not found"):
        EnergyTable.load("/nonexistent/table.yaml")


def test_layer_streams_reproduce_the_integer_convolution(digits):
    model, variables, x = digits
    layers = bound_layers(model, variables, x, capture_inputs=True)
    assert [l.path for l in layers] == ["stem", "conv1", "conv2", "head"]
    codes = [(np.asarray(l.input_view().codes), np.asarray(l.weight_view().codes)) for l in layers]
    for l, (xc, wc) in zip(layers, codes):
        xs, ws = layer_streams(l, xc, wc, max_macs=None)
        got = (xs.astype(np.int64) * ws).sum(0)
        if l.kind == "conv":
            ref = jax.lax.conv_general_dilated(xc.astype(np.float32), wc.astype(np.float32),
                                               l.strides, l.padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                               feature_group_count=l.groups)
        else:
            ref = xc.reshape(-1, xc.shape[-1]).astype(np.float32) @ wc.astype(np.float32)
        np.testing.assert_array_equal(got, np.asarray(ref).reshape(-1))
    xs, ws = layer_streams(layers[2], *codes[2], max_macs=5000, seed=0)
    assert xs.shape == ws.shape and xs.shape[0] == 3 * 3 * 64 and xs.size <= 5000


def test_report_rows_totals_and_files(digits, tmp_path):
    model, variables, x = digits
    rep = build_report(model, variables, x)
    rows = rep.rows()
    assert [r["layer"] for r in rows] == ["stem", "conv1", "conv2", "head"]
    t = EnergyTable.load()
    for lp in rep.layers:
        assert lp.energy_pj == pytest.approx(lp.macs * (t.energy_pj("mul", (4, 4)) + t.energy_pj("add", (32,))))
        assert lp.toggles_analytic["total"] > 0 and lp.toggles_simulated["total"] > 0
        # the simulator's reference is the gate model on uniform codes, the report's analytic column
        assert lp.toggles_gates_uniform == pytest.approx(lp.toggles_analytic["total"], rel=1e-9)
        # real activations switch less than uniform random codes (ReLU zeros) in the same gates
        assert lp.toggles_simulated["total"] < lp.toggles_gates_uniform
        assert lp.energy_activity_pj == pytest.approx(
            lp.energy_pj * lp.toggles_simulated["total"] / lp.toggles_gates_uniform)
    assert 0 < rows[1]["acc_share_simulated"] < 1
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert rep.total_macs == sum(l.macs for l in rep.layers)
    assert rows[1]["bits"] == "uint4xint4->acc32" and rows[0]["bits"] == "int4xint4->acc32"
    text = rep.format_table()
    assert "conv2" in text and "total:" in text
    paths = rep.save(tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["totals"]["energy_pJ"] == pytest.approx(rep.total_energy_pj)
    assert paths["csv"].read_text().splitlines()[0].startswith("layer,")


def test_report_without_batch_and_for_float_layers(digits):
    model, variables, x = digits
    rep = build_report(model, variables, jax.ShapeDtypeStruct(x.shape, x.dtype))
    assert all(l.toggles_simulated is None and l.toggles_analytic is not None for l in rep.layers)
    fmodel = build_model("digits_cnn", num_classes=10)
    fvars = fmodel.init(jax.random.key(1), x)
    frep = build_report(fmodel, fvars, x)
    assert all(l.toggles_analytic is None for l in frep.layers)
    assert frep.layers[0].ops[0].kind == "fmul" and frep.layers[0].units[0].unit == "fmac"
    with pytest.raises(ConfigError, match="real input batch"):
        build_report(model, variables, jax.ShapeDtypeStruct(x.shape, x.dtype), simulate=True)


def test_resnet20_report_on_a_real_batch():
    model = build_model("resnet", depth=20, num_classes=10, policy=_policy(4))
    x = jax.random.normal(jax.random.key(0), (1, 32, 32, 3))
    variables = model.init(jax.random.key(1), x)
    rep = build_report(model, variables, x, max_sim_macs=1 << 14)
    assert len(rep.layers) >= 19
    assert 40e6 < rep.total_macs < 42e6  # ResNet-20 on CIFAR: ~41 M MACs per image
    assert all(l.toggles_simulated is not None for l in rep.layers)


def test_pannjax_hw_imports_no_flax():
    import subprocess
    import sys

    code = "import sys, pannjax.hw; assert 'flax' not in sys.modules, 'pannjax.hw imported flax'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_report_needs_no_special_case_for_a_shift_operator():
    """Any operator's op counts are costed from the table: a PoT/shift network reports shifts + adds."""
    from pannjax.ops import ShiftOperator
    from pannjax.quant import PotQuantizer

    pol = ArithPolicy(LayerArith(PotQuantizer(4), UniformQuantizer(4, signed=None, step_mode="max"), ShiftOperator()))
    model = build_model("digits_cnn", num_classes=10, policy=pol)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    rep = build_report(model, model.init(jax.random.key(1), x), x)
    t = EnergyTable.load()
    for lp in rep.layers:
        assert {o.kind for o in lp.ops} == {"shift", "add"}
        assert lp.energy_pj == pytest.approx(t.cost_pj(lp.ops))
        assert lp.toggles_simulated["total"] > 0  # the shift unit's netlist, on the layer's own operands
        assert lp.toggles_analytic["total"] > 0  # ... and its own toggle model
    mac = build_report(build_model("digits_cnn", num_classes=10, policy=_policy(4)),
                       model.init(jax.random.key(1), x), jax.ShapeDtypeStruct(x.shape, x.dtype))
    assert rep.total_energy_pj < mac.total_energy_pj
