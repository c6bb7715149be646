"""Run (or resume) a paper-table experiment and turn its sweep into a table, a plot and measured-vs-published.

An experiment is a Hydra config `configs/experiment/<name>.yaml` (package `_global_`) that selects the
groups, sets the sweep (`hydra.sweeper.params`) and carries an `experiment:` block:

    experiment:
      name: pot_vs_uniform
      entry: train                 # experiments/<entry>.py runs it (train | search | pann)
      columns: [quant.name, op.name, test_accuracy, energy_pj]   # table columns (results.json keys)
      group_by: [quant.name, op.name]           # optional: one row per group, mean/std over the rest (seeds)
      plot: {x: energy_pj, y: test_accuracy, label: quant.name}  # Pareto front marked
      expected:                                                  # published numbers, printed beside ours
        source: "Paper, Table 2"
        metric: test_accuracy
        rows:                                                    # numbers a table row can be compared with
          - {match: {quant.name: pot}, value: 0.913}
        claims:                                                  # statements the table is read against
          - {claim: "energy efficiency of PoT vs uniform accelerator", published: ">= 1.4x"}
      compare: {by: energy_budget_of, label: label, against: enos, require: budget_met}  # optional, below

With `compare`, the summary adds one row per value of `by` and one `metric` cell per value of `label`
(mean ± std over seeds; only runs where `require` is true), and `against`'s verdict against every other
label (`pannjax.sweep.compare_table`).
An experiment may extend others: a plain name in its `defaults` list (`- enos_matched`) is a sibling
experiment config, composed by Hydra as usual and merged here under this one's own blocks.

`reproduce(name)` launches `experiments/<entry>.py -m +experiment=<name>` into a fixed sweep directory
(`trainer.resume=true` for training entries, so an interrupted reproduction continues from its orbax
checkpoints and finished jobs return at once), shows a progress bar with ETA over the jobs while it
runs, then writes `summary.md`, `summary.json` and `summary.png` into the sweep directory.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from pannjax.errors import ConfigError
from pannjax.results import SYSTEM_KEYS, check_column
from pannjax.runlog import write_json
from pannjax.sweep import collect_results, compare_table, group_mean, markdown_table, plot_pareto

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs" / "experiment"
ENTRIES = ("train", "search", "pann")
RESUMABLE = ("train", "search")
EXPECTED_KEYS = {"source", "metric", "rows", "claims"}
COMPARE_KEYS = {"by", "label", "metric", "against", "require"}
#: axis titles (with units) of the usual results.json columns
AXIS_LABELS = {"energy_pj": "energy per example (pJ)", "test_accuracy": "test accuracy",
               "energy_rel": "energy relative to all-MAC", "macs": "MACs per example"}


def experiment_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _raw(name: str, seen: tuple[str, ...] = ()) -> tuple[Path, dict[str, Any]]:
    """(path, YAML) of experiment `name` with the `experiment` and `hydra` blocks of the sibling experiments its
    `defaults` list names merged under its own."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"experiment {name!r} not found in {CONFIG_DIR}; available: {', '.join(experiment_names())}")
    if name in seen:
        raise ConfigError(f"{path}: its defaults extend it again ({' -> '.join((*seen, name))})")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    parents = [_raw(entry, (*seen, name))[1] for entry in cfg.get("defaults") or []
               if isinstance(entry, str) and entry != "_self_" and (CONFIG_DIR / f"{entry}.yaml").is_file()]
    merged = OmegaConf.merge(*({k: p[k] for k in ("experiment", "hydra") if k in p} for p in parents), cfg)
    return path, OmegaConf.to_container(merged, resolve=False)


