"""Bit-packed, jit-compiled gate-level toggle simulator of a `Netlist` (see `pannjax.hw.gates.netlist`).

`simulate(netlist, streams)` runs U independent copies ("units", lanes) of the circuit, each fed its own
sequence of T operations, and counts toggles (0->1 and 1->0 transitions of input nets, gate outputs and
registers) by group, exactly as `netlist.reference_toggles` defines them, summed over all lanes.

Layout. Lane u lives in bit u % 32 of word u // 32: the value of one net at one time is a (W,) uint32
array, and the circuit state is a (rows, W) array whose rows are the constants, the input nets, the
register outputs and then the gate outputs sorted by logic level (the longest path from an input, a
register or a constant). Each level is thus a contiguous block of rows, evaluated as one fused kernel:
gather the gates' operand rows (constant indices), apply the gate functions bitwise, write the block
back in place (`dynamic_update_slice`). Every gate kind goes through one of two forms, with per-gate
inversion masks as data:
  * two-input ``o ^ ((a ^ ma) & (b ^ mb)) ^ (mx & (a | b))`` (BUF ... XNOR: OR is ``~(~a & ~b)``, XOR is
    ``(a & b) ^ (a | b)``), for levels without 3- or 4-input gates;
  * four-input ``o ^ (((a ^ ma) & (b ^ mb)) | ((c ^ mc) & (d ^ md)))`` (every kind: XOR is
    ``(a & ~b) | (~a & b)``, MUX ``(a & ~s) | (b & s)``, OAI4 ``(~a & ~b) | (~c & ~d)``).
A mask that is zero for a whole level is not applied, so e.g. a level of AND gates costs one AND.

Time is a `lax.scan` whose carry is the previous operation's settled state and the register contents.
One step: the input rows take the operation's bits, the register-output rows the registers, the levels
settle, the registers load their D rows; the step's toggles are ``population_count(new ^ old)`` of every
row (padding lanes masked out), added to per-row, per-word uint16 counters (an elementwise update: a
reduction per step costs more). A register's flip at the clock edge of operation t shows in its output
row at operation t + 1; the flips of the very last edge are added at the end. Streams run in chunks of
at most 1024 steps (the counters cannot overflow), and units in blocks of at most 128 words (4096
lanes), whose state (rows x 128 x 4 bytes) stays in cache; the host sums chunks and blocks in int64 and
then rows by group. With several local devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``)
the blocks go round robin to the devices and run concurrently.

``delay="unit"`` (glitches): every gate has one unit of delay. After the inputs and registers change, all
gates re-evaluate from the previous step's values, `depth` times (after step k every gate of level <= k
is final, so `depth` steps settle the circuit), and every transition of a gate output counts. At step k
only gates of level >= k can change: a suffix of the rows. `reference_toggles_unit_delay` is the
pure-Python definition of this mode.

Compiled functions are cached per netlist (netlists are immutable; keyed by identity) and, by jit, per
stream shape; short streams are padded to a power-of-two number of steps (padded steps hold the state).
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from pannjax.errors import ConfigError
from pannjax.hw.gates.netlist import CONST0, CONST1, Netlist, eval_gate, to_bits

DELAYS = ("zero", "unit")
_ONES = 0xFFFFFFFF
_MAX_CHUNK = 1024  # time steps per call: uint16 counters hold 2047 steps of 32 flips
_BLOCK_WORDS = 128  # words (x 32 lanes) per block: fastest on the 8x8 MAC (64 and 256 are 10-30% slower)

# Gate encodings: ((net position or constant, invert), ...), invert output, XOR term (two-input form).
_C0, _C1 = ("c", 0), ("c", 1)  # constant operands: row CONST0 / CONST1


def _enc2(kind: str) -> tuple[tuple, int, int] | None:
    """Two-input form ``o ^ (A & B) ^ (x & (a | b))``: ((operand, invert) x 2, o, x), or None."""
    table = {
        "BUF": (((0, 0), _C1), 0, 0), "NOT": (((0, 0), _C1), 1, 0),
        "AND": (((0, 0), (1, 0)), 0, 0), "NAND": (((0, 0), (1, 0)), 1, 0),
        "OR": (((0, 1), (1, 1)), 1, 0), "NOR": (((0, 1), (1, 1)), 0, 0),
        "ANDNOT": (((0, 0), (1, 1)), 0, 0), "ORNOT": (((0, 1), (1, 0)), 1, 0),
        "XOR": (((0, 0), (1, 0)), 0, 1), "XNOR": (((0, 0), (1, 0)), 1, 1),
    }
    return table.get(kind)


def _enc4(kind: str) -> tuple[tuple, int]:
    """Four-input form ``o ^ ((A & B) | (C & D))``: ((operand, invert) x 4, o)."""
    table = {
        "BUF": (((0, 0), _C1, _C0, _C0), 0), "NOT": (((0, 0), _C1, _C0, _C0), 1),
        "AND": (((0, 0), (1, 0), _C0, _C0), 0), "NAND": (((0, 0), (1, 0), _C0, _C0), 1),
        "OR": (((0, 0), _C1, (1, 0), _C1), 0), "NOR": (((0, 0), _C1, (1, 0), _C1), 1),
        "ANDNOT": (((0, 0), (1, 1), _C0, _C0), 0), "ORNOT": (((0, 0), _C1, (1, 1), _C1), 0),
        "XOR": (((0, 0), (1, 1), (0, 1), (1, 0)), 0), "XNOR": (((0, 0), (1, 1), (0, 1), (1, 0)), 1),
        "MUX": (((0, 0), (2, 1), (1, 0), (2, 0)), 0),
        "AOI3": (((0, 0), (1, 0), (2, 0), _C1), 1), "OAI3": (((0, 0), (2, 0), (1, 0), (2, 0)), 1),
        "AOI4": (((0, 0), (1, 0), (2, 0), (3, 0)), 1), "OAI4": (((0, 1), (1, 1), (2, 1), (3, 1)), 0),
    }
    return table[kind]


@dataclasses.dataclass(frozen=True)
class GateToggles:
    """Toggles of a simulation: `by_group` maps each group of the netlist (``"inputs"`` first) to its
    total toggles over all `operations` (= T x U lane-operations)."""

    by_group: dict[str, int]
    operations: int

    @property
    def total(self) -> int:
        return sum(self.by_group.values())

    def per_operation(self) -> dict[str, float]:
        """Mean toggles per operation, by group and ``"total"``."""
        n = max(self.operations, 1)
        out = {g: c / n for g, c in self.by_group.items()}
        out["total"] = self.total / n
        return out


@dataclasses.dataclass(frozen=True)
class _Block:
    """Gates evaluated together from one state, their outputs in rows `first` .. `first + n - 1`: operand
    rows `idx` (k, n) and 0/1 `masks` (k + 2 for the two-input form: inversions, o, x; k + 1 for the
    four-input form: inversions, o)."""

    first: int
    idx: np.ndarray
    masks: np.ndarray
    two_input: bool


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Row layout of one netlist's state: constants (rows 0, 1), input nets (`input_rows`), register
    outputs (`q_rows`), then the gates sorted by logic level; `group_of_row` indexes `groups`."""

    n_rows: int
    groups: tuple[str, ...]
    group_of_row: np.ndarray
    input_rows: tuple[int, int]
    q_rows: tuple[int, int]
    d_rows: np.ndarray  # row of each register's D, in the order of the q rows
    levels: tuple[_Block, ...]  # zero delay: the gates of level 1, 2, ... depth
    suffixes: tuple[_Block, ...]  # unit delay: the gates of level >= 1, >= 2, ... depth
    depth: int


