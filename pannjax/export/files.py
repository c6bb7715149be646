"""An integer program on disk: ``program.json`` (steps, layers, input shape), ``weights.safetensors`` (every
integer array at its own width and the output scale), ``model.stablehlo`` (the integer-only forward,
serialised by `jax.export` with a symbolic batch size) and, where ONNX can compute it exactly,
``model.onnx`` (`pannjax.export.onnx_graph`).

`save(program, out)` writes the files; `load(out)` reads the first two back into a `Program`, which
`pannjax.export.run` executes; `load_stablehlo(out)` gives the `jax.export.Exported` whose ``call(images)``
returns (int32 logits, per-layer accumulator statistics) without pannjax.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import jax
import numpy as np
from safetensors.numpy import load_file, save_file

from pannjax.errors import ConfigError
from pannjax.export.onnx_graph import to_onnx, unsupported_reason
from pannjax.export.program import Program
from pannjax.export.runner import forward_fn

FORMAT = "pannjax-integer-program/2"
READABLE = ("pannjax-integer-program/1", FORMAT)  # /1: no packed arrays
FILES = ("program.json", "weights.safetensors", "model.stablehlo", "model.onnx")


def _narrow(a: np.ndarray) -> np.ndarray:
    """An integer array at the narrowest of int8 / int16 / int32 that holds it (uint32 words stay)."""
    if a.dtype.kind != "i":
        return a
    for dtype in (np.int8, np.int16):
        info = np.iinfo(dtype)
        if a.size == 0 or (a.min() >= info.min and a.max() <= info.max):
            return a.astype(dtype)
    return a.astype(np.int32)


def _binary(a: np.ndarray) -> bool:
    """An integer array of +-1 only (binary weights), stored one bit per value."""
    return a.dtype.kind == "i" and a.size > 0 and bool(np.all(np.abs(a) == 1))


def _pack(program: Program) -> tuple[dict, dict]:
    """(arrays to write, {name: shape} of those packed): layer weights of +-1 only as bits (np.packbits of
    w > 0, big-endian within a byte, row-major), every other integer array narrowed (`_narrow`)."""
    weights = {name for s in program.steps if s["op"] == "layer" for name in s["weights"].values()}
    out, packed = {}, {}
    for k, v in program.arrays.items():
        v = np.asarray(v)
        if k in weights and _binary(v):
            out[k], packed[k] = np.packbits(v.ravel() > 0), list(v.shape)
        else:
            out[k] = _narrow(v)
    return {k: np.ascontiguousarray(v) for k, v in out.items()}, packed


def _unpack(a: np.ndarray, shape) -> np.ndarray:
    bits = np.unpackbits(a)[:int(np.prod(shape))].reshape(shape)
    return np.where(bits == 1, 1, -1).astype(np.int32)


def stablehlo_bytes(program: Program) -> bytes:
    """The integer forward (weights as constants) exported with a symbolic batch dimension."""
    batch = jax.export.symbolic_shape("batch")[0]
    spec = jax.ShapeDtypeStruct((batch, *program.input_shape), np.float32)
    return jax.export.export(jax.jit(forward_fn(program)))(spec).serialize()


def save(program: Program, out: str | Path) -> Path:
    """Write `program` into the directory `out` (new or empty); ``model.onnx`` only where
    `pannjax.export.onnx_graph.unsupported_reason` finds nothing. The files are written to a temporary
    sibling directory renamed into place at the end, so an interrupted save leaves no partial program."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"export: out={out} exists and is not an empty directory; choose a new out=")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        arrays, packed = _pack(program)
        meta = {"format": FORMAT, "input_shape": list(program.input_shape), "layers": program.layers,
                "packed": packed, "steps": program.steps}
        save_file(arrays, str(Path(tmp) / "weights.safetensors"))
        (Path(tmp) / "model.stablehlo").write_bytes(stablehlo_bytes(program))
        if unsupported_reason(program) is None:
            (Path(tmp) / "model.onnx").write_bytes(to_onnx(program).SerializeToString())
        (Path(tmp) / "program.json").write_text(json.dumps(meta, indent=1))
        os.chmod(tmp, 0o755)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
        Path(tmp).mkdir()  # for TemporaryDirectory's own cleanup
    return out


def load(path: str | Path) -> Program:
    """The `Program` saved in directory `path` (arrays widened back to int32 for the runner)."""
    path = Path(path)
    if not (path / "program.json").is_file() or not (path / "weights.safetensors").is_file():
        raise ConfigError(f"export.load: {path} holds no exported program (program.json and weights.safetensors)")
    meta = json.loads((path / "program.json").read_text())
    if meta.get("format") not in READABLE:
        raise ConfigError(f"export.load: {path}/program.json has format {meta.get('format')!r}; expected {FORMAT!r}")
    packed = meta.get("packed", {})
    arrays = {k: _unpack(v, packed[k]) if k in packed else (v.astype(np.int32) if v.dtype.kind == "i" else v)
              for k, v in load_file(str(path / "weights.safetensors")).items()}
    return Program(meta["steps"], arrays, tuple(meta["input_shape"]), meta["layers"])


def load_stablehlo(path: str | Path) -> jax.export.Exported:
    """The serialised integer forward of directory `path`: ``.call(images) -> (int32 logits, stats)``
    (`pannjax.export.runner.forward_fn`)."""
    return jax.export.deserialize(bytearray((Path(path) / "model.stablehlo").read_bytes()))


__all__ = ["FILES", "load", "load_stablehlo", "save"]
