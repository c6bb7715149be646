"""Turn a Hydra multirun directory into one table: every run's `results.json` -> rows -> JSON/markdown.

    rows = collect_results("multirun/train/2026-01-01/12-00-00")
    print(markdown_table(rows, ["quant.name", "op.name", "seed", "test_accuracy"]))

Rows are the runs' `results.json` records flattened with '.' (so `quant.name`, `weight_sparsity.total`)
plus `run_dir` and `overrides` (the job's command-line overrides from `.hydra/overrides.yaml`), sorted
by run directory; `group_mean` averages them over seeds. `SweepSummary` is a Hydra callback that writes
`results.json` (all rows) and `results.md` (the table) into the sweep directory when a multirun ends, so
a sweep ends in one file:

    hydra:
      callbacks:
        summary: {_target_: pannjax.sweep.SweepSummary, columns: [quant.name, test_accuracy]}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml
from hydra.experimental.callback import Callback

from pannjax.errors import ConfigError
from pannjax.results import read_results
from pannjax.runlog import write_json


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> one level with '.'-joined keys (lists and scalars kept as they are)."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def collect_results(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One flat row per run `results.json` below `sweep_dir`, each validated against the results schema
    (`pannjax.results`); sweep summaries, which hold "runs", are skipped."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise ConfigError(f"sweep directory {root} does not exist")
    rows = []
    for path in sorted(root.rglob("results.json")):
        record = json.loads(path.read_text())
        if isinstance(record, dict) and "runs" in record:  # a (nested) sweep summary, not a run
            continue
        record = read_results(path)  # the results schema: an older or foreign record is refused by name
        row = flatten(record)
        overrides = path.parent / ".hydra" / "overrides.yaml"
        row["overrides"] = " ".join(yaml.safe_load(overrides.read_text()) or []) if overrides.is_file() else ""
        row["run_dir"] = str(path.parent)
        rows.append(row)
    return rows


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub markdown table of `columns` (missing values shown as '-')."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def group_mean(rows: Iterable[Mapping[str, Any]], by: Sequence[str], values: Sequence[str]) -> list[dict[str, Any]]:
    """One row per distinct value of the `by` columns (in first-seen order) with `n` runs and, for each of
    `values`, `<value>.mean` and `<value>.std` (population std over the group's runs)."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    out = []
    for key, members in groups.items():
        row: dict[str, Any] = dict(zip(by, key))
        row["n"] = len(members)
        for v in values:
            xs = [float(m[v]) for m in members if m.get(v) is not None]
            mean = sum(xs) / len(xs) if xs else None
            row[f"{v}.mean"] = mean
            row[f"{v}.std"] = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs)) if xs else None
        out.append(row)
    return out


def verdict(a: Sequence[float], b: Sequence[float]) -> str:
    """"win", "loss" or "tie" of the runs `a` against the runs `b`: a win (loss) when mean(a) - mean(b) is more
    than two standard errors of the difference above (below) zero, sqrt(s_a^2/n_a + s_b^2/n_b) with sample
    standard deviations (Welch); one run per side has no spread, so any difference counts."""
    if not a or not b:
        return "-"
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)

    def var(xs, mean):
        return sum((x - mean) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0

    margin = 2 * math.sqrt(var(a, mean_a) / len(a) + var(b, mean_b) / len(b))
    diff = mean_a - mean_b
    return "win" if diff > margin else "loss" if diff < -margin else "tie"


def compare_table(rows: Sequence[Mapping[str, Any]], by: str, label: str, metric: str, against: str,
                  require: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """A matched comparison: one row per value of `by` (e.g. the budget's network), one `metric` cell per
    value of `label` (the method) as "mean ± std (n)" over its runs (seeds; population std), and for every
    other label the verdict of `against` vs it (`verdict`) with the difference of the means. With `require`
    (e.g. `budget_met`), runs where that column is false do not count: a cell of such runs only says how
    many there were ("not matched (n)"), and a verdict needs matched runs on both sides."""
    cells: dict[tuple, list[float]] = {}
    unmatched: dict[tuple, int] = {}
    keys, labels = [], []
    for r in rows:
        k, lab, v = r.get(by), r.get(label), r.get(metric)
        if k not in keys:
            keys.append(k)
        if lab not in labels:
            labels.append(lab)
        if require is not None and not r.get(require):
            unmatched[(k, lab)] = unmatched.get((k, lab), 0) + 1
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            cells.setdefault((k, lab), []).append(float(v))
    if against not in labels:
        raise ConfigError(f"experiment.compare.against={against!r} is not a value of {label!r} in the sweep "
                          f"(values: {', '.join(map(str, labels))})")
    others = [lab for lab in labels if lab != against]
    out = []
    for k in keys:
        row: dict[str, Any] = {by: k}
        for lab in labels:
            xs = cells.get((k, lab), [])
            mean = sum(xs) / len(xs) if xs else None
            std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs)) if xs else None
            row[str(lab)] = "-" if not xs else f"{mean:.4f} ± {std:.4f} ({len(xs)})"
            if (k, lab) in unmatched:
                row[str(lab)] = (row[str(lab)] + "; " if xs else "") + f"not matched ({unmatched[(k, lab)]})"
        for lab in others:
            a, b = cells.get((k, against), []), cells.get((k, lab), [])
            diff = f" ({sum(a) / len(a) - sum(b) / len(b):+.4f})" if a and b else ""
            row[f"{against} vs {lab}"] = verdict(a, b) + diff
        out.append(row)
    return out, [by, *map(str, labels), *(f"{against} vs {lab}" for lab in others)]


