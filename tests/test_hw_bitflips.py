"""Analytic bit-flip models: exact closed forms, agreement with the simulator, the paper's findings."""

import jax
import numpy as np
import pytest

from pannjax.errors import ConfigError
from pannjax.hw.bitflips import (OperandStats, bitflips_accumulator, bitflips_adder, bitflips_mac,
                                 bitflips_multiplier, bitflips_partial_products, bitflips_register,
                                 bitflips_repeated_addition, bitflips_sign_extension)
from pannjax.hw.toggles import equivalent_additions
from pannjax.hw.toggle_sim import COMPONENTS, MacConfig, mean_toggles

FAN_IN = 128
UNITS = 1024



@pytest.fixture(autouse=True, scope="module")
def _optimized_xla():
    """The simulator's scan runs ~4x faster with XLA optimisations on (conftest turns them off for
    quick model compiles); restored afterwards."""
    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", old)

def _uniform(cfg, rng):
    lo, hi = cfg.code_range("x")
    x = rng.integers(lo, hi + 1, (FAN_IN, UNITS)).astype(np.int16)
    lo, hi = cfg.code_range("w")
    return x, rng.integers(lo, hi + 1, (FAN_IN, UNITS)).astype(np.int16)


def test_uniform_closed_forms():
    for b in (2, 5, 8):
        assert bitflips_register(OperandStats.uniform(b, True)) == pytest.approx(b / 2)
        assert bitflips_register(OperandStats.uniform(b, False)) == pytest.approx(b / 2)
    assert bitflips_partial_products(OperandStats.uniform(8, True), OperandStats.uniform(4, True)) == pytest.approx(3 / 8 * 32)
    m = bitflips_multiplier(8, 8, True)
    assert m["inputs"] == pytest.approx(8) and m["multiplier"] == pytest.approx(24)
    assert bitflips_adder(8, False)["inputs"] == pytest.approx(8)
    # unsigned products never extend a sign
    assert bitflips_sign_extension(OperandStats.uniform(4, False), OperandStats.uniform(4, False), 32) == 0.0


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bx", range(2, 9))
def test_analytic_within_5_percent_of_simulator_uniform(bx, signed):
    """Every (b_x, b_w) in 2..8 and B in {16, 24, 32}: total and each component within 5 %."""
    rng = np.random.default_rng(bx)
    worst = 0.0
    for bw in range(2, 9):
        for acc in (16, 24, 32):
            cfg = MacConfig(bx, bw, acc, signed, signed)
            x, w = _uniform(cfg, rng)
            sim = mean_toggles(x, w, cfg)
            ana = bitflips_mac(bx, bw, acc, signed, FAN_IN).as_dict()
            for c in (*COMPONENTS, "total"):
                if sim[c] > 0.05:
                    err = abs(ana[c] - sim[c]) / sim[c]
                    worst = max(worst, err)
                    assert err < 0.05, (bx, bw, acc, signed, c, ana[c], sim[c])
                else:
                    assert ana[c] < 0.06
    print(f"b_x={bx} signed={signed}: worst analytic-vs-simulated error {worst:.2%}")


def test_analytic_with_measured_statistics_relu_and_gaussian_codes():
    """Non-uniform i.i.d. codes (ReLU zeros, Gaussian weights): the measured-statistics model holds."""
    rng = np.random.default_rng(0)
    x = np.clip(np.rint(np.maximum(rng.normal(0, 4, (FAN_IN, UNITS)), 0)), 0, 15).astype(np.int16)
    w = np.clip(np.rint(rng.normal(0, 2.5, (FAN_IN, UNITS))), -8, 7).astype(np.int16)
    cfg = MacConfig(4, 4, 32, False, True)
    sim = mean_toggles(x, w, cfg)
    ana = bitflips_mac(4, 4, 32, fan_in=FAN_IN, x_stats=OperandStats.from_codes(x, 4, False),
                       w_stats=OperandStats.from_codes(w, 4, True)).as_dict()
    for c in (*COMPONENTS, "total"):
        assert ana[c] == pytest.approx(sim[c], rel=0.05, abs=0.02), c
    assert sim["total"] < bitflips_mac(4, 4, 32, fan_in=FAN_IN, x_stats=OperandStats.uniform(4, False),
                                       w_stats=OperandStats.uniform(4, True)).total


