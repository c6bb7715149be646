"""Gate-level toggles per operation of every arithmetic unit: simulated, and a calibrated analytic model.

`simulated_unit_toggles` is the reference: the unit's default netlist (`unit_netlist_for`: yosys's
synthesis of the plain arithmetic, `pannjax.hw.gates.generators`) run by the bit-packed simulator
(`pannjax.hw.gates.simulate`) on operand streams drawn from the operand statistics
(`pannjax.hw.gates.streams`), every gate output and register counted, zero-delay. Its mean over
`operations` operations has a relative sampling error of a few 1e-3.

`gate_unit_toggles` (``unit_toggles(..., model="gates")``) is the calibrated model: the register model's
components (`pannjax.hw.toggles`, closed forms in the operand statistics and the fan-in), grouped as

    inputs        the operand registers                                   -- counted exactly by both
    datapath      what the unit computes per operation before accumulating (multiplier, shifter,
                  negation, |x - w|, MF's adder, popcount tree) -- register model: the partial-product
                  array and product (or term) register
    accumulation  the accumulator's adder, its feedback gating and its register, and PANN's final
                  subtraction of its split accumulators -- register model: the accumulator register,
                  separately the sign-extension lines of a signed term into the B-bit adder (for units
                  that negate by the weight's sign, the lines follow that sign: `_negate_line_extension`),
                  and the B/2 flips of the subtraction once per output

each scaled by factors fitted to the simulator for that unit and widths:

    T_gates = T_inputs + (k_dp T_datapath + k_in T_inputs) + (k_acc T_accumulator + k_ext T_extension
              + k_term T_term + k_sub T_subtraction),

the first bracket fitted to the simulated datapath groups, the second to the accumulation groups
(operand changes drive a multiplier's internal logic beyond its AND array; T_term, the product or term
register, drives the accumulator's adder). The factors are non-negative least-squares fits through the
origin over six calibration points -- uniform codes and DNN-like codes (`OperandStats.gaussian`: ReLU'd
Gaussian activations, Gaussian weights, MSE-optimal clipping), each at the fan-ins `calibration_fan_ins`.
They stand for the logic a register does not show (a b x b multiplier's adder tree grows like b^2, an
adder's carry chain like b, the sign-extension lines drive B - b_p adder bits each). Factors for the
default configurations are shipped (`data/gate_calibration.json.gz`, written by
`scripts/calibrate_gates.py` with every validation row); any other configuration is fitted on first use
(six simulations, about a second) and cached in memory.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
from importlib import resources

import numpy as np

from pannjax.errors import ConfigError
from pannjax.hw.bitflips import OperandStats
from pannjax.hw.gates import generators
from pannjax.hw.gates.netlist import Netlist
from pannjax.hw.gates.streams import unit_streams
from pannjax.hw.toggles import XNOR_WORD_BITS
from pannjax.hw.units import max_shift

CALIBRATION_FAN_INS = (16, 128, 1024)
XNOR_CALIBRATION_FAN_INS = (32, 128, 1024)  # whole 32-bit words: below 32 an XNOR output is a narrower unit


_CAL_ADDITIONS = 2.0  # PANN calibration streams: R = 2 additions per element
INPUT_GROUPS = frozenset({"inputs"})
ACCUMULATION_GROUPS = frozenset({"adder", "mux", "accumulator", "subtraction"})
_REGISTER_DATAPATH = ("multiplier", "product", "term", "xnor")
_REGISTER_ACCUMULATION = ("acc_input", "accumulator", "popcount")


def calibration_fan_ins(unit: str) -> tuple[int, ...]:
    """The fan-ins the factors of `unit` are fitted at."""
    return XNOR_CALIBRATION_FAN_INS if unit == "xnor" else CALIBRATION_FAN_INS


def _shift_bits(w_bits: int) -> int:
    return w_bits - 1  # a b_w-bit PoT weight: sign + (b_w - 1) exponent bits, M = 2^(b_w-1) - 1


def unit_netlist_for(unit: str, x_bits: int, w_bits: int, acc_bits: int, x_signed: bool, w_signed: bool,
                     fan_in: int, arch: str | None = None) -> Netlist:
    """The default netlist of a pricing unit (`pannjax.hw.units`) at these widths. `arch`: for "add"
    the accumulation ("split" | "signed"); for "mac" / "mult" a multiplier architecture
    (`generators.MULTIPLIERS`, default yosys)."""
    if unit == "mac":
        return generators.unit_netlist("mac", x_bits=x_bits, w_bits=w_bits, acc_bits=acc_bits, x_signed=x_signed,
                                       w_signed=w_signed, **({"mult_arch": arch} if arch else {}))
    if unit == "mult":
        return generators.unit_netlist("mult", x_bits=x_bits, w_bits=w_bits, x_signed=x_signed, w_signed=w_signed,
                                       **({"arch": arch} if arch else {}))
    if unit == "add":
        return generators.unit_netlist("add", x_bits=x_bits, acc_bits=acc_bits, accumulation=arch or "split")
    if unit == "shift":
        return generators.unit_netlist("shift", x_bits=x_bits, shift_bits=_shift_bits(w_bits), acc_bits=acc_bits,
                                       x_signed=x_signed)
    if unit == "absdiff":  # mixed signedness: the unsigned operand is one bit wider in two's complement
        if x_signed != w_signed:
            x_bits, w_bits = x_bits + (not x_signed), w_bits + (not w_signed)
        return generators.unit_netlist("absdiff", x_bits=x_bits, w_bits=w_bits, acc_bits=acc_bits,
                                       signed=x_signed or w_signed)
    if unit == "sign_select":
        return generators.unit_netlist("sign_select", x_bits=x_bits, acc_bits=acc_bits, x_signed=x_signed)
    if unit == "mf":
        return generators.unit_netlist("mf", x_bits=x_bits, w_bits=w_bits, acc_bits=acc_bits, x_signed=x_signed,
                                       w_signed=w_signed)
    if unit == "xnor":
        return generators.unit_netlist("xnor", n=min(XNOR_WORD_BITS, fan_in), acc_bits=max(16, acc_bits))
    raise ConfigError(f"unit={unit!r}: no gate-level netlist; units with one: mac, mult, add, shift, absdiff, "
                      "sign_select, mf, xnor")


def default_stats(unit: str, bits: int, signed: bool, operand: str, kind: str) -> OperandStats | None:
    """Calibration operand statistics: "uniform" codes or "dnn" (`OperandStats.gaussian`: ReLU'd Gaussian
    activations when unsigned, Gaussian weights/activations when signed). None where the unit draws
    the operand itself (weights of shift, sign_select, add; xnor words)."""
    if operand == "w" and unit in ("shift", "sign_select", "add", "xnor"):
        return None
    if kind == "uniform":
        return OperandStats.uniform(bits, signed)
    return OperandStats.gaussian(bits, signed, rectified=not signed)


def simulated_unit_toggles(unit: str, x_bits: int, w_bits: int, acc_bits: int, x_signed: bool, w_signed: bool,
                           fan_in: int, x_stats: OperandStats | None = None, w_stats: OperandStats | None = None,
                           arch: str | None = None, additions: float | None = None, operations: int = 1 << 16,
                           seed: int = 0, delay: str = "zero") -> dict[str, float]:
    """Gate-level toggles per operation of `unit` (by netlist group, with "total"), simulated on
    `operations` operations drawn from `x_stats` / `w_stats` (uniform codes when None). For "xnor" an
    operation is one output of `fan_in` bits (ceil(fan_in / 32) words); for "add" one addition."""
    x = x_stats or OperandStats.uniform(x_bits, x_signed)
    w = w_stats if w_stats is not None else default_stats(unit, w_bits, w_signed, "w", "uniform")
    netlist = unit_netlist_for(unit, x.bits, w_bits, acc_bits, x.signed, w_signed, fan_in, arch)
    lanes = 64
    words, per_output = (math.ceil(fan_in / XNOR_WORD_BITS), math.ceil(fan_in / XNOR_WORD_BITS)) if unit == "xnor" \
        else (1, fan_in)
    ops_per_output, least = per_output, 1
    if unit == "add":  # an output is about R fan_in additions; the split unit's subtraction needs whole ones
        r = additions if additions is not None else float(np.dot(np.abs(w.values), w.probs)) if w is not None else 1.0
        ops_per_output, least = math.ceil(fan_in * r), 2
    t = max(least, math.ceil(operations / (lanes * ops_per_output))) * ops_per_output
    rng = np.random.default_rng(seed)
    streams = unit_streams(unit, x, w, per_output, t, lanes, rng, shift_bits=_shift_bits(w_bits),
                           additions=additions, word_bits=min(XNOR_WORD_BITS, fan_in))
    return toggles_per_operation(netlist, streams, unit, arch, acc_bits, words, delay)


def toggles_per_operation(netlist: Netlist, streams: dict[str, np.ndarray], unit: str, arch: str | None,
                          acc_bits: int, words: int = 1, delay: str = "zero") -> dict[str, float]:
    """The simulated toggles per operation of `unit`'s netlist on its port streams (T, lanes), by group
    with "total": with PANN's split subtraction (`_split_subtraction`) for "add", and per output of
    `words` words for "xnor"."""
    from pannjax.hw.gates.simulate import simulate

    result = simulate(netlist, streams, delay=delay).per_operation()
    if unit == "add" and (arch or "split") == "split":
        result["subtraction"] = _split_subtraction(streams, acc_bits, delay)
        result["total"] += result["subtraction"]
    return {k: v * words for k, v in result.items()}


def _split_subtraction(streams: dict[str, np.ndarray], acc_bits: int, delay: str) -> float:
    """Gate toggles per addition of the split unit's final subtraction acc_pos - acc_neg, one per output
    (`generators.subtractor_unit` fed the two accumulators' final values of consecutive outputs; its
    inputs are the accumulator registers, counted by the unit already)."""
    from pannjax.hw.gates.simulate import simulate

    clear, x, neg = streams["clear"], streams["x"], streams["neg"]
    t, lanes = clear.shape
    ids = np.cumsum(clear, axis=0)  # the output of each operation in its lane; 0: one begun before the lane
    n_ids = int(ids[-1].max()) + 1
    complete = int(ids[-1].min()) - 1  # outputs 1 .. last - 1 lie wholly in every lane
    if complete < 1:
        raise ConfigError(f"{t} operations per lane hold no complete output of the split unit: simulate more")
    index = (ids + np.arange(lanes) * n_ids).ravel()
    sums = [np.bincount(index, weights=(x * (neg == k)).ravel(), minlength=lanes * n_ids) for k in (0, 1)]
    a, b = (np.mod(v.reshape(lanes, n_ids)[:, 1:1 + complete].T.astype(np.int64), 1 << acc_bits) for v in sums)
    result = simulate(generators.unit_netlist("subtractor", bits=acc_bits), {"a": a, "b": b}, delay=delay)
    per_output = sum(v for g, v in result.by_group.items() if g != "inputs") / (complete * lanes)
    return per_output * float(clear.sum()) / (t * lanes)


def _negate_line_extension(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, x_stats, w_stats, arch,
                           additions) -> float | None:
    """Toggles per operation of the sign-extension lines of the term into the B-bit adder, as the netlist
    drives them (`pannjax.hw.gates.generators`): (B - width of the term) 2 q (1 - q) / R, q = P(top bit
    of the addend = 1), R the operations an addend is held for (PANN's repeated additions of one element;
    1 otherwise). The register model's extension follows the sign of the term's value; a term negated by
    a sign line (x XOR s, carry-in s) drives the lines by s instead -- a zero activation under a negative
    weight still makes an all-ones addend. Per unit: shift and sign-select s = the weight's sign; PANN's
    signed accumulation s = sign(w) held R additions; MF the top bit of (x + w) XOR flip, gated by
    x, w != 0; abs-difference's addend -|x - w| has a constant top bit (0 toggles). None for the units
    whose term carries the sign of its value (mac, mult) or has none (split additions, xnor)."""
    if unit == "shift":
        width = x_bits + max_shift(w_bits) + (not x_signed)
        q = 0.5 if w_stats is None else float(w_stats.probs[w_stats.values < 0].sum())
        return (acc_bits - width) * 2.0 * q * (1.0 - q)
    if unit == "sign_select":
        return (acc_bits - x_bits - (not x_signed)) * 0.5
    if unit == "add" and arch == "signed":  # +-x, x unsigned (b_x + 1 bits), s = sign(w) held R additions
        return (acc_bits - x_bits - 1) * 0.5 / (additions if additions is not None else 1.0)
    if unit == "absdiff":
        return 0.0
    if unit == "mf":
        x = x_stats or OperandStats.uniform(x_bits, x_signed)
        w = w_stats or OperandStats.uniform(w_bits, w_signed)
        xv, wv = x.values[:, None], w.values[None, :]
        live = (xv != 0) & (wv != 0)
        line = (((xv + wv) < 0) ^ ((xv < 0) ^ (wv < 0))) & live
        q = float((np.multiply.outer(x.probs, w.probs) * line).sum())
        width = max(x_bits + (not x_signed), w_bits + (not w_signed)) + 1
        return (acc_bits - width) * 2.0 * q * (1.0 - q)
    return None


def _register_parts(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, fan_in, x_stats, w_stats, arch,
                    additions) -> dict[str, float]:
    """The features of the gate model from the register model (`pannjax.hw.toggles`): inputs, datapath,
    accumulator (without the sign extension and PANN's final subtraction), extension (sign-extension
    lines into the B-bit adder; for units negating by the weight's sign, `_negate_line_extension`),
    term (the product or term register, what the accumulator's adder is fed; XNOR: the popcount register
    on the words that add to a running count) and subtraction (PANN's
    once-per-output subtraction of the split accumulators, which the unit's netlist leaves out)."""
    from pannjax.hw.toggles import unit_toggles

    d = unit_toggles(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, fan_in, "registers", x_stats=x_stats,
                     w_stats=w_stats, arch=arch, additions=additions)
    ext = _negate_line_extension(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, x_stats, w_stats, arch,
                                 additions)
    term = d.get("product", d.get("term", 0.0))
    if unit == "xnor":  # the popcount drives the adder's carries only on words after an output's first
        term = d["popcount"] * (1.0 - 1.0 / math.ceil(fan_in / XNOR_WORD_BITS))
    return {"inputs": d.get("inputs", 0.0), "datapath": sum(d.get(k, 0.0) for k in _REGISTER_DATAPATH),
            "accumulator": sum(d.get(k, 0.0) for k in _REGISTER_ACCUMULATION) - d.get("acc_input", 0.0),
            "extension": d.get("acc_input", 0.0) if ext is None else ext, "term": term,
            "subtraction": d.get("subtraction", 0.0)}


def _simulated_parts(sim: dict[str, float]) -> tuple[float, float, float]:
    inputs = sum(v for k, v in sim.items() if k in INPUT_GROUPS)
    acc = sum(v for k, v in sim.items() if k in ACCUMULATION_GROUPS)
    return inputs, sim["total"] - inputs - acc, acc


def _nnls(rows: list[list[float]], target: list[float]) -> list[float]:
    """Non-negative least-squares factors through the origin (`scipy.optimize.nnls`)."""
    from scipy.optimize import nnls

    return nnls(np.asarray(rows, np.float64), np.asarray(target, np.float64))[0].tolist()


def config_key(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, arch) -> str:
    return f"{unit}|{x_bits}|{w_bits}|{acc_bits}|{int(x_signed)}|{int(w_signed)}|{arch or ''}"


@functools.cache
def shipped_factors() -> dict[str, list[float]]:
    """The calibration table shipped with the package ({config_key: [k_dp, k_in, k_acc, k_ext, k_term, k_sub]})."""
    return calibration_table().get("factors", {})


@functools.cache
def calibration_table() -> dict:
    """The shipped calibration table: factors and every validation row (`scripts/calibrate_gates.py`)."""
    path = resources.files("pannjax.hw.gates") / "data" / "gate_calibration.json.gz"
    try:
        return json.loads(gzip.decompress(path.read_bytes()))
    except FileNotFoundError:
        return {}


@functools.lru_cache(maxsize=4096)
def calibration_factors(unit: str, x_bits: int, w_bits: int, acc_bits: int, x_signed: bool, w_signed: bool,
                        arch: str | None = None) -> tuple[float, ...]:
    """(k_dp, k_in, k_acc, k_ext, k_term, k_sub) of one configuration: shipped, or fitted now (module docstring)."""
    key = config_key(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, arch)
    if key in shipped_factors():
        return tuple(shipped_factors()[key])
    return fit_factors(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, arch)


def fit_factors(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, arch=None) -> tuple[float, ...]:
    """Fit (k_dp, k_in, k_acc, k_ext, k_term, k_sub) to the simulator on the uniform and DNN-like calibration
    streams at the calibration fan-ins (module docstring)."""
    dp_rows, dp_y, acc_rows, acc_y = [], [], [], []
    additions = _CAL_ADDITIONS if unit == "add" else None
    for kind in ("uniform", "dnn"):
        xs = default_stats(unit, x_bits, x_signed, "x", kind)
        ws = default_stats(unit, w_bits, w_signed, "w", kind)
        for fan_in in calibration_fan_ins(unit):
            inputs, dp, acc = _simulated_parts(simulated_unit_toggles(unit, x_bits, w_bits, acc_bits, x_signed,
                                                                      w_signed, fan_in, xs, ws, arch, additions))
            f = _register_parts(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, fan_in, xs, ws, arch, additions)
            dp_rows.append([f["datapath"], inputs])
            dp_y.append(dp)
            acc_rows.append([f["accumulator"], f["extension"], f["term"], f["subtraction"]])
            acc_y.append(acc)
    return (*_nnls(dp_rows, dp_y), *_nnls(acc_rows, acc_y))


def gate_factors_from(factors: tuple[float, ...], unit: str, x_bits: int, w_bits: int, acc_bits: int,
                      x_signed: bool, w_signed: bool, fan_in: int, x_stats: OperandStats | None = None,
                      w_stats: OperandStats | None = None, arch: str | None = None,
                      additions: float | None = None) -> dict[str, float]:
    """The model's toggles per operation with the given (k_dp, k_in, k_acc, k_ext, k_term, k_sub), by part,
    with "total"."""
    f = _register_parts(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, fan_in, x_stats, w_stats, arch, additions)
    d = {"inputs": f["inputs"], "datapath": factors[0] * f["datapath"] + factors[1] * f["inputs"],
         "accumulation": factors[2] * f["accumulator"] + factors[3] * f["extension"] + factors[4] * f["term"]
         + factors[5] * f["subtraction"]}
    d["total"] = sum(d.values())
    return d


def gate_unit_toggles(unit: str, x_bits: int, w_bits: int, acc_bits: int, x_signed: bool, w_signed: bool,
                      fan_in: int, x_stats: OperandStats | None = None, w_stats: OperandStats | None = None,
                      arch: str | None = None, additions: float | None = None) -> dict[str, float]:
    """The calibrated gate-level model (module docstring): toggles per operation by part, with "total".

    A "mac" with ``arch="split"`` (PANN's unsigned arithmetic for a MAC layer: the weight's sign selects one of
    two unsigned accumulators) is the unsigned b_x x (b_w - 1) MAC over fan_in / 2 products plus one B-bit
    subtraction per output, priced as B/2 register flips scaled by that MAC's accumulator factor."""
    if unit == "mac" and arch == "split" and w_signed and not x_signed:
        mag = max(1, w_bits - 1)
        d = gate_unit_toggles("mac", x_bits, mag, acc_bits, False, False, max(1, round(fan_in / 2)), x_stats)
        d["subtraction"] = calibration_factors("mac", x_bits, mag, acc_bits, False, False)[2] * 0.5 * acc_bits / fan_in
        d["total"] = sum(v for k, v in d.items() if k != "total")
        return d
    if unit == "mac" and arch == "split":  # split needs unsigned activations and signed weights, else a plain MAC
        arch = None
    factors = calibration_factors(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, arch)
    return gate_factors_from(factors, unit, x_bits, w_bits, acc_bits, x_signed, w_signed, fan_in, x_stats, w_stats,
                             arch, additions)
