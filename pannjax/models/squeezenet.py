"""SqueezeNet for 32x32 inputs (Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer
parameters and <0.5MB model size", arXiv 1602.07360, 2016).

Fire module (Sec. 3.2): a 1x1 "squeeze" conv to s channels, then 1x1 and 3x3 "expand" convs (e channels
each) whose outputs are concatenated. The Fire channels (s, e) are those of SqueezeNet v1.0 (Sec. 3.3,
Table 1): fire2-3 (16, 64), fire4-5 (32, 128), fire6-7 (48, 192), fire8-9 (64, 256).

Exact variant (v1.0 with these changes for 32x32 inputs, in brackets the original):
  stem 3x3 conv (96), stride 1 -> BN-ReLU                    [v1.0: 7x7/2 conv, then max-pool /2]
  fire2, fire3, fire4                 at 32x32
  max-pool 3x3/2 -> fire5 .. fire8    at 16x16                [v1.0 pools after conv1, fire4, fire8]
  max-pool 3x3/2 -> fire9             at 8x8
  head 1x1 conv (num_classes, bias) -> global average pool -> logits
Every conv but the head is followed by BN (v1.0 has none), as in the other models of the zoo; BN folds
into the conv for deployment. BN's bias takes the place of the conv bias, so each Fire module's kernel +
BN-bias parameters equal its count in Table 1. The 50 % dropout after fire9 and the ReLU after the
classifier conv are left out, so the model needs no dropout rng and the logits can be negative.
732,010 parameters at 10 classes.

Every conv input except the stem's is a ReLU output (non-negative). Layer paths: ``stem``,
``fire{2..9}/{squeeze,expand1x1,expand3x3}``, ``head``.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from pannjax.models.norm import batch_norm
from pannjax.nn import FLOAT_MAC, ArithPolicy, QConv

FIRE_CHANNELS = {  # Table 1: (squeeze s, expand e); expand1x1 and expand3x3 have e channels each
    "fire2": (16, 64), "fire3": (16, 64), "fire4": (32, 128), "fire5": (32, 128),
    "fire6": (48, 192), "fire7": (48, 192), "fire8": (64, 256), "fire9": (64, 256),
}
POOL_BEFORE = ("fire5", "fire9")


class Fire(nn.Module):
    """squeeze 1x1 -> BN-ReLU -> [expand 1x1 -> BN-ReLU, expand 3x3 -> BN-ReLU] concatenated (Sec. 3.2)."""

    squeeze: int
    expand: int
    policy: ArithPolicy = ArithPolicy(FLOAT_MAC)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        norm = functools.partial(batch_norm, train)
        p = self.policy
        s = nn.relu(norm("squeeze_bn")(QConv(self.squeeze, (1, 1), **p.at(self, "squeeze"))(x)))
        e1 = nn.relu(norm("expand1x1_bn")(QConv(self.expand, (1, 1), **p.at(self, "expand1x1"))(s)))
        e3 = nn.relu(norm("expand3x3_bn")(QConv(self.expand, (3, 3), **p.at(self, "expand3x3"))(s)))
        return jnp.concatenate([e1, e3], axis=-1)


class SqueezeNet(nn.Module):
    num_classes: int = 10
    policy: ArithPolicy = ArithPolicy(FLOAT_MAC)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        # Signed input: the normalised image. Every later layer's input follows a ReLU.
        x = QConv(96, (3, 3), input_signed=True, **self.policy.at(self, "stem"))(x)
        x = nn.relu(batch_norm(train, "stem_bn")(x))
        for name, (squeeze, expand) in FIRE_CHANNELS.items():
            if name in POOL_BEFORE:
                x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
            x = Fire(squeeze, expand, self.policy, name=name)(x, train)
        x = QConv(self.num_classes, (1, 1), use_bias=True, **self.policy.at(self, "head"))(x)
        return x.mean(axis=(1, 2))
