"""Synthesize the default arithmetic blocks with yosys and store them under pannjax/hw/gates/data/.

    python scripts/make_default_netlists.py              # all families (needs yosys: apt-get install yosys)
    python scripts/make_default_netlists.py --families mult shift --jobs 4

For each family (`pannjax.hw.gates.library`: mult, add, accumulate, shift) the script writes the
parametrised Verilog below, runs scripts/synth_netlist.sh once per width/signedness (`-P` sets the
parameters), loads each result with `load_yosys_json`, checks it against Python integer arithmetic
(exhaustively where the operand space has at most 2^16 points, else on 4096 random and corner operands)
and writes one gzip'ed JSON per family in the library's compact format, recording the yosys version,
the Verilog, the synthesis script's text and the command line.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import gzip
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from pannjax.hw.gates.library import FAMILIES
from pannjax.hw.gates.netlist import GATE_KINDS, Netlist, eval_gate
from pannjax.hw.gates.yosys_json import load_yosys_json

ROOT = Path(__file__).resolve().parent.parent
SYNTH = ROOT / "scripts" / "synth_netlist.sh"
DATA = ROOT / "pannjax" / "hw" / "gates" / "data"
SIGN = {False: "", True: "signed "}


def _mult_verilog() -> str:
    def operand(name: str, signed: bool, other_signed: bool) -> str:
        # an unsigned operand of a mixed product is zero-extended by one bit so that it stays positive
        return f"$signed({name})" if signed else (f"$signed({{1'b0, {name}}})" if other_signed else name)

    return "\n".join(f"""module mult_{"us"[sx]}{"us"[sw]} #(parameter BX = 4, BW = 4) (
  input {SIGN[sx]}[BX-1:0] x, input {SIGN[sw]}[BW-1:0] w, output {SIGN[sx or sw]}[BX+BW-1:0] p);
  assign p = {operand("x", sx, sw)} * {operand("w", sw, sx)};
endmodule
""" for sx, sw in itertools.product((False, True), repeat=2))


VERILOG = {
    "mult": _mult_verilog(),
    "add": """module add #(parameter B = 8) (input [B-1:0] a, input [B-1:0] b, output [B-1:0] s);
  assign s = a + b;
endmodule
""",
    "add_carry": """module add_carry #(parameter B = 8) (
  input [B-1:0] a, input [B-1:0] b, input ci, output [B-1:0] s, output co);
  assign {co, s} = a + b + ci;
