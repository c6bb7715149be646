"""Gate-level generators against Python integer arithmetic and the operators' own integer functions.

Small widths are checked exhaustively with the pure-Python `evaluate`; 8-bit operands (65536 pairs) and
long streams with `run_batch`, a vectorised numpy evaluator below (one uint8 array per net, one lane per
operand pair or per independent stream), itself checked against `evaluate` and `eval_gate`.
"""

import dataclasses
import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from pannjax.errors import ConfigError
from pannjax.hw.gates import generators as gen
from pannjax.hw.gates.netlist import CONST0, CONST1, GATE_KINDS, NetlistBuilder, eval_gate, evaluate, gate_arity
from pannjax.ops.adder import adder_conv
from pannjax.ops.mf import MfOperator
from pannjax.ops.shift import shift_accumulate
from pannjax.ops.xnor import xnor_popcount_dense
from pannjax.quant.pann import repeated_addition_dot

SIGNEDNESS = list(itertools.product((False, True), repeat=2))  # (x_signed, w_signed): uu, us, su, ss

# ---------------------------------------------------------------------------------------------------
# Evaluation helpers
# ---------------------------------------------------------------------------------------------------

VECTOR_GATES = {
    "BUF": lambda a: a, "NOT": lambda a: 1 ^ a, "AND": lambda a, b: a & b, "OR": lambda a, b: a | b,
    "XOR": lambda a, b: a ^ b, "NAND": lambda a, b: 1 ^ (a & b), "NOR": lambda a, b: 1 ^ (a | b),
    "XNOR": lambda a, b: 1 ^ a ^ b, "ANDNOT": lambda a, b: a & (1 ^ b), "ORNOT": lambda a, b: a | (1 ^ b),
    "MUX": lambda a, b, s: a ^ ((a ^ b) & s), "AOI3": lambda a, b, c: 1 ^ ((a & b) | c),
    "OAI3": lambda a, b, c: 1 ^ ((a | b) & c), "AOI4": lambda a, b, c, d: 1 ^ ((a & b) | (c & d)),
    "OAI4": lambda a, b, c, d: 1 ^ ((a | b) & (c | d)),
}


def run_batch(netlist, streams):
    """Outputs after each operation, {port: int64 (T, N)}, for N independent streams {port: (T, N) codes}
    (the semantics of `evaluate`, every lane from reset)."""
    steps, lanes = np.shape(next(iter(streams.values())))
    vals = np.zeros((netlist.n_nets, lanes), np.uint8)
    vals[CONST1] = 1
    state = {r.q: np.zeros(lanes, np.uint8) for r in netlist.registers}
    out = {p: np.zeros((steps, lanes), np.int64) for p in netlist.outputs}
    for t in range(steps):
        for port, nets in netlist.inputs.items():
            code = np.asarray(streams[port][t], np.int64)
            for k, n in enumerate(nets):
                vals[n] = (code >> k) & 1
        for q, v in state.items():
            vals[q] = v
        for g in netlist.gates:
            vals[g.output] = VECTOR_GATES[g.kind](*(vals[i] for i in g.inputs))
        for port, nets in netlist.outputs.items():
            v = sum(vals[n].astype(np.int64) << k for k, n in enumerate(nets))
            out[port][t] = v - ((v >> (len(nets) - 1)) << len(nets)) if port in netlist.signed else v
        state = {r.q: vals[r.d].copy() for r in netlist.registers}
    return out


def run_once(netlist, operands):
    """Combinational netlist on N operand sets {port: (N,)}: {port: (N,)}."""
    return {p: v[0] for p, v in run_batch(netlist, {p: np.asarray(v)[None] for p, v in operands.items()}).items()}


def int_range(bits, signed):
    return np.arange(-(2 ** (bits - 1)), 2 ** (bits - 1)) if signed else np.arange(2 ** bits)


def all_pairs(n, n_signed, m, m_signed):
    a, c = np.meshgrid(int_range(n, n_signed), int_range(m, m_signed), indexing="ij")
    return a.ravel(), c.ravel()


def wrap(v, bits):
    return ((v + 2 ** (bits - 1)) % 2 ** bits) - 2 ** (bits - 1)


def running_sums(terms, clear, bits, signed=True):
    """acc after each operation: (clear ? 0 : acc) + term, mod 2^bits (two's complement or unsigned);
    arrays (T, ...) of Python-sized ints in int64."""
    acc, out = np.zeros(np.shape(terms)[1:], np.int64), []
    for t, c in zip(terms, clear):
        acc = np.where(c, 0, acc) + t
        acc = wrap(acc, bits) if signed else acc % 2 ** bits
        out.append(acc)
    return np.array(out)


