"""Bit-packed, jit-compiled gate-level toggle simulator of a `Netlist` (`pannjax.hw.gates.netlist`).

`simulate(netlist, streams)` runs U independent copies ("lanes") of the unit, each fed its own sequence of
T operations, and counts the toggles of every input net, gate output and register, by group, with the
semantics of `netlist.reference_toggles` (before the first operation every net and register is 0; per
operation the inputs take the codes, the gates settle, the registers load D at the clock edge).

Bit packing: lane u is bit u % 32 of word u // 32 of every net, so one uint32 operation evaluates a gate
for 32 lanes. `lax.scan` runs the operations with every net's previous value, the register contents and
per-net toggle counters (`lax.population_count` of new XOR old, summed over the words) in the carry; time
is cut into chunks so that the uint32 counters cannot overflow, chunk totals are summed in int64 on the
host, and lanes beyond U in the last word are masked out. Two engines evaluate the gates:

  * "interpreted" (default): the netlist as data -- gates grouped by topological level, each level
    evaluated at once by gathering its operands, every gate kind as its algebraic normal form over GF(2)
    (coefficient masks per gate; AOI4/OAI4 as AOI3/OAI3 whose third operand fuses c & d or c | d). Shapes are
    padded to powers of two, so one XLA compilation (about a second) serves every netlist of similar
    size: the engine for calibration, reports and tests.
  * "compiled": the netlist as straight-line JAX code (one bitwise expression per gate, unrolled at
    trace time), several times faster per operation but one XLA compilation of tens of seconds per
    netlist: the engine for long streams of one unit (`scripts/bench_gates.py`).

`delay="unit"` counts glitches: every gate has one unit of delay, so after the inputs and registers change
all gate outputs are re-evaluated together from the previous step's values until nothing changes (at
most the logic depth), and every transition of every gate output is counted. Registers sample the final
(settled) values. `reference_toggles_unit_delay` is its pure-Python reference.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from pannjax.errors import ConfigError
from pannjax.hw.gates.netlist import CONST0, CONST1, Netlist, eval_gate, gate_arity, to_bits

DELAYS = ("zero", "unit")
_LANE_BITS = 32
_CHUNK_TOGGLES = 1 << 31  # a chunk's per-net uint32 counter stays below this

_WORD_OPS = {
    "BUF": lambda a: a, "NOT": lambda a: ~a, "AND": lambda a, b: a & b, "OR": lambda a, b: a | b,
    "XOR": lambda a, b: a ^ b, "NAND": lambda a, b: ~(a & b), "NOR": lambda a, b: ~(a | b),
    "XNOR": lambda a, b: ~(a ^ b), "ANDNOT": lambda a, b: a & ~b, "ORNOT": lambda a, b: a | ~b,
    "MUX": lambda a, b, s: a ^ ((a ^ b) & s), "AOI3": lambda a, b, c: ~((a & b) | c),
    "OAI3": lambda a, b, c: ~((a | b) & c), "AOI4": lambda a, b, c, d: ~((a & b) | (c & d)),
    "OAI4": lambda a, b, c, d: ~((a | b) & (c | d)),
}


@dataclasses.dataclass(frozen=True)
class GateToggles:
    """Toggles summed over all lanes and operations, by group; `operations` = T * U."""

    by_group: dict[str, int]
    operations: int

    @property
    def total(self) -> int:
        return int(sum(self.by_group.values()))

    def per_operation(self) -> dict[str, float]:
        """Mean toggles per operation by group, with "total"."""
        out = {g: v / self.operations for g, v in self.by_group.items()}
        out["total"] = self.total / self.operations
        return out


# ---------------------------------------------------------------------------------------------------
# Streams -> packed bit planes
# ---------------------------------------------------------------------------------------------------

def _input_planes(netlist: Netlist, streams: Mapping[str, np.ndarray]) -> tuple[np.ndarray, int, int]:
    """(planes (T, n_input_nets, W) uint32, T, U): bit i of every port's codes packed over the lanes."""
    missing = [p for p in netlist.inputs if p not in streams]
    if missing:
        raise ConfigError(f"simulate({netlist.name}): no stream for input port {missing[0]!r}; "
                          f"ports: {', '.join(netlist.inputs)}")
    extra = [p for p in streams if p not in netlist.inputs]
    if extra:
        raise ConfigError(f"simulate({netlist.name}): {extra[0]!r} is not an input port; "
                          f"ports: {', '.join(netlist.inputs)}")
    shapes = {p: np.shape(streams[p]) for p in netlist.inputs}
    first = next(iter(shapes.values()))
    for p, s in shapes.items():
        if len(s) != 2 or s != first:
            raise ConfigError(f"simulate({netlist.name}): stream {p!r} has shape {s}; every stream must be "
                              f"(T, units) and all alike, got {first} for the first")
    t, u = first
    if t < 1 or u < 1:
        raise ConfigError(f"simulate({netlist.name}): streams of shape {first} hold no operation")
    words = -(-u // _LANE_BITS)
    pad = words * _LANE_BITS - u
    planes = []
    for port, nets in netlist.inputs.items():
        codes = np.asarray(streams[port]).astype(np.int64).astype(np.uint32)  # two's complement bits
        if pad:
            codes = np.pad(codes, ((0, 0), (0, pad)))
        for i in range(len(nets)):  # lane u -> bit u % 32 of word u // 32 (little-endian bytes)
            packed = np.packbits((codes >> np.uint32(i)).astype(np.uint8) & 1, axis=1, bitorder="little")
            planes.append(packed.view("<u4").astype(np.uint32))
    return np.stack(planes, axis=1) if planes else np.zeros((t, 0, words), np.uint32), t, u


def _lane_mask(u: int) -> np.ndarray | None:
    words = -(-u // _LANE_BITS)
    if u % _LANE_BITS == 0:
        return None
    mask = np.full(words, 0xFFFFFFFF, np.uint32)
    mask[-1] = (1 << (u % _LANE_BITS)) - 1
    return mask


# ---------------------------------------------------------------------------------------------------
# Engine 1, "compiled": the netlist as straight-line code (zero-delay)
# ---------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _compiled(netlist: Netlist, masked: bool):
    """jit(scan) of one straight-line step: (planes, prev, reg, mask) -> (prev, reg, per-net toggle counts)."""
    in_nets = [n for nets in netlist.inputs.values() for n in nets]
    gates, regs = netlist.gates, netlist.registers

    def step(carry, planes_t):
        prev, reg, counts, mask = carry
        w = planes_t.shape[-1]
        values = {CONST0: jnp.zeros((w,), jnp.uint32), CONST1: jnp.full((w,), 0xFFFFFFFF, jnp.uint32)}
        values.update({n: planes_t[k] for k, n in enumerate(in_nets)})
        values.update({r.q: reg[k] for k, r in enumerate(regs)})
        outs = []
        for g in gates:
            values[g.output] = _WORD_OPS[g.kind](*(values[i] for i in g.inputs))
            outs.append(values[g.output])
        new_reg = jnp.stack([values[r.d] for r in regs]) if regs else reg
        new = jnp.concatenate([planes_t, jnp.stack(outs), new_reg]) if outs else jnp.concatenate([planes_t, new_reg])
        diff = new ^ jnp.concatenate([prev, reg])
        if masked:
            diff = diff & mask
        counts = counts + jax.lax.population_count(diff).sum(axis=1, dtype=jnp.uint32)
        return (new[: prev.shape[0]], new_reg, counts, mask), None

    @jax.jit
    def run(planes, prev, reg, mask):
        counts = jnp.zeros((prev.shape[0] + reg.shape[0],), jnp.uint32)
        (prev, reg, counts, _), _ = jax.lax.scan(step, (prev, reg, counts, mask), planes)
        return prev, reg, counts

    return run


def _run_compiled(netlist: Netlist, planes: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Per-net toggle totals (inputs, gates, registers in that order), int64."""
    t, n_in, words = planes.shape
    tracked = n_in + len(netlist.gates)
    run = _compiled(netlist, mask is not None)
    prev = jnp.zeros((tracked, words), jnp.uint32)
    reg = jnp.zeros((len(netlist.registers), words), jnp.uint32)
    mask_arr = jnp.asarray(mask if mask is not None else np.zeros(words, np.uint32))
    totals = np.zeros(tracked + len(netlist.registers), np.int64)
    for start, size in _chunks(t, words):
        prev, reg, counts = run(jnp.asarray(planes[start:start + size]), prev, reg, mask_arr)
        totals += np.asarray(counts, np.int64)
    return totals


def _chunks(t: int, words: int) -> list[tuple[int, int]]:
    """Power-of-two chunks of time whose per-net uint32 counters cannot overflow: a net flips at most
    32 `words` times a step (`words` scaled by the glitch steps in unit-delay mode)."""
    limit = max(1, _CHUNK_TOGGLES // (_LANE_BITS * words))
    out, start = [], 0
    while start < t:
        size = 1 << (min(limit, t - start).bit_length() - 1)
        out.append((start, size))
        start += size
    return out


# ---------------------------------------------------------------------------------------------------
# Engine 2, "interpreted": the netlist as data (zero- and unit-delay)
# ---------------------------------------------------------------------------------------------------

# algebraic normal form over GF(2) of each kind on (a, b, c): coefficients of
# 1, a, b, c, ab, ac, bc, abc (so one vectorised expression evaluates any gate of <= 3 inputs)
_ANF_TERMS = ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))


def _anf(kind: str) -> np.ndarray:
    """ANF coefficients of a gate kind (Moebius transform): the coefficient of the monomial over the
    variables S is the XOR of f at every point whose set bits lie in S."""
    arity = gate_arity(kind)
    coef = np.zeros(8, np.uint8)
    for i, term in enumerate(_ANF_TERMS):
        if any(v >= arity for v in term):
            continue
        for point in range(8):
            bits = [(point >> v) & 1 for v in range(3)]
            if all(v in term or not bits[v] for v in range(3)):
                coef[i] ^= eval_gate(kind, bits[:arity])
    return coef


@dataclasses.dataclass(frozen=True, eq=False)
class _Program:
    """A netlist as padded index arrays: gates by topological level, 4 operand slots each, ANF coefficients."""

    n_nets: int
    levels: np.ndarray       # (depth, width, 4) operand nets (padding reads net 0)
    outputs: np.ndarray      # (depth, width) output net (padding writes the scratch net n_nets - 1)
    coef: np.ndarray         # (depth, width, 10) uint32 masks: 8 ANF coefficients, then the fusion of c, d
    inputs: np.ndarray       # input nets in plane order
    counted: np.ndarray      # nets whose toggles count: inputs, then gate outputs
    reg_q: np.ndarray
    reg_d: np.ndarray


def _bucket(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


# a 4-input gate is its 3-input form on (a, b, c op d), the fourth operand fused into the third
_FUSED = {"AOI4": ("AOI3", 8), "OAI4": ("OAI3", 9)}  # kind -> (3-input kind, fusion mask slot: AND 8, OR 9)


@functools.lru_cache(maxsize=256)
def _program(netlist: Netlist) -> _Program:
    """Compile `netlist` to data; shapes are padded to powers of two so netlists of similar size share one
    compiled interpreter."""
    level = {}
    for g in netlist.gates:
        level[g.output] = 1 + max((level.get(i, 0) for i in g.inputs), default=0)
    by_level: dict[int, list] = {}
    for g in netlist.gates:
        by_level.setdefault(level[g.output], []).append(g)
    depth = _bucket(max(by_level, default=1))
    width = _bucket(max((len(v) for v in by_level.values()), default=1))
    scratch = _bucket(netlist.n_nets + 1) - 1
    levels = np.zeros((depth, width, 4), np.int32)
    outputs = np.full((depth, width), scratch, np.int32)
    coef = np.zeros((depth, width, 10), np.uint32)
    for lv, members in by_level.items():
        for j, g in enumerate(members):
            kind, fuse = _FUSED.get(g.kind, (g.kind, None))
            levels[lv - 1, j, : len(g.inputs)] = g.inputs
            outputs[lv - 1, j] = g.output
            coef[lv - 1, j, :8] = _ANF_COEF[kind].astype(np.uint32) * np.uint32(0xFFFFFFFF)
            if fuse is not None:
                coef[lv - 1, j, fuse] = 0xFFFFFFFF
    in_nets = np.array([x for nets in netlist.inputs.values() for x in nets], np.int32)
    counted = np.concatenate([in_nets, np.array([g.output for g in netlist.gates], np.int32)])
    return _Program(scratch + 1, levels, outputs, coef, in_nets, counted,
                    np.array([r.q for r in netlist.registers], np.int32),
                    np.array([r.d for r in netlist.registers], np.int32))


_ANF_COEF = {k: _anf(k) for k in _WORD_OPS if gate_arity(k) <= 3}


@functools.partial(jax.jit, static_argnames=("unit_delay",))
def _interpret(levels, outputs, coef, inputs, counted, reg_q, reg_d, planes, values, reg, counts, mask, unit_delay):
    """Scan over time: write the inputs and register outputs, evaluate the gates (level by level; or, with
    unit delay, all at once from the previous values, as many times as there are levels), count toggles of
    the counted nets and the registers, clock the registers. Returns (values, reg, counts)."""
    flat_levels, flat_out, flat_coef = levels.reshape(-1, 4), outputs.reshape(-1), coef.reshape(-1, 10)
    n_in = inputs.shape[0]

    def step(carry, planes_t):
        values, reg, counts = carry
        old = values
        values = values.at[inputs].set(planes_t).at[reg_q].set(reg)
        if unit_delay:
            def delay_step(_, vg):
                v, glitch = vg
                new = v.at[flat_out].set(_gate_eval_rows(flat_coef, v[flat_levels]))
                return new, glitch + jax.lax.population_count((new ^ v) & mask).sum(axis=1, dtype=jnp.uint32)
            values, glitch = jax.lax.fori_loop(0, levels.shape[0], delay_step,
                                               (values, jnp.zeros(values.shape[0], jnp.uint32)))
            flips = jax.lax.population_count((values[inputs] ^ old[inputs]) & mask).sum(axis=1, dtype=jnp.uint32)
            flips = jnp.concatenate([flips, glitch[counted[n_in:]]])
        else:
            values = jax.lax.fori_loop(
                0, levels.shape[0], lambda lv, v: v.at[outputs[lv]].set(_gate_eval_rows(coef[lv], v[levels[lv]])),
                values)
            flips = jax.lax.population_count((values[counted] ^ old[counted]) & mask).sum(axis=1, dtype=jnp.uint32)
        new_reg = values[reg_d]
        reg_flips = jax.lax.population_count((new_reg ^ reg) & mask).sum(axis=1, dtype=jnp.uint32)
        return (values, new_reg, counts + jnp.concatenate([flips, reg_flips])), None

    (values, reg, counts), _ = jax.lax.scan(step, (values, reg, counts), planes)
    return values, reg, counts


def _run_interpreted(netlist: Netlist, planes: np.ndarray, mask: np.ndarray | None, unit_delay: bool) -> np.ndarray:
    """Per-net toggle totals (inputs, gates, registers in that order), int64."""
    prog = _program(netlist)
    t, _, words = planes.shape
    values = jnp.zeros((prog.n_nets, words), jnp.uint32).at[CONST1].set(0xFFFFFFFF)
    reg = jnp.zeros((prog.reg_q.size, words), jnp.uint32)
    counts0 = jnp.zeros((prog.counted.size + prog.reg_q.size,), jnp.uint32)
    mask_arr = jnp.asarray(mask if mask is not None else np.full(words, 0xFFFFFFFF, np.uint32))
    arrays = [jnp.asarray(a) for a in (prog.levels, prog.outputs, prog.coef, prog.inputs, prog.counted,
                                        prog.reg_q, prog.reg_d)]
    totals = np.zeros(counts0.shape[0], np.int64)
    per_step = prog.levels.shape[0] if unit_delay else 1
    for start, size in _chunks(t, words * per_step):
        values, reg, counts = _interpret(*arrays, jnp.asarray(planes[start:start + size]), values, reg, counts0,
                                         mask_arr, unit_delay)
        totals += np.asarray(counts, np.int64)
    return totals


def _gate_eval_rows(coef, ops):
    """Gates of one level: coef (width, 10) masks, ops (width, 4, W) operand words -> (width, W). The third
    operand is c, c & d or c | d as the fusion masks say; then the ANF of the 3-input kind."""
    m = coef[:, :, None]
    a, b, c, d = ops[:, 0], ops[:, 1], ops[:, 2], ops[:, 3]
    c = (m[:, 8] & c & d) | (m[:, 9] & (c | d)) | (~(m[:, 8] | m[:, 9]) & c)
    ab = a & b
    return (m[:, 0] ^ (m[:, 1] & a) ^ (m[:, 2] & b) ^ (m[:, 3] & c) ^ (m[:, 4] & ab) ^ (m[:, 5] & a & c)
            ^ (m[:, 6] & b & c) ^ (m[:, 7] & ab & c))


ENGINES = ("interpreted", "compiled")


def simulate(netlist: Netlist, streams: Mapping[str, np.ndarray], delay: str = "zero",
             engine: str = "interpreted") -> GateToggles:
    """Toggles of `netlist` over `streams` ({input port: (T, U) integer codes}), by group (module docstring).

    engine: "interpreted" (the netlist as data: compiled once per size bucket, for many netlists and
    short streams; zero- or unit-delay) or "compiled" (the netlist as straight-line code: several times
    faster per operation, one XLA compilation of tens of seconds per netlist; zero-delay only)."""
    if delay not in DELAYS:
        raise ConfigError(f"delay={delay!r}: expected one of {', '.join(DELAYS)}")
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "compiled" and delay != "zero":
        raise ConfigError("engine='compiled' simulates zero delay; use engine='interpreted' for delay='unit'")
    planes, t, u = _input_planes(netlist, streams)
    mask = _lane_mask(u)
    if engine == "compiled":
        totals = _run_compiled(netlist, planes, mask)
    else:
        totals = _run_interpreted(netlist, planes, mask, delay == "unit")
    n_in = planes.shape[1]
    groups = ["inputs"] * n_in + [g.group for g in netlist.gates] + [r.group for r in netlist.registers]
    by_group = dict.fromkeys(netlist.groups, 0)
    for g, count in zip(groups, totals):
        by_group[g] += int(count)
    return GateToggles(by_group, t * u)


# ---------------------------------------------------------------------------------------------------
# Pure-Python reference of the unit-delay mode
# ---------------------------------------------------------------------------------------------------

def reference_toggles_unit_delay(netlist: Netlist, stream) -> dict[str, int]:
    """Unit-delay toggles over `stream` (a list of {port: code}), by group, gate by gate in Python."""
    counts = dict.fromkeys(netlist.groups, 0)
    vals = [0] * netlist.n_nets
    vals[CONST1] = 1
    state: dict[int, int] = {}
    for ops in stream:
        for port, nets in netlist.inputs.items():
            for n, b in zip(nets, to_bits(ops[port], len(nets))):
                counts["inputs"] += vals[n] ^ b
                vals[n] = b
        for r in netlist.registers:
            vals[r.q] = state.get(r.q, 0)
        while True:
            new = {g.output: eval_gate(g.kind, [vals[i] for i in g.inputs]) for g in netlist.gates}
            changed = [g for g in netlist.gates if new[g.output] != vals[g.output]]
            if not changed:
                break
            for g in changed:
                counts[g.group] += 1
            for out, v in new.items():
                vals[out] = v
        new_state = {r.q: vals[r.d] for r in netlist.registers}
        for r in netlist.registers:
            counts[r.group] += new_state[r.q] ^ state.get(r.q, 0)
        state = new_state
    return counts