endmodule
""",
    "accumulate": "\n".join(f"""module accumulate_{tag} #(parameter B = 16, A = 8) (
  input clear, input {s}[B-1:0] acc, input {s}[A-1:0] t, output {s}[B-1:0] d);
  wire {s}[B-1:0] t_ext = t;  // {"sign" if s else "zero"}-extends the addend
  assign d = (clear ? {{B{{1'b0}}}} : acc) + t_ext;
endmodule
""" for tag, s in (("u", ""), ("s", "signed "))),
    "shift": "\n".join(f"""module shift_{tag} #(parameter BX = 4, S = 2) (
  input {s}[BX-1:0] x, input [S-1:0] sh, output {s}[BX+(1<<S)-2:0] y);
  assign y = x << sh;
endmodule
""" for tag, s in (("u", ""), ("s", "signed "))),
}
GROUP = {"mult": "multiplier", "add": "adder", "add_carry": "adder", "accumulate": "accumulator", "shift": "shifter"}
PARAMS = {
    "mult": ("x_bits", "w_bits", "x_signed", "w_signed"),
    "add": ("bits",),
    "add_carry": ("bits",),
    "accumulate": ("addend_bits", "acc_bits", "signed"),
    "shift": ("x_bits", "shift_bits", "signed"),
}


def blocks(family: str) -> list[tuple]:
    """Argument tuples (in PARAMS order) of the shipped blocks."""
    if family == "mult":
        return [(bx, bw, sx, sw) for sx, sw in itertools.product((False, True), repeat=2)
                for bx in range(2, 9) for bw in range(2, 9)]
    if family == "add":
        return [(b,) for b in range(2, 33)]
    if family == "add_carry":
        return [(b,) for b in range(1, 33)]
    if family == "accumulate":
        return [(a, b, s) for s in (False, True) for b in (16, 24, 32) for a in range(2, 17)]
    return [(bx, sb, s) for s in (False, True) for sb in (2, 3) for bx in range(2, 9)]


def top_and_params(family: str, args: tuple) -> tuple[str, dict]:
    """Verilog top module and its parameters for one block."""
    if family == "mult":
        bx, bw, sx, sw = args
        return f"mult_{'us'[sx]}{'us'[sw]}", {"BX": bx, "BW": bw}
    if family in ("add", "add_carry"):
        return family, {"B": args[0]}
    if family == "accumulate":
        a, b, s = args
        return f"accumulate_{'us'[s]}", {"B": b, "A": a}
    bx, sb, s = args
    return f"shift_{'us'[s]}", {"BX": bx, "S": sb}


def operands(family: str, args: tuple, rng) -> dict:
    """Input codes to check a block on: every combination if at most 2^16, else random plus corners."""
    if family == "mult":
        bx, bw, sx, sw = args
        ranges = {"x": (bx, sx), "w": (bw, sw)}
    elif family == "add":
        ranges = {"a": (args[0], False), "b": (args[0], False)}
    elif family == "add_carry":
        ranges = {"a": (args[0], False), "b": (args[0], False), "ci": (1, False)}
    elif family == "accumulate":
        a, b, s = args
        ranges = {"clear": (1, False), "acc": (b, s), "t": (a, s)}
    else:
        bx, sb, s = args
        ranges = {"x": (bx, s), "sh": (sb, False)}
    spans = {p: ((-(1 << (b - 1)), (1 << (b - 1)) - 1) if s else (0, (1 << b) - 1)) for p, (b, s) in ranges.items()}
    if sum(b for b, _ in ranges.values()) <= 16:
        grids = np.meshgrid(*[np.arange(lo, hi + 1) for lo, hi in spans.values()], indexing="ij")
        return {p: g.ravel() for p, g in zip(spans, grids)}
    ops = {p: rng.integers(lo, hi + 1, 4096, dtype=np.int64) for p, (lo, hi) in spans.items()}
    for i, corner in enumerate(itertools.product(*[(lo, hi, 0, -1 if lo < 0 else 1) for lo, hi in spans.values()])):
        for p, v in zip(spans, corner):
            ops[p][i] = v
    return ops


def expected(family: str, args: tuple, ops: dict) -> dict:
    if family == "mult":
        return {"p": ops["x"] * ops["w"]}
    if family == "add":
        return {"s": ops["a"] + ops["b"]}
    if family == "add_carry":
        total = ops["a"] + ops["b"] + ops["ci"]
        return {"s": total, "co": total >> args[0]}
    if family == "accumulate":
        return {"d": np.where(ops["clear"] == 1, 0, ops["acc"]) + ops["t"]}
    return {"y": ops["x"] << ops["sh"]}




def check(netlist: Netlist, want: dict, ops: dict) -> None:
    """Vectorised evaluation of the combinational `netlist` on `ops`; exits on a mismatch mod 2^width."""
    n = len(next(iter(ops.values())))
    vals = [np.zeros(n, np.uint8) for _ in range(netlist.n_nets)]
    vals[1] = np.ones(n, np.uint8)
    for port, nets in netlist.inputs.items():
        for i, net in enumerate(nets):
            vals[net] = ((ops[port] >> i) & 1).astype(np.uint8)
    for g in netlist.gates:
        vals[g.output] = eval_gate(g.kind, [vals[i] for i in g.inputs])
    for port, nets in netlist.outputs.items():
        got = sum(vals[net].astype(np.int64) << i for i, net in enumerate(nets))
        bad = np.flatnonzero(got != (want[port] & ((1 << len(nets)) - 1)))
        if bad.size:
            sys.exit(f"{netlist.name}: output {port} wrong for {({p: int(v[bad[0]]) for p, v in ops.items()})}")


def encode(netlist: Netlist) -> dict:
    """The library's compact form of a combinational netlist numbered inputs-then-gates (as loaded)."""
    n = 2 + sum(len(v) for v in netlist.inputs.values())
    assert [net for v in netlist.inputs.values() for net in v] == list(range(2, n))
    assert not netlist.registers and [g.output for g in netlist.gates] == list(range(n, netlist.n_nets))
    kind_index = {k: i for i, k in enumerate(GATE_KINDS)}
    return {"inputs": [[p, len(v)] for p, v in netlist.inputs.items()],
            "outputs": [[p, list(v)] for p, v in netlist.outputs.items()],
            "signed": sorted(netlist.signed),
            "gates": [[kind_index[g.kind], *g.inputs] for g in netlist.gates]}


def synthesize(family: str, args: tuple, verilog: Path, workdir: Path) -> Netlist:
    top, params = top_and_params(family, args)
    out = workdir / f"{top}_{'_'.join(map(str, params.values()))}.json"
    cmd = [str(SYNTH), *[a for k, v in params.items() for a in ("-P", f"{k}={v}")], str(verilog), top, str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        sys.exit(res.stderr)
    netlist = load_yosys_json(out, top=top)
    ops = operands(family, args, np.random.default_rng(0))
    check(netlist, expected(family, args, ops), ops)
    return netlist


def yosys_version() -> str:
    try:
        return subprocess.run(["yosys", "-V"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sys.exit("yosys not found; install it (Debian/Ubuntu: apt-get install yosys)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    ap.add_argument("--jobs", type=int, default=4, help="yosys runs in parallel")
    ap.add_argument("--out", type=Path, default=DATA)
    a = ap.parse_args()
    version = yosys_version()
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
        for family in a.families:
            verilog = Path(tmp) / f"{family}.v"
            verilog.write_text(VERILOG[family])
            todo = blocks(family)
            results = list(pool.map(functools.partial(synthesize, family, verilog=verilog, workdir=Path(tmp)), todo))
            data = {
                "format": 1, "family": family, "group": GROUP[family], "yosys": version,
                "verilog": VERILOG[family], "synth_script": SYNTH.read_text(),
                "command": f"scripts/synth_netlist.sh -P NAME=VALUE ... {family}.v TOP out.json (see tops)",
                "params": list(PARAMS[family]), "gate_kinds": list(GATE_KINDS),
                "blocks": [list(args) for args in todo],
                "tops": [dict(zip(("top", "params"), top_and_params(family, args))) for args in todo],
                "netlists": [encode(n) for n in results],
            }
            path = a.out / f"{family}.json.gz"
            path.write_bytes(gzip.compress(json.dumps(data, separators=(",", ":")).encode(), 9, mtime=0))
            gates = [len(n.gates) for n in results]
            print(f"{family}: {len(todo)} blocks, {min(gates)}..{max(gates)} gates, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
