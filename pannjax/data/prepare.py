"""Offline preparation of CIFAR-10/100: the official archive -> a tfds data dir in array_record format.

Reads a locally supplied official archive from https://www.cs.toronto.edu/~kriz/cifar.html - the binary
version (`cifar-10-binary.tar.gz`, `cifar-100-binary.tar.gz`: records of 1 label byte, or coarse + fine
label bytes for CIFAR-100, followed by 3072 pixel bytes, R then G then B planes of 32x32) or the python
version (`cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`: pickled dicts with `data` (N, 3072) and
`labels` / `fine_labels` / `coarse_labels`) - with numpy and tarfile only, and writes it with tfds'
own writer through the official tfds builders (`tensorflow_datasets.image_classification.cifar`,
same name, version, features and example ids), subclassed only to take the examples from the parsed
archive instead of downloading and reading them with `tf.io.gfile`. Images are handed to tfds as PNG
bytes encoded with Pillow (lossless), so no TensorFlow is needed. `tfds.data_source(name, data_dir=...)`
then reads the result exactly like a data dir made by `tfds.builder(name).download_and_prepare(
file_format="array_record")`.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import pickle
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image
from tensorflow_datasets.image_classification import cifar as tfds_cifar

from pannjax.data.cifar import ARCHIVES, NUM_CLASSES, read_split
from pannjax.data.errors import CorruptDataError, DataNotFoundError
from pannjax.data.tfds_source import data_root
from pannjax.errors import ConfigError

log = logging.getLogger(__name__)

_PIXELS = 32 * 32 * 3


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where a CIFAR variant keeps its splits inside the official binary and python archives."""
    label_keys: tuple[str, ...]  # tfds feature names, in the byte order of a binary record
    bin_dir: str
    bin_files: dict[str, tuple[str, ...]]
    bin_names: tuple[str, ...]  # label-name text files, one per label key
    py_dir: str
    py_files: dict[str, tuple[str, ...]]
    py_meta: str
    py_names: tuple[str, ...]  # keys of the label-name lists in the pickled meta dict, one per label key
    py_labels: tuple[str, ...]  # keys of the label lists in each pickled batch, one per label key


