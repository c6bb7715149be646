"""`SearchConv` / `SearchDense`: a layer whose arithmetic is a mixture of candidates, and the hook that
turns the `QConv`/`QDense` layers of any pannjax model into search layers without touching its code.

Forward (ENOS's continuous relaxation, Nasrin et al., arXiv 2104.05217; DARTS, Liu et al., ICLR 2019,
Eq. 2). With gates g in the simplex over the K candidates of the layer:

  * soft mixing (single-level, bi-level, sequential):   y = sum_k g_k * op_k(q^x_k(x), q^w_k(W))
  * single path (variational): k* = argmax_k g_k,       y = op_k*(q^x_k*(x), q^w_k*(W)) * (1 + g_k* - sg(g_k*))

The factor (1 + g - sg(g)) equals 1 in the forward pass and passes d/dg = y to the gate: the
straight-through estimator of GDAS (Dong & Yang, CVPR 2019, Eq. 5). The single path selects the chosen
candidate's quantized operands (one-hot weighted, elementwise) and runs ONE contraction per group of
candidates that share a contraction (`contraction_groups`): the linear operators (MAC at every bit width,
shift, binary weights, each with its own weight rounding) share one; when the group has analog
compute-in-memory members, its forward pass is the exact contraction if a digital member is picked and the
crossbar chunks digitised by the picked member's ADC otherwise (`crossbar_contraction`: a `lax.switch` in the
forward pass only; the backward pass is the exact contraction's, the ADC being straight-through). Another
operator (MF, XNOR, adder) is its own group, evaluated every step (masked). The index is a traced value, so
the step compiles once. Switching between whole groups is not done: XLA:CPU executes the backward pass of
a conditional holding convolutions ~10-20x slower than the same backward outside one (docs/enos.md).

Weight sharing: one kernel W (and bias) per layer is shared by all candidates; each candidate quantizes
it with its own quantizer, whose learned quantities (e.g. an LSQ step) are separate parameters named
`<candidate>_quantizer_w` / `<candidate>_quantizer_x`. Sharing keeps the search network as small as the
plain one, makes a single sampled path train the same weights every other path uses, and lets the
derived network start from the searched weights (`pannjax.search.derive.inherit_params`).

Gates are not parameters: each search layer reads them from the Flax collection "gates" (one vector of
length K, default uniform), which the search step computes from the architecture logits alpha (a pytree
with the same structure, optimised by its own optax optimiser).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp

from pannjax.nn.layers import QConv, QDense, _bound, _noise_rng
from pannjax.ops import MacOperator
from pannjax.ops.base import normalize_padding
from pannjax.ops.in_memory import crossbar_contraction
from pannjax.search.space import Candidate, SearchSpace

GATES = "gates"
Contract = Callable[..., jax.Array]  # (operator, x_quantized, w_quantized, rng) -> y
Partials = Callable[..., list]  # (macro, x_quantized, w_transformed) -> a MAC's crossbar-chunk partial sums


def contraction_groups(candidates: tuple[Candidate, ...]) -> list[list[int]]:
    """Candidate indices grouped by the contraction they compute on their quantized operands. Linear
    operators (`linear_contraction`: MAC at any bit width, shift, binary weights) differ only in their
    `weight_transform`, and an analog macro's crossbar chunks are partial sums of the same contraction (a
    digital macro computes it exactly), so all linear candidates form one group: digital ones and analog
    ones with the `rows` of the first analog linear candidate. Analog ones with other chunk sizes, and
    every other operator, group only with equal operators."""
    rows = next((c.arith.operator.rows for c in candidates
                 if c.arith.operator.linear_contraction and c.arith.operator.analog), None)
    groups: dict = {}
    for i, c in enumerate(candidates):
        op = c.arith.operator
        shared = op.linear_contraction and (not op.analog or op.rows == rows)
        groups.setdefault("linear" if shared else op, []).append(i)
    return list(groups.values())


def _linear_group(group: list[int], pick: jax.Array, index: jax.Array, quantized: list, contract: Contract,
                  partials: Partials) -> jax.Array:
    """The single-path output of the linear group for the one-hot `pick` (candidate `index`): the picked
    candidate's operands (its own weight rounding applied) through one contraction; with analog members,
    the exact sum when a digital member is picked, else the crossbar chunks digitised by the picked
    analog member's ADC (`crossbar_contraction`: only that branch runs forward, one exact VJP backward)."""
    xq = sum(pick[i] * quantized[i][0] for i in group)   # the chosen candidate's operands, 0 if not in group
    wq = sum(pick[i] * quantized[i][2].weight_transform(quantized[i][1]) for i in group)
    group_pick = sum(pick[i] for i in group)
    analog = [i for i in group if quantized[i][2].analog]
    if not analog:
        return group_pick * contract(MacOperator(), xq, wq, None)
    # crossbar_contraction's branch per candidate: 0 the exact sum (digital), j the j-th analog member's ADC
    branch_of = jnp.zeros(len(quantized), jnp.int32).at[jnp.asarray(analog)].set(jnp.arange(1, len(analog) + 1))
    macro = quantized[analog[0]][2]  # the group's crossbar geometry (`contraction_groups`)
    y = crossbar_contraction(lambda x, w: contract(MacOperator(), x, w, None),
                             lambda x, w: partials(macro, x, w), xq, wq,
                             [quantized[i][2] for i in analog], [quantized[i][3] for i in analog],
                             branch_of[index])
    return group_pick * y


