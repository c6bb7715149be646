"""`PannQuantizer`: PANN's weights as counts of additions under an additions budget R.

PANN (Spingarn-Eliezer, Banner, Ben-Yaakov, Hoffer, Michaeli, "Power Awareness in Low Precision Neural
Networks", arXiv 2202.02783, ECCV-W 2022, Sec. 4-5) removes the multiplier: with integer weights
w_int and b_x-bit unsigned activations x_int, a product is |w_int| additions of x_int into the
accumulator,

    y = s_w s_x sum_i w_int,i x_int,i = s_w s_x sum_i sign(w_int,i) (x_int,i + ... + x_int,i)   (|w_int,i| terms)

so the power of a dot product of length K is set by the number of additions sum_i |w_int,i| = R K, not
by a weight bit width: R (mean additions per input element, real-valued) is the knob that trades power
for precision, and it can be changed at deployment by re-quantizing the stored float weights.

Quantization (per tensor, or per output channel along `channel_axis`):

    w_int = clip(round(w / s), -Q, Q),   Q = 2^(w_bits - 1) - 1,   w_hat = w_int s,

with the step s chosen so that the budget holds exactly on the tensor at hand (`scale_rule`):
  * "exact" (default; our choice, the paper states the budget as the mean number of additions):
    s solves mean_i |w_int,i|(s) = R. The left side is a non-increasing step function of s, so s is
    found by bisection on log s (`_BISECT_STEPS` halvings between max|w| / Q and 2 max|w|, per
    channel), returning the end point whose mean is closer to R -- within one weight's worth (1/N) of
    R when no ties exist.
  * "mean": s = mean|w| / R, the fine-step approximation E|round(w/s)| ~ E|w|/s (no solve; the
    realised mean deviates from R when R is small).
`w_bits` only bounds the stored count (sign + magnitude), it is not a precision setting: with the
default 8 bits the clip at 127 additions is inactive for any R of practical interest.

Signed weights (`accumulation`, which the power model in `pannjax.pann.power` reads):
  * "split" (default, the paper's unsigned arithmetic, Sec. 3-4): positive and negative contributions
    are summed in two unsigned accumulators, each fed unsigned activations, and subtracted once per
    output -- no sign-extension toggles in the wide accumulator. A signed activation (the input image
    of a network converted with `first_last=same`) runs in sign-magnitude: |x| goes into the accumulator
    that sign(x) sign(w) selects, so the addends stay unsigned (our extension of the paper's unsigned
    arithmetic to signed inputs; the sums are unchanged);
  * "signed": one two's complement accumulator adds +x or -x (sign-extended), the alternative whose
    power the paper shows to be higher.
Both give the same numbers (`repeated_addition_dot` computes either exactly on integers).

Gradients: the step s is a statistic of the weights (no gradient); `round` is straight-through
(`round_ste`), so QAT updates the float weights as with any STE quantizer.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pannjax.errors import ConfigError
from pannjax.numerics import NumberFormat
from pannjax.quant.base import IntegerView, Quantizer
from pannjax.quant.scale import EPS, reduce_axes
from pannjax.quant.ste import fake_quant, round_ste

ACCUMULATIONS = ("split", "signed")
SCALE_RULES = ("exact", "mean")
_BISECT_STEPS = 48  # halvings of a log-step interval of width log(2 Q): far below float32 resolution


@struct.dataclass
class PannQuantizer(Quantizer):
    """Weights -> signed integer addition counts with mean |w_int| = `additions` (R)."""

    additions: float = struct.field(pytree_node=False, default=4.0)
    accumulation: str = struct.field(pytree_node=False, default="split")
    scale_rule: str = struct.field(pytree_node=False, default="exact")
    per_channel: bool = struct.field(pytree_node=False, default=False)
    channel_axis: int = struct.field(pytree_node=False, default=-1)
    w_bits: int = struct.field(pytree_node=False, default=8)

    def __post_init__(self):
        if isinstance(self.additions, bool) or not isinstance(self.additions, (int, float)) or not self.additions > 0:
            raise ConfigError(f"additions={self.additions!r}: the additions budget R must be a number > 0")
        if self.accumulation not in ACCUMULATIONS:
            raise ConfigError(f"accumulation={self.accumulation!r}: expected one of {ACCUMULATIONS}")
        if self.scale_rule not in SCALE_RULES:
            raise ConfigError(f"scale_rule={self.scale_rule!r}: expected one of {SCALE_RULES}")
        if isinstance(self.w_bits, bool) or not isinstance(self.w_bits, int) or not 2 <= self.w_bits <= 16:
            raise ConfigError(f"w_bits={self.w_bits!r}: the stored addition count needs an integer in 2..16 bits")
        if self.additions >= self.q_max:
            raise ConfigError(f"additions={self.additions}: must be below the largest count {self.q_max} that "
                              f"w_bits={self.w_bits} can hold; raise w_bits")

    @property
    def q_max(self) -> int:
        return 2 ** (self.w_bits - 1) - 1

    @property
    def format(self) -> NumberFormat:
        """Stored weight format: sign and addition count (the count bounds the additions per weight); the
        "count" kind tells every operator and pricer that a weight is realised as |w_int| additions. Its
        `signed` flag is the accumulation: True for one two's complement accumulator adding +-x ("signed"),
        False for two unsigned accumulators ("split")."""
        return NumberFormat("count", self.w_bits, self.accumulation == "signed")

    # -- step --------------------------------------------------------------------------------
    def step_for(self, w: jax.Array) -> jax.Array:
        """The step s (broadcastable to w; no gradient) with mean |w_int| = R per tensor or channel."""
        axes = reduce_axes(w, self.per_channel, self.channel_axis)
        mag = jax.lax.stop_gradient(jnp.abs(w))
        if self.scale_rule == "mean":
            return jnp.maximum(jnp.mean(mag, axis=axes, keepdims=True) / self.additions, EPS)
        return _exact_step(mag, jnp.asarray(self.additions, mag.dtype), self.q_max, axes)

    # -- quantization ------------------------------------------------------------------------
    def _codes(self, w: jax.Array, s: jax.Array) -> jax.Array:
        return round_ste(jnp.clip(w / s, -self.q_max, self.q_max))

    def quantize(self, w: jax.Array) -> jax.Array:
        return fake_quant(w, self.step_for(w), -self.q_max, self.q_max)

    def integer(self, w: jax.Array) -> IntegerView:
        s = self.step_for(w)
        return IntegerView(self._codes(w, s).astype(jnp.int32), s, self.format)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _exact_step(mag: jax.Array, additions: jax.Array, q_max: int, axes: tuple[int, ...]) -> jax.Array:
    """Bisection on log s for mean clip(round(|w| / s), 0, Q) = R (R traced: one compilation serves every
    budget of a sweep). The mean is a step function of s and the bisection ends at one of its jumps, where
    one weight sits on a rounding boundary |w| / s = n + 1/2; returned is the geometric middle of the
    interval of steps on which every count n_w equals its count at the end point whose mean is closer to R,
    [max |w| / (n_w + 1/2), min |w| / (n_w - 1/2)], so that no weight is within float rounding of a
    boundary and codes computed as |w| / s or |w| * (1/s), eagerly or fused into a compiled forward, agree."""
    top = jnp.maximum(jnp.max(mag, axis=axes, keepdims=True), EPS)
    lo, hi = jnp.log(top / q_max), jnp.log(2.0 * top)  # mean(lo) = Q > R > 0 = mean(hi)

    def mean_counts(log_s):
        return jnp.mean(jnp.clip(jnp.round(mag / jnp.exp(log_s)), 0, q_max), axis=axes, keepdims=True)

    def halve(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = mean_counts(mid) > additions  # too many additions: the step must grow
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, hi = jax.lax.fori_loop(0, _BISECT_STEPS, halve, (lo, hi))
    pick_hi = jnp.abs(mean_counts(hi) - additions) <= jnp.abs(mean_counts(lo) - additions)
    s = jnp.exp(jnp.where(pick_hi, hi, lo))
    n = jnp.clip(jnp.round(mag / s), 0, q_max)
    lower = jnp.max(jnp.where(n < q_max, mag / (n + 0.5), 0.0), axis=axes, keepdims=True)  # below: a count grows
    upper = jnp.min(jnp.where(n > 0, mag / (n - 0.5), jnp.inf), axis=axes, keepdims=True)  # above: one shrinks
    inside = (lower > 0) & (upper < jnp.inf) & (lower < upper)
    return jnp.where(inside, jnp.sqrt(lower * upper), s)


def repeated_addition_dot(x_int, w_int, accumulation: str = "split") -> tuple[np.ndarray, int]:
    """y = x_int @ w_int computed with additions only, as PANN's hardware does (reference; numpy ints).

    x_int: (N, K) integer activations; w_int: (K, M) integer addition counts. For every input element i
    the activation x_i is added |w_im| times into output m's accumulator: "split" adds |x_i| into the
    positive or the negative one as sign(x_i) sign(w_im) says (subtracted once at the end; both only ever
    receive non-negative addends), "signed" adds +-x_i into one signed accumulator. Returns (y of shape
    (N, M), number of additions performed = N * sum |w_int|)."""
    if accumulation not in ACCUMULATIONS:
        raise ConfigError(f"accumulation={accumulation!r}: expected one of {ACCUMULATIONS}")
    x = np.asarray(x_int, np.int64)
    w = np.asarray(w_int, np.int64)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ConfigError(f"repeated_addition_dot: shapes {x.shape} and {w.shape} do not contract")
    n, m = x.shape[0], w.shape[1]
    pos, neg = np.zeros((n, m), np.int64), np.zeros((n, m), np.int64)
    additions = 0
    for i in range(w.shape[0]):
        xi = x[:, i:i + 1]
        for k in range(int(np.abs(w[i]).max(initial=0))):
            live = np.abs(w[i]) > k  # outputs whose count for input i exceeds k: one more addition
            if accumulation == "split":
                positive = (np.sign(w[i]) * np.sign(xi)) > 0  # (N, M): the term's sign picks the accumulator
                pos = pos + np.where(live & positive, np.abs(xi), 0)
                neg = neg + np.where(live & ~positive, np.abs(xi), 0)
            else:
                pos = pos + np.where(live & (w[i] > 0), xi, 0) + np.where(live & (w[i] < 0), -xi, 0)
            additions += n * int(live.sum())
    return (pos - neg if accumulation == "split" else pos), additions


__all__ = ["ACCUMULATIONS", "PannQuantizer", "SCALE_RULES", "repeated_addition_dot"]
