"""`AdderOperator`: the AdderNet similarity, y_j = -sum_i |x_i - w_ij| (Chen et al., "AdderNet: Do we
really need multiplications in deep learning?", CVPR 2020, arXiv 1912.13200, Sec. 3.1 Eq. 2).

Gradients (Sec. 3.2). The exact partial derivatives are sign functions; AdderNet trains with
  * dY/dw = x - w                      (Eq. 5, "full-precision gradient" of the filter)
  * dY/dx = HT(w - x) = clip(w - x, -1, 1)   (Eq. 6, HardTanh-clipped, so gradients do not explode
                                              through the layers)
`gradient="exact"` uses the true derivatives sign(x - w) and sign(w - x) instead.

Adaptive learning-rate scaling (Sec. 3.3, Eq. 8): the update of adder layer l is
gamma * alpha_l * dL/dw_l with alpha_l = eta * sqrt(k) / ||dL/dw_l||_2 (k = elements of w_l): the
optax transformation `adder_lr_scaling(eta)`; chain it under `optax.masked` on the adder kernels
before the optimiser, or set `trainer.optimizer.adder_lr_eta` (all kernels; `op=adder` sets 0.1).

Efficient convolution. A direct implementation materialises (batch, positions, k*k*C_in, C_out).
Here the forward pass loops over the kh*kw kernel offsets (`lax.fori_loop`) and, per offset, sums
|x_window[..., c] - w[c, o]| over the input channels of a group as one fused elementwise XLA pass
(channels unrolled, vectorised along the output channels), so the only buffers are output-sized.
Backward (custom VJP):
  * full-precision dL/dw = sum_{n,p} g * (x - w) = (the MAC weight gradient of x) - w * sum_{n,p} g
    (zero-padded positions count as x = 0, as in the forward pass): one ordinary conv-backward;
  * dL/dx loops over offsets in the transposed form: x stays in place and the (stride-dilated, padded)
    output gradient is shifted, dx[q, c] = sum_{i, j, o} g[q - (i, j), o] * HT(w[i, j, c, o] - x[q, c]),
    again one fused elementwise pass per offset; the exact dL/dw reduces per (offset, channel).

Cost per output: fan_in "absdiff" unit operations (subtraction at b = max(b_x, b_w) + 1 bits, |.| of
the difference, accumulation into B bits; `pannjax.hw.units`). Float operands: 2 * fan_in "fadd" (|.| of
a float clears the sign bit: free).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from pannjax.errors import ConfigError
from pannjax.numerics import NumberFormat
from pannjax.ops.base import ContractionShape, Operator, UnitOp, linear_conv, wider_float
from pannjax.ops.integer import IntegerWeights, absdiff_contraction, datapath, input_grid, l1_limit

GRADIENTS = ("full_precision", "exact")


def _explicit_pads(x_shape, w_shape, strides, padding) -> tuple[tuple[int, int], ...]:
    if isinstance(padding, str):
        return tuple(jax.lax.padtype_to_pads(x_shape[1:3], w_shape[:2], strides, padding))
    return tuple(padding)


def _pad(x, pads):
    return jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))


def _geometry(x, w, strides, pads, groups):
    """Padded input, kernel as (kh*kw, G, C_g, O_g) (output channel o = g * O_g + o_g, like lax's grouped
    conv) and the output size."""
    kh, kw, cg, c_out = w.shape
    xp = _pad(x, pads)
    ho = (xp.shape[1] - kh) // strides[0] + 1
    wo = (xp.shape[2] - kw) // strides[1] + 1
    wg = w.reshape(kh, kw, cg, groups, c_out // groups).transpose(0, 1, 3, 2, 4).reshape(kh * kw, groups, cg, -1)
    return xp, wg, ho, wo


def _window(xp, k, kw, strides, ho, wo, groups):
    """The input seen by kernel offset k = i * kw + j: xp[n, i + s_h * p_h, j + s_w * p_w, :] as
    (N, ho, wo, G, C_g)."""
    n, c = xp.shape[0], xp.shape[3]
    sh, sw = strides
    win = jax.lax.dynamic_slice(xp, (0, k // kw, k % kw, 0), (n, sh * (ho - 1) + 1, sw * (wo - 1) + 1, c))
    return win[:, ::sh, ::sw].reshape(n, ho, wo, groups, c // groups)


def _adder_forward(x, w, strides, pads, groups):
    n = x.shape[0]
    kh, kw, cg, c_out = w.shape
    xp, wg, ho, wo = _geometry(x, w, strides, pads, groups)

    def offset(k, acc):  # channels unrolled: one fused elementwise pass, vectorised along O_g
        win, wk = _window(xp, k, kw, strides, ho, wo, groups), wg[k]
        for c in range(cg):
            acc = acc - jnp.abs(win[..., c:c + 1] - wk[:, c])
        return acc

    acc = jax.lax.fori_loop(0, kh * kw, offset, jnp.zeros((n, ho, wo, groups, c_out // groups), x.dtype))
    return acc.reshape(n, ho, wo, c_out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def adder_conv(x: jax.Array, w: jax.Array, strides: tuple[int, int], pads: tuple[tuple[int, int], ...],
               groups: int, gradient: str) -> jax.Array:
    """y[n, p, o] = -sum_{i, j, c} |x_pad[n, s*p + (i, j), g(o) * C_g + c] - w[i, j, c, o]|
    (NHWC / HWIO, explicit (lo, hi) pads, zero padding), with AdderNet's gradients (module docstring)."""
    return _adder_forward(x, w, strides, pads, groups)


