"""Gate-level arithmetic blocks synthesized by yosys, shipped with the package (``hw/gates/data/``).

`synthesized_block(kind, **widths)` returns a combinational `Netlist` made by yosys's standard flow
(``synth`` then ``abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX``, `scripts/synth_netlist.sh`) from a
one-line Verilog ``assign`` (``x * w``, ``a + b``, ...), i.e. the architecture yosys's own techmap and abc
choose, not a hand-written one. `scripts/make_default_netlists.py` regenerates the data; each family file
records the yosys version, the Verilog and the exact synthesis script. Kinds, their ports and widths:

  ``mult``        x_bits, w_bits in 2..8, x_signed, w_signed:  p = x * w  ((x_bits + w_bits) bits, signed
                  if either operand is), group ``"multiplier"``;
  ``add``         bits in 2..32:  s = a + b mod 2^bits (a, b, s all `bits` wide; signedness does not change
                  the bits), group ``"adder"``;
  ``add_carry``   bits in 1..32:  {co, s} = a + b + ci, with carry-in and carry-out (the interface of
                  `generators.ADDERS`), group ``"adder"``;
  ``accumulate``  addend_bits in 2..16, acc_bits in {16, 24, 32}, signed:
                  d = (clear ? 0 : acc) + t mod 2^acc_bits, the addend t (addend_bits) sign-extended if
                  signed else zero-extended, acc and d acc_bits wide, clear one bit; group ``"accumulator"``;
                  the accumulator register itself is the caller's (`NetlistBuilder.register`);
  ``shift``       x_bits in 2..8, shift_bits in 2..3, signed:  y = x << sh, y of x_bits + 2^shift_bits - 1
                  bits (no bit lost; x sign-extended if signed), group ``"shifter"``.

Compact format (one gzip'ed JSON per family): ``gate_kinds`` lists the kinds; a block's inputs take nets
2, 3, ... in port order, its gates are ``[kind index, input nets...]`` whose outputs are the next nets in
order, its outputs list their nets (0/1 are the constants).
"""

from __future__ import annotations

import functools
import gzip
import json
from importlib import resources

from pannjax.errors import ConfigError
from pannjax.hw.gates.netlist import Gate, Netlist, gate_arity

FAMILIES = ("mult", "add", "add_carry", "accumulate", "shift")


@functools.cache
def _family(kind: str) -> dict:
    if kind not in FAMILIES:
        raise ConfigError(f"synthesized block kind {kind!r}: expected one of {', '.join(FAMILIES)}")
    path = resources.files("pannjax.hw.gates") / "data" / f"{kind}.json.gz"
    try:
        return json.loads(gzip.decompress(path.read_bytes()))
    except FileNotFoundError as e:
        raise ConfigError(f"{path} is missing: run scripts/make_default_netlists.py (needs yosys)") from e


def family_info(kind: str) -> dict:
    """Provenance of a family's data: yosys version, Verilog source, synthesis script and command."""
    data = _family(kind)
    return {k: data[k] for k in ("yosys", "verilog", "synth_script", "command")}


def synthesized_blocks(kind: str) -> list[dict]:
    """The width/signedness arguments of every shipped block of `kind`."""
    data = _family(kind)
    return [dict(zip(data["params"], args)) for args in data["blocks"]]


def _key(args) -> str:
    return ",".join(str(int(a)) for a in args)


@functools.cache
def _block(kind: str, key: str) -> Netlist:
    data = _family(kind)
    blocks = {_key(args): (args, b) for args, b in zip(data["blocks"], data["netlists"])}
    args, b = blocks[key]
    kinds = data["gate_kinds"]
    inputs, n = {}, 2
    for port, bits in b["inputs"]:
        inputs[port] = range(n, n + bits)
        n += bits
    gates = []
    for g in b["gates"]:
        kind_name = kinds[g[0]]
        if len(g) != 1 + gate_arity(kind_name):
            raise ConfigError(f"{kind} block {key}: gate {len(gates)} is malformed; regenerate the data")
        gates.append(Gate(kind_name, tuple(g[1:]), n, data["group"]))
        n += 1
    name = f"{kind}_" + "_".join(f"{p}{int(a)}" for p, a in zip(data["params"], args))
    return Netlist(name, n, inputs, dict(b["outputs"]), tuple(gates), (), frozenset(b["signed"]))


def synthesized_block(kind: str, **widths) -> Netlist:
    """The shipped yosys netlist of `kind` (see the module docstring) at the given widths, e.g.
    ``synthesized_block("mult", x_bits=8, w_bits=8, x_signed=True, w_signed=True)``. Cached."""
    data = _family(kind)
    params = data["params"]
    if set(widths) != set(params):
        raise ConfigError(f"synthesized_block({kind!r}) takes {', '.join(params)}; got {', '.join(widths) or 'none'}")
    key = _key(widths[p] for p in params)
    if key not in {_key(args) for args in data["blocks"]}:
        ranges = {p: sorted({a[i] for a in data["blocks"]}) for i, p in enumerate(params)}
        raise ConfigError(f"no shipped {kind} block with {widths}; shipped values: "
                          + "; ".join(f"{p} in {v}" for p, v in ranges.items()))
    return _block(kind, key)
