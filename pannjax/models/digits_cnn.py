"""A small CNN for scikit-learn's 8x8 handwritten digits (the embedded default data set).

stem 3x3 conv (32) -> BN-ReLU -> 3x3 conv (64, stride 2) -> BN-ReLU -> 3x3 conv (64) -> BN-ReLU
-> global average pool -> dense head. About 57 k parameters; every arithmetic layer is QConv/QDense.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from pannjax.models.norm import batch_norm
from pannjax.nn import FLOAT_MAC, ArithPolicy, QConv, QDense


class DigitsCNN(nn.Module):
    num_classes: int = 10
    width: int = 32
    policy: ArithPolicy = ArithPolicy(FLOAT_MAC)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        norm = functools.partial(batch_norm, train)
        p = self.policy
        x = QConv(self.width, (3, 3), input_signed=True, **p.at(self, "stem"))(x)
        x = nn.relu(norm("stem_bn")(x))
        x = QConv(2 * self.width, (3, 3), strides=(2, 2), **p.at(self, "conv1"))(x)
        x = nn.relu(norm("conv1_bn")(x))
        x = QConv(2 * self.width, (3, 3), **p.at(self, "conv2"))(x)
        x = nn.relu(norm("conv2_bn")(x))
        x = x.mean(axis=(1, 2))
        return QDense(self.num_classes, **p.at(self, "head"))(x)
