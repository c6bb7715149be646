"""How wide an accumulator a layer needs: the worst case its integer weights allow, and what a batch uses.

A linear layer (MAC, shift, binary weights, PANN additions: `Operator.linear_contraction` or PANN counts)
accumulates a_k = sum_i w_ki x_i over the integer codes of output k. With P_k = sum of its positive weights
and N_k = sum of the magnitudes of its negative ones, and inputs in [x_lo, x_hi] (b-bit unsigned: [0, 2^b - 1];
signed: [-2^(b-1), 2^(b-1) - 1]), the exact range of a_k is

    max a_k = P_k x_hi - N_k x_lo,        min a_k = P_k x_lo - N_k x_hi,

each reached by the input that takes x_hi where w > 0 and x_lo where w < 0 (or the reverse), so the
worst-case width -- the narrowest two's complement accumulator that can never overflow -- is the smallest
B with -2^(B-1) <= min_k min a_k and max_k max a_k <= 2^(B-1) - 1. It is at most the L1-norm bound
||w_k||_1 max|x| of accumulator-aware quantization (Colbert et al., "A2Q: Accumulator-Aware Quantization with
Guaranteed Overflow Avoidance", ICCV 2023), which it equals for signed inputs up to one code.

The observed width of a batch is the B of the largest and smallest accumulation it actually produces,
computed on the integer codes in float32 (exact while |a| < 2^24; above, its relative error of ~1e-7 can move
the width only where the extreme sits within that of a power of two).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pannjax.numerics import NumberFormat


@dataclasses.dataclass(frozen=True)
class AccumulatorWidth:
    """A layer's accumulator widths in bits: `worst` (what its weights allow), `observed` (what a batch used;
    None without one)."""

    worst: int
    observed: int | None = None


def width_for(low: float, high: float) -> int:
    """The narrowest two's complement width (>= 2) holding every integer in [low, high]."""
    bits = 2
    while -(2 ** (bits - 1)) > low or high > 2 ** (bits - 1) - 1:
        bits += 1
    return bits


def worst_case_range(codes: np.ndarray, x_format: NumberFormat) -> tuple[float, float]:
    """(min, max) over output channels (the last axis of `codes`, HWIO or IO) of the exact accumulator range."""
    w = np.asarray(codes, np.float64).reshape(-1, np.shape(codes)[-1])
    pos, neg = np.clip(w, 0, None).sum(axis=0), np.clip(-w, 0, None).sum(axis=0)
    lo, hi = x_format.code_range
    return float(np.min(pos * lo - neg * hi)), float(np.max(pos * hi - neg * lo))


def worst_case_bits(codes: np.ndarray, x_format: NumberFormat) -> int:
    """The worst-case accumulator width of weights `codes` on inputs of `x_format` (module docstring)."""
    return width_for(*worst_case_range(codes, x_format))


def observed_bits(accumulations: np.ndarray) -> int:
    """The width of the accumulations a batch produced."""
    a = np.asarray(accumulations)
    return width_for(float(np.min(a)), float(np.max(a)))
