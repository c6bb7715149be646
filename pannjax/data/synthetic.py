"""Synthetic data: random images and labels, for smoke tests and timing only (`data=synthetic`).

Never used unless asked for by name; a model trained on it learns nothing (labels are independent of
the images), so its accuracies are chance level by construction.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pannjax.data.base import Dataset
from pannjax.errors import ConfigError


def load_synthetic(image_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10, num_train: int = 512,
                   num_test: int = 128, seed: int = 0) -> Dataset:
    """Standard-normal float32 images of `image_shape` (H, W, C) with uniform random labels."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"data.image_shape={list(image_shape)}: expected [height, width, channels], all >= 1")
    for key, value in (("num_classes", num_classes), ("num_train", num_train), ("num_test", num_test)):
        if int(value) < 1:
            raise ConfigError(f"data.{key}={value}: must be >= 1")
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        return (rng.standard_normal((n, *shape), dtype=np.float32),
                rng.integers(0, num_classes, n, dtype=np.int32))

    train_images, train_labels = split(int(num_train))
    test_images, test_labels = split(int(num_test))
    return Dataset(name="synthetic", num_classes=int(num_classes), train_images=train_images,
                   train_labels=train_labels, test_images=test_images, test_labels=test_labels)
