"""Model zoo. Every model is a Flax module with attributes `num_classes` and `policy` (an
`ArithPolicy`), called as `model.apply(variables, images, train=...)`; all arithmetic layers are
`QConv`/`QDense`, the first named ``stem`` and the classifier ``head``.

`register_model` lets code outside the package add a model under a config name.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn

from pannjax.errors import ConfigError
from pannjax.models.digits_cnn import DigitsCNN
from pannjax.models.resnet import ResNet
from pannjax.models.resnet_imagenet import ResNetImageNet
from pannjax.models.shufflenet import ShuffleNetV2
from pannjax.models.squeezenet import SqueezeNet

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "digits_cnn": DigitsCNN,
    "resnet": ResNet,
    "resnet_imagenet": ResNetImageNet,
    "squeezenet": SqueezeNet,
    "shufflenet": ShuffleNetV2,
}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make `factory(num_classes=..., policy=..., **kwargs)` available as `model=<name>`."""
    if name in _MODELS and _MODELS[name] is not factory:
        raise ConfigError(f"model {name!r} is already registered")
    _MODELS[name] = factory


def model_names() -> list[str]:
    return sorted(_MODELS)


def build_model(name: str, **kwargs) -> nn.Module:
    """Instantiate the registered model `name`; unknown names and arguments give a one-line error."""
    if name not in _MODELS:
        raise ConfigError(f"model.name={name!r} is unknown; available: {', '.join(model_names())}")
    cls = _MODELS[name]
    if dataclasses.is_dataclass(cls):  # Flax modules are dataclasses: name the option, list the valid ones
        known = {f.name for f in dataclasses.fields(cls) if f.init} - {"parent", "name", "num_classes", "policy"}
        unknown = sorted(set(kwargs) - known - {"num_classes", "policy"})
        if unknown:
            raise ConfigError(f"model.{unknown[0]} is not an option of model {name!r}; valid: "
                              f"{', '.join(sorted(known))}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"model {name!r}: {e}") from None


__all__ = [
    "DigitsCNN", "ResNet", "ResNetImageNet", "ShuffleNetV2", "SqueezeNet", "build_model", "model_names",
    "register_model",
]
