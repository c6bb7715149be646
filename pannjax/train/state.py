"""Training state and optimiser construction.

`TrainState` is a pytree (a `flax.struct` dataclass): step, params, BatchNorm statistics, optimiser
state and the rng of the run, so a checkpoint of it is everything needed to resume bit-exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from pannjax.errors import ConfigError
from pannjax.ops.adder import adder_lr_scaling


class TrainState(struct.PyTreeNode):
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: optax.OptState
    rng: jax.Array
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    def apply_gradients(self, grads: Any, batch_stats: Any) -> "TrainState":
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                            batch_stats=batch_stats, opt_state=opt_state)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Optimiser and learning-rate schedule.

    name: "sgd" (momentum, optionally Nesterov) or "adam" (AdamW-style decoupled decay is not used:
    weight decay is L2 added to the gradient of kernels only, `optax.add_decayed_weights`).
    schedule: "cosine" (Loshchilov & Hutter 2017, decays to 0 over all steps), "step" (x`step_gamma`
    at each fraction in `step_milestones` of training) or "constant"; optional linear warmup.
    """

    name: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_milestones: tuple[float, ...] = (0.5, 0.75)
    step_gamma: float = 0.1
    # AdderNet's adaptive learning-rate scaling (pannjax.ops.adder_lr_scaling, Chen et al. CVPR 2020 Eq. 8)
    # on every conv/dense kernel when > 0 (meant for networks whose layers are all adder layers)
    adder_lr_eta: float = 0.0

    def __post_init__(self):
        if self.name not in ("sgd", "adam"):
            raise ConfigError(f"trainer.optimizer.name={self.name!r}: expected 'sgd' or 'adam'")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ConfigError(f"trainer.optimizer.schedule={self.schedule!r}: expected cosine, step or constant")
        if not self.learning_rate > 0:
            raise ConfigError(f"trainer.optimizer.learning_rate={self.learning_rate}: must be > 0")
        if self.weight_decay < 0:
            raise ConfigError(f"trainer.optimizer.weight_decay={self.weight_decay}: must be >= 0")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"trainer.optimizer.momentum={self.momentum}: expected a value in [0, 1)")
        if self.warmup_epochs < 0:
            raise ConfigError(f"trainer.optimizer.warmup_epochs={self.warmup_epochs}: must be >= 0")
        if not 0 < self.step_gamma <= 1:
            raise ConfigError(f"trainer.optimizer.step_gamma={self.step_gamma}: expected a factor in (0, 1]")
        if any(not 0 < m < 1 for m in self.step_milestones):
            raise ConfigError(f"trainer.optimizer.step_milestones={list(self.step_milestones)}: expected fractions "
                              "of training in (0, 1)")


def learning_rate_schedule(cfg: OptimizerConfig, total_steps: int, steps_per_epoch: int) -> optax.Schedule:
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    main = max(total_steps - warmup, 1)
    if cfg.schedule == "cosine":
        body = optax.cosine_decay_schedule(cfg.learning_rate, main)
    elif cfg.schedule == "step":
        body = optax.piecewise_constant_schedule(
            cfg.learning_rate, {int(m * main): cfg.step_gamma for m in cfg.step_milestones})
    else:
        body = optax.constant_schedule(cfg.learning_rate)
    if warmup == 0:
        return body
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.learning_rate, warmup), body], [warmup])


def _kernel_mask(params: Any) -> Any:
    """True for convolution/dense kernels: the only parameters that get weight decay."""
    flat = flax.traverse_util.flatten_dict(params)
    return flax.traverse_util.unflatten_dict({k: k[-1] == "kernel" for k in flat})


def make_optimizer(cfg: OptimizerConfig, total_steps: int, steps_per_epoch: int) -> optax.GradientTransformation:
    lr = learning_rate_schedule(cfg, total_steps, steps_per_epoch)
    decay = optax.add_decayed_weights(cfg.weight_decay, mask=_kernel_mask) if cfg.weight_decay else optax.identity()
    if cfg.adder_lr_eta:
        decay = optax.chain(optax.masked(adder_lr_scaling(cfg.adder_lr_eta), _kernel_mask), decay)
    if cfg.name == "sgd":
        return optax.chain(decay, optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov))
    return optax.chain(decay, optax.adam(lr))


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, sample_images: jax.Array,
                       seed: int) -> TrainState:
    """Initialise parameters from `seed` with a real sample batch (data-dependent quantizer init,
    e.g. LSQ steps, sees real activations)."""
    init_key, run_key = jax.random.split(jax.random.key(seed))
    variables = jax.jit(lambda k, x: model.init(k, x, train=False))(init_key, jnp.asarray(sample_images))
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params), rng=run_key, apply_fn=model.apply, tx=tx)
