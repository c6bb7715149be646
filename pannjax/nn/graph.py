"""`trace_graph`: the dataflow of a model between its arithmetic layers, as a list of nodes in execution order.

The integer export needs more than the layers `bound_layers` lists: what the model computes between them
(BatchNorm, ReLU, residual additions, pooling, concatenation, slicing and padding). `trace_graph` traces
`model.apply(variables, x, train=False)` to a jaxpr with every `QConv` / `QDense` / `nn.BatchNorm` call
replaced by one opaque `pannjax_module` equation (its path and kind as parameters), and reads the rest
of the jaxpr -- the model's own glue code, whatever Python wrote it -- as graph nodes:

    ======================  =====================================================================
    node ``op``             jaxpr it comes from
    ======================  =====================================================================
    ``input``               the image batch
    ``layer``               a QConv / QDense call (``path``; ``kind`` conv or dense)
    ``batch_norm``          an nn.BatchNorm call in inference mode (``path``, ``epsilon``)
    ``relu``                ``max(x, 0)`` (flax/jax ``relu`` is inlined from its custom_jvp)
    ``add``                 ``add(a, b)`` of two tensors
    ``scale``               ``mul`` / ``div`` by a positive constant (``factor``; e.g. a mean's 1/n)
    ``sum``                 ``reduce_sum`` over ``axes``
    ``max_pool``            ``reduce_window_max`` (``window``, ``strides``, ``padding``)
    ``slice``               strided slices and each part of a ``split`` (``start``, ``limit``, ``strides``)
    ``pad``                 zero padding (``config``)
    ``concat``              ``concatenate`` along ``axis``
    ``reshape`` / ``transpose``  (``new_shape`` / ``permutation``)
    ``output``              the model's result
    ======================  =====================================================================

Equations of constants alone are evaluated; equations whose results the output does not use (the
replaced modules' own computations) are dropped. Anything else between the layers raises one
ConfigError naming the primitive and the module it sits in.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal, Primitive

from pannjax.errors import ConfigError
from pannjax.nn.layers import QConv, QDense

_MODULE = Primitive("pannjax_module")
_MODULE.def_abstract_eval(lambda x, *, path, kind, shape, dtype, epsilon: jax.core.ShapedArray(shape, dtype))
_INLINED = ("custom_jvp_call", "custom_vjp_call", "pjit", "closed_call", "jit")
_PASS = ("convert_element_type", "copy", "copy_p", "optimization_barrier")


@dataclasses.dataclass(frozen=True)
class Node:
    """One step of the graph: `op`, the indices of its input nodes, its output shape and attributes."""

    op: str
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    attrs: dict = dataclasses.field(default_factory=dict)


def _live(jaxpr) -> list:
    """The equations the outputs depend on, in order (dead-code elimination)."""
    needed = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
    live = []
    for eqn in reversed(jaxpr.eqns):
        if any(o in needed for o in eqn.outvars):
            live.append(eqn)
            needed.update(v for v in eqn.invars if not isinstance(v, Literal))
    return live[::-1]


class _Reader:
    """Reads a jaxpr into nodes: values are node indices (tensors) or numpy arrays (constants)."""

    def __init__(self):
        self.nodes: list[Node] = []

    def add(self, op: str, inputs, shape, **attrs) -> int:
        self.nodes.append(Node(op, tuple(inputs), tuple(int(d) for d in shape), attrs))
        return len(self.nodes) - 1

    def read(self, jaxpr, consts, args) -> list:
        env: dict = {}

        def get(v):
            return np.asarray(v.val) if isinstance(v, Literal) else env[v]

        for var, val in zip(jaxpr.constvars, consts):
            env[var] = np.asarray(val)
        for var, val in zip(jaxpr.invars, args):
            env[var] = val
        for eqn in _live(jaxpr):
            vals = [get(v) for v in eqn.invars]
            outs = self.equation(eqn, vals)
            for var, val in zip(eqn.outvars, outs):
                env[var] = val
        return [get(v) for v in jaxpr.outvars]

    def equation(self, eqn, vals) -> list:
        name = eqn.primitive.name
        tensors = [isinstance(v, int) for v in vals]
        if not any(tensors):  # constants only: evaluate
            out = eqn.primitive.bind(*[jnp.asarray(v) for v in vals], **eqn.params)
            return [np.asarray(o) for o in (out if eqn.primitive.multiple_results else [out])]
        if name == "pannjax_module":
            p = eqn.params
            op = "batch_norm" if p["kind"] == "batch_norm" else "layer"
            attrs = ({"path": p["path"], "epsilon": p["epsilon"]} if op == "batch_norm"
                     else {"path": p["path"], "kind": p["kind"]})
            return [self.add(op, vals, p["shape"], **attrs)]
        if name in _INLINED:
            inner = eqn.params.get("call_jaxpr") or eqn.params.get("jaxpr")
            closed = inner if hasattr(inner, "consts") else None
            jaxpr = closed.jaxpr if closed is not None else inner
            return self.read(jaxpr, closed.consts if closed is not None else [], vals)
        shape = eqn.outvars[0].aval.shape
        where = str(eqn.source_info.name_stack) or "the model"
        if name in _PASS:
            return [vals[0]]
        if name == "max" and sum(tensors) == 1 and not np.any(vals[tensors.index(False)]):
            return [self.add("relu", [vals[tensors.index(True)]], shape)]
        if name == "add" and all(tensors):
            return [self.add("add", vals, shape)]
        if name in ("mul", "div") and sum(tensors) == 1 and (name == "mul" or tensors[0]):
            c = np.asarray(vals[tensors.index(False)], np.float64)
            if c.size == 1 and float(c) > 0:
                return [self.add("scale", [vals[tensors.index(True)]], shape,
                                 factor=float(c) if name == "mul" else 1.0 / float(c))]
        if name == "reduce_sum":
            return [self.add("sum", vals, shape, axes=tuple(int(a) for a in eqn.params["axes"]))]
        if name == "reduce_window_max":
            p = eqn.params
            return [self.add("max_pool", vals, shape, window=tuple(p["window_dimensions"]),
                             strides=tuple(p["window_strides"]), padding=tuple(map(tuple, p["padding"])))]
        if name == "slice":
            p = eqn.params
            return [self.add("slice", vals, shape, start=tuple(p["start_indices"]), limit=tuple(p["limit_indices"]),
                             strides=tuple(p["strides"] or (1,) * len(shape)))]
        if name == "pad" and tensors == [True, False] and not np.any(vals[1]):
            return [self.add("pad", [vals[0]], shape, config=tuple(tuple(int(c) for c in t)
                                                                  for t in eqn.params["padding_config"]))]
        if name == "split":  # one slice per part along `axis`
            axis, lo, parts = int(eqn.params["axis"]), 0, []
            full = self.nodes[vals[0]].shape
            for out in eqn.outvars:
                hi = lo + out.aval.shape[axis]
                start = tuple(lo if d == axis else 0 for d in range(len(full)))
                limit = tuple(hi if d == axis else n for d, n in enumerate(full))
                parts.append(self.add("slice", vals, out.aval.shape, start=start, limit=limit,
                                      strides=(1,) * len(full)))
                lo = hi
            return parts
        if name == "concatenate" and all(tensors):
            return [self.add("concat", vals, shape, axis=int(eqn.params["dimension"]))]
        if name == "reshape" and tensors[0]:
            return [self.add("reshape", vals[:1], shape, new_shape=tuple(shape))]
        if name == "transpose":
            return [self.add("transpose", vals, shape, permutation=tuple(eqn.params["permutation"]))]
        raise ConfigError(f"export: {where} computes {name} between its arithmetic layers, which the integer program "
                          "cannot express (it takes ReLU, BatchNorm, residual add, sum/mean and max pooling, slices, "
                          "zero padding, concatenation, reshape and transpose)")


def trace_graph(model: nn.Module, variables: Any, sample: Any) -> list[Node]:
    """The nodes of `model.apply(variables, x, train=False)` in execution order (module docstring);
    `sample` is an array or `jax.ShapeDtypeStruct` of the input batch."""

    def apply(x):
        def interceptor(next_fun, args, kwargs, context):
            module = context.module
            if context.method_name != "__call__" or not isinstance(module, (QConv, QDense, nn.BatchNorm)):
                return next_fun(*args, **kwargs)
            out = next_fun(*args, **kwargs)
            kind = ("batch_norm" if isinstance(module, nn.BatchNorm)
                    else "conv" if isinstance(module, QConv) else "dense")
            if kind == "batch_norm" and not module.use_running_average:
                raise ConfigError("export: BatchNorm in training mode; the graph is traced with train=False")
            return _MODULE.bind(args[0], path="/".join(module.scope.path), kind=kind, shape=tuple(out.shape),
                                dtype=out.dtype, epsilon=float(getattr(module, "epsilon", 0.0)))

        with nn.intercept_methods(interceptor):
            return model.apply(variables, x, train=False)

    closed = jax.make_jaxpr(apply)(jax.ShapeDtypeStruct(sample.shape, sample.dtype))
    reader = _Reader()
    source = reader.add("input", (), sample.shape)
    (out,) = reader.read(closed.jaxpr, closed.consts, [source])
    if not isinstance(out, int):
        raise ConfigError("export: the model's output does not depend on its input")
    reader.add("output", [out], reader.nodes[out].shape)
    return reader.nodes
