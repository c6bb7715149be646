"""yosys JSON import and the shipped yosys-synthesized blocks, checked exhaustively against integer arithmetic.

Needs no yosys: the fixtures under tests/data/ were made by scripts/synth_netlist.sh (commands in the .v files).
"""

import copy
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from pannjax.errors import ConfigError
from pannjax.hw.gates.library import FAMILIES, family_info, synthesized_block, synthesized_blocks
from pannjax.hw.gates.netlist import Gate, Netlist, NetlistBuilder, eval_gate, evaluate, from_bits
from pannjax.hw.gates.yosys_json import load_yosys_json

DATA = Path(__file__).parent / "data"
MULT = DATA / "yosys_mult4x4_ss.json"
MAC = DATA / "yosys_mac2x2_acc4.json"



def np_outputs(netlist: Netlist, ops: dict) -> dict:
    """Combinational outputs for a batch of operand codes (int64 arrays), every net a uint8 array;
    signed output ports read as two's complement, like `evaluate`."""
    n = len(next(iter(ops.values())))
    vals = [np.zeros(n, np.uint8), np.ones(n, np.uint8)] + [None] * (netlist.n_nets - 2)
    for port, nets in netlist.inputs.items():
        for i, net in enumerate(nets):
            vals[net] = ((ops[port] >> i) & 1).astype(np.uint8)
    for g in netlist.gates:
        vals[g.output] = eval_gate(g.kind, [vals[i] for i in g.inputs])
    out = {}
    for port, nets in netlist.outputs.items():
        v = sum(vals[net].astype(np.int64) << i for i, net in enumerate(nets))
        if port in netlist.signed:
            v = np.where(v >> (len(nets) - 1), v - (1 << len(nets)), v)
        out[port] = v
    return out


def wrap(v, bits: int, signed: bool):
    v = np.asarray(v) & ((1 << bits) - 1)
    return np.where(v >> (bits - 1), v - (1 << bits), v) if signed else v


