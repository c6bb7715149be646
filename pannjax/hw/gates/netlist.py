"""Gate-level netlists as data, a builder for generators, and a pure-Python gate-by-gate evaluator.

A `Netlist` is a synchronous circuit of simple gates over integer-numbered nets:

  * net 0 is the constant 0 and net 1 the constant 1;
  * `inputs` / `outputs` map a port name to its nets, least significant bit first; an input port is the
    output of an operand register, so its nets change once per operation and their flips are counted
    (group ``"inputs"``);
  * `gates` are in topological order: every gate input is a constant, an input net, a register output
    or the output of an earlier gate; every net is driven once;
  * `registers` are D flip-flops (`Register.q` takes the value of `Register.d` at the clock edge), all
    reset to 0 before the first operation.

Gate kinds (the yosys internal simple-cell library, `$_AND_` ... `$_OAI4_`, so `abc -g` mapped netlists
import one to one; Wolf, "Yosys Manual", "Gate-level cells"), inputs in the order given:

  BUF a | NOT ~a | AND a&b | OR a|b | XOR a^b | NAND ~(a&b) | NOR ~(a|b) | XNOR ~(a^b)
  ANDNOT a&~b | ORNOT a|~b | MUX (a, b, s) -> s ? b : a | AOI3 ~((a&b)|c) | OAI3 ~((a|b)&c)
  AOI4 ~((a&b)|(c&d)) | OAI4 ~((a|b)&(c|d))

One operation (one MAC, one addition, ...) is one clock cycle:
  1. the input nets take the operation's operand codes (two's complement or unsigned bits);
  2. every gate output settles (zero-delay: each net changes at most once per cycle);
  3. at the clock edge every register loads its D.
The toggles of the operation are the nets whose settled value differs from the previous operation's
(inputs and gate outputs), plus the registers whose stored value changes at its clock edge. Every gate
and register carries a `group` label (e.g. ``"multiplier"``, ``"adder"``, ``"accumulator"``) so counts
split by component. `NetlistBuilder` folds constants, so a generated netlist holds only gates that a
synthesis tool would keep.

`reference_toggles` is the slow, obvious evaluator (one Python integer per net) that the JAX simulator
(`pannjax.hw.gates.simulate`) and every generator are tested against.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from pannjax.errors import ConfigError

CONST0, CONST1 = 0, 1

# kind -> (arity, function of 0/1 values): plain ints or integer numpy arrays of 0/1, elementwise
_FUNCS = {
    "BUF": (1, lambda a: a),
    "NOT": (1, lambda a: 1 ^ a),
    "AND": (2, lambda a, b: a & b),
    "OR": (2, lambda a, b: a | b),
    "XOR": (2, lambda a, b: a ^ b),
    "NAND": (2, lambda a, b: 1 ^ (a & b)),
    "NOR": (2, lambda a, b: 1 ^ (a | b)),
    "XNOR": (2, lambda a, b: 1 ^ a ^ b),
    "ANDNOT": (2, lambda a, b: a & (1 ^ b)),
    "ORNOT": (2, lambda a, b: a | (1 ^ b)),
    "MUX": (3, lambda a, b, s: a ^ ((a ^ b) & s)),
    "AOI3": (3, lambda a, b, c: 1 ^ ((a & b) | c)),
    "OAI3": (3, lambda a, b, c: 1 ^ ((a | b) & c)),
    "AOI4": (4, lambda a, b, c, d: 1 ^ ((a & b) | (c & d))),
    "OAI4": (4, lambda a, b, c, d: 1 ^ ((a | b) & (c | d))),
}
GATE_KINDS = tuple(_FUNCS)


def gate_arity(kind: str) -> int:
    if kind not in _FUNCS:
        raise ConfigError(f"gate kind {kind!r}: expected one of {', '.join(GATE_KINDS)}")
    return _FUNCS[kind][0]


def eval_gate(kind: str, ins: Sequence[int]) -> int:
    """Value (0/1) of one gate on 0/1 inputs (ints, or integer numpy arrays of 0/1 evaluated elementwise)."""
    return _FUNCS[kind][1](*ins)


@dataclasses.dataclass(frozen=True)
class Gate:
    kind: str
    inputs: tuple[int, ...]
    output: int
    group: str = "logic"


@dataclasses.dataclass(frozen=True)
class Register:
    """A D flip-flop: `q` takes `d` at each clock edge; 0 after reset."""

    d: int
    q: int
    group: str = "register"


@dataclasses.dataclass(frozen=True, eq=False)
class Netlist:
    """A synchronous gate-level circuit (see module docstring). `signed` names the ports whose bits are
    read as two's complement; `n_nets` counts every net including the two constants."""

    name: str
    n_nets: int
    inputs: Mapping[str, tuple[int, ...]]
    outputs: Mapping[str, tuple[int, ...]]
    gates: tuple[Gate, ...]
    registers: tuple[Register, ...] = ()
    signed: frozenset = frozenset()

    def __post_init__(self):
        object.__setattr__(self, "inputs", MappingProxyType({k: tuple(v) for k, v in self.inputs.items()}))
        object.__setattr__(self, "outputs", MappingProxyType({k: tuple(v) for k, v in self.outputs.items()}))
        object.__setattr__(self, "signed", frozenset(self.signed))
        self.validate()

    def validate(self) -> None:
        """Each net driven once (constants, input ports, register outputs, gates), gates in topological
        order, arities right, every output and register D net driven. Raises ConfigError."""
        driven = {CONST0, CONST1}

        def drive(net: int, what: str) -> None:
            if not 0 <= net < self.n_nets:
                raise ConfigError(f"netlist {self.name}: {what} drives net {net}, outside 0..{self.n_nets - 1}")
            if net in driven:
                raise ConfigError(f"netlist {self.name}: net {net} is driven twice ({what})")
            driven.add(net)

        for port, nets in self.inputs.items():
            for n in nets:
                drive(n, f"input {port}")
        for r in self.registers:
            drive(r.q, "a register")
        for i, g in enumerate(self.gates):
            if len(g.inputs) != gate_arity(g.kind):
                raise ConfigError(f"netlist {self.name}: gate {i} ({g.kind}) has {len(g.inputs)} inputs, "
                                  f"expected {gate_arity(g.kind)}")
            for n in g.inputs:
                if n not in driven:
                    raise ConfigError(f"netlist {self.name}: gate {i} ({g.kind}) reads net {n} before it is "
                                      f"driven (gates must be in topological order)")
            drive(g.output, f"gate {i} ({g.kind})")
        for port, nets in self.outputs.items():
            for n in nets:
                if n not in driven:
                    raise ConfigError(f"netlist {self.name}: output {port} reads undriven net {n}")
        for r in self.registers:
            if r.d not in driven:
                raise ConfigError(f"netlist {self.name}: a register reads undriven net {r.d}")

    @property
    def groups(self) -> tuple[str, ...]:
        """Component labels in first-seen order: "inputs", then those of gates and registers."""
        seen = {"inputs": None}
        for g in self.gates:
            seen.setdefault(g.group, None)
        for r in self.registers:
            seen.setdefault(r.group, None)
        return tuple(seen)

    def gate_counts(self) -> dict[str, int]:
        """Number of gates of each kind, and of registers (key "DFF")."""
        out: dict[str, int] = {}
        for g in self.gates:
            out[g.kind] = out.get(g.kind, 0) + 1
        if self.registers:
            out["DFF"] = len(self.registers)
        return out

    def width(self, port: str) -> int:
        nets = self.inputs.get(port, self.outputs.get(port))
        if nets is None:
            raise ConfigError(f"netlist {self.name} has no port {port!r}; ports: "
                              f"{', '.join([*self.inputs, *self.outputs])}")
        return len(nets)


