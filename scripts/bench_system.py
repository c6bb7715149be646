"""Benchmark: the full per-layer report of ResNet-20 (CIFAR shapes, 4-bit weights and activations, 8-bit
first and last layers) on an accelerator, cold (empty mapping cache: ZigZag maps every distinct layer) and
warm (a new process's view: the in-memory cache emptied, the disk cache kept), measured in one run.

    .venv/bin/python scripts/bench_system.py [--accelerator edge] [--depth 20]

Targets: cold <= 120 s, warm <= 2 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import yaml

from pannjax.build import build_policy
from pannjax.hw import system
from pannjax.hw.report import build_report
from pannjax.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accelerator", default="edge")
    ap.add_argument("--depth", type=int, default=20)
    args = ap.parse_args()
    quant = {"name": "uniform", "w_bits": 4, "x_bits": 4, "first_last": "int8"}
    model = build_model("resnet", num_classes=10, policy=build_policy(quant, {"name": "mac"}), depth=args.depth)
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    variables = model.init(jax.random.key(0), jnp.zeros(x.shape), train=False)
    options = yaml.safe_load((system.ACCELERATORS_DIR / f"{args.accelerator}.yaml").read_text())
    with tempfile.TemporaryDirectory() as cache:
        accelerator = system.AcceleratorConfig(**options, cache_dir=cache)
        times = {}
        for run in ("cold", "warm"):
            system._MEMORY.clear()
            t0 = time.perf_counter()
            report = build_report(model, variables, x, accelerator=accelerator)
            times[run] = time.perf_counter() - t0
    t = report.totals()
    print(f"ResNet-{args.depth} on {args.accelerator}: {len(report.layers)} layers, compute "
          f"{t['energy_compute_pJ'] / 1e6:.3f} uJ + memory {t['energy_memory_pJ'] / 1e6:.3f} uJ per example, "
          f"{t['latency_cycles']:.0f} cycles")
    print(f"cold {times['cold']:.1f} s (target <= 120), warm {times['warm']:.2f} s (target <= 2); "
          f"cold / warm = {times['cold'] / times['warm']:.0f}x")


if __name__ == "__main__":
    main()
