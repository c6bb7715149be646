"""`FloatQuantizer`: the identity, i.e. full-precision float32 arithmetic."""

from __future__ import annotations

import jax
from flax import struct

from pannjax.numerics import FLOAT32, NumberFormat
from pannjax.quant.base import IntegerView, Quantizer


@struct.dataclass
class FloatQuantizer(Quantizer):
    """Leaves values unchanged; its hardware format is fp32."""

    def quantize(self, x: jax.Array) -> jax.Array:
        return x

    def integer(self, x: jax.Array) -> IntegerView:
        raise TypeError(
            "FloatQuantizer has no integer view: the operand is fp32. Use a fixed-point quantizer "
            "(e.g. quant=uniform) to obtain integer codes for the toggle simulator."
        )

    @property
    def format(self) -> NumberFormat:
        return FLOAT32
