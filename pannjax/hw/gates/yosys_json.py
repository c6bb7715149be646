"""Import a yosys gate-level JSON netlist (``write_json`` after mapping to simple gates) as a `Netlist`.

`scripts/synth_netlist.sh` makes such a file from Verilog (``synth``, ``dfflegalize``, ``abc -g``, see its
header). What is read (yosys ``help write_json`` for the format):

  * the top module: `top`, else the module yosys marked ``top`` (``hierarchy -top``), else the only one;
  * ports: ``input`` ports become `Netlist.inputs`, ``output`` ports `Netlist.outputs`, bits LSB first;
    a port bit is a yosys bit id (an int) or a constant ``"0"``/``"1"`` (net 0/1). Undefined bits
    ``"x"``/``"z"`` raise ConfigError (the script's ``setundef -zero`` removes them); ``inout`` ports too.
    The clock, an input port whose bits only drive flip-flop clock pins, is not an operand and is left
    out of `inputs`. A port is signed if the JSON says so (``input signed``) or it is named in `signed`;
  * cells of the yosys simple-gate types ``$_BUF_`` ... ``$_OAI4_`` become `Gate`s with the pins in
    simcells.v order (A, B, [C, D] / MUX: A, B, S with Y = S ? B : A), sorted topologically;
    a combinational loop or an undriven net is a ConfigError naming the cells;
  * ``$_DFF_P_`` cells (one clock, all reset to 0) become `Register`s. Other flip-flop types (enables,
    synchronous or asynchronous resets, latches) and a register with init value 1 are rejected: run
    ``dfflegalize -cell $_DFF_P_ 0`` before ``abc`` (the script does), which turns enables and synchronous
    resets into gates on D and init-1 flops into inverted init-0 ones. Any other cell type is rejected too.

Group labels: with `groups` (cell-name prefix -> group), the longest key that starts a gate's instance
path (``u_mac.u_mult``, see below) or, for a register, its instance path or one of the names of its Q
signal (``acc``, ``u_mac.acc_q``) gives its group; unmatched cells get ``"logic"`` / ``"register"``.
Without `groups` a gate in a submodule is labelled by its top-level instance (``u_mult``), other gates
``"logic"``; a register likewise by its top-level instance, else ``"register"``. Instance paths survive
only when every module is mapped before flattening (`synth_netlist.sh -H`): ``synth -flatten`` followed by
``abc`` renames every gate ``$abc$...``, so a flat synthesis gives a single ``"logic"`` group.
"""

from __future__ import annotations

import collections
import json
import os
import re
from collections.abc import Collection, Mapping

from pannjax.errors import ConfigError
from pannjax.hw.gates.netlist import CONST0, CONST1, Gate, Netlist, Register

# yosys cell type -> (our gate kind, input pins in our input order); the output pin is Y.
GATE_CELLS = {
    "$_BUF_": ("BUF", "A"), "$_NOT_": ("NOT", "A"),
    "$_AND_": ("AND", "AB"), "$_OR_": ("OR", "AB"), "$_XOR_": ("XOR", "AB"),
    "$_NAND_": ("NAND", "AB"), "$_NOR_": ("NOR", "AB"), "$_XNOR_": ("XNOR", "AB"),
    "$_ANDNOT_": ("ANDNOT", "AB"), "$_ORNOT_": ("ORNOT", "AB"), "$_MUX_": ("MUX", "ABS"),
    "$_AOI3_": ("AOI3", "ABC"), "$_OAI3_": ("OAI3", "ABC"), "$_AOI4_": ("AOI4", "ABCD"), "$_OAI4_": ("OAI4", "ABCD"),
}
DFF_CELL = "$_DFF_P_"
_FIX = ("re-run synthesis with scripts/synth_netlist.sh, or end your yosys flow with "
        "`dfflegalize -cell $_DFF_P_ 0; abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX; opt_clean`")
_FLATTEN_PATH = re.compile(r"\$flatten((?:\\[^.\\]+\.)+)")


def _read(source) -> dict:
    if isinstance(source, Mapping):
        return dict(source)
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source) as f:
                return json.load(f)
        return json.load(source)
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"yosys JSON {source!r}: cannot read it ({e})") from e


def _select_module(data: dict, top: str | None) -> tuple[str, dict]:
    modules = data.get("modules")
    if not isinstance(modules, Mapping) or not modules:
        raise ConfigError("yosys JSON has no \"modules\": expected the output of yosys `write_json`")
    if top is not None:
        if top not in modules:
            raise ConfigError(f"yosys JSON: no module {top!r}; modules: {', '.join(modules)}")
        return top, modules[top]
    tops = [n for n, m in modules.items() if int(str(m.get("attributes", {}).get("top", "0")), 2)]
    if len(tops) == 1:
        return tops[0], modules[tops[0]]
    if len(modules) == 1:
        return next(iter(modules.items()))
    raise ConfigError(f"yosys JSON holds modules {', '.join(modules)}: pass top= (or flatten the design)")


