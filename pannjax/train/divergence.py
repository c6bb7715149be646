"""Divergence: a non-finite loss stops a run with one line naming where it went wrong.

`check_losses(losses, first_step, epoch, where)` is called on the per-step losses as the loop reads them
back (every `trainer.log_every` steps, no extra device sync); on the first non-finite one it raises
`DivergenceError` with the step, the epoch and the first layer at fault, found by `first_nonfinite`:
the first parameter leaf (in the model's definition order) that is not finite, else -- all parameters
finite, the forward pass overflowed -- the first arithmetic layer whose input batch is not finite
(`pannjax.nn.bound_layers` with captured inputs). Nothing is checkpointed after the failing step, so the
last good checkpoint stays the newest one.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from flax import traverse_util

from pannjax.errors import DivergenceError


def first_nonfinite(model: Any, variables: dict, images: Any) -> str:
    """Where a network first holds a non-finite number: "weights of <path>", "input of <layer path>", or
    "no layer (weights and layer inputs finite)". With `model` None only the weights are checked."""
    flat = traverse_util.flatten_dict(jax.device_get(variables.get("params", {})))
    for key, value in flat.items():
        if not np.all(np.isfinite(np.asarray(value))):
            return f"weights of {'/'.join(map(str, key[:-1])) or key[-1]} ({key[-1]})"
    if model is None:
        return "no weights (all finite)"
    from pannjax.nn import bound_layers

    for layer in bound_layers(model, variables, images, capture_inputs=True, train=False):
        if not np.all(np.isfinite(layer.inputs)):
            return f"input of {layer.path}"
    return "no layer (weights and layer inputs finite)"


def check_losses(losses: Any, first_step: int, epoch: int, where: Callable[[], str], what: str = "training") -> None:
    """Raise `DivergenceError` at the first non-finite value of `losses` (the losses of steps
    first_step, first_step + 1, ...; `epoch` 1-based); `where()` (called only then, e.g. `first_nonfinite`
    on the state and batch at hand) names the layer at fault."""
    losses = np.asarray(losses, np.float64).ravel()
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size == 0:
        return
    step = first_step + int(bad[0])
    where = where()
    raise DivergenceError(f"{what} diverged: loss {losses[bad[0]]} at step {step} (epoch {epoch}); first "
                          f"non-finite: {where}. Lower the learning rate or check the inputs; nothing was "
                          "checkpointed after the last good epoch", step=step, epoch=epoch, layer=where)


__all__ = ["check_losses", "first_nonfinite"]
