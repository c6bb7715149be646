"""Expected toggles (bit flips) per operation of every arithmetic unit: `unit_toggles`.

One function prices every unit of `pannjax.hw.units` in toggles per operation, under a chosen model:

  * ``model="registers"``: the registers of the unit and, for multipliers, the AND array of partial
    products -- PANN's bit-flip view (Spingarn-Eliezer et al., arXiv 2202.02783, Sec. 3), derived in
    `pannjax.hw.bitflips`. It leaves out the logic between the registers (a multiplier's adder tree, an
    adder's carry chain), so it is a lower bound of a real datapath's activity.
  * ``model="gates"`` (the default): every gate output and register of the unit's gate-level netlist
    (what yosys synthesises from the plain arithmetic, `pannjax.hw.gates`), as a model calibrated to the
    gate-level simulator, see `pannjax.hw.gates.model`.

Register model per unit (operands independent draws from their code distributions, `OperandStats`;
uniform codes unless `x_stats` / `w_stats` are given; all formulas derived, not quoted):

  mac          `bitflips_mac`: input registers, partial-product array, product register, sign extension
               of the product into the B-bit accumulator, accumulator register. ``arch="split"`` (unsigned
               activations, signed weights): PANN's unsigned arithmetic, the weight's sign selecting one of
               two unsigned accumulators (b_x x (b_w - 1) unsigned MACs over fan_in / 2 products each)
               plus one B-bit subtraction per output.
  mult         `bitflips_multiplier`: input registers, partial-product array, product register.
  add          PANN's repeated addition, per addition (`bitflips_repeated_addition`): "split" (unsigned
               addends into two unsigned accumulators, about fan_in / 2 elements each, plus one B-bit
               subtraction per output, B/2 toggles amortised over the R fan_in additions) or "signed"
               (+-x into one two's complement accumulator). R = `additions` (or the mean |code| of
               `w_stats`, else 1). A signed activation (a network's input image) under "split" runs in
               sign-magnitude: |x| is added into the accumulator that sign(x) sign(w) selects, so the
               addends stay unsigned -- PANN's unsigned arithmetic extended to signed inputs; the result
               is the same integer.
  shift, absdiff, sign_select, mf
               a term t(x, w) into the B-bit accumulator: input registers, the term register, the sign
               extension of a signed term, and the accumulator (`term_accumulate_toggles`), with
               t = (-1)^s x 2^(M-e) (the weight register holds a sign bit s and a (b_w - 1)-bit exponent
               field e, uniform), -|x - w|, (-1)^s x (a one-bit sign register), and sign(x)|w| + sign(w)|x|.
  xnor         one operation per output of fan_in bits: ceil(fan_in / 32) words through a 32-bit XNOR and
               popcount, the counts accumulated (`_xnor`).

Float units, crossbar cells and ADCs have no bit-flip model (`unit_op_toggles` returns None).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from pannjax.errors import ConfigError
from pannjax.hw.bitflips import (OperandStats, _register_flips, bitflips_accumulator, bitflips_mac,
                                 bitflips_multiplier, bitflips_register, bitflips_repeated_addition)
from pannjax.hw.units import FLOAT_UNITS, UnitOp, max_shift

MODELS = ("registers", "gates")
DEFAULT_MODEL = "gates"
TOGGLE_UNITS = ("mac", "mult", "add", "shift", "absdiff", "sign_select", "mf", "xnor")


def _pattern_flips(values: np.ndarray, probs: np.ndarray, bits: int) -> float:
    pattern = values & ((1 << bits) - 1)
    return _register_flips(np.array([probs[((pattern >> k) & 1) == 1].sum() for k in range(bits)]))


def term_accumulate_toggles(x: OperandStats, w_values: np.ndarray, w_probs: np.ndarray, w_bits: int, term,
                            term_bits: int, acc_bits: int, fan_in: int) -> dict[str, float]:
    """Register toggles per operation of a unit computing t = term(x, w) and adding it to a B-bit
    accumulator: inputs (x register, w register of `w_bits` holding the code pattern of `w_values`), the
    `term_bits`-bit term register, sign extension of a signed term ((B - term_bits) 2 r (1 - r), r = P(t < 0)),
    and the accumulator (`bitflips_accumulator`). Exact enumeration over the operand pairs."""
    if acc_bits < term_bits:
        raise ConfigError(f"acc_bits={acc_bits}: the accumulator must hold the {term_bits}-bit term")
    t = term(x.values[:, None], w_values[None, :]).ravel()
    p = np.multiply.outer(x.probs, w_probs).ravel()
    keep = p > 0
    vals, inv = np.unique(t[keep], return_inverse=True)
    pr = np.bincount(inv, weights=p[keep])
    rs = float(pr[vals < 0].sum())
    acc = bitflips_accumulator(vals, pr, term_bits, acc_bits, fan_in)
    d = {"inputs": bitflips_register(x) + _pattern_flips(w_values, w_probs, w_bits),
         "term": _pattern_flips(vals, pr, term_bits),
         "acc_input": (acc_bits - term_bits) * 2.0 * rs * (1.0 - rs),
         "accumulator": acc["low"] + acc["high"]}
    d["total"] = sum(d.values())
    return d


def _stats(bits: int, signed: bool, stats: OperandStats | None) -> OperandStats:
    return OperandStats.uniform(bits, signed) if stats is None else stats


def _check(unit: str, x_bits: int, w_bits: int, acc_bits: int, fan_in: int, model: str) -> None:
    if unit not in TOGGLE_UNITS:
        raise ConfigError(f"unit={unit!r}: the toggle models cover {', '.join(TOGGLE_UNITS)}")
    if model not in MODELS:
        raise ConfigError(f"model={model!r}: expected one of {', '.join(MODELS)}")
    for name, v in (("x_bits", x_bits), ("w_bits", w_bits), ("acc_bits", acc_bits), ("fan_in", fan_in)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{name}={v!r}: expected a positive integer")


def _registers(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, fan_in, x_stats, w_stats, arch, additions):
    x = _stats(x_bits, x_signed, x_stats)
    if unit == "mac" and arch == "split" and w_signed and not x.signed:
        return _split_mac(x, w_bits, acc_bits, fan_in)
    if unit == "mac":
        return bitflips_mac(x_bits, w_bits, acc_bits, fan_in=fan_in, x_stats=x,
                            w_stats=_stats(w_bits, w_signed, w_stats)).as_dict()
    if unit == "mult":
        return bitflips_multiplier(x_bits, w_bits, x_stats=x, w_stats=_stats(w_bits, w_signed, w_stats))
    if unit == "add":
        return _repeated_addition(x, acc_bits, fan_in, w_stats, arch, additions)
    if unit == "xnor":
        return _xnor(fan_in, acc_bits)
    if unit == "shift":  # weight register: sign bit and exponent field e (b_w - 1 bits), value (-1)^s 2^(M - e)
        m = max_shift(w_bits)
        codes = np.arange(1 << w_bits)
        term = lambda a, c: (1 - 2 * (c >> (w_bits - 1))) * a * (1 << (m - (c & m)))  # noqa: E731
        return term_accumulate_toggles(x, codes, np.full(codes.size, 1.0 / codes.size), w_bits, term,
                                       x_bits + m + 1, acc_bits, fan_in)
    if unit == "sign_select":  # weight register: one sign bit s, the term (-1)^s x
        return term_accumulate_toggles(x, np.array([0, 1]), np.array([0.5, 0.5]), 1, lambda a, c: a * (1 - 2 * c),
                                       x_bits + 1, acc_bits, fan_in)
    w = _stats(w_bits, w_signed, w_stats)
    width = max(x_bits, w_bits) + 2
    term = (lambda a, b: -np.abs(a - b)) if unit == "absdiff" else \
        (lambda a, b: np.sign(a) * np.abs(b) + np.sign(b) * np.abs(a))
    return term_accumulate_toggles(x, w.values, w.probs, w_bits, term, width, acc_bits, fan_in)


def _split_mac(x: OperandStats, w_bits: int, acc_bits: int, fan_in: int) -> dict[str, float]:
    """PANN's unsigned arithmetic for a MAC layer: the weight's sign selects one of two unsigned
    accumulators, each a b_x x (b_w - 1) unsigned MAC over about fan_in / 2 products, plus one B-bit
    subtraction per output (B/2 toggles, amortised over fan_in)."""
    mag = max(1, w_bits - 1)
    d = bitflips_mac(x.bits, mag, acc_bits, fan_in=max(1, round(fan_in / 2)), x_stats=x,
                     w_stats=OperandStats.uniform(mag, False)).as_dict()
    d.pop("total")
    d["subtraction"] = 0.5 * acc_bits / fan_in
    d["total"] = sum(d.values())
    return d


def magnitudes(x: OperandStats) -> OperandStats:
    """Distribution of |x| for signed codes x, as unsigned codes of the same width (|-2^(b-1)| fits)."""
    probs = np.bincount(np.abs(x.values), weights=x.probs, minlength=1 << x.bits)[: 1 << x.bits]
    return OperandStats(x.bits, False, probs)


def _repeated_addition(x: OperandStats, acc_bits, fan_in, w_stats, arch, additions) -> dict[str, float]:
    if additions is None:
        additions = float(np.dot(np.abs(w_stats.values), w_stats.probs)) if w_stats is not None else 1.0
    if additions <= 0:
        raise ConfigError(f"additions={additions}: expected > 0")
    arch = arch or "split"
    if arch not in ("split", "signed"):
        raise ConfigError(f"arch={arch!r} for unit 'add': expected 'split' or 'signed'")
    if arch == "split":
        mags = magnitudes(x) if x.signed else x
        d = bitflips_repeated_addition(mags.bits, acc_bits, additions, max(1, round(fan_in / 2)), False,
                                       x_stats=mags)
        d = dict(d, subtraction=0.5 * acc_bits / (additions * fan_in))
    else:
        d = bitflips_repeated_addition(x.bits, acc_bits, additions, fan_in, True, x_stats=x)
    d.pop("total")
    d["total"] = sum(d.values())
    return d


XNOR_WORD_BITS = 32  # an XNOR-popcount unit's word: a fan_in-bit output is ceil(fan_in / 32) words


@functools.lru_cache(maxsize=256)
def _xnor(n: int, acc_bits: int) -> dict[str, float]:
    """Per output of n bits, as words = ceil(n / 32) word operations of a 32-bit XNOR-popcount unit
    (n < 32: one n-bit word) whose counts accumulate: uniform bits give per word two input words (b/2
    each), the XNOR word (b/2), the popcount register (Binomial(b, 1/2) in ceil(log2(b+1)) bits) and the
    accumulator (`bitflips_accumulator` over `words` popcounts)."""
    b = min(n, XNOR_WORD_BITS)
    words = math.ceil(n / b)
    bits = max(1, math.ceil(math.log2(b + 1)))
    k = np.arange(b + 1)
    pmf = np.exp([math.lgamma(b + 1) - math.lgamma(i + 1) - math.lgamma(b - i + 1) - b * math.log(2) for i in k])
    acc = bitflips_accumulator(k, pmf / pmf.sum(), bits, max(acc_bits, bits), words)
    d = {"inputs": float(b) * words, "xnor": b / 2.0 * words, "popcount": _pattern_flips(k, pmf, bits) * words,
         "accumulator": (acc["low"] + acc["high"]) * words}
    d["total"] = sum(d.values())
    return d


def unit_toggles(unit: str, x_bits: int, w_bits: int, acc_bits: int, x_signed: bool, w_signed: bool, fan_in: int,
                 model: str = DEFAULT_MODEL, x_stats: OperandStats | None = None, w_stats: OperandStats | None = None,
                 arch: str | None = None, additions: float | None = None) -> dict[str, float]:
    """Expected toggles per operation of `unit` (module docstring), by component, with "total".

    x_bits, w_bits: operand widths (w_bits: the weight code width; for "add" the count width, for "xnor"
    ignored); acc_bits: accumulator width B; fan_in: terms per output (input elements per output for
    "add", the word width for "xnor"); x_stats / w_stats: measured code distributions (default uniform);
    arch: a unit variant ("add": "split" | "signed"; gate model: the netlist architecture);
    additions: PANN's R for "add"."""
    _check(unit, x_bits, w_bits, acc_bits, fan_in, model)
    if model == "gates":
        from pannjax.hw.gates.model import gate_unit_toggles
        return gate_unit_toggles(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, fan_in, x_stats=x_stats,
                                 w_stats=w_stats, arch=arch, additions=additions)
    return _registers(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, fan_in, x_stats, w_stats, arch, additions)


