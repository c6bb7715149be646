"""Operand streams for a unit's netlist, drawn from operand code distributions.

`unit_streams` turns the statistics of a layer's operands (`OperandStats`: uniform codes, DNN-like
quantised Gaussians, or codes measured on a batch) into the input-port streams of the unit's netlist
(`pannjax.hw.gates.generators`), time-major (T, lanes): every lane is one unit computing `outputs`
consecutive outputs of `fan_in` terms each, output-stationary, so `clear` is 1 on the first term of each
output. Operands are independent draws (the assumption of the analytic models too). Ports per unit:

  mac, absdiff, mf   x, w codes, clear            mult   x, w (no accumulator)
  sign_select        x, s (1: the weight is -alpha, probability 1/2), clear
  shift              x, sign (+-1), shift e (the weight is sign 2^(M - e)), clear
  add (PANN)         each input element x with count c = |w| becomes c consecutive operations adding the
                     addend (x, or |x| for a signed x in sign-magnitude) with neg = the term's sign; the
                     counts come from `w_stats` (|codes|), or are the rounded half-normal magnitudes of
                     Gaussian weights with mean `additions` (what the PANN quantizer makes of Gaussian
                     weights); a lane's stream is cut to a whole number of operations T
  xnor               x, w: `word_bits`-bit words of independent uniform bits (one operation per word)
"""

from __future__ import annotations

import math

import numpy as np

from pannjax.errors import ConfigError
from pannjax.hw.bitflips import OperandStats


def draw(stats: OperandStats, shape, rng: np.random.Generator) -> np.ndarray:
    """Independent codes of `stats`, int64."""
    return rng.choice(stats.values, size=shape, p=stats.probs)


def _clear(t: int, lanes: int, fan_in: int) -> np.ndarray:
    clear = np.zeros((t, lanes), np.int64)
    clear[::fan_in] = 1
    return clear


def _pann_counts(additions: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """|round(z / s)| for z ~ N(0, 1), with s such that the mean count is `additions` (bisection)."""
    z = np.abs(rng.standard_normal(size))
    lo, hi = 1e-4, 1e3
    for _ in range(60):
        s = math.sqrt(lo * hi)
        lo, hi = (s, hi) if np.rint(z / s).mean() > additions else (lo, s)
    return np.rint(z / math.sqrt(lo * hi)).astype(np.int64)


def _pann_streams(x: OperandStats, w_stats: OperandStats | None, additions: float | None, fan_in: int, t: int,
                  lanes: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    ports = {"x": np.zeros((t, lanes), np.int64), "neg": np.zeros((t, lanes), np.int64),
             "clear": np.zeros((t, lanes), np.int64)}
    mean_count = additions if additions is not None else float(np.dot(np.abs(w_stats.values), w_stats.probs))
    if not mean_count > 0:
        raise ConfigError(f"additions={mean_count}: PANN needs a positive mean count of additions")
    elements = int(t / mean_count * 1.5) + 2 * fan_in
    for u in range(lanes):
        xs = draw(x, elements, rng)
        if w_stats is not None:
            ws = draw(w_stats, elements, rng)
            counts, w_sign = np.abs(ws), np.sign(ws)
        else:
            counts, w_sign = _pann_counts(mean_count, elements, rng), rng.choice([-1, 1], elements)
        while counts.sum() < t:  # rare: extend with more elements
            more = _pann_counts(mean_count, elements, rng)
            counts, xs = np.concatenate([counts, more]), np.concatenate([xs, draw(x, more.size, rng)])
            w_sign = np.concatenate([w_sign, rng.choice([-1, 1], more.size)])
        op_element = np.repeat(np.arange(counts.size), counts)[:t]
        op_output = op_element // fan_in  # elements 0..fan_in-1 make output 0, ...
        new_output = np.concatenate([[1], (op_output[1:] != op_output[:-1]).astype(np.int64)])
        sign = (w_sign * np.where(xs < 0, -1, 1))[op_element]
        ports["x"][:, u] = np.abs(xs)[op_element] if x.signed else xs[op_element]
        ports["neg"][:, u] = sign < 0
        ports["clear"][:, u] = new_output
    return ports


def unit_streams(unit: str, x: OperandStats, w: OperandStats | None, fan_in: int, t: int, lanes: int,
                 rng: np.random.Generator, shift_bits: int | None = None, additions: float | None = None,
                 word_bits: int | None = None) -> dict[str, np.ndarray]:
    """Input-port streams (T, lanes) of `unit`'s netlist (module docstring)."""
    if unit == "add":
        return _pann_streams(x, w, additions, fan_in, t, lanes, rng)
    if unit == "xnor":
        words = [rng.integers(0, 1 << word_bits, (t, lanes)) for _ in range(2)]
        return {"x": words[0], "w": words[1], "clear": _clear(t, lanes, fan_in)}
    ports = {"x": draw(x, (t, lanes), rng)}
    if unit == "sign_select":
        ports["s"] = rng.integers(0, 2, (t, lanes))
    elif unit == "shift":
        m = (1 << shift_bits) - 1
        if w is None:
            ports["sign"] = rng.choice([-1, 1], (t, lanes))
            ports["shift"] = rng.integers(0, m + 1, (t, lanes))
        else:  # PoT codes: the integer weight sign * 2^(M - e) (0 for a pruned weight)
            codes = draw(w, (t, lanes), rng)
            mag = np.abs(codes)
            ports["sign"] = np.sign(codes)
            ports["shift"] = np.where(mag > 0, m - np.log2(np.maximum(mag, 1)).astype(np.int64), 0)
    else:
        ports["w"] = draw(w, (t, lanes), rng)
    if unit != "mult":
        ports["clear"] = _clear(t, lanes, fan_in)
    return ports
