"""One run over several processes (hosts) through JAX's own multi-process runtime, `jax.distributed`.

Every process runs the same program on its own devices; `jax.devices()` spans all of them, so the
data-parallel mesh of `pannjax.train.sharding` becomes global and XLA's collectives (NCCL on GPUs, gloo on
CPUs) do the all-reduce (the JAX "multi-process" model: https://docs.jax.dev/en/latest/multi_process.html).

A run is multi-process when the config block `distributed` says so (`num_processes` > 1, with
`coordinator_address` and `process_id`), or when the environment does: a SLURM step with more than one task
(`SLURM_STEP_NUM_TASKS`, set by `srun` for its tasks; not the allocation's `SLURM_NTASKS`, which a batch
script that runs Python once also has) or an Open MPI job (`OMPI_COMM_WORLD_SIZE`), which
`jax.distributed.initialize()` reads by itself. Otherwise nothing happens and the run is the single-process
one. `initialize` runs in the experiment set-up before any JAX computation (the runtime must start before
the backends do).

What each process does then: it reads only its slice of every global batch (`batch_rows`), the state is
replicated, orbax writes one checkpoint cooperatively, and only the main process (index 0) writes
`results.json`, `metrics.jsonl`, reports and plots (`is_main`).
"""

from __future__ import annotations

import dataclasses
import logging
import os

import jax

from pannjax.errors import ConfigError

log = logging.getLogger(__name__)

ENVIRONMENTS = (("SLURM_STEP_NUM_TASKS", "SLURM"), ("OMPI_COMM_WORLD_SIZE", "Open MPI"))


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """The config block `distributed`: explicit multi-process settings (null: single process, or what SLURM /
    Open MPI say). `cpu_collectives` is the CPU backend's collective implementation (gloo; GPUs use NCCL);
    `timeout_seconds` bounds the wait for every process to join."""

    coordinator_address: str | None = None   # host:port of process 0
    num_processes: int | None = None
    process_id: int | None = None
    cpu_collectives: str = "gloo"
    timeout_seconds: int = 300

    def __post_init__(self):
        if self.num_processes is not None and (isinstance(self.num_processes, bool) or self.num_processes < 1):
            raise ConfigError(f"distributed.num_processes={self.num_processes!r}: expected a whole number >= 1")
        if self.num_processes is not None and self.num_processes > 1:
            if not self.coordinator_address or ":" not in self.coordinator_address:
                raise ConfigError(f"distributed.coordinator_address={self.coordinator_address!r}: a run of "
                                  f"{self.num_processes} processes needs host:port of process 0")
            if self.process_id is None or not 0 <= self.process_id < self.num_processes:
                raise ConfigError(f"distributed.process_id={self.process_id!r}: expected 0..{self.num_processes - 1}")
        if self.cpu_collectives not in ("gloo", "mpi"):
            raise ConfigError(f"distributed.cpu_collectives={self.cpu_collectives!r}: expected gloo or mpi")
        if self.timeout_seconds < 1:
            raise ConfigError(f"distributed.timeout_seconds={self.timeout_seconds!r}: expected a whole number >= 1")

    @property
    def explicit(self) -> bool:
        return self.num_processes is not None and self.num_processes > 1


def environment_processes() -> tuple[str, int] | None:
    """(launcher, number of processes) when SLURM or Open MPI started more than one, else None."""
    for variable, launcher in ENVIRONMENTS:
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) > 1:
            return launcher, int(value)
    return None


def initialize(cfg: DistributedConfig) -> bool:
    """Start `jax.distributed` when the config or the environment asks for several processes (module
    docstring); True when this is a multi-process run. Idempotent within a process."""
    if jax.distributed.is_initialized():
        return True
    found = None if cfg.explicit else environment_processes()
    if not cfg.explicit and found is None:
        return False
    jax.config.update("jax_cpu_collectives_implementation", cfg.cpu_collectives)
    if cfg.explicit:
        jax.distributed.initialize(cfg.coordinator_address, cfg.num_processes, cfg.process_id,
                                   initialization_timeout=cfg.timeout_seconds)
    else:
        jax.distributed.initialize(initialization_timeout=cfg.timeout_seconds)
    log.info("process %d of %d (%s), %d local / %d global devices", jax.process_index(), jax.process_count(),
             "distributed.*" if cfg.explicit else found[0], jax.local_device_count(), jax.device_count())
    return True


def is_main() -> bool:
    """The process that writes the run's files (index 0; the only one in a single-process run)."""
    return jax.process_index() == 0


def batch_rows(size: int) -> slice | None:
    """This process's rows of every global batch of `size` examples (what `Dataset.batches(rows=...)` reads):
    an even share, in process order, which is the order of the devices of the global data mesh; None in a
    single-process run (the whole batch)."""
    count, index = jax.process_count(), jax.process_index()
    if count == 1:
        return None
    if size % count:
        raise ConfigError(f"a batch of {size} examples does not split over the {count} processes: use a multiple")
    per = size // count
    return slice(index * per, (index + 1) * per)


def launch_index(argv: list[str]) -> int:
    """This process's index as its launcher gave it, read before JAX starts: `distributed.process_id=` on the
    command line, else SLURM's `SLURM_PROCID` / Open MPI's `OMPI_COMM_WORLD_RANK` in a multi-task job, else 0."""
    for arg in argv:
        if arg.lstrip("+").startswith("distributed.process_id="):
            value = arg.split("=", 1)[1]
            return int(value) if value.isdigit() else 0
    if environment_processes() is not None:
        for variable in ("SLURM_PROCID", "OMPI_COMM_WORLD_RANK"):
            if os.environ.get(variable, "").isdigit():
                return int(os.environ[variable])
    return 0


def follower_argv(argv: list[str]) -> list[str]:
    """The command line of an entry point, with Hydra's own outputs switched off for a process other than the
    main one (no `.hydra/` written twice into the shared run dir, no second log file): every file of a run
    is written by process 0 (module docstring)."""
    if launch_index(argv[1:]) == 0:
        return argv
    return [*argv, "hydra.output_subdir=null", "hydra/job_logging=stdout"]


def local_commands(processes: int, argv: list[str], port: int, devices_per_process: int | None = None
                   ) -> list[tuple[list[str], dict[str, str]]]:
    """(command, environment) of each of `processes` local processes of one run of the entry point
    `argv` (`[script, overrides...]`, run with this Python), coordinated on 127.0.0.1:`port`;
    `devices_per_process` forces that many CPU devices per process (JAX_PLATFORMS=cpu), for testing
    multi-process runs on one machine (`scripts/launch_local.py`)."""
    import sys

    out = []
    for index in range(processes):
        env = dict(os.environ)
        if devices_per_process is not None:
            env["JAX_PLATFORMS"] = "cpu"
            forced = f"--xla_force_host_platform_device_count={devices_per_process}"
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {forced}".strip()
        out.append(([sys.executable, *argv, f"distributed.coordinator_address=127.0.0.1:{port}",
                     f"distributed.num_processes={processes}", f"distributed.process_id={index}"], env))
    return out
