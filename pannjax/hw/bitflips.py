"""Analytic bit-flip (toggle) models of DNN arithmetic: multiplier, adder, accumulator, MAC, and PANN's
repeated-addition unit.

Source and status. The structure follows PANN (Spingarn-Eliezer, Banner, Ben-Yaakov, Hoffer, Michaeli,
"Power Awareness in Low Precision Neural Networks", arXiv 2202.02783, ECCV-W 2022), Sec. 3 ("power
consumption of DNN arithmetic"): dynamic power is counted in bit flips of a unit's signals; a MAC is a
b_x x b_w multiplier feeding a B-bit accumulator; the accumulator's sign-extension bits toggle heavily
when products are signed (two's complement); a multiplier's power is set mostly by its larger input
width; PANN replaces multiplications by repeated additions of the activation. The full text of the paper
was NOT reachable from this environment, so the section numbers cited here (Sec. 3 power model, Sec. 4
PANN's additions) are unverified, and every formula below is DERIVED, NOT QUOTED: it is the
exact expectation of the toggles that `pannjax.hw.toggle_sim` counts, under the stated assumption, and
the tests check it against the simulator (within 5 % on uniform operands, every b_x, b_w in 2..8 and
B in {16, 24, 32}).

Assumption (all models): successive operands are independent draws from their code distributions
(`OperandStats`: uniform codes, or a histogram measured on real codes). Registers start at zero.

Notation: p_i = P(bit i of x = 1), q_j = P(bit j of w = 1) (two's complement bit patterns); a register
bit that is 1 with probability r toggles with probability 2 r (1 - r) between independent draws.

Components of one MAC operation (toggles per operation):
  inputs       sum_i 2 p_i (1 - p_i) + sum_j 2 q_j (1 - q_j)               (uniform bits: (b_x + b_w)/2)
  multiplier   partial-product array, pp_ij = x_i AND w_j:
               sum_ij 2 p_i q_j (1 - p_i q_j)                               (uniform bits: 3/8 b_x b_w)
  product      the (b_x + b_w)-bit product register: sum_k 2 r_k (1 - r_k), r_k = P(bit k of x w = 1)
  acc_input    sign extension of the product to B bits: (B - b_x - b_w) 2 r_s (1 - r_s), r_s = P(x w < 0)
               (zero for unsigned products) -- the paper's "signed arithmetic" factor
  accumulator  the B-bit register of the running sum S_t = S_{t-1} + x_t w_t, see `bitflips_accumulator`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.special import ndtr

from pannjax.errors import ConfigError

_EXACT_SUPPORT_LIMIT = 1 << 14  # running-sum pmf support kept exact up to this many points
_EXACT_MIN_STEPS = 32  # ... and for at least this many steps unless the sum is already wide (CLT)
_GAUSS_EVAL_POINTS = 48  # steps at which the Gaussian-phase expectation is evaluated (then interpolated)


# ---------------------------------------------------------------------------------------------------
# Operand statistics
# ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class OperandStats:
    """Distribution of one operand stream's integer codes: `probs[i]` is P(code == lo + i).

    Build with `OperandStats.uniform(bits, signed)` (every code equally likely, i.e. uniform i.i.d. bits)
    or `OperandStats.from_codes(codes, bits, signed)` (histogram of measured codes)."""

    bits: int
    signed: bool
    probs: np.ndarray

    def __post_init__(self):
        if not 1 <= self.bits <= 16:
            raise ConfigError(f"operand bits={self.bits}: the bit-flip model supports 1..16")
        if self.probs.shape != (1 << self.bits,):
            raise ConfigError(f"OperandStats.probs must have 2**bits={1 << self.bits} entries, got {self.probs.shape}")

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def values(self) -> np.ndarray:
        return np.arange(self.lo, self.lo + (1 << self.bits), dtype=np.int64)

    @classmethod
    def uniform(cls, bits: int, signed: bool) -> "OperandStats":
        _check_bits("bits", bits)
        return cls(bits, signed, np.full(1 << bits, 1.0 / (1 << bits)))

    @classmethod
    def from_codes(cls, codes, bits: int, signed: bool) -> "OperandStats":
        _check_bits("bits", bits)
        codes = np.asarray(codes).astype(np.int64).ravel()
        lo = -(1 << (bits - 1)) if signed else 0
        if codes.size == 0:
            raise ConfigError("OperandStats.from_codes: no codes given")
        if codes.min() < lo or codes.max() >= lo + (1 << bits):
            raise ConfigError(f"codes span [{codes.min()}, {codes.max()}], outside the "
                              f"{'signed' if signed else 'unsigned'} {bits}-bit range")
        counts = np.bincount(codes - lo, minlength=1 << bits).astype(np.float64)
        return cls(bits, signed, counts / counts.sum())

    @classmethod
    def gaussian(cls, bits: int, signed: bool, rectified: bool = False) -> "OperandStats":
        """Codes of a quantised Gaussian ("DNN-like" operands): N(0, 1) weights (`rectified=False`) or ReLU'd
        N(0, 1) activations, max(0, z) (`rectified=True`), on the uniform `bits`-bit grid whose clipping
        range minimises the mean squared quantisation error (the MSE-optimal clipping of Banner et al.,
        "Post training 4-bit quantization of convolutional networks", NeurIPS 2019, found here by a grid
        search over the clip). Signed grids are symmetric (codes -(2^(b-1)-1) .. 2^(b-1)-1 used); unsigned
        ones span 0 .. 2^b - 1. The code pmf is the Gaussian mass of each rounding bin (exact, `ndtr`)."""
        _check_bits("bits", bits)
        if signed and bits == 1:  # one sign bit: codes -1 (negative) and 0, equally likely
            return cls(1, True, np.array([0.5, 0.5]))
        lo = -(1 << (bits - 1)) if signed else 0
        q_max = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        q_min = -q_max if signed else 0
        codes = np.arange(q_min, q_max + 1)

        def pmf(step: float) -> np.ndarray:
            edges = np.concatenate([[-np.inf], (codes[:-1] + 0.5) * step, [np.inf]])
            cdf = ndtr(edges)  # P(v <= t); for v = max(0, z) it is 0 below 0 (the ReLU's mass sits at 0)
            if rectified:
                cdf = np.where(edges >= 0, cdf, 0.0)
            mass = np.diff(cdf)
            return mass / mass.sum()

        def mse(step: float) -> float:
            z = np.linspace(-6.0, 6.0, 4001)
            v = np.maximum(z, 0.0) if rectified else z
            q = np.clip(np.rint(v / step), q_min, q_max) * step
            dens = np.exp(-0.5 * z * z)
            return float(np.sum((v - q) ** 2 * dens) / dens.sum())

        clips = np.linspace(0.5, 6.0, 221)
        best = min(clips, key=lambda c: mse(c / q_max))
        probs = np.zeros(1 << bits)
        probs[codes - lo] = pmf(best / q_max)
        return cls(bits, signed, probs)

    def widened(self, bits: int) -> "OperandStats":
        """The same codes held in a wider `bits`-bit register (sign-extended if signed, else zero-extended):
        what a fixed-width unit sees when fed narrower operands."""
        _check_bits("bits", bits)
        if bits < self.bits:
            raise ConfigError(f"cannot widen {self.bits}-bit operand statistics to {bits} bits")
        lo = -(1 << (bits - 1)) if self.signed else 0
        probs = np.zeros(1 << bits)
        probs[self.values - lo] = self.probs
        return OperandStats(bits, self.signed, probs)

    def bit_one_probabilities(self) -> np.ndarray:
        """P(bit i == 1) of the two's complement (or unsigned) pattern, i = 0 .. bits-1."""
        pattern = self.values & ((1 << self.bits) - 1)
        return np.array([self.probs[((pattern >> i) & 1) == 1].sum() for i in range(self.bits)])


