"""Throughput of the gate-level toggle simulator (`pannjax.hw.gates.simulate`), in simulated operations per
second, on the default 8x8 -> 32-bit MAC and a 4-bit shift-accumulate unit (`pannjax.hw.gates.generators`).

    python scripts/bench_gates.py                      # 32768 lanes x 256 operations, one host device per core
    python scripts/bench_gates.py --lanes 8192 --ops 1024 --delays zero unit
    python scripts/bench_gates.py --devices=1          # one XLA host device
    python scripts/bench_gates.py --report             # also: the ResNet-20 report with simulate=true

Each (unit, delay) is called once untimed (compilation plus one run: "first call"), then timed over
`--repeats` calls of the same shapes (steady state, best call). "vs target" is the rate over the 2e7
operations/s target for the 8x8 MAC. Operand codes are uniform int8 in (time, lanes) layout.

`--report` times `pannjax.hw.report.build_report(..., simulate=True)` end to end, in a fresh process
state (every netlist compiled on the way): ResNet-20 (CIFAR, 4-bit weights and activations, MAC
operator, initialised weights) on a batch of `--report-batch` images of N(0, 1) pixels -- a timing
input, not data -- with the report's default sample of at most 2^21 MACs per layer. Target: 60 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

if __name__ == "__main__":  # host devices must be set before JAX starts: one per core by default
    _n = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--devices=")), str(os.cpu_count() or 1))
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={_n}")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from pannjax.hw.gates.simulate import simulate  # noqa: E402

TARGET = 2e7


def units():
    """(name, netlist, stream maker) of the benchmarked units."""
    if importlib.util.find_spec("pannjax.hw.gates.generators") is None:
        sys.exit("pannjax.hw.gates.generators is missing: no MAC or shift-accumulate netlist to benchmark")
    from pannjax.hw.gates import generators as gen

    def mac_streams(rng, t, lanes):
        return {"x": rng.integers(-128, 128, (t, lanes), dtype=np.int8),
                "w": rng.integers(-128, 128, (t, lanes), dtype=np.int8), "clear": np.zeros((t, lanes), np.int8)}

    def shift_streams(rng, t, lanes):
        return {"x": rng.integers(-8, 8, (t, lanes), dtype=np.int8),
                "sign": rng.choice(np.array([-1, 1], np.int8), (t, lanes)),
                "shift": rng.integers(0, 8, (t, lanes), dtype=np.int8), "clear": np.zeros((t, lanes), np.int8)}

    return [("mac 8x8->32", gen.mac_unit(8, 8, 32), mac_streams),
            ("shift 4-bit x, 3-bit shift ->32", gen.shift_accumulate_unit(4, 3, 32), shift_streams)]


def logic_depth(netlist) -> int:
    """Longest path in gates from an input, register output or constant."""
    level = {}
    for g in netlist.gates:
        level[g.output] = 1 + max((level.get(i, 0) for i in g.inputs), default=0)
    return max(level.values(), default=0)


def bench(netlist, streams, delay: str, repeats: int) -> tuple[float, float]:
    """(first call s, steady-state operations/s)."""
    t0 = time.perf_counter()
    result = simulate(netlist, streams, delay=delay)
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        simulate(netlist, streams, delay=delay)
        best = min(best, time.perf_counter() - t0)
    return first, result.operations / best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", type=int, default=32768)
    ap.add_argument("--ops", type=int, default=256, help="operations per lane")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--delays", nargs="+", default=["zero"], choices=["zero", "unit"])
    ap.add_argument("--devices", type=int, default=os.cpu_count(), help="XLA host devices (one thread each)")
    ap.add_argument("--report", action="store_true", help="also time the ResNet-20 report with simulate=true")
    ap.add_argument("--report-batch", type=int, default=128)
    args = ap.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores visible, "
          f"{jax.local_device_count()} host devices; {args.lanes} lanes x {args.ops} operations per call")
    print(f"{'unit':32s} {'gates':>6s} {'depth':>5s} {'delay':5s} {'first call s':>12s} {'ops/s':>10s} "
          f"{'vs target':>9s}")
    rng = np.random.default_rng(0)
    for name, netlist, make in units():
        streams = make(rng, args.ops, args.lanes)
        depth = logic_depth(netlist)
        for delay in args.delays:
            first, rate = bench(netlist, streams, delay, args.repeats)
            print(f"{name:32s} {len(netlist.gates):6d} {depth:5d} {delay:5s} {first:12.1f} {rate:10.3e} "
                  f"{rate / TARGET:9.2f}", flush=True)
        print(f"  gate counts: {netlist.gate_counts()}")
    if args.report:
        bench_report(args.report_batch)
    return 0


def bench_report(batch: int) -> None:
    """Wall time of the unified report with gate-level simulation for ResNet-20 (module docstring)."""
    from pannjax.hw.report import build_report
    from pannjax.models import build_model
    from pannjax.nn import ArithPolicy, LayerArith
    from pannjax.ops import MacOperator
    from pannjax.quant import UniformQuantizer

    policy = ArithPolicy(LayerArith(UniformQuantizer(4, signed=True, per_channel=True, step_mode="max"),
                                    UniformQuantizer(4, signed=None, step_mode="max"), MacOperator()))
    model = build_model("resnet", depth=20, num_classes=10, policy=policy)
    x = jax.random.normal(jax.random.key(0), (batch, 32, 32, 3))
    variables = model.init(jax.random.key(1), x[:1])
    t0 = time.perf_counter()
    rep = build_report(model, variables, x, simulate=True)
    wall = time.perf_counter() - t0
    simulated = sum(l.simulated_macs for l in rep.layers)
    print(f"ResNet-20 report, batch {batch}, simulate=true: {wall:.1f} s for {len(rep.layers)} layers, "
          f"{simulated:,} MACs simulated at gate level (target 60 s: {wall / 60:.2f} of it)")


if __name__ == "__main__":
    sys.exit(main())
