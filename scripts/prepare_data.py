"""Prepare CIFAR-10/100 offline from the official archive, or check a prepared data dir.

    python scripts/prepare_data.py cifar10 --archive /path/to/cifar-10-binary.tar.gz [--data-dir DIR]
    python scripts/prepare_data.py cifar100 --archive /path/to/cifar-100-python.tar.gz [--data-dir DIR]
    python scripts/prepare_data.py cifar10 --check [--data-dir DIR]

Archives: the binary or python versions from https://www.cs.toronto.edu/~kriz/cifar.html. The data dir
defaults to tfds' default ($TFDS_DATA_DIR, else ~/tensorflow_datasets); training then finds the data
there (or via `data.data_dir=DIR`). No network and no TensorFlow are used (see pannjax/data/prepare.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pannjax.data.prepare import LAYOUTS, check, prepare  # noqa: E402
from pannjax.errors import ConfigError  # noqa: E402

OFFICIAL_SIZES = {"train": 50000, "test": 10000}  # both CIFAR-10 and CIFAR-100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(LAYOUTS))
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--archive", type=Path, help="official archive (binary or python version)")
    action.add_argument("--check", action="store_true", help="read every example of a prepared data dir")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="tfds data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--overwrite", action="store_true", help="rebuild a data set that is already prepared")
    args = parser.parse_args(argv)
    try:
        if args.check:
            counts = check(args.name, args.data_dir)
            print(f"{args.name}: ok, {counts['train']} train and {counts['test']} test examples")
        else:
            target = prepare(args.name, args.archive, args.data_dir, overwrite=args.overwrite)
            counts = check(args.name, args.data_dir)
            print(f"{args.name}: prepared in {target} ({counts['train']} train, {counts['test']} test examples)")
        if counts != OFFICIAL_SIZES:
            print(f"note: the official archives have {OFFICIAL_SIZES['train']} train and {OFFICIAL_SIZES['test']} "
                  f"test examples")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
