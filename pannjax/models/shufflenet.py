"""ShuffleNet V2 for 32x32 inputs (Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design", ECCV 2018).

Units (Sec. 3, Fig. 3c/d). Basic unit (stride 1): split the channels into two halves; one half passes
unchanged, the other goes through 1x1 conv -> BN-ReLU -> 3x3 depthwise conv -> BN -> 1x1 conv -> BN-ReLU;
concatenate and shuffle the channels (2 groups). Down-sampling unit (stride 2): no split; the main
branch as above with a stride-2 depthwise conv, the shortcut branch a stride-2 3x3 depthwise conv -> BN
-> 1x1 conv -> BN-ReLU; the concatenation doubles the channels. Depthwise convs are `QConv(groups=C)`.

Network (Table 5): `scale` in {0.5, 1.0, 1.5, 2.0} selects the output channels of stages 2-4 (48/96/192,
116/232/464, 176/352/704, 244/488/976) and of conv5 (1024; 2048 at 2.0x); `stage_repeats` = (4, 8, 4)
units per stage, the first of each down-sampling. For 32x32 inputs the stem is a 3x3 conv (24) with
stride 1 -> BN-ReLU and there is no max-pool (ImageNet: stride 2 and a 3x3/2 max-pool), so stages 2-4
run at 16x16, 8x8, 4x4; then conv5 1x1 -> BN-ReLU -> global average pool -> dense head. Neither change
touches parameters: at 1000 classes the counts equal the ImageNet model's (2,278,604 at 1.0x, as in
torchvision); at 10 classes 1.0x has 1,263,854.

Why V2 rather than V1 (Zhang et al., CVPR 2018): V1's unit uses grouped 1x1 convs with a channel
shuffle between them and an element-wise add. V2's guidelines (Sec. 2) measure that grouped convs raise
memory access cost (G2) and that element-wise operations are not negligible (G4), so V2's unit uses
ordinary 1x1 convs, a channel split and a concatenation instead. For ENOS's per-layer operator search,
this makes the layers holding most of the weights and MACs ordinary (groups = 1) 1x1 convs, each one
contraction over all its input channels with one operator to choose.

Signedness: every unit input is a concatenation of ReLU outputs, so non-negative; the 1x1 conv right
after a depthwise conv + BN (no ReLU) sees signed input. Layer paths: ``stem``,
``stage{2,3,4}_unit{i}/{conv1,dwconv,conv2}`` (and ``shortcut_dwconv``, ``shortcut_conv`` in unit 0),
``conv5``, ``head``.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from pannjax.errors import ConfigError
from pannjax.models.norm import batch_norm
from pannjax.nn import FLOAT_MAC, ArithPolicy, QConv, QDense

STAGE_CHANNELS = {  # Table 5: output channels of stages 2, 3, 4 and of conv5, by scale
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}
STEM_CHANNELS = 24


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """Interleave the channels of `groups` groups (Zhang et al. 2018, Sec. 3.1): (g, C/g) -> (C/g, g)."""
    *batch, channels = x.shape
    x = x.reshape(*batch, groups, channels // groups)
    return jnp.swapaxes(x, -1, -2).reshape(*batch, channels)


class ShuffleUnit(nn.Module):
    """ShuffleNet V2 unit with `features` output channels: Fig. 3c if strides == 1, Fig. 3d if 2."""

    features: int
    strides: int = 1
    policy: ArithPolicy = ArithPolicy(FLOAT_MAC)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        norm = functools.partial(batch_norm, train)
        p = self.policy
        branch = self.features // 2

        def depthwise_bn(name: str, y: jax.Array) -> jax.Array:
            channels = y.shape[-1]
            strides = (self.strides, self.strides)
            y = QConv(channels, (3, 3), strides=strides, groups=channels, **p.at(self, name))(y)
            return norm(f"{name}_bn")(y)

        if self.strides == 1:
            shortcut, x = jnp.split(x, 2, axis=-1)
        else:
            shortcut = depthwise_bn("shortcut_dwconv", x)
            # Signed input: depthwise conv + BN, no ReLU.
            shortcut = QConv(branch, (1, 1), input_signed=True, **p.at(self, "shortcut_conv"))(shortcut)
            shortcut = nn.relu(norm("shortcut_conv_bn")(shortcut))
        y = nn.relu(norm("conv1_bn")(QConv(branch, (1, 1), **p.at(self, "conv1"))(x)))
        y = depthwise_bn("dwconv", y)
        # Signed input: depthwise conv + BN, no ReLU. The unit's input x (concatenated ReLU outputs) is not.
        y = nn.relu(norm("conv2_bn")(QConv(branch, (1, 1), input_signed=True, **p.at(self, "conv2"))(y)))
        return channel_shuffle(jnp.concatenate([shortcut, y], axis=-1), 2)


class ShuffleNetV2(nn.Module):
    num_classes: int = 10
    scale: float = 1.0
    stage_repeats: tuple[int, ...] = (4, 8, 4)
    policy: ArithPolicy = ArithPolicy(FLOAT_MAC)

    def __post_init__(self):
        if self.scale not in STAGE_CHANNELS:
            raise ConfigError(f"model.scale={self.scale}: expected one of {tuple(STAGE_CHANNELS)}")
        if len(self.stage_repeats) != 3 or min(self.stage_repeats) < 1:
            raise ConfigError(f"model.stage_repeats={self.stage_repeats}: expected three unit counts >= 1")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        norm = functools.partial(batch_norm, train)
        p = self.policy
        *stage_channels, conv5_channels = STAGE_CHANNELS[self.scale]
        # Signed input: the normalised image.
        x = nn.relu(norm("stem_bn")(QConv(STEM_CHANNELS, (3, 3), input_signed=True, **p.at(self, "stem"))(x)))
        for stage, (features, repeats) in enumerate(zip(stage_channels, self.stage_repeats), start=2):
            for unit in range(repeats):
                x = ShuffleUnit(features, strides=2 if unit == 0 else 1, policy=p,
                                name=f"stage{stage}_unit{unit}")(x, train)
        x = nn.relu(norm("conv5_bn")(QConv(conv5_channels, (1, 1), **p.at(self, "conv5"))(x)))
        x = x.mean(axis=(1, 2))
        return QDense(self.num_classes, **p.at(self, "head"))(x)
