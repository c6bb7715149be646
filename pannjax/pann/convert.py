"""Post-training conversion of a trained float network into a PANN (or uniform) fixed-point network.

Steps (PANN Sec. 5 applies its quantizer to a pre-trained network; BN folding and calibration are the
standard PTQ preparation, our choices where the paper is silent):
  1. `load_float_run`: rebuild the model of a run of experiments/train.py from its `.hydra/config.yaml`
     and restore its newest readable orbax checkpoint (`pannjax.train.checkpoint.restore_run_variables`;
     missing or unreadable -> one-line ConfigError).
  2. `fold_batchnorm`: every BatchNorm that directly consumes a QConv's output is folded into it,
     W' = W * g / sqrt(v + e) (per output channel), b' = beta - m * g / sqrt(v + e); the BN is kept as a
     pure bias (scale 1, mean 0, var 1 - e), so model code is unchanged and outputs are preserved.
  3. `pann_policy` / `uniform_policy`: the arithmetic of every QConv/QDense: PANN weights
     (`PannQuantizer`, R additions per element) with b_x-bit activations, or uniform b-bit PTQ; the first
     and last layers (``stem``/``head``) follow `first_last`: "int8" (default: 8-bit uniform, the
     convention of the quantization work PANN compares with; the paper's exact choice could not be
     verified here), "float" or "same".
  4. `calibrate`: activation steps (and uniform weight steps) minimise the quantization MSE on a few
     batches (grid over clipping values, ACIQ-style) -- or max-calibrated, or LSQ's initial step.
Converted networks are evaluated with their quantized weights frozen into the kernels
(`freeze_weights`), which is exact (quantize(w) is what the layer computes) and lets one compiled
evaluation serve every R of a sweep.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from pannjax.errors import ConfigError
from pannjax.nn import ArithPolicy, LayerArith, QConv, bound_layers
from pannjax.ops import MacOperator
from pannjax.quant import FloatQuantizer, UniformQuantizer
from pannjax.quant.pann import PannQuantizer
from pannjax.train.checkpoint import restore_run_variables

FIRST_LAST = ("int8", "float", "same")
FIRST_LAST_PATTERN = r"^(stem|head)$"
CALIBRATIONS = ("mse", "max", "lsq")
_CLIP_GRID = np.linspace(0.02, 1.0, 50)  # clipping candidates, as fractions of max|x|
_CALIB_SAMPLES = 1 << 18  # activation values per layer used for calibration


@dataclasses.dataclass(frozen=True)
class FloatRun:
    """A trained float network: its config (plain dict), data set, model and variables; `build(policy)` is
    the same network with other arithmetic (`pannjax.experiment.model_factory` of the run's `model`)."""

    run_dir: Path
    config: dict
    dataset: Any
    model_name: str
    build: Callable[..., nn.Module]
    model: nn.Module
    variables: dict
    epoch: int


def load_float_run(run_dir: str | Path) -> FloatRun:
    """Model, data and restored variables of a float run directory written by experiments/train.py."""
    from pannjax.build import load_plugins
    from pannjax.experiment import load_data, model_factory

    cfg, variables, epoch = restore_run_variables(run_dir)
    load_plugins(cfg.get("plugins") or [])  # the run's own extensions (e.g. a registered model or operator)
    if (cfg.get("quant") or {}).get("name") not in (None, "float"):
        raise ConfigError(f"checkpoint={run_dir}: the run used quant={cfg['quant']['name']}; PANN converts a "
                          "float network (train with quant=float)")
    dataset = load_data(cfg)
    build = model_factory(cfg["model"], dataset.num_classes)
    model = build()
    expected = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                              jax.ShapeDtypeStruct((1, *dataset.image_shape), jnp.float32))
    for col in ("params", "batch_stats"):
        want = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(expected.get(col, {}), sep="/").items()}
        got = {k: tuple(np.shape(v)) for k, v in traverse_util.flatten_dict(variables[col], sep="/").items()}
        if want != got:
            bad = sorted(set(want.items()) ^ set(got.items()))[0][0]
            raise ConfigError(f"checkpoint={run_dir}: {col} entry {bad!r} does not match the model of its "
                              ".hydra/config.yaml; the checkpoint is corrupt or from another config")
    return FloatRun(Path(run_dir), cfg, dataset, cfg["model"]["name"], build, model, variables, epoch)


