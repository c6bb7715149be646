"""Benchmark: ResNet-20 (CIFAR shapes, batch 128) train-step time with 4-bit fake-quantized weights and
activations divided by the float step time, measured in one run on the same cores.

    .venv/bin/python scripts/bench_qat.py [--steps 20] [--batch 128] [--brevitas]

With the optional peer installed (`pip install -e ".[peers]"`: PyTorch + Brevitas), `--brevitas` also
times the same ResNet-20 4-bit QAT step in Brevitas and prints pannjax / Brevitas. Timing uses random
inputs (only shapes matter for speed); nothing here is a training result.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pannjax.build import build_policy
from pannjax.models import build_model
from pannjax.train import OptimizerConfig, create_train_state, make_optimizer, make_train_step

QUANT_4BIT = {"name": "uniform", "w_bits": 4, "x_bits": 4, "first_last": "int8"}


def pannjax_step(quant: dict | None, batch_size: int) -> Callable[[], None]:
    """One jitted pannjax train step of ResNet-20 (`quant=None`: a plain Flax ResNet-20 with `nn.Conv`,
    the reference for pannjax's own overhead), as a closure that runs one step and blocks."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch_size, 32, 32, 3), dtype=np.float32)
    labels = rng.integers(0, 10, batch_size).astype(np.int32)
    if quant is None:
        model = PlainResNet20()
    else:
        model = build_model("resnet", depth=20, num_classes=10, policy=build_policy(quant, {"name": "mac"}))
    tx = make_optimizer(OptimizerConfig(), total_steps=1000, steps_per_epoch=100)
    box = [create_train_state(model, tx, images, seed=0)]
    step = make_train_step(augment=None)
    batch = {"image": jnp.asarray(images), "label": jnp.asarray(labels)}

    def run() -> None:
        box[0], metrics = step(box[0], batch)
        jax.block_until_ready(metrics)

    return run


class PlainBlock(nn.Module):
    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)
        s = (self.strides, self.strides)
        y = nn.relu(norm()(nn.Conv(self.features, (3, 3), s, use_bias=False)(x)))
        y = norm()(nn.Conv(self.features, (3, 3), use_bias=False)(y))
        if x.shape[-1] != self.features:
            x = x[:, :: self.strides, :: self.strides]
            x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, self.features - x.shape[-1])))
        return nn.relu(y + x)


class PlainResNet20(nn.Module):
    """ResNet-20 (option A) from `flax.linen` layers only: the plain-Flax float reference."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Conv(16, (3, 3), use_bias=False)(x)))
        for stage in range(3):
            for block in range(3):
                x = PlainBlock(16 * 2**stage, 2 if stage and not block else 1)(x, train)
        return nn.Dense(10)(x.mean(axis=(1, 2)))


def brevitas_step(batch_size: int, threads: int) -> Callable[[], None]:
    """One ResNet-20 4-bit QAT step in Brevitas (4-bit weights and activations, 8-bit first/last)."""
    import torch
    import torch.nn as tnn
    from brevitas import nn as qnn

    torch.set_num_threads(threads)

    def conv(cin, cout, stride, bits):
        return qnn.QuantConv2d(cin, cout, 3, stride, 1, bias=False, weight_bit_width=bits)

    class Block(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1, self.b1 = conv(cin, cout, stride, 4), tnn.BatchNorm2d(cout)
            self.r1 = qnn.QuantReLU(bit_width=4)
            self.c2, self.b2 = conv(cout, cout, 1, 4), tnn.BatchNorm2d(cout)
            self.r2 = qnn.QuantReLU(bit_width=4)
            self.pad = cout - cin
            self.stride = stride

        def forward(self, x):
            y = self.b2(self.c2(self.r1(self.b1(self.c1(x)))))
            s = x[:, :, ::self.stride, ::self.stride]
            if self.pad:
                s = tnn.functional.pad(s, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
            return self.r2(y + s)

    layers = [qnn.QuantIdentity(bit_width=8), conv(3, 16, 1, 8), tnn.BatchNorm2d(16), qnn.QuantReLU(bit_width=4)]
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(3):
            layers.append(Block(cin, cout, stride if i == 0 else 1))
            cin = cout
    layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), qnn.QuantLinear(64, 10, bias=True, weight_bit_width=8)]
    net = tnn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (batch_size,))

    def step():
        opt.zero_grad()
        loss = tnn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--brevitas", action="store_true", help="also time Brevitas (needs the [peers] extra)")
    args = parser.parse_args()
    threads = len(os.sched_getaffinity(0))
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {threads} cores, batch {args.batch}")
    steps = {"plain Flax float": pannjax_step(None, args.batch),
             "pannjax float": pannjax_step({"name": "float"}, args.batch),
             "pannjax 4-bit QAT": pannjax_step(QUANT_4BIT, args.batch)}
    if args.brevitas:
        steps["Brevitas 4-bit QAT"] = brevitas_step(args.batch, threads)
    t = interleaved_medians(steps, args.steps)
    for name, seconds in t.items():
        print(f"{name:20s} {seconds * 1e3:8.1f} ms/step  ({args.batch / seconds:6.1f} img/s)")
    print(f"ratio pannjax 4-bit / pannjax float: {t['pannjax 4-bit QAT'] / t['pannjax float']:.3f}  (target <= 1.25)")
    print(f"ratio pannjax float / plain Flax float: {t['pannjax float'] / t['plain Flax float']:.3f}")
    if args.brevitas:
        print(f"ratio pannjax 4-bit / Brevitas 4-bit: {t['pannjax 4-bit QAT'] / t['Brevitas 4-bit QAT']:.3f}  (target <= 1.0)")


def interleaved_medians(steps: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each closure, timed round-robin (warm-up first) so that machine-load
    drift affects every entry alike and the printed ratios are measured in one run."""
    for run in steps.values():
        for _ in range(3):
            run()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, run in steps.items():
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(ts)) for name, ts in times.items()}

if __name__ == "__main__":
    main()