def test_signed_accumulation_costs_more_than_unsigned_of_same_magnitudes():
    """PANN Sec. 3: zero-mean signed products make the B-bit accumulator toggle far more than unsigned
    products of the same magnitudes (sign extension and sign changes of the running sum)."""
    rng = np.random.default_rng(1)
    for b in (4, 8):
        lim = (1 << (b - 1)) - 1
        x = rng.integers(-lim, lim + 1, (FAN_IN, UNITS)).astype(np.int16)
        w = rng.integers(-lim, lim + 1, (FAN_IN, UNITS)).astype(np.int16)
        s = mean_toggles(x, w, MacConfig(b, b, 32, True, True))
        u = mean_toggles(np.abs(x), np.abs(w), MacConfig(b, b, 32, False, False))
        acc_s, acc_u = s["acc_input"] + s["accumulator"], u["acc_input"] + u["accumulator"]
        ratio = acc_s / acc_u
        print(f"b={b}, B=32: accumulator toggles signed {acc_s:.2f} vs unsigned {acc_u:.2f} -> ratio {ratio:.2f}x")
        assert ratio > 2.0
        assert s["total"] > u["total"]


def test_accumulator_engine_matches_hand_computations():
    # adding 1 forever to a counter from 0: amortised ~2 flips per increment (1 + 1/2 + 1/4 + ...)
    r = bitflips_accumulator([1], [1.0], 1, 32, 1024)
    assert r["low"] + r["high"] == pytest.approx(2047 / 1024, rel=1e-6)
    # +1/-1 alternating is not independent; a symmetric +-1 random walk from 0 over 1 step: S goes 0 -> +-1
    r = bitflips_accumulator([-1, 1], [0.5, 0.5], 2, 16, 1)
    assert r["low"] + r["high"] == pytest.approx(0.5 * 16 + 0.5 * 1)


def test_weight_only_quantization_in_a_fixed_width_multiplier_saves_nothing_when_signed():
    """PANN Sec. 3 finding (as summarised in PAPERS.md): the multiplier's power follows its larger width.
    In an 8x8 unit fed 2-bit signed weights, sign extension makes every weight bit toggle like a full
    8-bit code, so the partial-product array toggles exactly as for 8-bit weights; zero-extended
    (unsigned) narrow weights do save. A dedicated 8x2 multiplier scales with b_x b_w."""
    full = bitflips_multiplier(8, 8, True)
    w2_signed = OperandStats.uniform(2, True).widened(8)
    fed = bitflips_multiplier(8, 8, x_stats=OperandStats.uniform(8, True), w_stats=w2_signed)
    assert fed["multiplier"] == pytest.approx(full["multiplier"])
    w2_unsigned = OperandStats.uniform(2, False).widened(8)
    fed_u = bitflips_multiplier(8, 8, x_stats=OperandStats.uniform(8, False), w_stats=w2_unsigned)
    assert fed_u["multiplier"] < 0.3 * full["multiplier"]
    assert bitflips_multiplier(8, 2)["multiplier"] == pytest.approx(3 / 8 * 16)
    # the simulator agrees: 2-bit signed weight codes in an 8x8 unit
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (FAN_IN, UNITS)).astype(np.int16)
    w = rng.integers(-2, 2, (FAN_IN, UNITS)).astype(np.int16)
    sim = mean_toggles(x, w, MacConfig(8, 8, 32, True, True))
    assert sim["multiplier"] == pytest.approx(fed["multiplier"], rel=0.02)


def test_repeated_additions_and_power_equivalence():
    add = [bitflips_repeated_addition(bx, 32, 4.0, 64)["total"] for bx in (2, 4, 8)]
    assert add[0] < add[1] < add[2]
    # unsigned repeated additions never extend a sign; signed ones do
    assert bitflips_repeated_addition(4, 32, 2.0, 64, signed=True)["acc_input"] > 5
    r8 = equivalent_additions(8, 4, 32, fan_in=64)
    r4 = equivalent_additions(4, 4, 32, fan_in=64)
    assert r8 > r4 > 1
    assert equivalent_additions(8, 2, 32, fan_in=64) > r8


def test_bad_arguments_give_one_line_errors():
    with pytest.raises(ConfigError, match="x_bits=0"):
        bitflips_mac(0, 4)
    with pytest.raises(ConfigError, match="acc_bits=12"):
        bitflips_mac(8, 8, 12)
    with pytest.raises(ConfigError, match="outside"):
        OperandStats.from_codes([0, 16], 4, False)
    with pytest.raises(ConfigError, match="fan_in"):
        bitflips_accumulator([1], [1.0], 1, 32, 0)
