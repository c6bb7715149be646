"""Benchmark: the sensitivity pass of `search=sensitivity` on ResNet-20 shapes (CIFAR, 32x32x3), batch 64,
4 candidates per layer: wall time of `pannjax.search.sensitivity.sensitivities` for each measure, compile
included (what a run pays once after its supernet training), on a freshly initialised supernet (the cost
depends on shapes only).

    python scripts/bench_sensitivity.py [--batch 64] [--batches 4] [--samples 8]
    python scripts/bench_sensitivity.py --quick                     # smoke: ResNet-8, batch 8, 1 batch

measure=loss runs one forward pass per layer and non-reference candidate per batch (plus the reference);
measure=hessian runs `--samples` Hutchinson probes per batch (a reverse-over-reverse Hessian-vector product
each) and one forward pass for the rounded weights. Our target on 2 CPU cores: each under 2 minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import numpy as np
from bench_search import CANDIDATES

from pannjax.data.base import Dataset
from pannjax.models import build_model
from pannjax.search import SearchConfig, build_search_space, energy_model
from pannjax.search.loop import create_search_state
from pannjax.search.sensitivity import sensitivities, supernet_config
from pannjax.train import OptimizerConfig, make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=4, help="search.sensitivity_batches")
    parser.add_argument("--samples", type=int, default=8, help="search.hutchinson_samples")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--use", default="mac8,mac4,shift4,bwn", help="4 digital linear candidates (hessian)")
    parser.add_argument("--quick", action="store_true", help="ResNet-8, batch 8, 1 batch, 2 samples (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.batches, args.samples, args.depth = 8, 1, 2, 8
    space = build_search_space(CANDIDATES, args.use.split(","), "mac8")

    def resnet(policy):
        return build_model("resnet", depth=args.depth, num_classes=10, policy=policy)

    rng = np.random.default_rng(0)
    n = args.batch * args.batches
    data = Dataset(name="random", train_images=rng.standard_normal((n, 32, 32, 3), dtype=np.float32),
                   train_labels=rng.integers(0, 10, n).astype(np.int32),
                   test_images=np.zeros((1, 32, 32, 3), np.float32), test_labels=np.zeros(1, np.int32),
                   num_classes=10)
    base = SearchConfig(variant="sensitivity", energy_budget=0.5, sensitivity_batches=args.batches,
                        hutchinson_samples=args.samples)
    tx = make_optimizer(OptimizerConfig(), total_steps=1000, steps_per_epoch=100)
    state = create_search_state(resnet(space.reference_policy()), space, supernet_config(base), tx,
                                data.train_images[:args.batch], 0)
    order = energy_model(resnet, space, (32, 32, 3)).order
    seconds = {}
    for measure in ("loss", "hessian"):
        t = time.perf_counter()
        table = sensitivities(state, resnet(space.reference_policy()), data, space, order,
                              dataclasses.replace(base, sensitivity_measure=measure), args.batch, 0)
        seconds[measure] = time.perf_counter() - t
        assert all(np.isfinite(v).all() for v in table.values())
    print(f"ResNet-{args.depth}, batch {args.batch}, {len(order)} layers x {len(space.names)} candidates "
          f"({', '.join(space.names)}), {args.batches} batches, {args.samples} Hutchinson probes per batch, "
          f"{jax.device_count()} device(s)")
    for measure, s in seconds.items():
        print(f"sensitivity pass, measure={measure:8s} {s:7.1f} s (compile included; target < 120 s)")
    print(json.dumps({"seconds": seconds, "batch": args.batch, "depth": args.depth, "layers": len(order)}))


if __name__ == "__main__":
    main()
