"""The results schema: what every entry point writes to `results.json`, checked when it is written and read.

Each record holds the common keys (`COMMON`: the headline accuracy, energy and bit flips of the run's
final network, its wall time, seed, whether it completed, the hash of its config, and the pannjax
version and git commit that produced it) and the keys of its entry point (`SCHEMAS`; experiments/pann.py
has one schema per `mode`, experiments/power.py one for the study and `power.network` for an exported
program). `write_results` fills in the provenance keys, validates and writes atomically; `read_results`
validates what aggregators read (`pannjax.sweep`, `pannjax.reproduce`), so a record from an older pannjax
is refused with its key named rather than tabulated as missing values.
A run that stopped early (`completed: false`: diverged, or `trainer.stop_after_epochs`) carries the
common keys and may lack the others. `python -m pannjax.results` prints the table of docs/results.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Mapping

from pannjax import __version__
from pannjax.distributed import is_main
from pannjax.errors import ConfigError
from pannjax.rundir import config_hash
from pannjax.runlog import write_json

NUMBER = (int, float)


@dataclasses.dataclass(frozen=True)
class Key:
    """One results.json key: its JSON type(s), whether it may be null, whether a completed run must
    have it, and what it means (the docs table)."""

    types: type | tuple[type, ...]
    doc: str
    nullable: bool = False
    required: bool = True


COMMON: dict[str, Key] = {
    "entry": Key(str, "the entry point that wrote the record: train, search, pann, power or export"),
    "completed": Key(bool, "the run did all it was configured to do (false: stopped early or diverged)"),
    "test_accuracy": Key(NUMBER, "test accuracy of the run's final network (null where there is none)", True),
    "energy_pj": Key(NUMBER, "energy per example of that network, pJ: compute (the cost engine) plus, on an "
                             "accelerator, data movement", True),
    "toggles": Key(NUMBER, "bit flips per example of that network's integer layers (null: not modelled)", True),
    "energy_compute_pj": Key(NUMBER, "the arithmetic's part of energy_pj, pJ per example (the cost engine)", True,
                             required=False),
    "energy_memory_pj": Key(NUMBER, "data movement's part of energy_pj on the run's accelerator, pJ per example "
                                    "(ZigZag; null: accelerator=none, the arithmetic alone)", True, required=False),
    "latency_cycles": Key(NUMBER, "cycles per example on the run's accelerator, layers in sequence (ZigZag; null: "
                                  "accelerator=none)", True, required=False),
    "wall_seconds": Key(NUMBER, "wall-clock seconds of the run's work, earlier processes of a resumed run included"),
    "seed": Key(int, "the run's seed"),
    "config_hash": Key(str, "SHA-256 (16 hex digits) of the resolved config, resume-exempt keys left out"),
    "version": Key(str, "pannjax version that wrote the record"),
    "git_commit": Key(str, "git commit of the pannjax source, +dirty with uncommitted changes (null: no checkout)",
                      True),
    "diverged": Key(dict, "where a diverged run stopped: step, epoch, layer", required=False),
}

#: what a run on an accelerator adds to energy_pj (null without one)
SYSTEM_KEYS = ("energy_compute_pj", "energy_memory_pj", "latency_cycles")
#: the energy keys a record of a priced network sets together (`pannjax.hw.report.NetworkReport.energy_record`)
ENERGY_KEYS = ("energy_pj", *SYSTEM_KEYS, "toggles")

_RUN = {
    "data": Key(str, "data set name"),
    "model": Key(str, "model name"),
    "experiment": Key(str, "experiment name (+experiment=...), if any", True),
}

_TRAIN = {
    **_RUN,
    "quant": Key(dict, "the quantizer config"),
    "op": Key(dict, "the operator config"),
    "prune": Key(dict, "the pruning config"),
    "test_loss": Key(NUMBER, "final test loss", True),
    "train_loss": Key(NUMBER, "mean training loss of the last epoch", True),
    "train_accuracy": Key(NUMBER, "mean training accuracy of the last epoch", True),
    "best_test_accuracy": Key(NUMBER, "best test accuracy over the epochs", True),
    "best_epoch": Key(int, "epoch of best_test_accuracy", True),
    "epochs": Key(int, "epochs trained (resumed ones included)"),
    "epochs_planned": Key(int, "trainer.epochs"),
    "steps": Key(int, "optimiser steps"),
    "params": Key(int, "number of parameters"),
    "devices": Key(int, "devices of the data-parallel mesh (every process's)"),
    "processes": Key(int, "processes the run spanned (pannjax.distributed; 1: one)", required=False),
    "macs": Key(int, "multiply-accumulates per example"),
    "weight_sparsity": Key(dict, "share of zero weights: total and per layer"),
    "process_seconds": Key(NUMBER, "seconds of the last process, report included"),
}

_SEARCH = {
    **_RUN,
    "variant": Key(str, "single, bilevel, sequential, variational or sensitivity"),
    "lambda": Key(NUMBER, "search.lambda, the weight of E/E_ref (with a budget: the multiplier's start)"),
    "candidates": Key(list, "the searched candidates (search.use)"),
    "reference": Key(str, "the reference candidate every energy is compared with"),
    "assignment": Key(dict, "the derived network: layer path -> candidate"),
    "probabilities": Key(dict, "final softmax(alpha) per layer and candidate (sensitivity: uniform, the supernet's "
                         "sampling)"),
    "frozen_order": Key(list, "sequential variant: the freezes {step, layer} in order"),
    "energy_reference_pj": Key(NUMBER, "energy per example of the all-reference network, pJ"),
    "energy_rel": Key(NUMBER, "energy_pj / energy_reference_pj"),
    "energy_saving": Key(NUMBER, "1 - energy_rel"),
    "energy_budget": Key(NUMBER, "the energy budget as a fraction of E_ref (search.energy_budget or _pj; null: none)",
                         True),
    "energy_budget_pj": Key(NUMBER, "the same budget in pJ per example (null: none)", True),
    "energy_budget_of": Key(str, "search.energy_budget_of: the candidate whose all-network energy is the budget",
                            True),
    "label": Key(str, "search.label, the run's name in sweep tables (null: none)", True),
    "budget_met": Key(bool, "energy_rel within search.budget_tolerance of the budget (null: no budget)", True),
    "lambda_final": Key(NUMBER, "lambda at the end of the search (with a budget: the Lagrange multiplier)"),
    "energy_rel_argmax": Key(NUMBER, "E/E_ref of the plain argmax assignment (with a budget: before the budgeted "
                             "derivation; null: sensitivity)", True),
    "sensitivity_measure": Key(str, "sensitivity: search.sensitivity_measure, loss or hessian", required=False),
    "sensitivity": Key(dict, "sensitivity: per layer and candidate, the sensitivity minimised under the budget",
                       required=False),
    "sensitivity_seconds": Key(NUMBER, "sensitivity: seconds of measuring the sensitivities", required=False),
    "energy_table_pj": Key(dict, "per layer and candidate energy per example (compute plus, on an accelerator, data "
                                    "movement), pJ"),
    "accuracy_before_retraining": Key(NUMBER, "derived network with inherited weights, BN re-estimated"),
    "accuracy_after_retraining": Key(NUMBER, "after search.retrain_epochs (null: none)", True),
    "baseline_accuracy": Key(NUMBER, "all-reference network trained search.baseline_epochs (null: none)", True),
    "accuracy_loss_vs_baseline": Key(NUMBER, "baseline_accuracy - test_accuracy", True),
    "search_history": Key(list, "per-epoch search records (as metrics.jsonl)"),
    "search_epochs": Key(int, "search.epochs"),
    "search_epochs_done": Key(int, "search epochs done when the run stopped early", required=False),
    "retrain_epochs": Key(int, "search.retrain_epochs"),
    "baseline_epochs": Key(int, "search.baseline_epochs"),
    "search_seconds": Key(NUMBER, "seconds of the search"),
    "retrain_seconds": Key(NUMBER, "seconds of the retraining"),
    "baseline_seconds": Key(NUMBER, "seconds of the baseline training"),
}

_PANN_RUN = {
    "mode": Key(str, "convert, sweep or table"),
    "checkpoint": Key(str, "the float run converted"),
    "model": _RUN["model"],
    "data": _RUN["data"],
    "float_accuracy": Key(NUMBER, "test accuracy of the float network"),
    "first_last": Key(str, "arithmetic of the first and last layers: int8, float or same"),
    "calibration": Key(str, "activation calibration: mse, max or lsq"),
    "power_units": Key(str, "what the toggle figures count"),
    "power_model": Key(str, "toggle model: gates or registers"),
}

_PANN_CONVERT = {
    **_PANN_RUN,
    "checkpoint_epoch": Key(int, "epoch of the checkpoint converted"),
    "folded_accuracy": Key(NUMBER, "accuracy after BatchNorm folding"),
    "budget_signed": Key(bool, "budgets are those of two's complement MAC networks"),
    "budget_bits": Key(list, "the budgets' MAC bit widths (null entries: budget_toggles)"),
    "accumulation": Key(str, "PANN accumulation: split or signed"),
    "budgets": Key(list, "per budget: PANN and uniform networks, accuracy, toggles, energy"),
    "summary": Key(dict, "per budget label: the headline figures"),
}

_PANN_SWEEP = {
    **_PANN_RUN,
    "rows": Key(list, "power-accuracy points: method, x_bits, additions, accuracy, toggles, energy_pj"),
    "files": Key(list, "the sweep's tables and plot"),
}

_PANN_TABLE = {
    "mode": Key(str, "table"),
    "tables": Key(dict, "the solver's (b_x, R) per MAC bit width, signed and unsigned"),
}

_POWER = {
    "gates": Key(dict, "gate-level study (null: gates.enabled=false)", True),
    "toggles_per_mac": Key(list, "analytic toggles per MAC by component, per bit width and accumulator"),
    "simulator_check": Key(list, "analytic vs simulated toggles per MAC"),
    "max_abs_rel_error_analytic_vs_sim": Key(NUMBER, "worst relative error of simulator_check"),
    "signed_vs_unsigned_accumulation": Key(list, "simulated signed vs unsigned accumulation"),
    "weight_only_quantization": Key(list, "multiplier toggles with only the weights quantized"),
    "repeated_additions": Key(list, "toggles of PANN's repeated additions"),
    "power_equivalence": Key(list, "additions of equal power to a b-bit MAC"),
    "config": Key(dict, "the study's resolved config"),
}

_POWER_NETWORK = {
    "mode": Key(str, "network: the power of an exported program (`experiments/power.py checkpoint=<export dir>`)"),
    "checkpoint": Key(str, "the export run read"),
    "program": Key(str, "its program directory"),
    "acc_bits": Key((int, str), "the program's accumulator width B (a width, or auto: each layer's worst case)"),
    "images": Key(int, "test images whose operand streams the gate-level simulator ran on"),
    "layers": Key(list, "per arithmetic layer: layer, operator, bits, macs, toggles, analytic and simulated toggles "
                        "per MAC, energy_pJ"),
    "data": Key(str, "data set name"),
}

_EXPORT = {
    "fake_quant_accuracy": Key(NUMBER, "test accuracy of the same network evaluated in float (fake quantization)"),
    "reported_accuracy": Key(NUMBER, "test_accuracy of the checkpoint's own results.json (null: converted)", True),
    "argmax_agreement": Key(NUMBER, "fraction of test images where the integer program and fake-quant predict alike"),
    "logits_max_abs_diff": Key(NUMBER, "largest |integer-program logit - fake-quant logit| on the test set"),
    "toggles_at_32": Key(NUMBER, "toggles per example with every accumulator at 32 bits (`toggles`: at acc_bits)"),
    "overflows": Key(int, "accumulator values that overflowed their width B on the test set, all layers"),
    "layers": Key(list, "per arithmetic layer: path, operator, datapath, formats, acc_bits, worst-case and observed "
                        "widths, overflows (adder, MF: grid_bits, the weights' grid s_x 2^-k)"),
    "program": Key(str, "the program directory written"),
    "files": Key(list, "the files of the program directory"),
    "onnx": Key(str, "model.onnx written, or why not (ONNX cannot compute the program exactly)"),
    "checkpoint": Key(str, "the run exported"),
    "data": Key(str, "data set name"),
}

#: the entry-specific keys of each schema ("pann.<mode>" for experiments/pann.py, "power.network")
SCHEMAS: dict[str, dict[str, Key]] = {
    "train": _TRAIN, "search": _SEARCH, "pann.convert": _PANN_CONVERT, "pann.sweep": _PANN_SWEEP,
    "pann.table": _PANN_TABLE, "power": _POWER, "power.network": _POWER_NETWORK, "export": _EXPORT,
}


def schema_name(record: Mapping[str, Any]) -> str:
    entry = record.get("entry")
    if entry == "pann" or entry == "power" and "mode" in record:  # the power study's records carry no mode
        return f"{entry}.{record.get('mode')}"
    return str(entry)


def _types(key: Key) -> tuple[type, ...]:
    return key.types if isinstance(key.types, tuple) else (key.types,)


def _type_ok(value: Any, key: Key) -> bool:
    if value is None:
        return key.nullable
    if isinstance(value, bool):  # a bool is an int to Python, not a number to JSON
        return bool in _types(key)
    return isinstance(value, _types(key))


def validate(record: Mapping[str, Any], where: str = "results.json") -> str:
    """Check `record` against its schema; returns the schema name. Raises a one-line ConfigError naming
    `where` and the first key that is unknown, missing or of the wrong type."""
    name = schema_name(record)
    if name not in SCHEMAS:
        raise ConfigError(f"{where}: entry={record.get('entry')!r}, mode={record.get('mode')!r} is not a results "
                          f"schema ({', '.join(SCHEMAS)}); written by an older pannjax? re-run it")
    keys = {**COMMON, **SCHEMAS[name]}
    unknown = sorted(set(record) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: key {unknown[0]!r} is not in the {name} results schema (docs/results.md); "
                          "written by an older pannjax? re-run it")
    complete = record.get("completed") is True
    for key, spec in keys.items():
        if key not in record:
            if key in COMMON and spec.required or complete and spec.required:
                raise ConfigError(f"{where}: the {name} results lack {key!r} (docs/results.md)")
            continue
        if not _type_ok(record[key], spec):
            raise ConfigError(f"{where}: {key}={record[key]!r:.60}: expected {_type_names(spec)} "
                              f"({name} results schema)")
    return name


def _type_names(key: Key) -> str:
    names = {int: "integer", str: "string", bool: "boolean", list: "list", dict: "mapping"}
    text = "number" if key.types == NUMBER else " or ".join(names[t] for t in _types(key))
    return text + (" or null" if key.nullable else "")


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """HEAD of the git checkout pannjax is imported from, "+dirty" when it has uncommitted changes to
    tracked files; None outside a checkout or without git."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def write_results(run_dir: str | os.PathLike, entry: str, record: Mapping[str, Any],
                  config: Mapping[str, Any]) -> dict[str, Any]:
    """Complete `record` with `entry`, `config_hash` (of `config`), `version` and `git_commit`, validate
    it and write `run_dir/results.json` atomically (process 0 of a multi-process run); returns the record as
    written (JSON types)."""
    from pannjax.runlog import to_jsonable

    full = to_jsonable({**record, "entry": entry, "config_hash": config_hash(config), "version": __version__,
                        "git_commit": git_commit()})
    validate(full, str(Path(run_dir) / "results.json"))
    if is_main():  # in a multi-process run only process 0 writes (pannjax.distributed)
        write_json(Path(run_dir) / "results.json", full)
    return full


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """A run's results.json, validated (one-line ConfigError naming the file otherwise)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a readable results.json ({type(e).__name__})") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{path}: not a results record")
    validate(record, str(path))
    return record


#: row keys a sweep table adds to every record (`pannjax.sweep.collect_results`, `group_mean`)
SWEEP_COLUMNS = ("overrides", "run_dir", "n")


def check_column(column: str, where: str, entry: str | None = None, table: bool = True) -> None:
    """A one-line ConfigError unless `column` (a dotted results.json path such as `quant.name` or
    `summary.2bit.pann_accuracy`) starts with a key of `entry`'s results schema (any mode for pann; any
    entry point when None), or, for a sweep `table`, one of the columns a sweep adds."""
    keys = set(COMMON) | (set(SWEEP_COLUMNS) if table else set())
    for name, schema in SCHEMAS.items():
        if entry is None or name == entry or name.startswith(entry + "."):
            keys |= set(schema)
    if column.split(".")[0] not in keys:
        raise ConfigError(f"{where}={column!r} is not a results.json key of {entry or 'any'} runs; valid: "
                          f"{', '.join(sorted(keys))} (docs/results.md)")


def markdown() -> str:
    """The schema as the markdown table of docs/results.md."""
    def types(key: Key) -> str:
        return _type_names(key).replace(" or ", " / ")

    lines = ["| key | written by | type | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | every entry point | {types(v)} | {v.doc}{'' if v.required else ' (when it applies)'} |"
              for k, v in COMMON.items()]
    seen: dict[tuple[str, str], list[str]] = {}
    specs: dict[tuple[str, str], Key] = {}
    for name, schema in SCHEMAS.items():
        for k, v in schema.items():
            seen.setdefault((k, v.doc), []).append(name)
            specs[(k, v.doc)] = v
    for (k, doc), names in seen.items():
        v = specs[(k, doc)]
        lines.append(f"| `{k}` | {', '.join(names)} | {types(v)} | {doc}{'' if v.required else ' (when it applies)'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
