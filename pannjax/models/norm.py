"""The BatchNorm every pannjax model uses: batch statistics in training, running averages (momentum 0.9)
in evaluation. Parameter names are the caller's, so checkpoints do not depend on this helper."""

from __future__ import annotations

import flax.linen as nn


def batch_norm(train: bool, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)
