"""Benchmark: forward+backward time and peak memory of every operator on ResNet-20 CIFAR conv shapes,
divided by the MAC operator's, measured in one run on the same cores.

    .venv/bin/python scripts/bench_ops.py [--rounds 7] [--batch 128] [--quick]

For each operator and each shape (batch 128, 3x3 kernels, stride 1, SAME: 32x32x16->16, 16x16x32->32,
8x8x64->64) one jitted function computes d/d(x, w) of sum(g * op.conv(x, w)) (g, the incoming output gradient,
is an argument) -- the forward pass and
both backward contractions of a training step. Repetitions are interleaved round-robin over all
(operator, shape) pairs and the median is taken (`interleaved_medians` of scripts/bench_qat.py), so
machine-load drift hits every entry alike. The time ratio is sum over shapes of the operator's median
divided by the same sum for MAC.

Peak memory is XLA's buffer assignment of the compiled function, `memory_analysis()`: arguments +
outputs + temporaries (bytes live at once are bounded by that sum); scratch memory that a library
kernel (e.g. the Eigen convolution) allocates internally is not included. The largest shape is reported.
Timing uses random inputs; nothing here is a training result.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_qat import interleaved_medians  # noqa: E402

from pannjax.build import build_operator  # noqa: E402

OPERATORS = ("mac", "adder", "mf", "bwn", "xnor", "shift")
SHAPES = ((32, 16), (16, 32), (8, 64))  # (spatial size, channels) of ResNet-20's three stages
TARGETS = {"adder": 4.0, "mf": 2.5, "bwn": 1.5, "xnor": 1.5, "shift": 1.2}
ADDER_MEMORY_TARGET = 2.0


def fwd_bwd(op_name: str, batch: int, size: int, channels: int) -> tuple[Callable[[], None], int]:
    """A closure running one jitted forward+backward of `op_name` on one shape, and its peak bytes."""
    op = build_operator({"name": op_name})
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (batch, size, size, channels))
    w = 0.1 * jax.random.normal(keys[1], (3, 3, channels, channels))
    g = jax.random.normal(keys[2], (batch, size, size, channels))
    step = jax.jit(jax.grad(lambda x, w, g: jnp.sum(g * op.conv(x, w, (1, 1), "SAME", 1)), (0, 1)))
    mem = step.lower(x, w, g).compile().memory_analysis()
    peak = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes

    def run() -> None:
        jax.block_until_ready(step(x, w, g))

    return run, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 8, 2 rounds")
    args = parser.parse_args()
    batch, rounds = (8, 2) if args.quick else (args.batch, args.rounds)
    threads = len(os.sched_getaffinity(0))
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {threads} cores, batch {batch}, "
          f"{rounds} interleaved rounds")
    steps, peaks = {}, {}
    for name in OPERATORS:
        for size, channels in SHAPES:
            steps[name, size], peaks[name, size] = fwd_bwd(name, batch, size, channels)
    t = interleaved_medians(steps, rounds)
    total = {name: sum(t[name, size] for size, _ in SHAPES) for name in OPERATORS}
    big = SHAPES[0][0]
    print("\n| operator | " + " | ".join(f"{s}x{s}x{c} ms" for s, c in SHAPES)
          + " | time / MAC | target | peak MB (32x32x16) | peak / MAC |")
    print("|---|" + "---|" * (len(SHAPES) + 4))
    for name in OPERATORS:
        ratio, mem_ratio = total[name] / total["mac"], peaks[name, big] / peaks["mac", big]
        target = f"<= {TARGETS[name]}" if name in TARGETS else "reference"
        if name == "adder":
            target += f" (mem <= {ADDER_MEMORY_TARGET})"
        cells = " | ".join(f"{t[name, s] * 1e3:.1f}" for s, _ in SHAPES)
        print(f"| {name} | {cells} | {ratio:.2f} | {target} | {peaks[name, big] / 2**20:.1f} | {mem_ratio:.2f} |")


if __name__ == "__main__":
    main()