def span(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def code_range(bits: int, signed: bool) -> np.ndarray:
    lo, hi = span(bits, signed)
    return np.arange(lo, hi + 1)


def grid(**ranges) -> dict:
    mesh = np.meshgrid(*ranges.values(), indexing="ij")
    return {k: m.ravel().astype(np.int64) for k, m in zip(ranges, mesh)}


def sample(rng, n: int, **spans) -> dict:
    """`n` random codes per port (spans: port -> (lo, hi)) plus every combination of the corner codes
    (lo, hi, 0, -1 or 1)."""
    ops = {k: rng.integers(lo, hi + 1, n, dtype=np.int64) for k, (lo, hi) in spans.items()}
    for i, c in enumerate(itertools.product(*[(lo, hi, 0, -1 if lo < 0 else 1) for lo, hi in spans.values()])):
        for k, v in zip(spans, c):
            ops[k][i] = v
    return ops


def mult_mismatches(netlist, bx, bw, sx, sw) -> int:
    ops = grid(x=code_range(bx, sx), w=code_range(bw, sw))
    got = np_outputs(netlist, ops)["p"]
    return int(np.sum(got != wrap(ops["x"] * ops["w"], bx + bw, sx or sw)))


def with_gate_kind(netlist: Netlist, index: int, kind: str) -> Netlist:
    gates = list(netlist.gates)
    gates[index] = Gate(kind, gates[index].inputs, gates[index].output, gates[index].group)
    return Netlist(netlist.name, netlist.n_nets, netlist.inputs, netlist.outputs, tuple(gates),
                   netlist.registers, netlist.signed)


# ---------------------------------------------------------------------------------------------------
# load_yosys_json on the committed fixtures
# ---------------------------------------------------------------------------------------------------

def test_mult_fixture_exhaustive_with_reference_evaluator():
    n = load_yosys_json(MULT)
    assert n.name == "mult4x4_ss" and n.signed == {"x", "w", "p"}
    assert (n.width("x"), n.width("w"), n.width("p")) == (4, 4, 8) and n.groups == ("inputs", "logic")
    pairs = list(itertools.product(range(-8, 8), repeat=2))
    out = evaluate(n, [{"x": x, "w": w} for x, w in pairs])
    assert [o["p"] for o in out] == [x * w for x, w in pairs]
    ops = {"x": np.array([x for x, _ in pairs]), "w": np.array([w for _, w in pairs])}
    np.testing.assert_array_equal(np_outputs(n, ops)["p"], [o["p"] for o in out])  # numpy evaluator == reference


def test_sources_path_file_dict_agree():
    data = json.loads(MULT.read_text())
    with open(MULT) as f:
        from_file = load_yosys_json(f)
    for n in (load_yosys_json(str(MULT)), from_file, load_yosys_json(data, name="m", signed=())):
        assert n.gates == load_yosys_json(MULT).gates
    assert load_yosys_json(data, name="m").name == "m"


def test_signed_argument_and_unsigned_ports():
    data = json.loads(MULT.read_text())
    for port in data["modules"]["mult4x4_ss"]["ports"].values():
        del port["signed"]
    assert load_yosys_json(data).signed == frozenset()
    n = load_yosys_json(data, signed={"p"})
    assert n.signed == {"p"}
    out = evaluate(n, [{"x": 15, "w": 15}])  # 15 * 15 as unsigned codes of -1 * -1 reads 1
    assert out[0]["p"] == 1
    with pytest.raises(ConfigError, match="not data ports"):
        load_yosys_json(data, signed={"q"})


def test_mac_fixture_registers_clock_and_groups():
    n = load_yosys_json(MAC)
    assert list(n.inputs) == ["clear", "x", "w"]  # clk only clocks the flip-flops: not an operand
    assert n.groups == ("inputs", "u_mult", "u_acc") and {r.group for r in n.registers} == {"u_acc"}
    assert len(n.registers) == 4
    rng = np.random.default_rng(1)
    stream = [{"clear": int(rng.random() < 0.15), "x": int(rng.integers(-2, 2)), "w": int(rng.integers(-2, 2))}
              for _ in range(400)]
    acc, want = 0, []
    for ops in stream:
        want.append(acc)  # outputs are read before the clock edge: the register's value so far
        acc = 0 if ops["clear"] else (acc + ops["x"] * ops["w"]) & 15
    assert [o["acc"] for o in evaluate(n, stream)] == want
    named = load_yosys_json(MAC, groups={"u_mult": "multiplier", "u_acc": "accumulator"})
    assert named.groups == ("inputs", "multiplier", "accumulator")
    by_signal = load_yosys_json(MAC, groups={"u_mult": "multiplier", "acc": "acc_register"})
    assert by_signal.groups == ("inputs", "multiplier", "logic", "acc_register")


def _cells(data, module):
    return data["modules"][module]["cells"]


def test_unsupported_cell_type():
    data = json.loads(MAC.read_text())
    name, cell = next((k, c) for k, c in _cells(data, "mac2x2_acc4").items() if c["type"] == "$_DFF_P_")
    cell["type"] = "$_DFFE_PP_"
    with pytest.raises(ConfigError, match=r"cell .* has unsupported type \$_DFFE_PP_ .*dfflegalize") as e:
        load_yosys_json(data)
    assert name in str(e.value) and "\n" not in str(e.value)
    data = json.loads(MULT.read_text())
    next(iter(_cells(data, "mult4x4_ss").values()))["type"] = "$mul"
    with pytest.raises(ConfigError, match=r"unsupported type \$mul"):
        load_yosys_json(data)


def test_register_with_init_one_is_rejected():
    data = json.loads(MAC.read_text())
    q = next(c for c in _cells(data, "mac2x2_acc4").values() if c["type"] == "$_DFF_P_")["connections"]["Q"]
    data["modules"]["mac2x2_acc4"]["netnames"]["forced_init"] = {"hide_name": 1, "bits": q, "attributes": {"init": "1"}}
    with pytest.raises(ConfigError, match="init value 1 but registers reset to 0"):
        load_yosys_json(data)


def test_combinational_loop_and_undriven_and_undefined_bits():
    data = json.loads(MULT.read_text())
    cells = list(_cells(data, "mult4x4_ss").values())
    first = cells[0]  # make it read a gate that reads it: a two-gate loop
    reader = next(c for c in cells if first["connections"]["Y"][0] in
                  [b for pin, bits in c["connections"].items() if pin != "Y" for b in bits])
    loop = copy.deepcopy(data)
    next(iter(_cells(loop, "mult4x4_ss").values()))["connections"]["A"] = list(reader["connections"]["Y"])
    with pytest.raises(ConfigError, match="combinational loop through 2 cells"):
        load_yosys_json(loop)
    undriven = copy.deepcopy(data)
    next(iter(_cells(undriven, "mult4x4_ss").values()))["connections"]["A"] = [999999]
    with pytest.raises(ConfigError, match="reads bit 999999, which nothing drives"):
        load_yosys_json(undriven)
    undefined = copy.deepcopy(data)
    undefined["modules"]["mult4x4_ss"]["ports"]["p"]["bits"][0] = "x"
    with pytest.raises(ConfigError, match="undefined bit 'x'.*setundef -zero"):
        load_yosys_json(undefined)


def test_module_selection_errors():
    data = json.loads(MULT.read_text())
    with pytest.raises(ConfigError, match="no module 'nope'"):
        load_yosys_json(data, top="nope")
    with pytest.raises(ConfigError, match="no \"modules\""):
        load_yosys_json({"creator": "x"})


def test_negative_control_flipped_gate_fails_exhaustive_check():
    n = load_yosys_json(MULT)
    assert mult_mismatches(n, 4, 4, True, True) == 0
    i = next(i for i, g in enumerate(n.gates) if g.kind == "XOR")
    assert mult_mismatches(with_gate_kind(n, i, "XNOR"), 4, 4, True, True) > 0


# ---------------------------------------------------------------------------------------------------
# The shipped library
# ---------------------------------------------------------------------------------------------------

def test_library_provenance_and_counts():
    for kind in FAMILIES:
        info = family_info(kind)
        assert info["yosys"].startswith("Yosys ") and "abc -g" in info["synth_script"] and "module" in info["verilog"]
    assert len(synthesized_blocks("mult")) == 196 and len(synthesized_blocks("add")) == 31
    assert len(synthesized_blocks("add_carry")) == 32
    assert len(synthesized_blocks("accumulate")) == 90 and len(synthesized_blocks("shift")) == 28


@pytest.mark.parametrize("sx,sw", list(itertools.product((False, True), repeat=2)))
def test_library_multipliers_exhaustive(sx, sw):
    for bx, bw in itertools.product(range(2, 9), repeat=2):
        n = synthesized_block("mult", x_bits=bx, w_bits=bw, x_signed=sx, w_signed=sw)
        assert n.signed == {p for p, s in (("x", sx), ("w", sw), ("p", sx or sw)) if s}
        assert set(n.groups) == {"inputs", "multiplier"}
        assert mult_mismatches(n, bx, bw, sx, sw) == 0, n.name


def test_library_multiplier_with_reference_evaluator():
    n = synthesized_block("mult", x_bits=3, w_bits=5, x_signed=False, w_signed=True)
    pairs = list(itertools.product(range(8), range(-16, 16)))
    assert [o["p"] for o in evaluate(n, [{"x": x, "w": w} for x, w in pairs])] == [x * w for x, w in pairs]


def test_library_adders():
    rng = np.random.default_rng(0)
    for bits in range(2, 33):
        n = synthesized_block("add", bits=bits)
        r = span(bits, False)
        if bits <= 8:
            ops = grid(a=code_range(bits, False), b=code_range(bits, False))
        else:
            ops = sample(rng, 4096, a=r, b=r)
        np.testing.assert_array_equal(np_outputs(n, ops)["s"], wrap(ops["a"] + ops["b"], bits, False), n.name)


def test_library_adders_with_carry():
    rng = np.random.default_rng(0)
    for bits in range(1, 33):
        n = synthesized_block("add_carry", bits=bits)
        r = span(bits, False)
        if bits <= 7:
            ops = grid(a=code_range(bits, False), b=code_range(bits, False), ci=np.arange(2))
        else:
            ops = sample(rng, 4096, a=r, b=r, ci=(0, 1))
        out, total = np_outputs(n, ops), ops["a"] + ops["b"] + ops["ci"]
        np.testing.assert_array_equal(out["s"], wrap(total, bits, False), n.name)
        np.testing.assert_array_equal(out["co"], total >> bits, n.name)


def test_library_accumulate():
    rng = np.random.default_rng(0)
    for args in synthesized_blocks("accumulate"):
        n = synthesized_block("accumulate", **args)
        a, b, s = args["addend_bits"], args["acc_bits"], args["signed"]
        ops = sample(rng, 2048, clear=(0, 1), acc=span(b, s), t=span(a, s))
        want = wrap(np.where(ops["clear"] == 1, 0, ops["acc"]) + ops["t"], b, s)
        np.testing.assert_array_equal(np_outputs(n, ops)["d"], want, n.name)


def test_library_shifters_exhaustive():
    for args in synthesized_blocks("shift"):
        n = synthesized_block("shift", **args)
        bx, sb, s = args["x_bits"], args["shift_bits"], args["signed"]
        assert n.width("y") == bx + (1 << sb) - 1
        ops = grid(x=code_range(bx, s), sh=code_range(sb, False))
        np.testing.assert_array_equal(np_outputs(n, ops)["y"], ops["x"] << ops["sh"], n.name)


def test_library_negative_control():
    n = synthesized_block("mult", x_bits=8, w_bits=8, x_signed=True, w_signed=True)
    for i in (0, len(n.gates) // 2, len(n.gates) - 1):
        g = n.gates[i]
        assert mult_mismatches(with_gate_kind(n, i, "NAND" if g.kind != "NAND" else "NOR"), 8, 8, True, True) > 0


def test_library_blocks_compose_into_a_mac():
    """A signed 4x4 MAC with a 16-bit accumulator from shipped blocks, via `NetlistBuilder.instantiate`."""
    b = NetlistBuilder("mac")
    x, w, clear = b.input("x", 4, signed=True), b.input("w", 4, signed=True), b.input("clear", 1)
    p = b.instantiate(synthesized_block("mult", x_bits=4, w_bits=4, x_signed=True, w_signed=True), {"x": x, "w": w})
    acc = b.register_outputs(16, "accumulator")
    d = b.instantiate(synthesized_block("accumulate", addend_bits=8, acc_bits=16, signed=True),
                      {"clear": clear, "acc": acc, "t": p["p"]})["d"]
    b.connect_registers(acc, d)
    b.output("acc", acc, signed=True)
    mac = b.build()
    assert mac.groups == ("inputs", "multiplier", "accumulator")
    rng = np.random.default_rng(2)
    stream = [{"x": int(rng.integers(-8, 8)), "w": int(rng.integers(-8, 8)), "clear": int(rng.random() < 0.05)}
              for _ in range(300)]
    total, want = 0, []
    for ops in stream:
        want.append(from_bits([(total >> i) & 1 for i in range(16)], True))
        total = (0 if ops["clear"] else total) + ops["x"] * ops["w"]
    assert [o["acc"] for o in evaluate(mac, stream)] == want


def test_library_argument_errors():
    with pytest.raises(ConfigError, match="expected one of mult, add"):
        synthesized_block("div", bits=4)
    with pytest.raises(ConfigError, match="takes x_bits, w_bits, x_signed, w_signed"):
        synthesized_block("mult", x_bits=4, w_bits=4)
    with pytest.raises(ConfigError, match=r"no shipped add block .*bits in \[2, 3"):
        synthesized_block("add", bits=40)