class NetlistBuilder:
    """Incremental construction of a `Netlist` with constant folding.

    `gate(kind, *ins)` returns the output net; a gate whose value is fixed by constant inputs, or that
    reduces to a wire or an inverter of one input (e.g. AND(a, 1), XOR(a, 0)), adds no gate (or one NOT).
    Registers with feedback: `qs = b.register_outputs(n, group)` first, `b.connect_registers(qs, ds)`
    once the D logic exists."""

    def __init__(self, name: str):
        self.name = name
        self._n = 2
        self._inputs: dict[str, tuple[int, ...]] = {}
        self._outputs: dict[str, tuple[int, ...]] = {}
        self._gates: list[Gate] = []
        self._reg_q: dict[int, str] = {}
        self._reg_d: dict[int, int] = {}
        self._signed: set[str] = set()
        self._not_cache: dict[int, int] = {}

    def _new(self) -> int:
        self._n += 1
        return self._n - 1

    def input(self, port: str, bits: int, signed: bool = False) -> list[int]:
        if port in self._inputs:
            raise ConfigError(f"netlist {self.name}: input {port!r} declared twice")
        nets = [self._new() for _ in range(bits)]
        self._inputs[port] = tuple(nets)
        if signed:
            self._signed.add(port)
        return nets

    def output(self, port: str, nets: Sequence[int], signed: bool = False) -> None:
        self._outputs[port] = tuple(nets)
        if signed:
            self._signed.add(port)

    def gate(self, kind: str, *ins: int, group: str = "logic") -> int:
        gate_arity(kind)
        folded = self._fold(kind, ins, group)
        if folded is not None:
            return folded
        out = self._new()
        self._gates.append(Gate(kind, tuple(ins), out, group))
        if kind == "NOT":
            self._not_cache[ins[0]] = out
        return out

    def _fold(self, kind: str, ins: tuple[int, ...], group: str) -> int | None:
        consts = {CONST0, CONST1}
        if all(i in consts for i in ins):
            return eval_gate(kind, ins)
        if kind == "BUF":
            return ins[0]
        if kind == "NOT" and ins[0] in self._not_cache:
            return self._not_cache[ins[0]]
        if kind == "MUX":
            a, b, s = ins
            if s in consts:
                return b if s == CONST1 else a
            if a == b:
                return a
            if (a, b) == (CONST0, CONST1):
                return s
            if (a, b) == (CONST1, CONST0):
                return self.gate("NOT", s, group=group)
            return None
        if len(ins) != 2:
            return None  # AOI/OAI with constants: left to the caller (generators do not emit them)
        a, b = ins
        if a in consts and kind not in ("ANDNOT", "ORNOT"):
            a, b = b, a  # symmetric kinds: constant second
        if b not in consts:
            if a not in consts or kind not in ("ANDNOT", "ORNOT"):
                return None
            # constant first operand of an asymmetric kind
            if kind == "ANDNOT":
                return CONST0 if a == CONST0 else self.gate("NOT", b, group=group)
            return CONST1 if a == CONST1 else self.gate("NOT", b, group=group)
        one = b == CONST1
        table = {
            "AND": (a if one else CONST0), "OR": (CONST1 if one else a), "XOR": (None if one else a),
            "NAND": (None if one else CONST1), "NOR": (CONST0 if one else None), "XNOR": (a if one else None),
            "ANDNOT": (CONST0 if one else a), "ORNOT": (a if one else CONST1),
        }
        res = table[kind]
        if res is None:  # reduces to NOT a
            return self.gate("NOT", a, group=group)
        return res

    def register_outputs(self, bits: int, group: str = "register") -> list[int]:
        nets = [self._new() for _ in range(bits)]
        for n in nets:
            self._reg_q[n] = group
        return nets

    def connect_registers(self, qs: Sequence[int], ds: Sequence[int]) -> None:
        if len(qs) != len(ds):
            raise ConfigError(f"netlist {self.name}: {len(qs)} registers but {len(ds)} D nets")
        for q, d in zip(qs, ds):
            if q not in self._reg_q:
                raise ConfigError(f"netlist {self.name}: net {q} is not a register output")
            self._reg_d[q] = d

    def register(self, ds: Sequence[int], group: str = "register") -> list[int]:
        """Registers without feedback: returns their Q nets, loaded from `ds`."""
        qs = self.register_outputs(len(ds), group)
        self.connect_registers(qs, ds)
        return qs

    def instantiate(self, block: Netlist, connections: Mapping[str, Sequence[int]],
                    group: str | None = None) -> dict[str, list[int]]:
        """Copy the combinational netlist `block` into this one, its input ports wired to `connections`
        (port -> nets of this builder, LSB first, same widths), with constant folding. Returns its output
        ports as nets of this builder. Gates keep their own group unless `group` is given."""
        if block.registers:
            raise ConfigError(f"netlist {block.name}: only combinational blocks can be instantiated")
        net = {CONST0: CONST0, CONST1: CONST1}
        for port, nets in block.inputs.items():
            if port not in connections:
                raise ConfigError(f"instantiating {block.name}: input {port!r} is not connected")
            if len(connections[port]) != len(nets):
                raise ConfigError(f"instantiating {block.name}: input {port!r} is {len(nets)} bits, "
                                  f"got {len(connections[port])} nets")
            net.update(zip(nets, connections[port]))
        for g in block.gates:
            net[g.output] = self.gate(g.kind, *(net[i] for i in g.inputs), group=group or g.group)
        return {port: [net[n] for n in nets] for port, nets in block.outputs.items()}

    def build(self) -> Netlist:
        missing = [q for q in self._reg_q if q not in self._reg_d]
        if missing:
            raise ConfigError(f"netlist {self.name}: registers {missing[:4]} have no D net")
        regs = tuple(Register(self._reg_d[q], q, g) for q, g in self._reg_q.items())
        return Netlist(self.name, self._n, self._inputs, self._outputs, tuple(self._gates), regs,
                       frozenset(self._signed))