def _check_bits(name: str, bits: int, lo: int = 1, hi: int = 16) -> None:
    if not isinstance(bits, (int, np.integer)) or not lo <= bits <= hi:
        raise ConfigError(f"{name}={bits}: expected an integer in {lo}..{hi}")


def _stats(bits: int, signed: bool, stats: OperandStats | None, name: str) -> OperandStats:
    _check_bits(name, bits)
    if stats is None:
        return OperandStats.uniform(bits, signed)
    if stats.bits != bits:
        raise ConfigError(f"{name}={bits} but the given operand statistics are for {stats.bits} bits")
    return stats


def _register_flips(one_probs: np.ndarray) -> float:
    """sum_k 2 r_k (1 - r_k): toggles of a register whose bit k is 1 w.p. r_k, independent draws."""
    return float(np.sum(2.0 * one_probs * (1.0 - one_probs)))


def _pmf_bit_probs(values: np.ndarray, probs: np.ndarray, bits: int) -> np.ndarray:
    pattern = values & ((1 << bits) - 1)
    return np.array([probs[((pattern >> k) & 1) == 1].sum() for k in range(bits)])


def product_distribution(x: OperandStats, w: OperandStats) -> tuple[np.ndarray, np.ndarray]:
    """(values, probs) of the product x*w for independent x, w (exact enumeration, <= 2^32 pairs is
    never needed: at most 2^(b_x + b_w) <= 2^32 cells, in practice <= 2^16)."""
    vals = np.multiply.outer(x.values, w.values).ravel()
    pr = np.multiply.outer(x.probs, w.probs).ravel()
    keep = pr > 0
    uniq, inv = np.unique(vals[keep], return_inverse=True)
    return uniq, np.bincount(inv, weights=pr[keep])