# -------------------------------------------------------------------------------------------------
# BatchNorm folding
# -------------------------------------------------------------------------------------------------

def conv_bn_pairs(model: nn.Module, variables: Any, sample) -> list[tuple[str, str]]:
    """(QConv path, BatchNorm path) for every BatchNorm whose input is exactly a QConv's output."""
    last: dict[int, str] = {}
    pairs = []

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__":
            path = "/".join(context.module.scope.path)
            if isinstance(context.module, QConv):
                last[id(out)] = path
            elif isinstance(context.module, nn.BatchNorm) and id(args[0]) in last:
                pairs.append((last[id(args[0])], path))
        return out

    with nn.intercept_methods(interceptor):
        model.apply(variables, sample, train=False)
    return pairs


def fold_batchnorm(model: nn.Module, variables: Any, sample) -> dict:
    """Variables with every QConv -> BatchNorm pair folded (module docstring); outputs are unchanged up to
    float rounding. BN epsilon is read from the module (flax default 1e-5)."""
    params = traverse_util.flatten_dict(jax.device_get(variables["params"]), sep="/")
    stats = traverse_util.flatten_dict(jax.device_get(variables.get("batch_stats", {})), sep="/")
    eps = 1e-5
    for conv, bn in conv_bn_pairs(model, variables, sample):
        inv = np.asarray(params[f"{bn}/scale"]) / np.sqrt(np.asarray(stats[f"{bn}/var"]) + eps)
        params[f"{conv}/kernel"] = np.asarray(params[f"{conv}/kernel"]) * inv
        shift = np.asarray(params[f"{bn}/bias"]) - np.asarray(stats[f"{bn}/mean"]) * inv
        if f"{conv}/bias" in params:
            shift = shift + np.asarray(params[f"{conv}/bias"]) * inv
            params[f"{conv}/bias"] = np.zeros_like(params[f"{conv}/bias"])
        params[f"{bn}/scale"] = np.ones_like(inv)
        params[f"{bn}/bias"] = shift
        stats[f"{bn}/mean"] = np.zeros_like(inv)
        stats[f"{bn}/var"] = np.full_like(inv, 1.0 - eps)
    return {"params": traverse_util.unflatten_dict(params, sep="/"),
            "batch_stats": traverse_util.unflatten_dict(stats, sep="/")}


# -------------------------------------------------------------------------------------------------
# Policies
# -------------------------------------------------------------------------------------------------

def _first_last(first_last: str) -> tuple[tuple[str, LayerArith], ...]:
    if first_last == "int8":
        int8 = LayerArith(UniformQuantizer(8, True, per_channel=True), UniformQuantizer(8, None))
        return ((FIRST_LAST_PATTERN, int8),)
    if first_last == "float":
        return ((FIRST_LAST_PATTERN, LayerArith(FloatQuantizer(), FloatQuantizer())),)
    if first_last == "same":
        return ()
    raise ConfigError(f"first_last={first_last!r}: expected one of {FIRST_LAST}")


def pann_policy(x_bits: int, additions: float, accumulation: str = "split", per_channel: bool = False,
                scale_rule: str = "exact", first_last: str = "int8") -> ArithPolicy:
    """PANN weights (R additions per element) and unsigned b_x-bit activations (LSQ-step parameters,
    set by `calibrate`) on every QConv/QDense, first/last layers per `first_last`."""
    qw = PannQuantizer(additions=float(additions), accumulation=accumulation, per_channel=per_channel,
                       scale_rule=scale_rule)
    return ArithPolicy(LayerArith(qw, UniformQuantizer(x_bits, None), MacOperator()), _first_last(first_last))