# ---------------------------------------------------------------------------------------------------
# Pure-Python reference evaluation
# ---------------------------------------------------------------------------------------------------

def to_bits(value: int, bits: int) -> list[int]:
    """Two's complement (or unsigned) bit pattern of `value` in `bits` bits, LSB first."""
    return [(int(value) >> i) & 1 for i in range(bits)]


def from_bits(bits: Sequence[int], signed: bool) -> int:
    v = sum(int(b) << i for i, b in enumerate(bits))
    if signed and bits and bits[-1]:
        v -= 1 << len(bits)
    return v


def settle(netlist: Netlist, operands: Mapping[str, int], state: Mapping[int, int]) -> list[int]:
    """Settled value of every net for one operation (`state`: register q net -> stored bit)."""
    vals = [0] * netlist.n_nets
    vals[CONST1] = 1
    for port, nets in netlist.inputs.items():
        if port not in operands:
            raise ConfigError(f"netlist {netlist.name}: no operand for input {port!r}")
        for n, b in zip(nets, to_bits(operands[port], len(nets))):
            vals[n] = b
    for r in netlist.registers:
        vals[r.q] = state.get(r.q, 0)
    for g in netlist.gates:
        vals[g.output] = eval_gate(g.kind, [vals[i] for i in g.inputs])
    return vals


