"""Benchmark: integer-only inference of ResNet-20 (CIFAR shapes, batch 128) by the exported program
(`pannjax.export.run_codes`) against the fake-quant float evaluation of the same network, measured in one
run on the same cores.

    .venv/bin/python scripts/bench_export.py [--batch 128] [--steps 10] [--op mac|shift]

Random weights and inputs (only shapes matter for speed); 4-bit weights and activations, 8-bit first and
last layers. Both forwards are jit-compiled; the median of `--steps` timed calls after one warm-up call,
the two timed round-robin so load drift hits them alike.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from pannjax.build import build_policy
from pannjax.export import build_program, run_codes
from pannjax.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--op", default="mac", choices=["mac", "shift"])
    args = ap.parse_args()
    quant = {"name": "pot" if args.op == "shift" else "uniform", "w_bits": 4, "x_bits": 4, "first_last": "int8"}
    model = build_model("resnet", depth=20, num_classes=10, policy=build_policy(quant, {"name": args.op}))
    images = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (args.batch, 32, 32, 3)), jnp.float32)
    variables = jax.jit(lambda k: model.init(k, images[:2], train=False))(jax.random.key(0))
    program = build_program(model, variables, images[:2])
    fake_quant = jax.jit(lambda x: model.apply(variables, x, train=False))

    def integer(x):
        return run_codes(program, x)[0]

    calls = {"fake-quant float": fake_quant, "integer program": integer}
    times = {name: [] for name in calls}
    for fn in calls.values():
        jax.block_until_ready(fn(images))
    for _ in range(args.steps):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(images))
            times[name].append(time.perf_counter() - t0)
    rates = {}
    for name, ts in times.items():
        ms = 1e3 * float(np.median(ts))
        rates[name] = args.batch / (ms / 1e3)
        print(f"{name:18s} {ms:9.1f} ms/batch  {rates[name]:9.1f} img/s")
    print(f"integer / fake-quant throughput: {rates['integer program'] / rates['fake-quant float']:.2f}  "
          f"(ResNet-20, batch {args.batch}, op={args.op}, {jax.devices()[0].platform}, {jax.local_device_count()} device)")


if __name__ == "__main__":
    main()
