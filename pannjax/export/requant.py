"""Requantisation by an integer multiplier, a 64-bit bias and a right shift, in 32-bit integer arithmetic only.

A rescaling between two integer tensors -- from q at scale s with a real offset b (value = q s + b; e.g.
an accumulator at scale s_x s_w with the layer's bias and a folded BatchNorm) to codes at scale t -- is

    y = round((q s + b) / t) ~= floor((sign(s) q M + B + 2^(k-1)) / 2^k),
    |s| / t ~= M / 2^k  (M an int32 in [2^30, 2^31), 0 <= k <= 62),   B = round(b / t * 2^k)  (|B| < 2^62)

-- the gemmlowp / TFLite convention of a normalised int32 multiplier and a shift (Jacob et al.,
"Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference", CVPR
2018, Sec. 2.2), with the bias added to the 64-bit product instead of to the int32 accumulator: TFLite
rounds the bias to one accumulator unit, which moves y by up to half a unit times M / 2^k and changes
codes near every rounding boundary; at 2^-k of a unit the program rounds where the real-valued network
does. `multiply_round` forms the product from 16-bit limbs and carries the 64-bit sum as two uint32
words -- no 64-bit integers and no floats, so the same code runs on a 32-bit integer datapath and in
StableHLO as-is. Ties round up (towards +inf); results saturate to int32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pannjax.errors import ConfigError

_M_BITS = 31  # M in [2^30, 2^31)
_B_LIMIT = 2**62


def quantize_multiplier(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, k) int32 arrays with M / 2^k the nearest such fraction to each m > 0 (module docstring)."""
    m = np.asarray(m, np.float64)
    if not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ConfigError(f"requantisation factor {m.ravel()[:4]}...: expected finite positive values")
    mant, exp = np.frexp(m)  # m = mant 2^exp, mant in [0.5, 1)
    mult = np.round(mant * 2.0**_M_BITS).astype(np.int64)
    carry = mult == 2**_M_BITS  # rounding up to 1.0: renormalise
    mult = np.where(carry, 2 ** (_M_BITS - 1), mult)
    k = _M_BITS - exp - carry.astype(np.int64)
    if np.any(k < 0) or np.any(k > 62):
        raise ConfigError(f"requantisation factor out of range (2^-31 .. 2^31): {m.min():.3g} .. {m.max():.3g}")
    return mult.astype(np.int32), k.astype(np.int32)


def quantize_bias(offset: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """B = round(offset * 2^k) (offset in units of the target scale) as its (high int32, low uint32) words."""
    exact = np.round(np.ldexp(np.asarray(offset, np.float64), np.asarray(k)))
    if np.any(np.abs(exact) >= _B_LIMIT):
        raise ConfigError(f"requantisation offset {np.abs(offset).max():.3g} (in output units) does not fit 62 bits")
    b = exact.astype(np.int64)
    return (b >> 32).astype(np.int32), (b & 0xFFFFFFFF).astype(np.uint32)


def _shift_right(hi, lo, k):
    """Arithmetic right shift of the signed 64-bit (hi, lo) by k in 0..62, the low 32 bits and the high word."""
    u32 = jnp.uint32
    shi = jax.lax.bitcast_convert_type(hi, jnp.int32)
    small = k < 32
    kk = jnp.clip(k, 0, 31)
    lo_small = (lo >> kk.astype(u32)) | jnp.where(k > 0, hi << jnp.clip(32 - k, 0, 31).astype(u32), u32(0))
    lo_big = jax.lax.bitcast_convert_type(shi >> jnp.clip(k - 32, 0, 31), u32)
    hi_out = jnp.where(small, shi >> kk, shi >> 31)
    return jnp.where(small, lo_small, lo_big), hi_out


def multiply_round(q, mult, k, sign=1, bias_hi=0, bias_lo=0):
    """floor((sign q M + B + 2^(k-1)) / 2^k) saturated to int32, B = bias_hi 2^32 + bias_lo (module
    docstring); int32 q, M in [2^30, 2^31), 0 <= k <= 62, sign +-1 (all broadcasting). Integer operations
    only (uint32 limbs)."""
    u32 = jnp.uint32
    q = jnp.asarray(q, jnp.int32)
    a = jnp.where(q < 0, (-(q + 1)).astype(u32) + u32(1), q.astype(u32))  # |q|, INT_MIN included
    b = jnp.asarray(mult).astype(u32)
    a0, a1, b0, b1 = a & 0xFFFF, a >> 16, b & 0xFFFF, b >> 16
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> 16) + (p01 & 0xFFFF) + (p10 & 0xFFFF)
    lo = (p00 & 0xFFFF) | (mid << 16)
    hi = p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)
    # negate the product (two's complement) where sign(q) sign says so
    neg = (q < 0) != (jnp.asarray(sign) < 0)
    nlo = ~lo + u32(1)
    hi = jnp.where(neg, ~hi + (nlo == 0).astype(u32), hi)
    lo = jnp.where(neg, nlo, lo)

    def add(hi, lo, add_hi, add_lo):
        s = lo + add_lo
        return hi + add_hi + (s < lo).astype(u32), s

    hi, lo = add(hi, lo, jax.lax.bitcast_convert_type(jnp.asarray(bias_hi, jnp.int32), u32), jnp.asarray(bias_lo, u32))
    k = jnp.asarray(k, jnp.int32)
    half_lo = jnp.where((k >= 1) & (k <= 32), u32(1) << jnp.clip(k - 1, 0, 31).astype(u32), u32(0))
    half_hi = jnp.where(k > 32, u32(1) << jnp.clip(k - 33, 0, 31).astype(u32), u32(0))
    hi, lo = add(hi, lo, half_hi, half_lo)
    lo, hi = _shift_right(hi, lo, k)
    low = jax.lax.bitcast_convert_type(lo, jnp.int32)
    fits = hi == (low >> 31)
    return jnp.where(fits, low, jnp.where(hi < 0, jnp.int32(-(2**31)), jnp.int32(2**31 - 1)))
