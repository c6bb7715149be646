"""Training: `TrainState` pytree, jitted steps, the loop, orbax checkpoints."""

from pannjax.train.checkpoint import checkpoint_manager, restore_checkpoint, save_checkpoint
from pannjax.train.loop import TrainerConfig, count_params, evaluate, train_and_evaluate
from pannjax.train.state import OptimizerConfig, TrainState, create_train_state, make_optimizer
from pannjax.train.steps import cross_entropy, eval_step, make_train_step

__all__ = [
    "OptimizerConfig", "TrainState", "TrainerConfig", "checkpoint_manager", "count_params", "create_train_state",
    "cross_entropy", "eval_step", "evaluate", "make_optimizer", "make_train_step", "restore_checkpoint",
    "save_checkpoint", "train_and_evaluate",
]
