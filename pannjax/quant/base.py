"""The quantizer interface.

A quantizer is a frozen `flax.struct` dataclass: hyper-parameters (bits, signedness, granularity)
are static fields, so two quantizers with equal settings are equal and hashable and jit re-traces only
when a setting changes; learned quantities (e.g. an LSQ step size) are array leaves, absent (None) in
the *spec* a layer receives and filled by the layer from its own parameters (`with_learned`).

Every quantizer offers
  * `quantize(x)`   - the fake-quantized float tensor, with a straight-through gradient;
  * `integer(x)`    - an `IntegerView` (integer codes and scale with codes * scale == quantize(x)),
                      which the hardware model (`pannjax.hw`) consumes;
  * `format`        - the `NumberFormat` the operand has in hardware, for op-count costs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import struct

from pannjax.numerics import NumberFormat


@dataclasses.dataclass(frozen=True)
class IntegerView:
    """Integer codes and the real scale they represent: value = codes * scale.

    `scale` broadcasts against `codes` (a scalar per tensor, or one value per channel).
    """

    codes: jax.Array
    scale: jax.Array
    format: NumberFormat


class Quantizer:
    """Mixin documenting the protocol; concrete quantizers are `flax.struct.dataclass`es."""

    #: names of array fields that a layer learns as parameters (empty when nothing is learned)
    learned_fields: tuple[str, ...] = ()

    def quantize(self, x: jax.Array) -> jax.Array:  # pragma: no cover - interface
        raise NotImplementedError

    def integer(self, x: jax.Array) -> IntegerView:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def format(self) -> NumberFormat:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def value_format(self) -> NumberFormat:
        """The format of the integer values `integer(x).codes` holds, what an arithmetic unit multiplies or
        adds: `format` unless the stored code is an index of wider values (power-of-two and additive
        power-of-two weights store a b-bit code of a value up to 2^M)."""
        return self.format

    def init_learned(self, x: jax.Array) -> dict[str, jax.Array]:
        """Initial values of the learned fields, computed from a first tensor `x`."""
        return {}

    def with_learned(self, **arrays: Any) -> "Quantizer":
        """A copy with the learned array fields set (how a layer binds its parameters)."""
        unknown = set(arrays) - set(self.learned_fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no learned fields {sorted(unknown)}")
        return dataclasses.replace(self, **arrays)

    def with_input_sign(self, signed: bool) -> "Quantizer":
        """Resolve an 'auto' signedness from the layer's knowledge of its input (see QConv)."""
        return self


@struct.dataclass
class Requantized(Quantizer):
    """`outer` applied to what `inner` produces: the weights an operator receives after its own rounding
    (e.g. a shift operator's power-of-two rounding of uniform weights). `integer` and `format` are the
    outer quantizer's, on the inner quantizer's output, so codes * scale == quantize(x)."""

    inner: Quantizer
    outer: Quantizer

    def quantize(self, x: jax.Array) -> jax.Array:
        return self.outer.quantize(self.inner.quantize(x))

    def integer(self, x: jax.Array) -> IntegerView:
        return self.outer.integer(self.inner.quantize(x))

    @property
    def format(self) -> NumberFormat:
        return self.outer.format

    @property
    def value_format(self) -> NumberFormat:
        return self.outer.value_format
