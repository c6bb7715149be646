"""`unit_toggles`: the register model of every unit, held against a direct count of register flips."""

import numpy as np
import pytest

from pannjax.errors import ConfigError
from pannjax.hw import unit_toggles
from pannjax.hw.bitflips import OperandStats, bitflips_mac, bitflips_repeated_addition
from pannjax.pann.power import pann_toggles


def _flips(a: np.ndarray, bits: int) -> float:
    """Mean popcount((a_t XOR a_{t-1}) mod 2^bits) over a time-major (T, lanes) stream starting from 0."""
    prev = np.vstack([np.zeros((1, a.shape[1]), np.int64), a[:-1]])
    return float(np.mean(np.bitwise_count((a ^ prev) & ((1 << bits) - 1))))


def _term_unit_flips(x, w_code, term, x_bits, w_bits, term_bits, acc_bits, fan_in):
    """Register flips of x, w, term and the B-bit accumulator over streams of whole outputs (acc from 0)."""
    t = np.asarray(term(x, w_code), np.int64)
    acc = np.cumsum(t.reshape(-1, fan_in, t.shape[1]), axis=1).reshape(t.shape)
    acc_prev = np.concatenate([np.zeros((1, t.shape[1]), np.int64), acc[:-1]])
    acc_prev[::fan_in] = 0  # a new output starts from 0 (the register model's convention)
    acc_flips = float(np.mean(np.bitwise_count((acc ^ acc_prev) & ((1 << acc_bits) - 1))))
    ext = float(np.mean(np.bitwise_count((np.right_shift(t, term_bits) ^ np.right_shift(
        np.vstack([np.zeros((1, t.shape[1]), np.int64), t[:-1]]), term_bits)) & ((1 << (acc_bits - term_bits)) - 1))))
    return _flips(x, x_bits) + _flips(w_code, w_bits) + _flips(t, term_bits) + ext + acc_flips


@pytest.mark.parametrize("unit", ["sign_select", "shift", "absdiff", "mf"])
def test_term_units_match_a_direct_count_of_register_flips(unit):
    rng = np.random.default_rng(0)
    x_bits, w_bits, acc_bits, fan_in = 4, 3, 24, 32
    x = rng.integers(-8, 8, (fan_in * 40, 256))
    if unit == "sign_select":
        w, wb, tb = rng.integers(0, 2, x.shape), 1, x_bits + 1
        term = lambda a, c: a * (1 - 2 * c)  # noqa: E731
    elif unit == "shift":
        m = 3
        w, wb, tb = rng.integers(0, 8, x.shape), w_bits, x_bits + m + 1
        term = lambda a, c: (1 - 2 * (c >> 2)) * a * (1 << (m - (c & m)))  # noqa: E731
    else:
        w, wb, tb = rng.integers(-4, 4, x.shape), w_bits, max(x_bits, w_bits) + 2
        term = (lambda a, c: -np.abs(a - c)) if unit == "absdiff" else \
            (lambda a, c: np.sign(a) * np.abs(c) + np.sign(c) * np.abs(a))
    counted = _term_unit_flips(x, w, term, x_bits, wb, tb, acc_bits, fan_in)
    modelled = unit_toggles(unit, x_bits, w_bits, acc_bits, True, True, fan_in, "registers")["total"]
    assert modelled == pytest.approx(counted, rel=0.02)


def test_mac_and_repeated_addition_are_the_bitflips_models():
    assert unit_toggles("mac", 6, 4, 32, False, True, 100, "registers")["total"] == pytest.approx(
        bitflips_mac(6, 4, 32, fan_in=100, x_stats=OperandStats.uniform(6, False),
                     w_stats=OperandStats.uniform(4, True)).total)
    per_add = unit_toggles("add", 4, 8, 32, True, True, 64, "registers", arch="signed", additions=3.0)["total"]
    assert per_add == pytest.approx(bitflips_repeated_addition(4, 32, 3.0, 64, True,
                                                               x_stats=OperandStats.uniform(4, True))["total"])
    assert pann_toggles(4, 3.0, 64, 32, "signed", True, "registers") == pytest.approx(3.0 * per_add)


def test_split_accumulation_of_signed_inputs_runs_in_sign_magnitude():
    """|x| of a signed input is unsigned: no sign-extension flips, far fewer than one signed accumulator."""
    split = unit_toggles("add", 4, 8, 32, True, True, 64, "registers", arch="split", additions=2.0)
    signed = unit_toggles("add", 4, 8, 32, True, True, 64, "registers", arch="signed", additions=2.0)
    assert split["acc_input"] == 0.0 and signed["acc_input"] > 5
    assert split["total"] < 0.6 * signed["total"]


def test_xnor_words_and_errors():
    d = unit_toggles("xnor", 1, 1, 16, True, True, 64, "registers")  # two 32-bit words per output
    assert d["inputs"] == 64 and d["xnor"] == 32 and d["accumulator"] > 0
    with pytest.raises(ConfigError, match="unit='divide'"):
        unit_toggles("divide", 4, 4, 32, True, True, 8)
    with pytest.raises(ConfigError, match="model='spice'"):
        unit_toggles("mac", 4, 4, 32, True, True, 8, model="spice")
    with pytest.raises(ConfigError, match="fan_in=0"):
        unit_toggles("mac", 4, 4, 32, True, True, 0)
