"""CIFAR-10 and CIFAR-100 read from a local tensorflow-datasets data directory (array_record format).

The splits are read with `tfds.data_source(name, split, data_dir, download=False)` - tfds' random-access
reader for array_record files, which needs neither TensorFlow nor a network connection - in batched
`__getitems__` calls, decoded to uint8 and kept in memory (50,000 training images of CIFAR are 150 MB).
Images are scaled to [0, 1] and standardised with the usual per-channel CIFAR training-set statistics;
training uses the standard pad-4 / random-crop-32 / horizontal-flip augmentation (`augment.py`).

The data directory (`tfds_source.py`: `data_dir`, else `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`) must
hold `<name>/<version>/` prepared with `file_format="array_record"`: made offline from the official archive
by `scripts/prepare_data.py`, or by tfds itself (`tfds.builder(name).download_and_prepare(
file_format="array_record")` on a machine with internet). Missing or unreadable data raises
`DataNotFoundError` / `CorruptDataError` with the command that fixes it; nothing is downloaded and
nothing random is substituted.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pannjax.data.augment import crop_and_flip
from pannjax.data.base import Dataset
from pannjax.data.errors import CorruptDataError
from pannjax.data.tfds_source import data_root, open_split, unreadable

NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
IMAGE_SHAPE = (32, 32, 3)
ARCHIVES = {"cifar10": "cifar-10-binary.tar.gz", "cifar100": "cifar-100-binary.tar.gz"}

# Per-channel (R, G, B) mean and standard deviation of the training images scaled to [0, 1], i.e.
# `x.mean((0, 1, 2)) / 255` and `x.std((0, 1, 2)) / 255` over the 50,000 training images, rounded to 4
# digits. CIFAR-100's are those of github.com/weiaicunzai/pytorch-cifar100 (conf/global_settings.py,
# CIFAR100_TRAIN_MEAN/STD); CIFAR-10's are the values used throughout the PyTorch CIFAR literature. (The
# also common CIFAR-10 std (0.2023, 0.1994, 0.2010) is not the per-channel std of the pixels.)
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

_READ_CHUNK = 5000  # examples per batched read: bounds the list of decoded dicts held at once


def _fix(name: str, root: Path, overwrite: bool = False) -> str:
    flag = " --overwrite" if overwrite else ""
    return (f"prepare it offline with: python scripts/prepare_data.py {name} --archive /path/to/{ARCHIVES[name]} "
            f"--data-dir {root}{flag} (or set data.data_dir= to an existing tfds data dir prepared with "
            f"file_format=array_record)")


def read_split(name: str, split: str, data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One split as (uint8 images (N, 32, 32, 3), int32 labels (N,)), in the order tfds stores it."""
    root = data_root(data_dir)
    source = open_split(name, split, root, _fix(name, root))
    n = len(source)
    images = np.empty((n, *IMAGE_SHAPE), np.uint8)
    labels = np.empty((n,), np.int32)
    try:
        for lo in range(0, n, _READ_CHUNK):
            examples = source.__getitems__(list(range(lo, min(n, lo + _READ_CHUNK))))
            images[lo:lo + len(examples)] = np.stack([ex["image"] for ex in examples])
            labels[lo:lo + len(examples)] = [ex["label"] for ex in examples]
    except Exception as e:  # array_record raises RuntimeError on a truncated file, PIL/ValueError on bad images
        raise unreadable(name, split, root, e, _fix(name, root, overwrite=True)) from None
    if n == 0 or labels.min() < 0 or labels.max() >= NUM_CLASSES[name]:
        found = f"labels {labels.min()}..{labels.max()}" if n else "no examples"
        raise CorruptDataError(f"{name} {split} split in {root} has {found}, expected labels in "
                               f"0..{NUM_CLASSES[name] - 1}; {_fix(name, root, overwrite=True)}")
    return images, labels


def normalise(name: str, images: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32, scaled to [0, 1] and standardised with `CIFAR_STATS[name]`."""
    mean, std = (np.asarray(v, np.float32) for v in CIFAR_STATS[name])
    return (images.astype(np.float32) / 255.0 - mean) / std


def load_cifar(name: str, data_dir: str | os.PathLike | None = None, augment: bool = True) -> Dataset:
    """CIFAR-10 or CIFAR-100 (`name`) with crop+flip training augmentation unless `augment=False`."""
    if name not in NUM_CLASSES:
        raise ValueError(f"name={name!r}: expected one of {sorted(NUM_CLASSES)}")
    train_images, train_labels = read_split(name, "train", data_dir)
    test_images, test_labels = read_split(name, "test", data_dir)
    return Dataset(name=name, num_classes=NUM_CLASSES[name],
                   train_images=normalise(name, train_images), train_labels=train_labels,
                   test_images=normalise(name, test_images), test_labels=test_labels,
                   augment=crop_and_flip(pad=4, flip=True) if augment else None)


def load_cifar10(data_dir: str | os.PathLike | None = None, augment: bool = True) -> Dataset:
    """CIFAR-10: 50,000 training and 10,000 test 32x32 colour images in 10 classes (Krizhevsky, 2009)."""
    return load_cifar("cifar10", data_dir, augment)


def load_cifar100(data_dir: str | os.PathLike | None = None, augment: bool = True) -> Dataset:
    """CIFAR-100: as CIFAR-10 but 100 fine classes (the 20 coarse labels are not used)."""
    return load_cifar("cifar100", data_dir, augment)