# ---------------------------------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------------------------------

def bitflips_register(stats: OperandStats) -> float:
    """Toggles per new value of a register fed independent draws of `stats` (toggles).

    Formula (derived): sum_i 2 p_i (1 - p_i); uniform codes give bits/2."""
    return _register_flips(stats.bit_one_probabilities())


def bitflips_partial_products(x: OperandStats, w: OperandStats) -> float:
    """Toggles per multiplication of the b_x x b_w partial-product array of an array (Baugh-Wooley)
    multiplier, pp_ij = x_i AND w_j (toggles).

    Formula (derived, not quoted): sum_ij 2 p_i q_j (1 - p_i q_j); uniform bits give (3/8) b_x b_w.
    PANN Sec. 3 reports that a multiplier's power follows its larger input width: in a fixed-width unit
    fed sign-extended narrow operands (`OperandStats.widened`) every extension bit copies the sign, so
    this sum stays at its full-width value -- quantizing only the weights then saves nothing."""
    pq = np.multiply.outer(x.bit_one_probabilities(), w.bit_one_probabilities())
    return float(np.sum(2.0 * pq * (1.0 - pq)))


def bitflips_product_register(x: OperandStats, w: OperandStats) -> float:
    """Toggles per multiplication of the (b_x + b_w)-bit product register (toggles).

    Formula (derived): sum_k 2 r_k (1 - r_k), r_k = P(bit k of the two's complement product = 1), with
    the product distribution enumerated exactly from the operand distributions."""
    vals, pr = product_distribution(x, w)
    return _register_flips(_pmf_bit_probs(vals, pr, x.bits + w.bits))


def bitflips_sign_extension(x: OperandStats, w: OperandStats, acc_bits: int) -> float:
    """Toggles per MAC of the B - (b_x + b_w) sign-extension lines that feed a signed product into the
    B-bit adder (toggles); zero when both operands are unsigned.

    Formula (derived; the effect is PANN Sec. 3's finding on signed arithmetic): every extension bit
    copies the product's sign, so all B - b_p of them flip whenever the sign flips:
    (B - b_p) * 2 r_s (1 - r_s), r_s = P(x w < 0). For zero-mean signed products r_s ~ 1/2, i.e.
    ~ (B - b_p)/2 toggles -- 8 extra toggles per MAC for 8-bit operands and B = 32."""
    bp = x.bits + w.bits
    _check_acc(acc_bits, bp)
    if not (x.signed or w.signed):
        return 0.0
    vals, pr = product_distribution(x, w)
    rs = float(pr[vals < 0].sum())
    return (acc_bits - bp) * 2.0 * rs * (1.0 - rs)


