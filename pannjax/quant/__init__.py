"""Quantizers: frozen pytree dataclasses with `quantize` (STE) and `integer` views."""

from pannjax.quant.apot import ApotQuantizer
from pannjax.quant.base import IntegerView, Quantizer
from pannjax.quant.float_quantizer import FloatQuantizer
from pannjax.quant.pann import PannQuantizer
from pannjax.quant.pot import PotIntegerView, PotQuantizer
from pannjax.quant.ste import round_ste, scale_grad
from pannjax.quant.uniform import UniformQuantizer

__all__ = [
    "ApotQuantizer",
    "FloatQuantizer",
    "PannQuantizer",
    "IntegerView",
    "PotIntegerView",
    "PotQuantizer",
    "Quantizer",
    "UniformQuantizer",
    "round_ste",
    "scale_grad",
]
