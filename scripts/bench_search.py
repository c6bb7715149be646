"""Benchmark: ENOS search-step time on ResNet-20 shapes (CIFAR, 32x32x3) with 4 candidates per layer,
each divided by the plain all-MAC (8-bit uniform MAC) train-step time, measured in one run (interleaved
medians, scripts/bench_qat.py).

    python scripts/bench_search.py [--batch 64] [--rounds 10]        # full
    python scripts/bench_search.py --use mac8,mac4,shift4,bwn         # another candidate set
    python scripts/bench_search.py --quick                            # smoke: ResNet-8, batch 8, 2 rounds

A single-path (variational) step runs one contraction per contraction group of the candidates
(`pannjax.search.layers.contraction_groups`): linear operators share one (its crossbar chunks run forward
when an analog member is sampled, `pannjax.ops.in_memory.crossbar_contraction`); a non-linear operator (MF,
XNOR, adder) adds its own, evaluated every step (masked). For each analog candidate the plain train step
of the all-analog network is timed too: the cost of a path through the crossbar model alone.

Rows: single-level (all 4 candidates evaluated and mixed), bi-level first order (one alpha step on a
held-out batch + one weight step), variational (one sampled path per layer), and variational under an energy
budget (dual ascent on lambda in the step). Our targets on 2 CPU cores: variational <= 1.5 x all-MAC;
bi-level <= 2 x single-level; budgeted variational <= 1.05 x unbudgeted. Random inputs; only shapes matter.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
from bench_qat import interleaved_medians

from pannjax.models import build_model
from pannjax.search import SearchConfig, build_search_space, energy_model, make_search_step
from pannjax.search.loop import create_search_state
from pannjax.train import OptimizerConfig, create_train_state, make_optimizer, make_train_step

CANDIDATES = {
    "mac8": {"quant": {"name": "uniform", "w_bits": 8, "x_bits": 8}, "op": {"name": "mac"}},
    "mac4": {"quant": {"name": "uniform", "w_bits": 4, "x_bits": 4}, "op": {"name": "mac"}},
    "shift4": {"quant": {"name": "pot", "w_bits": 4, "x_bits": 8}, "op": {"name": "shift"}},
    "mac8_cim": {"quant": {"name": "uniform", "w_bits": 8, "x_bits": 8},
                 "op": {"name": "mac", "mode": {"kind": "aimc", "adc_bits": 6}}},
    "bwn": {"quant": {"name": "uniform", "w_bits": 8, "x_bits": 8}, "op": {"name": "bwn"}},
    "mf": {"quant": {"name": "uniform", "w_bits": 8, "x_bits": 8}, "op": {"name": "mf"}},
}
DEFAULT_USE = "mac8,mac4,shift4,mac8_cim"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--use", default=DEFAULT_USE,
                        help=f"comma-separated candidates among {', '.join(CANDIDATES)} (default {DEFAULT_USE})")
    parser.add_argument("--quick", action="store_true", help="ResNet-8, batch 8, 2 rounds (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.rounds, args.depth = 8, 2, 8
    space = build_search_space(CANDIDATES, args.use.split(","), "mac8")

    def resnet(policy):
        return build_model("resnet", depth=args.depth, num_classes=10, policy=policy)

    rng = np.random.default_rng(0)
    batches = [{"image": rng.standard_normal((args.batch, 32, 32, 3), dtype=np.float32),
                "label": rng.integers(0, 10, args.batch).astype(np.int32)} for _ in range(2)]
    tx = make_optimizer(OptimizerConfig(), total_steps=1000, steps_per_epoch=100)
    energy = energy_model(resnet, space, (32, 32, 3))

    plain_step = make_train_step(None)
    holder = {"plain": create_train_state(resnet(space.reference_policy()), tx, batches[0]["image"], 0)}

    def run_plain():
        holder["plain"], m = plain_step(holder["plain"], batches[0])
        jax.block_until_ready(m["loss"])

    steps = {"all-MAC train step": run_plain}
    for i, cand in enumerate(space.candidates):  # an analog candidate's own network: what a path through it costs alone
        if cand.arith.operator.analog:
            holder[cand.name] = create_train_state(resnet(space.uniform_policy(i)), tx, batches[0]["image"], 0)

            def run_uniform(name=cand.name):
                holder[name], m = plain_step(holder[name], batches[0])
                jax.block_until_ready(m["loss"])

            steps[f"all-{cand.name} train step"] = run_uniform
    for variant, budget in (("single", None), ("bilevel", None), ("variational", None), ("variational", 0.5)):
        cfg = SearchConfig(variant=variant, lam=0.3, energy_budget=budget)
        name = variant if budget is None else f"{variant}, budget"
        state = create_search_state(resnet(space.reference_policy()), space, cfg, tx, batches[0]["image"], 0)
        step = make_search_step(cfg, energy, energy.tree(state.alpha), 1000, 0)
        holder[name] = state

        def run(name=name, step=step):
            args_ = (batches[0], batches[1]) if name == "bilevel" else (batches[0],)
            holder[name], m = step(holder[name], *args_)
            jax.block_until_ready(m["loss"])

        steps[name] = run
    t0 = time.perf_counter()
    med = interleaved_medians(steps, args.rounds)
    base = med["all-MAC train step"]
    ratios = {k: v / base for k, v in med.items()}
    print(f"ResNet-{args.depth}, batch {args.batch}, {len(space.candidates)} candidates/layer "
          f"({', '.join(space.names)}), {jax.device_count()} device(s), {args.rounds} rounds")
    print(f"{'step':24s} {'median ms':>10s} {'/ all-MAC':>10s}")
    for k, v in med.items():
        print(f"{k:24s} {1e3 * v:10.1f} {ratios[k]:10.2f}")
    budgeted = med["variational, budget"] / med["variational"]
    print(f"bilevel / single = {med['bilevel'] / med['single']:.2f} (target <= 2); "
          f"variational / all-MAC = {ratios['variational']:.2f} (target <= 1.5); "
          f"variational with an energy budget / without = {budgeted:.3f} (target <= 1.05)")
    print(json.dumps({"median_seconds": med, "ratio_to_all_mac": ratios,
                      "bilevel_over_single": med["bilevel"] / med["single"], "budgeted_over_unbudgeted": budgeted,
                      "batch": args.batch,
                      "depth": args.depth, "bench_seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