@functools.lru_cache(maxsize=4096)
def _cached(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, fan_in, model, arch, additions) -> dict[str, float]:
    return unit_toggles(unit, x_bits, w_bits, acc_bits, x_signed, w_signed, fan_in, model, arch=arch,
                        additions=additions)


def unit_op_arguments(u: UnitOp) -> dict:
    """`unit_toggles`'s arguments for one `UnitOp` (all but `model` and the operand statistics): the one
    place a unit operation becomes a toggle-model configuration."""
    w_bits, w_signed = (u.w.bits, u.w.signed) if u.w is not None else (1, True)
    if u.unit == "add":  # the count's sign is handled by the accumulation, the addend is the activation
        w_signed = True
    return {"unit": u.unit, "x_bits": u.x.bits, "w_bits": w_bits, "acc_bits": u.acc_bits, "x_signed": u.x.signed,
            "w_signed": w_signed, "fan_in": u.fan_in, "arch": u.arch,
            "additions": round(u.per_input, 6) if u.unit == "add" else None}


def unit_op_toggles(u: UnitOp, model: str = DEFAULT_MODEL, mac_arch: str | None = None) -> dict[str, float] | None:
    """Toggles per operation of one `UnitOp` on uniform operand codes, by component with "total"; None for
    units without a bit-flip model (float units, crossbar cells, ADCs, partial-sum accumulation of analog
    layers). `mac_arch` prices every "mac" unit in that variant (e.g. "split")."""
    if u.unit in FLOAT_UNITS or u.unit not in TOGGLE_UNITS:
        return None
    if u.unit == "mac" and mac_arch is not None:
        u = dataclasses.replace(u, arch=mac_arch)
    a = unit_op_arguments(u)
    return dict(_cached(a["unit"], a["x_bits"], a["w_bits"], a["acc_bits"], a["x_signed"], a["w_signed"],
                        a["fan_in"], model, a["arch"], a["additions"]))


