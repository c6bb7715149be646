"""Throughput of the bit-accurate toggle simulator, in simulated MACs per second.

    python scripts/bench_toggle_sim.py                 # 4x4 and 8x8 MACs, 8192 units x 576-long dot products
    python scripts/bench_toggle_sim.py --units 16384 --fan-in 256 --repeats 5
    python scripts/bench_toggle_sim.py --devices=1     # one XLA host device (one thread)

Operands are int8 codes in (time, units) layout, as `pannjax.hw.report` feeds them; each configuration
is compiled once (not timed) and then timed over `--repeats` calls of `toggle_counts`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if __name__ == "__main__":  # host devices must be set before JAX starts: one per core by default
    _n = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--devices=")), str(os.cpu_count() or 1))
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={_n}")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from pannjax.hw.toggle_sim import MacConfig, toggle_counts  # noqa: E402


def bench(cfg: MacConfig, units: int, fan_in: int, repeats: int, partial_products: bool) -> float:
    rng = np.random.default_rng(0)
    lo, hi = cfg.code_range("x")
    x = rng.integers(lo, hi + 1, (fan_in, units)).astype(np.int8)
    lo, hi = cfg.code_range("w")
    w = rng.integers(lo, hi + 1, (fan_in, units)).astype(np.int8)
    if jax.local_device_count() > 1 and units % jax.local_device_count() == 0:
        mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("units",))
        sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "units"))
        x, w = jax.device_put(x, sh), jax.device_put(w, sh)
    else:
        x, w = jax.device_put(x), jax.device_put(w)
    toggle_counts(x, w, cfg, count_partial_products=partial_products).block_until_ready()
    t = time.perf_counter()
    for _ in range(repeats):
        toggle_counts(x, w, cfg, count_partial_products=partial_products).block_until_ready()
    return units * fan_in * repeats / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=8192)
    ap.add_argument("--fan-in", type=int, default=576)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--devices", type=int, default=os.cpu_count(), help="XLA host devices (one thread each)")
    args = ap.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores visible, "
          f"{jax.local_device_count()} host devices; "
          f"{args.units} units x {args.fan_in} MACs per call")
    for cfg in (MacConfig(4, 4, 32, False, True), MacConfig(8, 8, 32, True, True), MacConfig(2, 2, 16, False, True)):
        for pp in (True, False):
            rate = bench(cfg, args.units, args.fan_in, args.repeats, pp)
            print(f"  {cfg.x_bits}x{cfg.w_bits} -> acc{cfg.acc_bits} "
                  f"{'unsigned x, ' if not cfg.x_signed else ''}"
                  f"partial products {'on ' if pp else 'off'}: {rate:.3e} simulated MAC/s")


if __name__ == "__main__":
    main()
