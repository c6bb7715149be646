"""Machine-readable run outputs: atomic JSON files and the per-epoch `metrics.jsonl` of a run directory."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from pannjax.distributed import is_main


def to_jsonable(value: Any) -> Any:
    """numpy/jax scalars and arrays to Python numbers/lists; NaN/inf to None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        arr = np.asarray(value)
        return to_jsonable(arr.item() if arr.ndim == 0 else arr.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """Write `value` as JSON to `path` atomically (temp file + rename), so a reader never sees half a
    file. A run's own `results.json` goes through `pannjax.results.write_results` (the schema)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(value), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def append_metrics(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line to `metrics.jsonl`."""
    with open(Path(run_dir) / "metrics.jsonl", "a") as f:
        f.write(json.dumps(to_jsonable(record), sort_keys=True) + "\n")


class ScalarLog:
    """Per-epoch metrics in two forms: `metrics.jsonl` (one JSON record per line, always) and, with
    `tensorboard=True`, TensorBoard event files in `run_dir/tensorboard` (tensorboardX), so runs can be
    compared with `tensorboard --logdir <sweep dir>`. Every numeric field of a record except `step` and
    `epoch` becomes a scalar at global step `record["step"]`. In a multi-process run only process 0 writes
    (`pannjax.distributed`); the others' logs take the records and write nothing."""

    def __init__(self, run_dir: str | os.PathLike, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self._writer = None
        self.writes = is_main()
        if tensorboard and self.writes:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(logdir=str(self.run_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.writes:
            return
        append_metrics(self.run_dir, record)
        if self._writer is None:
            return
        for key, value in record.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.add_scalar(key, value, global_step=int(record["step"]))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
