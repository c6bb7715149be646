"""Reproduce a paper-table experiment: run or resume its sweep, then print the table, the measured vs
published numbers, and write the accuracy-vs-energy plot (pannjax/reproduce.py).

    python scripts/reproduce.py --list
    python scripts/reproduce.py digits_bits                                  # run, resume, summarise
    python scripts/reproduce.py digits_bits hydra/launcher=local             # jobs in parallel (joblib)
    python scripts/reproduce.py pot_cifar10_resnet20 hydra/launcher=slurm    # on a SLURM cluster
    python scripts/reproduce.py digits_bits --no-run                         # only re-summarise
Extra arguments are Hydra overrides passed to every job.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pannjax.errors import ConfigError  # noqa: E402
from pannjax.reproduce import experiment_names, reproduce  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", nargs="?", help="name of a config in configs/experiment/")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every job")
    parser.add_argument("--out", help="sweep directory (default: reproduce/<experiment>)")
    parser.add_argument("--no-run", action="store_true", help="summarise an existing sweep directory only")
    parser.add_argument("--list", action="store_true", help="list the experiments")
    args = parser.parse_intermixed_args()
    if args.list or not args.experiment:
        print("\n".join(experiment_names()))
        return
    try:
        summary = reproduce(args.experiment, args.out, args.overrides, run=not args.no_run)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(summary["text"])
    print(f"plot: {summary['plot']}")


if __name__ == "__main__":
    main()