def load_experiment(name: str) -> dict[str, Any]:
    """The raw experiment YAML (not composed: only its `experiment` and `hydra.sweeper` blocks are read, with
    those of the experiments it extends)."""
    path, cfg = _raw(name)
    meta = cfg.get("experiment") or {}
    entry = meta.get("entry", "train")
    if entry not in ENTRIES:
        raise ConfigError(f"{path}: experiment.entry={entry!r}; expected one of {ENTRIES}")
    unknown = sorted(set(meta.get("expected") or {}) - EXPECTED_KEYS)
    if unknown:
        raise ConfigError(f"{path}: experiment.expected.{unknown[0]} is not a known key; "
                          f"valid: {', '.join(sorted(EXPECTED_KEYS))}")
    compare = meta.get("compare") or {}
    unknown = sorted(set(compare) - COMPARE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: experiment.compare.{unknown[0]} is not a known key; valid: "
                          f"{', '.join(sorted(COMPARE_KEYS))}")
    missing = sorted({"by", "label", "against"} - set(compare)) if compare else []
    if missing:
        raise ConfigError(f"{path}: experiment.compare.{missing[0]} is missing: a comparison needs by, label and "
                          "against")
    plot = meta.get("plot") or {}
    named = [*((f"experiment.compare.{k}", compare[k]) for k in ("by", "label", "metric", "require") if k in compare),
             *((f"experiment.columns[{i}]", c) for i, c in enumerate(meta.get("columns") or [])),
             *((f"experiment.group_by[{i}]", c) for i, c in enumerate(meta.get("group_by") or [])),
             *((f"experiment.plot.{axis}", plot[axis]) for axis in ("x", "y") if axis in plot)]
    if (meta.get("expected") or {}).get("metric"):
        named.append(("experiment.expected.metric", meta["expected"]["metric"]))
    for where, column in named:  # the table reads results.json through its schema only
        check_column(str(column), f"{path}: {where}", entry)
    return cfg


def count_jobs(sweep_params: Mapping[str, Any] | None) -> int | None:
    """Number of jobs of the basic sweeper's grid, when every value is a plain comma list; else None."""
    if not sweep_params:
        return 1
    sizes = []
    for value in sweep_params.values():
        text = str(value)
        if any(tok in text for tok in ("range(", "interval(", "choice(", "glob(")):
            return None
        sizes.append(len(text.split(",")))
    return math.prod(sizes)


def sweep_command(name: str, entry: str, sweep_dir: Path, overrides: Sequence[str]) -> list[str]:
    cmd = [sys.executable, str(ROOT / "experiments" / f"{entry}.py"), "-m", f"+experiment={name}",
           f"hydra.sweep.dir={sweep_dir}"]
    if entry in RESUMABLE:
        cmd.append("trainer.resume=true")
    return cmd + list(overrides)