def _mixture(module: nn.Module, x: jax.Array, kernel: jax.Array, candidates: tuple[Candidate, ...],
             single_path: bool, contract: Contract, partials: Partials) -> jax.Array:
    k = len(candidates)
    gates = module.variable(GATES, "g", lambda: jnp.full((k,), 1.0 / k, jnp.float32)).value
    quantized = []
    for c in candidates:
        qx = _bound(module, f"{c.name}_quantizer_x", c.arith.quantizer_x.with_input_sign(module.input_signed), x)
        qw = _bound(module, f"{c.name}_quantizer_w", c.arith.quantizer_w, kernel)
        wq = qw.quantize(kernel)
        module.sow("intermediates", f"{c.name}_weight", c.arith.operator.weight_transform(wq))  # for sensitivity
        quantized.append((qx.quantize(x), wq, c.arith.operator, _noise_rng(module, c.arith.operator)))
    if not single_path:
        return sum(gates[i] * contract(op, xq, wq, rng) for i, (xq, wq, op, rng) in enumerate(quantized))
    index = jnp.argmax(gates)
    pick = jax.nn.one_hot(index, k, dtype=x.dtype)
    y = 0.0
    for group in contraction_groups(candidates):
        _, _, op, rng = quantized[group[0]]
        if op.linear_contraction:
            y = y + _linear_group(group, pick, index, quantized, contract, partials)
            continue
        xq = sum(pick[i] * quantized[i][0] for i in group)
        wq = sum(pick[i] * quantized[i][1] for i in group)
        y = y + sum(pick[i] for i in group) * contract(op, xq, wq, rng)
    g = gates[index]
    return y * (1.0 + g - jax.lax.stop_gradient(g))


def search_conv(module: QConv, x: jax.Array, candidates: tuple[Candidate, ...], single_path: bool) -> jax.Array:
    """The search forward of a conv layer with `module`'s fields (QConv or SearchConv)."""
    kh, kw = module.kernel_size
    c_in = x.shape[-1]
    if c_in % module.groups:
        raise ValueError(f"{module.path_name}: groups={module.groups} does not divide input channels {c_in}")
    kernel = module.param("kernel", module.kernel_init, (kh, kw, c_in // module.groups, module.features))
    strides, padding, groups = tuple(module.strides), normalize_padding(module.padding), module.groups
    y = _mixture(module, x, kernel, candidates, single_path,
                 lambda op, xq, wq, rng: op.conv(xq, wq, strides, padding, groups, rng=rng),
                 lambda macro, xq, wq: macro.conv_partials(MacOperator(), xq, wq, strides, padding, groups))
    if module.use_bias:
        y = y + module.param("bias", nn.initializers.zeros, (module.features,))
    return y


def search_dense(module: QDense, x: jax.Array, candidates: tuple[Candidate, ...], single_path: bool) -> jax.Array:
    """The search forward of a dense layer with `module`'s fields (QDense or SearchDense)."""
    kernel = module.param("kernel", module.kernel_init, (x.shape[-1], module.features))
    y = _mixture(module, x, kernel, candidates, single_path, lambda op, xq, wq, rng: op.dense(xq, wq, rng=rng),
                 lambda macro, xq, wq: macro.dense_partials(MacOperator(), xq, wq))
    if module.use_bias:
        y = y + module.param("bias", nn.initializers.zeros, (module.features,))
    return y


class SearchConv(QConv):
    """A `QConv` whose arithmetic is searched over `candidates` (its own quantizer/operator fields are
    unused). Same parameter layout as QConv plus per-candidate quantizer parameters."""

    candidates: tuple[Candidate, ...] = ()
    single_path: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return search_conv(self, x, self.candidates, self.single_path)


class SearchDense(QDense):
    """A `QDense` whose arithmetic is searched over `candidates` (see SearchConv)."""

    candidates: tuple[Candidate, ...] = ()
    single_path: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return search_dense(self, x, self.candidates, self.single_path)


def layer_path(module: nn.Module) -> str:
    return "/".join(module.scope.path)


@contextlib.contextmanager
def search_layers(space: SearchSpace, single_path: bool) -> Iterator[None]:
    """Within this context every plain `QConv`/`QDense` call whose path `space` searches runs as
    `SearchConv`/`SearchDense` over `space.candidates` (a Flax method interceptor; the module keeps its
    own scope, so parameter paths equal those of the plain model)."""

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or type(module) not in (QConv, QDense) \
                or not space.searches(layer_path(module)):
            return next_fun(*args, **kwargs)
        forward = search_conv if isinstance(module, QConv) else search_dense
        return forward(module, args[0], space.candidates, single_path)

    with nn.intercept_methods(interceptor):
        yield


def search_apply_fn(model: nn.Module, space: SearchSpace, single_path: bool) -> Callable:
    """`model.apply` with the search hook active (what the search state stores as `apply_fn`)."""

    def apply(variables, *args, **kwargs):
        with search_layers(space, single_path):
            return model.apply(variables, *args, **kwargs)

    return apply


def search_init(model: nn.Module, space: SearchSpace, single_path: bool, rng: jax.Array, x: jax.Array) -> dict:
    """`model.init` with the search hook active: variables incl. the "gates" collection."""
    with search_layers(space, single_path):
        return model.init(rng, x, train=False)