def _instance_path(cell_name: str, attrs: Mapping) -> list[str]:
    """Instance names above a cell after yosys `flatten`: from its ``hdlname`` attribute (public cells) or
    the ``$flatten\\u_a.\\u_b.`` prefix that flatten puts on internal cell names."""
    if "hdlname" in attrs:
        return str(attrs["hdlname"]).split(" ")[:-1]
    m = _FLATTEN_PATH.match(cell_name)
    return re.findall(r"\\([^.\\]+)\.", m.group(1)) if m else []


def _group(names: list[str], groups: Mapping[str, str] | None, path: list[str], fallback: str) -> str:
    if groups is None:
        return path[0] if path else fallback
    hits = [k for k in groups if any(n.startswith(k) for n in names)]
    return groups[max(hits, key=len)] if hits else fallback


def _bits(where: str, what: str, bits) -> list:
    """`bits` (yosys bit ids and "0"/"1"), checked: undefined "x"/"z" bits are a ConfigError."""
    for b in bits:
        if b in ("x", "z"):
            raise ConfigError(f"{where}: {what} has an undefined bit {b!r}; drive it in the Verilog or add "
                              f"`setundef -zero` to the synthesis script")
        if not (isinstance(b, int) or b in ("0", "1")):
            raise ConfigError(f"{where}: {what} has bit {b!r}, expected a bit id or \"0\"/\"1\"")
    return list(bits)


def _pin(where: str, cname: str, cell: Mapping, p: str):
    conn = cell.get("connections", {}).get(p)
    if conn is None or len(conn) != 1:
        raise ConfigError(f"{where}: cell {cname} ({cell['type']}) pin {p} should have one bit, got {conn!r}")
    return _bits(where, f"cell {cname} pin {p}", conn)[0]


