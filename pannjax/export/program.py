"""`build_program`: a trained network as an integer program -- steps in execution order plus integer arrays.

From the graph (`pannjax.nn.trace_graph`) and the bound layers (`pannjax.nn.bound_layers`) every tensor
of the network becomes an integer tensor q with a real scale s (one value per channel or per element,
broadcast against the tensor) and, until it is needed, a pending real offset b: value = q s + b.

  * input: ``quantize``, the image divided by the first layer's activation step, clipped and rounded
    (the only floating-point step; it is the fake-quant computation itself, so the codes are identical);
  * layer: ``requantize`` the input to the layer's activation codes, then ``layer`` (the operator's integer
    datapath, `pannjax.ops.integer`) into B-bit accumulators; scale = the operator's accumulator unit;
    the layer's bias becomes the pending offset;
  * BatchNorm (inference): folded into scale and offset, s' = s g / sqrt(v + e), b' = (b - m) g / sqrt(v + e)
    + beta -- no step;
  * a positive constant factor (a mean's 1/n): folded into the scale -- no step;
  * ReLU: deferred to the next rescaling, where it is a clip at 0 (a ``relu`` step only where no rescaling
    follows);
  * at the next layer the offset goes into that layer's input ``requantize`` (exact: a 64-bit bias);
    where a tensor must be materialised first (additions, pooling, padding, sums, reshapes, the output),
    it is requantised with its offset, ReLU and sign to a scale fine enough that |q| < 2^30
    (`_fine_target`, from a bound `limit` on |value|);
  * ``add`` / ``concat`` along a non-channel axis: the inputs requantised to one scale, the finest of
    theirs refined to fit the sum;
  * ``sum``, ``max_pool``, ``slice``, ``pad``, ``reshape``, ``transpose``, ``concat``: the same operation on
    integers, the scale carried along (sliced, padded, reshaped with the tensor);
  * output: the integer logits and their scale (``output``).

Every rescaling is `requantize`: y = clip(floor((sign q M + B + 2^(k-1)) / 2^k), lo, hi) with per-channel
sign, int32 M and k and a 64-bit bias B in the product's units (`pannjax.export.requant`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from pannjax.errors import ConfigError
from pannjax.export.requant import quantize_bias, quantize_multiplier
from pannjax.hw.accumulator import width_for
from pannjax.nn import bound_layers, trace_graph

INT32 = (-(2**31), 2**31 - 1)


@dataclasses.dataclass(eq=False)
class Program:
    """An integer program: `steps` (JSON-able dicts in execution order, tensors named by string) and
    `arrays` (name -> numpy array, integers except the output scale); `input_shape` per example. Hashed
    by identity, so a compiled runner serves one program object."""

    steps: list
    arrays: dict
    input_shape: tuple
    layers: list  # per arithmetic layer: path, operator, datapath, formats, acc_bits

    @property
    def output(self) -> dict:
        return self.steps[-1]

    @functools.cached_property
    def device_arrays(self) -> dict:
        """`arrays` as JAX arrays, transferred once per program (every run of it reuses them)."""
        return {k: jnp.asarray(v) for k, v in self.arrays.items()}


@dataclasses.dataclass
class _Tensor:
    """A tensor of the program: value = relu?(q scale + offset), each array broadcastable to the per-example
    shape; `limit` bounds |value| (it sizes the integers of a materialised tensor)."""

    name: str
    scale: np.ndarray  # inf where the value is a padded zero
    limit: np.ndarray
    offset: np.ndarray | None = None  # pending real offset
    relu: bool = False  # pending ReLU (applied at the next rescaling: clip at 0)

    @property
    def plain(self) -> bool:
        return self.offset is None and not self.relu and not np.any(self.scale < 0)


def _compress(a: np.ndarray, ndim: int) -> np.ndarray:
    """`a` as an ndim array with every axis along which it is constant reduced to size 1."""
    a = np.asarray(a, np.float64).reshape((1,) * (ndim - np.ndim(a)) + np.shape(a))
    for axis in range(ndim):
        if a.shape[axis] > 1 and np.all(a == np.take(a, [0], axis=axis)):
            a = np.take(a, [0], axis=axis)
    return a


def _full(a: np.ndarray, shape) -> np.ndarray:
    return np.broadcast_to(a, tuple(shape)).copy()


def _moved(t: _Tensor, name: str, shape, ndim: int, fn) -> _Tensor:
    """`t` under a data movement `fn` (slice, reshape, ...) applied alike to its scale, limit and offset."""
    def move(a):
        return None if a is None else _compress(fn(_full(a, shape)), ndim)
    return _Tensor(name, move(t.scale), move(t.limit), move(t.offset), t.relu)


def _fine_target(scale: np.ndarray, limit: np.ndarray, room: float) -> np.ndarray:
    """|scale| / 2^E with the largest E (-31..30) that keeps |value| / target below `room`: the scale at
    which a tensor is materialised, so that its offset is rounded to ~|value| / room, not to a unit of q."""
    scale, limit = np.abs(np.asarray(scale, np.float64)), np.asarray(limit, np.float64)
    finite = np.isfinite(scale) & (limit > 0)
    e = np.floor(np.log2(np.where(finite, room * scale / np.where(finite, limit, 1.0), 2.0**30)))
    return np.where(np.isfinite(scale), scale / 2.0 ** np.clip(e, -31, 30), np.inf)


def _activation_step(layer) -> float:
    """The layer's activation step, which must be one fixed number (not a statistic of each batch)."""
    q = layer.quantizer_x
    if q.format.is_float:
        raise ConfigError(f"export: layer {layer.path} has float activations; the integer program needs integer "
                          "ones (train with quant=uniform/pot/apot/pann, or convert a float run with PANN)")
    probes = [q.integer(jnp.full((1, 4), v, jnp.float32)).scale for v in (0.5, 3.0)]
    if not np.allclose(probes[0], probes[1], rtol=0, atol=0) or np.size(probes[0]) != 1:
        raise ConfigError(f"export: layer {layer.path}'s activation step is computed from each batch (or per "
                          "channel); export needs one learned or fixed step (quant.x_step_mode=lsq or fixed)")
    return float(np.reshape(np.asarray(probes[0], np.float32), ()))


