"""The one epoch loop (`run_epochs`) every method runs through, and supervised training on it
(`train_and_evaluate`, Flax-examples style).

A method is an `EpochProgram`: a jitted step, the deterministic step inputs of each epoch (batches of
`(seed, epoch)`), an optional host-side hook after each step and the fields added at the end of an
epoch. The loop owns everything around it, the same for training and the ENOS search: one line in
`metrics.jsonl` per epoch, an orbax checkpoint per epoch (`pannjax.train.checkpoint`), resume from the
latest good checkpoint with the same numbers as an uninterrupted run, `stop_after_epochs`, and the
divergence check -- a non-finite loss stops the run (`pannjax.train.divergence`: `DivergenceError`
naming the step, the epoch and the first layer at fault) before anything is checkpointed after it. The
progress bar shows on a terminal only; in a log file each epoch is one log line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import flax.linen as nn
from flax import traverse_util
import jax
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from pannjax.data.base import Dataset
from pannjax.distributed import batch_rows, is_main
from pannjax.errors import ConfigError
from pannjax.runlog import ScalarLog
from pannjax.train.checkpoint import (BEST_METRIC, checkpoint_manager, prune_checkpoints, restore_checkpoint,
                                     save_checkpoint)
from pannjax.train.divergence import check_losses, first_nonfinite
from pannjax.train.sharding import data_mesh, replicate, shard_batch
from pannjax.train.state import (OptimizerConfig, TrainState, create_train_state, learning_rate_schedule,
                                 make_optimizer)
from pannjax.train.steps import eval_step, make_train_step

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """How to train: the defaults of config block `trainer` (`pannjax.schema`; configs/trainer/*.yaml set
    recipes). `stop_after_epochs` ends this process early (a time-limited cluster job); the schedule still
    spans `epochs`, and `resume=True` continues where it stopped."""

    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 512
    optimizer: OptimizerConfig = OptimizerConfig()
    checkpoint: bool = True       # an orbax checkpoint per epoch in <run dir>/checkpoints
    keep_checkpoints: int = 2     # the latest kept, and the best by test accuracy
    resume: bool = False          # continue the run in this run dir from its newest good checkpoint
    stop_after_epochs: int | None = None
    init_from: str | None = None  # run dir whose latest checkpoint initialises matching params (fine-tuning)
    progress: bool = True         # a progress bar on a terminal; one log line per epoch otherwise
    log_every: int = 10           # steps between training-loss records
    tensorboard: bool = True      # event files in <run dir>/tensorboard next to metrics.jsonl

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size", "keep_checkpoints", "log_every", "stop_after_epochs"):
            value = getattr(self, name)
            if name == "stop_after_epochs" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"trainer.{name}={value!r}: expected a whole number >= 1")
        for name in ("checkpoint", "resume", "progress", "tensorboard"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"trainer.{name}={getattr(self, name)!r}: expected true or false")


def evaluate(state: TrainState, dataset: Dataset, batch_size: int, split: str = "test",
             mesh: Mesh | None = None) -> dict[str, float]:
    """Accuracy and mean loss over every example of `split` (batches split over `mesh` when given)."""
    totals = {"loss_sum": 0.0, "correct": 0, "count": 0}
    # a multi-process run reads this process's rows of each batch that splits over the mesh
    rows = batch_rows(batch_size) if mesh is not None and batch_size % mesh.size == 0 else None
    n = len(dataset.split(split)[1])
    for i, batch in enumerate(dataset.batches(split, batch_size, shuffle=False, rows=rows)):
        full = (i + 1) * batch_size <= n  # the partial last batch is read whole by every process
        out = jax.device_get(eval_step(state, batch if mesh is None else
                                       shard_batch(batch, mesh, batch_size if full else None)))
        for k in totals:
            totals[k] += out[k]
    return {"accuracy": float(totals["correct"]) / totals["count"], "loss": float(totals["loss_sum"]) / totals["count"]}


def count_params(params: Any) -> int:
    return int(sum(np.size(p) for p in jax.tree_util.tree_leaves(params)))


def _read_metrics(path: Path, upto_epoch: int) -> list[dict]:
    """The per-epoch records of `metrics.jsonl` up to `upto_epoch` (the checkpoint resumed from). A torn
    last line (a kill mid-write) is dropped with a warning; a damaged line before it is a one-line error;
    a missing or short file is a warning (that history is lost, training goes on)."""
    lines = path.read_text().splitlines() if path.exists() else []
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise ConfigError(f"{path} line {i + 1} is damaged (not JSON): repair or remove that line, "
                                  "then resume again") from None
            log.warning("%s: the last line is cut short (a run killed mid-write): dropped", path)
    records = [r for r in records if r.get("epoch", 0) <= upto_epoch]
    if [r.get("epoch") for r in records] != list(range(1, upto_epoch + 1)):
        log.warning("%s holds %d of the %d epochs resumed from: the missing history is lost", path, len(records),
                    upto_epoch)
    return records


@dataclasses.dataclass(frozen=True)
class EpochProgram:
    """A method as the epoch loop runs it: training and the ENOS search are both one of these.

    `step(state, *inputs) -> (state, metrics)` is the jitted step (metrics hold at least "loss");
    `inputs(epoch)` yields the step inputs of a 0-based epoch, deterministic in it (a resumed run sees the
    same batches); `after_step(state) -> (state, events)` runs on the host after each step (the
    sequential search's freezing; it must depend on the state only, so a resumed run repeats it; the
    events, dicts, are listed in the epoch's record under "events"); `end_of_epoch(state) -> dict` adds
    fields to the epoch's record (the test evaluation); `where_nonfinite(state, inputs) -> str` names the
    first layer at fault when a loss is not finite.
    Per-step metrics are averaged over the epoch as `<prefix><name>`."""

    name: str
    step: Callable[..., tuple[Any, dict]]
    inputs: Callable[[int], Iterable[tuple]]
    steps_per_epoch: int
    end_of_epoch: Callable[[Any], dict]
    where_nonfinite: Callable[[Any, tuple], str]
    prefix: str = "train_"
    after_step: Callable[[Any], tuple[Any, list[dict]]] | None = None
    best_metric: str | None = BEST_METRIC
    log_line: Callable[[dict], str] | None = None


def run_epochs(program: EpochProgram, state: Any, trainer: TrainerConfig, run_dir: str | Path,
               prepare: Callable[[Any], Any] | None = None) -> tuple[Any, list[dict]]:
    """Run `program` for `trainer.epochs` epochs from `state` (a fresh state; with `trainer.resume` the
    latest checkpoint in `run_dir/checkpoints` replaces it and the run continues there, with the same
    numbers as an uninterrupted one). `prepare(state)` places a state on the devices (after a restore).
    Returns the final state and the per-epoch records, which are also appended to `metrics.jsonl`
    (and TensorBoard); a checkpoint is written after every epoch."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    manager = None
    if trainer.checkpoint:
        manager = checkpoint_manager(run_dir / "checkpoints", trainer.keep_checkpoints, best_metric=program.best_metric)
    metrics_path = run_dir / "metrics.jsonl"
    start_epoch, history = 0, []
    if prepare is not None:  # placed first, so a restore lands in the same placement (every process's devices)
        state = prepare(state)
    if trainer.resume and manager is not None and manager.latest_step() is not None:
        state, start_epoch = restore_checkpoint(manager, state)
        history = _read_metrics(metrics_path, start_epoch)
        log.info("resumed from %s at epoch %d", manager.directory, start_epoch)
    elif trainer.resume:
        log.info("trainer.resume=true but no checkpoint in %s: starting from scratch", run_dir / "checkpoints")
    if is_main():  # the resumed past (one writer in a multi-process run)
        metrics_path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in history))

    scalars = ScalarLog(run_dir, trainer.tensorboard)
    wall_before = history[-1]["wall_seconds"] if history else 0.0
    t0 = time.perf_counter()
    last_epoch = trainer.epochs if trainer.stop_after_epochs is None else min(
        trainer.epochs, start_epoch + trainer.stop_after_epochs)
    for epoch in range(start_epoch, last_epoch):
        sums, n, pending, events = {}, 0, [], []
        bar = tqdm(program.inputs(epoch), total=program.steps_per_epoch,
                   desc=f"{program.name} {epoch + 1}/{trainer.epochs}",
                   disable=not (trainer.progress and _terminal()), leave=False)

        def flush(sums, n, pending, inputs):  # read the metrics back; a non-finite loss stops the run here
            host = jax.device_get(pending)
            check_losses([m["loss"] for m in host], int(state.step) - len(host) + 1, epoch + 1,
                         lambda: program.where_nonfinite(state, inputs), what=program.name)
            return _accumulate(sums, n, host)

        for inputs in bar:
            state, m = program.step(state, *inputs)
            pending.append(m)
            if program.after_step is not None:
                state, new_events = program.after_step(state)
                events.extend(new_events)
            if len(pending) == trainer.log_every:
                sums, n = flush(sums, n, pending, inputs)
                pending = []
                bar.set_postfix(loss=f"{sums['loss'] / n:.4f}")
        if pending:
            sums, n = flush(sums, n, pending, inputs)
        record = {"epoch": epoch + 1, "step": int(state.step),
                  **{f"{program.prefix}{k}": v / n for k, v in sums.items()}, **program.end_of_epoch(state),
                  "wall_seconds": wall_before + time.perf_counter() - t0}
        if events:
            record["events"] = events
        scalars.write(record)
        history.append(record)
        log.info("%s epoch %d/%d  %s", program.name, epoch + 1, trainer.epochs,
                 program.log_line(record) if program.log_line else f"loss {record[program.prefix + 'loss']:.4f}")
        if manager is not None:
            metrics = {program.best_metric: record[program.best_metric]} if program.best_metric else None
            save_checkpoint(manager, epoch + 1, state, metrics)
    scalars.close()
    if manager is not None:  # orbax prunes only what this process saved: a resumed run ends with the same set
        prune_checkpoints(manager, trainer.keep_checkpoints, program.best_metric)
        manager.close()
    return state, history


def train_and_evaluate(model: nn.Module, dataset: Dataset, trainer: TrainerConfig, seed: int,
                       run_dir: str | Path, init_params: Any | None = None,
                       init_batch_stats: Any | None = None,
                       tx_tail: Callable[[int], optax.GradientTransformation] | None = None,
                       ) -> tuple[TrainState, dict[str, Any]]:
    """Train `model` on `dataset` (`run_epochs` with the supervised train step and a test-set evaluation
    per epoch); returns the final state and the results record.

    `init_params`/`init_batch_stats` (e.g. from a float checkpoint) replace the matching entries of the
    fresh initialisation, for fine-tuning a converted network. `tx_tail(total_steps)` (e.g. PoT pruning,
    `pannjax.prune.pruning_from_config`) is chained after the optimiser: it sees the final updates.
    """
    if trainer.batch_size > len(dataset.train_labels):
        raise ConfigError(f"trainer.batch_size={trainer.batch_size} is larger than the {len(dataset.train_labels)} "
                          f"training examples: use at most {len(dataset.train_labels)}")
    mesh = data_mesh()  # data parallel over every device of the run (pannjax/train/sharding.py)
    if trainer.batch_size % mesh.size:
        raise ConfigError(f"trainer.batch_size={trainer.batch_size} must be a multiple of the {mesh.size} devices "
                          "used for data-parallel training")
    steps_per_epoch = dataset.steps_per_epoch(trainer.batch_size)
    total_steps = steps_per_epoch * trainer.epochs
    tx = make_optimizer(trainer.optimizer, total_steps, steps_per_epoch)
    if tx_tail is not None:
        tx = optax.chain(tx, tx_tail(total_steps))
    lr_at = learning_rate_schedule(trainer.optimizer, total_steps, steps_per_epoch)
    sample = dataset.train_images[: min(trainer.batch_size, len(dataset.train_images))]
    state = create_train_state(model, tx, sample, seed)
    if init_params is not None:
        params = overlay(state.params, init_params)
        state = state.replace(params=params, opt_state=tx.init(params))
    if init_batch_stats is not None:
        state = state.replace(batch_stats=overlay(state.batch_stats, init_batch_stats))

    train_step = make_train_step(dataset.augment)

    def end_of_epoch(state):
        test = evaluate(state, dataset, trainer.eval_batch_size, mesh=mesh)
        return {"test_loss": test["loss"], "test_accuracy": test["accuracy"], "lr": float(lr_at(int(state.step)))}

    program = EpochProgram(
        name="training", step=lambda state, batch: train_step(state, shard_batch(batch, mesh, trainer.batch_size)),
        inputs=lambda epoch: ((b,) for b in dataset.batches("train", trainer.batch_size, epoch=epoch, seed=seed,
                                                             rows=batch_rows(trainer.batch_size))),
        steps_per_epoch=steps_per_epoch, end_of_epoch=end_of_epoch,
        where_nonfinite=lambda state, inputs: first_nonfinite(
            model, {"params": state.params, "batch_stats": state.batch_stats}, inputs[0]["image"]),
        log_line=lambda r: (f"train_loss {r['train_loss']:.4f}  train_acc {r['train_accuracy']:.4f}  "
                            f"test_acc {r['test_accuracy']:.4f}"))
    state, history = run_epochs(program, state, trainer, run_dir, prepare=lambda s: replicate(s, mesh))

    final = history[-1] if history else {}
    best = max(history, key=lambda r: r["test_accuracy"]) if history else {}
    results = {
        "test_accuracy": final.get("test_accuracy"), "test_loss": final.get("test_loss"),
        "train_loss": final.get("train_loss"), "train_accuracy": final.get("train_accuracy"),
        "best_test_accuracy": best.get("test_accuracy"), "best_epoch": best.get("epoch"),
        "epochs": final.get("epoch", 0), "epochs_planned": trainer.epochs, "steps": int(state.step),
        "seed": seed, "wall_seconds": final.get("wall_seconds", 0.0), "params": count_params(state.params),
        "completed": final.get("epoch", 0) == trainer.epochs, "devices": mesh.size, "processes": jax.process_count(),
    }
    return state, results


def _terminal() -> bool:
    """A progress bar only on a terminal: in a log file (CI, SLURM) the per-epoch log line is the progress."""
    return sys.stderr.isatty()


def _accumulate(sums: dict, n: int, host: list[dict]) -> tuple[dict, int]:
    for m in host:
        for k, v in m.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        n += 1
    return sums, n


def overlay(fresh: Any, given: Any) -> Any:
    """`fresh` with every leaf that `given` also has (same path and shape) taken from `given`."""
    flat_fresh = traverse_util.flatten_dict(fresh)
    flat_given = traverse_util.flatten_dict(given)
    for key, value in flat_given.items():
        if key in flat_fresh and np.shape(flat_fresh[key]) == np.shape(value):
            flat_fresh[key] = value
    return traverse_util.unflatten_dict(flat_fresh)
