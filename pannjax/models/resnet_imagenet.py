"""ImageNet ResNet-18/34/50/101/152 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
Sec. 3.4 and Table 1).

stem 7x7/2 conv (64) -> BN-ReLU -> 3x3/2 max-pool -> four stages (conv2_x .. conv5_x of Table 1; 56, 28,
14, 7 pixels at 224x224 input) of `STAGES[depth]` blocks with width, 2, 4, 8 x width channels (width = 64
in the paper) -> global average pool -> dense head. Depth 18 and 34 stack `BasicBlock`s (two 3x3 convs,
Fig. 5 left; the CIFAR module of `resnet.py`), depth 50, 101 and 152 `Bottleneck`s (1x1 reduce, 3x3,
1x1 expand to 4 x the block's width, Fig. 5 right). The first block of stages 2-4 has stride 2 (Sec. 3.4,
"downsampling is performed by conv3_1, conv4_1, and conv5_1 with a stride of 2"); in a bottleneck the
stride sits on the 3x3 conv as in torchvision (the "v1.5" of NVIDIA's recipes; the original Caffe models
stride the first 1x1 conv: same parameters, but ResNet-50 then has 4.1 instead of Table 1's 3.8 x 10^9
multiply-adds at 224x224). Shortcuts are option B (Sec. 3.3): identity, or a strided 1x1 `QConv` + BN
projection where a block changes shape.

With `width=64` and 1000 classes the parameter counts (BN scale and bias included, running statistics
not) are torchvision's: 11,689,512 for ResNet-18, 25,557,032 for ResNet-50. Padding: 3 on the stem, 1 on
the max-pool (as torchvision); the block convs use "SAME", which for a strided 3x3 conv on an even input
pads (0, 1) where torchvision pads (1, 1) (same output sizes and parameters; as in Flax's ImageNet example).

Only `stem` sees a possibly negative input (the normalised image); every other conv's and the head's input
is a ReLU output (the max-pool of one included). Layer paths: ``stem``, ``stage{1..4}_block{i}/conv{1,2}``
(BasicBlock) or ``/conv{1,2,3}`` (Bottleneck), ``/shortcut`` where projected, ``head``.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from pannjax.errors import ConfigError
from pannjax.models.resnet import BasicBlock
from pannjax.models.norm import batch_norm
from pannjax.nn import FLOAT_MAC, ArithPolicy, QConv, QDense


class Bottleneck(nn.Module):
    """1x1 conv (features) -> BN-ReLU -> 3x3 conv (features, stride) -> BN-ReLU -> 1x1 conv (4 x features)
    -> BN, plus the identity or an option-B projection, then ReLU (He et al. 2016, Fig. 5 right)."""

    features: int
    strides: int = 1
    policy: ArithPolicy = ArithPolicy(FLOAT_MAC)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        norm = functools.partial(batch_norm, train)
        p, out = self.policy, 4 * self.features
        strides = (self.strides, self.strides)
        # x is the max-pool's or the previous block's ReLU output: non-negative (also for the projection).
        y = nn.relu(norm("conv1_bn")(QConv(self.features, (1, 1), **p.at(self, "conv1"))(x)))
        y = nn.relu(norm("conv2_bn")(QConv(self.features, (3, 3), strides=strides, **p.at(self, "conv2"))(y)))
        y = norm("conv3_bn")(QConv(out, (1, 1), **p.at(self, "conv3"))(y))
        if x.shape[-1] != out or self.strides != 1:
            x = norm("shortcut_bn")(QConv(out, (1, 1), strides=strides, **p.at(self, "shortcut"))(x))
        return nn.relu(y + x)


# depth -> (block, blocks per stage): He et al. 2016, Table 1.
STAGES = {
    18: (functools.partial(BasicBlock, shortcut="B"), (2, 2, 2, 2)),
    34: (functools.partial(BasicBlock, shortcut="B"), (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ResNetImageNet(nn.Module):
    num_classes: int = 1000
    depth: int = 18
    width: int = 64
    policy: ArithPolicy = ArithPolicy(FLOAT_MAC)

    def __post_init__(self):
        if self.depth not in STAGES:
            raise ConfigError(f"model.depth={self.depth}: ImageNet ResNet depth must be one of "
                              f"{', '.join(map(str, STAGES))} (He et al. 2016, Table 1)")
        if self.width < 1:
            raise ConfigError(f"model.width={self.width}: must be >= 1")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        # Signed input: the normalised image. Every later layer's input follows a ReLU.
        x = QConv(self.width, (7, 7), strides=(2, 2), padding=3, input_signed=True,
                  **self.policy.at(self, "stem"))(x)
        x = nn.relu(batch_norm(train, "stem_bn")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        block, counts = STAGES[self.depth]
        for stage, blocks in enumerate(counts):
            for i in range(blocks):
                x = block(self.width * 2**stage, strides=2 if stage > 0 and i == 0 else 1, policy=self.policy,
                          name=f"stage{stage + 1}_block{i}")(x, train)
        x = x.mean(axis=(1, 2))
        return QDense(self.num_classes, **self.policy.at(self, "head"))(x)
