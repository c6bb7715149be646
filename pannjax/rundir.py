"""A run directory holds one run, and one process writes it at a time.

`owned_run_dir(run_dir, entry, config, resume=..., overwrite=...)` is the context every entry point runs
in:

  * **Lock.** `.pannjax.lock` (created exclusively; pid and host inside) for the whole run: a second
    process into the same dir stops with one line naming the holder. A lock left by a process that no
    longer runs on this host is taken over with a warning.
  * **Ownership.** `run.json` records the entry point, the resolved config and its hash (`config_hash`).
    A fresh run into a dir that holds a previous run's outputs (`OUTPUTS`) stops with one line: resume it
    (training: `trainer.resume=true`), or `overwrite=true`, which moves those outputs into
    `previous/<time>/` (nothing is deleted), or choose another dir. A run that a bad input stops before it
    wrote anything leaves no claim behind.
  * **One writer.** In a multi-process run (`pannjax.distributed`) process 0 holds the lock and makes these
    checks; the other processes share the dir without claiming it and write nothing.
  * **Resume checks the config.** Resuming compares the config with the one in `run.json`: any key that
    differs, other than those that may change on resume (`RESUME_EXEMPT`: progress, logging, the resume
    and stop flags), stops with one line listing them.

`refuse_before_hydra(argv, entry)` makes the same ownership check from the command line, before Hydra
writes `.hydra/` into the dir, for an explicit `hydra.run.dir=...`, so a refused run changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from pannjax.distributed import is_main, launch_index
from pannjax.errors import ConfigError

log = logging.getLogger(__name__)

LOCK = ".pannjax.lock"
RECORD = "run.json"
OUTPUTS = ("run.json", "results.json", "metrics.jsonl", "checkpoints", "checkpoints.damaged", "power_report.json",
           "power_report.csv", "power_tables.md", "tensorboard")
RESUME_EXEMPT = ("trainer.progress", "trainer.resume", "trainer.stop_after_epochs", "trainer.log_every",
                 "trainer.tensorboard", "overwrite", "distributed")  # a run may resume on other processes


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in _flat({k: v for k, v in config.items() if k != "hydra"}).items()
            if not any(k == e or k.startswith(e + ".") for e in RESUME_EXEMPT)}


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 (16 hex digits) of the resolved config without Hydra's own keys and the resume-exempt ones."""
    return hashlib.sha256(json.dumps(_comparable(config), sort_keys=True, default=str).encode()).hexdigest()[:16]


def previous_outputs(run_dir: Path) -> list[str]:
    """The outputs of an earlier run that `run_dir` holds."""
    return [name for name in OUTPUTS if (run_dir / name).exists()]


def _refusal(run_dir: Path, previous: Sequence[str], resume_key: str | None) -> str:
    how = f"resume it with {resume_key}=true, or pass" if resume_key else "pass"
    return (f"hydra.run.dir={run_dir} holds a previous run ({', '.join(previous)}): {how} overwrite=true "
            "to move its files to previous/<time>/, or choose another run dir")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _take_lock(run_dir: Path) -> Path:
    path = run_dir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, ValueError):
                holder = {}
            pid, host = holder.get("pid"), holder.get("host")
            if host == me["host"] and isinstance(pid, int) and not _alive(pid):
                log.warning("%s: taking over the lock of process %d, which no longer runs", path, pid)
                path.unlink(missing_ok=True)
                continue
            raise ConfigError(f"hydra.run.dir={run_dir} is in use by process {pid} on {host} (lock {path}): wait for "
                              "it to finish, or choose another run dir") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return path
    raise ConfigError(f"hydra.run.dir={run_dir}: could not take the lock {path}")


def _move_aside(run_dir: Path, previous: Sequence[str]) -> Path:
    aside = run_dir / "previous" / time.strftime("%Y%m%d-%H%M%S")
    while aside.exists():
        aside = aside.with_name(aside.name + "+")
    aside.mkdir(parents=True)
    for name in previous:
        shutil.move(str(run_dir / name), str(aside / name))
    return aside