ROOM = 2.0**30  # materialised tensors use |q| < 2^30: a sum of two, or a 1/n mean's sum of n at 2^30 / n, fits int32


class _Builder:
    def __init__(self, variables, layers, acc_bits):
        self.params = traverse_util.flatten_dict(jax.device_get(variables.get("params", {})), sep="/")
        self.stats = traverse_util.flatten_dict(jax.device_get(variables.get("batch_stats", {})), sep="/")
        self.layers = {layer.path: layer for layer in layers}
        self.acc_bits = acc_bits
        self.steps: list[dict] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.layer_rows: list[dict] = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"t{self.count}_{stem}"

    def array(self, key: str, value: np.ndarray) -> str:
        self.arrays[key] = value
        return key

    def step(self, op: str, inputs, stem: str, **attrs) -> str:
        out = self.name(stem)
        self.steps.append({"op": op, "in": list(inputs), "out": out, **attrs})
        return out

    # -- rescaling -------------------------------------------------------------------------------
    def to_scale(self, t: _Tensor, ndim: int, target: np.ndarray, lo=INT32[0], hi=INT32[1],
                 stem: str = "rq") -> _Tensor:
        """`t` at scale `target`, clipped to [lo, hi], offset added and ReLU applied: one requantize step
        (none, or a relu step, where `t` is already plain integers at that scale and no clip is asked)."""
        target = _compress(target, ndim)  # a negative scale (BN folded with gamma < 0) flips the sign
        lo = max(lo, 0) if t.relu else lo
        limit = np.minimum(t.limit + np.abs(target), max(abs(lo), abs(hi)) * np.abs(target))
        same = np.array_equal(*np.broadcast_arrays(np.abs(t.scale), target))
        if same and t.offset is None and not np.any(t.scale < 0) and (lo, hi) in (INT32, (0, INT32[1])):
            name = self.step("relu", [t.name], "relu") if t.relu else t.name
            return _Tensor(name, target, _compress(limit, ndim))
        scale = np.asarray(t.scale, np.float64)
        live = np.isfinite(scale) & np.isfinite(target)  # inf: a padded zero, which stays zero
        sign = np.where((scale < 0) != (target < 0), -1, 1)
        ratio = np.where(live, np.abs(scale) / np.where(live, np.abs(target), 1.0), 1.0)
        mult, shift = quantize_multiplier(ratio)
        offset = np.zeros(()) if t.offset is None else np.where(live, t.offset / np.where(live, target, 1.0), 0.0)
        shape = np.broadcast_shapes(np.shape(offset), np.shape(mult))
        bias_hi, bias_lo = quantize_bias(np.broadcast_to(offset, shape), np.broadcast_to(shift, shape))
        key = f"{len(self.steps)}_{stem}"
        fields = {"sign": sign.astype(np.int32), "multiplier": mult, "shift": shift, "bias_hi": bias_hi,
                  "bias_lo": bias_lo}
        out = self.step("requantize", [t.name], stem, lo=int(lo), hi=int(hi),
                        **{f: self.array(f"{key}/{f}", _compress(v, ndim).astype(v.dtype)) for f, v in fields.items()})
        return _Tensor(out, target, _compress(limit, ndim))

    def plain(self, t: _Tensor, ndim: int, room: float = ROOM) -> _Tensor:
        """`t` as plain integers (no pending offset or ReLU, positive scale), materialised at a scale fine
        enough that the offset's rounding is ~|value| / room (`_fine_target`)."""
        if t.plain:
            return t
        if t.offset is None and not np.any(t.scale < 0):
            return self.to_scale(t, ndim, t.scale)  # a ReLU alone
        return self.to_scale(t, ndim, _fine_target(t.scale, t.limit, room), stem="plain")

    def common(self, ts: list[_Tensor], ndim: int) -> tuple[list[_Tensor], np.ndarray, np.ndarray]:
        """Tensors to be added (or stacked) at one scale: the finest of theirs refined to fit the total."""
        finest, total = np.abs(ts[0].scale), ts[0].limit
        for t in ts[1:]:
            finest, total = np.minimum(finest, np.abs(t.scale)), total + t.limit
        target = _compress(_fine_target(finest, total, ROOM), ndim)
        return [self.to_scale(t, ndim, target, stem="align") for t in ts], target, _compress(total, ndim)

    # -- nodes -----------------------------------------------------------------------------------
    def layer(self, node, t: _Tensor, ndim: int) -> _Tensor:
        layer = self.layers[node.attrs["path"]]
        path = layer.path
        step = _activation_step(layer)
        fmt = layer.quantizer_x.format
        lo, hi = (int(v) for v in fmt.code_range)
        if t.name == "input":
            codes = self.step("quantize", ["input"], "codes", step=step, lo=lo, hi=hi)
        else:
            codes = self.to_scale(t, ndim, np.full((1,) * ndim, step), lo, hi, stem="codes").name
        weights = layer.operator.integer_weights(layer.quantizer_w, layer.kernel, step, max(abs(lo), abs(hi)))
        acc_limit = weights.acc_limit * (max(abs(lo), abs(hi)) if weights.x_scaled else 1)
        width = layer.accumulator_width()
        worst = width.worst if width is not None else width_for(-float(acc_limit.max()), float(acc_limit.max()))
        bits = self.acc_bits.get(path, 32) if isinstance(self.acc_bits, dict) else self.acc_bits
        bits = worst if bits == "auto" else int(bits)
        keys = {k: self.array(f"{path}/{k}", np.asarray(v)) for k, v in weights.arrays.items()}
        bound = max(int(np.max(np.abs(np.asarray(a)))) if np.size(a) else 0 for a in weights.arrays.values())
        geometry = {"kind": layer.kind, "x_abs": max(abs(lo), abs(hi)), "w_abs": bound}
        if layer.kind == "conv":
            pad = layer.padding if not isinstance(layer.padding, str) else jax.lax.padtype_to_pads(
                tuple(layer.input_shape[1:3]), tuple(layer.kernel_shape[:2]), tuple(layer.strides), layer.padding)
            pad = [[int(a), int(b)] for a, b in pad]  # explicit (top, bottom), (left, right)
            geometry.update(strides=list(layer.strides), padding=pad, groups=int(layer.groups))
        out = self.step("layer", [codes], path.replace("/", "."), path=path, datapath=weights.datapath,
                        weights=keys, attrs=weights.attrs, geometry=geometry, acc_bits=bits)
        self.layer_rows.append({"path": path, "operator": layer.operator.name, "datapath": weights.datapath,
                                "input_format": str(fmt), "weight_format": str(layer.w_format), "acc_bits": bits,
                                "worst_case_acc_bits": int(worst), "input_step": step,
                                **{k: v for k, v in weights.attrs.items() if k == "grid_bits"}})
        shape = (1,) * (ndim - 1) + (layer.output_shape[-1],)
        scale = (weights.scale * (step if weights.x_scaled else 1.0)).reshape(shape)
        limit = acc_limit.reshape(shape) * np.abs(scale)
        bias = self.params.get(f"{path}/bias")
        offset = None if bias is None else np.asarray(bias, np.float64).reshape(shape)
        return _Tensor(out, scale, limit + (0 if offset is None else np.abs(offset)), offset)

    def batch_norm(self, node, t: _Tensor, ndim: int) -> _Tensor:
        if t.relu:
            t = self.plain(t, ndim)
        path = node.attrs["path"]
        shape = (1,) * (ndim - 1) + (-1,)
        gamma = np.asarray(self.params.get(f"{path}/scale", 1.0), np.float64)
        beta = np.asarray(self.params.get(f"{path}/bias", 0.0), np.float64)
        mean = np.asarray(self.stats[f"{path}/mean"], np.float64)
        var = np.asarray(self.stats[f"{path}/var"], np.float64)
        a = (gamma / np.sqrt(var + node.attrs["epsilon"])).reshape(shape)
        shift = (beta - mean * a.ravel()).reshape(shape)
        offset = (0.0 if t.offset is None else t.offset) * a + shift
        return _Tensor(t.name, _compress(t.scale * a, ndim), _compress(t.limit * np.abs(a) + np.abs(shift), ndim),
                       _compress(offset, ndim))


