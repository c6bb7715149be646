"""Which quantizers and operator each layer gets: one default plus per-layer overrides.

Models never choose arithmetic themselves; they receive an `ArithPolicy` and ask it for the
arguments of each named layer (`policy.at(self, "conv1")`). An override is a regular expression
matched (`re.search`) against the layer's module path (e.g. ``"stage1_block0/conv1"``) and replaces
only the fields it sets, in order, so later overrides win (the rule lists of Qwix, google/qwix).
Conventional names: every model calls its first arithmetic layer ``stem`` and its classifier ``head``.
"""

from __future__ import annotations

import dataclasses
import re

import flax.linen as nn

from pannjax.errors import ConfigError
from pannjax.ops import MacOperator, Operator
from pannjax.quant import FloatQuantizer, Quantizer


@dataclasses.dataclass(frozen=True)
class LayerArith:
    """The three pytrees one layer receives; None in an override means "keep the default"."""

    quantizer_w: Quantizer | None = None
    quantizer_x: Quantizer | None = None
    operator: Operator | None = None

    def merged(self, other: "LayerArith") -> "LayerArith":
        return LayerArith(
            other.quantizer_w if other.quantizer_w is not None else self.quantizer_w,
            other.quantizer_x if other.quantizer_x is not None else self.quantizer_x,
            other.operator if other.operator is not None else self.operator,
        )


FLOAT_MAC = LayerArith(FloatQuantizer(), FloatQuantizer(), MacOperator())


@dataclasses.dataclass(frozen=True)
class ArithPolicy:
    """Default arithmetic plus ordered `(pattern, LayerArith)` overrides."""

    default: LayerArith = FLOAT_MAC
    overrides: tuple[tuple[str, LayerArith], ...] = ()

    def __post_init__(self):
        if None in (self.default.quantizer_w, self.default.quantizer_x, self.default.operator):
            raise ConfigError("ArithPolicy.default must set quantizer_w, quantizer_x and operator")
        for pattern, _ in self.overrides:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"override pattern {pattern!r} is not a valid regex: {e}") from None

    def resolve(self, path: str) -> LayerArith:
        arith = self.default
        for pattern, override in self.overrides:
            if re.search(pattern, path):
                arith = arith.merged(override)
        return arith

    def at(self, parent: nn.Module, name: str) -> dict:
        """Keyword arguments (`name`, `quantizer_w`, `quantizer_x`, `operator`) for the child layer
        `name` of `parent`, resolved against the child's full module path."""
        path = "/".join((*parent.scope.path, name))
        arith = self.resolve(path)
        return dict(name=name, quantizer_w=arith.quantizer_w, quantizer_x=arith.quantizer_x,
                    operator=arith.operator)