def random_clear(rng, steps, lanes, p=0.15):
    clear = rng.random((steps, lanes)) < p
    clear[0] = True
    return clear.astype(np.int64)


def block(ports, body, name="block"):
    """A combinational netlist around a generator block: ports {name: (bits, signed)}; body(b, **nets)
    returns {output port: (nets, signed)}."""
    b = NetlistBuilder(name)
    nets = {p: b.input(p, bits, signed) for p, (bits, signed) in ports.items()}
    for port, (outs, signed) in body(b, **nets).items():
        b.output(port, outs, signed=signed)
    return b.build()


# ---------------------------------------------------------------------------------------------------
# The evaluator itself
# ---------------------------------------------------------------------------------------------------

def test_vector_gates_match_eval_gate():
    for kind in GATE_KINDS:
        for ins in itertools.product((0, 1), repeat=gate_arity(kind)):
            vec = VECTOR_GATES[kind](*(np.array([v], np.uint8) for v in ins))
            assert int(vec[0]) == eval_gate(kind, ins), (kind, ins)


def test_run_batch_matches_evaluate_on_a_sequential_unit():
    nl = gen.mac_unit(4, 3, 9, x_signed=True, w_signed=False, mult_arch="booth4", adder_arch="brent_kung")
    rng = np.random.default_rng(0)
    x, w, clear = rng.integers(-8, 8, (40, 3)), rng.integers(0, 8, (40, 3)), random_clear(rng, 40, 3, 0.2)
    batch = run_batch(nl, {"x": x, "w": w, "clear": clear})["acc"]
    for lane in range(3):
        ref = evaluate(nl, [{"x": x[t, lane], "w": w[t, lane], "clear": clear[t, lane]} for t in range(40)])
        assert [r["acc"] for r in ref] == batch[:, lane].tolist()


# ---------------------------------------------------------------------------------------------------
# Multipliers
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", list(gen.MULTIPLIERS))
@pytest.mark.parametrize("x_signed,w_signed", SIGNEDNESS)
def test_multiplier_exhaustive_small(arch, x_signed, w_signed):
    """Every operand pair of every shape up to 4 x 4 bits, pure-Python evaluator."""
    for n, m in itertools.product(range(1, 5), repeat=2):
        nl = gen.multiplier_unit(n, m, x_signed, w_signed, arch)
        assert nl.width("p") == n + m and ("p" in nl.signed) == (x_signed or w_signed)
        xs, ws = all_pairs(n, x_signed, m, w_signed)
        got = [r["p"] for r in evaluate(nl, [{"x": int(a), "w": int(c)} for a, c in zip(xs, ws)])]
        assert got == (xs * ws).tolist(), (n, m)


@pytest.mark.parametrize("arch", list(gen.MULTIPLIERS))
@pytest.mark.parametrize("x_signed,w_signed", SIGNEDNESS)
def test_multiplier_exhaustive_8bit(arch, x_signed, w_signed):
    nl = gen.multiplier_unit(8, 8, x_signed, w_signed, arch)
    xs, ws = all_pairs(8, x_signed, 8, w_signed)
    np.testing.assert_array_equal(run_once(nl, {"x": xs, "w": ws})["p"], xs * ws)


@pytest.mark.parametrize("arch", list(gen.MULTIPLIERS))
def test_multiplier_odd_shapes_exhaustive(arch):
    for (n, m), (x_signed, w_signed) in itertools.product([(8, 3), (3, 8), (5, 7), (7, 6)], SIGNEDNESS):
        nl = gen.multiplier_unit(n, m, x_signed, w_signed, arch)
        xs, ws = all_pairs(n, x_signed, m, w_signed)
        np.testing.assert_array_equal(run_once(nl, {"x": xs, "w": ws})["p"], xs * ws, err_msg=f"{n}x{m}")


def test_multiplier_wide_random():
    """16 x 13 bits: the textbook generators (yosys blocks are shipped up to 8 x 8)."""
    rng = np.random.default_rng(1)
    textbook = [a for a in gen.MULTIPLIERS if a != "yosys"]
    for arch, (x_signed, w_signed) in itertools.product(textbook, SIGNEDNESS):
        nl = gen.multiplier_unit(16, 13, x_signed, w_signed, arch)
        xs = rng.choice(int_range(16, x_signed), 2000)
        ws = rng.choice(int_range(13, w_signed), 2000)
        xs[:2], ws[:2] = xs.min(initial=0), ws.min(initial=0)  # include the extreme codes
        np.testing.assert_array_equal(run_once(nl, {"x": xs, "w": ws})["p"], xs * ws, err_msg=arch)