def evaluate(netlist: Netlist, stream: Sequence[Mapping[str, int]]) -> list[dict[str, int]]:
    """Output port values after each operation of `stream` (a list of {input port: code}); outputs are
    read after the gates settle and before the clock edge, registers then load."""
    state: dict[int, int] = {}
    out = []
    for ops in stream:
        vals = settle(netlist, ops, state)
        out.append({p: from_bits([vals[n] for n in nets], p in netlist.signed)
                    for p, nets in netlist.outputs.items()})
        state = {r.q: vals[r.d] for r in netlist.registers}
    return out


def reference_toggles(netlist: Netlist, stream: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """Total toggles over `stream`, by group (see the module docstring for what one operation counts).
    Before the first operation every net and register is 0."""
    group_of = {n: "inputs" for nets in netlist.inputs.values() for n in nets}
    group_of.update({g.output: g.group for g in netlist.gates})
    counts = dict.fromkeys(netlist.groups, 0)
    prev = [0] * netlist.n_nets
    prev[CONST1] = 1
    state: dict[int, int] = {}
    for ops in stream:
        vals = settle(netlist, ops, state)
        for n, grp in group_of.items():
            counts[grp] += vals[n] ^ prev[n]
        new_state = {r.q: vals[r.d] for r in netlist.registers}
        for r in netlist.registers:
            counts[r.group] += new_state[r.q] ^ state.get(r.q, 0)
        state, prev = new_state, vals
    return counts
