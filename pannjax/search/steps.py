"""ENOS search objectives as jit-compiled optax steps (Nasrin et al., arXiv 2104.05217; IEEE Access 10, 2022).

Notation: w network weights, alpha_l the logits of layer l over its K candidates, p_l = softmax(alpha_l),
E(alpha) = E_fixed + sum_l p_l . e_l the expected energy (`pannjax.search.energy`), E_ref the all-MAC
energy, lambda the energy weight. Weights and alpha have separate optax optimisers (`tx_w`, `tx_a`).

single      (ENOS single-level objective)   min_{w, alpha} CE_train(w, alpha) + lambda E(alpha)/E_ref,
            one joint gradient step on a training batch; gates g_l = p_l (all candidates evaluated).
bilevel     (ENOS bi-level objective, DARTS-style, Liu et al. ICLR 2019 Eqs. 3-4)
            min_alpha CE_val(w*(alpha), alpha) + lambda E(alpha)/E_ref,  w*(alpha) = argmin_w CE_train(w, alpha);
            alternating: one alpha step on a held-out batch, then one w step on a training batch.
            First order: w*(alpha) ~ w. Second order (`second_order=True`): w*(alpha) ~ w - xi grad_w CE_train(w,
            alpha), differentiated exactly through the unrolled step by autodiff (DARTS Eq. 6 without
            its finite-difference Hessian-vector approximation).
sequential  (ENOS sequential operator assignment) the single-level step with per-layer masks: a frozen
            layer uses the one-hot gate of its fixed choice, contributes a constant to E and its alpha is
            not updated. Which layer is frozen when is the loop's schedule (`freeze_next`; under an energy
            budget a layer is fixed at its choice in the most probable assignment that still meets the
            budget); masks are arrays of the state, so freezing never re-traces the step.
variational (ENOS stochastic / variational mode; Concrete / Gumbel-softmax relaxation, Maddison et al.
            and Jang et al., ICLR 2017) q(c_l) = Cat(softmax(alpha_l)); each step samples ONE path:
            g_l = softmax((alpha_l + G_l) / tau), G ~ Gumbel(0, 1), and runs candidate argmax g_l only
            (straight-through, see `pannjax.search.layers`). Loss (a negative ELBO with an energy prior):
            CE_train + lambda E_q[E]/E_ref + beta KL(q || p), p uniform over candidates. tau anneals
            exponentially from tau_start to tau_end over the search.
sensitivity (the mixed-precision baseline, not an ENOS objective) trains the weights with the variational
            step, alpha held at zero and no energy term (one uniformly sampled path per step), then assigns
            by measured sensitivities under the budget (`pannjax.search.sensitivity`).

Energy budget (`energy_budget` = B, a fraction of E_ref, or `energy_budget_pj`, or `energy_budget_of` = the
energy of the all-<candidate> network, a matched-energy comparison's budget): lambda is the Lagrange
multiplier of the constraint E(alpha)/E_ref = B, updated by dual ascent after every step once alpha moves,

    lambda <- lambda + dual_lr (E(alpha)/E_ref - B),

so the energy term weighs more while the expected energy is above the budget and less (negative: energy
is rewarded) while below -- the basic differential multiplier method (Platt & Barr, "Constrained
Differential Optimization", NIPS 1987): gradient descent on (w, alpha), ascent on lambda, in one jitted
step. lambda is an array of the state, so its changes never re-trace the step; the derivation then picks
the most probable assignment within the budget's tolerance (`pannjax.search.derive.budgeted_assignment`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct, traverse_util

from pannjax.errors import ConfigError
from pannjax.search.energy import EnergyModel
from pannjax.train.steps import cross_entropy

VARIANTS = ("single", "bilevel", "sequential", "variational", "sensitivity")  # the last: pannjax.search.sensitivity


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """How to search: the options the jitted step reads, defaults of the config block `search` (`lam` is
    the key `search.lambda`; `pannjax.schema`). Variant options are read by their variant only."""

    variant: str = "single"              # single | bilevel | sequential | variational (configs/search/)
    lam: float = 0.3                     # weight of E(alpha)/E_ref in the objective (with a budget: its start)
    energy_budget: float | None = None   # target E/E_ref of the derived network: lambda becomes a multiplier
    energy_budget_pj: float | None = None  # the same target in pJ per example (instead of energy_budget)
    energy_budget_of: str | None = None  # the same target as the energy of the all-<candidate> network
    dual_lr: float = 0.05                # step of the dual ascent on lambda (per search step)
    budget_tolerance: float = 0.02       # the derived network's |E/E_ref - budget| <= tolerance x budget
    epochs: int = 10                     # search epochs
    alpha_lr: float = 0.05               # Adam on the architecture logits (b1 = 0.5, as DARTS)
    alpha_weight_decay: float = 0.0
    alpha_start_epoch: float = 1.0       # weights-only warm-up before alpha moves
    val_fraction: float = 0.2            # bilevel: held-out share of the training split for the alpha steps
    second_order: bool = False           # bilevel: differentiate through one unrolled weight step ...
    unroll_lr: float = 0.01              # ... of step size xi = unroll_lr
    freeze_order: str = "confident"      # sequential: confident (largest max probability first) | forward | backward
    freeze_every_steps: int | None = None  # sequential: None = evenly spaced from the warm-up's end to the end
    tau_start: float = 5.0               # variational: Gumbel-softmax temperature, annealed exponentially ...
    tau_end: float = 0.5                 # ... to tau_end
    kl_weight: float = 0.01              # variational: weight of KL(q || uniform)
    bn_recalibration_batches: int = 20   # BatchNorm statistics of the derived network re-estimated on these
    sensitivity_measure: str = "loss"    # sensitivity: loss (measured increase) | hessian (HAWQ-v2 trace x ||dW||^2)
    sensitivity_batches: int = 4         # sensitivity: training batches the sensitivities are averaged over
    hutchinson_samples: int = 8          # sensitivity, hessian: Rademacher probes per batch of the trace estimate

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ConfigError(f"search.variant={self.variant!r}: expected one of {VARIANTS}")
        if self.lam < 0:
            raise ConfigError(f"search.lambda={self.lam}: must be >= 0")
        for name in ("energy_budget", "energy_budget_pj"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"search.{name}={value}: expected an energy > 0 (null: no budget)")
        given = [n for n in ("energy_budget", "energy_budget_pj", "energy_budget_of") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ConfigError(f"search.{given[0]} and search.{given[1]} are both set: give one (the other null)")
        if not self.dual_lr > 0:
            raise ConfigError(f"search.dual_lr={self.dual_lr}: must be > 0")
        if not 0 < self.budget_tolerance < 1:
            raise ConfigError(f"search.budget_tolerance={self.budget_tolerance}: expected a fraction in (0, 1)")
        if self.variant == "sensitivity" and not given:
            raise ConfigError("search.energy_budget is null: search=sensitivity assigns under an energy budget; set "
                              "search.energy_budget=<fraction of E_ref>, search.energy_budget_pj=<pJ> or "
                              "search.energy_budget_of=<candidate>")
        if self.sensitivity_measure not in ("loss", "hessian"):
            raise ConfigError(f"search.sensitivity_measure={self.sensitivity_measure!r}: expected loss or hessian")
        for name, low in (("epochs", 1), ("bn_recalibration_batches", 0), ("freeze_every_steps", 1),
                          ("sensitivity_batches", 1), ("hutchinson_samples", 1)):
            value = getattr(self, name)
            if name == "freeze_every_steps" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"search.{name}={value!r}: expected a whole number >= {low}")
        if not self.alpha_lr > 0:
            raise ConfigError(f"search.alpha_lr={self.alpha_lr}: must be > 0")
        for name in ("alpha_weight_decay", "alpha_start_epoch", "kl_weight", "unroll_lr"):
            if getattr(self, name) < 0:
                raise ConfigError(f"search.{name}={getattr(self, name)}: must be >= 0")
        if not isinstance(self.second_order, bool):
            raise ConfigError(f"search.second_order={self.second_order!r}: expected true or false")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"search.val_fraction={self.val_fraction}: expected a fraction in (0, 1)")
        if self.freeze_order not in ("confident", "forward", "backward"):
            raise ConfigError(f"search.freeze_order={self.freeze_order!r}: expected confident, forward or backward")
        if not 0 < self.tau_end <= self.tau_start:
            raise ConfigError(f"search.tau_start={self.tau_start}, tau_end={self.tau_end}: need 0 < tau_end <= tau_start")

    @property
    def single_path(self) -> bool:
        return self.variant == "variational"

    def budget_rel(self, reference_pj: float) -> float | None:
        """The energy budget as a fraction of E_ref (None: no budget). `energy_budget_of` needs the energy
        model of its candidate: the search runner resolves it into `energy_budget` first."""
        if self.energy_budget_of is not None:
            raise ValueError("search.energy_budget_of is resolved by the search runner (pannjax.search.runner)")
        if self.energy_budget_pj is not None:
            return self.energy_budget_pj / reference_pj
        return self.energy_budget


class SearchState(struct.PyTreeNode):
    """Everything a search step reads and writes. `frozen` (bool) and `choice` (int32) are per-layer
    scalars in trees shaped like `alpha`: the sequential variant's masks (all False otherwise). `lam` is
    the energy weight lambda, a scalar array: constant, or the Lagrange multiplier of an energy budget."""

    step: jax.Array
    params: Any
    batch_stats: Any
    alpha: Any
    opt_w: optax.OptState
    opt_a: optax.OptState
    rng: jax.Array
    frozen: Any
    choice: Any
    lam: jax.Array
    apply_fn: Callable = struct.field(pytree_node=False)
    tx_w: optax.GradientTransformation = struct.field(pytree_node=False)
    tx_a: optax.GradientTransformation = struct.field(pytree_node=False)


def probabilities(alpha: Any, frozen: Any, choice: Any) -> Any:
    """p_l = softmax(alpha_l), or the one-hot of the fixed choice for frozen layers."""
    return jax.tree_util.tree_map(
        lambda a, f, c: jnp.where(f, jax.nn.one_hot(c, a.shape[-1]), jax.nn.softmax(a)), alpha, frozen, choice)


def sampled_gates(alpha: Any, frozen: Any, choice: Any, rng: jax.Array, tau: jax.Array) -> Any:
    """Concrete samples softmax((alpha_l + G_l) / tau) per layer (one-hot for frozen layers)."""
    leaves, treedef = jax.tree_util.tree_flatten(alpha)
    keys = jax.random.split(rng, len(leaves))
    samples = [jax.nn.softmax((a + jax.random.gumbel(k, a.shape)) / tau) for a, k in zip(leaves, keys)]
    gates = jax.tree_util.tree_unflatten(treedef, samples)
    return jax.tree_util.tree_map(lambda g, f, c: jnp.where(f, jax.nn.one_hot(c, g.shape[-1]), g), gates, frozen, choice)


def temperature(step: jax.Array, total_steps: int, cfg: SearchConfig) -> jax.Array:
    """tau_start * (tau_end / tau_start)^(step / total_steps)."""
    frac = jnp.clip(step / max(total_steps, 1), 0.0, 1.0)
    return cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** frac


def kl_to_uniform(probs: Any) -> jax.Array:
    """sum_l KL(p_l || U_K) = sum_l sum_k p_lk log(K p_lk)."""
    return sum(jnp.sum(p * (jnp.log(jnp.clip(p, 1e-12)) + jnp.log(p.shape[-1])))
               for p in jax.tree_util.tree_leaves(probs))


def _forward(state: SearchState, params: Any, gates: Any, images: jax.Array, rng: jax.Array):
    return state.apply_fn({"params": params, "batch_stats": state.batch_stats, "gates": gates}, images,
                          train=True, mutable=["batch_stats"], rngs={"noise": rng})


def _apply_alpha(state: SearchState, grads_a: Any, active: jax.Array) -> tuple[Any, Any]:
    """One alpha update, zero for frozen layers and before the warm-up ends (moments untouched then)."""
    updates, opt_a = state.tx_a.update(grads_a, state.opt_a, state.alpha)
    updates = jax.tree_util.tree_map(lambda u, f: jnp.where(f | ~active, 0.0, u), updates, state.frozen)
    opt_a = jax.tree_util.tree_map(lambda new, old: jnp.where(active, new, old), opt_a, state.opt_a)
    return optax.apply_updates(state.alpha, updates), opt_a


def _apply_weights(state: SearchState, grads_w: Any) -> tuple[Any, Any]:
    updates, opt_w = state.tx_w.update(grads_w, state.opt_w, state.params)
    return optax.apply_updates(state.params, updates), opt_w


def _joint_update(state: SearchState, loss_fn: Callable, alpha_active: jax.Array):
    """Weights and alpha both stepped on the gradients of `loss_fn(params, alpha) -> (loss, (ce, e, logits,
    updates))` (single-level and variational search); returns the new state and (ce, e, logits)."""
    (_, (ce, e, logits, updates)), (g_w, g_a) = jax.value_and_grad(loss_fn, (0, 1), has_aux=True)(
        state.params, state.alpha)
    alpha, opt_a = _apply_alpha(state, g_a, alpha_active)
    params, opt_w = _apply_weights(state, g_w)
    new = state.replace(step=state.step + 1, params=params, alpha=alpha, opt_w=opt_w, opt_a=opt_a,
                        batch_stats=updates["batch_stats"])
    return new, (ce, e, logits)


def _augment(augment, rng, images):
    return images if augment is None else augment(rng, images)


def make_search_step(cfg: SearchConfig, energy: EnergyModel, energy_tree: Any, total_steps: int,
                     alpha_start_step: int, augment=None, on_trace: Callable[[], None] | None = None) -> Callable:
    """The jitted step of `cfg.variant`: `step(state, batch) -> (state, metrics)`, and for bilevel
    `step(state, train_batch, val_batch)`. `on_trace` is called each time JAX traces the step (tests)."""
    e_ref = energy.reference_pj
    budget = cfg.budget_rel(e_ref)

    def dual_ascent(state: SearchState, e: jax.Array) -> SearchState:
        """lambda <- lambda + dual_lr (E(alpha)/E_ref - budget) once alpha moves (module docstring)."""
        if budget is None:
            return state
        active = state.step > alpha_start_step  # `state` is after its step: the step count is one ahead
        return state.replace(lam=state.lam + jnp.where(active, cfg.dual_lr * (e / e_ref - budget), 0.0))

    def energy_terms(alpha, frozen, choice):
        probs = probabilities(alpha, frozen, choice)
        e = energy.expected_pj(probs, energy_tree)
        return probs, e

    def metrics(ce, logits, labels, e):
        return {"loss": ce, "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels), "energy_pj": e,
                "energy_rel": e / e_ref}

    def soft_step(state: SearchState, batch: dict):
        if on_trace is not None:
            on_trace()
        rng = jax.random.fold_in(state.rng, state.step)
        aug_rng, noise_rng = jax.random.split(rng)
        images = _augment(augment, aug_rng, batch["image"])

        def loss_fn(params, alpha):
            probs, e = energy_terms(alpha, state.frozen, state.choice)
            logits, updates = _forward(state, params, probs, images, noise_rng)
            ce = cross_entropy(logits, batch["label"])
            return ce + state.lam * e / e_ref, (ce, e, logits, updates)

        new, (ce, e, logits) = _joint_update(state, loss_fn, state.step >= alpha_start_step)
        new = dual_ascent(new, e)
        return new, metrics(ce, logits, batch["label"], e)

    def bilevel_step(state: SearchState, train: dict, val: dict):
        if on_trace is not None:
            on_trace()
        rng = jax.random.fold_in(state.rng, state.step)
        aug_rng, noise_rng, val_rng = jax.random.split(rng, 3)
        images = _augment(augment, aug_rng, train["image"])

        def train_ce(params, alpha):
            probs, _ = energy_terms(alpha, state.frozen, state.choice)
            logits, updates = _forward(state, params, probs, images, noise_rng)
            return cross_entropy(logits, train["label"]), (logits, updates)

        def val_loss(alpha):
            params = state.params
            if cfg.second_order:
                g = jax.grad(lambda p: train_ce(p, alpha)[0])(params)
                params = jax.tree_util.tree_map(lambda p, d: p - cfg.unroll_lr * d, params, g)
            probs, e = energy_terms(alpha, state.frozen, state.choice)
            logits, _ = _forward(state, params, probs, val["image"], val_rng)  # BN statistics of val batch discarded
            return cross_entropy(logits, val["label"]) + state.lam * e / e_ref

        g_a = jax.grad(val_loss)(state.alpha)
        alpha, opt_a = _apply_alpha(state, g_a, state.step >= alpha_start_step)
        state = state.replace(alpha=alpha, opt_a=opt_a)
        (ce, (logits, updates)), g_w = jax.value_and_grad(train_ce, has_aux=True)(state.params, state.alpha)
        params, opt_w = _apply_weights(state, g_w)
        _, e = energy_terms(state.alpha, state.frozen, state.choice)
        new = state.replace(step=state.step + 1, params=params, opt_w=opt_w, batch_stats=updates["batch_stats"])
        new = dual_ascent(new, e)
        return new, metrics(ce, logits, train["label"], e)

    def variational_step(state: SearchState, batch: dict):
        if on_trace is not None:
            on_trace()
        rng = jax.random.fold_in(state.rng, state.step)
        aug_rng, noise_rng, sample_rng = jax.random.split(rng, 3)
        images = _augment(augment, aug_rng, batch["image"])
        tau = temperature(state.step, total_steps, cfg)

        def loss_fn(params, alpha):
            gates = sampled_gates(alpha, state.frozen, state.choice, sample_rng, tau)
            logits, updates = _forward(state, params, gates, images, noise_rng)
            ce = cross_entropy(logits, batch["label"])
            probs, e = energy_terms(alpha, state.frozen, state.choice)
            return ce + state.lam * e / e_ref + cfg.kl_weight * kl_to_uniform(probs), (ce, e, logits, updates)

        new, (ce, e, logits) = _joint_update(state, loss_fn, state.step >= alpha_start_step)
        new = dual_ascent(new, e)
        out = metrics(ce, logits, batch["label"], e)
        out["tau"] = tau
        return new, out

    step = {"single": soft_step, "sequential": soft_step, "bilevel": bilevel_step,
            "variational": variational_step}[cfg.variant]
    return jax.jit(step)


def freeze_next(state: SearchState, order: tuple[str, ...], how: str,
                choose: Callable[[SearchState], dict[str, int]] | None = None) -> tuple[SearchState, str | None]:
    """Sequential assignment: fix one not-yet-frozen layer to argmax alpha_l and drop it from the search.
    `how`: "confident" (the layer with the largest max_k p_lk), "forward"/"backward" (call order).
    `choose(state) -> {layer path: candidate index}`, when given, is the assignment the layer is fixed to
    instead of argmax alpha (under an energy budget: the most probable one that still meets it).
    Returns the new state and the frozen layer's path (None when every layer is frozen)."""
    alpha = traverse_util.flatten_dict(jax.device_get(state.alpha))
    frozen = traverse_util.flatten_dict(jax.device_get(state.frozen))
    by_path = {"/".join(k[:-1]): k for k in alpha}
    open_paths = [p for p in order if not bool(frozen[by_path[p]])]
    if not open_paths:
        return state, None
    if how == "forward":
        path = open_paths[0]
    elif how == "backward":
        path = open_paths[-1]
    else:
        path = max(open_paths, key=lambda p: float(jnp.max(jax.nn.softmax(alpha[by_path[p]]))))
    key = by_path[path]
    choice = traverse_util.flatten_dict(jax.device_get(state.choice))
    frozen[key] = jnp.asarray(True)
    picked = int(jnp.argmax(alpha[key])) if choose is None else choose(state)[path]
    choice[key] = jnp.asarray(picked, jnp.int32)
    state = state.replace(frozen=traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in frozen.items()}),
                          choice=traverse_util.unflatten_dict({k: jnp.asarray(v, jnp.int32) for k, v in choice.items()}))
    return state, path
