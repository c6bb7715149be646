"""Integer datapaths: what an operator's hardware computes on integer codes, for the integer-only export.

An operator describes the integer weights its datapath stores (`Operator.integer_weights` ->
`IntegerWeights`: the arrays, the datapath's name and the real scale of one accumulator unit), and the
datapath itself is a function registered here under that name (`datapath`):

    fn(x_codes, arrays, attrs, geometry) -> [(accumulator, signed), ...]

returning one or more B-bit accumulators computed with integer operations only. The layer output is
``(acc_0 - acc_1) * scale`` (one accumulator, or PANN's positive and negative unsigned ones); `wrap`
reduces every accumulator to its configured width B with two's complement (or unsigned) wrap-around,
which is exact at any point of the sum because wrap-around is addition modulo 2^B.

`geometry` holds ``kind`` ("conv" or "dense") and, for convolutions, ``strides``, ``padding`` and
``groups`` (NHWC codes, HWIO weights, I = C_in / groups).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pannjax.errors import ConfigError

Datapath = Callable[[jax.Array, dict, dict, dict], list]
_DATAPATHS: dict[str, Datapath] = {}


@dataclasses.dataclass(frozen=True)
class IntegerWeights:
    """The stored integer weights of one layer: `arrays` (name -> integer numpy array), the `datapath`
    that consumes them, static `attrs` (e.g. a shift range), `scale` (C_out,): the real value of one
    accumulator unit divided by the input step when `x_scaled` (output = acc * scale * s_x), else the
    real value itself (an operator that ignores the activation's magnitude), and `acc_limit` (C_out,):
    the largest |accumulator| per unit of the largest |input code| when `x_scaled`, else the largest
    |accumulator| (for a linear datapath the L1 norm of the weight column, `l1_limit`)."""

    datapath: str
    arrays: dict
    scale: np.ndarray
    acc_limit: np.ndarray
    x_scaled: bool = True
    attrs: dict = dataclasses.field(default_factory=dict)


def datapath(name: str) -> Callable[[Datapath], Datapath]:
    """Register `fn` as the integer datapath `name`."""
    def register(fn: Datapath) -> Datapath:
        if name in _DATAPATHS and _DATAPATHS[name] is not fn:
            raise ConfigError(f"integer datapath {name!r} is already registered")
        _DATAPATHS[name] = fn
        return fn
    return register


def run_datapath(name: str, x_codes, arrays, attrs, geometry) -> list:
    if name not in _DATAPATHS:
        raise ConfigError(f"integer datapath {name!r} is unknown; registered: {', '.join(sorted(_DATAPATHS))}")
    return _DATAPATHS[name](x_codes, arrays, attrs, geometry)


def per_channel(scale, kernel_shape) -> np.ndarray:
    """A weight scale broadcastable to the kernel (scalar or one per output channel) as a (C_out,) array."""
    full = np.broadcast_to(np.asarray(scale, np.float64), kernel_shape)
    return np.array(full[(0,) * (len(kernel_shape) - 1)], np.float64)


def l1_limit(codes) -> np.ndarray:
    """sum_i |w_i| over the fan-in of each output channel (the last axis): |sum_i x_i w_i| <= it max|x|."""
    w = np.abs(np.asarray(codes, np.float64))
    return w.reshape(-1, w.shape[-1]).sum(axis=0)


def _patches(x, kh: int, kw: int, strides, padding) -> jax.Array:
    """(N, Ho, Wo, kh, kw, C) windows of NHWC `x`, by zero padding and strided slices (integer data movement)."""
    n, h, w, c = x.shape
    pads = jax.lax.padtype_to_pads((h, w), (kh, kw), tuple(strides), padding) if isinstance(padding, str) \
        else [tuple(p) for p in padding]
    x = jax.lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)])
    sh, sw = strides
    ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    rows = [[jax.lax.slice(x, (0, i, j, 0), (n, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, c), (1, sh, sw, 1))
             for j in range(kw)] for i in range(kh)]
    return jnp.stack([jnp.stack(r, axis=3) for r in rows], axis=3)


def _dot(x, w, dtype) -> jax.Array:
    """Batched (G, P, K) @ (G, K, O) in `dtype` operands with int32 accumulation."""
    return jax.lax.dot_general(x.astype(dtype), w.astype(dtype), (((2,), (1,)), ((0,), (0,))),
                               preferred_element_type=jnp.int32)


def _matrices(x, w, geometry) -> tuple[jax.Array, jax.Array, tuple]:
    """(x as (G, P, K), w as (G, K, O / G), the output's leading shape): a dense layer as one group, a
    convolution as its windows (`_patches`) against the HWIO kernel as a matrix, per group."""
    x, w = x.astype(jnp.int32), w.astype(jnp.int32)
    if geometry["kind"] == "dense":
        k, o = w.shape
        return x.reshape(1, -1, k), w.reshape(1, k, o), x.shape[:-1]
    kh, kw, cg, o = w.shape
    g = geometry["groups"]
    p = _patches(x, kh, kw, geometry["strides"], geometry["padding"])  # N, Ho, Wo, kh, kw, C
    lead = p.shape[:3]
    p = p.reshape(-1, kh, kw, g, cg).transpose(3, 0, 1, 2, 4)  # G, P, kh, kw, Cg
    return p.reshape(g, -1, kh * kw * cg), w.reshape(kh * kw * cg, g, o // g).transpose(1, 0, 2), lead


def _output(acc, lead) -> jax.Array:
    """(G, P, O / G) accumulators as the layer's (*lead, O) output."""
    return acc.transpose(1, 0, 2).reshape(*lead, -1)


def integer_contraction(x, w, geometry) -> jax.Array:
    """sum_i x_i w_i in int32 (dense: x @ w; conv: NHWC/HWIO convolution), wrapping modulo 2^32.

    A convolution is its windows times the kernel as a matrix, one batched product per group (`_matrices`).
    With ``geometry["x_abs"]`` / ``["w_abs"]`` (static bounds of |x| and |w|) within int8 the
    products take int8 operands -- on CPUs an int8 x int8 -> int32 product is several times faster than
    an int32 one -- and activations below 2^14 are split exactly as x = 128 hi + lo into two int8 products;
    otherwise int32."""
    xm, wm, lead = _matrices(x, w, geometry)
    x_abs, w_abs = geometry.get("x_abs", 2**31), geometry.get("w_abs", 2**31)
    if w_abs > 127 or x_abs >= 2**14:
        acc = _dot(xm, wm, jnp.int32)
    elif x_abs <= 127:
        acc = _dot(xm, wm, jnp.int8)
    else:  # x = 128 hi + lo, lo in 0..127, |hi| < 128 (arithmetic shift)
        acc = _dot(xm >> 7, wm, jnp.int8) * 128 + _dot(xm & 127, wm, jnp.int8)
    return _output(acc, lead)


def absdiff_contraction(x, w, geometry) -> jax.Array:
    """-sum_i |x_i - w_i| in int32 (the AdderNet similarity; zero padding counts as x = 0), one fused
    elementwise pass per fan-in element so that no (P, K, O) buffer is formed."""
    xm, wm, lead = _matrices(x, w, geometry)

    def add(k, acc):
        xk = jax.lax.dynamic_slice_in_dim(xm, k, 1, axis=2)          # G, P, 1
        wk = jax.lax.dynamic_slice_in_dim(wm, k, 1, axis=1)          # G, 1, O
        return acc - jnp.abs(xk - wk)

    acc = jax.lax.fori_loop(0, xm.shape[2], add, jnp.zeros((xm.shape[0], xm.shape[1], wm.shape[2]), jnp.int32))
    return _output(acc, lead)


#: finest refinement 2^-GRID_BITS of the activation step that `input_grid` puts weights on
GRID_BITS = 16


def input_grid(codes, w_scale, x_step: float, x_max: int) -> tuple[np.ndarray, int]:
    """Integer weights on the activations' grid s_x 2^-k, for datapaths that add or subtract activations and
    weights (|x - w|; sign(x)|w| + sign(w)|x|), which need both in one fixed-point format:
    w_g = round(c_w s_w 2^k / s_x) per output channel, the activations x 2^k (a shift). k is the smallest
    that makes w_g exact (0 when s_w = s_x), else the largest <= GRID_BITS whose sums still fit 2^30
    (fan_in (x_max 2^k + max |w_g|)); the rounding error is then at most s_x 2^-(k+1) per weight.
    Returns (w_g as int32, k)."""
    c = np.asarray(codes, np.float64)
    ratio = per_channel(w_scale, c.shape) / float(x_step)
    fan_in = int(np.prod(c.shape[:-1]))
    finest = None  # (w_g, k) of the finest grid that fits so far
    for k in range(GRID_BITS + 1):
        w_g = np.round(c * ratio * 2.0**k)
        if fan_in * (x_max * 2.0**k + np.abs(w_g).max(initial=0)) >= 2**30:
            break
        if np.array_equal(w_g, c * ratio * 2.0**k):
            return w_g.astype(np.int32), k
        finest = (w_g, k)
    if finest is None:
        raise ConfigError(f"a {fan_in}-input layer with weights {np.abs(c * ratio).max():.3g} activation steps "
                          "large has no 32-bit grid for adding activations and weights")
    return finest[0].astype(np.int32), finest[1]


def wrap(acc: jax.Array, bits: int, signed: bool = True) -> tuple[jax.Array, jax.Array]:
    """`acc` reduced to a `bits`-bit accumulator (two's complement, or unsigned when not `signed`), and
    the number of elements that changed (overflowed). `bits` = 32 is int32 itself."""
    if not 2 <= bits <= 32:
        raise ConfigError(f"acc_bits={bits}: expected 2..32")
    if bits == 32:
        return acc, jnp.zeros((), jnp.int32)
    mask = jnp.int32((1 << bits) - 1)
    low = acc & mask
    wrapped = low - jnp.where(low >= (1 << (bits - 1)), jnp.int32(1 << bits), 0) if signed else low
    return wrapped, jnp.sum(wrapped != acc).astype(jnp.int32)


@datapath("mac")
def mac_datapath(x, arrays, attrs, geometry) -> list:
    """Multiply-accumulate of integer activation codes and integer weight values."""
    return [(integer_contraction(x, arrays["w"], geometry), True)]


@datapath("additions")
def additions_datapath(x, arrays, attrs, geometry) -> list:
    """PANN's repeated additions (`pannjax.quant.pann.repeated_addition_dot`): with ``attrs["accumulation"]``
    "split", |x| is added |w| times into the positive or the negative unsigned accumulator, as
    sign(x) sign(w) says; "signed" adds +-x into one two's complement accumulator. Computed as
    contractions of the non-negative parts, which are those sums."""
    w = arrays["w"].astype(jnp.int32)
    if attrs["accumulation"] == "signed":
        return [(integer_contraction(x, w, geometry), True)]
    xp, xn = jnp.maximum(x, 0), jnp.maximum(-x, 0)
    wp, wn = jnp.maximum(w, 0), jnp.maximum(-w, 0)
    pos = integer_contraction(xp, wp, geometry) + integer_contraction(xn, wn, geometry)
    neg = integer_contraction(xp, wn, geometry) + integer_contraction(xn, wp, geometry)
    return [(pos, False), (neg, False)]
