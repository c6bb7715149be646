"""The experiment lifecycle every entry point shares: set-up, the objective, and one-line exits.

    c = setup(cfg, "search")           # resolved plain config, checked: schema, plugins, seed, objective;
                                       # jax.distributed started where the config or SLURM asks for it
    results = <method>(c, run_dir)     # inside pannjax.rundir.owned_run_dir; ends in pannjax.results.write_results
    return objective(results, c.get("objective"))   # what a Hydra sweeper optimises

`load_data` and `model_factory` build what the config blocks `data` and `model` describe, the same for
every entry point. `setup` is the first thing each runner does (`pannjax.runner.run_train`, `pannjax.search.runner`,
`pannjax.pann.experiment.run_pann`, `pannjax.hw.study.run_power_study`): a key the schema does not know
(`pannjax.schema`), a value of the wrong type, a plugin that does not import, a seed that is not a whole
number and an objective that names no results key fail there, in one line naming the full dotted key,
before data is loaded or a run dir is claimed.
`exit_on_config_error` turns a `ConfigError` into that line on stderr and exit status 2 (a
`DivergenceError`: exit status 3).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from pannjax.build import load_plugins
from pannjax.data import load_dataset
from pannjax.data.base import Dataset
from pannjax.distributed import DistributedConfig, initialize
from pannjax.errors import ConfigError, DivergenceError
from pannjax.models import build_model
from pannjax.results import check_column
from pannjax.schema import build, validated
from pannjax.sweep import flatten

def setup(cfg: DictConfig | Mapping, entry: str) -> dict[str, Any]:
    """The resolved plain config of `entry` ("train", "search", "pann", "power"), checked (module docstring):
    merged onto its schema (`pannjax.schema.validated`, every default filled in), plugins loaded, seed and
    objective checked."""
    c = validated(cfg, entry)
    if "distributed" in c:  # before any JAX computation: the multi-process runtime starts first
        initialize(build(DistributedConfig, c["distributed"], "distributed"))
    load_plugins(c.get("plugins") or [])
    if "seed" in c:
        seed_of(c)
    check_objective(c.get("objective"), entry)
    return c


def load_data(c: Mapping[str, Any]) -> Dataset:
    """The data set of config block `data` (`pannjax.data.load_dataset`)."""
    data_cfg = dict(c["data"])
    return load_dataset(data_cfg.pop("name", None), **data_cfg)


def model_factory(model_cfg: Mapping[str, Any], num_classes: int) -> Callable[..., Any]:
    """`policy -> model` for config block `model` (`pannjax.models.build_model`; `width`/`depth` checked
    here, unknown options there), one per run: training builds one network, the search several."""
    fields = dict(model_cfg)
    name = fields.pop("name", None)
    for key in ("width", "depth"):
        value = fields.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"model.{key}={value!r}: expected a whole number >= 1")

    def build(policy=None):
        return build_model(name, num_classes=num_classes, **({} if policy is None else {"policy": policy}), **fields)

    return build


def to_container(cfg: DictConfig | Mapping) -> dict:
    """Resolved plain-Python copy of a config (what is frozen into dataclasses before jit)."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def seed_of(cfg: Mapping[str, Any]) -> int:
    """The run's `seed`, a whole number (one-line error otherwise)."""
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r}: expected a whole number, e.g. seed=0")
    return seed


def check_objective(keys: Sequence[str] | str | None, entry: str) -> None:
    """`objective` names results.json keys of `entry` (checked at set-up, not after the run)."""
    for key in [keys] if isinstance(keys, str) else list(keys or []):
        check_column(str(key), "objective", entry, table=False)


def stopped_record(seed: int, wall_seconds: float) -> dict[str, Any]:
    """The common results keys of a run that stopped before it had a network to report."""
    return {"completed": False, "seed": seed, "test_accuracy": None, "energy_pj": None, "toggles": None,
            "wall_seconds": wall_seconds}


def objective(results: Mapping[str, Any], keys: Sequence[str] | str | None) -> float | tuple[float, ...]:
    """What an entry point returns to Hydra's sweeper (the Optuna sweeper optimises it): the `results.json`
    values named by the config key `objective` (dotted paths such as `summary.2bit.pann_accuracy` allowed).
    One key gives a float, several a tuple for a multi-objective study (`hydra/sweeper=optuna_pareto`:
    maximise accuracy, minimise energy)."""
    keys = [keys] if isinstance(keys, str) else list(keys or ["test_accuracy"])
    flat = flatten(results)
    values = []
    for key in keys:
        value = flat.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            numeric = sorted(k for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
            raise ConfigError(f"objective: {key!r} is not a number in results.json; choose from {', '.join(numeric)}")
        values.append(float(value))
    return values[0] if len(values) == 1 else tuple(values)


@contextlib.contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Turn a `ConfigError` into one line on stderr and exit status 2, a `DivergenceError` into one line
    and exit status 3 (no traceback)."""
    try:
        yield
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except DivergenceError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
