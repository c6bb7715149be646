"""Power-budget solver: the (b_x, R) that PANN runs at for a given power budget.

Budget (PANN Sec. 5, "the power budget of a b-bit quantized network"): the toggles of the same network
built from b x b MACs -- both operands unsigned (`signed=False`, the paper's unsigned arithmetic) or
both two's complement -- i.e. sum_l MACs_l P_MAC(b, fan_in_l) per example; or an absolute figure in
toggles per MAC. PANN at (b_x, R) costs sum_l MACs_l P_PANN(b_x, R, fan_in_l) (`pannjax.pann.power`),
so for each activation width b_x the additions budget R(b_x) is the root of
P_PANN(b_x, R) = budget (found by the fixed-point iteration R <- R * budget / P_PANN(b_x, R), which
converges because P_PANN is nearly proportional to R). Both sides are priced by one toggle model
(`model`: "gates", the calibrated gate-level model, by default; or "registers"), `pannjax.hw.unit_toggles`.

Which b_x? The criterion (our reconstruction of the paper's MSE argument; the paper's exact equations
were not available here) minimises the relative quantization noise at a layer's output,

    eps(b_x, R) = eps_w(R) + eps_x(b_x),

for y = sum_i w_i x_i with independent errors: eps_w(R) = E[(w - w_hat)^2] / E[w^2] for Gaussian
weights quantized with the PANN step that gives mean |w_int| = R (exactly, `PannQuantizer` "exact"),
and eps_x(b) = min_alpha E[(x - x_hat)^2] / E[x^2] for ReLU'd Gaussian activations on a b-bit unsigned
grid clipped at the MSE-optimal alpha (ACIQ-style, Banner et al. 2019). Large b_x leaves few
additions (coarse weights); small b_x, many additions but coarse activations: the solver picks the
b_x with the smallest eps. Both models are integrals on a fine grid (no sampling), so the result is
deterministic.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterable, Sequence

import numpy as np
from scipy.stats import norm

from pannjax.errors import ConfigError
from pannjax.pann.power import DEFAULT_MODEL, budget_mac_toggles, pann_toggles

_GRID = np.linspace(0.0, 9.0, 36001)  # |w| (Gaussian) and x (ReLU-Gaussian) integration grid, step 2.5e-4
_PDF = 2.0 * norm.pdf(_GRID)  # density of |z| on the grid (the ReLU half carries weight 1/2 of this)
_DX = _GRID[1] - _GRID[0]


def _integrate(values: np.ndarray) -> float:
    return float(np.sum(values * _PDF) * _DX)


@functools.lru_cache(maxsize=1024)
def weight_error(additions: float) -> float:
    """eps_w(R): relative MSE of N(0, 1) weights quantized to counts with E|w_int| = R (step by bisection)."""
    if additions <= 0:
        raise ConfigError(f"additions={additions}: expected > 0")
    lo, hi = np.log(1e-4), np.log(20.0)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        mean = _integrate(np.round(_GRID / np.exp(mid)))
        lo, hi = (mid, hi) if mean > additions else (lo, mid)
    s = np.exp(0.5 * (lo + hi))
    return _integrate((_GRID - s * np.round(_GRID / s)) ** 2)  # E[w^2] = 1


@functools.lru_cache(maxsize=64)
def activation_error(bits: int) -> float:
    """eps_x(b): relative MSE of ReLU(N(0, 1)) on a b-bit unsigned grid with MSE-optimal clipping."""
    levels = 2 ** bits - 1
    best = np.inf
    for alpha in np.linspace(0.2, 8.0, 400):
        step = alpha / levels
        err = 0.5 * _integrate((_GRID - step * np.clip(np.round(_GRID / step), 0, levels)) ** 2)
        best = min(best, err)
    return best / 0.5  # E[ReLU(z)^2] = 1/2


@functools.lru_cache(maxsize=64)
def uniform_weight_error(bits: int) -> float:
    """Relative MSE of N(0, 1) weights on a symmetric b-bit grid (levels -(2^(b-1)-1)..2^(b-1)-1 ... the
    signed b-bit code without its extra negative level) with MSE-optimal clipping: the uniform reference."""
    levels = max(1, 2 ** (bits - 1) - 1)
    best = np.inf
    for alpha in np.linspace(0.1, 6.0, 400):
        step = alpha / levels
        best = min(best, _integrate((_GRID - step * np.clip(np.round(_GRID / step), 0, levels)) ** 2))
    return best


@dataclasses.dataclass(frozen=True)
class Layer:
    """What the power of one layer depends on: its MACs per example, its reduction length and whether its
    input can be negative (a network's input image)."""

    macs: int
    fan_in: int
    x_signed: bool = False


REFERENCE_LAYERS = (Layer(1, 256),)


@dataclasses.dataclass(frozen=True)
class PannChoice:
    """The solver's answer: activation bits, additions per element, the budget (toggles per MAC averaged
    over the layers), the PANN power at that point, and the predicted relative error of each candidate."""

    x_bits: int
    additions: float
    budget_toggles_per_mac: float
    pann_toggles_per_mac: float
    error: float
    candidates: tuple[dict, ...]


def budget_per_mac(bits: int | None = None, signed: bool = False, toggles_per_mac: float | None = None,
                   layers: Sequence[Layer] = REFERENCE_LAYERS, acc_bits: int = 32, model: str = DEFAULT_MODEL) -> float:
    """The budget in toggles per MAC (MAC-weighted over `layers`): of a b-bit MAC network, or as given."""
    if (bits is None) == (toggles_per_mac is None):
        raise ConfigError("give the power budget either as budget_bits (b-bit MAC network) or as budget_toggles")
    if toggles_per_mac is not None:
        if not toggles_per_mac > 0:
            raise ConfigError(f"budget_toggles={toggles_per_mac}: expected toggles per MAC > 0")
        return float(toggles_per_mac)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ConfigError(f"budget_bits={bits!r}: expected an integer bit width in 1..16")
    total = sum(l.macs for l in layers)
    return sum(l.macs * budget_mac_toggles(bits, signed, l.fan_in, acc_bits, model) for l in layers) / total


def network_pann_toggles(x_bits: int, additions: float, layers: Sequence[Layer], acc_bits: int = 32,
                         accumulation: str = "split", model: str = DEFAULT_MODEL) -> float:
    """PANN toggles per MAC, MAC-weighted over `layers`, each at its own input signedness."""
    total = sum(l.macs for l in layers)
    r = round(float(additions), 6)
    return sum(l.macs * pann_toggles(x_bits, r, l.fan_in, acc_bits, accumulation, l.x_signed, model)
               for l in layers) / total


def additions_for_budget(budget: float, x_bits: int, layers: Sequence[Layer] = REFERENCE_LAYERS,
                         acc_bits: int = 32, accumulation: str = "split", model: str = DEFAULT_MODEL) -> float:
    """R with PANN toggles per MAC (over `layers`) = `budget`, by R <- R budget / P_PANN(R)."""
    r = 1.0
    for _ in range(40):
        p = network_pann_toggles(x_bits, r, layers, acc_bits, accumulation, model)
        r_new = r * budget / p
        if abs(r_new - r) <= 1e-5 * r:
            return r_new
        r = r_new
    return r


def solve_budget(bits: int | None = None, signed: bool = False, toggles_per_mac: float | None = None,
                 layers: Sequence[Layer] = REFERENCE_LAYERS, x_bits: int | None = None,
                 additions: float | None = None, x_bits_range: Iterable[int] = range(2, 9), acc_bits: int = 32,
                 accumulation: str = "split", model: str = DEFAULT_MODEL) -> PannChoice:
    """(b_x, R) for the budget, minimising eps_w(R) + eps_x(b_x) over `x_bits_range` (module docstring).

    `x_bits` fixes b_x (then R follows from the budget); `additions` fixes R (then b_x is the widest
    activation that fits the budget, or `x_bits` if given too)."""
    budget = budget_per_mac(bits, signed, toggles_per_mac, layers, acc_bits, model)
    widths = [x_bits] if x_bits is not None else list(x_bits_range)
    if not widths or any(isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 16 for b in widths):
        raise ConfigError(f"x_bits={widths}: activation widths must be integers in 1..16")
    cands = []
    for b in widths:
        if additions is None:
            r = additions_for_budget(budget, b, layers, acc_bits, accumulation, model)
        else:
            r = float(additions)
        p = network_pann_toggles(b, r, layers, acc_bits, accumulation, model)
        cands.append({"x_bits": b, "additions": r, "toggles_per_mac": p, "weight_error": weight_error(round(r, 6)),
                      "activation_error": activation_error(b),
                      "error": weight_error(round(r, 6)) + activation_error(b), "fits": p <= budget * 1.0001})
    if additions is not None and x_bits is None:
        fitting = [c for c in cands if c["fits"]] or cands[:1]
        best = max(fitting, key=lambda c: c["x_bits"])
    else:
        best = min(cands, key=lambda c: c["error"])
    return PannChoice(best["x_bits"], best["additions"], budget, best["toggles_per_mac"], best["error"], tuple(cands))


def budget_table(bits: Iterable[int] = range(2, 9), signed: bool = False, fan_in: int = 256, acc_bits: int = 32,
                 accumulation: str = "split", model: str = DEFAULT_MODEL) -> list[dict]:
    """One row per MAC width b: the budget (toggles per MAC), the solver's (b_x, R), its predicted error
    and that of the uniform b-bit network (b-bit weights and activations) for comparison."""
    rows = []
    for b in bits:
        c = solve_budget(b, signed, layers=(Layer(1, fan_in),), acc_bits=acc_bits, accumulation=accumulation,
                         model=model)
        rows.append({"budget_bits": b, "budget_signed": signed, "budget_toggles_per_mac": c.budget_toggles_per_mac,
                     "x_bits": c.x_bits, "additions": c.additions, "pann_error": c.error,
                     "uniform_error": uniform_weight_error(b) + activation_error(b)})
    return rows


def format_budget_table(rows: list[dict]) -> str:
    """Markdown table of `budget_table` rows."""
    lines = ["| MAC bits b | budget (toggles/MAC) | b_x | R | predicted rel. MSE, PANN | uniform b-bit |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['budget_bits']} | {r['budget_toggles_per_mac']:.2f} | {r['x_bits']} | {r['additions']:.2f} "
                     f"| {r['pann_error']:.4f} | {r['uniform_error']:.4f} |")
    return "\n".join(lines)
