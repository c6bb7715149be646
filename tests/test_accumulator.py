"""Accumulator widths: the worst case integer weights allow (exact, against enumeration of every input), the
width a batch uses, and the power report at acc_bits=auto."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pannjax.build import build_policy
from pannjax.data import load_dataset
from pannjax.errors import ConfigError
from pannjax.hw.accumulator import observed_bits, width_for, worst_case_bits, worst_case_range
from pannjax.hw.report import build_report
from pannjax.models import build_model
from pannjax.nn import bound_layers
from pannjax.numerics import NumberFormat


def test_width_and_the_hand_example():
    assert (width_for(-128, 127), width_for(-129, 0), width_for(0, 128), width_for(0, 0)) == (8, 9, 9, 2)
    w = np.array([[3], [-2], [5]])  # IO: three inputs, one output; P = 8, N = 2
    assert worst_case_range(w, NumberFormat("int", 4, signed=False)) == (-30.0, 120.0)  # x in [0, 15]
    assert worst_case_range(w, NumberFormat("int", 4, signed=True)) == (-78.0, 72.0)    # x in [-8, 7]
    assert worst_case_bits(w, NumberFormat("int", 4, signed=False)) == 8
    # the A2Q L1-norm bound ||w||_1 max|x| = 10 * 15 = 150 would ask for 9 bits here
    assert width_for(-150, 150) == 9


@pytest.mark.parametrize("signed", [False, True])
def test_the_worst_case_range_is_exactly_what_some_input_reaches(signed):
    """Every input of a 3-input, 2-output layer on 3-bit codes (8^3 = 512), against the formula."""
    rng = np.random.default_rng(0)
    w = rng.integers(-7, 8, size=(3, 2))
    fmt = NumberFormat("int", 3, signed=signed)
    codes = range(-4, 4) if signed else range(0, 8)
    accs = np.array([np.asarray(x) @ w for x in itertools.product(codes, repeat=3)])
    assert worst_case_range(w, fmt) == (float(accs.min()), float(accs.max()))
    assert observed_bits(accs) == worst_case_bits(w, fmt)


#: one xdist worker runs the whole module (`--dist loadgroup`): its module fixture is made once
pytestmark = pytest.mark.xdist_group("test_accumulator")


@pytest.fixture(scope="module")
def network():
    ds = load_dataset("digits")
    policy = build_policy({"name": "uniform", "w_bits": 4, "x_bits": 4}, {"name": "mac"})
    model = build_model("digits_cnn", num_classes=10, policy=policy, width=4)
    x = jnp.asarray(ds.test_images[:64])
    variables = jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(0))
    return model, variables, x


def test_observed_width_is_that_of_the_layers_own_accumulations(network):
    model, variables, x = network
    layers = bound_layers(model, variables, x, capture_inputs=True, train=False)
    head = next(l for l in layers if l.kind == "dense")
    acc = np.asarray(head.input_view().codes, np.int64) @ np.asarray(head.weight_view().codes, np.int64)
    width = head.accumulator_width()
    assert width.observed == width_for(acc.min(), acc.max()) and width.observed <= width.worst
    for layer in layers:
        w = layer.accumulator_width()
        assert w.observed <= w.worst <= 32


def test_the_report_at_acc_bits_auto_prices_each_layer_at_its_worst_case_width(network):
    model, variables, x = network
    auto = build_report(model, variables, x, acc_bits="auto", simulate=False, train=False)
    fixed = build_report(model, variables, x, acc_bits=32, simulate=False, train=False)
    for row, layer in zip(auto.rows(), auto.layers):  # 4x4-bit MACs take any width >= 8: the worst case is used
        assert row["acc_bits_worst"] is not None and layer.cost.acc_bits == max(row["acc_bits_worst"], 8) < 32
        assert row["acc_bits_observed"] <= row["acc_bits_worst"]
    totals, totals32 = auto.totals(), fixed.totals()
    assert totals["acc_bits"] == "auto" and "toggles_acc32" not in totals32
    assert totals["toggles_acc32"] == pytest.approx(totals32["toggles"])
    assert totals["energy_acc32_pJ"] == pytest.approx(totals32["energy_pJ"])
    assert totals["toggles_saved_vs_acc32"] == pytest.approx(totals32["toggles"] - totals["toggles"])
    assert totals["toggles_saved_vs_acc32"] > 0  # narrower accumulators flip fewer bits
    with pytest.raises(ConfigError, match="acc_bits=auto needs the network's weights"):
        build_report(model, jax.eval_shape(lambda: variables), jax.ShapeDtypeStruct(x.shape, x.dtype),
                     acc_bits="auto", train=False)
    with pytest.raises(ConfigError, match="acc_bits='wide': expected an accumulator width in 2..64 bits or auto"):
        build_report(model, variables, x, acc_bits="wide", train=False)


def test_auto_never_goes_below_the_width_of_one_term(network):
    """8x8-bit MACs: a worst case under 16 bits (small initial weight codes) is priced at 16, the width of one
    full-scale product that the MAC's accumulator takes whatever the weights."""
    _, _, x = network
    policy = build_policy({"name": "uniform", "w_bits": 8, "x_bits": 8}, {"name": "mac"})
    model = build_model("digits_cnn", num_classes=10, policy=policy, width=4)
    variables = jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(0))
    report = build_report(model, variables, x, acc_bits="auto", simulate=False, train=False)
    worst = [row["acc_bits_worst"] for row in report.rows()]
    assert min(worst) < 16  # the case this test is about
    assert [layer.cost.acc_bits for layer in report.layers] == [max(w, 16) for w in worst]