def write_summary(sweep_dir: str | Path, columns: Sequence[str], group_by: Sequence[str] = (),
                  values: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Write `<sweep_dir>/results.json` ({"runs": rows, "groups": means}) and `<sweep_dir>/results.md`
    (the runs table, then the `group_mean` table when `group_by` is given); return the rows."""
    rows = collect_results(sweep_dir)
    groups = group_mean(rows, group_by, values) if group_by else []
    write_json(Path(sweep_dir) / "results.json", {"runs": rows, "columns": list(columns), "groups": groups})
    text = markdown_table(rows, columns)
    if group_by:
        text += "\n" + markdown_table(groups, [*group_by, "n", *(f"{v}.{s}" for v in values for s in ("mean", "std"))])
    (Path(sweep_dir) / "results.md").write_text(text)
    return rows


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, summarise the sweep directory (`write_summary`)."""

    def __init__(self, columns: Sequence[str] = ("overrides", "test_accuracy"), group_by: Sequence[str] = (),
                 values: Sequence[str] = ()):
        self.columns, self.group_by, self.values = list(columns), list(group_by), list(values)

    def on_multirun_end(self, config, **kwargs) -> None:
        write_summary(config.hydra.sweep.dir, self.columns, self.group_by, self.values)


def pareto_front(points: Sequence[tuple[float, float]], minimize_x: bool = True,
                 maximize_y: bool = True) -> list[int]:
    """Indices of the non-dominated points, ordered by x. A point dominates another when it is at least
    as good in both coordinates and better in one (default: lower x, e.g. energy; higher y, e.g. accuracy)."""
    sx, sy = (1.0 if minimize_x else -1.0), (-1.0 if maximize_y else 1.0)  # both turned into "smaller is better"
    keyed = [(sx * x, sy * y, i) for i, (x, y) in enumerate(points)
             if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    front, best_y = [], math.inf
    for kx, ky, i in sorted(keyed):
        if ky < best_y:
            front.append(i)
            best_y = ky
    return sorted(front, key=lambda i: points[i][0])


def plot_pareto(rows: Sequence[Mapping[str, Any]], x: str, y: str, path: str | Path, label: str | None = None,
                x_label: str | None = None, y_label: str | None = None, title: str | None = None) -> Path:
    """Scatter `y` against `x` for every row (coloured by the `label` column when given), with the
    Pareto front (lower x, higher y) drawn as a step line; saved as PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [r for r in rows if isinstance(r.get(x), (int, float)) and isinstance(r.get(y), (int, float))]
    if not usable:
        raise ConfigError(f"no run has numeric '{x}' and '{y}' to plot")
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in usable:
        groups.setdefault(_cell(r.get(label)) if label else "runs", []).append(r)
    for name, members in groups.items():
        ax.scatter([r[x] for r in members], [r[y] for r in members], s=36, label=name if label else None, zorder=3)
    points = [(float(r[x]), float(r[y])) for r in usable]
    front = [points[i] for i in pareto_front(points)]
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="black", linewidth=1.2,
            linestyle="--", label="Pareto front", zorder=2)
    ax.scatter([p[0] for p in front], [p[1] for p in front], s=90, facecolors="none", edgecolors="black", zorder=4)
    ax.set_xlabel(x_label or x)
    ax.set_ylabel(y_label or y)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title=label)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