LAYOUTS = {
    "cifar10": _Layout(
        label_keys=("label",), bin_dir="cifar-10-batches-bin",
        bin_files={"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
        bin_names=("batches.meta.txt",), py_dir="cifar-10-batches-py",
        py_files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        py_meta="batches.meta", py_names=("label_names",), py_labels=("labels",)),
    "cifar100": _Layout(
        label_keys=("coarse_label", "label"), bin_dir="cifar-100-binary",
        bin_files={"train": ("train.bin",), "test": ("test.bin",)},
        bin_names=("coarse_label_names.txt", "fine_label_names.txt"), py_dir="cifar-100-python",
        py_files={"train": ("train",), "test": ("test",)},
        py_meta="meta", py_names=("coarse_label_names", "fine_label_names"),
        py_labels=("coarse_labels", "fine_labels")),
}
_LABEL_RANGE = {"label": None, "coarse_label": 20}  # None: the data set's number of classes


@dataclasses.dataclass(frozen=True)
class CifarArrays:
    """A parsed archive: per split uint8 images (N, 32, 32, 3) and int labels per tfds label key."""
    images: dict[str, np.ndarray]
    labels: dict[str, dict[str, np.ndarray]]
    label_names: dict[str, list[str]]


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only what the official CIFAR python batches contain (dicts, lists, bytes, numpy arrays),
    so a tampered archive cannot run code. (`_codecs.encode` is how protocol-2 pickles written by
    Python 3 store bytes.)"""
    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def _members(archive: Path) -> dict[str, bytes]:
    if not archive.is_file():
        raise DataNotFoundError(f"archive {archive} does not exist; download the official archive from "
                                f"https://www.cs.toronto.edu/~kriz/cifar.html and pass its path with --archive")
    try:
        with tarfile.open(archive, "r:*") as tar:
            return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise CorruptDataError(f"archive {archive} is not a readable tar archive ({type(e).__name__}: {e}); "
                               f"it is probably truncated or corrupt - download it again") from None


def _need(members: dict[str, bytes], path: str, archive: Path) -> bytes:
    if path not in members:
        raise CorruptDataError(f"archive {archive} has no {path}: not the official archive of this data set "
                               f"(expected e.g. {' or '.join(ARCHIVES.values())} or the python versions)")
    return members[path]


def _parse_binary(layout: _Layout, members: dict[str, bytes], archive: Path) -> CifarArrays:
    record = len(layout.label_keys) + _PIXELS
    images, labels = {}, {}
    for split, files in layout.bin_files.items():
        chunks = []
        for f in files:
            blob = _need(members, f"{layout.bin_dir}/{f}", archive)
            if len(blob) == 0 or len(blob) % record:
                raise CorruptDataError(f"{archive}: {layout.bin_dir}/{f} has {len(blob)} bytes, not a whole "
                                       f"number of {record}-byte records - the archive is truncated or corrupt")
            chunks.append(np.frombuffer(blob, np.uint8).reshape(-1, record))
        rows = np.concatenate(chunks)
        n_labels = len(layout.label_keys)
        images[split] = rows[:, n_labels:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels[split] = {key: rows[:, i].astype(np.int64) for i, key in enumerate(layout.label_keys)}
    names = {key: [line for line in _need(members, f"{layout.bin_dir}/{f}", archive).decode("utf-8", "replace")
                   .split("\n") if line]
             for key, f in zip(layout.label_keys, layout.bin_names)}
    return CifarArrays(images, labels, names)


def _unpickle(members: dict[str, bytes], path: str, archive: Path) -> dict:
    try:
        return _SafeUnpickler(io.BytesIO(_need(members, path, archive)), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise CorruptDataError(f"{archive}: {path} is not a readable CIFAR batch ({type(e).__name__}: {e})") from None


def _parse_python(layout: _Layout, members: dict[str, bytes], archive: Path) -> CifarArrays:
    images, labels = {}, {}
    for split, files in layout.py_files.items():
        batches = [_unpickle(members, f"{layout.py_dir}/{f}", archive) for f in files]
        try:
            data = np.concatenate([np.asarray(b[b"data"], np.uint8).reshape(-1, _PIXELS) for b in batches])
            split_labels = {key: np.concatenate([np.asarray(b[pkey.encode()], np.int64) for b in batches])
                            for key, pkey in zip(layout.label_keys, layout.py_labels)}
        except (KeyError, ValueError) as e:
            raise CorruptDataError(f"{archive}: {split} batches lack or mangle field {e}") from None
        if any(len(v) != len(data) for v in split_labels.values()):
            raise CorruptDataError(f"{archive}: {split} batches have different numbers of images and labels")
        images[split] = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels[split] = split_labels
    meta = _unpickle(members, f"{layout.py_dir}/{layout.py_meta}", archive)
    try:
        names = {key: [n.decode("utf-8", "replace") for n in meta[nkey.encode()]]
                 for key, nkey in zip(layout.label_keys, layout.py_names)}
    except (KeyError, AttributeError, TypeError) as e:
        raise CorruptDataError(f"{archive}: {layout.py_dir}/{layout.py_meta} lacks or mangles label names "
                               f"({e})") from None
    return CifarArrays(images, labels, names)


def read_archive(name: str, archive: str | os.PathLike) -> CifarArrays:
    """Parse the official binary or python archive of `name` ("cifar10" or "cifar100")."""
    layout = LAYOUTS[name]
    archive = Path(archive).expanduser()
    members = _members(archive)
    dirs = {m.split("/", 1)[0] for m in members}
    if layout.bin_dir in dirs:
        arrays = _parse_binary(layout, members, archive)
    elif layout.py_dir in dirs:
        arrays = _parse_python(layout, members, archive)
    else:
        raise CorruptDataError(f"archive {archive} contains {sorted(dirs)}, not {layout.bin_dir}/ or "
                               f"{layout.py_dir}/: not an official {name} archive")
    for split, by_key in arrays.labels.items():
        for key, values in by_key.items():
            limit = _LABEL_RANGE[key] or NUM_CLASSES[name]
            if values.min(initial=0) < 0 or values.max(initial=0) >= limit:
                raise CorruptDataError(f"{archive}: {split} {key} values outside 0..{limit - 1}")
            if len(arrays.label_names[key]) != limit:
                raise CorruptDataError(f"{archive}: {len(arrays.label_names[key])} names for {key}, expected {limit}")
    return arrays


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="png")
    return buffer.getvalue()


class _FromArrays:
    """Mixin for the official tfds CIFAR builders: examples come from a parsed archive (`CifarArrays`).
    Example ids and keys follow the official `_generate_examples` ("train_00000", ... in file order)."""

    # tfds derives a builder's source path (used only to look up download checksums) via an unconditional
    # `import importlib_resources`, a package it requires only on Python < 3.9; naming the path directly
    # avoids that import. Nothing is downloaded, so the (absent) checksums file next to it is never read.
    code_path = epath.Path(__file__)

    def __init__(self, *, arrays: CifarArrays, **kwargs):
        self._arrays = arrays
        super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
        for key, names in self._arrays.label_names.items():
            self.info.features[key].names = names
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
        images, labels = self._arrays.images[split], self._arrays.labels[split]
        for index, image in enumerate(images):
            example = {key: int(values[index]) for key, values in labels.items()}
            yield index, {"id": f"{split}_{index:05d}", "image": _png(image), **example}


class Cifar10FromArchive(_FromArrays, tfds_cifar.Cifar10, skip_registration=True):
    name = "cifar10"


class Cifar100FromArchive(_FromArrays, tfds_cifar.Cifar100, skip_registration=True):
    name = "cifar100"


_BUILDERS = {"cifar10": Cifar10FromArchive, "cifar100": Cifar100FromArchive}


def remove_incomplete(root: Path, name: str) -> list[Path]:
    """Delete the `incomplete.*` directories tfds writes into before renaming them into place: its own
    clean-up runs on an exception, but a killed prepare leaves one (as big as the data set). Prepared data
    is never touched. Returns what was removed."""
    leftovers = sorted((root / name).glob(f"{tfds.core.constants.INCOMPLETE_PREFIX}*"))
    for path in leftovers:
        shutil.rmtree(path)
    if leftovers:
        log.warning("removed %d unfinished preparation(s) of %s: %s", len(leftovers), name,
                    ", ".join(p.name for p in leftovers))
    return leftovers


def prepare(name: str, archive: str | os.PathLike, data_dir: str | os.PathLike | None = None,
            overwrite: bool = False) -> Path:
    """Write `name` from `archive` into `data_dir` (default: tfds' default data dir) in array_record
    format; returns the dataset's version directory. What an interrupted earlier prepare left
    (`remove_incomplete`) is removed first, and again if this one fails; with `overwrite`, the data
    prepared before stays in place until the new one is written, and is restored if that fails."""
    if name not in _BUILDERS:
        raise ConfigError(f"data set {name!r} cannot be prepared from an archive; valid: {', '.join(_BUILDERS)}")
    root = data_root(data_dir)
    cls = _BUILDERS[name]
    target = root / name / str(cls.VERSION)
    if (target / "dataset_info.json").exists() and not overwrite:
        raise ConfigError(f"{name} is already prepared in {target}; pass --overwrite to rebuild it")
    arrays = read_archive(name, archive)
    remove_incomplete(root, name)
    aside = target.with_name(f"replaced.{target.name}")
    if overwrite and target.exists():  # kept until the rebuild succeeds: a failed one puts it back
        shutil.rmtree(aside, ignore_errors=True)
        target.rename(aside)
    builder = cls(arrays=arrays, data_dir=os.fspath(root), file_format="array_record")
    try:
        builder.download_and_prepare()
    except BaseException:
        if aside.exists():
            shutil.rmtree(target, ignore_errors=True)
            aside.rename(target)
        raise
    finally:
        remove_incomplete(root, name)
    shutil.rmtree(aside, ignore_errors=True)
    return target


def check(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """Read every example of both splits of a prepared `name` (raising `DataNotFoundError` or
    `CorruptDataError` if that fails); returns the number of examples per split."""
    if name not in NUM_CLASSES:
        raise ConfigError(f"data set {name!r} has no check; valid: {', '.join(NUM_CLASSES)}")
    return {split: len(read_split(name, split, data_dir)[1]) for split in ("train", "test")}
