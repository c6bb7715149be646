"""The bit-packed gate-level simulator equals the pure-Python gate-by-gate evaluators, exactly (toggles)."""

import dataclasses

import numpy as np
import pytest

from pannjax.errors import ConfigError
from pannjax.hw.gates import simulate as sim
from pannjax.hw.gates.netlist import CONST0, GATE_KINDS, Gate, NetlistBuilder, reference_toggles
from pannjax.hw.gates.simulate import GateToggles, reference_toggles_unit_delay, simulate


def _ripple_add(b, xs, ys, group):
    """Ripple-carry sum of two equal-width net lists (carry out dropped)."""
    out, carry = [], CONST0
    for x, y in zip(xs, ys):
        t = b.gate("XOR", x, y, group=group)
        out.append(b.gate("XOR", t, carry, group=group))
        carry = b.gate("OR", b.gate("AND", x, y, group=group), b.gate("AND", t, carry, group=group), group=group)
    return out


def accumulator():
    """12-bit register accumulator of a sign-extended 5-bit input through a ripple-carry adder, with a
    `clear` input gating the feedback (registers with feedback)."""
    b = NetlistBuilder("acc")
    a = b.input("a", 5, signed=True)
    clear = b.input("clear", 1)[0]
    q = b.register_outputs(12, "accumulator")
    fed = [b.gate("ANDNOT", n, clear, group="mux") for n in q]
    b.connect_registers(q, _ripple_add(b, fed, a + [a[-1]] * 7, "adder"))
    b.output("acc", q, signed=True)
    return b.build()


def array_multiplier():
    """Unsigned 4 x 3 array multiplier (AND partial products, ripple rows) into a product register."""
    b = NetlistBuilder("mul")
    x, w = b.input("x", 4), b.input("w", 3)
    acc = [CONST0] * 7
    for j, wj in enumerate(w):
        row = [CONST0] * j + [b.gate("AND", xi, wj, group="pp") for xi in x] + [CONST0] * (3 - j)
        acc = _ripple_add(b, acc, row, "rows")
    b.output("p", b.register(acc, "product"))
    return b.build()


def every_kind():
    """Every gate kind (MUX, AOI3, OAI3, AOI4, OAI4 included) on a 12-bit input (two code bytes), a 3-bit
    input and a 3-bit state register fed back through the gates."""
    b = NetlistBuilder("zoo")
    a, s = b.input("a", 12, signed=True), b.input("s", 3)
    q = b.register_outputs(3, "state")
    n = [*a, *s, *q]
    g = [b.gate("NOT", n[0], group="g1"), b.gate("AND", n[1], n[13], group="g1"),
         b.gate("OR", n[2], n[15], group="g1"), b.gate("XOR", n[3], n[16], group="g1"),
         b.gate("NAND", n[4], n[11], group="g2"), b.gate("NOR", n[5], n[12], group="g2"),
         b.gate("XNOR", n[6], n[17], group="g2"), b.gate("ANDNOT", n[7], n[14], group="g2"),
         b.gate("ORNOT", n[8], n[9], group="g2")]
    g += [b.gate("MUX", g[0], g[1], n[12], group="g3"), b.gate("AOI3", g[2], g[3], n[10], group="g3"),
          b.gate("OAI3", g[4], g[5], g[6], group="g3"), b.gate("AOI4", g[7], g[8], n[16], n[0], group="g3"),
          b.gate("OAI4", g[1], g[6], n[17], n[3], group="g3")]
    g.append(b.gate("XOR", g[-5], g[-4], group="g1"))
    b.connect_registers(q, [g[-1], b.gate("XNOR", g[-3], q[0], group="g2"), b.gate("MUX", g[-4], q[2], q[1],
                                                                                   group="g3")])
    b.output("y", g[-4:])
    built = b.build()  # the builder folds BUF gates away: append one by hand
    buf = Gate("BUF", (g[-2],), built.n_nets, "g3")
    return dataclasses.replace(built, n_nets=built.n_nets + 1, gates=(*built.gates, buf),
                               outputs={**built.outputs, "buf": (buf.output,)})


def test_every_kind_netlist_has_every_gate_kind():
    assert set(every_kind().gate_counts()) == {*GATE_KINDS, "DFF"}


NETLISTS = {"accumulator": accumulator, "multiplier": array_multiplier, "every_kind": every_kind}