def uniform_policy(w_bits: int, x_bits: int, first_last: str = "int8") -> ArithPolicy:
    """Uniform PTQ: signed b_w-bit per-channel weights and b_x-bit activations, steps set by `calibrate`."""
    return ArithPolicy(LayerArith(UniformQuantizer(w_bits, True, per_channel=True), UniformQuantizer(x_bits, None),
                                  MacOperator()), _first_last(first_last))


# -------------------------------------------------------------------------------------------------
# Calibration
# -------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LayerInputs:
    """A sample of one arithmetic layer's input values (flattened) and whether they can be negative."""

    path: str
    values: np.ndarray
    signed: bool


def collect_layer_inputs(model: nn.Module, variables: Any, batches: Iterable[np.ndarray],
                         max_values: int = _CALIB_SAMPLES, seed: int = 0) -> dict[str, LayerInputs]:
    """Input activations of every QConv/QDense of `model` (the float network) on calibration batches."""
    images = jnp.asarray(np.concatenate([np.asarray(b) for b in batches]))
    layers = bound_layers(model, variables, images, capture_inputs=True, train=False)
    seen = {layer.path: [layer.inputs.ravel()] for layer in layers}
    signed = {layer.path: layer.input_signed for layer in layers}
    rng = np.random.default_rng(seed)
    out = {}
    for path, chunks in seen.items():
        v = np.concatenate(chunks)
        if v.size > max_values:
            v = v[rng.choice(v.size, max_values, replace=False)]
        out[path] = LayerInputs(path, v, signed[path])
    return out


def mse_step(values: np.ndarray, q_neg: int, q_pos: int, axis: int | None = None) -> np.ndarray:
    """Step s minimising sum (v - s clip(round(v/s), -q_neg, q_pos))^2, over clipping points that are
    fractions `_CLIP_GRID` of max|v| (per column of a 2-D array when `axis=0`)."""
    v = np.asarray(values, np.float64)
    top = np.maximum(np.max(np.abs(v), axis=axis, keepdims=axis is not None), 1e-12)
    best_err, best_step = None, None
    for frac in _CLIP_GRID:
        step = frac * top / max(q_pos, 1)
        err = np.sum((v - step * np.clip(np.round(v / step), -q_neg, q_pos)) ** 2, axis=axis,
                     keepdims=axis is not None)
        if best_err is None:
            best_err, best_step = err, step
        else:
            better = err < best_err
            best_err, best_step = np.where(better, err, best_err), np.where(better, step, best_step)
    return best_step


def _step_for(q: UniformQuantizer, values: np.ndarray, method: str, axis: int | None = None) -> np.ndarray:
    if method == "lsq":  # LSQ's initial step 2 <|v|> / sqrt(Q_P) (Esser et al. 2020, Sec. 2.1)
        return np.maximum(2.0 * np.mean(np.abs(values), axis=axis, keepdims=axis is not None) / np.sqrt(q.q_pos),
                          1e-12)
    if method == "max":
        return np.maximum(np.max(np.abs(values), axis=axis, keepdims=axis is not None), 1e-12) / q.q_pos
    return mse_step(values, q.q_neg, q.q_pos, axis)


def init_variables(model: nn.Module, float_variables: dict, sample) -> dict:
    """Variables of a converted `model`: the float network's kernels, biases and BN entries (same paths)
    in the converted model's structure (from `jax.eval_shape`, nothing compiled); quantizer steps are
    left at 1 for `calibrate` to set."""
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                            jax.ShapeDtypeStruct((1, *np.shape(sample)[1:]), jnp.float32))
    out = {}
    for col in ("params", "batch_stats"):
        given = traverse_util.flatten_dict(float_variables.get(col, {}))
        flat = {}
        for key, leaf in traverse_util.flatten_dict(shapes.get(col, {})).items():
            value = given.get(key)
            flat[key] = np.asarray(value) if value is not None and np.shape(value) == leaf.shape \
                else np.ones(leaf.shape, leaf.dtype)
        out[col] = traverse_util.unflatten_dict(flat)
    return out