def equivalent_additions(mac_bits: int, x_bits: int, acc_bits: int = 32, mac_signed: bool = True,
                         add_signed: bool = False, fan_in: int = 256, mac_toggles: float | None = None,
                         model: str = DEFAULT_MODEL) -> float:
    """Power equivalence (PANN Sec. 4): the number R of b_x-bit additions per input element that toggle as
    much as one b x b MAC, R = P_MAC(b, b, B) / P_add(b_x, B, R) under toggle `model`, the activations unsigned
    and their additions `add_signed` (one signed accumulator) or split (toggles per MAC over
    toggles per addition; derived, not quoted). Solved self-consistently (the addition's amortised input
    cost depends on R) by fixed-point iteration. `mac_toggles` (toggles per MAC) skips computing P_MAC."""
    p_mac = mac_toggles if mac_toggles is not None else \
        unit_toggles("mac", mac_bits, mac_bits, acc_bits, mac_signed, mac_signed, fan_in, model)["total"]
    arch = "signed" if add_signed else "split"
    r = 1.0
    for _ in range(8):
        p_add = unit_toggles("add", x_bits, 8, acc_bits, False, True, fan_in, model, arch=arch,
                             additions=round(r, 6))["total"]
        r_new = p_mac / p_add
        if abs(r_new - r) < 1e-3 * r:
            return r_new
        r = r_new
    return r
