"""Pure-JAX image augmentation, applied per batch inside the jitted train step.

`crop_and_flip(pad, flip)` builds `augment(rng, images) -> images` for NHWC batches: zero-pad every image
by `pad` pixels on each side, cut a random window of the original size (an independent offset per
image), and optionally mirror each image left-right with probability 1/2. With `pad=4, flip=True` this
is the standard CIFAR augmentation (He et al., "Deep Residual Learning for Image Recognition", CVPR
2016, Sec. 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly sampled from the padded
image or its horizontal flip"). Padding happens once per batch; the crop is a `lax.dynamic_slice`
vmapped over the batch and the flip a `jnp.where`, so the whole thing is a few fused XLA ops.
The result is a deterministic function of `rng` and `images`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pannjax.data.base import Augment


def _crop_and_flip(rng: jax.Array, images: jax.Array, *, pad: int, flip: bool) -> jax.Array:
    n, h, w, c = images.shape
    crop_rng, flip_rng = jax.random.split(rng)
    if pad > 0:
        padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        offsets = jax.random.randint(crop_rng, (n, 2), 0, 2 * pad + 1)
        zero = jnp.zeros((), offsets.dtype)
        images = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], zero), (h, w, c)))(padded, offsets)
    if flip:
        mirror = jax.random.bernoulli(flip_rng, 0.5, (n, 1, 1, 1))
        images = jnp.where(mirror, images[:, :, ::-1, :], images)
    return images


def crop_and_flip(pad: int = 4, flip: bool = True) -> Augment:
    """Random translation by up to `pad` pixels (zero fill) and, if `flip`, random horizontal mirroring."""
    if pad < 0:
        raise ValueError(f"pad={pad}: must be >= 0")
    return functools.partial(_crop_and_flip, pad=int(pad), flip=bool(flip))
