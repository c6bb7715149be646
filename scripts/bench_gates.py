"""Throughput of the gate-level toggle simulator (`pannjax.hw.gates.simulate`), in simulated operations per
second, for the default (yosys-synthesised) 8x8 -> 32-bit MAC and a 4-bit shift-accumulate unit.

    python scripts/bench_gates.py                          # both engines, 32768 lanes x 128 operations
    python scripts/bench_gates.py --lanes 8192 --ops 256 --engines interpreted

Each (unit, engine) is run once untimed (compilation) and then timed over `--repeats` calls; the printed
ratio is the measured rate over the 2e7 operations/s target for the 8x8 MAC. One run, numbers measured
in that run only.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from pannjax.hw.gates import generators as gen
from pannjax.hw.gates.simulate import ENGINES, simulate

TARGET = 2e7


def units() -> dict[str, tuple]:
    mac = gen.mac_unit(8, 8, 32)
    shift = gen.shift_accumulate_unit(4, 3, 32)  # 4-bit activations, 4-bit PoT weights (M = 7)

    def mac_streams(rng, t, lanes):
        return {"x": rng.integers(-128, 128, (t, lanes)), "w": rng.integers(-128, 128, (t, lanes)),
                "clear": np.zeros((t, lanes), np.int64)}

    def shift_streams(rng, t, lanes):
        return {"x": rng.integers(-8, 8, (t, lanes)), "sign": rng.choice([-1, 1], (t, lanes)),
                "shift": rng.integers(0, 8, (t, lanes)), "clear": np.zeros((t, lanes), np.int64)}

    return {"mac 8x8->32": (mac, mac_streams), "shift 4-bit->32": (shift, shift_streams)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", type=int, default=32768)
    ap.add_argument("--ops", type=int, default=128, help="operations per lane")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'unit':18s} {'gates':>6s} {'engine':12s} {'compile+1st s':>14s} {'ops/s':>10s} {'x target':>8s}")
    for name, (netlist, make) in units().items():
        streams = make(rng, args.ops, args.lanes)
        for engine in args.engines:
            t0 = time.perf_counter()
            simulate(netlist, streams, engine=engine)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                simulate(netlist, streams, engine=engine)
            rate = args.repeats * args.ops * args.lanes / (time.perf_counter() - t0)
            print(f"{name:18s} {len(netlist.gates):6d} {engine:12s} {first:14.1f} {rate:10.3e} {rate / TARGET:8.2f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
