"""Data sets by name: `load_dataset(name, **options) -> Dataset`, and `register_dataset` for new ones.

Built in: "digits" (scikit-learn's real 8x8 digits, the default), "cifar10" and "cifar100" (local tfds
array_record data, see `cifar.py` and `scripts/prepare_data.py`), "imagenet2012" (local tfds array_record
data prepared from the manually downloaded archives, decoded lazily per batch: `imagenet.py`) and
"synthetic" (random data, only when asked for by name). Unknown names or options raise a one-line
`ConfigError` listing the valid ones.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from pannjax.data.augment import crop_and_flip
from pannjax.data.base import Augment, Dataset
from pannjax.data.cifar import load_cifar10, load_cifar100
from pannjax.data.digits import load_digits
from pannjax.data.errors import CorruptDataError, DataNotFoundError
from pannjax.data.imagenet import load_imagenet
from pannjax.data.synthetic import load_synthetic
from pannjax.errors import ConfigError

DatasetFactory = Callable[..., Dataset]

_REGISTRY: dict[str, DatasetFactory] = {
    "digits": load_digits,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "imagenet2012": load_imagenet,
    "synthetic": load_synthetic,
}


def register_dataset(name: str, factory: DatasetFactory, *, overwrite: bool = False) -> None:
    """Make `load_dataset(name, **options)` call `factory(**options)`; its keyword parameters are the
    data set's options (checked by name before the call)."""
    if name in _REGISTRY and not overwrite:
        raise ConfigError(f"data set {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory


def registered_datasets() -> list[str]:
    return sorted(_REGISTRY)


def load_dataset(name: str | None, **options: Any) -> Dataset:
    """The data set called `name`, built with `options` (e.g. `data_dir` for CIFAR, `shift` for digits)."""
    if name not in _REGISTRY:
        raise ConfigError(f"data.name={name!r} is not a known data set; valid: {', '.join(registered_datasets())}")
    factory = _REGISTRY[name]
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        valid = [k for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ConfigError(f"data.{unknown[0]} is not an option of data set {name!r}; "
                              f"valid: {', '.join(valid) or '(none)'}")
    return factory(**options)


__all__ = ["Augment", "ConfigError", "CorruptDataError", "DataNotFoundError", "Dataset", "DatasetFactory",
           "crop_and_flip", "load_dataset", "register_dataset", "registered_datasets"]
