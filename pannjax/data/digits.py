"""scikit-learn's 8x8 handwritten digits: a small real data set that ships with scikit-learn.

`sklearn.datasets.load_digits` (the test set of the UCI "Optical Recognition of Handwritten Digits"
data, 1797 images of 8x8 pixels with values 0..16, 10 classes). Pixels are scaled by 1/16, then
standardised with the mean and standard deviation of the training split (one channel, so two scalars).
The 80/20 train/test split is stratified by class and uses a fixed `random_state` that is independent
of the run seed, so test accuracies of different seeds are measured on the same 360 images.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits as _sklearn_digits
from sklearn.model_selection import train_test_split

from pannjax.data.augment import crop_and_flip
from pannjax.data.base import Dataset
from pannjax.errors import ConfigError

TEST_FRACTION = 0.2
SPLIT_RANDOM_STATE = 0  # fixed on purpose: the split must not change with the training seed


def load_digits(shift: int = 0) -> Dataset:
    """The digits data set; `shift > 0` adds a random translation by up to `shift` pixels (zero fill,
    no flipping: mirrored digits are different symbols) as training augmentation."""
    if not isinstance(shift, int) or isinstance(shift, bool) or not 0 <= shift <= 3:
        raise ConfigError(f"data.shift={shift!r}: must be an integer pixel count in 0..3")
    bunch = _sklearn_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[..., None]
    labels = bunch.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_RANDOM_STATE)
    mean, std = x_train.mean(), x_train.std()
    return Dataset(
        name="digits", num_classes=10,
        train_images=((x_train - mean) / std).astype(np.float32), train_labels=y_train,
        test_images=((x_test - mean) / std).astype(np.float32), test_labels=y_test,
        augment=crop_and_flip(pad=shift, flip=False) if shift else None)
