"""Gate-level simulation of a layer's arithmetic units on the layer's own integer operands.

`simulate_unit_op(u, xs, ws)` runs the default netlist of one unit operation (`pannjax.hw.units.UnitOp`;
`pannjax.hw.gates.model.unit_netlist_for`) on the operand streams a layer really feeds it, and returns
its gate-level toggles per operation by netlist group, the figure `unit_toggles(..., model="gates")`
models. `xs`, `ws` are (K, N) output-stationary streams: column n is the reduction of one output, in
the layer's dataflow order (`pannjax.hw.report.layer_streams`), in the codes of the unit's operand
formats (the layer's `input_view` / `weight_view`).

Every output becomes a sequence of unit operations, and the sequences of consecutive outputs are laid
end to end and cut into the simulator's lanes (each lane is one unit computing several outputs in turn,
`clear` on the first operation of each output), so units with a variable number of operations per
output need no padding:

  mac, absdiff, mf   one operation per term: ports x, w
  shift              one per non-zero weight (the unit skips pruned weights): x, sign, shift with the
                     weight sign * 2^(M - shift)
  sign_select        one per term: x, s = (w < 0)
  add (PANN)         |w| operations per element (a zero count none): the addend x (|x| for a signed
                     activation, in sign-magnitude) and neg = sign(w) sign(x) < 0; the split unit's final
                     subtraction of its two accumulators is simulated once per output
                     (`pannjax.hw.gates.model`)
  xnor               one per word of min(32, K) bits of the binary operands (bit 1 = +1; a last partial
                     word is zero-padded): x, w; the figure is per output (ceil(K / 32) words)

The first operation of each lane starts from zeroed registers (as the simulator does); with hundreds of
operations per lane this start-up is below a percent.
"""

from __future__ import annotations

import math

import numpy as np

from pannjax.errors import ConfigError
from pannjax.hw.gates.model import toggles_per_operation, unit_netlist_for
from pannjax.hw.toggles import XNOR_WORD_BITS
from pannjax.hw.units import UnitOp, max_shift

SIMULATED_UNITS = ("mac", "add", "shift", "absdiff", "sign_select", "mf", "xnor")
MAX_LANES = 4096  # one simulator block of 128 words
MIN_STEPS = 64  # operations per lane at least, where the stream allows


def _operations(xs: np.ndarray, ws: np.ndarray, repeats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, w, clear) of the operations of every output in turn: term (k, n) repeated `repeats[k, n]` times,
    outputs in column order, clear on each output's first operation."""
    order = np.asarray(repeats).T.ravel()
    element = np.repeat(np.arange(order.size), order)
    output = element // xs.shape[0]
    clear = np.ones(element.size, np.int64)
    clear[1:] = output[1:] != output[:-1]
    return xs.T.ravel()[element], ws.T.ravel()[element], clear