def _adder_fwd(x, w, strides, pads, groups, gradient):
    return _adder_forward(x, w, strides, pads, groups), (x, w)


def _adder_bwd(strides, pads, groups, gradient, res, g):
    x, w = res
    n = x.shape[0]
    kh, kw, cg, c_out = w.shape
    og = c_out // groups
    xp, wg, ho, wo = _geometry(x, w, strides, pads, groups)
    _, h, wd, _ = x.shape
    hp, wp = xp.shape[1:3]
    (lo_h, _), (lo_w, _) = pads
    exact = gradient == "exact"
    dy_dx = jnp.sign if exact else (lambda d: jnp.clip(d, -1.0, 1.0))
    # dx[n, q, c] = sum_{i, j, o} g_dilated[n, q + lo - (i, j), o] * dY/dx(w[i, j, c, o] - x[n, q, c]):
    # this "transposed" form keeps x in place and shifts g, so every term is one elementwise product.
    gp = jax.lax.pad(g, jnp.zeros((), g.dtype), (
        (0, 0, 0), (kh - 1, hp - strides[0] * (ho - 1) - 1, strides[0] - 1),
        (kw - 1, wp - strides[1] * (wo - 1) - 1, strides[1] - 1), (0, 0, 0)))
    xg = x.reshape(n, h, wd, groups, cg)

    def offset(k, acc):
        gk = jax.lax.dynamic_slice(gp, (0, kh - 1 - k // kw + lo_h, kw - 1 - k % kw + lo_w, 0), (n, h, wd, c_out))
        gk, wk = gk.reshape(n, h, wd, groups, og), wg[k]
        for o in range(og):
            acc = acc + gk[..., o:o + 1] * dy_dx(wk[..., o] - xg)
        return acc

    dx = jax.lax.fori_loop(0, kh * kw, offset, jnp.zeros_like(xg)).reshape(x.shape)
    if exact:  # dY/dw = sign(x - w), reduced over batch and positions one (offset, channel) at a time
        gg = g.reshape(n, ho, wo, groups, og)

        def offset_dw(k):
            win, wk = _window(xp, k, kw, strides, ho, wo, groups), wg[k]
            return jnp.stack([jnp.sum(gg * jnp.sign(win[..., c:c + 1] - wk[:, c]), axis=(0, 1, 2))
                              for c in range(cg)], axis=1)  # (G, C_g, O_g)

        dw = jax.lax.map(offset_dw, jnp.arange(kh * kw))
        dw = dw.reshape(kh, kw, groups, cg, og).transpose(0, 1, 3, 2, 4).reshape(w.shape)
    else:  # sum g * (x - w): MAC weight gradient minus w * sum of g per output channel
        mac_dw = jax.vjp(lambda v: linear_conv(x, v, strides, pads, groups), w)[1](g)[0]
        dw = mac_dw - w * jnp.sum(g, axis=(0, 1, 2))
    return dx, dw


adder_conv.defvjp(_adder_fwd, _adder_bwd)


def adder_lr_scaling(eta: float = 0.1, eps: float = 1e-12) -> optax.GradientTransformation:
    """AdderNet's adaptive learning-rate scaling (Sec. 3.3, Eq. 8): every leaf's gradient g becomes
    eta * sqrt(k) * g / ||g||_2 (k = g.size), so each adder layer's update has norm eta * sqrt(k)
    before the global learning rate. Use on adder kernels only, e.g.
    `optax.chain(optax.masked(adder_lr_scaling(0.1), is_adder_kernel), optax.sgd(lr, 0.9))`."""
    if not eta > 0:
        raise ConfigError(f"adder_lr_scaling eta={eta!r}: must be > 0")

    def scale(updates, params=None):
        del params
        return jax.tree.map(lambda g: eta * jnp.sqrt(g.size).astype(g.dtype) * g / (jnp.linalg.norm(g) + eps),
                            updates)

    return optax.stateless(scale)


@struct.dataclass
class AdderOperator(Operator):
    """y = -sum |x - w| with AdderNet's gradients (`gradient`: "full_precision" or "exact"); dense is the
    1x1 case of the conv kernel. See the module docstring for formula, gradients and cost."""

    name = "adder"
    gradient: str = struct.field(pytree_node=False, default="full_precision")

    def __post_init__(self):
        if self.gradient not in GRADIENTS:
            raise ConfigError(f"op.gradient={self.gradient!r}: expected one of {GRADIENTS}")

    def dense_digital(self, x: jax.Array, w: jax.Array) -> jax.Array:
        lead = x.shape[:-1]
        y = adder_conv(x.reshape(-1, 1, 1, x.shape[-1]), w[None, None], (1, 1), ((0, 0), (0, 0)), 1, self.gradient)
        return y.reshape(*lead, w.shape[-1])

    def conv_digital(self, x, w, strides, padding, groups) -> jax.Array:
        pads = _explicit_pads(x.shape, w.shape, strides, padding)
        if min(min(p) for p in pads) < 0:
            raise ConfigError(f"adder conv: padding {padding} has a negative (cropping) pad; use pads >= 0")
        return adder_conv(x, w, tuple(strides), pads, groups, self.gradient)

    def digital_cost(self, shape: ContractionShape, x_format: NumberFormat, w_format: NumberFormat,
                     acc_bits: int) -> tuple[UnitOp, ...]:
        if x_format.is_float or w_format.is_float:
            return (UnitOp("fadd", wider_float(x_format, w_format), None, acc_bits, shape.fan_in, 2 * shape.macs),)
        return (UnitOp("absdiff", x_format, w_format, acc_bits, shape.fan_in, shape.macs),)

    def integer_weights(self, quantizer_w, kernel, x_step: float, x_max: int) -> IntegerWeights:
        """|x - w| needs x and w in one format: the weights on the activations' grid s_x 2^-k
        (`pannjax.ops.integer.input_grid`; exact when the steps agree, k = 0), one accumulator unit s_x 2^-k."""
        view = self.integer_view(quantizer_w, kernel)
        w_g, k = input_grid(view.codes, view.scale, x_step, x_max)
        fan_in = int(np.prod(w_g.shape[:-1]))
        limit = fan_in * 2.0**k + l1_limit(w_g)  # per unit of max |x|
        return IntegerWeights("absdiff", {"w": w_g}, np.full(w_g.shape[-1], 2.0**-k), limit, attrs={"grid_bits": k})


@datapath("absdiff")
def absdiff_datapath(x, arrays, attrs, geometry) -> list:
    """AdderNet's -sum |x 2^k - w_g| on the common grid (`AdderOperator.integer_weights`)."""
    return [(absdiff_contraction(x.astype(jnp.int32) << attrs["grid_bits"], arrays["w"], geometry), True)]
