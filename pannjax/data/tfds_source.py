"""What every tfds-backed data set shares: the data directory, opening a split, one-line error messages.

A split is opened with `tfds.data_source(name, split, data_dir, download=False)`: tfds' random-access
reader for array_record files, which needs neither TensorFlow nor a network connection. The data
directory is `data_dir` if given, else `$TFDS_DATA_DIR`, else `~/tensorflow_datasets` (tfds' own
default); it must hold `<name>/<version>/` prepared with `file_format="array_record"`. Nothing is ever
downloaded: a split that cannot be opened raises `DataNotFoundError` naming the cause and the fix, a
split that cannot be read raises `CorruptDataError` (see `unreadable`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pannjax.data.errors import CorruptDataError, DataNotFoundError


def default_data_dir() -> Path:
    """tfds' default data directory: `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`."""
    return Path(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()


def data_root(data_dir: str | os.PathLike | None) -> Path:
    """`data_dir` (user-expanded) if given, else `default_data_dir()`."""
    return Path(data_dir).expanduser() if data_dir else default_data_dir()


def first_line(error: BaseException) -> str:
    """`"<ExceptionType>: <first line of its message>"`, for one-line error messages."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def diagnose(name: str, root: Path, error: BaseException) -> str:
    """Why `tfds.data_source` could not open `name` in `root`, in words."""
    infos = sorted((root / name).glob("*/dataset_info.json"))
    if not infos:
        return f"{name} not found in {root} (no {name}/<version>/dataset_info.json)"
    try:  # tfds writes "fileFormat" since 4.x; older data dirs without it are TFRecord
        file_format = json.loads(infos[-1].read_text()).get("fileFormat", "tfrecord")
    except (OSError, ValueError):
        return f"{infos[-1]} is unreadable"
    if file_format != "array_record":
        return (f"{name} in {infos[-1].parent} is stored as {file_format}, which tfds reads only through "
                f"TensorFlow and not by random access; pannjax needs file_format=array_record")
    return f"{name} in {root} cannot be opened ({first_line(error)})"


def open_split(name: str, split: str, root: Path, fix: str) -> Any:
    """`tfds.data_source` of one split of `name` in `root` (a sequence of decoded examples: dicts of numpy
    values); failure raises `DataNotFoundError("<diagnosis>; <fix>")`."""
    import tensorflow_datasets as tfds  # imported here: a second or two that digits-only runs need not pay

    try:
        return tfds.data_source(name, split=split, data_dir=os.fspath(root), download=False)
    except Exception as e:  # tfds reports missing data as several exception types; all mean "not usable"
        raise DataNotFoundError(f"{diagnose(name, root, e)}; {fix}") from None


def unreadable(name: str, split: str, root: Path, error: BaseException, fix: str) -> CorruptDataError:
    """The error for a split that opened but could not be read (truncated file, undecodable image)."""
    return CorruptDataError(f"{name} {split} split in {root} is unreadable ({first_line(error)}); {fix}")