def _lanes(n_ops: int, min_steps: int = MIN_STEPS) -> int:
    """Lanes for n_ops operations: a power of two, at most `MAX_LANES`, at least `min_steps` steps each."""
    return 1 << max(0, min(MAX_LANES.bit_length() - 1, (max(1, n_ops // min_steps)).bit_length() - 1))


def _to_lanes(ports: dict[str, np.ndarray], lanes: int) -> dict[str, np.ndarray]:
    n = next(iter(ports.values())).size
    t = n // lanes
    return {p: np.ascontiguousarray(v[: t * lanes].reshape(lanes, t).T).astype(np.int64) for p, v in ports.items()}


def _xnor_words(xs: np.ndarray, ws: np.ndarray) -> tuple[dict[str, np.ndarray], int, int]:
    """Binary (K, N) operands packed into words of min(32, K) bits (bit 1 for a code > 0), output by output."""
    k, n = xs.shape
    bits = min(XNOR_WORD_BITS, k)
    words = math.ceil(k / bits)
    weights = np.left_shift(np.int64(1), np.arange(bits, dtype=np.int64))

    def pack(a):
        b = np.zeros((words * bits, n), np.int64)
        b[:k] = np.asarray(a) > 0
        return (b.reshape(words, bits, n) * weights[None, :, None]).sum(1)  # (words, N)

    x, w = pack(xs), pack(ws)
    clear = np.zeros((words, n), np.int64)
    clear[0] = 1
    return {"x": x.T.ravel(), "w": w.T.ravel(), "clear": clear.T.ravel()}, bits, words


def unit_ports(u: UnitOp, xs: np.ndarray, ws: np.ndarray) -> dict[str, np.ndarray]:
    """The flat (operations,) input-port streams of unit operation `u` fed the (K, N) operand streams
    (module docstring)."""
    xs, ws = np.asarray(xs, np.int64), np.asarray(ws, np.int64)
    if u.unit in ("mac", "absdiff", "mf"):
        x, w, clear = _operations(xs, ws, np.ones_like(xs))
        return {"x": x, "w": w, "clear": clear}
    if u.unit == "sign_select":
        x, w, clear = _operations(xs, ws, np.ones_like(xs))
        return {"x": x, "s": (w < 0).astype(np.int64), "clear": clear}
    if u.unit == "shift":
        m = max_shift(u.w.bits)
        mag = np.abs(ws)
        if np.any(mag > (1 << m)) or np.any((mag & (mag - 1)) != 0):
            raise ConfigError(f"layer weights are not {u.w.bits}-bit power-of-two codes (|w| = 2^k, k <= {m})")
        x, w, clear = _operations(xs, ws, (ws != 0).astype(np.int64))
        shift = np.where(w != 0, m - np.log2(np.maximum(np.abs(w), 1)).astype(np.int64), 0)
        return {"x": x, "sign": np.sign(w), "shift": shift, "clear": clear}
    if u.unit == "add":
        x, w, clear = _operations(xs, ws, np.abs(ws))
        neg = (np.sign(w) * np.where(x < 0, -1, 1)) < 0
        return {"x": np.abs(x) if u.x.signed else x, "neg": neg.astype(np.int64), "clear": clear}
    raise ConfigError(f"unit {u.unit!r}: no gate-level stream; simulated units: {', '.join(SIMULATED_UNITS)}")


def simulate_unit_op(u: UnitOp, xs: np.ndarray, ws: np.ndarray, delay: str = "zero") -> dict[str, float]:
    """Gate-level toggles per operation of `u` (by group, with "total") on the (K, N) operand streams of
    a layer (module docstring); for "xnor" per output. Raises when the streams hold too few operations."""
    if u.unit == "xnor":
        ports, bits, words = _xnor_words(xs, ws)
        netlist = unit_netlist_for("xnor", 1, 1, u.acc_bits, True, True, bits)
    else:
        ports, words = unit_ports(u, xs, ws), 1
        w_bits, w_signed = (u.w.bits, u.w.signed) if u.w is not None else (1, True)
        netlist = unit_netlist_for(u.unit, u.x.bits, w_bits, u.acc_bits, u.x.signed, w_signed, u.fan_in,
                                   u.arch if u.unit == "add" else None)
    n_ops = ports["clear"].size
    split = u.unit == "add" and (u.arch or "split") == "split"
    per_output = n_ops / max(int(ports["clear"].sum()), 1)
    if n_ops == 0 or (split and n_ops < 3 * per_output):
        raise ConfigError(f"the layer's sampled streams hold {n_ops} {u.unit} operations: too few to simulate "
                          "(sample more outputs)")
    streams = _to_lanes(ports, _lanes(n_ops, max(MIN_STEPS, math.ceil(3 * per_output)) if split else MIN_STEPS))
    return toggles_per_operation(netlist, streams, u.unit, u.arch, u.acc_bits, words, delay)


__all__ = ["SIMULATED_UNITS", "simulate_unit_op", "unit_ports"]
