"""Energy-accuracy table and Pareto plot of a sweep of `experiments/search.py` (or any runs whose
results.json have the two columns):

    python experiments/search.py -m search.lambda=0,0.1,0.3,1
    python scripts/aggregate.py multirun/search/<date>/<time>            # -> table on stdout, results.md, pareto.png

Columns and axes are options (`--columns`, `--x`, `--y`, `--label`).
"""

import argparse
import sys
from pathlib import Path

from pannjax.errors import ConfigError
from pannjax.results import check_column
from pannjax.sweep import collect_results, markdown_table, pareto_front, plot_pareto

DEFAULT_COLUMNS = ["variant", "lambda", "energy_pj", "energy_rel", "accuracy_before_retraining",
                   "accuracy_after_retraining", "baseline_accuracy", "wall_seconds", "overrides"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir")
    parser.add_argument("--columns", nargs="+", default=DEFAULT_COLUMNS)
    parser.add_argument("--x", default="energy_rel", help="x axis column (lower is better)")
    parser.add_argument("--y", default="test_accuracy", help="y axis column (higher is better)")
    parser.add_argument("--label", default="variant", help="column that colours the points")
    parser.add_argument("--out", default=None, help="PNG path (default: <sweep_dir>/pareto.png)")
    args = parser.parse_args(argv)
    try:
        for where, column in [*(("--columns", c) for c in args.columns), ("--x", args.x), ("--y", args.y),
                              ("--label", args.label)]:
            check_column(column, where)
        rows = collect_results(args.sweep_dir)
        if not rows:
            raise ConfigError(f"no results.json below {args.sweep_dir}")
        front = set(pareto_front([(r.get(args.x), r.get(args.y)) for r in rows]))
        for i, r in enumerate(rows):
            r["pareto"] = "yes" if i in front else ""
        table = markdown_table(rows, [*args.columns, "pareto"])
        (Path(args.sweep_dir) / "results.md").write_text(table)
        out = plot_pareto(rows, args.x, args.y, args.out or Path(args.sweep_dir) / "pareto.png", label=args.label,
                          x_label="energy relative to all-MAC (per example)" if args.x == "energy_rel" else args.x,
                          y_label="test accuracy" if args.y == "test_accuracy" else args.y,
                          title="ENOS energy-accuracy trade-off")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table)
    print(f"plot: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
