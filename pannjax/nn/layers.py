"""`QConv` and `QDense`: the only arithmetic layers of pannjax models.

Each receives three pytrees - `quantizer_w` (weights), `quantizer_x` (input activations) and
`operator` - and computes

    y = operator.conv(quantizer_x.quantize(x), quantizer_w.quantize(W)) (+ b)

so one configuration swaps the arithmetic of a whole network and the hardware model can cost every
layer from the same three objects. Learned quantizer quantities (e.g. an LSQ step) become parameters
named `quantizer_w` / `quantizer_x` next to `kernel`.

`input_signed` states a fact about the architecture - whether this layer's input can be negative (the
image, or an activation with no ReLU before it). A quantizer configured with `signed=None` ("auto")
follows it, so unsigned codes are used exactly where the input is non-negative.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax

from pannjax.ops import MacOperator, Operator
from pannjax.ops.base import normalize_padding
from pannjax.quant import FloatQuantizer, Quantizer


def _bound(module: nn.Module, name: str, quantizer: Quantizer, x: jax.Array) -> Quantizer:
    """Bind a quantizer's learned fields to parameters of `module` (created from `x` at init)."""
    if not quantizer.learned_fields:
        return quantizer
    learned = module.param(name, lambda _rng: quantizer.init_learned(jax.lax.stop_gradient(x)))
    return quantizer.with_learned(**learned)


def _noise_rng(module: nn.Module, operator: Operator) -> jax.Array | None:
    if operator.noise_std > 0 and module.has_rng("noise"):
        return module.make_rng("noise")
    return None


class QConv(nn.Module):
    """Quantized 2-D convolution, NHWC input, HWIO kernel (I = C_in / groups)."""

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    padding: Any = "SAME"
    groups: int = 1
    use_bias: bool = False
    input_signed: bool = False
    quantizer_w: Quantizer = FloatQuantizer()
    quantizer_x: Quantizer = FloatQuantizer()
    operator: Operator = MacOperator()
    kernel_init: Any = nn.initializers.kaiming_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        c_in = x.shape[-1]
        if c_in % self.groups:
            raise ValueError(f"{self.path_name}: groups={self.groups} does not divide input channels {c_in}")
        kernel = self.param("kernel", self.kernel_init, (kh, kw, c_in // self.groups, self.features))
        qx = _bound(self, "quantizer_x", self.quantizer_x.with_input_sign(self.input_signed), x)
        qw = _bound(self, "quantizer_w", self.quantizer_w, kernel)
        y = self.operator.conv(qx.quantize(x), qw.quantize(kernel), self.strides,
                               normalize_padding(self.padding), self.groups, rng=_noise_rng(self, self.operator))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y

    @property
    def path_name(self) -> str:
        return "/".join(self.scope.path) if self.scope is not None else self.name or "QConv"


class QDense(nn.Module):
    """Quantized fully connected layer, kernel (C_in, C_out)."""

    features: int
    use_bias: bool = True
    input_signed: bool = False
    quantizer_w: Quantizer = FloatQuantizer()
    quantizer_x: Quantizer = FloatQuantizer()
    operator: Operator = MacOperator()
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
        qx = _bound(self, "quantizer_x", self.quantizer_x.with_input_sign(self.input_signed), x)
        qw = _bound(self, "quantizer_w", self.quantizer_w, kernel)
        y = self.operator.dense(qx.quantize(x), qw.quantize(kernel), rng=_noise_rng(self, self.operator))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


