"""The sensitivity-driven mixed-precision baseline (`search=sensitivity`): measure how much each layer
suffers from each candidate, then choose the assignment of least total sensitivity under the energy budget.

1. Supernet. The search network's shared weights and every candidate's quantizer parameters are trained
   with one uniformly sampled candidate per layer and step (single-path one-shot training, Guo et al.,
   "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020): the variational
   step with alpha held at zero and no energy term (`supernet_config`).
2. Sensitivity s_lk of layer l to candidate k, every other layer at the reference candidate r, averaged
   over `sensitivity_batches` training batches (BatchNorm on batch statistics, single path, so each
   forward pass is that of the derived network with that one layer changed):

     measure=loss     s_lk = L(layer l at k) - L(all r), the measured loss increase -- the one-layer-at-a-time
                      sensitivity of ZeroQ (Cai et al., CVPR 2020), with the training loss in place of the
                      output KL divergence; it sees every effect of a candidate (activation bits, operator,
                      crossbar ADC).
     measure=hessian  s_lk = Tr(H_l) / n_l * ||T_k(Q_k(W_l)) - T_r(Q_r(W_l))||^2, HAWQ-v2's trace-weighted
                      perturbation (Dong et al., NeurIPS 2020): H_l the Hessian of the loss in the n_l weights
                      of layer l, Q_k the candidate's weight quantizer and T_k its operator's weight
                      transform (PoT, sign). Tr(H_l) by Hutchinson's estimator E_v[v_l^T (H v)_l] over
                      Rademacher v (Hutchinson 1990; Avron & Toledo, J. ACM 2011), one probe over all layers
                      at once, in the all-reference network with the supernet's weights; Hv = H^T v as the
                      pull-back of v through the gradient (`jax.vjp` of `jax.grad`, reverse over reverse: the
                      quantizers' straight-through rules are `jax.custom_vjp`, which forward mode cannot
                      differentiate).
                      It sees weight perturbations only, so every candidate must be a digital linear operator
                      (MAC, shift, binary weights) and activation bits are not weighed.
3. Assignment: argmin_x sum_lk x_lk s_lk under the energy budget, the exact integer program of
   `pannjax.search.derive.best_within_budget`; then the runner fine-tunes it like any derived network.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from pannjax.data.base import Dataset
from pannjax.errors import ConfigError
from pannjax.search.derive import inherit_params
from pannjax.search.space import SearchSpace
from pannjax.search.steps import SearchConfig, SearchState
from pannjax.train.loop import overlay
from pannjax.train.steps import cross_entropy


def supernet_config(cfg: SearchConfig) -> SearchConfig:
    """The search configuration that trains the supernet: variational steps, alpha never moving (its warm-up
    lasts the whole search), no energy term, no KL term, no budget."""
    return dataclasses.replace(cfg, variant="variational", lam=0.0, kl_weight=0.0, alpha_start_epoch=float(cfg.epochs),
                               energy_budget=None, energy_budget_pj=None, energy_budget_of=None)


def check_space(space: SearchSpace, measure: str) -> None:
    """What the measures need of the search space, checked before any training (one line each)."""
    if space.reference.name not in space.names:
        raise ConfigError(f"search.use={list(space.names)} lacks search.reference={space.reference.name!r}: "
                          "search=sensitivity measures every candidate against the reference; add it to search.use")
    if measure == "hessian":
        for c in space.candidates:
            op = c.arith.operator
            if not op.linear_contraction or op.analog:
                raise ConfigError(f"search.use: candidate {c.name!r} (op={op.name}"
                                  f"{', mode ' + op.mode if op.analog else ''}) is not a digital linear operator; "
                                  "search.sensitivity_measure=hessian sees weight perturbations only: use "
                                  "search.sensitivity_measure=loss or drop it from search.use")


def one_hot_gates(like: Any, picks: dict[str, int], default: int) -> Any:
    """A gates tree shaped like `like` ({..: {layer: {"g": (K,)}}}): one-hot at `picks[layer]`, else `default`."""
    flat = traverse_util.flatten_dict(like)
    return traverse_util.unflatten_dict({key: jax.nn.one_hot(picks.get("/".join(key[:-1]), default), v.shape[-1])
                                         for key, v in flat.items()})


def gated_loss(state: SearchState, params: Any, gates: Any, images: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy of the search network with `gates` (one-hot: one derived network), BatchNorm on batch
    statistics."""
    logits, _ = state.apply_fn({"params": params, "batch_stats": state.batch_stats, "gates": gates}, images,
                               train=True, mutable=["batch_stats"], rngs={"noise": jax.random.key(0)})
    return cross_entropy(logits, labels)


