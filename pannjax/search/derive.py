"""From a search state to a normal pannjax network: the discrete assignment and its inherited weights.

The assignment is argmax_k alpha_lk per layer (frozen layers: their fixed choice) -- DARTS's and ENOS's
derivation rule. `inherit_params` maps the search parameters onto the derived network's layout: the
shared kernel/bias, BatchNorm parameters, and the chosen candidate's quantizer parameters
(`<name>_quantizer_w` -> `quantizer_w`); the other candidates' quantizer parameters are dropped.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from pannjax.search.space import SearchSpace


def assignment(alpha: Any, frozen: Any, choice: Any, space: SearchSpace) -> dict[str, str]:
    """{layer path: candidate name} by argmax alpha (fixed choice where frozen)."""
    a = traverse_util.flatten_dict(jax.device_get(alpha))
    f = traverse_util.flatten_dict(jax.device_get(frozen))
    c = traverse_util.flatten_dict(jax.device_get(choice))
    return {"/".join(k[:-1]): space.names[int(c[k]) if bool(f[k]) else int(np.argmax(a[k]))] for k in sorted(a)}


def layer_probabilities(alpha: Any, space: SearchSpace) -> dict[str, dict[str, float]]:
    """{layer path: {candidate: softmax(alpha_l)_k}} for reports."""
    a = traverse_util.flatten_dict(jax.device_get(alpha))
    return {"/".join(k[:-1]): dict(zip(space.names, np.asarray(jax.nn.softmax(jnp.asarray(v))).round(4).tolist()))
            for k, v in sorted(a.items())}


def inherit_params(params: Any, chosen: dict[str, str]) -> Any:
    """Search parameters in the derived network's layout (see module docstring)."""
    out = {}
    for key, value in traverse_util.flatten_dict(params).items():
        for i, part in enumerate(key):
            role = next((r for r in ("quantizer_w", "quantizer_x") if part.endswith(f"_{r}")), None)
            if role is not None:
                if chosen.get("/".join(key[:i])) == part[: -len(role) - 1]:
                    out[key[:i] + (role,) + key[i + 1:]] = value
                break
        else:
            out[key] = value
    return traverse_util.unflatten_dict(out)