@contextlib.contextmanager
def owned_run_dir(run_dir: str | os.PathLike, entry: str, config: Mapping[str, Any], resume: bool = False,
                  overwrite: bool = False, resume_key: str | None = None) -> Iterator[Path]:
    """Hold `run_dir` for one run of `entry` (module docstring); yields the directory. `resume_key` is the
    config key that resumes (e.g. "trainer.resume"), named in the refusal."""
    run_dir = Path(run_dir)
    if not is_main():  # a multi-process run's other processes: process 0 holds and writes the dir
        yield run_dir
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = _take_lock(run_dir)
    try:
        previous = previous_outputs(run_dir)
        record = {"entry": entry, "config_hash": config_hash(config),
                  "config": {k: v for k, v in config.items() if k != "hydra"}}
        if resume and (run_dir / RECORD).exists():
            old = json.loads((run_dir / RECORD).read_text())
            if old.get("config_hash") != record["config_hash"]:
                a, b = _comparable(old.get("config", {})), _comparable(config)
                changed = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
                           if a.get(k) != b.get(k)]
                raise ConfigError(f"{resume_key or 'resume'}=true with a changed config ({'; '.join(changed[:6])}"
                                  f"{'; ...' if len(changed) > 6 else ''}): resume with the run's own config "
                                  "(run.json), or start a new run dir")
        elif previous and not resume:
            if not overwrite:
                raise ConfigError(_refusal(run_dir, previous, resume_key))
            aside = _move_aside(run_dir, previous)
            log.warning("overwrite=true: the previous run's %s moved to %s", ", ".join(previous), aside)
        (run_dir / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        try:
            yield run_dir
        except ConfigError:
            if not previous and previous_outputs(run_dir) == [RECORD]:  # refused at set-up: leave no claim
                (run_dir / RECORD).unlink()
            raise
    finally:
        lock.unlink(missing_ok=True)


def _arg(argv: Sequence[str], key: str) -> str | None:
    for a in argv:
        if a.lstrip("+").startswith(key + "="):
            return a.split("=", 1)[1]
    return None


def check_apart(run_dir: str | Path, source_key: str, source: str | Path, what: str = "run") -> None:
    """Raise `ConfigError` (one line) when `run_dir` is, or holds, the `what` this run reads,
    `<source_key>=<source>` (e.g. power.py's `checkpoint=<export run>/program`): a run's outputs must not
    overwrite its input."""
    run, src = Path(run_dir).resolve(), Path(source).resolve()
    if run in (src, src.parent):
        raise ConfigError(f"hydra.run.dir={run_dir} {'is' if run == src else 'holds'} the {what} "
                          f"{source_key}={source} reads: write this run's outputs to another dir")


def refuse_before_hydra(argv: Sequence[str] | None = None, resume_key: str | None = None,
                        source_key: str | None = None, source_what: str = "run") -> None:
    """Before Hydra writes `.hydra/` into an explicit `hydra.run.dir=...`: exit 2 with one line when that
    dir holds a previous run and neither `<resume_key>=true` nor `overwrite=true` is given, or when it is
    (or holds) the run named by `source_key` (`check_apart`; e.g. pann.py's `checkpoint=`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    run_dir = _arg(argv, "hydra.run.dir")
    if run_dir is None or "-m" in argv or "--multirun" in argv or launch_index(argv) > 0:
        return  # a multi-process run's other processes follow process 0, which makes the checks
    path = Path(run_dir)
    source = _arg(argv, source_key) if source_key else None
    if source is not None:
        try:
            check_apart(run_dir, source_key, source, source_what)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
    flag = lambda key: key is not None and (_arg(argv, key) or "").lower() == "true"  # noqa: E731
    previous = previous_outputs(path) if path.is_dir() else []
    if previous and not flag(resume_key) and not flag("overwrite"):
        print(f"error: {_refusal(path, previous, resume_key)}", file=sys.stderr)
        sys.exit(2)


__all__ = ["OUTPUTS", "RESUME_EXEMPT", "check_apart", "config_hash", "owned_run_dir", "previous_outputs",
           "refuse_before_hydra"]
