"""From a search state to a normal pannjax network: the discrete assignment and its inherited weights.

The assignment is argmax_k alpha_lk per layer (frozen layers: their fixed choice) -- DARTS's and ENOS's
derivation rule. Under an energy budget B (a fraction of E_ref) it is the most probable assignment whose
energy is within the tolerance of B, an exact multiple-choice knapsack solved as an integer program
(`budgeted_assignment`, scipy.optimize.milp / HiGHS):

    max_x  sum_lk x_lk log p_lk   s.t.  sum_k x_lk = 1,  E_fixed + sum_lk x_lk e_lk in [(1 - t) B, (1 + t) B] E_ref,

x binary, frozen layers fixed to their choice. When no assignment lies in that window, the most probable
one below it is taken (or, when even that does not exist, the cheapest), and the budget is not met.
The same program with another per-layer score (`best_within_budget`) derives the sensitivity baseline
(`pannjax.search.sensitivity`: minus the loss sensitivity instead of log p).

`inherit_params` maps the search parameters onto the derived network's layout: the
shared kernel/bias, BatchNorm parameters, and the chosen candidate's quantizer parameters
(`<name>_quantizer_w` -> `quantizer_w`); the other candidates' quantizer parameters are dropped.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from pannjax.search.energy import EnergyModel
from pannjax.search.space import SearchSpace


def _by_path(tree: Any) -> dict[str, Any]:
    """{layer path: leaf} of a per-layer tree shaped like alpha ({..: {layer: {"g": leaf}}}), on the host."""
    return {"/".join(k[:-1]): v for k, v in traverse_util.flatten_dict(jax.device_get(tree)).items()}


def assignment(alpha: Any, frozen: Any, choice: Any, space: SearchSpace) -> dict[str, str]:
    """{layer path: candidate name} by argmax alpha (fixed choice where frozen)."""
    a, f, c = _by_path(alpha), _by_path(frozen), _by_path(choice)
    return {p: space.names[int(c[p]) if bool(f[p]) else int(np.argmax(a[p]))] for p in sorted(a)}


def budgeted_assignment(alpha: Any, frozen: Any, choice: Any, space: SearchSpace, energy: EnergyModel,
                        budget: float, tolerance: float) -> tuple[dict[str, str], bool]:
    """(assignment, budget met) under the energy budget `budget` x E_ref (module docstring)."""
    a, f, c = _by_path(alpha), _by_path(frozen), _by_path(choice)
    scores = {p: np.asarray(jax.nn.log_softmax(jnp.asarray(a[p], jnp.float32)), np.float64) for p in a}
    return best_within_budget(scores, {p: int(c[p]) for p in a if bool(f[p])}, space, energy, budget, tolerance)


def best_within_budget(scores: dict[str, np.ndarray], fixed: dict[str, int], space: SearchSpace,
                       energy: EnergyModel, budget: float, tolerance: float) -> tuple[dict[str, str], bool]:
    """(assignment, budget met): the assignment maximising sum_l scores_l[k_l] whose energy lies within
    `tolerance` x `budget` x E_ref of the budget, layers in `fixed` at their candidate index (the
    multiple-choice knapsack of the module docstring, any per-layer score); when none lies there, the
    best-scoring one below the window, else the cheapest."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    paths, k = sorted(scores), len(space.names)
    score = np.concatenate([np.asarray(scores[p], np.float64) for p in paths])
    cost = np.concatenate([energy.per_layer[p] for p in paths]) / energy.reference_pj
    one_each = np.kron(np.eye(len(paths)), np.ones(k))
    low = np.zeros(len(paths) * k)
    for i, p in enumerate(paths):
        if p in fixed:
            low[i * k + fixed[p]] = 1.0
    offset = energy.fixed_pj / energy.reference_pj

    def solve(lo: float, hi: float, objective: np.ndarray) -> np.ndarray | None:
        result = milp(-objective, integrality=np.ones_like(objective), bounds=Bounds(low, 1.0),
                      constraints=[LinearConstraint(one_each, 1.0, 1.0),
                                   LinearConstraint(cost, lo - offset, hi - offset)])
        return result.x if result.status == 0 else None

    x = solve((1 - tolerance) * budget, (1 + tolerance) * budget, score)
    met = x is not None
    if x is None:
        x = solve(-np.inf, (1 - tolerance) * budget, score)
    if x is None:
        x = solve(-np.inf, np.inf, -cost)
    picks = np.argmax(np.asarray(x).reshape(len(paths), k), axis=1)
    return {p: space.names[int(j)] for p, j in zip(paths, picks)}, met


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
