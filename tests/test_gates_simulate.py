"""The bit-packed gate-level simulator equals the pure-Python gate-by-gate evaluator, exactly."""

import numpy as np
import pytest

from pannjax.errors import ConfigError
from pannjax.hw.gates import generators as gen
from pannjax.hw.gates.netlist import GATE_KINDS, NetlistBuilder, gate_arity, reference_toggles
from pannjax.hw.gates.simulate import reference_toggles_unit_delay, simulate


def every_kind_netlist():
    """Every gate kind (incl. MUX, AOI/OAI), a register with feedback, groups of their own."""
    b = NetlistBuilder("zoo")
    a, c = b.input("a", 3), b.input("c", 2)
    state = b.register_outputs(2, "state")
    pool = [*a, *c, *state]
    outs = []
    for i, kind in enumerate(GATE_KINDS):
        ins = [pool[(i + 2 * j) % len(pool)] for j in range(gate_arity(kind))]
        if len(set(ins)) < len(ins):
            ins = pool[i % 3: i % 3 + gate_arity(kind)]
        out = b.gate(kind, *ins, group="g%d" % (i % 3))
        pool.append(out)
        outs.append(out)
    b.connect_registers(state, [outs[-1], outs[-4]])
    b.output("y", outs[-3:])
    return b.build()


def reference(netlist, streams):
    t, u = next(iter(streams.values())).shape
    total, total_ud = {}, {}
    for lane in range(u):
        ops = [{p: int(s[k, lane]) for p, s in streams.items()} for k in range(t)]
        for acc, fn in ((total, reference_toggles), (total_ud, reference_toggles_unit_delay)):
            for g, v in fn(netlist, ops).items():
                acc[g] = acc.get(g, 0) + v
    return total, total_ud


def random_streams(netlist, t, u, seed, clear_p=0.15):
    rng = np.random.default_rng(seed)
    out = {}
    for port, nets in netlist.inputs.items():
        if port == "clear":
            out[port] = (rng.random((t, u)) < clear_p).astype(np.int64)
        else:
            signed = port in netlist.signed
            lo = -(1 << (len(nets) - 1)) if signed else 0
            out[port] = rng.integers(lo, lo + (1 << len(nets)), (t, u))
    return out


@pytest.mark.parametrize("make", [every_kind_netlist, lambda: gen.mac_unit(3, 3, 10, True, True),
                                  lambda: gen.repeated_addition_unit(3, 8, "split"),
                                  lambda: gen.shift_accumulate_unit(3, 2, 12, True, adder_arch="kogge_stone")],
                         ids=["every_kind", "mac", "pann_split", "shift"])
def test_both_delays_equal_the_python_reference(make):
    netlist = make()
    streams = random_streams(netlist, t=23, u=37, seed=1)  # U not a multiple of 32, T not a power of two
    zero, unit = reference(netlist, streams)
    assert simulate(netlist, streams).by_group == zero
    got_unit = simulate(netlist, streams, delay="unit").by_group
    assert got_unit == unit
    assert all(got_unit[g] >= zero[g] for g in zero) and sum(got_unit.values()) > sum(zero.values())


def test_compiled_engine_equals_the_interpreted_one():
    netlist = gen.accumulator_unit(4, 8, True, "ripple")
    streams = random_streams(netlist, t=70, u=65, seed=2)
    fast = simulate(netlist, streams, engine="compiled")
    assert fast == simulate(netlist, streams) and fast.operations == 70 * 65
    assert fast.by_group == reference(netlist, streams)[0]


def test_long_streams_are_chunked_without_counter_overflow():
    netlist = gen.accumulator_unit(2, 4, True, "ripple")
    streams = random_streams(netlist, t=3000, u=64, seed=3)
    short = {p: s[:1500] for p, s in streams.items()}
    rest = simulate(netlist, streams).by_group
    head = simulate(netlist, short).by_group
    assert all(rest[g] > head[g] for g in rest)
    assert simulate(netlist, streams).per_operation()["total"] == pytest.approx(
        sum(rest.values()) / (3000 * 64))


def test_bad_streams_name_the_port():
    netlist = gen.mac_unit(2, 2, 8)
    ok = random_streams(netlist, 4, 4, 0)
    with pytest.raises(ConfigError, match="no stream for input port 'clear'"):
        simulate(netlist, {k: v for k, v in ok.items() if k != "clear"})
    with pytest.raises(ConfigError, match="'z' is not an input port"):
        simulate(netlist, {**ok, "z": ok["x"]})
    with pytest.raises(ConfigError, match="stream 'w' has shape"):
        simulate(netlist, {**ok, "w": ok["w"][:2]})
    with pytest.raises(ConfigError, match="delay='glitch'"):
        simulate(netlist, ok, delay="glitch")
    with pytest.raises(ConfigError, match="engine='compiled' simulates zero delay"):
        simulate(netlist, ok, delay="unit", engine="compiled")


def test_a_broken_gate_changes_the_count():
    """Negative control: one gate's kind changed gives different toggles on the same streams."""
    import dataclasses

    netlist = gen.mac_unit(3, 3, 8)
    k = next(i for i, g in enumerate(netlist.gates) if g.kind == "XOR")
    broken = dataclasses.replace(netlist, gates=netlist.gates[:k] + (dataclasses.replace(netlist.gates[k], kind="OR"),)
                                 + netlist.gates[k + 1:])
    streams = random_streams(netlist, 16, 64, 4)
    assert simulate(broken, streams).by_group != simulate(netlist, streams).by_group
