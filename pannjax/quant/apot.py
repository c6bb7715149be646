"""`ApotQuantizer`: additive powers-of-two weight quantization (Li, Dong & Wang, "Additive Powers-of-Two
Quantization: An Efficient Non-uniform Discretization for Neural Networks", ICLR 2020, Eq. 5).

A b-bit weight is a sign bit plus m = b - 1 magnitude bits split into n = m / k terms of k bits; each
term is a power of two (or zero) and the level is their sum:

    Q(w) = s * sign(w) * gamma * sum_{i=0}^{n-1} p_i,
    p_i in {0, 2^-i, 2^-(i+n), 2^-(i+2n), ..., 2^-(i+(2^k-2)n)}

with gamma = 1 / max(sum p_i) so the largest level is s. k = m gives PoT with a zero code (n = 1),
k = 1 gives uniform levels; k = 2 is the paper's choice. A product with an APoT weight is n shifts and
n - 1 additions, the extension of the PoT shift path (`pannjax.ops.shift`) to several terms.

Rounding is to the nearest level of the set (as the authors' reference code projects). Gradients are
straight-through as in `PotQuantizer` (dQ/dw = 1 inside [-s, s], 0 outside; dQ/ds in LSQ form, scaled by
1/sqrt(N)). The paper's reparameterised clipping and weight normalisation are not applied: the scale
is learned, max-calibrated or fixed exactly as for `PotQuantizer`.

Integer view: every level is an integer multiple of 2^-E, E = (n-1) + (2^k-2) n the smallest term's
exponent, so codes = sign * 2^E * sum p_i (integers with n set bits at most) and
scale = s * gamma * 2^-E; codes * scale == quantize(w) exactly.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pannjax.errors import ConfigError
from pannjax.numerics import NumberFormat
from pannjax.quant.base import IntegerView, Quantizer
from pannjax.quant.scale import FullScale



@jax.custom_vjp
def _scaled_ste(u: jax.Array, s: jax.Array, q_unit: jax.Array, value: jax.Array) -> jax.Array:
    """Returns `value` (= q_unit * s, computed as the integer view computes it, so both agree bit for
    bit); gradients as for Q = s * q_unit(u) with a straight-through q_unit: dQ/du = s, dQ/ds = q_unit."""
    return value


def _scaled_ste_fwd(u, s, q_unit, value):
    return value, (s, q_unit)


def _scaled_ste_bwd(res, g):
    s, q_unit = res
    return g * s, g * q_unit, jnp.zeros_like(g), jnp.zeros_like(g)


_scaled_ste.defvjp(_scaled_ste_fwd, _scaled_ste_bwd)


@struct.dataclass
class ApotQuantizer(FullScale, Quantizer):
    """b-bit additive powers-of-two weight quantizer with k bits per term (see module docstring)."""

    bits: int = struct.field(pytree_node=False, default=5)
    k: int = struct.field(pytree_node=False, default=2)
    per_channel: bool = struct.field(pytree_node=False, default=True)
    channel_axis: int = struct.field(pytree_node=False, default=-1)
    scale_mode: str = struct.field(pytree_node=False, default="learned")
    fixed_scale: float = struct.field(pytree_node=False, default=1.0)
    scale: jax.Array | None = None

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 2 <= self.bits <= 9:
            raise ConfigError(f"bits={self.bits!r}: additive powers-of-two quantization needs an integer in 2..9")
        if not isinstance(self.k, int) or self.k < 1 or (self.bits - 1) % self.k:
            raise ConfigError(f"k={self.k!r}: the {self.bits - 1} magnitude bits must split into terms of k bits "
                              "(k must divide bits - 1)")
        if self.max_exponent > 30:
            raise ConfigError(f"bits={self.bits}, k={self.k}: smallest term 2^-{self.max_exponent} exceeds "
                              "int32 codes; use a smaller k")
        self.check_scale_mode()
        if self.scale_mode == "fixed" and not self.fixed_scale > 0:
            raise ConfigError(f"fixed_scale={self.fixed_scale!r}: must be > 0")

    @property
    def learned_fields(self) -> tuple[str, ...]:
        return ("scale",) if self.scale_mode == "learned" else ()

    # -- levels ------------------------------------------------------------------------------
    @property
    def n_terms(self) -> int:
        return (self.bits - 1) // self.k

    @property
    def max_exponent(self) -> int:
        """E: the smallest term is 2^-E."""
        n = (self.bits - 1) // self.k
        return (n - 1) + (2**self.k - 2) * n

    def _magnitude_codes(self) -> np.ndarray:
        """Sorted distinct 2^E * sum p_i (non-negative integers)."""
        n, e_max = self.n_terms, self.max_exponent
        terms = [[0] + [2 ** (e_max - (i + j * n)) for j in range(2**self.k - 1)] for i in range(n)]
        return np.array(sorted({sum(c) for c in itertools.product(*terms)}), dtype=np.int64)

    @property
    def format(self) -> NumberFormat:
        return NumberFormat("int", self.bits, True)

    @property
    def value_format(self) -> NumberFormat:
        """The integer values +-2^E sum p_i: the largest magnitude's bits plus a sign bit."""
        return NumberFormat("int", int(self._magnitude_codes()[-1]).bit_length() + 1, True)

    def levels(self) -> tuple[float, ...]:
        """All representable values in units of the scale, ascending (largest magnitude 1), as float32
        computes them (code * gamma 2^-E)."""
        mags = (self._magnitude_codes().astype(np.float32) * np.float32(self._code_scale())).tolist()
        return tuple(sorted({-m for m in mags if m} | set(mags)))

    # -- quantization ------------------------------------------------------------------------
    def _codes(self, u: jax.Array) -> jax.Array:
        """Signed integer codes of unit-scale values u in [-1, 1]: nearest level (ties to the larger)."""
        mags = self._magnitude_codes()
        top = float(mags[-1])
        table = jnp.asarray(mags, jnp.int32)
        mid = jnp.asarray((mags[:-1] + mags[1:]) / (2 * top), u.dtype)  # decision boundaries in unit scale
        idx = jnp.searchsorted(mid, jnp.abs(u), side="right")
        return jnp.sign(u).astype(jnp.int32) * table[idx]

    def _code_scale(self) -> float:
        """gamma * 2^-E: the value of code 1 in units of s."""
        return 1.0 / float(self._magnitude_codes()[-1])

    def quantize(self, x: jax.Array) -> jax.Array:
        s = self.scale_for(x)
        s_full = jnp.broadcast_to(s, x.shape)
        u = jnp.clip(x / s_full, -1.0, 1.0)
        codes = self._codes(jax.lax.stop_gradient(u))
        value = codes * jax.lax.stop_gradient(s * self._code_scale())
        return _scaled_ste(u, s_full, codes.astype(x.dtype) * self._code_scale(), value)

    def integer(self, x: jax.Array) -> IntegerView:
        s = jax.lax.stop_gradient(self.scale_for(x))
        codes = self._codes(jnp.clip(x / s, -1.0, 1.0))
        return IntegerView(codes, s * self._code_scale(), self.format)