def _check_acc(acc_bits: int, addend_bits: int) -> None:
    if not isinstance(acc_bits, (int, np.integer)) or not addend_bits <= acc_bits <= 64:
        raise ConfigError(f"acc_bits={acc_bits}: the accumulator must be at least as wide as its "
                          f"{addend_bits}-bit addends (and at most 64 bits)")


def _low_bit_tables(q_vals: np.ndarray, q_probs: np.ndarray, c: int) -> list[np.ndarray]:
    """g_k(u), k < c: P(bit k of (u + q) != bit k of u), u = S mod 2^(k+1), over the addend q."""
    tables = []
    for k in range(c):
        m = 1 << (k + 1)
        pq = np.bincount(np.mod(q_vals, m), weights=q_probs, minlength=m)
        h = ((np.arange(m) >> k) & 1).astype(np.float64)
        corr = np.fft.irfft(np.fft.rfft(h) * np.conj(np.fft.rfft(pq)), n=m)  # sum_r pq(r) h(u + r)
        tables.append(np.clip(h + corr - 2.0 * h * corr, 0.0, 1.0))
    return tables


def _coarsen(vals: np.ndarray, probs: np.ndarray, bins: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """At most `bins` (mean value, probability) pairs of a pmf, for the Gaussian phase, where the
    crossing probability is smooth in q on the scale of the running sum's std >> the bin width."""
    if vals.size <= bins:
        return vals.astype(np.float64), probs
    edges = np.linspace(vals.min(), vals.max() + 1, bins + 1)
    idx = np.clip(np.searchsorted(edges, vals, side="right") - 1, 0, bins - 1)
    p = np.bincount(idx, weights=probs, minlength=bins)
    m = np.bincount(idx, weights=probs * vals, minlength=bins)
    keep = p > 0
    return m[keep] / p[keep], p[keep]


def _wrapped_gaussian(mu: float, sd: float, m: int) -> np.ndarray:
    """Law of round(N(mu, sd^2)) mod m on 0..m-1: a direct sum over +-9 sd when that is shorter, else
    the Fourier series (1/m) [1 + 2 sum_n exp(-2 pi^2 n^2 sd^2 / m^2) cos(2 pi n (u - mu) / m)]."""
    n_terms = int(math.ceil(1.2 * m / sd)) + 1
    if 18 * sd <= n_terms * m:
        s = np.arange(math.floor(mu - 9 * sd) - 1, math.ceil(mu + 9 * sd) + 2)
        dens = np.exp(-0.5 * ((s - mu) / sd) ** 2)
        return np.bincount(np.mod(s, m), weights=dens / dens.sum(), minlength=m)
    u = np.arange(m)
    n = np.arange(1, n_terms + 1)
    amp = np.exp(-2.0 * (math.pi * n * sd / m) ** 2)
    out = np.ones(m)
    phase0 = 2 * math.pi * (mu % m) / m
    for a, k in zip(amp, n):
        out += 2 * a * np.cos(2 * math.pi * k * u / m - k * phase0)
    out = np.clip(out, 0.0, None)
    return out / out.sum()


def _low_flips(pi_top: np.ndarray, tables: list[np.ndarray], skip: frozenset | set = frozenset()) -> float:
    """sum_k sum_u pi_k(u) g_k(u), with pi_k the law of S mod 2^(k+1), obtained by folding the law
    `pi_top` of S mod 2^c down one bit at a time."""
    total, pi = 0.0, pi_top
    for k in range(len(tables) - 1, -1, -1):
        if k not in skip:
            total += float(np.dot(pi, tables[k]))
        if k:
            pi = pi[: pi.size // 2] + pi[pi.size // 2:]
    return total


def _boundary_weights(m: np.ndarray, high_bits: int) -> np.ndarray:
    """Flips of the high part H = floor(S / 2^c) (high_bits wide) when it steps between m-1 and m."""
    if high_bits <= 0:
        return np.zeros(m.shape)
    x = (((m - 1) ^ m) & ((1 << high_bits) - 1)).astype(np.uint64)
    return np.bitwise_count(x).astype(np.float64)


def bitflips_accumulator(q_vals, q_probs, addend_bits: int, acc_bits: int, fan_in: int) -> dict[str, float]:
    """Mean toggles per addition of a B-bit accumulator register that starts at 0 and adds `fan_in`
    independent addends q ~ (q_vals, q_probs) (two's complement wrap-around mod 2^B), split into
    ``low`` (bits below c = addend_bits) and ``high`` (bits c .. B-1, incl. sign extension) (toggles).

    Model (derived, not quoted; exact under the independence assumption up to the Gaussian phase):
      bit k of S flips at step t  <=>  bit k of (S_{t-1} + q_t) != bit k of S_{t-1}.
      * Low bits k < c: this depends only on u = S_{t-1} mod 2^(k+1) and q mod 2^(k+1), so
        E[flips_k] = sum_u pi_t(u) g_k(u), with pi_t the law of S_{t-1} mod 2^(k+1) and
        g_k(u) = P_q(bit_k(u + q) != bit_k(u)). For S well mixed (pi_t uniform) this is the classic
        "carry into bit k" term: E_q[a odd ? 1 - r/2^k : r/2^k], q mod 2^(k+1) = a 2^k + r.
      * High bits k >= c: |q| < 2^c, so a step crosses at most one multiple b = m 2^c of 2^c; the high
        part H = floor(S / 2^c) then steps between m-1 and m and flips popcount((m-1) XOR m) of its B - c
        bits -- all B - c of them at m = 0, i.e. when a signed running sum changes sign (the
        sign-extension flips PANN Sec. 3 attributes to signed accumulation), ~2 on average otherwise
        (a counter). P(cross b upward) = sum_{d>=1} P(S_{t-1} = b - d) P(q >= d), downward likewise.
    The law of S_{t-1} is computed exactly by convolution while its support has <= 2^14 points (and, after
    32 steps, while its std is below twice the addend range), then by
    a Gaussian with the exact mean (t-1) E[q] and variance (t-1) Var[q] (central limit), evaluated at 48
    steps and interpolated (addends binned into 256 groups there); when all addends differ by multiples
    of some span > 1, the Gaussian is summed over that lattice. Returns the mean over the `fan_in` additions."""
    q_vals = np.asarray(q_vals, np.int64)
    q_probs = np.asarray(q_probs, np.float64)
    c = int(addend_bits)
    _check_acc(acc_bits, c)
    if fan_in < 1:
        raise ConfigError(f"fan_in={fan_in}: expected >= 1")
    if np.abs(q_vals).max(initial=0) >= (1 << c):
        raise ConfigError(f"addends up to {np.abs(q_vals).max()} do not fit in addend_bits={c}")
    high_bits = acc_bits - c
    step = 1 << c
    tables = _low_bit_tables(q_vals, q_probs, c)
    table_means = [float(g.mean()) for g in tables]
    table_ffts = [np.fft.fft(g) for g in tables]
    qmin, qmax = int(q_vals.min()), int(q_vals.max())
    dense = np.zeros(qmax - qmin + 1)
    np.add.at(dense, q_vals - qmin, q_probs)
    # tails: T+(d) = P(q >= d), d = 1..qmax ; T-(e) = P(q <= -e-1), e = 0..-qmin-1
    cdf_dense = np.concatenate([[0.0], np.cumsum(dense)])  # cdf_dense[i + 1] = P(q <= qmin + i)

    def cdf_q(v: np.ndarray) -> np.ndarray:  # P(q <= v)
        return cdf_dense[np.clip(v - qmin + 1, 0, cdf_dense.size - 1)]

    d = np.arange(1, max(qmax, 0) + 1)
    t_plus = 1.0 - cdf_q(d - 1)
    e = np.arange(0, max(-qmin, 0))
    t_minus = cdf_q(-e - 1)
    mean_q = float(np.dot(q_vals, q_probs))
    std_q = math.sqrt(max(float(np.dot(q_vals.astype(np.float64) ** 2, q_probs)) - mean_q ** 2, 0.0))
    span = int(np.gcd.reduce(q_vals - q_vals[0])) or 1  # S_t lies on t q_0 + span Z
    qp_vals, qp_probs = _coarsen(q_vals[q_vals > 0], q_probs[q_vals > 0])
    qn_vals, qn_probs = _coarsen(q_vals[q_vals < 0], q_probs[q_vals < 0])

    def exact_step(f: np.ndarray, lo: int) -> tuple[float, float]:
        n = f.size
        s = lo + np.arange(n)
        low = _low_flips(np.bincount(np.mod(s, tables[-1].size), weights=f, minlength=tables[-1].size), tables)
        if high_bits <= 0:
            return low, 0.0
        m = np.arange(math.floor((lo + qmin) / step), math.floor((lo + n - 1 + qmax) / step) + 2)
        b = m * step
        fp = np.concatenate([f, [0.0]])  # index n -> 0
        up = np.zeros(m.size)
        if t_plus.size:
            idx = b[:, None] - np.arange(1, t_plus.size + 1)[None, :] - lo
            idx = np.where((idx >= 0) & (idx < n), idx, n)
            up = fp[idx] @ t_plus
        down = np.zeros(m.size)
        if t_minus.size:
            idx = b[:, None] + np.arange(t_minus.size)[None, :] - lo
            idx = np.where((idx >= 0) & (idx < n), idx, n)
            down = fp[idx] @ t_minus
        return low, float(np.dot(up + down, _boundary_weights(m, high_bits)))

    def gauss_step(t: int) -> tuple[float, float]:
        mu, sd = (t - 1) * mean_q, math.sqrt(t - 1) * std_q
        if span == 1 and sd > 0:
            # Parseval per bit: sum_u pi(u) g_k(u) = (1/M) sum_n PI(n) conj(G_k(n)), with the wrapped
            # Gaussian's PI(n) = exp(-2 pi^2 n^2 sd^2 / M^2 - 2 pi i n mu / M) (only a few n matter)
            low, direct = 0.0, []
            for k, (g, gm, gf) in enumerate(zip(tables, table_means, table_ffts)):
                m = g.size
                if sd >= m:  # S mod 2^(k+1) is uniform to within exp(-2 pi^2) ~ 3e-9
                    low += gm
                    continue
                n_terms = int(math.ceil(1.2 * m / sd))
                if n_terms >= m // 4:
                    direct.append(k)
                    continue
                low += gm
                if n_terms:
                    n = np.arange(1, n_terms + 1)
                    pi_n = np.exp(-2.0 * (math.pi * n * sd / m) ** 2 - 2j * math.pi * n * (mu % m) / m)
                    low += 2.0 / m * float(np.real(np.sum(pi_n * np.conj(gf[1:n_terms + 1]))))
            if direct:
                skip = set(range(len(tables))) - set(direct)
                low += _low_flips(_wrapped_gaussian(mu, sd, tables[-1].size), tables, skip=skip)
        else:  # S lives on the lattice (t-1) q_0 + span Z: sum the Gaussian over its points
            j = np.arange(math.floor(-9 * sd / span) - 1, math.ceil(9 * sd / span) + 2)
            pts = (t - 1) * int(q_vals[0]) + span * (j + round((mu - (t - 1) * int(q_vals[0])) / span))
            dens = np.exp(-0.5 * ((pts - mu) / max(sd, 1e-12)) ** 2)
            m_top = tables[-1].size
            low = _low_flips(np.bincount(np.mod(pts, m_top), weights=dens / dens.sum(), minlength=m_top), tables)
        if high_bits <= 0 or sd == 0:
            return low, 0.0
        m = np.arange(math.floor((mu - 9 * sd) / step) - 1, math.ceil((mu + 9 * sd) / step) + 2)
        b = (m * step).astype(np.float64)[:, None]
        cdf = lambda v: ndtr((v - mu) / sd)  # noqa: E731  P(S <= v) with continuity correction below
        up = (cdf(b - 0.5) - cdf(b - qp_vals[None, :] - 0.5)) @ qp_probs
        down = (cdf(b - qn_vals[None, :] - 0.5) - cdf(b - 0.5)) @ qn_probs
        return low, float(np.dot(up + down, _boundary_weights(m, high_bits)))

    low_tot = high_tot = 0.0
    f, lo, t = np.array([1.0]), 0, 1
    q_range = qmax - qmin + 1
    while t <= fan_in and f.size <= _EXACT_SUPPORT_LIMIT and not (
            t > _EXACT_MIN_STEPS and math.sqrt(t - 1) * std_q >= 2 * q_range):
        lo_t, hi_t = exact_step(f, lo)
        low_tot, high_tot = low_tot + lo_t, high_tot + hi_t
        t += 1
        if t <= fan_in:
            if f.size * dense.size > 1 << 20:
                from scipy.signal import fftconvolve  # imported here: scipy.signal alone takes ~1 s to import

                f = fftconvolve(f, dense)
            else:
                f = np.convolve(f, dense)
            f = np.clip(f, 0.0, None)
            f /= f.sum()
            lo += qmin
    if t <= fan_in:  # Gaussian phase for steps t .. fan_in
        ts = np.unique(np.round(np.geomspace(t, fan_in, _GAUSS_EVAL_POINTS)).astype(int))
        vals = np.array([gauss_step(int(tt)) for tt in ts])
        every = np.arange(t, fan_in + 1)
        low_tot += float(np.interp(every, ts, vals[:, 0]).sum())
        high_tot += float(np.interp(every, ts, vals[:, 1]).sum())
    return {"low": low_tot / fan_in, "high": high_tot / fan_in}


# ---------------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MacToggles:
    """Expected toggles per operation of one MAC, by component (see module docstring)."""

    inputs: float
    multiplier: float
    product: float
    acc_input: float
    accumulator: float

    @property
    def total(self) -> float:
        return self.inputs + self.multiplier + self.product + self.acc_input + self.accumulator

    @property
    def accumulator_share(self) -> float:
        """Fraction of the MAC's toggles in the accumulator (its input extension and its register)."""
        return (self.acc_input + self.accumulator) / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, float]:
        d = dataclasses.asdict(self)
        d["total"] = self.total
        return d


def bitflips_multiplier(x_bits: int, w_bits: int, signed: bool = True, x_stats: OperandStats | None = None,
                        w_stats: OperandStats | None = None) -> dict[str, float]:
    """Toggles per multiplication of a b_x x b_w multiplier, by component (inputs, partial-product
    array, product register) (toggles). Uniform bits: (b_x+b_w)/2 + (3/8) b_x b_w + ~(b_x+b_w)/2 (derived,
    not quoted; see `bitflips_partial_products` for the paper's larger-width finding)."""
    x = _stats(x_bits, signed, x_stats, "x_bits")
    w = _stats(w_bits, signed, w_stats, "w_bits")
    d = {"inputs": bitflips_register(x) + bitflips_register(w),
         "multiplier": bitflips_partial_products(x, w),
         "product": bitflips_product_register(x, w)}
    d["total"] = sum(d.values())
    return d


def bitflips_adder(bits: int, signed: bool = True, stats: OperandStats | None = None) -> dict[str, float]:
    """Toggles per addition of a b-bit two-input adder fed independent operands, by component: the two
    b-bit input registers and the (b+1)-bit sum register (toggles). Formula (derived): sum of
    2 r (1 - r) over the bits of each register, r from the exact operand/sum distributions."""
    a = _stats(bits, signed, stats, "bits")
    vals = np.add.outer(a.values, a.values).ravel()
    pr = np.multiply.outer(a.probs, a.probs).ravel()
    d = {"inputs": 2 * bitflips_register(a), "sum": _register_flips(_pmf_bit_probs(vals, pr, bits + 1))}
    d["total"] = d["inputs"] + d["sum"]
    return d


def bitflips_mac(x_bits: int, w_bits: int, acc_bits: int = 32, signed: bool = True, fan_in: int = 256,
                 x_stats: OperandStats | None = None, w_stats: OperandStats | None = None) -> MacToggles:
    """Expected toggles per MAC of a b_x x b_w multiplier feeding a B-bit accumulator that sums `fan_in`
    products per output (output-stationary; registers start at 0) (toggles).

    `signed` selects two's complement (True) or unsigned (False) operands; measured `x_stats`/`w_stats`
    override it with their own signedness. Components and formulas: module docstring and
    `bitflips_accumulator` (all derived, not quoted; structure from PANN Sec. 3)."""
    x = _stats(x_bits, signed, x_stats, "x_bits")
    w = _stats(w_bits, signed, w_stats, "w_bits")
    bp = x_bits + w_bits
    _check_acc(acc_bits, bp)
    vals, pr = product_distribution(x, w)
    acc = bitflips_accumulator(vals, pr, bp, acc_bits, fan_in)
    return MacToggles(
        inputs=bitflips_register(x) + bitflips_register(w),
        multiplier=bitflips_partial_products(x, w),
        product=_register_flips(_pmf_bit_probs(vals, pr, bp)),
        acc_input=bitflips_sign_extension(x, w, acc_bits),
        accumulator=acc["low"] + acc["high"],
    )


def bitflips_repeated_addition(x_bits: int, acc_bits: int = 32, additions_per_input: float = 1.0,
                               fan_in: int = 256, signed: bool = False,
                               x_stats: OperandStats | None = None) -> dict[str, float]:
    """Toggles per ADDITION of PANN's repeated-addition unit (PANN Sec. 4: a product x w is replaced by
    |w| additions of the activation x into the accumulator) (toggles).

    Unit: a b_x-bit input register (loaded once per input element, so its toggles are amortised over the
    `additions_per_input` = R additions of that element), and a B-bit accumulator adding x (unsigned,
    zero-extended: ``signed=False``, the paper's recommended unsigned arithmetic, positive and negative
    weights summed into two accumulators) or +-x (``signed=True``: a signed addend of b_x+1 bits,
    sign-extended to B bits, sign equally likely). No multiplier. Per output: R * fan_in additions.
    Formulas (derived, not quoted): inputs = sum_i 2 p_i (1 - p_i) / R; sign extension
    (B - b_x - 1) 2 r (1 - r) / R, r = P(+-x < 0) (the signed addend is held for its element's R additions);
    accumulator as `bitflips_accumulator`."""
    x = _stats(x_bits, signed, x_stats, "x_bits") if x_stats is not None else OperandStats.uniform(x_bits, False)
    if additions_per_input <= 0:
        raise ConfigError(f"additions_per_input={additions_per_input}: expected > 0")
    n_add = max(1, int(round(additions_per_input * fan_in)))
    if signed:
        vals = np.concatenate([x.values, -x.values])
        pr = np.concatenate([x.probs, x.probs]) / 2.0
        uniq, inv = np.unique(vals, return_inverse=True)
        vals, pr, c = uniq, np.bincount(inv, weights=pr), x_bits + 1
        _check_acc(acc_bits, c)
        rs = float(pr[vals < 0].sum())
        ext = (acc_bits - c) * 2.0 * rs * (1.0 - rs) / additions_per_input  # the addend is held R additions
    else:
        vals, pr, c = x.values, x.probs, x_bits
        _check_acc(acc_bits, c)
        ext = 0.0
    acc = bitflips_accumulator(vals, pr, c, acc_bits, n_add)
    d = {"inputs": bitflips_register(x) / additions_per_input, "acc_input": ext,
         "accumulator": acc["low"] + acc["high"]}
    d["total"] = sum(d.values())
    return d
