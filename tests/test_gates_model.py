"""The calibrated gate-level toggle model (`unit_toggles(model="gates")`) against the gate-level simulator."""

import numpy as np
import pytest

from pannjax.hw import equivalent_additions, unit_toggles
from pannjax.hw.gates.model import (calibration_table, config_key, default_stats, fit_factors, gate_factors_from,
                                    shipped_factors, simulated_unit_toggles)

TOLERANCE = 0.10  # every unit, every shipped configuration, both stream kinds


def _table():
    return calibration_table()


def test_shipped_calibration_against_the_simulator_on_every_row(capsys):
    """Validation rows (fan-ins other than the fit's, another seed) of every shipped configuration: the table
    is printed with its worst row per unit; within 10 % on every row. Every unit is shipped at B = 16, 24, 32."""
    table = _table()
    rows = [(key, r) for key, rs in table["validation"].items() for r in rs]
    assert len(table["factors"]) >= 700 and len(rows) == 4 * len(table["factors"])
    units = sorted({key.split("|")[0] for key, _ in rows})
    assert set(units) >= {"mac", "mult", "add", "shift", "sign_select", "absdiff", "mf", "xnor"}
    for unit in units:
        assert {int(k.split("|")[3]) for k in table["factors"] if k.startswith(unit + "|")} == {16, 24, 32}, unit
    with capsys.disabled():
        print(f"\ngate model vs simulator: {len(rows)} rows, {len(table['factors'])} configurations")
        print(f"{'unit':12s} {'rows':>5s} {'mean |err|':>10s} {'worst':>7s}  worst row")
        for unit in units:
            mine = [(k, r) for k, r in rows if k.startswith(unit + "|")]
            key, worst = max(mine, key=lambda kr: abs(kr[1]["rel_error"]))
            mean = np.mean([abs(r["rel_error"]) for _, r in mine])
            print(f"{unit:12s} {len(mine):5d} {mean:10.4f} {worst['rel_error']:+7.3f}  {key} {worst['streams']} "
                  f"fan_in={worst['fan_in']} model {worst['model']:.2f} simulated {worst['simulated']:.2f}")
    for unit in units:
        worst = max(abs(r["rel_error"]) for k, r in rows if k.startswith(unit + "|"))
        assert worst <= TOLERANCE, (unit, worst)


@pytest.mark.parametrize("key", ["mac|4|4|32|0|1|", "add|3|8|32|0|1|split", "shift|4|4|32|1|1|"])
def test_shipped_rows_are_real_simulations(key):
    """Re-simulating a shipped validation row gives the stored figure (same seed), and the model gives the
    stored model figure from the shipped factors."""
    unit, xb, wb, b, xs, ws, arch = key.split("|")
    xb, wb, b, xs, ws, arch = int(xb), int(wb), int(b), bool(int(xs)), bool(int(ws)), arch or None
    row = next(r for r in _table()["validation"][key] if r["streams"] == "dnn" and r["fan_in"] == 32)
    x, w = default_stats(unit, xb, xs, "x", "dnn"), default_stats(unit, wb, ws, "w", "dnn")
    additions = 2.0 if unit == "add" else None
    sim = simulated_unit_toggles(unit, xb, wb, b, xs, ws, 32, x, w, arch, additions, seed=7)
    assert sim["total"] == pytest.approx(row["simulated"], rel=1e-5)
    model = gate_factors_from(shipped_factors()[key], unit, xb, wb, b, xs, ws, 32, x, w, arch, additions)
    assert model["total"] == pytest.approx(row["model"], rel=1e-5)
    assert unit_toggles(unit, xb, wb, b, xs, ws, 32, "gates", x_stats=x, w_stats=w, arch=arch,
                        additions=additions)["total"] == pytest.approx(row["model"], rel=1e-5)


def test_an_unshipped_configuration_is_fitted_on_demand():
    key = config_key("mac", 3, 5, 20, True, True, None)
    assert key not in shipped_factors()
    factors = fit_factors("mac", 3, 5, 20, True, True)
    assert all(f >= 0 for f in factors)
    sim = simulated_unit_toggles("mac", 3, 5, 20, True, True, 100, seed=11)["total"]
    assert unit_toggles("mac", 3, 5, 20, True, True, 100, "gates")["total"] == pytest.approx(sim, rel=TOLERANCE)


def test_gates_count_the_logic_the_register_model_leaves_out():
    """A whole MAC toggles about 3-4x its registers; the multiplier's logic grows faster with the width than
    an adder's, so the MAC-vs-additions exchange rate is smaller than the register model says."""
    ratio = {b: unit_toggles("mac", b, b, 32, False, False, 256, "gates")["total"]
             / unit_toggles("mac", b, b, 32, False, False, 256, "registers")["total"] for b in (2, 4, 8)}
    assert 2.0 < ratio[2] < ratio[8] < 6.0, ratio
    for b in (2, 4, 8):
        gates = equivalent_additions(b, 4, 32, mac_signed=False, fan_in=256, model="gates")
        registers = equivalent_additions(b, 4, 32, mac_signed=False, fan_in=256, model="registers")
        assert gates < registers, (b, gates, registers)
