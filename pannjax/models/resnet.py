"""CIFAR ResNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2).

stem 3x3 conv (16) -> BN-ReLU -> three stages of n BasicBlocks at 32x32, 16x16, 8x8 with 16, 32, 64
channels (the first block of stages 2 and 3 has stride 2) -> global average pool -> dense head;
depth = 6n + 2 weighted layers (20, 32, 44, 56, 110, ...). BasicBlock (Fig. 2): 3x3 conv -> BN-ReLU ->
3x3 conv -> BN, plus the shortcut, then ReLU.

`shortcut` chooses the shortcut where a block changes shape (Sec. 3.3): "A", the default and the
paper's choice for CIFAR (Sec. 4.2), subsamples with the block's stride and zero-pads the new channels,
adding no parameters, so ResNet-20/32/56 have 0.27/0.46/0.85 M parameters as in Table 6; "B" projects
with a strided 1x1 `QConv` + BN. `width` is the first stage's channel count (16 in the paper; stages
have width, 2 * width, 4 * width).

Only `stem` sees a possibly negative input (the image): every block input, and so every other conv's
and the head's input, is a ReLU output. Layer paths: ``stem``, ``stage{1,2,3}_block{i}/conv{1,2}``
(and ``/shortcut`` with option B), ``head``.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from pannjax.errors import ConfigError
from pannjax.models.norm import batch_norm
from pannjax.nn import FLOAT_MAC, ArithPolicy, QConv, QDense

SHORTCUTS = ("A", "B")


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN, plus an identity, option-A or option-B shortcut (He et al. 2016, Fig. 2)."""

    features: int
    strides: int = 1
    shortcut: str = "A"
    policy: ArithPolicy = ArithPolicy(FLOAT_MAC)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        norm = functools.partial(batch_norm, train)
        p = self.policy
        strides = (self.strides, self.strides)
        # x is the stem's or the previous block's ReLU output: non-negative (also for the option-B shortcut).
        y = QConv(self.features, (3, 3), strides=strides, **p.at(self, "conv1"))(x)
        y = nn.relu(norm("conv1_bn")(y))
        y = norm("conv2_bn")(QConv(self.features, (3, 3), **p.at(self, "conv2"))(y))
        if x.shape[-1] != self.features or self.strides != 1:
            if self.shortcut == "A":
                x = x[:, :: self.strides, :: self.strides, :]
                x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, self.features - x.shape[-1])))
            else:
                x = QConv(self.features, (1, 1), strides=strides, **p.at(self, "shortcut"))(x)
                x = norm("shortcut_bn")(x)
        return nn.relu(y + x)


class ResNet(nn.Module):
    num_classes: int = 10
    depth: int = 20
    width: int = 16
    shortcut: str = "A"
    policy: ArithPolicy = ArithPolicy(FLOAT_MAC)

    def __post_init__(self):
        if self.depth < 8 or (self.depth - 2) % 6:
            raise ConfigError(f"model.depth={self.depth}: CIFAR ResNet needs 6n + 2 >= 8 (20, 32, 56, ...)")
        if self.shortcut not in SHORTCUTS:
            raise ConfigError(f"model.shortcut={self.shortcut!r}: expected one of {SHORTCUTS}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        blocks_per_stage = (self.depth - 2) // 6
        # Signed input: the normalised image. Every later layer's input follows a ReLU.
        x = QConv(self.width, (3, 3), input_signed=True, **self.policy.at(self, "stem"))(x)
        x = nn.relu(batch_norm(train, "stem_bn")(x))
        for stage in range(3):
            for block in range(blocks_per_stage):
                x = BasicBlock(self.width * 2**stage, strides=2 if stage > 0 and block == 0 else 1,
                               shortcut=self.shortcut, policy=self.policy,
                               name=f"stage{stage + 1}_block{block}")(x, train)
        x = x.mean(axis=(1, 2))
        return QDense(self.num_classes, **self.policy.at(self, "head"))(x)
