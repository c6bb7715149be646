"""Start one pannjax run as N processes on this machine (multi-process runs without a cluster).

    python scripts/launch_local.py --processes 2 --devices-per-process 1 -- experiments/train.py trainer.epochs=2
    python scripts/launch_local.py -n 2 -- experiments/search.py search=variational search.epochs=1

Every process runs the entry point with `distributed.coordinator_address=127.0.0.1:<free port>`,
`distributed.num_processes=N` and `distributed.process_id=i` (`pannjax.distributed`), and the same
`hydra.run.dir` (one is chosen here when the command line has none: `outputs/<entry>/<time>-<N>proc`).
Process 0's output is shown; the others' is kept in temporary files and shown when they fail. When one
process fails, the others are stopped (they would wait in a collective), and its exit status is returned.
`--devices-per-process D` forces D CPU devices in each process (JAX_PLATFORMS=cpu); without it each process
uses what JAX finds. On a cluster use SLURM instead (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pannjax.distributed import local_commands

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--processes", type=int, default=2)
    parser.add_argument("--devices-per-process", type=int, default=None)
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- <entry point script> [overrides...]")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or not command[0].endswith(".py"):
        parser.error("give the entry point after --, e.g. -- experiments/train.py trainer.epochs=2")
    if args.processes < 1:
        parser.error("--processes must be >= 1")
    if not any(a.startswith("hydra.run.dir=") for a in command):
        stamp = time.strftime("%Y-%m-%d/%H-%M-%S")
        command.append(f"hydra.run.dir={ROOT / 'outputs' / Path(command[0]).stem / stamp}-{args.processes}proc")
    runs = local_commands(args.processes, command, args.port or free_port(), args.devices_per_process)
    logs = [None] + [tempfile.NamedTemporaryFile("w+", prefix=f"process{i}-", suffix=".log", delete=False)
                     for i in range(1, args.processes)]
    procs = [subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT if log else None)
             for (cmd, env), log in zip(runs, logs)]
    status = 0
    while any(p.poll() is None for p in procs):
        failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode not in (None, 0)]
        if failed:
            status = failed[0][1]
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            break
        time.sleep(0.5)
    for p in procs:
        p.wait()
    status = status or next((p.returncode for p in procs if p.returncode), 0)
    for i, log in enumerate(logs):
        if log is not None and procs[i].returncode:
            log.seek(0)
            tail = "".join(log.readlines()[-20:])
            print(f"--- process {i} exited {procs[i].returncode}; its last lines ({log.name}):\n{tail}",
                  file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