def test_unsigned_baugh_wooley_is_the_array_multiplier():
    bw, arr = gen.multiplier_unit(6, 5, False, False, "baugh_wooley"), gen.multiplier_unit(6, 5, False, False, "array")
    assert bw.gates == arr.gates and bw.outputs == arr.outputs


def test_negative_control_one_corrupted_gate_is_detected():
    """AND -> OR in one gate of a copy: the exhaustive check finds it (and every such corruption)."""
    nl = gen.multiplier_unit(4, 4, True, True, "baugh_wooley")
    xs, ws = all_pairs(4, True, 4, True)
    ands = [i for i, g in enumerate(nl.gates) if g.kind == "AND"]
    assert ands
    for i in ands:
        gates = list(nl.gates)
        gates[i] = dataclasses.replace(gates[i], kind="OR")
        bad = dataclasses.replace(nl, gates=tuple(gates))
        wrong = int(np.sum(run_once(bad, {"x": xs, "w": ws})["p"] != xs * ws))
        assert wrong > 0, f"corrupting gate {i} went unnoticed"
    first = dataclasses.replace(nl, gates=tuple(dataclasses.replace(g, kind="OR") if i == ands[0] else g
                                                for i, g in enumerate(nl.gates)))
    got = [r["p"] for r in evaluate(first, [{"x": int(a), "w": int(c)} for a, c in zip(xs, ws)])]
    assert got != (xs * ws).tolist()


# ---------------------------------------------------------------------------------------------------
# Adders
# ---------------------------------------------------------------------------------------------------

def adder_block(arch, bits):
    """The ADDERS block itself: inputs a, c (bits), cin; outputs s, cout."""
    def body(b, a, c, cin):
        s, cout = gen.ADDERS[arch](b, a, c, cin[0], "adder")
        return {"s": (s, False), "cout": ([cout], False)}

    return block({"a": (bits, False), "c": (bits, False), "cin": (1, False)}, body)


@pytest.mark.parametrize("arch", list(gen.ADDERS))
def test_adder_block_exhaustive_small(arch):
    """a + b + cin = s + 2^n cout for every input, widths 1..6, pure-Python evaluator."""
    for bits in range(1, 7):
        nl = adder_block(arch, bits)
        cases = list(itertools.product(range(2 ** bits), range(2 ** bits), (0, 1)))
        got = evaluate(nl, [{"a": a, "c": c, "cin": k} for a, c, k in cases])
        assert [r["s"] + (r["cout"] << bits) for r in got] == [a + c + k for a, c, k in cases], bits


