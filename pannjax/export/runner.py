"""`run`: the integer-only forward pass of a `Program` (`pannjax.export.program`), jit-compiled.

After the input quantisation (`quantize`, the fake-quant rounding of the image) every step is int32
arithmetic: each layer runs its operator's integer datapath (`pannjax.ops.integer`) into accumulators
reduced to the program's width B with wrap-around (`wrap`), and every rescaling is an integer multiplier
and shift (`pannjax.export.requant.multiply_round`). The logits are the final integers times the output
scale (`dequantize=False` returns the integers).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from pannjax.errors import ConfigError
from pannjax.export.program import Program
from pannjax.export.requant import multiply_round
from pannjax.ops.integer import run_datapath, wrap


def _step(step: dict, env: dict, arrays: dict, stats: dict):
    op, ins = step["op"], [env[name] for name in step["in"]]
    if op == "quantize":
        x = ins[0].astype(jnp.float32)
        return jnp.round(jnp.clip(x / jnp.float32(step["step"]), step["lo"], step["hi"])).astype(jnp.int32)
    if op == "requantize":
        q = multiply_round(ins[0], *(arrays[step[f]] for f in ("multiplier", "shift", "sign", "bias_hi", "bias_lo")))
        return jnp.clip(q, step["lo"], step["hi"])
    if op == "layer":
        weights = {k: arrays[v] for k, v in step["weights"].items()}
        parts = run_datapath(step["datapath"], ins[0], weights, step["attrs"], step["geometry"])
        wrapped = [wrap(acc, step["acc_bits"], signed) for acc, signed in parts]
        stats[step["path"]] = jnp.stack([sum(count for _, count in wrapped),  # overflows; the int32 range
                                         functools.reduce(jnp.minimum, [jnp.min(acc) for acc, _ in parts]),
                                         functools.reduce(jnp.maximum, [jnp.max(acc) for acc, _ in parts]),
                                         jnp.int32(all(signed for _, signed in parts))])
        acc = wrapped[0][0]
        return acc if len(wrapped) == 1 else acc - wrapped[1][0]
    if op == "relu":
        return jnp.maximum(ins[0], 0)
    if op == "add":
        return functools.reduce(jnp.add, ins)
    if op == "sum":
        return jnp.sum(ins[0], axis=tuple(step["axes"]), dtype=jnp.int32)
    if op == "max_pool":
        return jax.lax.reduce_window(ins[0], jnp.iinfo(jnp.int32).min, jax.lax.max, tuple(step["window"]),
                                     tuple(step["strides"]), tuple(map(tuple, step["padding"])))
    if op == "slice":
        return jax.lax.slice(ins[0], [0, *step["start"][1:]], [ins[0].shape[0], *step["limit"][1:]], step["strides"])
    if op == "pad":
        return jax.lax.pad(ins[0], jnp.int32(0), [tuple(c) for c in step["config"]])
    if op == "concat":
        return jnp.concatenate(ins, axis=step["axis"])
    if op == "reshape":
        return ins[0].reshape((ins[0].shape[0], *step["new_shape"][1:]))
    if op == "transpose":
        return ins[0].transpose(step["permutation"])
    raise ConfigError(f"program step {op!r} is unknown")


def _execute(program: Program, arrays: dict, images: jax.Array) -> tuple[dict, dict]:
    """Every tensor of the program ({name: value}) and the per-layer accumulator statistics."""
    env: dict = {"input": images}
    stats: dict = {}
    for step in program.steps[:-1]:
        env[step["out"]] = _step(step, env, arrays, stats)
    return env, stats


@functools.partial(jax.jit, static_argnums=0)
def _forward(program: Program, arrays: dict, images: jax.Array) -> tuple[jax.Array, dict]:
    env, stats = _execute(program, arrays, images)
    return env[program.output["in"][0]], stats


@functools.partial(jax.jit, static_argnums=0)
def _layer_inputs(program: Program, arrays: dict, images: jax.Array) -> dict:
    env, _ = _execute(program, arrays, images)
    return {s["path"]: env[s["in"][0]] for s in program.steps if s["op"] == "layer"}


def forward_fn(program: Program):
    """images -> (int32 logits, {layer path: [overflows, min, max of its accumulators, 1 if they are
    signed]}) with the program's arrays as constants (for `jax.export`)."""
    arrays = program.device_arrays
    return lambda images: _forward(program, arrays, images)


def run_codes(program: Program, images) -> tuple[jax.Array, dict]:
    """(int32 logits, {layer path: [number of accumulator values that overflowed B bits, smallest and largest
    accumulator value before the reduction to B bits, 1 if the accumulators are two's complement]}) of
    `images`."""
    images = jnp.asarray(images)
    if tuple(images.shape[1:]) != tuple(program.input_shape):
        raise ConfigError(f"export.run: images of shape {images.shape[1:]} per example; the program takes "
                          f"{tuple(program.input_shape)}")
    return _forward(program, program.device_arrays, images)


def layer_inputs(program: Program, images) -> dict[str, np.ndarray]:
    """{layer path: the integer codes entering that layer} for `images`: the operand streams the program's
    datapaths consume (for the gate-level power simulation, `pannjax.hw.report.build_report`)."""
    inputs = _layer_inputs(program, program.device_arrays, jnp.asarray(images))
    return {k: np.asarray(v) for k, v in inputs.items()}


def run(program: Program, images, dequantize: bool = True) -> jax.Array:
    """Logits of `images` computed by the integer program (float: integers times the output scale)."""
    codes, _ = run_codes(program, images)
    if not dequantize:
        return codes
    return codes.astype(jnp.float32) * jnp.asarray(program.arrays[program.output["scale"]])


__all__ = ["forward_fn", "layer_inputs", "run", "run_codes"]
