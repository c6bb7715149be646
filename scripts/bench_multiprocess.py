"""Benchmark: training steps per second of one run as 2 local processes x 1 CPU device (jax.distributed,
gloo collectives) against 1 process x 2 CPU devices, on the digits CNN, both on this machine, one after
the other. Steps per second are those of the last epoch (compilation excluded), from `metrics.jsonl`.

    python scripts/bench_multiprocess.py [--epochs 3] [--width 32] [--batch 64]

The ratio is the cross-process overhead: the all-reduce leaves the process (gloo over local TCP) instead of
staying inside one XLA program.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from pannjax.distributed import local_commands

ROOT = Path(__file__).resolve().parents[1]


def steps_per_second(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last, before = records[-1], records[-2]
    return (last["step"] - before["step"]) / (last["wall_seconds"] - before["wall_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_multiprocess-"))
    train = [str(ROOT / "experiments" / "train.py"), f"trainer.epochs={args.epochs}", f"model.width={args.width}",
             f"trainer.batch_size={args.batch}", "trainer.progress=false", "trainer.tensorboard=false",
             "trainer.checkpoint=false"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    subprocess.run([sys.executable, *train, f"hydra.run.dir={work / 'one'}"], env=env, check=True,
                   capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for cmd, e in local_commands(2, [*train, f"hydra.run.dir={work / 'two'}"], port, 1)]
    if any(p.wait() for p in procs):
        raise SystemExit("the two-process run failed")
    one, two = steps_per_second(work / "one"), steps_per_second(work / "two")
    print(f"digits CNN width {args.width}, batch {args.batch} (global), epoch {args.epochs} of {args.epochs}")
    print(f"1 process x 2 devices:  {one:7.1f} steps/s")
    print(f"2 processes x 1 device: {two:7.1f} steps/s   ratio {two / one:.2f}")
    print(json.dumps({"one_process_two_devices": one, "two_processes": two, "ratio": two / one}))


if __name__ == "__main__":
    main()