@pytest.mark.parametrize("arch", list(gen.ADDERS))
def test_adder_block_8bit_exhaustive_and_wide_random(arch):
    rng = np.random.default_rng(2)
    for bits in (7, 8, 13, 16, 31, 32):
        nl = adder_block(arch, bits)
        if bits <= 8:
            a, c = all_pairs(bits, False, bits, False)
            a, c = np.tile(a, 2), np.tile(c, 2)
            k = np.repeat([0, 1], a.size // 2)
        else:
            a, c, k = rng.integers(0, 2 ** bits, 3000), rng.integers(0, 2 ** bits, 3000), rng.integers(0, 2, 3000)
            a[:2], c[:2] = 2 ** bits - 1, [2 ** bits - 1, 0]  # longest carry chains
        out = run_once(nl, {"a": a, "c": c, "cin": k})
        np.testing.assert_array_equal(out["s"] + (out["cout"] << bits), a + c + k, err_msg=f"{bits} bits")


@pytest.mark.parametrize("arch", list(gen.ADDERS))
@pytest.mark.parametrize("signed", (False, True))
def test_adder_unit_exact_sum(arch, signed):
    for bits in range(1, 9):
        nl = gen.adder_unit(bits, signed, arch)
        assert nl.width("s") == bits + 1
        a, c = all_pairs(bits, signed, bits, signed)
        np.testing.assert_array_equal(run_once(nl, {"a": a, "b": c})["s"], a + c, err_msg=f"{bits} bits")


@pytest.mark.parametrize("arch", list(gen.ADDERS))
def test_subtractor_unit_exact_difference(arch):
    for bits in range(1, 9):
        nl = gen.subtractor_unit(bits, arch)
        a, c = all_pairs(bits, False, bits, False)
        np.testing.assert_array_equal(run_once(nl, {"a": a, "b": c})["d"], a - c, err_msg=f"{bits} bits")
    a = np.array([0, 2**32 - 1, 2**31, 12345], np.int64)  # an accumulator-wide one (the yosys block at 32)
    c = np.array([2**32 - 1, 0, 2**31 - 1, 54321], np.int64)
    np.testing.assert_array_equal(run_once(gen.subtractor_unit(32, arch), {"a": a, "b": c})["d"], a - c)


def test_prefix_networks_are_shallow():
    """Kogge-Stone: ceil(log2 n) levels; Brent-Kung: at most 2 ceil(log2 n) - 1 levels, fewer cells."""
    for n in range(2, 40):
        depth = (n - 1).bit_length()
        ks, bk = gen._kogge_stone_levels(n), gen._brent_kung_levels(n)
        assert len(ks) == depth and len(bk) <= 2 * depth - 1
        assert sum(map(len, bk)) <= sum(map(len, ks)) and sum(map(len, bk)) < 2 * n


# ---------------------------------------------------------------------------------------------------
# Helper blocks
# ---------------------------------------------------------------------------------------------------

def test_extend():
    assert gen.extend([5, 6], 4, True) == [5, 6, 6, 6]
    assert gen.extend([5, 6], 4, False) == [5, 6, CONST0, CONST0]
    with pytest.raises(ConfigError, match="extend"):
        gen.extend([5, 6, 7], 2, True)


@pytest.mark.parametrize("bits", range(1, 6))
def test_negation_and_absolute_value(bits):
    nl = block({"v": (bits, True), "c": (1, False)}, lambda b, v, c: {
        "cond": (gen.conditional_negate(b, gen.extend(v, bits + 1, True), c[0], "negate"), True),
        "neg": (gen.negate(b, gen.extend(v, bits + 1, True), "negate"), True),
        "abs": (gen.absolute(b, v, "negate"), False),
        "wrapped": (gen.negate(b, v, "negate"), True)})
    v, c = all_pairs(bits, True, 1, False)
    out = run_once(nl, {"v": v, "c": c})
    np.testing.assert_array_equal(out["cond"], np.where(c == 1, -v, v))
    np.testing.assert_array_equal(out["neg"], -v)
    np.testing.assert_array_equal(out["abs"], np.abs(v))
    np.testing.assert_array_equal(out["wrapped"], wrap(-v, bits))


@pytest.mark.parametrize("signed,invert", list(itertools.product((False, True), repeat=2)))
def test_barrel_shifter(signed, invert):
    for bits, k in ((1, 1), (4, 2), (5, 3)):
        nl = block({"v": (bits, signed), "a": (k, False)},
                   lambda b, v, a: {"y": (gen.barrel_shift_left(b, v, a, signed, "shifter", invert), signed)})
        assert nl.width("y") == bits + 2 ** k - 1
        v, a = all_pairs(bits, signed, k, False)
        amount = (2 ** k - 1 - a) if invert else a
        np.testing.assert_array_equal(run_once(nl, {"v": v, "a": a})["y"], v << amount)


def test_popcount_and_any_bit():
    for n in range(1, 11):
        nl = block({"v": (n, False)}, lambda b, v: {"count": (gen.popcount(b, v, "popcount"), False),
                                                    "any": ([gen.any_bit(b, v, "logic")], False)})
        assert nl.width("count") == n.bit_length()
        v = np.arange(2 ** n)
        out = run_once(nl, {"v": v})
        np.testing.assert_array_equal(out["count"], [bin(int(u)).count("1") for u in v])
        np.testing.assert_array_equal(out["any"], v != 0)


def test_full_adder_with_constants():
    for ins in itertools.product((CONST0, CONST1, "a", "b", "c"), repeat=3):
        b = NetlistBuilder("fa")
        nets = dict(zip("abc", b.input("v", 3)))
        s, c = gen.full_adder(b, *(nets.get(i, i) for i in ins), "adder")
        b.output("s", [s])
        b.output("c", [c])
        nl = b.build()
        assert all(i not in (CONST0, CONST1) for g in nl.gates for i in g.inputs)
        for v in range(8):
            bits = {k: (v >> j) & 1 for j, k in enumerate("abc")}
            total = sum(bits.get(i, i) for i in ins)
            r = evaluate(nl, [{"v": v}])[0]
            assert r["s"] + 2 * r["c"] == total, ins


# ---------------------------------------------------------------------------------------------------
# Accumulators: adversarial streams
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", list(gen.ADDERS))
def test_accumulator_adversarial_b16(arch):
    """Sign flips every step, sums overflowing 16 bits both ways, clears in the middle."""
    nl = gen.accumulator_unit(16, 16, True, arch)
    big = [32767, -32768, 32767, 32767, -32768, -32768, -1, 1, 30000, 30000, 30000, -30000, -30000, -30000]
    terms = np.array(big * 3 + [(-1) ** t * (12345 + 997 * t) for t in range(40)])
    clear = np.zeros(terms.size, np.int64)
    clear[[0, 7, 20, 21, 50]] = 1
    got = run_batch(nl, {"q": terms[:, None], "clear": clear[:, None]})["acc"][:, 0]
    ref = running_sums(terms[:, None], clear[:, None], 16)[:, 0]
    np.testing.assert_array_equal(got, ref)
    assert np.any(np.abs(np.cumsum(terms)) > 2 ** 15)  # the stream does overflow
    py = [r["acc"] for r in evaluate(nl, [{"q": int(q), "clear": int(c)} for q, c in zip(terms, clear)])]
    assert py == ref.tolist()


@pytest.mark.parametrize("signed", (False, True))
def test_accumulator_narrow_addend(signed):
    rng = np.random.default_rng(3)
    nl = gen.accumulator_unit(5, 16, signed, "kogge_stone")
    terms, clear = rng.choice(int_range(5, signed), (200, 8)), random_clear(rng, 200, 8, 0.05)
    np.testing.assert_array_equal(run_batch(nl, {"q": terms, "clear": clear})["acc"], running_sums(terms, clear, 16))


@pytest.mark.parametrize("mult_arch", list(gen.MULTIPLIERS))
def test_mac_wraps_at_16_bits(mult_arch):
    x = np.array([-128, -128, 127, -128, -128, -128, 127, 127, -1, 5, -128, -128] * 4)
    w = np.array([-128, 127, -128, -128, -128, -128, 127, -128, 1, -7, -128, -128] * 4)
    clear = np.zeros(x.size, np.int64)
    clear[[0, 9, 30]] = 1
    nl = gen.mac_unit(8, 8, 16, mult_arch=mult_arch)
    got = run_batch(nl, {"x": x[:, None], "w": w[:, None], "clear": clear[:, None]})["acc"][:, 0]
    np.testing.assert_array_equal(got, running_sums((x * w)[:, None], clear[:, None], 16)[:, 0])


# ---------------------------------------------------------------------------------------------------
# Units: random streams against their integer definitions
# ---------------------------------------------------------------------------------------------------

STEPS, LANES = 48, 32


@pytest.mark.parametrize("mult_arch,adder_arch", list(itertools.product(gen.MULTIPLIERS, gen.ADDERS)))
def test_mac_unit_random(mult_arch, adder_arch):
    rng = np.random.default_rng(4)
    for x_signed, w_signed in SIGNEDNESS:
        nl = gen.mac_unit(6, 5, 20, x_signed, w_signed, mult_arch, adder_arch)
        x, w = rng.choice(int_range(6, x_signed), (STEPS, LANES)), rng.choice(int_range(5, w_signed), (STEPS, LANES))
        clear = random_clear(rng, STEPS, LANES)
        got = run_batch(nl, {"x": x, "w": w, "clear": clear})["acc"]
        np.testing.assert_array_equal(got, running_sums(x * w, clear, 20))


@pytest.mark.parametrize("accumulation", gen.ACCUMULATIONS)
def test_repeated_addition_unit_random(accumulation):
    rng = np.random.default_rng(5)
    nl = gen.repeated_addition_unit(6, 12, accumulation, "brent_kung")
    x, neg, clear = rng.integers(0, 64, (STEPS * 2, LANES)), rng.integers(0, 2, (STEPS * 2, LANES)), \
        random_clear(rng, STEPS * 2, LANES)
    out = run_batch(nl, {"x": x, "neg": neg, "clear": clear})
    if accumulation == "split":
        np.testing.assert_array_equal(out["acc_pos"], running_sums(x * (1 - neg), clear, 12, signed=False))
        np.testing.assert_array_equal(out["acc_neg"], running_sums(x * neg, clear, 12, signed=False))
        assert not nl.signed
    else:
        np.testing.assert_array_equal(out["acc"], running_sums(np.where(neg == 1, -x, x), clear, 12))


@pytest.mark.parametrize("accumulation", gen.ACCUMULATIONS)
def test_repeated_addition_unit_matches_repeated_addition_dot(accumulation):
    """One dot product as PANN runs it: x_i added |w_i| times, then y = acc_pos - acc_neg (or acc)."""
    rng = np.random.default_rng(6)
    x, w = rng.integers(0, 16, 24), rng.integers(-5, 6, 24)
    ops = [(int(xi), int(wi < 0)) for xi, wi in zip(x, w) for _ in range(abs(int(wi)))]
    stream = [{"x": xi, "neg": n, "clear": int(t == 0)} for t, (xi, n) in enumerate(ops)]
    last = evaluate(gen.repeated_addition_unit(4, 16, accumulation), stream)[-1]
    y, additions = repeated_addition_dot(x[None], w[:, None], accumulation)
    assert additions == len(ops)
    assert (last["acc_pos"] - last["acc_neg"] if accumulation == "split" else last["acc"]) == int(y[0, 0])


@pytest.mark.parametrize("x_signed", (False, True))
@pytest.mark.parametrize("shift_bits", (1, 2, 3))
def test_shift_accumulate_unit_matches_shift_accumulate(x_signed, shift_bits):
    """Every prefix of the stream (segments restart at clears) against `pannjax.ops.shift.shift_accumulate`."""
    rng = np.random.default_rng(7 + shift_bits)
    max_shift = 2 ** shift_bits - 1
    nl = gen.shift_accumulate_unit(5, shift_bits, 24, x_signed)
    x = rng.choice(int_range(5, x_signed), (STEPS, LANES))
    sign, shift = rng.integers(-1, 2, (STEPS, LANES)), rng.integers(0, max_shift + 1, (STEPS, LANES))
    x[0, 0], sign[0, 0], shift[0, 0] = x.min(), -1, 0  # the largest term
    clear = random_clear(rng, STEPS, LANES)
    got = run_batch(nl, {"x": x, "sign": sign, "shift": shift, "clear": clear})["acc"]
    np.testing.assert_array_equal(got, running_sums(sign * (x << (max_shift - shift)), clear, 24))
    for lane in range(4):  # prefix t: the operations since the last clear, as one dot product
        start = np.maximum.accumulate(np.where(clear[:, lane] == 1, np.arange(STEPS), 0))
        t, i = np.meshgrid(np.arange(STEPS), np.arange(STEPS), indexing="ij")
        rows = np.where((i <= t) & (i >= start[:, None]), x[None, :, lane], 0)
        ref = shift_accumulate(jnp.asarray(rows), jnp.asarray(sign[:, lane:lane + 1]),
                               jnp.asarray(shift[:, lane:lane + 1]), max_shift)
        np.testing.assert_array_equal(got[:, lane], np.asarray(ref)[:, 0])


def test_shift_unit_zero_and_unused_sign_codes_add_nothing():
    nl = gen.shift_accumulate_unit(4, 2, 16, True)
    stream = [{"x": -8, "sign": -1, "shift": 0, "clear": 1}, {"x": 7, "sign": 0, "shift": 1, "clear": 0},
              {"x": -3, "sign": -2, "shift": 3, "clear": 0}, {"x": -3, "sign": 1, "shift": 3, "clear": 0}]
    assert [r["acc"] for r in evaluate(nl, stream)] == [64, 64, 64, 61]


@pytest.mark.parametrize("signed", (False, True))
def test_absdiff_unit_random(signed):
    rng = np.random.default_rng(8)
    nl = gen.absdiff_accumulate_unit(5, 4, 14, signed, "kogge_stone")
    x, w = rng.choice(int_range(5, signed), (STEPS, LANES)), rng.choice(int_range(4, signed), (STEPS, LANES))
    clear = random_clear(rng, STEPS, LANES)
    got = run_batch(nl, {"x": x, "w": w, "clear": clear})["acc"]
    np.testing.assert_array_equal(got, running_sums(-np.abs(x - w), clear, 14))


def test_absdiff_unit_matches_adder_conv():
    """A dense AdderNet output -sum_i |x_i - w_i| (`pannjax.ops.adder.adder_conv`, 1x1)."""
    rng = np.random.default_rng(9)
    x, w = rng.integers(-128, 128, 40), rng.integers(-128, 128, 40)
    x[:2], w[:2] = [-128, 127], [127, -128]
    stream = [{"x": int(a), "w": int(c), "clear": int(t == 0)} for t, (a, c) in enumerate(zip(x, w))]
    acc = evaluate(gen.absdiff_accumulate_unit(8, 8), stream)[-1]["acc"]
    ref = adder_conv(jnp.asarray(x, jnp.float32).reshape(1, 1, 1, -1), jnp.asarray(w, jnp.float32).reshape(1, 1, -1, 1),
                     (1, 1), ((0, 0), (0, 0)), 1, "full_precision")
    assert acc == int(ref[0, 0, 0, 0]) == -int(np.abs(x - w).sum())


@pytest.mark.parametrize("x_signed", (False, True))
def test_sign_select_unit_random(x_signed):
    rng = np.random.default_rng(10)
    nl = gen.sign_select_unit(6, 12, x_signed, "brent_kung")
    x, s, clear = rng.choice(int_range(6, x_signed), (STEPS, LANES)), rng.integers(0, 2, (STEPS, LANES)), \
        random_clear(rng, STEPS, LANES)
    got = run_batch(nl, {"x": x, "s": s, "clear": clear})["acc"]
    np.testing.assert_array_equal(got, running_sums(np.where(s == 1, -x, x), clear, 12))


@pytest.mark.parametrize("x_signed,w_signed", SIGNEDNESS)
def test_mf_unit_random(x_signed, w_signed):
    rng = np.random.default_rng(11)
    nl = gen.mf_unit(5, 4, 14, x_signed, w_signed)
    x, w = rng.choice(int_range(5, x_signed), (STEPS, LANES)), rng.choice(int_range(4, w_signed), (STEPS, LANES))
    x[:4, 0], w[:4, 0] = [0, -16 * x_signed, 0, 3], [0, -8 * w_signed, 5, 0]
    clear = random_clear(rng, STEPS, LANES)
    got = run_batch(nl, {"x": x, "w": w, "clear": clear})["acc"]
    np.testing.assert_array_equal(got, running_sums(np.sign(x) * np.abs(w) + np.sign(w) * np.abs(x), clear, 14))


def test_mf_unit_matches_mf_operator():
    rng = np.random.default_rng(12)
    x, w = rng.integers(-128, 128, 30), rng.integers(-128, 128, 30)
    x[:3], w[:3] = [0, -128, -128], [7, -128, 0]
    stream = [{"x": int(a), "w": int(c), "clear": int(t == 0)} for t, (a, c) in enumerate(zip(x, w))]
    acc = evaluate(gen.mf_unit(8, 8), stream)[-1]["acc"]
    ref = MfOperator().dense_digital(jnp.asarray(x[None], jnp.float32), jnp.asarray(w[:, None], jnp.float32))
    assert acc == int(ref[0, 0])


def test_xnor_popcount_unit_random_and_against_xnor_popcount_dense():
    rng = np.random.default_rng(13)
    n = 11
    nl = gen.xnor_popcount_unit(n, 10)
    x, w = rng.integers(0, 2 ** n, (STEPS, LANES)), rng.integers(0, 2 ** n, (STEPS, LANES))
    clear = random_clear(rng, STEPS, LANES)
    got = run_batch(nl, {"x": x, "w": w, "clear": clear})["acc"]
    agree = np.vectorize(lambda v: bin(v).count("1"))(~(x ^ w) & (2 ** n - 1))
    np.testing.assert_array_equal(got, running_sums(agree, clear, 10))
    # one output of K = 6 operations: the +-1 dot product of the K n bits is 2 acc - n K
    k = 6
    acc = evaluate(nl, [{"x": int(x[t, 0]), "w": int(w[t, 0]), "clear": int(t == 0)} for t in range(k)])[-1]["acc"]

    def signs(words):  # bit 1 -> +1, bit 0 -> -1, word after word
        return jnp.asarray([2.0 * ((int(u) >> j) & 1) - 1 for u in words for j in range(n)])

    assert 2 * acc - n * k == int(xnor_popcount_dense(signs(x[:k, 0])[None], signs(w[:k, 0])[:, None])[0, 0])


# ---------------------------------------------------------------------------------------------------
# Structure, dispatcher, argument checks
# ---------------------------------------------------------------------------------------------------

def _all_units():
    units = [gen.mac_unit(8, 8, 32, xs, ws, m, a) for m in gen.MULTIPLIERS for a in gen.ADDERS for xs, ws in SIGNEDNESS]
    units += [gen.repeated_addition_unit(8, 32, acc) for acc in gen.ACCUMULATIONS]
    units += [gen.shift_accumulate_unit(8, k, 32, s) for k in (1, 4) for s in (False, True)]
    units += [gen.absdiff_accumulate_unit(8, 6, 32, s) for s in (False, True)]
    units += [gen.sign_select_unit(8, 32, s) for s in (False, True)]
    units += [gen.mf_unit(8, 5, 32, xs, ws) for xs, ws in SIGNEDNESS]
    units += [gen.xnor_popcount_unit(n) for n in (1, 3, 64)]
    units += [gen.accumulator_unit(8, 16, s, a) for s in (False, True) for a in gen.ADDERS]
    units += [gen.adder_unit(n, s, a) for n in (1, 8) for s in (False, True) for a in gen.ADDERS]
    return units


def test_netlists_hold_only_gates_synthesis_would_keep():
    """No constant gate input, no duplicate gate, no dead gate; known group labels; acc registers."""
    labels = {"multiplier", "adder", "accumulator", "mux", "shifter", "negate", "absdiff", "mf", "popcount", "inputs"}
    for nl in _all_units():
        assert all(i not in (CONST0, CONST1) for g in nl.gates for i in g.inputs), nl.name
        keys = [(g.kind, tuple(sorted(g.inputs)) if g.kind in gen._SYMMETRIC else g.inputs) for g in nl.gates]
        assert len(set(keys)) == len(keys), nl.name
        assert len(gen.sweep(nl).gates) == len(nl.gates), nl.name
        assert set(nl.groups) <= labels, (nl.name, nl.groups)
        assert all(r.group == "accumulator" for r in nl.registers)


def test_mac_8x8_gate_counts():
    """Pin the 8x8 signed MAC sizes (32-bit ripple accumulator: 32 DFF, 32 ANDNOT clear gates)."""
    counts = {m: sum(n for k, n in gen.mac_unit(8, 8, mult_arch=m, adder_arch="ripple").gate_counts().items()
                     if k != "DFF") for m in gen.MULTIPLIERS}
    assert counts == {"yosys": 525, "array": 371, "baugh_wooley": 351, "booth4": 372}
    assert gen.mac_unit(8, 8).gate_counts()["DFF"] == 32
    adders = {a: len(gen.adder_unit(32, True, a).gates) for a in gen.ADDERS if a != "yosys"}
    assert adders == {"ripple": 96, "brent_kung": 236, "kogge_stone": 452}


def test_unit_netlist_dispatch_and_cache():
    a = gen.unit_netlist("mac", x_bits=8, w_bits=8)
    assert a is gen.unit_netlist("mac", x_bits=8, w_bits=8, acc_bits=32, mult_arch="yosys", adder_arch="yosys")
    assert a.gates == gen.mac_unit(8, 8).gates
    assert gen.unit_netlist("add", x_bits=4).outputs.keys() == {"acc_pos", "acc_neg"}
    assert set(gen.UNITS) == {"mult", "mac", "add", "shift", "absdiff", "sign_select", "mf", "xnor", "adder",
                              "subtractor", "accumulator"}
    with pytest.raises(ConfigError, match="unit="):
        gen.unit_netlist("divider")
    with pytest.raises(ConfigError, match="unit 'mac'"):
        gen.unit_netlist("mac", x_bits=8, w_bits=8, bogus=1)
    with pytest.raises(ConfigError, match="x_bits=True"):
        gen.unit_netlist("mac", x_bits=True, w_bits=1)


@pytest.mark.parametrize("call,match", [
    (lambda: gen.mac_unit(0, 8), "x_bits=0"),
    (lambda: gen.mac_unit(8, 17), "w_bits=17"),
    (lambda: gen.mac_unit(True, 8), "x_bits=True"),
    (lambda: gen.mac_unit(8, 8, 15), "acc_bits=15: expected an integer in 16..64"),
    (lambda: gen.mac_unit(8, 8, mult_arch="wallace"), "mult_arch='wallace'"),
    (lambda: gen.mac_unit(8, 8, adder_arch="carry_select"), "adder_arch='carry_select'"),
    (lambda: gen.multiplier_unit(8, 8, arch="dadda"), "arch='dadda'"),
    (lambda: gen.repeated_addition_unit(8, accumulation="both"), "accumulation='both'"),
    (lambda: gen.repeated_addition_unit(8, 8, "signed"), "acc_bits=8"),
    (lambda: gen.shift_accumulate_unit(8, 5), "shift_bits=5"),
    (lambda: gen.shift_accumulate_unit(8, 4, 23), "acc_bits=23"),
    (lambda: gen.absdiff_accumulate_unit(8, 8, 8), "acc_bits=8"),
    (lambda: gen.xnor_popcount_unit(0), "n=0"),
    (lambda: gen.adder_unit(8, arch="ripple_carry"), "arch='ripple_carry'"),
])
def test_config_errors(call, match):
    with pytest.raises(ConfigError, match=match):
        call()
