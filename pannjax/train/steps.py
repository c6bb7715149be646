"""Jitted train and eval steps (pure functions of the state and a batch)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from pannjax.data.base import Augment
from pannjax.train.state import TrainState


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_train_step(augment: Augment | None) -> Callable:
    """`train_step(state, batch) -> (state, metrics)`: augmentation (rng folded from the state's rng and
    step, so it is reproducible and resumable), forward in train mode, cross-entropy, one optax update."""

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        step_rng = jax.random.fold_in(state.rng, state.step)
        aug_rng, noise_rng = jax.random.split(step_rng)
        images = batch["image"] if augment is None else augment(aug_rng, batch["image"])

        def loss_fn(params):
            logits, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, images,
                                             train=True, mutable=["batch_stats"], rngs={"noise": noise_rng})
            return cross_entropy(logits, batch["label"]), (logits, updates)

        (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads, updates.get("batch_stats", state.batch_stats))
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return state, {"loss": loss, "accuracy": accuracy}

    return jax.jit(train_step)


@jax.jit
def eval_step(state: TrainState, batch: dict) -> dict:
    """Sums (not means) of loss and correct predictions, so partial batches aggregate exactly."""
    logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=False)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    return {"loss_sum": losses.sum(), "correct": jnp.sum(jnp.argmax(logits, -1) == batch["label"]),
            "count": jnp.asarray(batch["label"].shape[0])}