def loss_increase(state: SearchState, space: SearchSpace, order: tuple[str, ...], batches: list[dict]
                  ) -> dict[str, np.ndarray]:
    """{layer: s_l (K,)} measured loss increase, s_l at the reference 0 (module docstring)."""
    ref, k = space.names.index(space.reference.name), len(space.names)
    loss = jax.jit(lambda gates, images, labels: gated_loss(state, state.params, gates, images, labels))
    base = one_hot_gates(state.alpha, {}, ref)
    probes = [(p, j, one_hot_gates(state.alpha, {p: j}, ref)) for p in order for j in range(k) if j != ref]
    s = {p: np.zeros(k) for p in order}
    for batch in batches:
        l0 = float(loss(base, batch["image"], batch["label"]))
        for p, j, gates in probes:
            s[p][j] += float(loss(gates, batch["image"], batch["label"])) - l0
    return {p: v / len(batches) for p, v in s.items()}


def hessian_traces(model: nn.Module, variables: dict, order: tuple[str, ...], batches: list[dict], samples: int,
                   seed: int) -> dict[str, float]:
    """{layer: Tr(H_l) / n_l} by Hutchinson's estimator in `model`, the all-reference network with `variables`
    (module docstring; BatchNorm on batch statistics)."""
    flat = traverse_util.flatten_dict(variables["params"])
    keys = {p: (*p.split("/"), "kernel") for p in order}

    def loss_of(kernels, images, labels):
        params = traverse_util.unflatten_dict({**flat, **{keys[p]: w for p, w in kernels.items()}})
        logits, _ = model.apply({"params": params, "batch_stats": variables.get("batch_stats", {})}, images,
                                train=True, mutable=["batch_stats"])
        return cross_entropy(logits, labels)

    @jax.jit
    def probe(kernels, key, images, labels):
        draws = jax.random.split(key, len(order))
        v = {p: jax.random.rademacher(d, kernels[p].shape, kernels[p].dtype) for p, d in zip(order, draws)}
        _, pull_back = jax.vjp(lambda w: jax.grad(loss_of)(w, images, labels), kernels)
        (hv,) = pull_back(v)
        return {p: jnp.vdot(v[p], hv[p]) for p in order}

    kernels = {p: flat[keys[p]] for p in order}
    total = {p: 0.0 for p in order}
    key = jax.random.key(seed + 17)
    for batch in batches:
        for _ in range(samples):
            key, sub = jax.random.split(key)
            for p, t in probe(kernels, sub, batch["image"], batch["label"]).items():
                total[p] += float(t)
    return {p: total[p] / (len(batches) * samples) / kernels[p].size for p in order}


def reference_variables(state: SearchState, model: nn.Module, space: SearchSpace, order: tuple[str, ...],
                        images: jax.Array) -> dict:
    """The supernet's weights in the layout of `model`, the all-reference network (as the runner derives)."""
    fresh = jax.jit(lambda k, x: model.init(k, x, train=False))(jax.random.key(0), images)
    chosen = {p: space.reference.name for p in order}
    return {"params": overlay(fresh["params"], inherit_params(state.params, chosen)),
            "batch_stats": overlay(fresh.get("batch_stats", {}), state.batch_stats)}


def weight_perturbations(state: SearchState, space: SearchSpace, order: tuple[str, ...], images: jax.Array
                         ) -> dict[str, np.ndarray]:
    """{layer: (K,) ||T_k(Q_k(W_l)) - T_r(Q_r(W_l))||^2}: each candidate's rounded weights as the search layers
    compute them (sown into the "intermediates" collection)."""
    ref = space.names.index(space.reference.name)
    gates = one_hot_gates(state.alpha, {}, ref)
    _, out = jax.jit(lambda x: state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats, "gates": gates}, x, train=True,
        mutable=["batch_stats", "intermediates"], rngs={"noise": jax.random.key(0)}))(images)
    sown = traverse_util.flatten_dict(jax.device_get(out["intermediates"]))
    weights = {p: [np.asarray(sown[(*p.split("/"), f"{n}_weight")][0], np.float64) for n in space.names] for p in order}
    return {p: np.array([np.sum((w - ws[ref]) ** 2) for w in ws]) for p, ws in weights.items()}


def sensitivities(state: SearchState, reference_model: nn.Module, dataset: Dataset, space: SearchSpace,
                  order: tuple[str, ...], cfg: SearchConfig, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """{layer: s_l (K,)} by `cfg.sensitivity_measure` on `cfg.sensitivity_batches` training batches;
    `reference_model` is the all-reference network (the Hessian's)."""
    batches = list(itertools.islice(dataset.batches("train", batch_size, epoch=0, seed=seed + 13),
                                    cfg.sensitivity_batches))
    if cfg.sensitivity_measure == "loss":
        return loss_increase(state, space, order, batches)
    variables = reference_variables(state, reference_model, space, order, batches[0]["image"])
    traces = hessian_traces(reference_model, variables, order, batches, cfg.hutchinson_samples, seed)
    deltas = weight_perturbations(state, space, order, batches[0]["image"])
    return {p: traces[p] * deltas[p] for p in order}