def _block(first: int, gates: Sequence, row: Mapping[int, int]) -> _Block:
    """Encode `gates` (outputs in consecutive rows from `first`) as one `_Block`."""
    two = all(_enc2(g.kind) is not None for g in gates)
    k = 2 if two else 4
    idx = np.zeros((k, len(gates)), np.int32)
    masks = np.zeros((k + (2 if two else 1), len(gates)), np.uint8)
    for j, g in enumerate(gates):
        ops, *tail = _enc2(g.kind) if two else _enc4(g.kind)
        for i, (pos, inv) in enumerate(ops):
            idx[i, j] = (CONST1 if inv else CONST0) if pos == "c" else row[g.inputs[pos]]
            masks[i, j] = 0 if pos == "c" else inv
        masks[k:, j] = tail
    return _Block(first, idx, masks, two)


def _levels(netlist: Netlist) -> dict[int, int]:
    """Logic level of every net: 0 for constants, inputs and register outputs, else 1 + max over inputs."""
    level = dict.fromkeys([CONST0, CONST1, *(n for ns in netlist.inputs.values() for n in ns),
                           *(r.q for r in netlist.registers)], 0)
    for g in netlist.gates:
        level[g.output] = 1 + max(level[i] for i in g.inputs)
    return level


def _layout(netlist: Netlist) -> _Layout:
    """Rows: constants, input nets, register outputs, gates by level (so each level is contiguous)."""
    groups = netlist.groups
    gi = {g: i for i, g in enumerate(groups)}
    level = _levels(netlist)
    in_nets = [n for ns in netlist.inputs.values() for n in ns]
    gates = sorted(netlist.gates, key=lambda g: level[g.output])
    nets = [CONST0, CONST1, *in_nets, *(r.q for r in netlist.registers), *(g.output for g in gates)]
    row = {n: i for i, n in enumerate(nets)}
    group_of_row = np.array([0] * (2 + len(in_nets)) + [gi[r.group] for r in netlist.registers]
                            + [gi[g.group] for g in gates], np.int32)
    depth = max(level.values(), default=0)
    starts = np.searchsorted([level[g.output] for g in gates], np.arange(1, depth + 2))
    g0 = 2 + len(in_nets) + len(netlist.registers)
    levels = tuple(_block(g0 + a, gates[a:b], row) for a, b in zip(starts[:-1], starts[1:]))
    suffixes = tuple(_block(g0 + a, gates[a:], row) for a in starts[:-1])
    return _Layout(len(nets), groups, group_of_row, (2, 2 + len(in_nets)), (2 + len(in_nets), g0),
                   np.array([row[r.d] for r in netlist.registers], np.int32), levels, suffixes, depth)


