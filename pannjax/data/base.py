"""The data set interface every source implements (digits, CIFAR and ImageNet via tfds, synthetic).

A `Dataset` holds both splits in host memory as numpy arrays (images float32 NHWC, already normalised;
labels int32) - or, for ImageNet, as read-only array-likes that decode the examples they are indexed with
(`imagenet.LazyArray`; pannjax uses only `len`, `.shape` and indexing by slice or index array) - and
yields deterministic batches: the order of epoch `e` depends only on `(seed, e)`, so a resumed run sees
exactly the batches an uninterrupted run would. Augmentation is a pure JAX function
`augment(rng, images) -> images` that the jitted train step applies, so it is fused with the step rather
than run in Python.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import jax
import numpy as np

Augment = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    num_classes: int
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    augment: Augment | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split == "train":
            return self.train_images, self.train_labels
        if split == "test":
            return self.test_images, self.test_labels
        raise ValueError(f"split={split!r}: expected 'train' or 'test'")

    def steps_per_epoch(self, batch_size: int) -> int:
        """Training steps per epoch (the last incomplete batch is dropped)."""
        return max(1, len(self.train_labels) // batch_size)

    def batches(self, split: str, batch_size: int, *, epoch: int = 0, seed: int = 0,
                shuffle: bool | None = None, rows: slice | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Batches of `{"image", "label"}`. Train: shuffled by (seed, epoch), incomplete batch dropped.
        Test: in order, with a final partial batch (so every example is evaluated exactly once).
        `rows`: read only these rows of every full batch (a multi-process run's share,
        `pannjax.distributed.batch_rows`); the batches are the same for every process count, and a
        partial test batch is read whole by every process."""
        images, labels = self.split(split)
        shuffle = split == "train" if shuffle is None else shuffle
        n = len(labels)
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        stop = (n // batch_size) * batch_size if split == "train" else n
        if split == "train" and stop == 0:
            raise ValueError(f"batch_size={batch_size} exceeds the {n} training examples of {self.name}")
        for lo in range(0, stop, batch_size):
            idx = order[lo:lo + batch_size]
            if rows is not None and len(idx) == batch_size:
                idx = idx[rows]
            yield {"image": images[idx], "label": labels[idx]}