def run_sweep(cmd: list[str], sweep_dir: Path, jobs: int | None, log_path: Path) -> None:
    """Run the sweep as a child process, polling finished jobs (results.json files) for the progress bar."""
    sweep_dir.mkdir(parents=True, exist_ok=True)

    def finished() -> int:
        return sum(1 for p in sweep_dir.glob("*/results.json"))

    with open(log_path, "a") as log, tqdm(total=jobs, initial=finished(), desc="jobs", unit="job") as bar:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        done = bar.n
        while proc.poll() is None:
            time.sleep(2.0)
            now = finished()
            if now > done:
                bar.update(now - done)
                done = now
        bar.update(finished() - done)
    if proc.returncode:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-15:])
        raise ConfigError(f"the sweep failed (exit {proc.returncode}); last lines of {log_path}:\n{tail}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def table_rows(rows: list[dict[str, Any]], meta: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows and columns of the experiment's table. With `group_by`, runs sharing those values (e.g.
    seeds) become one row with `n` and `<column>.mean`/`.std` for every other column (`sweep.group_mean`).
    When runs priced their energy on an accelerator (a `energy_memory_pj` figure), `energy_pj` is followed by
    its split: `energy_compute_pj`, `energy_memory_pj`, `latency_cycles`."""
    columns = list(meta.get("columns") or ["overrides", "test_accuracy", "energy_pj"])
    if "energy_pj" in columns and any(_is_number(r.get("energy_memory_pj")) for r in rows):
        at = columns.index("energy_pj") + 1
        columns[at:at] = [k for k in SYSTEM_KEYS if k not in columns]
    group_by = list(meta.get("group_by") or [])
    if not group_by:
        return rows, columns
    values = [c for c in columns if c not in group_by]
    return group_mean(rows, group_by, values), [*group_by, "n", *(f"{v}.{s}" for v in values for s in ("mean", "std"))]


def compare_expected(rows: list[dict[str, Any]], expected: Mapping[str, Any] | None,
                     suffix: str = "") -> list[dict[str, Any]]:
    """Published vs measured: for each expected row, the mean `metric` (+ `suffix`, e.g. ".mean" on
    grouped rows) over the measured rows whose columns equal its `match` values."""
    if not expected:
        return []
    metric = expected.get("metric", "test_accuracy") + suffix
    out = []
    for item in expected.get("rows", []):
        match = item.get("match", {})
        hits = [r[metric] for r in rows if _is_number(r.get(metric))
                and all(str(r.get(k)) == str(v) for k, v in match.items())]
        measured = sum(hits) / len(hits) if hits else None
        out.append({"setting": ", ".join(f"{k}={v}" for k, v in match.items()), "metric": metric,
                    "published": item.get("value"), "measured": measured,
                    "delta": None if measured is None or item.get("value") is None else measured - item["value"],
                    "source": expected.get("source", "")})
    return out


def summarize(sweep_dir: Path, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Table, plot and comparison of a finished sweep directory; returns the summary record."""
    rows = collect_results(sweep_dir)
    if not rows:
        raise ConfigError(f"no results.json under {sweep_dir}: the sweep produced no finished run")
    grouped, columns = table_rows(rows, meta)
    suffix = ".mean" if meta.get("group_by") else ""
    table = markdown_table(grouped, columns)
    comparison = compare_expected(grouped, meta.get("expected"), suffix)
    text = f"# {meta.get('name', sweep_dir.name)}\n\n{table}"
    expected = meta.get("expected") or {}
    if comparison:
        text += "\nMeasured vs published (" + comparison[0]["source"] + ")\n\n" + markdown_table(
            comparison, ["setting", "metric", "published", "measured", "delta"])
    compare = meta.get("compare")
    matched = None
    if compare:
        matched, matched_columns = compare_table(rows, compare["by"], compare["label"],
                                                 compare.get("metric", "test_accuracy"), compare["against"],
                                                 compare.get("require"))
        text += (f"\nMatched comparison: {compare.get('metric', 'test_accuracy')} per {compare['by']} and "
                 f"{compare['label']} (mean ± std over runs"
                 + (f" with {compare['require']}" if compare.get("require") else "")
                 + "); verdicts: difference beyond two standard errors\n\n" + markdown_table(matched, matched_columns))
    if expected.get("claims"):
        text += (f"\nPublished claims ({expected.get('source', 'source not given')}), to read the table against\n\n"
                 + markdown_table(expected["claims"], ["claim", "published"]))
    plot = meta.get("plot") or {"x": "energy_pj", "y": "test_accuracy"}
    plot_path = sweep_dir / "summary.png"
    plot_pareto(grouped, plot["x"] + suffix, plot["y"] + suffix, plot_path, label=plot.get("label"),
                x_label=plot.get("x_label", AXIS_LABELS.get(plot["x"], plot["x"])),
                y_label=plot.get("y_label", AXIS_LABELS.get(plot["y"], plot["y"])), title=meta.get("name"))
    (sweep_dir / "summary.md").write_text(text)
    summary = {"experiment": meta.get("name"), "rows": grouped, "columns": columns, "expected": comparison,
               "claims": expected.get("claims", []), "source": expected.get("source"), "matched": matched,
               "plot": str(plot_path)}
    write_json(sweep_dir / "summary.json", summary)
    return {"text": text, **summary}


def reproduce(name: str, sweep_dir: str | Path | None = None, overrides: Sequence[str] = (),
              run: bool = True) -> dict[str, Any]:
    """Run or resume experiment `name` into `sweep_dir` (default `reproduce/<name>`), then summarize it."""
    cfg = load_experiment(name)
    meta = {"name": name, **(cfg.get("experiment") or {})}
    sweep_dir = Path(sweep_dir or ROOT / "reproduce" / name).resolve()
    if run:
        params = dict(((cfg.get("hydra") or {}).get("sweeper") or {}).get("params") or {})
        for override in overrides:  # a command-line value replaces the sweep's values of that key
            key, _, value = override.partition("=")
            for swept in [n for n in params if n.lstrip("+") == key.lstrip("+")]:
                params[swept] = value
        cmd = sweep_command(name, meta.get("entry", "train"), sweep_dir, overrides)
        run_sweep(cmd, sweep_dir, count_jobs(params), sweep_dir / "reproduce.log")
    return summarize(sweep_dir, meta)
