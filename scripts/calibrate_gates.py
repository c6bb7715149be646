"""Fit the gate-level toggle model to the simulator and validate it; writes the calibration table that ships
as `pannjax/hw/gates/data/gate_calibration.json.gz`.

    python scripts/calibrate_gates.py                       # the default grid (about 1 h 15 min on one core)
    python scripts/calibrate_gates.py --units mac add --acc-bits 32 --out /tmp/cal.json

An existing table at `--out` is updated (rows of other configurations are kept).

For every configuration (unit, b_x, b_w, B, signedness) the factors (k_dp, k_in, k_acc, k_ext, k_term, k_sub) of
`pannjax.hw.gates.model` are fitted on the uniform and DNN-like streams at fan-ins 16, 128 and 1024
(XNOR: 32, 128, 1024),
then the model is compared with fresh simulations at fan-ins 32 and 512 on both stream kinds (another
seed): every validation row (model, simulated, relative error) is stored with the factors, and the worst
row is printed.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import sys
import time
from pathlib import Path

import jax

from pannjax.hw.gates.model import (CALIBRATION_FAN_INS, config_key, default_stats, fit_factors, gate_factors_from,
                                    simulated_unit_toggles)

OUT = Path(__file__).resolve().parents[1] / "pannjax" / "hw" / "gates" / "data" / "gate_calibration.json.gz"
WIDTHS = range(2, 9)
SIGNEDNESS = ((False, True), (True, True), (False, False))  # (x, w): post-ReLU x signed w, both signed, both unsigned
VALIDATION_FAN_INS = (32, 512)
PANN_ADDITIONS = 2.0


def grid(units, acc_bits):
    """(unit, x_bits, w_bits, B, x_signed, w_signed, arch) of the default grid."""
    for unit in units:
        for b in acc_bits:
            if unit in ("mac", "absdiff", "mf"):
                for (xb, wb), (xs, ws) in itertools.product(itertools.product(WIDTHS, WIDTHS), SIGNEDNESS):
                    yield unit, xb, wb, b, xs, ws, None
            elif unit == "mult":  # rescaling multiplies at the activation width
                for xb, xs in itertools.product(WIDTHS, (False, True)):
                    yield unit, xb, xb, b, xs, xs, None
            elif unit == "add":
                for xb, arch, xs in itertools.product(WIDTHS, ("split", "signed"), (False, True)):
                    yield unit, xb, 8, b, xs, True, arch  # a signed x: the network's input, in sign-magnitude
            elif unit == "shift":
                for xb, wb, xs in itertools.product(WIDTHS, range(2, 5), (False, True)):
                    if xb + 2 ** (wb - 1) <= b:
                        yield unit, xb, wb, b, xs, True, None
            elif unit == "sign_select":
                for xb, xs in itertools.product(WIDTHS, (False, True)):
                    yield unit, xb, 1, b, xs, True, None
            elif unit == "xnor":
                yield unit, 1, 1, b, True, True, None


def validate(cfg, factors) -> list[dict]:
    unit, xb, wb, b, xs, ws, arch = cfg
    rows = []
    for kind, fan_in in itertools.product(("uniform", "dnn"), VALIDATION_FAN_INS):
        x_stats, w_stats = default_stats(unit, xb, xs, "x", kind), default_stats(unit, wb, ws, "w", kind)
        additions = PANN_ADDITIONS if unit == "add" else None
        sim = simulated_unit_toggles(unit, xb, wb, b, xs, ws, fan_in, x_stats, w_stats, arch, additions, seed=7)
        model = gate_factors_from(factors, unit, xb, wb, b, xs, ws, fan_in, x_stats, w_stats, arch, additions)
        rows.append({"streams": kind, "fan_in": fan_in, "simulated": round(sim["total"], 4),
                     "model": round(model["total"], 4), "rel_error": round(model["total"] / sim["total"] - 1.0, 5)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", nargs="+",
                    default=["mac", "add", "shift", "sign_select", "absdiff", "mf", "xnor", "mult"])
    ap.add_argument("--acc-bits", nargs="+", type=int, default=[16, 24, 32])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    out = Path(args.out)
    table = json.loads(gzip.decompress(out.read_bytes())) if out.is_file() else {}  # a partial run updates it
    factors, validation = table.get("factors", {}), table.get("validation", {})
    t0 = time.perf_counter()
    for n, cfg in enumerate(grid(args.units, args.acc_bits)):
        if n and n % 50 == 0:  # every stream shape compiles once: free the executables of finished ones
            jax.clear_caches()
            write(out, factors, validation)
        unit, xb, wb, b, xs, ws, arch = cfg
        k = fit_factors(unit, xb, wb, b, xs, ws, arch)
        key = config_key(unit, xb, wb, b, xs, ws, arch)
        factors[key] = [round(v, 6) for v in k]
        validation[key] = validate(cfg, k)
        worst = max(validation[key], key=lambda r: abs(r["rel_error"]))
        print(f"{key:32s} k=({', '.join(f'{v:.3f}' for v in k)})  worst {worst['rel_error']:+.3f} "
              f"({worst['streams']}, fan_in {worst['fan_in']})  {time.perf_counter() - t0:.0f}s", flush=True)
    key, worst = write(out, factors, validation)
    print(f"{len(factors)} configurations, worst validation row: {key} {worst}")
    return 0


def write(out: Path, factors: dict, validation: dict) -> tuple[str, dict]:
    """Write the table (factors, every validation row, the worst row); returns the worst row."""
    rows = [(key, r) for key, rs in validation.items() for r in rs]
    key, worst = max(rows, key=lambda kr: abs(kr[1]["rel_error"]))
    out.write_bytes(gzip.compress(json.dumps({
        "fit": {"fan_ins": list(CALIBRATION_FAN_INS), "streams": ["uniform", "dnn"], "pann_additions": PANN_ADDITIONS},
        "validation_fan_ins": list(VALIDATION_FAN_INS), "factors": dict(sorted(factors.items())),
        "validation": dict(sorted(validation.items())), "worst": {"config": key, **worst}},
        separators=(",", ":")).encode(), mtime=0))
    return key, worst


if __name__ == "__main__":
    sys.exit(main())