def calibrate(model: nn.Module, variables: dict, policy: ArithPolicy, inputs: dict[str, LayerInputs],
              method: str = "mse") -> dict:
    """Set the step parameters of `model`'s uniform quantizers: activations from the calibration `inputs`,
    weights from the kernels (per output channel). `method`: "mse" (clipping with the least squared
    error), "max" (no clipping) or "lsq" (LSQ's initial step, what training from scratch starts with)."""
    if method not in CALIBRATIONS:
        raise ConfigError(f"calibration={method!r}: expected one of {CALIBRATIONS}")
    flat = traverse_util.flatten_dict(variables["params"], sep="/")
    for path, layer_in in inputs.items():
        arith = policy.resolve(path)
        qx = arith.quantizer_x.with_input_sign(layer_in.signed)
        key = f"{path}/quantizer_x/step"
        if isinstance(qx, UniformQuantizer) and key in flat:
            flat[key] = np.asarray(_step_for(qx, layer_in.values, method), np.float32).reshape(np.shape(flat[key]))
        qw = arith.quantizer_w
        key = f"{path}/quantizer_w/step"
        if isinstance(qw, UniformQuantizer) and key in flat:
            kernel = np.asarray(flat[f"{path}/kernel"])
            cols = kernel.reshape(-1, kernel.shape[-1]) if qw.per_channel else kernel.reshape(-1, 1)
            flat[key] = np.asarray(_step_for(qw, cols, method, axis=0), np.float32).reshape(np.shape(flat[key]))
    return {"params": traverse_util.unflatten_dict(flat, sep="/"), "batch_stats": variables["batch_stats"]}


# -------------------------------------------------------------------------------------------------
# Frozen weights (evaluation) and conversion
# -------------------------------------------------------------------------------------------------

def freeze_weights(model: nn.Module, variables: dict, sample) -> tuple[ArithPolicy, dict]:
    """(policy, variables) computing exactly what `model` computes, with every layer's quantized kernel
    stored in `kernel` and a float weight quantizer: the activation arithmetic alone decides the compiled
    function, so networks that differ only in their weights share one compilation."""
    flat = traverse_util.flatten_dict(variables["params"], sep="/")
    for layer in bound_layers(model, variables, sample):
        flat[f"{layer.path}/kernel"] = np.asarray(layer.quantizer_w.quantize(jnp.asarray(layer.kernel)))
    policy = model.policy
    frozen = ArithPolicy(dataclasses.replace(policy.default, quantizer_w=FloatQuantizer()),
                         tuple((p, dataclasses.replace(a, quantizer_w=FloatQuantizer() if a.quantizer_w else None))
                               for p, a in policy.overrides))
    return frozen, {"params": traverse_util.unflatten_dict(flat, sep="/"), "batch_stats": variables["batch_stats"]}


@dataclasses.dataclass(frozen=True)
class Converted:
    """A converted network: the model with its policy, and its (calibrated) variables."""

    model: nn.Module
    variables: dict
    policy: ArithPolicy


def convert(run: FloatRun, folded: dict, policy: ArithPolicy, inputs: dict[str, LayerInputs],
            calibration: str = "mse") -> Converted:
    """The float network of `run` (BN-folded `folded` variables) under `policy`, calibrated."""
    model = run.build(policy)
    sample = run.dataset.train_images[:2]
    variables = calibrate(model, init_variables(model, folded, sample), policy, inputs, calibration)
    return Converted(model, variables, policy)
