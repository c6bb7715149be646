"""A layer's operand streams become the right port streams of each unit's netlist: run through the netlist,
they compute the layer's own outputs; and the report simulates every integer operator at gate level."""

import jax
import numpy as np
import pytest

from pannjax.hw.gates.layer_sim import _to_lanes, _xnor_words, simulate_unit_op, unit_ports
from pannjax.hw.gates.model import unit_netlist_for
from pannjax.hw.gates.netlist import evaluate
from pannjax.hw.units import UnitOp
from pannjax.numerics import NumberFormat

K, N, B = 6, 3, 16
U4, S4 = NumberFormat("int", 4, False), NumberFormat("int", 4, True)


def _outputs(netlist, ports, port="acc"):
    """The unit's result for each output: the accumulator after the last operation of that output."""
    stream = [{p: int(v[t]) for p, v in ports.items()} for t in range(ports["clear"].size)]
    values = evaluate(netlist, stream)
    last = np.flatnonzero(np.r_[ports["clear"][1:], 1])
    return [values[t] for t in last]


def _codes(rng, fmt, shape):
    lo, hi = (-(1 << (fmt.bits - 1)), 1 << (fmt.bits - 1)) if fmt.signed else (0, 1 << fmt.bits)
    return rng.integers(lo, hi, shape)


@pytest.mark.parametrize("unit,x,w,expected", [
    ("mac", S4, S4, lambda x, w: (x * w).sum(0)),
    ("mac", U4, S4, lambda x, w: (x * w).sum(0)),
    ("absdiff", S4, S4, lambda x, w: -np.abs(x - w).sum(0)),
    ("mf", S4, S4, lambda x, w: (np.sign(x) * np.abs(w) + np.sign(w) * np.abs(x)).sum(0)),
    ("sign_select", U4, NumberFormat("int", 1, True), lambda x, w: (x * w).sum(0)),
])
def test_term_units_compute_the_layer_outputs(unit, x, w, expected):
    rng = np.random.default_rng(0)
    xs = _codes(rng, x, (K, N))
    ws = rng.choice([-1, 1], (K, N)) if unit == "sign_select" else _codes(rng, w, (K, N))
    u = UnitOp(unit, x, w, B, K, K * N)
    nl = unit_netlist_for(unit, x.bits, w.bits, B, x.signed, w.signed, K)
    got = [o["acc"] for o in _outputs(nl, unit_ports(u, xs, ws))]
    np.testing.assert_array_equal(got, expected(xs, ws))


def test_shift_unit_skips_zero_weights_and_computes_the_outputs():
    rng = np.random.default_rng(1)
    w_fmt = NumberFormat("int", 3, True)  # sign + 2-bit exponent field: |w| in 1, 2, 4, 8 (M = 3)
    xs = _codes(rng, U4, (K, N))
    ws = rng.choice([-1, 1], (K, N)) * (1 << rng.integers(0, 4, (K, N))) * (rng.random((K, N)) > 0.3)
    u = UnitOp("shift", U4, w_fmt, B, K, int((ws != 0).sum()))
    ports = unit_ports(u, xs, ws)
    assert ports["clear"].size == (ws != 0).sum()  # pruned weights cost no operation
    nl = unit_netlist_for("shift", 4, 3, B, False, True, K)
    np.testing.assert_array_equal([o["acc"] for o in _outputs(nl, ports)], (xs * ws).sum(0))
    with pytest.raises(Exception, match="power-of-two"):
        unit_ports(u, xs, ws + 3 * (ws != 0))


@pytest.mark.parametrize("x_fmt", [U4, S4])
@pytest.mark.parametrize("arch", ["split", "signed"])
def test_pann_addition_streams_repeat_each_element_by_its_count(x_fmt, arch):
    rng = np.random.default_rng(2)
    xs = _codes(rng, x_fmt, (K, N))
    ws = rng.integers(-3, 4, (K, N))  # addition counts with their signs
    u = UnitOp("add", x_fmt, NumberFormat("count", 3, True), B, K, int(np.abs(ws).sum()), 1.0, arch)
    ports = unit_ports(u, xs, ws)
    assert ports["clear"].size == np.abs(ws).sum() and ports["x"].min() >= 0  # |x|, sign in neg
    nl = unit_netlist_for("add", 4, 8, B, False, True, K, arch)
    outs = _outputs(nl, ports)
    got = [o["acc_pos"] - o["acc_neg"] for o in outs] if arch == "split" else \
        [o["acc"] for o in outs]
    np.testing.assert_array_equal(got, (xs * ws).sum(0))


def test_xnor_words_pack_the_binary_operands():
    rng = np.random.default_rng(3)
    k = 40  # two words: 32 bits and 8 bits plus 24 zero-padded
    xs, ws = rng.choice([-1, 1], (k, N)), rng.choice([-1, 1], (k, N))
    ports, bits, words = _xnor_words(xs, ws)
    assert (bits, words) == (32, 2) and ports["clear"].tolist() == [1, 0] * N
    nl = unit_netlist_for("xnor", 1, 1, B, True, True, bits)
    matches = (xs == ws).sum(0) + (words * bits - k)  # padded bits are equal zeros: they count as matches
    np.testing.assert_array_equal([o["acc"] for o in _outputs(nl, ports)], matches)


def test_lanes_keep_time_order_and_simulation_is_per_operation():
    ports = {"x": np.arange(1000), "clear": np.zeros(1000, np.int64)}
    lanes = _to_lanes(ports, 8)
    assert lanes["x"].shape == (125, 8) and lanes["x"][:3, 1].tolist() == [125, 126, 127]
    rng = np.random.default_rng(4)
    xs, ws = _codes(rng, U4, (64, 200)), _codes(rng, S4, (64, 200))
    u = UnitOp("mac", U4, S4, 32, 64, 64 * 200)
    sim = simulate_unit_op(u, xs, ws)
    from pannjax.hw import unit_toggles
    model = unit_toggles("mac", 4, 4, 32, False, True, 64, "gates")  # uniform codes, as drawn here
    assert sim["total"] == pytest.approx(model["total"], rel=0.1)


def test_report_simulates_every_integer_operator_at_gate_level():
    """simulate=true: every integer layer of every operator has a gate-level figure, close to the gate model
    on the measured operand statistics for a shift network (independent-looking PoT codes)."""
    from pannjax.hw.report import build_report
    from pannjax.nn import ArithPolicy, LayerArith
    from pannjax.models import build_model
    from pannjax.ops import ShiftOperator
    from pannjax.quant import PotQuantizer, UniformQuantizer

    pol = ArithPolicy(LayerArith(PotQuantizer(4), UniformQuantizer(4, signed=None, step_mode="max"), ShiftOperator()))
    model = build_model("digits_cnn", num_classes=10, policy=pol, width=8)
    x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))
    rep = build_report(model, model.init(jax.random.key(1), x), x)
    for lp in rep.layers:
        sim, measured = lp.toggles_simulated["total"], lp.toggles_analytic_measured["total"]
        assert sim == pytest.approx(measured, rel=0.15), lp.path
        assert lp.energy_activity_pj == pytest.approx(lp.energy_pj * sim / lp.toggles_gates_uniform)