def build_program(model, variables, sample, acc_bits: int | str | dict = 32) -> Program:
    """The integer program of `model` with `variables` (module docstring). `sample` is an input batch (or its
    `jax.ShapeDtypeStruct`); `acc_bits` the accumulator width B, one for all or per layer path; "auto": each
    layer's worst-case width (`BoundLayer.accumulator_width`, exact for a linear datapath; the L1 bound of
    `IntegerWeights.acc_limit` for others)."""
    sample = jax.ShapeDtypeStruct(sample.shape, sample.dtype)
    nodes = trace_graph(model, variables, sample)
    b = _Builder(variables, bound_layers(model, variables, sample, train=False), acc_bits)
    vals: dict[int, _Tensor] = {}
    for i, node in enumerate(nodes):
        ndim = len(node.shape) - 1  # per-example rank
        ins = [vals[j] for j in node.inputs]
        in_shape = nodes[node.inputs[0]].shape[1:] if node.inputs else ()
        op = node.op
        if op == "input":
            vals[i] = _Tensor("input", np.ones((1,) * ndim), np.full((1,) * ndim, np.inf))
        elif op == "layer":
            vals[i] = b.layer(node, ins[0], ndim)
        elif op == "batch_norm":
            vals[i] = b.batch_norm(node, ins[0], ndim)
        elif op == "scale":
            t, f = ins[0], node.attrs["factor"]
            vals[i] = _Tensor(t.name, t.scale * f, t.limit * f, None if t.offset is None else t.offset * f, t.relu)
        elif op == "relu":
            vals[i] = dataclasses.replace(ins[0], relu=True)
        elif op == "output":
            t = b.plain(ins[0], ndim)
            scale = np.broadcast_to(t.scale, node.shape[1:]).astype(np.float32)
            b.steps.append({"op": "output", "in": [t.name], "out": "logits",
                            "scale": b.array("output/scale", _compress(scale, ndim).astype(np.float32))})
            vals[i] = t
        elif op == "slice":
            sl = tuple(slice(s, e, st) for s, e, st in zip(node.attrs["start"][1:], node.attrs["limit"][1:],
                                                            node.attrs["strides"][1:]))
            vals[i] = _moved(ins[0], b.step("slice", [ins[0].name], "slice", **_jsonable(node.attrs)), in_shape, ndim,
                             lambda a: a[sl])
        elif op == "pad":
            cfg = node.attrs["config"][1:]
            if any(interior for _, _, interior in cfg):
                raise ConfigError("export: interior padding is not supported")
            t = b.plain(ins[0], ndim)
            name = b.step("pad", [t.name], "pad", config=[list(c) for c in node.attrs["config"]])
            widths = [(lo, hi) for lo, hi, _ in cfg]
            padded = _moved(t, name, in_shape, ndim, lambda a: np.pad(a, widths, constant_values=np.inf))
            padded.limit = _compress(np.pad(_full(t.limit, in_shape), widths), ndim)
            vals[i] = padded
        elif op in ("max_pool", "reshape", "transpose"):
            t = b.plain(ins[0], len(in_shape))
            attrs = _jsonable(node.attrs)
            if op == "max_pool":
                if node.attrs["window"][-1] != 1 or node.attrs["window"][0] != 1:
                    raise ConfigError("export: max pooling across channels or examples is not supported")
                vals[i] = dataclasses.replace(t, name=b.step(op, [t.name], op, **attrs))
                continue
            if op == "transpose" and node.attrs["permutation"][0] != 0:
                raise ConfigError("export: a transpose that moves the batch axis is not supported")
            fn = ((lambda a: a.reshape(node.shape[1:])) if op == "reshape"
                  else (lambda a: a.transpose([p - 1 for p in node.attrs["permutation"][1:]])))
            vals[i] = _moved(t, b.step(op, [t.name], op, **attrs), in_shape, ndim, fn)
        elif op == "sum":
            if 0 in node.attrs["axes"]:
                raise ConfigError("export: a sum over the batch axis is not supported")
            axes = tuple(a - 1 for a in node.attrs["axes"])
            count = int(np.prod([in_shape[a] for a in axes]))
            t = b.plain(ins[0], len(in_shape), ROOM / count)
            full = _full(t.scale, in_shape)
            if not all(np.all(full == np.take(full, [0], axis=a)) for a in axes):
                raise ConfigError("export: a sum over elements of different scales is not supported")
            first = tuple(0 if d in axes else slice(None) for d in range(len(in_shape)))  # scales are equal
            vals[i] = _moved(t, b.step("sum", [t.name], "sum", axes=list(node.attrs["axes"])), in_shape, ndim,
                             lambda a: a[first])
            vals[i].limit = vals[i].limit * count
        elif op == "add" or (op == "concat" and node.attrs["axis"] - 1 != ndim - 1):
            ts, target, total = b.common(ins, ndim)
            vals[i] = _Tensor(b.step(op, [t.name for t in ts], op, **_jsonable(node.attrs)), target, total)
        elif op == "concat":  # along channels: each input keeps its scales
            ts = [b.plain(t, ndim) for t in ins]
            shapes = [nodes[j].shape[1:] for j in node.inputs]
            scale, limit = (_compress(np.concatenate([_full(getattr(t, f), s) for t, s in zip(ts, shapes)], axis=-1),
                                      ndim) for f in ("scale", "limit"))
            vals[i] = _Tensor(b.step(op, [t.name for t in ts], op, **_jsonable(node.attrs)), scale, limit)
        else:  # pragma: no cover - trace_graph emits only the ops above
            raise ConfigError(f"export: graph node {op!r} is unknown")
    return Program(b.steps, b.arrays, tuple(sample.shape[1:]), b.layer_rows)


def _jsonable(attrs: dict) -> dict:
    def conv(v: Any):
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if isinstance(v, (np.integer,)):
            return int(v)
        return v
    return {k: conv(v) for k, v in attrs.items()}


__all__ = ["Program", "build_program"]