class _Plan:
    """Per-netlist layout and jitted chunk functions (keyed by delay mode, padding and remainder handling)."""

    def __init__(self, netlist: Netlist):  # holds no reference to `netlist`: the cache is keyed weakly by it
        self.layout = _layout(netlist)
        self.widths = tuple(len(nets) for nets in netlist.inputs.values())
        self.traces = 0  # how many times a chunk function was traced (compiled), for tests and benchmarks
        self._fns: dict[tuple, Callable] = {}

    def chunk_fn(self, delay: str, masked: bool, hold: bool) -> Callable:
        key = (delay, masked, hold)
        if key not in self._fns:
            self._fns[key] = jax.jit(partial(self._run_chunk, delay=delay, masked=masked, hold=hold))
        return self._fns[key]

    def _run_chunk(self, carry, codes, lane_mask, n_valid, *, delay: str, masked: bool, hold: bool):
        """Simulate one chunk of time steps of one block of words. `codes`: per port (Tc, 32 W) integer
        codes; `lane_mask`: (W,) words with the real lanes set (applied if `masked`); `n_valid`: steps of
        the chunk that are real (the others hold the state; only if `hold`). Returns the new carry, the
        chunk's toggles per row (rows,) uint32, and the register flips of the clock edge after its last
        step (registers,) uint32."""
        self.traces += 1
        lay = self.layout
        mask = lane_mask if masked else None
        xs = _pack_bits(codes, self.widths)
        unit = delay == "unit"
        step = partial(_step_unit if unit else _step_zero, lay, mask)
        if hold:
            step = partial(_held, step, n_valid)
            xs = (xs, jnp.arange(xs.shape[0]))
        counts0 = jnp.zeros((lay.n_rows,) if unit else (lay.n_rows, lane_mask.shape[0]),
                            jnp.uint32 if unit else jnp.uint16)
        (state, reg, counts), _ = lax.scan(step, (*carry, counts0), xs)
        if not unit:
            counts = counts.sum(1, dtype=jnp.uint32)
        return (state, reg), counts, _flips(reg, state[lay.q_rows[0]:lay.q_rows[1]], mask)


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _plan(netlist: Netlist) -> _Plan:
    if netlist not in _PLANS:
        _PLANS[netlist] = _Plan(netlist)
    return _PLANS[netlist]