def _topological_order(where: str, names: list[str], ins: list[list], outs: list, sources) -> list[int]:
    """Gate indices in an order where each gate follows the drivers of its inputs (Kahn's algorithm, file
    order among ready gates). `sources`: bits driven by constants, inputs and registers."""
    driver = {}
    for i, y in enumerate(outs):
        if y in driver or y in sources:
            raise ConfigError(f"{where}: bit {y} is driven twice (again by cell {names[i]})")
        driver[y] = i
    readers = collections.defaultdict(list)
    waiting = [0] * len(ins)
    for i, gins in enumerate(ins):
        for b in gins:
            if b in driver:
                readers[driver[b]].append(i)
                waiting[i] += 1
            elif b not in sources:
                raise ConfigError(f"{where}: cell {names[i]} reads bit {b}, which nothing drives")
    ready = collections.deque(i for i, w in enumerate(waiting) if w == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for j in readers[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    if len(order) < len(ins):
        i, loop = next(j for j, w in enumerate(waiting) if w), []
        while i not in loop:  # every unsorted gate reads an unsorted gate: walking back must revisit one
            loop.append(i)
            i = next(driver[b] for b in ins[i] if b in driver and waiting[driver[b]])
        loop = loop[loop.index(i):][::-1]
        shown = " -> ".join(names[j] for j in loop[:6]) + (" -> ..." if len(loop) > 6 else "")
        raise ConfigError(f"{where}: combinational loop through {len(loop)} cells ({shown}); break it with a register")
    return order


def load_yosys_json(source, top: str | None = None, name: str | None = None,
                    groups: Mapping[str, str] | None = None, signed: Collection[str] = ()) -> Netlist:
    """The `Netlist` of a yosys JSON file (a path, an open file, or the parsed dict); see the module
    docstring. `name` defaults to the module's; `signed` names ports to read as two's complement beyond
    those the JSON declares signed. Raises ConfigError for anything the netlist format cannot express."""
    mod_name, mod = _select_module(_read(source), top)
    where = f"yosys module {mod_name}"
    gate_cells, dff_cells = [], []
    for cname, cell in mod.get("cells", {}).items():
        ctype = cell.get("type")
        if ctype in GATE_CELLS:
            gate_cells.append((cname, cell))
        elif ctype == DFF_CELL:
            dff_cells.append((cname, cell))
        else:
            raise ConfigError(f"{where}: cell {cname} has unsupported type {ctype} (supported: simple gates "
                              f"{' '.join(GATE_CELLS)} and {DFF_CELL}); {_FIX}")
    gate_ins = [[_pin(where, c, cell, p) for p in GATE_CELLS[cell["type"]][1]] for c, cell in gate_cells]
    gate_outs = [_pin(where, c, cell, "Y") for c, cell in gate_cells]
    dffs = [(c, cell, *(_pin(where, c, cell, p) for p in "CDQ")) for c, cell in dff_cells]

    # Ports; the clock is the input port whose bits only clock flip-flops.
    ports = {p: (port.get("direction"), _bits(where, f"port {p}", port.get("bits", [])))
             for p, port in mod.get("ports", {}).items()}
    clock_bits = {clk for _, _, clk, _, _ in dffs}
    data_reads = collections.Counter(b for gins in gate_ins for b in gins)
    data_reads.update(d for _, _, _, d, _ in dffs)
    in_ports, out_ports, clock_ports = {}, {}, []
    for p, (direction, bits) in ports.items():
        if direction == "output":
            out_ports[p] = bits
            data_reads.update(bits)
        elif direction != "input":
            raise ConfigError(f"{where}: port {p} is {direction!r}; only input and output ports are supported")
    for p, (direction, bits) in ports.items():
        if direction != "input":
            continue
        if any(isinstance(b, str) for b in bits):
            raise ConfigError(f"{where}: input port {p} has a constant bit")
        if bits and all(b in clock_bits for b in bits):
            if any(data_reads[b] for b in bits):
                raise ConfigError(f"{where}: clock port {p} is also read as data; only a pure clock is supported")
            clock_ports.append(p)
        else:
            in_ports[p] = bits
    if len(clock_bits) > 1 or clock_bits - {b for p in clock_ports for b in ports[p][1]}:
        raise ConfigError(f"{where}: flip-flops must share one clock driven by an input port (clock bits "
                          f"{sorted(clock_bits, key=str)}); gated or derived clocks are not supported")

    # Nets: constants, input ports in order, register outputs, then gate outputs in topological order.
    net: dict = {"0": CONST0, "1": CONST1}

    def define(bit, what: str) -> int:
        if isinstance(bit, str):
            raise ConfigError(f"{where}: {what} drives the constant {bit!r}")
        if bit in net:
            raise ConfigError(f"{where}: bit {bit} is driven twice (again by {what})")
        net[bit] = len(net)
        return net[bit]

    inputs = {p: [define(b, f"input {p}") for b in bits] for p, bits in in_ports.items()}
    netnames = mod.get("netnames", {})
    init_one = {b for nn in netnames.values()
                for b, v in zip(nn.get("bits", []), reversed(str(nn.get("attributes", {}).get("init", ""))))
                if v == "1"}
    signal_names = collections.defaultdict(list)
    for nname, nn in netnames.items():
        if not nn.get("hide_name"):
            for b in nn.get("bits", []):
                signal_names[b].append(nname)
    reg_specs = []
    for cname, cell, _, d, q in dffs:
        if q in init_one:
            raise ConfigError(f"{where}: flip-flop {cname} has init value 1 but registers reset to 0; run "
                              f"`dfflegalize -cell $_DFF_P_ 0` before abc")
        path = _instance_path(cname, cell.get("attributes", {}))
        reg_specs.append((d, define(q, f"flip-flop {cname}"),
                          _group([".".join(path), *signal_names[q]], groups, path, "register")))

    names = [c for c, _ in gate_cells]
    gates = []
    for i in _topological_order(where, names, gate_ins, gate_outs, set(net)):
        cname, cell = gate_cells[i]
        path = _instance_path(cname, cell.get("attributes", {}))
        gates.append(Gate(GATE_CELLS[cell["type"]][0], tuple(net[b] for b in gate_ins[i]),
                          define(gate_outs[i], f"cell {cname}"), _group([".".join(path)], groups, path, "logic")))
    for (cname, *_), (d, _, _) in zip(dffs, reg_specs):
        if d not in net:
            raise ConfigError(f"{where}: flip-flop {cname} reads bit {d}, which nothing drives")
    for p, bits in out_ports.items():
        for b in bits:
            if b not in net:
                raise ConfigError(f"{where}: output {p} reads bit {b}, which nothing drives")
    unknown = set(signed) - set(inputs) - set(out_ports)
    if unknown:
        raise ConfigError(f"{where}: signed= names {sorted(unknown)}, which are not data ports "
                          f"({', '.join([*inputs, *out_ports])})")
    signed_ports = {p for p, port in mod.get("ports", {}).items() if port.get("signed") and p not in clock_ports}
    return Netlist(name or mod_name, len(net), inputs, {p: [net[b] for b in bits] for p, bits in out_ports.items()},
                   tuple(gates), tuple(Register(net[d], q, grp) for d, q, grp in reg_specs),
                   frozenset(signed_ports | set(signed)))
