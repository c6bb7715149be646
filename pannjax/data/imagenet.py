"""ImageNet (ILSVRC 2012, tfds `imagenet2012`) read lazily from a local tfds data directory (array_record).

ImageNet does not fit in memory as float32 (1.28 M training images at 224x224x3 are 770 GB), so the
`Dataset` it returns holds `LazyArray`s instead of numpy arrays: read-only array-likes (`len`, `shape`,
`dtype`, `ndim`, and `[int]`, `[slice]` or `[index array]` -> a numpy batch) over one split, read with
`tfds.data_source("imagenet2012", split, data_dir, download=False)` (see `tfds_source.py`). Indexing reads
the requested examples in batched `__getitems__` calls spread over `workers` threads (tfds' JPEG decoding
and Pillow's resizing release the GIL) and preprocesses each image as torchvision's evaluation transform
`Resize(resize) + CenterCrop(image_size)` does (`resize_center_crop`), then scales it to [0, 1] and
standardises it with the ImageNet statistics (`IMAGENET_STATS`). Labels are lazy too: tfds stores each
example (JPEG and label) as one record, so an eager label array would read all ~140 GB of records at
every load, while labels are only ever used next to their images. Both arrays of a split share one
`SplitReader`, which keeps its last result, so `Dataset.batches`' `images[idx]` followed by
`labels[idx]` reads and decodes each batch once.

Splits: tfds' "train" (1,281,167 images) for training and "validation" (50,000) as the test split (the
ILSVRC test labels are not public; tfds' "test" split has label -1). Training augmentation is the JAX
`crop_and_flip` of `augment.py` on the decoded 224x224 crops: a horizontal flip with probability 1/2 and,
with `pad > 0`, a random translation by up to `pad` pixels (filled with zeros, i.e. the mean colour after
standardisation). The standard Inception-style `RandomResizedCrop` (a random 8-100 % area, 3/4-4/3
aspect-ratio crop of the full image per example, per epoch) is not used: images are decoded at a fixed
size on the host, outside the jitted step, and `Dataset` arrays are deterministic functions of the
example index.

ImageNet is a tfds *manual* data set: nothing can be downloaded for it. Missing data raises
`DataNotFoundError` with the preparation steps (`PREPARE`), an unreadable example `CorruptDataError`.
"""

from __future__ import annotations

import concurrent.futures
import functools
import operator
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pannjax.data.augment import crop_and_flip
from pannjax.data.base import Dataset
from pannjax.data.errors import CorruptDataError
from pannjax.data.tfds_source import data_root, open_split, unreadable
from pannjax.errors import ConfigError

NAME = "imagenet2012"
NUM_CLASSES = 1000
SPLITS = {"train": "train", "test": "validation"}  # Dataset split -> tfds split

# Per-channel (R, G, B) mean and standard deviation of the ImageNet training images scaled to [0, 1]: the
# values of fb.resnet.torch (datasets/imagenet.lua, `meanstd`) that torchvision's pretrained models expect
# (torchvision.models documentation: "mean = [0.485, 0.456, 0.406] and std = [0.229, 0.224, 0.225]").
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

PREPARE = ("imagenet2012 is a tfds manual data set: put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar "
           "(https://image-net.org/download-images) in {root}/downloads/manual and run, with tensorflow installed, "
           "python -c 'import tensorflow_datasets as tfds; tfds.builder(\"imagenet2012\", data_dir=\"{root}\")"
           ".download_and_prepare(file_format=\"array_record\")' (or set data.data_dir= to a tfds data dir "
           "holding imagenet2012 in array_record format)")
REPREPARE = "delete {root}/imagenet2012 and prepare it again: " + PREPARE.split(": ", 1)[1]


