"""The config schema of every entry point: Hydra structured configs whose typed nodes are made from
pannjax's own frozen dataclasses, so each default lives in one place, the dataclass field.

    configs/train.yaml:  defaults: [train_schema, data: digits, ..., trainer: digits, _self_]

`register()` (run on import) stores `train_schema`, `search_schema`, `pann_schema` and `power_schema`
in Hydra's `ConfigStore`; the primary configs list them first, so every YAML preset, experiment config and
command-line override is composed onto them and
a key the schema lacks, or a value of the wrong type, fails at composition. Hydra reports such a failure
in several lines: `compose_checked` (what every `experiments/*.py` runs before Hydra does)
composes the same command and turns it into one `ConfigError` line naming the full dotted key and the
valid keys or the expected type. `validated(cfg, entry)` merges any mapping onto the schema, the path of a
Python caller's partial dict: the same checks, every default filled in. Ranges and relations between
values (`trainer.epochs >= 1`, `tau_end <= tau_start`) are the dataclasses' own `__post_init__` checks,
run when a runner builds them with `build`.

Blocks whose options depend on a registered name (`data`, `model`, `quant`, `op`, `prune`, `layers`,
`search.candidates`) are typed `Any` here; their builders check them against the registered entry.
Hydra: https://hydra.cc/docs/tutorials/structured_config/intro/ ; OmegaConf structured configs.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import (ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException,
                              ValidationError)

from pannjax.errors import ConfigError
from pannjax.export.options import ExportOptions
from pannjax.hw.study_options import PowerStudy
from pannjax.hw.system import AcceleratorConfig
from pannjax.pann.options import PannOptions
from pannjax.distributed import DistributedConfig
from pannjax.search.options import SearchRun
from pannjax.search.steps import SearchConfig
from pannjax.train import TrainerConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

#: config keys that are not Python identifiers: dataclass field -> key
RENAMED = {"lam": "lambda"}


def _mutable(cls: type) -> type:
    """A non-frozen twin of dataclass `cls` (OmegaConf makes the node of a frozen dataclass read-only, and
    Hydra must merge presets into it), nested dataclass fields twinned too; same fields, types, defaults."""
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            twin = _mutable(kind)
            fields.append((f.name, twin, dataclasses.field(default_factory=twin)))
        elif f.default is not dataclasses.MISSING:
            fields.append((f.name, kind, dataclasses.field(default=f.default)))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, kind, dataclasses.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, kind, dataclasses.field(default=MISSING)))
    return dataclasses.make_dataclass(cls.__name__, fields)


def node(*classes: type) -> DictConfig:
    """The typed, closed config node holding the fields of `classes` (keys renamed by `RENAMED`)."""
    out = OmegaConf.create({})
    for cls in classes:
        structured = OmegaConf.structured(_mutable(cls))
        for key in structured:
            out[RENAMED.get(str(key), str(key))] = structured._get_node(key)
    _close(out)
    return out


def _open_dict(block: DictConfig) -> bool:
    """A dict-typed field (name -> entry, such as search.candidates): it takes new names."""
    return typing.get_origin(block._metadata.ref_type) is dict


def _close(block: DictConfig) -> None:
    """No new keys in `block` or its nested blocks, except in dict-typed fields."""
    OmegaConf.set_struct(block, True)
    for key in block:
        child = block._get_node(key)
        if isinstance(child, DictConfig) and _open_dict(child):
            OmegaConf.set_struct(child, False)


@dataclasses.dataclass(frozen=True)
class Common:
    """Top-level keys of every entry point that trains: `overwrite` moves a previous run's files aside
    (`pannjax.rundir`), `plugins` are imported first (docs/extending.md), `objective` names the results.json
    key(s) returned to a Hydra sweeper (`pannjax.experiment.objective`), `distributed` runs one job over
    several processes (`pannjax.distributed`), `accelerator` the accelerator whose data movement every energy
    figure includes (`pannjax.hw.system`; `none`: the arithmetic alone)."""

    seed: int = 0
    overwrite: bool = False
    plugins: list[str] = dataclasses.field(default_factory=list)
    objective: Any = dataclasses.field(default_factory=lambda: ["test_accuracy"])
    experiment: Any = None   # name, entry, columns, plot of a configs/experiment/*.yaml (scripts/reproduce.py)
    distributed: DistributedConfig = DistributedConfig()  # several processes / hosts (pannjax.distributed)
    accelerator: AcceleratorConfig = AcceleratorConfig()  # data movement priced on it (pannjax.hw.system)
    data: Any = MISSING
    model: Any = MISSING


@dataclasses.dataclass(frozen=True)
class TrainArithmetic:
    """What `experiments/train.py` trains: quantizers `quant`, operator `op` (`pannjax.build`), per-layer
    overrides `layers` (`[{pattern, quant, op}]`, applied in order to the layers whose path matches), and the
    pruning schedule `prune` (`pannjax.prune`; the group's `none` where Hydra composes)."""

    quant: Any = MISSING
    op: Any = MISSING
    layers: list[Any] = dataclasses.field(default_factory=list)
    prune: Any = None  # null: no pruning (a block with a dict default would be closed to the group's keys)


#: the dataclasses whose fields are the top-level keys of each entry point, and the blocks added to them
PARTS = {"train": (Common, TrainArithmetic), "search": (Common,), "pann": (PannOptions,), "power": (PowerStudy,),
         "export": (ExportOptions,)}
#: how a message names an unknown top-level key
SCOPE = {"pann": "a known option of experiments/pann.py", "power": "a known option of experiments/power.py",
         "export": "a known option of experiments/export.py"}


@functools.cache
def schema(entry: str) -> DictConfig:
    """The schema of entry point `entry` ("train", "search", "pann" or "power")."""
    top = node(*PARTS[entry])
    # the root stays open: Hydra merges its own `hydra` block into it (closed-ness is `validated`'s check)
    OmegaConf.set_struct(top, False)
    if entry in ("train", "search"):
        top["trainer"] = node(TrainerConfig)
    if entry == "search":
        top["search"] = node(SearchConfig, SearchRun)
    for key in top:
        if isinstance(top._get_node(key), DictConfig) and not _open_dict(top._get_node(key)):
            _close(top[key])
    return top


def register() -> None:
    """Store `<entry>_schema` in Hydra's ConfigStore (the primary configs name it first in `defaults`)."""
    from hydra.core.config_store import ConfigStore

    for entry in PARTS:
        ConfigStore.instance().store(name=f"{entry}_schema", node=schema(entry))


def validated(cfg: DictConfig | Mapping, entry: str) -> dict[str, Any]:
    """`cfg` merged onto the schema of `entry`: a plain resolved dict with every default; a one-line
    `ConfigError` for an unknown key, a wrong type or a missing block."""
    given = {k: v for k, v in (OmegaConf.to_container(cfg) if isinstance(cfg, DictConfig) else dict(cfg)).items()
             if k != "hydra"}
    unknown = sorted(set(given) - set(schema(entry)))
    if unknown:
        raise ConfigError(f"{unknown[0]} is not {SCOPE.get(entry, 'a known top-level option')}; "
                          f"valid: {', '.join(sorted(schema(entry)))}")
    try:
        merged = OmegaConf.merge(schema(entry), given)
        return OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        raise ConfigError(one_line(e, schema(entry), scope=SCOPE.get(entry))) from None


def build(cls: type, values: Mapping[str, Any], where: str):
    """Frozen dataclass `cls` from config block `values` (at dotted key `where`): checked against its schema
    node (unknown keys, types; defaults filled in), nested dataclasses built, lists made tuples where the
    field is a tuple, then `cls.__post_init__`'s range checks."""
    given = {RENAMED.get(k, k): v for k, v in dict(values).items()}
    block = _block(cls)
    try:
        plain = OmegaConf.to_container(OmegaConf.merge(block, given), resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:
        raise ConfigError(one_line(e, block, where)) from None
    return _instantiate(cls, plain)  # type: ignore[arg-type]


@functools.cache
def _block(cls: type) -> DictConfig:
    """`node(cls)`, made once per class (merging never changes it)."""
    return node(cls)


def _instantiate(cls: type, values: Mapping[str, Any]):
    hints = typing.get_type_hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        key = RENAMED.get(f.name, f.name)
        if key not in values:
            continue
        value, kind = values[key], hints[f.name]
        if dataclasses.is_dataclass(kind):
            value = _instantiate(kind, value)
        elif typing.get_origin(kind) is tuple and isinstance(value, list):
            value = tuple(value)
        fields[f.name] = value
    return cls(**fields)


def compose_checked(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """Hydra's composition of `config_name` with command-line `overrides` (no `hydra.*` ones), its failure
    turned into one `ConfigError` line."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            return compose(config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_composition_line(e, config_name)) from None


def _composition_line(e: Exception, config_name: str) -> str:
    from hydra.errors import MissingConfigException

    cause: BaseException | None = e
    while cause is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__
    if isinstance(cause, OmegaConfBaseException) and config_name in PARTS:
        return one_line(cause, schema(config_name), scope=SCOPE.get(config_name))
    if isinstance(e, MissingConfigException) and e.missing_cfg_file:
        group, _, choice = e.missing_cfg_file.rpartition("/")
        return (f"{group}={choice} is not a config of group {group}; available: {', '.join(e.options or [])}"
                if group else f"{choice}: no such config")
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip())


def _kind(value_node: Any) -> str:
    from omegaconf.nodes import BooleanNode, FloatNode, IntegerNode, StringNode

    kinds = ((BooleanNode, "true or false"), (IntegerNode, "a whole number"), (FloatNode, "a number"),
             (StringNode, "a string"))
    kind = next((text for cls, text in kinds if isinstance(value_node, cls)), "a value of another type")
    return kind + (" or null" if value_node is not None and value_node._is_optional() else "")


def one_line(e: OmegaConfBaseException, root: DictConfig, where: str | None = None, scope: str | None = None) -> str:
    """One line for an OmegaConf merge failure against `root` (a schema node, at dotted key `where`;
    `scope` names what an unknown top-level key is not)."""
    key = str(e.full_key)
    full = f"{where}.{key}" if where else key
    parent, _, leaf = key.rpartition(".")
    holder = OmegaConf.select(root, parent) if parent else root
    if isinstance(e, (ConfigKeyError, ConfigAttributeError)) or "not in struct" in e.msg or "not in '" in e.msg:
        valid = ", ".join(sorted(holder)) if isinstance(holder, DictConfig) else ""
        what = "a known option" if (parent or where) else (scope or "a known top-level option")
        return f"{full} is not {what}; valid: {valid}"
    if isinstance(e, MissingMandatoryValue):
        return f"{full} is missing: give the config block {full} (e.g. the group's default, {full}=<name>)"
    if isinstance(e, ValidationError) and isinstance(holder, DictConfig) and leaf in holder:
        return f"{full}={e.value!r}: expected {_kind(holder._get_node(leaf))}"
    return f"{full}: {e.msg.splitlines()[0] if e.msg else type(e).__name__}"


def _overrides(argv: Iterable[str]) -> tuple[str, list[str], bool]:
    """(config name, overrides without `hydra.*`/`hydra/` but `hydra.searchpath`, multirun?) of a Hydra
    command line, parsed by Hydra's own argument parser."""
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(list(argv))
    keep = [o for o in args.overrides  # hydra.searchpath changes what composes; other hydra.* keys do not
            if not o.lstrip("+~").startswith("hydra") or o.lstrip("+~").startswith("hydra.searchpath=")]
    return args.config_name, keep, bool(args.multirun)


def check_command_line(config_name: str, argv: Sequence[str]) -> None:
    """Exit 2 with one line when Hydra would fail to compose this command line. A multirun's swept values
    (`key=a,b` or `range(...)`) are each checked against the other overrides; interval sweeps of Optuna are
    left to the job."""
    import sys

    from hydra.core.override_parser.overrides_parser import OverridesParser

    name, overrides, multirun = _overrides(argv)
    name = name or config_name
    try:
        jobs = [overrides]
        if multirun:
            parsed = OverridesParser.create().parse_overrides(overrides)
            fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
            jobs = [fixed]
            for o in parsed:
                if o.is_sweep_override() and not o.is_interval_sweep():
                    prefix = o.get_key_element()
                    jobs += [fixed + [f"{prefix}={value}"] for value in o.sweep_string_iterator()]
        for job in jobs:
            compose_checked(name, job)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception:  # noqa: BLE001 — anything else is Hydra's to report, as without this check
        return


register()

__all__ = ["CONFIGS", "Common", "TrainArithmetic", "build", "check_command_line", "compose_checked", "node",
           "one_line", "register", "schema", "validated"]