def streams_for(netlist, t, u, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for port, nets in netlist.inputs.items():
        lo = -(1 << (len(nets) - 1)) if port in netlist.signed else 0
        if port == "clear":
            out[port] = (rng.random((t, u)) < 0.2).astype(np.int64)
        else:
            out[port] = rng.integers(lo, lo + (1 << len(nets)), (t, u))
    return out


def reference(netlist, streams, fn=reference_toggles):
    """`fn` (a pure-Python evaluator of one lane) summed over the lanes."""
    t, u = next(iter(streams.values())).shape
    total = dict.fromkeys(netlist.groups, 0)
    for lane in range(u):
        for g, v in fn(netlist, [{p: int(s[k, lane]) for p, s in streams.items()} for k in range(t)]).items():
            total[g] += v
    return total


@pytest.mark.parametrize("name", NETLISTS)
def test_zero_delay_equals_the_python_reference(name):
    netlist = NETLISTS[name]()
    streams = streams_for(netlist, t=23, u=37, seed=1)  # U not a multiple of 32, T not a power of two
    got = simulate(netlist, streams)
    assert got.by_group == reference(netlist, streams)
    assert got.operations == 23 * 37 and got.by_group["inputs"] > 0


@pytest.mark.parametrize("name", NETLISTS)
def test_unit_delay_equals_its_reference_and_counts_at_least_zero_delay(name):
    netlist = NETLISTS[name]()
    streams = streams_for(netlist, t=13, u=35, seed=2)
    unit, zero = simulate(netlist, streams, delay="unit").by_group, simulate(netlist, streams).by_group
    assert unit == reference(netlist, streams, reference_toggles_unit_delay)
    assert all(unit[g] >= zero[g] for g in zero)
    assert unit["inputs"] == zero["inputs"]
    if name != "every_kind":  # adders glitch
        assert sum(unit.values()) > sum(zero.values())


def test_chunks_in_time_and_blocks_of_words_carry_the_state(monkeypatch):
    """Chunks of 8 steps (the last one partly held) and blocks of one word (the last one partly padded)."""
    netlist = accumulator()
    streams = streams_for(netlist, t=45, u=100, seed=3)
    want = reference(netlist, streams)
    monkeypatch.setattr(sim, "_MAX_CHUNK", 8)
    monkeypatch.setattr(sim, "_BLOCK_WORDS", 1)
    assert simulate(netlist, streams).by_group == want
    assert simulate(netlist, streams, delay="unit").by_group == reference(netlist, streams,
                                                                         reference_toggles_unit_delay)


def test_codes_are_read_as_their_low_bits_in_any_integer_dtype():
    netlist = every_kind()
    streams = streams_for(netlist, t=9, u=40, seed=4)
    want = reference(netlist, streams)
    wide = {"a": streams["a"] + 3 * 4096, "s": streams["s"] - 8}  # same low 12 / 3 bits
    assert simulate(netlist, wide).by_group == want
    narrow = {"a": streams["a"].astype(np.int16), "s": streams["s"].astype(np.uint8)}
    assert simulate(netlist, narrow).by_group == want


def test_a_second_call_with_the_same_shapes_reuses_the_compiled_function():
    netlist = array_multiplier()
    plan = sim._plan(netlist)
    simulate(netlist, streams_for(netlist, t=20, u=64, seed=5))
    traces = plan.traces
    again = streams_for(netlist, t=20, u=64, seed=6)
    assert simulate(netlist, again).by_group == reference(netlist, again)
    simulate(netlist, streams_for(netlist, t=27, u=64, seed=7))  # padded to the same 32 steps
    assert plan.traces == traces


def test_result_totals_and_means():
    r = GateToggles({"inputs": 6, "adder": 10}, 4)
    assert r.total == 16
    assert r.per_operation() == {"inputs": 1.5, "adder": 2.5, "total": 4.0}
    empty = simulate(accumulator(), {"a": np.zeros((0, 3), int), "clear": np.zeros((0, 3), int)})
    assert empty.total == 0 and empty.operations == 0


@pytest.mark.parametrize("streams, match", [
    ({"a": np.zeros((4, 3), int)}, "'clear'"),
    ({"a": np.zeros((4, 3), int), "clear": np.zeros((4, 2), int)}, "'clear'"),
    ({"a": np.zeros((4, 3), int), "clear": np.zeros(4, int)}, "'clear'"),
    ({"a": np.zeros((4, 3)), "clear": np.zeros((4, 3), int)}, "'a'"),
    ({"a": np.zeros((4, 3), int), "clear": np.zeros((4, 3), int), "b": np.zeros((4, 3), int)}, "'b'"),
])
def test_bad_streams_name_the_port(streams, match):
    with pytest.raises(ConfigError, match=match):
        simulate(accumulator(), streams)


def test_unknown_delay_mode():
    with pytest.raises(ConfigError, match="delay"):
        simulate(accumulator(), {"a": np.zeros((2, 2), int), "clear": np.zeros((2, 2), int)}, delay="rc")