def resize_center_crop(image: np.ndarray, resize: int, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (size, size, 3), as torchvision's `Resize(resize)` then `CenterCrop(size)` on
    a PIL image: the shorter side scaled to `resize` (the longer to int(resize * long / short)) with
    Pillow's bilinear filter (antialiased when shrinking), then the central size x size window, its top-left
    corner at (int(round((H' - size) / 2)), int(round((W' - size) / 2)))."""
    h, w = image.shape[:2]
    new_h, new_w = (int(resize * h / w), resize) if w <= h else (resize, int(resize * w / h))
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    resized = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR)
    return np.asarray(resized.crop((left, top, left + size, top + size)))


def normalise(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Pixel values 0..255 (NHWC) -> float32 (x / 255 - mean) / std with `IMAGENET_STATS`, computed as
    x * (1 / (255 std)) - mean / std; into `out` (float32, may be `pixels` itself) if given."""
    mean, std = (np.asarray(v, np.float32) for v in IMAGENET_STATS)
    out = np.multiply(pixels, 1 / (255 * std), out=out, dtype=np.float32)
    return np.subtract(out, mean / std, out=out)


class SplitReader:
    """One split of imagenet2012: `read(indices)` -> (float32 images (n, S, S, 3), int32 labels (n,)),
    read-only, the last result kept (`functools.lru_cache(maxsize=1)`)."""

    def __init__(self, source: Any, split: str, root: Path, image_size: int, resize: int, workers: int):
        self.source, self.split, self.root = source, split, root
        self.image_size, self.resize, self.workers = image_size, resize, workers
        self.read = functools.lru_cache(maxsize=1)(self._read)

    def __len__(self) -> int:
        return len(self.source)

    def _read(self, indices: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        n, size = len(indices), self.image_size
        images, labels = np.empty((n, size, size, 3), np.float32), np.empty((n,), np.int32)

        def fill(lo: int, hi: int) -> None:  # one worker's share, written in place
            for i, example in enumerate(self.source.__getitems__(list(indices[lo:hi])), lo):
                images[i] = resize_center_crop(example["image"], self.resize, size)
                labels[i] = example["label"]
            normalise(images[lo:hi], out=images[lo:hi])

        bounds = np.linspace(0, n, min(self.workers, n) + 1).astype(int).tolist()
        try:
            with concurrent.futures.ThreadPoolExecutor(max(1, len(bounds) - 1)) as pool:
                list(pool.map(fill, bounds[:-1], bounds[1:]))
        except Exception as e:  # array_record raises RuntimeError on a truncated file, PIL OSError on bad JPEGs
            raise unreadable(NAME, self.split, self.root, e, REPREPARE.format(root=self.root)) from None
        if n and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise CorruptDataError(f"{NAME} {self.split} split in {self.root} has labels {labels.min()}.."
                                   f"{labels.max()}, expected 0..{NUM_CLASSES - 1}; "
                                   f"{REPREPARE.format(root=self.root)}")
        images.flags.writeable = labels.flags.writeable = False  # shared through the cache
        return images, labels


class LazyArray:
    """A read-only numpy-style view of one column (0: images, 1: labels) of a `SplitReader`: indexing
    with an int, a slice or a 1-D integer array decodes just those examples (negative indices count from
    the end, as in numpy); `np.asarray` decodes the whole split."""

    def __init__(self, reader: SplitReader, column: int, item_shape: tuple[int, ...], dtype: type):
        self.reader, self.column = reader, column
        self.shape = (len(reader), *item_shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"LazyArray({NAME} {self.reader.split}, shape={self.shape}, dtype={self.dtype})"

    def _take(self, indices: np.ndarray) -> np.ndarray:
        n = len(self)
        if indices.size and (indices.min() < -n or indices.max() >= n):
            raise IndexError(f"index out of range for {NAME} {self.reader.split} split of {n} examples")
        return self.reader.read(tuple((indices % n).tolist()))[self.column]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            return self._take(np.arange(*key.indices(len(self))))
        if isinstance(key, (int, np.integer)):
            return self._take(np.asarray([operator.index(key)]))[0]
        indices = np.asarray(key)
        if indices.ndim != 1 or indices.dtype.kind not in "iu":
            raise TypeError(f"{NAME} arrays take an int, a slice or a 1-D integer index array, not {key!r}")
        return self._take(indices)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self[:], dtype)


def load_split(split: str, data_dir: str | os.PathLike | None, image_size: int, resize: int,
               workers: int) -> tuple[LazyArray, LazyArray]:
    """(images, labels) of one tfds split; its first example is read at once, so an unreadable split fails
    here rather than after a training epoch."""
    root = data_root(data_dir)
    reader = SplitReader(open_split(NAME, split, root, PREPARE.format(root=root)), split, root, image_size,
                         resize, workers)
    if len(reader) == 0:
        raise CorruptDataError(f"{NAME} {split} split in {root} has no examples; {REPREPARE.format(root=root)}")
    reader.read((0,))
    return (LazyArray(reader, 0, (image_size, image_size, 3), np.float32), LazyArray(reader, 1, (), np.int32))


def load_imagenet(data_dir: str | os.PathLike | None = None, image_size: int = 224, resize: int = 256,
                  augment: bool = True, pad: int = 0, workers: int | None = None) -> Dataset:
    """ImageNet-1k at `image_size` (center crops of images resized to `resize` on the shorter side), with
    random horizontal flips (and translations by up to `pad` pixels) in training unless `augment=False`;
    `workers` decoding threads (default: one per CPU core)."""
    if image_size < 1 or resize < image_size:
        raise ConfigError(f"data.image_size={image_size}, data.resize={resize}: need 1 <= image_size <= resize "
                          "(the crop is cut from the resized image)")
    if pad < 0:
        raise ConfigError(f"data.pad={pad}: must be >= 0")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ConfigError(f"data.workers={workers}: must be >= 1 (or null: one per CPU core)")
    train_images, train_labels = load_split(SPLITS["train"], data_dir, image_size, resize, workers)
    test_images, test_labels = load_split(SPLITS["test"], data_dir, image_size, resize, workers)
    return Dataset(name=NAME, num_classes=NUM_CLASSES, train_images=train_images, train_labels=train_labels,
                   test_images=test_images, test_labels=test_labels,
                   augment=crop_and_flip(pad=pad, flip=True) if augment else None)
