"""Number formats shared by quantizers (which produce them) and operators/hardware (which cost them)."""

from __future__ import annotations

import dataclasses

from pannjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class NumberFormat:
    """The arithmetic format of one operand stream.

    kind: "int" (fixed point: integer codes times a scale), "float" (IEEE), or "count" (PANN weights:
          a signed integer w_int that the hardware realises as |w_int| additions of the activation,
          not as a multiplication; Spingarn-Eliezer et al., arXiv 2202.02783).
    bits: width of one element (16 or 32 for floats).
    signed: two's complement (True) or unsigned (False); floats are always signed.
    """

    kind: str
    bits: int
    signed: bool = True

    def __post_init__(self):
        if self.kind not in ("int", "float", "count"):
            raise ConfigError(f"NumberFormat.kind={self.kind!r}: expected 'int', 'float' or 'count'")
        if self.kind == "float" and self.bits not in (16, 32):
            raise ConfigError(f"NumberFormat.bits={self.bits} for float: expected 16 or 32")
        if self.kind != "float" and not 1 <= self.bits <= 32:
            raise ConfigError(f"NumberFormat.bits={self.bits}: integer widths must be in 1..32")

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def code_range(self) -> tuple[int, int]:
        """[lo, hi] of the integer codes: [-2^(b-1), 2^(b-1) - 1] signed, [0, 2^b - 1] unsigned."""
        return (-(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1) if self.signed else (0, (1 << self.bits) - 1)

    def __str__(self) -> str:
        if self.is_float:
            return f"fp{self.bits}"
        if self.kind == "count":
            return f"count{self.bits}"
        return f"{'int' if self.signed else 'uint'}{self.bits}"


FLOAT32 = NumberFormat("float", 32)