# ---------------------------------------------------------------------------------------------------
# Traced pieces
# ---------------------------------------------------------------------------------------------------

def _pack_bits(codes: Sequence[jax.Array], widths: Sequence[int]) -> jax.Array:
    """(Tc, input bits, W) words: bit i of port p's code of lane u in bit u % 32 of word u // 32."""
    rows = []
    for c, width in zip(codes, widths):
        for k in range(-(-width // 8)):
            byte = (c.astype(jnp.int32) >> (8 * k)).astype(jnp.uint8) if k else c.astype(jnp.uint8)
            rows += _byte_planes(byte, min(8, width - 8 * k))
    return jnp.stack(rows, 1)


def _byte_planes(byte: jax.Array, bits: int) -> list[jax.Array]:
    """Bit planes 0 .. bits-1 of (Tc, 32 W) uint8 lanes as (Tc, W) words. Four lanes share a uint32 (lane
    4j + k in byte k); ``((v >> i) & 0x01010101) * 0x204081`` moves bit i of byte k to bit 21 + k without
    carries (the 16 partial products land on distinct bits), so each multiply packs four lanes."""
    t = byte.shape[0]
    v = lax.bitcast_convert_type(byte.reshape(t, -1, 4), jnp.uint32)
    planes = []
    for i in range(bits):
        nibbles = (((((v >> i) & 0x01010101) * 0x00204081) >> 21) & 0xF).reshape(t, -1, 8)
        word = nibbles[..., 0]
        for j in range(1, 8):
            word = word | (nibbles[..., j] << (4 * j))
        planes.append(word)
    return planes


def _eval_block(state: jax.Array, blk: _Block) -> jax.Array:
    """Outputs (n, W) of the block's gates from `state` (rows, W)."""
    masks = [None if not m.any() else jnp.asarray(m.astype(np.uint32) * np.uint32(_ONES))[:, None]
             for m in blk.masks]
    v = state[blk.idx]  # rows gathered with constant (trace-time) indices
    ops = [v[i] if masks[i] is None else v[i] ^ masks[i] for i in range(blk.idx.shape[0])]
    if blk.two_input:
        out = ops[0] & ops[1]
        if masks[3] is not None:
            out = out ^ (masks[3] & (v[0] | v[1]))
    else:
        out = (ops[0] & ops[1]) | (ops[2] & ops[3])
    o = masks[blk.idx.shape[0]]
    return out if o is None else out ^ o


def _flips(a: jax.Array, b: jax.Array, lane_mask: jax.Array | None) -> jax.Array:
    """Flipped bits per row of (rows, W) words `a` vs `b`, real lanes only: (rows,) uint32."""
    d = a ^ b if lane_mask is None else (a ^ b) & lane_mask
    return lax.population_count(d).sum(1, dtype=jnp.uint32)


def _start(lay: _Layout, prev: jax.Array, x: jax.Array, reg: jax.Array) -> jax.Array:
    """State at the start of an operation: inputs and register outputs new, gate outputs as before."""
    return jnp.concatenate([prev[:lay.input_rows[0]], x, reg, prev[lay.q_rows[1]:]], 0)


def _step_zero(lay: _Layout, lane_mask, carry, x):
    """One zero-delay operation of every lane: level by level, then the flips of every row and word."""
    prev, reg, counts = carry
    state = _start(lay, prev, x, reg)
    for blk in lay.levels:
        state = lax.dynamic_update_slice(state, _eval_block(state, blk), (blk.first, 0))
    d = state ^ prev if lane_mask is None else (state ^ prev) & lane_mask
    return (state, state[lay.d_rows], counts + lax.population_count(d).astype(jnp.uint16)), None


def _step_unit(lay: _Layout, lane_mask, carry, x):
    """One unit-delay operation: inputs and register outputs flip once, then all gates `depth` times from
    the previous step's values (at step k only those of level >= k can change); every flip counts."""
    prev, reg, counts = carry
    state = _start(lay, prev, x, reg)
    g0 = lay.q_rows[1]
    fixed = _flips(state[:g0], prev[:g0], lane_mask)
    gates = jnp.zeros((lay.n_rows - g0,), jnp.uint32)
    for blk in lay.suffixes:
        out = _eval_block(state, blk)
        gates = gates.at[blk.first - g0:].add(_flips(out, state[blk.first:], lane_mask))
        state = lax.dynamic_update_slice(state, out, (blk.first, 0))
    return (state, state[lay.d_rows], counts + jnp.concatenate([fixed, gates])), None


def _held(step, n_valid, carry, xt):
    """`step` for the real time steps of a padded chunk; later steps leave the carry unchanged."""
    x, t = xt
    new, _ = step(carry, x)
    keep = t < n_valid
    return tuple(jnp.where(keep, n, o) for n, o in zip(new, carry)), None


# ---------------------------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------------------------

def _check_streams(netlist: Netlist, streams: Mapping) -> tuple[list[np.ndarray], int, int]:
    """Codes of every input port in port order as (T, U) integer arrays of at most 32 bits."""
    if not netlist.inputs:
        raise ConfigError(f"netlist {netlist.name} has no input ports to drive")
    unknown = [p for p in streams if p not in netlist.inputs]
    if unknown:
        raise ConfigError(f"netlist {netlist.name} has no input port {unknown[0]!r}; "
                          f"inputs: {', '.join(netlist.inputs)}")
    codes, shape = [], None
    for port, nets in netlist.inputs.items():
        if port not in streams:
            raise ConfigError(f"netlist {netlist.name}: no stream for input port {port!r} "
                              f"(give all of {', '.join(netlist.inputs)})")
        if len(nets) > 32:
            raise ConfigError(f"netlist {netlist.name}: input port {port!r} is {len(nets)} bits; at most 32")
        a = np.asarray(streams[port])
        if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
            raise ConfigError(f"stream {port!r}: expected a 2-D (time, units) integer array, got "
                              f"{a.dtype} of shape {a.shape}")
        if shape is not None and a.shape != shape:
            raise ConfigError(f"stream {port!r} has shape {a.shape}, but {next(iter(netlist.inputs))!r} has "
                              f"{shape}: every port needs the same (time, units)")
        shape = a.shape
        codes.append(a.astype(np.int32) if a.dtype.itemsize > 4 else a)  # low 32 bits, two's complement
    return codes, shape[0], shape[1]


def _blocks(units: int) -> tuple[int, int]:
    """(blocks, words per block): whole words of 32 lanes for `units`, in equal blocks of at most
    `_BLOCK_WORDS` words (the state of one block stays in cache), a multiple of the local devices."""
    words = -(-units // 32)
    n_dev = jax.local_device_count()
    blocks = min(words, -(-max(n_dev, -(-words // _BLOCK_WORDS)) // n_dev) * n_dev)
    return blocks, -(-words // blocks)


def _lane_mask(units: int, words: int) -> np.ndarray:
    """(words,) uint32 with bit u % 32 of word u // 32 set for the real lanes u < units."""
    full, rest = divmod(max(units, 0), 32)
    mask = np.zeros(words, np.uint32)
    mask[:min(full, words)] = _ONES
    if full < words and rest:
        mask[full] = (1 << rest) - 1
    return mask


def _chunk_steps(depth: int, time_steps: int, words: int, delay: str) -> int:
    """Time steps per compiled call: at most `_MAX_CHUNK`; with unit delay few enough that no per-row
    uint32 counter overflows (a row flips at most `depth` x 32 `words` times a step); for short streams
    `time_steps` rounded up to a power of two (few compiled shapes)."""
    steps = _MAX_CHUNK
    if delay == "unit":
        steps = min(steps, (2**32 - 1) // (32 * words * max(depth, 1)))
    return max(1, min(steps, 1 << max(time_steps - 1, 0).bit_length()))


def simulate(netlist: Netlist, streams: Mapping[str, object], *, delay: str = "zero") -> GateToggles:
    """Toggles of U lanes of `netlist`, each fed T operations: ``streams[port]`` is a (T, U) integer array
    of codes for input port `port` (its low `width` bits, two's complement for negative codes; every input
    port is required). Returns the totals by group over all T x U operations, equal to `reference_toggles`
    (``delay="zero"``) or `reference_toggles_unit_delay` (``delay="unit"``) summed over the lanes."""
    if delay not in DELAYS:
        raise ConfigError(f"delay={delay!r}: expected one of {DELAYS}")
    codes, T, U = _check_streams(netlist, streams)
    plan = _plan(netlist)
    totals = np.zeros(len(plan.layout.groups), np.int64)
    if T and U:
        totals += _run(plan, codes, T, U, delay)
    return GateToggles(dict(zip(plan.layout.groups, totals.tolist())), T * U)


def _run(plan: _Plan, codes: list[np.ndarray], T: int, U: int, delay: str) -> np.ndarray:
    """(G,) int64 toggle totals: each block of words on its device (round robin), chunk by chunk in time;
    calls are dispatched asynchronously, so the devices run their blocks concurrently."""
    blocks, words = _blocks(U)
    lanes = 32 * words
    devices = jax.local_devices()
    device = [devices[b % len(devices)] for b in range(blocks)]
    masked = blocks * lanes != U
    masks = [jax.device_put(_lane_mask(U - b * lanes, words), device[b]) for b in range(blocks)]
    state = np.zeros((plan.layout.n_rows, words), np.uint32)
    state[CONST1] = _ONES
    reg = np.zeros((len(plan.layout.d_rows), words), np.uint32)
    carry = [jax.device_put((state, reg), d) for d in device]
    tc = _chunk_steps(plan.layout.depth, T, words, delay)
    counts, pending = [], [None] * blocks
    for t0 in range(0, T, tc):
        n = min(tc, T - t0)
        fn = plan.chunk_fn(delay, masked, n < tc)
        for b in range(blocks):
            chunk = [jax.device_put(_pad(c[t0:t0 + n, b * lanes:(b + 1) * lanes], tc, lanes), device[b])
                     for c in codes]
            carry[b], c_b, pending[b] = fn(carry[b], chunk, masks[b], n)
            counts.append(c_b)
    per_row = sum(np.asarray(c, np.int64) for c in counts)
    q0, q1 = plan.layout.q_rows
    per_row[q0:q1] += sum(np.asarray(p, np.int64) for p in pending)
    totals = np.zeros(len(plan.layout.groups), np.int64)
    np.add.at(totals, plan.layout.group_of_row, per_row)
    return totals


def _pad(c: np.ndarray, steps: int, lanes: int) -> np.ndarray:
    """Zero-pad a (t, u) code array to (steps, lanes)."""
    if c.shape == (steps, lanes):
        return c
    return np.pad(c, ((0, steps - c.shape[0]), (0, lanes - c.shape[1])))


# ---------------------------------------------------------------------------------------------------
# Pure-Python reference of the unit-delay mode
# ---------------------------------------------------------------------------------------------------

def reference_toggles_unit_delay(netlist: Netlist, stream: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """Total toggles over `stream` with unit gate delays, by group: per operation the inputs and register
    outputs take their new values, then every gate output repeatedly takes its function of the previous
    step's values until no net changes; every change of a gate output counts (glitches included), plus
    the input and register flips of `reference_toggles`. Registers load the settled D values."""
    group_of = {g.output: g.group for g in netlist.gates}
    counts = dict.fromkeys(netlist.groups, 0)
    vals = [0] * netlist.n_nets
    vals[CONST1] = 1
    state = {r.q: 0 for r in netlist.registers}
    for ops in stream:
        for port, nets in netlist.inputs.items():
            for n, bit in zip(nets, to_bits(ops[port], len(nets))):
                counts["inputs"] += bit ^ vals[n]
                vals[n] = bit
        for r in netlist.registers:
            vals[r.q] = state[r.q]
        while True:
            new = list(vals)
            for g in netlist.gates:
                new[g.output] = eval_gate(g.kind, [vals[i] for i in g.inputs])
            changed = [g.output for g in netlist.gates if new[g.output] != vals[g.output]]
            if not changed:
                break
            for n in changed:
                counts[group_of[n]] += 1
            vals = new
        new_state = {r.q: vals[r.d] for r in netlist.registers}
        for r in netlist.registers:
            counts[r.group] += new_state[r.q] ^ state[r.q]
        state = new_state
    return counts

