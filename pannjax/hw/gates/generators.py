"""Gate-level netlists (`NetlistBuilder`) of the datapaths of every arithmetic unit pannjax prices.

Combinational blocks work on builder nets (lists of nets, least significant bit first) and are kept in
registries, so an architecture is chosen by name and more (e.g. synthesized ones) can be registered:

  * `ADDERS[name](b, a, c, carry_in, group) -> (sum, carry_out)`, sum as wide as the operands:
      "yosys"        (default) what yosys's standard flow (`synth`, then `abc` to simple gates) makes of
                     `{co, s} = a + b + ci`: the shipped netlists of `pannjax.hw.gates.library`;
      "ripple"       ripple-carry chain of full adders (Weste & Harris, "CMOS VLSI Design", 4th ed., 11.2.2);
      "brent_kung"   parallel prefix, Brent & Kung, IEEE Trans. Computers C-31(3), 1982;
      "kogge_stone"  parallel prefix, Kogge & Stone, IEEE Trans. Computers C-22(8), 1973.
  * `MULTIPLIERS[name](b, x, w, x_signed, w_signed, group) -> product`, len(x) + len(w) bits, exact, two's
    complement if either operand is signed:
      "yosys"         (default) yosys's synthesis of `p = x * w` (shipped for b_x, b_w in 2..8; other widths
                      fall back to "baugh_wooley");
      "array"         AND-array partial products, sign extension + a subtracted last row for signed operands;
      "baugh_wooley"  Baugh & Wooley, IEEE Trans. Computers C-22(12), 1973 (the modified form of Hatamian &
                      Cash, IEEE JSSC 21(4), 1986): no sign extension, complemented bits and constant ones;
      "booth4"        radix-4 modified Booth recoding of w (Booth, Q. J. Mech. Appl. Math. 4(2), 1951;
                      MacSorley, Proc. IRE 49(1), 1961) with sign extension replaced by constants.
    Each builds a bit matrix (`BitHeap`) that a carry-save array of full adders (Braun's array, Weste &
    Harris 11.9.1) reduces to two rows and a ripple-carry adder merges.
  * helpers: `extend`, `conditional_invert`, `conditional_negate`, `negate`, `absolute`, `any_bit`,
    `barrel_shift_left` (logarithmic shifter, Weste & Harris 11.8), `popcount` (Wallace-tree counter,
    Wallace, IEEE Trans. Electronic Computers EC-13(1), 1964).

Units are sequential `Netlist`s (one operation = one clock cycle, see `netlist`). Every accumulator is a
B-bit two's complement register (unsigned for PANN's split accumulators) wrapping mod 2^B, with an input
`clear`: D = (clear ? 0 : acc) + term, the feedback gated by ANDNOT gates (no extra register), and the
output port `acc` is D, the value loaded at the operation's clock edge (the running sum). The term is
sign- or zero-extended to B bits; a negated term enters as its one's complement plus the adder's carry-in.
Group labels: "multiplier", "adder" (the accumulator's adder), "accumulator" (its registers), "mux" (clear
gating and operand selection), "shifter", "negate", "absdiff", "mf", "popcount", "subtraction"; inputs count
as "inputs".
`unit_netlist(unit, **kwargs)` builds any unit by its pricing name, cached (netlists are immutable).

Defaults. Every unit uses the "yosys" multiplier and adder unless `mult_arch` / `adder_arch` choose a
textbook one: a power figure should describe what a standard synthesis flow builds from the plain
arithmetic (`a * b`, `acc + p`), not one hand-picked architecture; the textbook generators are there to
compare architectures (array vs Booth, ripple vs prefix). Shifters, negation, absolute value and popcount
are the textbook circuits above in every case.

Units are built as synthesis would leave them: constants folded (`NetlistBuilder`), identical gates
merged (`HashingBuilder`, structural hashing) and gates that reach no output or register removed
(`sweep`), so e.g. an unused carry-out costs nothing.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Sequence
from itertools import zip_longest

from pannjax.errors import ConfigError
from pannjax.hw.gates.library import synthesized_block
from pannjax.hw.gates.netlist import CONST0, CONST1, Gate, Netlist, NetlistBuilder, Register

Nets = list[int]
_CONSTS = (CONST0, CONST1)
MAX_OPERAND_BITS = 16
MAX_ACC_BITS = 64
MAX_SHIFT_BITS = 4  # max_shift = 2^4 - 1 = 15: the ShiftOperator's int32 path allows max_shift <= 30
MAX_POPCOUNT_BITS = 4096


# ---------------------------------------------------------------------------------------------------
# Wiring and small cells
# ---------------------------------------------------------------------------------------------------

def extend(nets: Sequence[int], bits: int, signed: bool) -> Nets:
    """`nets` widened to `bits` bits: sign extension (repeat the top net) or zero extension (CONST0)."""
    if bits < len(nets):
        raise ConfigError(f"extend: cannot extend {len(nets)} nets to {bits} bits")
    fill = nets[-1] if signed and nets else CONST0
    return list(nets) + [fill] * (bits - len(nets))


def mux(b: NetlistBuilder, a: int, c: int, s: int, group: str) -> int:
    """s ? c : a, with a constant data input reduced to one AND-type gate (MUX(a, 0, s) = a & ~s, ...)."""
    if c == CONST0:
        return b.gate("ANDNOT", a, s, group=group)
    if a == CONST0:
        return b.gate("AND", c, s, group=group)
    if c == CONST1:
        return b.gate("OR", a, s, group=group)
    if a == CONST1:
        return b.gate("ORNOT", c, s, group=group)
    return b.gate("MUX", a, c, s, group=group)


def half_adder(b: NetlistBuilder, x: int, y: int, group: str) -> tuple[int, int]:
    """(x ^ y, x & y)."""
    return b.gate("XOR", x, y, group=group), b.gate("AND", x, y, group=group)


def full_adder(b: NetlistBuilder, x: int, y: int, z: int, group: str) -> tuple[int, int]:
    """(sum, carry) of three bits: s = x ^ y ^ z, carry = (x ^ y) ? z : x (Weste & Harris 11.2.1, the
    majority as a multiplexer). Constant inputs reduce the cell: a half adder for one 0, XNOR/OR for one
    1, a wire or an inverter for two constants."""
    nets = [n for n in (x, y, z) if n not in _CONSTS]
    ones = (x, y, z).count(CONST1)
    if len(nets) == 3:
        t = b.gate("XOR", x, y, group=group)
        return b.gate("XOR", t, z, group=group), b.gate("MUX", x, z, t, group=group)
    if len(nets) == 2:
        if ones == 0:
            return half_adder(b, *nets, group)
        return b.gate("XNOR", *nets, group=group), b.gate("OR", *nets, group=group)
    if len(nets) == 1:
        a = nets[0]
        return b.gate("XOR", a, ones & 1, group=group), (a if ones == 1 else ones >> 1)
    return ones & 1, ones >> 1


def conditional_invert(b: NetlistBuilder, nets: Sequence[int], control: int, group: str) -> Nets:
    """nets XOR control: the one's complement when control is 1. Adding `control` as a carry-in then
    negates: v XOR c + c = (c ? -v : v) mod 2^len, so an accumulator negates its term for free."""
    return [b.gate("XOR", n, control, group=group) for n in nets]


def any_bit(b: NetlistBuilder, nets: Sequence[int], group: str) -> int:
    """OR of all nets (v != 0), a balanced tree of OR gates."""
    level = list(nets) or [CONST0]
    while len(level) > 1:
        pairs = zip_longest(level[::2], level[1::2], fillvalue=CONST0)
        level = [b.gate("OR", u, v, group=group) for u, v in pairs]
    return level[0]


# ---------------------------------------------------------------------------------------------------
# Adders
# ---------------------------------------------------------------------------------------------------

Adder = Callable[[NetlistBuilder, Sequence[int], Sequence[int], int, str], tuple[Nets, int]]


def _check_same_width(xs: Sequence[int], ys: Sequence[int]) -> None:
    if len(xs) != len(ys) or not xs:
        raise ConfigError(f"adder operands: {len(xs)} and {len(ys)} nets, expected equal non-zero widths")


def ripple_adder(b: NetlistBuilder, xs: Sequence[int], ys: Sequence[int], carry_in: int = CONST0,
                 group: str = "adder") -> tuple[Nets, int]:
    """Ripple-carry adder (Weste & Harris 11.2.2): s_i, c_{i+1} = FA(x_i, y_i, c_i), c_0 = carry_in."""
    _check_same_width(xs, ys)
    carry, sums = carry_in, []
    for x, y in zip(xs, ys):
        s, carry = full_adder(b, x, y, carry, group)
        sums.append(s)
    return sums, carry


PrefixNetwork = Callable[[int], list[list[tuple[int, int]]]]


def _kogge_stone_levels(n: int) -> list[list[tuple[int, int]]]:
    """Kogge-Stone: level d = 1, 2, 4, ...: every node i >= d combines with node i - d (log2 n levels,
    minimal depth and fan-out, n log2 n cells)."""
    levels, d = [], 1
    while d < n:
        levels.append([(i, i - d) for i in range(d, n)])
        d *= 2
    return levels


def _brent_kung_levels(n: int) -> list[list[tuple[int, int]]]:
    """Brent-Kung: an up-sweep (binary tree, nodes i = 2d-1 mod 2d take i - d) then a down-sweep
    (nodes i = 3d-1 mod 2d take i - d), 2 log2 n - 1 levels, fewer than 2n cells."""
    up, d = [], 1
    while d < n:
        up.append([(i, i - d) for i in range(2 * d - 1, n, 2 * d)])
        d *= 2
    down = [[(i, i - d) for i in range(3 * d - 1, n, 2 * d)] for d in (2 ** k for k in reversed(range(len(up))))]
    return [level for level in up + down if level]


def prefix_adder(b: NetlistBuilder, xs: Sequence[int], ys: Sequence[int], carry_in: int, group: str,
                 network: PrefixNetwork) -> tuple[Nets, int]:
    """Parallel-prefix adder. Position 0 is the carry-in (g_0 = carry_in, p_0 = 0), position i + 1 bit i
    (g = x_i & y_i, p = x_i ^ y_i). The prefix network combines spans with
    (G, P)_i o (G, P)_j = (G_i | P_i & G_j, P_i & P_j) until node i holds the span 0..i, whose G is the
    carry into bit i: s_i = p_{i+1} ^ G_{0..i}, carry_out = G_{0..n}."""
    _check_same_width(xs, ys)
    p = [CONST0] + [b.gate("XOR", x, y, group=group) for x, y in zip(xs, ys)]
    gen = [carry_in] + [b.gate("AND", x, y, group=group) for x, y in zip(xs, ys)]
    prop = list(p)
    for level in network(len(p)):
        new_gen, new_prop = list(gen), list(prop)
        for i, j in level:
            new_gen[i] = b.gate("OR", gen[i], b.gate("AND", prop[i], gen[j], group=group), group=group)
            new_prop[i] = b.gate("AND", prop[i], prop[j], group=group)
        gen, prop = new_gen, new_prop
    return [b.gate("XOR", p[i + 1], gen[i], group=group) for i in range(len(xs))], gen[len(xs)]


def brent_kung_adder(b: NetlistBuilder, xs: Sequence[int], ys: Sequence[int], carry_in: int = CONST0,
                     group: str = "adder") -> tuple[Nets, int]:
    """Brent-Kung parallel-prefix adder (IEEE Trans. Computers C-31(3), 1982); see `prefix_adder`."""
    return prefix_adder(b, xs, ys, carry_in, group, _brent_kung_levels)


def kogge_stone_adder(b: NetlistBuilder, xs: Sequence[int], ys: Sequence[int], carry_in: int = CONST0,
                      group: str = "adder") -> tuple[Nets, int]:
    """Kogge-Stone parallel-prefix adder (IEEE Trans. Computers C-22(8), 1973); see `prefix_adder`."""
    return prefix_adder(b, xs, ys, carry_in, group, _kogge_stone_levels)


def yosys_adder(b: NetlistBuilder, xs: Sequence[int], ys: Sequence[int], carry_in: int = CONST0,
                group: str = "adder") -> tuple[Nets, int]:
    """{carry_out, sum} = xs + ys + carry_in as yosys's standard flow synthesises `a + b + ci` (the shipped
    `add_carry` block, `pannjax.hw.gates.library`), instantiated with constant folding."""
    _check_same_width(xs, ys)
    block = synthesized_block("add_carry", bits=len(xs))
    out = b.instantiate(block, {"a": xs, "b": ys, "ci": [carry_in]}, group)
    return out["s"], out["co"][0]


ADDERS: dict[str, Adder] = {"yosys": yosys_adder, "ripple": ripple_adder, "brent_kung": brent_kung_adder,
                            "kogge_stone": kogge_stone_adder}
DEFAULT_ADDER = "yosys"


def conditional_negate(b: NetlistBuilder, nets: Sequence[int], control: int, group: str,
                       adder: str = "ripple") -> Nets:
    """control ? -v : v mod 2^len(nets): (v XOR control) + control, an incrementer (adder with a zero
    operand). Extend first where -v needs one more bit."""
    return ADDERS[adder](b, conditional_invert(b, nets, control, group), [CONST0] * len(nets), control, group)[0]


def negate(b: NetlistBuilder, nets: Sequence[int], group: str) -> Nets:
    """-v mod 2^len(nets): inverters and an incrementer."""
    return conditional_negate(b, nets, CONST1, group)


def absolute(b: NetlistBuilder, nets: Sequence[int], group: str) -> Nets:
    """|v| of a two's complement word, as an unsigned word of the same width (|-2^(n-1)| = 2^(n-1) fits):
    conditional negation by the sign bit."""
    return conditional_negate(b, nets, nets[-1], group)


# ---------------------------------------------------------------------------------------------------
# Bit matrices: multipliers' partial products and popcounts
# ---------------------------------------------------------------------------------------------------

class BitHeap:
    """Bits to be summed, by weight (column), modulo 2^width. Constant ones are collected in one integer
    (placed as constant bits when summed), constant zeros and bits of weight >= width are dropped."""

    def __init__(self, width: int):
        self.width = width
        self.columns: list[Nets] = [[] for _ in range(width)]
        self.constant = 0

    def add(self, weight: int, net: int) -> None:
        if net == CONST1:
            self.constant += 1 << weight
        elif net != CONST0 and weight < self.width:
            self.columns[weight].append(net)

    def add_word(self, nets: Sequence[int], shift: int) -> None:
        for i, net in enumerate(nets):
            self.add(shift + i, net)

    def add_constant(self, value: int) -> None:
        self.constant += value

    def _with_constant(self) -> list[Nets]:
        const = self.constant % (1 << self.width)
        return [col + [CONST1] * ((const >> k) & 1) for k, col in enumerate(self.columns)]

    def compress(self, b: NetlistBuilder, group: str, tree: bool = False) -> tuple[Nets, Nets]:
        """Full adders reduce every column to at most two bits; returns the two rows.

        Columns are processed from the LSB; each full adder's carry joins the next column.
          * array (default): a carry-save array (Braun's, Weste & Harris 11.9.1). A column's chain adds
            its first three bits, then each stage adds the running sum, the next carry out of column
            k - 1 (stage i takes stage i - 1's, as a carry-save row passes its carries on) and the next bit;
          * tree: a Wallace tree (Wallace 1964): bits are taken oldest first and sums go to the back of
            the column, so every level of full adders works on independent bits (logarithmic depth)."""
        columns = self._with_constant()
        carries: list[Nets] = [[] for _ in range(self.width + 1)]
        rows: tuple[Nets, Nets] = ([], [])
        for k, own in enumerate(columns):
            if tree:
                bits = own + carries[k]
            else:
                bits = own[:3] + [n for pair in zip_longest(carries[k], own[3:]) for n in pair if n is not None]
            while len(bits) > 2:
                s, c = full_adder(b, *bits[:3], group)
                bits = bits[3:] + [s] if tree else [s] + bits[3:]
                carries[k + 1].append(c)
            bits += [CONST0] * (2 - len(bits))
            rows[0].append(bits[0])
            rows[1].append(bits[1])
        return rows

    def sum(self, b: NetlistBuilder, group: str, tree: bool = False) -> Nets:
        """The heap's value mod 2^width: `compress`, then a ripple-carry adder merges the two rows."""
        return ripple_adder(b, *self.compress(b, group, tree), CONST0, group)[0]


def popcount(b: NetlistBuilder, nets: Sequence[int], group: str) -> Nets:
    """Number of ones of `nets` as an unsigned word of len(nets).bit_length() bits: a Wallace tree of
    full adders (a parallel counter) on one column, then a ripple-carry adder."""
    heap = BitHeap(len(nets).bit_length())
    for n in nets:
        heap.add(0, n)
    return heap.sum(b, group, tree=True)


# ---------------------------------------------------------------------------------------------------
# Multipliers
# ---------------------------------------------------------------------------------------------------

Multiplier = Callable[[NetlistBuilder, Sequence[int], Sequence[int], bool, bool, str], Nets]


def array_multiplier(b: NetlistBuilder, xs: Sequence[int], ws: Sequence[int], x_signed: bool, w_signed: bool,
                     group: str = "multiplier") -> Nets:
    """Array multiplier (Braun; Weste & Harris 11.9.1), P = n + m bits.

    x w = sum_{j < m-1} (x w_j) 2^j + (x w_{m-1}) 2^{m-1} (-1 if w is signed). Row j is x_i & w_j
    (i < n), sign-extended to P bits when x is signed (the row's top net repeated). A signed w's last
    row is subtracted: -(x w_{m-1}) = (w_{m-1} & ~x) + w_{m-1}, i.e. ANDNOT cells over the extended x
    and one correction bit w_{m-1} at weight m-1. The rows are summed by a carry-save array."""
    n, m = len(xs), len(ws)
    width = n + m
    heap = BitHeap(width)
    for j, wj in enumerate(ws):
        kind = "ANDNOT" if w_signed and j == m - 1 else "AND"
        row = [b.gate(kind, wj, xi, group=group) for xi in xs]
        top = row[-1] if x_signed else b.gate(kind, wj, CONST0, group=group)  # the row's extension bit
        row += [top] * (width - j - n)
        heap.add_word(row, j)
        if kind == "ANDNOT":
            heap.add(j, wj)
    return heap.sum(b, group)


def baugh_wooley_multiplier(b: NetlistBuilder, xs: Sequence[int], ws: Sequence[int], x_signed: bool,
                            w_signed: bool, group: str = "multiplier") -> Nets:
    """Baugh-Wooley two's complement multiplier (1973), modified form (Hatamian & Cash 1986), P bits.

    For n-bit x and m-bit w in two's complement the partial products weighted -2^{i+j} (exactly one of
    x_i, w_j a sign bit) are complemented, which costs constants:
        x w = sum_{i<n-1, j<m-1} x_i w_j 2^{i+j} + x_{n-1} w_{m-1} 2^{n+m-2}
              + sum_{i<n-1} ~(x_i w_{m-1}) 2^{i+m-1} + sum_{j<m-1} ~(x_{n-1} w_j) 2^{j+n-1}
              + 2^{n-1} + 2^{m-1} + 2^{n+m-1}     (mod 2^{n+m})
    (NAND cells, no sign extension). An unsigned operand is first extended by a 0 bit (a non-negative
    two's complement number) and the product truncated to P = len(x) + len(w) bits; the partial
    products of that 0 bit fold into constants, so unsigned x unsigned is exactly the array multiplier.
    Bits summed by a carry-save array."""
    width = len(xs) + len(ws)
    xs = list(xs) if x_signed else [*xs, CONST0]
    ws = list(ws) if w_signed else [*ws, CONST0]
    n, m = len(xs), len(ws)
    heap = BitHeap(width)
    for j, wj in enumerate(ws):
        for i, xi in enumerate(xs):
            negative = (i == n - 1) != (j == m - 1)
            heap.add(i + j, b.gate("NAND" if negative else "AND", wj, xi, group=group))
    heap.add_constant(2 ** (n - 1) + 2 ** (m - 1) + 2 ** (n + m - 1))
    return heap.sum(b, group)


def _booth_digit(b: NetlistBuilder, hi: int, mid: int, lo: int, group: str) -> tuple[int, int, int]:
    """Radix-4 Booth encoder of (w_{2k+1}, w_{2k}, w_{2k-1}): digit d = -2 hi + mid + lo as
    one = |d| == 1 (mid ^ lo), two = |d| == 2 ((hi ^ mid) & ~one), neg = hi."""
    one = b.gate("XOR", mid, lo, group=group)
    two = b.gate("ANDNOT", b.gate("XOR", hi, mid, group=group), one, group=group)
    return one, two, hi


def booth4_multiplier(b: NetlistBuilder, xs: Sequence[int], ws: Sequence[int], x_signed: bool, w_signed: bool,
                      group: str = "multiplier") -> Nets:
    """Radix-4 modified Booth multiplier (Booth 1951, MacSorley 1961), P = n + m bits.

    w (zero-extended by a bit if unsigned, then sign-extended to an even width 2D) is recoded into D
    digits d_k = -2 w_{2k+1} + w_{2k} + w_{2k-1} in {-2..2} (w_{-1} = 0), so x w = sum_k d_k x 4^k.
    Row k selects |d_k| x (x or x << 1 over L = n + 1 bits for signed x, n + 2 for unsigned: a signed
    field that holds 2x and its one's complement), XORs it with neg_k = w_{2k+1} and adds neg_k at weight
    2k (the +1 of the two's complement). Sign extension by constants (Weste & Harris 11.9.3): an L-bit
    signed row r equals (r with its top bit inverted, unsigned) - 2^{L-1}, so each row's top bit is
    inverted and -sum_k 2^{2k+L-1} joins the constant. The rows are summed by a carry-save array."""
    n, width = len(xs), len(xs) + len(ws)
    ws = list(ws) if w_signed else [*ws, CONST0]
    ws = extend(ws, len(ws) + len(ws) % 2, True)
    field = n + (1 if x_signed else 2)
    heap = BitHeap(width)
    for k in range(len(ws) // 2):
        one, two, neg = _booth_digit(b, ws[2 * k + 1], ws[2 * k], ws[2 * k - 1] if k else CONST0, group)
        once = extend([b.gate("AND", one, xi, group=group) for xi in xs], field, x_signed)
        twice = [CONST0] + extend([b.gate("AND", two, xi, group=group) for xi in xs], field - 1, x_signed)
        sel = [b.gate("OR", u, v, group=group) for u, v in zip(once, twice)]
        row = conditional_invert(b, sel[:-1], neg, group) + [b.gate("XNOR", sel[-1], neg, group=group)]
        heap.add_word(row, 2 * k)
        heap.add(2 * k, neg)
        heap.add_constant(-(2 ** (2 * k + field - 1)))
    return heap.sum(b, group)


def yosys_multiplier(b: NetlistBuilder, xs: Sequence[int], ws: Sequence[int], x_signed: bool, w_signed: bool,
                     group: str = "multiplier") -> Nets:
    """x * w as yosys's standard flow synthesises `assign p = x * w` (the shipped `mult` block, b_x, b_w in 2..8).
    Widths outside the shipped blocks use the Baugh-Wooley generator (for a 1-bit operand: a row of ANDs,
    what synthesis makes of it too)."""
    if not (2 <= len(xs) <= 8 and 2 <= len(ws) <= 8):
        return baugh_wooley_multiplier(b, xs, ws, x_signed, w_signed, group)
    block = synthesized_block("mult", x_bits=len(xs), w_bits=len(ws), x_signed=x_signed, w_signed=w_signed)
    return b.instantiate(block, {"x": xs, "w": ws}, group)["p"]


MULTIPLIERS: dict[str, Multiplier] = {
    "yosys": yosys_multiplier, "array": array_multiplier, "baugh_wooley": baugh_wooley_multiplier,
    "booth4": booth4_multiplier}
DEFAULT_MULTIPLIER = "yosys"


# ---------------------------------------------------------------------------------------------------
# Shifter
# ---------------------------------------------------------------------------------------------------

def barrel_shift_left(b: NetlistBuilder, nets: Sequence[int], amount: Sequence[int], signed: bool, group: str,
                      invert_amount: bool = False) -> Nets:
    """Logarithmic (barrel) left shifter (Weste & Harris 11.8): v << a over len(nets) + 2^k - 1 bits
    (k = len(amount); v sign- or zero-extended), exact. Stage j is a row of 2:1 multiplexers that shift
    by 2^j when amount bit j is set. invert_amount: shift by ~a = 2^k - 1 - a instead, the same stages
    with each multiplexer's data inputs swapped (no inverters)."""
    word = extend(nets, len(nets) + 2 ** len(amount) - 1, signed)
    for j, sel in enumerate(amount):
        step = 2 ** j
        moved = [CONST0] * step + word[:-step]
        pairs = zip(moved, word) if invert_amount else zip(word, moved)  # (taken at sel = 0, at sel = 1)
        word = [mux(b, off, on, sel, group) for off, on in pairs]
    return word


# ---------------------------------------------------------------------------------------------------
# Netlist finishing, argument checks
# ---------------------------------------------------------------------------------------------------

_SYMMETRIC = frozenset({"AND", "OR", "XOR", "NAND", "NOR", "XNOR"})


class HashingBuilder(NetlistBuilder):
    """A `NetlistBuilder` that also merges identical gates (same kind and inputs, in any order for
    symmetric kinds), as synthesis's structural hashing does: e.g. the x_{n-1} ^ y_{n-1} that a
    sign-extended adder's top two full adders both need exists once. The units are built with it."""

    def __init__(self, name: str):
        super().__init__(name)
        self._seen: dict[tuple, int] = {}

    def gate(self, kind: str, *ins: int, group: str = "logic") -> int:
        key = (kind, tuple(sorted(ins)) if kind in _SYMMETRIC else ins)
        if key not in self._seen:
            self._seen[key] = super().gate(kind, *ins, group=group)
        return self._seen[key]


def sweep(netlist: Netlist) -> Netlist:
    """`netlist` without the gates whose outputs reach no output port or register, nets renumbered
    densely in their original order (synthesis's dead-logic removal)."""
    live = {n for nets in netlist.outputs.values() for n in nets} | {r.d for r in netlist.registers}
    for g in reversed(netlist.gates):
        if g.output in live:
            live.update(g.inputs)
    gates = [g for g in netlist.gates if g.output in live]
    kept = sorted({*_CONSTS, *(n for nets in netlist.inputs.values() for n in nets),
                   *(r.q for r in netlist.registers), *(g.output for g in gates)})
    new = {old: i for i, old in enumerate(kept)}

    def ports(mapping):
        return {p: [new[n] for n in nets] for p, nets in mapping.items()}

    return Netlist(netlist.name, len(kept), ports(netlist.inputs), ports(netlist.outputs),
                   tuple(Gate(g.kind, tuple(new[i] for i in g.inputs), new[g.output], g.group) for g in gates),
                   tuple(Register(new[r.d], new[r.q], r.group) for r in netlist.registers), netlist.signed)


def _check_int(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name}={value!r}: expected an integer in {lo}..{hi}")


def _check_choice(name: str, value, registry: Collection[str]) -> None:
    if value not in registry:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(registry)}")


def _check_acc_bits(acc_bits, term_bits: int) -> None:
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not term_bits <= acc_bits <= MAX_ACC_BITS:
        raise ConfigError(f"acc_bits={acc_bits!r}: expected an integer in {term_bits}..{MAX_ACC_BITS} "
                          f"(the accumulator must hold one {term_bits}-bit term)")


def _sign_tag(signed: bool) -> str:
    return "s" if signed else "u"


# ---------------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------------

def _accumulate(b: NetlistBuilder, term: Sequence[int], term_signed: bool, clear: int, acc_bits: int,
                adder_arch: str, carry_in: int = CONST0) -> Nets:
    """A B-bit accumulator register: D = (clear ? 0 : acc) + extend(term) + carry_in mod 2^B (the feedback
    gated by ANDNOT cells, group "mux"). Returns D."""
    acc = b.register_outputs(acc_bits, "accumulator")
    kept = [b.gate("ANDNOT", q, clear, group="mux") for q in acc]
    d, _ = ADDERS[adder_arch](b, kept, extend(term, acc_bits, term_signed), carry_in, "adder")
    b.connect_registers(acc, d)
    return d


def _operands(b: NetlistBuilder, x_bits: int, x_signed: bool, w_bits: int, w_signed: bool) -> tuple[Nets, Nets, int]:
    return b.input("x", x_bits, x_signed), b.input("w", w_bits, w_signed), b.input("clear", 1)[0]


def multiplier_unit(x_bits: int, w_bits: int, x_signed: bool = True, w_signed: bool = True,
                    arch: str = DEFAULT_MULTIPLIER) -> Netlist:
    """Combinational multiplier: inputs x, w; output p = x w (x_bits + w_bits bits, signed if either
    operand is). `arch`: a `MULTIPLIERS` key."""
    _check_int("x_bits", x_bits, 1, MAX_OPERAND_BITS)
    _check_int("w_bits", w_bits, 1, MAX_OPERAND_BITS)
    _check_choice("arch", arch, MULTIPLIERS)
    b = HashingBuilder(f"mult_{arch}_x{x_bits}{_sign_tag(x_signed)}_w{w_bits}{_sign_tag(w_signed)}")
    x, w = b.input("x", x_bits, x_signed), b.input("w", w_bits, w_signed)
    b.output("p", MULTIPLIERS[arch](b, x, w, x_signed, w_signed, "multiplier"), signed=x_signed or w_signed)
    return sweep(b.build())


def adder_unit(bits: int, signed: bool = True, arch: str = DEFAULT_ADDER) -> Netlist:
    """Combinational adder: inputs a, b (`bits` each); output s = a + b, exact in bits + 1 bits (operands
    sign- or zero-extended by one bit). `arch`: an `ADDERS` key."""
    _check_int("bits", bits, 1, MAX_ACC_BITS)
    _check_choice("arch", arch, ADDERS)
    b = HashingBuilder(f"adder_{arch}_{bits}{_sign_tag(signed)}")
    x, y = (extend(b.input(p, bits, signed), bits + 1, signed) for p in ("a", "b"))
    b.output("s", ADDERS[arch](b, x, y, CONST0, "adder")[0], signed=signed)
    return sweep(b.build())


def subtractor_unit(bits: int, arch: str = DEFAULT_ADDER) -> Netlist:
    """Combinational subtractor of two unsigned `bits`-bit values (PANN's split accumulators, once per
    output): a + ~b + 1 in `bits` bits, whose carry-out is 1 exactly when a >= b, so d = a - b is that sum
    with NOT carry-out as the sign bit (bits + 1 bits, two's complement; group "subtraction").
    Inputs a, b; output d."""
    _check_int("bits", bits, 1, MAX_ACC_BITS)
    _check_choice("arch", arch, ADDERS)
    b = HashingBuilder(f"subtractor_{arch}_{bits}")
    x, y = b.input("a", bits), b.input("b", bits)
    d, carry = ADDERS[arch](b, x, conditional_invert(b, y, CONST1, "subtraction"), CONST1, "subtraction")
    b.output("d", [*d, b.gate("NOT", carry, group="subtraction")], signed=True)
    return sweep(b.build())


def accumulator_unit(addend_bits: int, acc_bits: int = 32, addend_signed: bool = True,
                     adder_arch: str = DEFAULT_ADDER) -> Netlist:
    """acc <= (clear ? 0 : acc) + q: inputs q (addend_bits), clear; output acc (B-bit two's complement)."""
    _check_int("addend_bits", addend_bits, 1, MAX_ACC_BITS)
    _check_acc_bits(acc_bits, addend_bits)
    _check_choice("adder_arch", adder_arch, ADDERS)
    b = HashingBuilder(f"accumulator_{addend_bits}{_sign_tag(addend_signed)}_acc{acc_bits}_{adder_arch}")
    q, clear = b.input("q", addend_bits, addend_signed), b.input("clear", 1)[0]
    b.output("acc", _accumulate(b, q, addend_signed, clear, acc_bits, adder_arch), signed=True)
    return sweep(b.build())


def mac_unit(x_bits: int, w_bits: int, acc_bits: int = 32, x_signed: bool = True, w_signed: bool = True,
             mult_arch: str = DEFAULT_MULTIPLIER, adder_arch: str = DEFAULT_ADDER) -> Netlist:
    """Multiply-accumulate: acc <= (clear ? 0 : acc) + x w. Inputs x, w, clear; output acc. The
    (x_bits + w_bits)-bit product (`MULTIPLIERS[mult_arch]`) is extended to the B-bit accumulator
    (`ADDERS[adder_arch]`)."""
    _check_int("x_bits", x_bits, 1, MAX_OPERAND_BITS)
    _check_int("w_bits", w_bits, 1, MAX_OPERAND_BITS)
    _check_acc_bits(acc_bits, x_bits + w_bits)
    _check_choice("mult_arch", mult_arch, MULTIPLIERS)
    _check_choice("adder_arch", adder_arch, ADDERS)
    b = HashingBuilder(f"mac_{mult_arch}_x{x_bits}{_sign_tag(x_signed)}_w{w_bits}{_sign_tag(w_signed)}"
                       f"_acc{acc_bits}_{adder_arch}")
    x, w, clear = _operands(b, x_bits, x_signed, w_bits, w_signed)
    product = MULTIPLIERS[mult_arch](b, x, w, x_signed, w_signed, "multiplier")
    b.output("acc", _accumulate(b, product, x_signed or w_signed, clear, acc_bits, adder_arch), signed=True)
    return sweep(b.build())


def _signed_select_netlist(name: str, x_bits: int, x_signed: bool, sign_port: str, acc_bits: int,
                           adder_arch: str) -> Netlist:
    """acc <= (clear ? 0 : acc) + (s ? -x : x): x (unsigned: zero-extended by one bit) XOR s, sign-
    extended, with s as the accumulator adder's carry-in. Inputs x, `sign_port`, clear; output acc."""
    _check_int("x_bits", x_bits, 1, MAX_OPERAND_BITS)
    _check_acc_bits(acc_bits, x_bits + 1)
    _check_choice("adder_arch", adder_arch, ADDERS)
    b = HashingBuilder(name)
    x = b.input("x", x_bits, x_signed)
    s, clear = b.input(sign_port, 1)[0], b.input("clear", 1)[0]
    term = conditional_invert(b, extend(x, x_bits + (not x_signed), x_signed), s, "negate")
    b.output("acc", _accumulate(b, term, True, clear, acc_bits, adder_arch, carry_in=s), signed=True)
    return sweep(b.build())


ACCUMULATIONS = ("split", "signed")


def repeated_addition_unit(x_bits: int, acc_bits: int = 32, accumulation: str = "split",
                           adder_arch: str = DEFAULT_ADDER) -> Netlist:
    """PANN's multiplier-free unit (`pannjax.quant.pann`): each operation adds the unsigned b_x-bit
    activation x once, into the accumulator of the weight's sign (input neg = 1: the weight is negative);
    a weight w_int is |w_int| operations. Inputs x, neg, clear.

      * "split": two B-bit unsigned accumulators, outputs acc_pos (sum of x over neg = 0) and acc_neg
        (neg = 1), y = acc_pos - acc_neg once per output; clear restarts both. Each is a complete
        accumulator (adder + register) whose addend is x gated by the sign, x & ~neg or x & neg (group
        "mux"): the idle one adds 0, so its adder and register hold still (operand isolation) and no
        hold multiplexers are needed; the second adder is the area paid for that (the alternative, one
        adder fed by a B-bit accumulator multiplexer and 2B hold multiplexers, has about as many gates
        and toggles its whole adder whenever the sign changes).
      * "signed": one B-bit two's complement accumulator adds +x or -x: (b_x+1)-bit x XOR neg, sign-
        extended, carry-in neg (output acc)."""
    _check_choice("accumulation", accumulation, ACCUMULATIONS)
    name = f"pann_{accumulation}_x{x_bits}_acc{acc_bits}_{adder_arch}"
    if accumulation == "signed":
        return _signed_select_netlist(name, x_bits, False, "neg", acc_bits, adder_arch)
    _check_int("x_bits", x_bits, 1, MAX_OPERAND_BITS)
    _check_acc_bits(acc_bits, x_bits)
    _check_choice("adder_arch", adder_arch, ADDERS)
    b = HashingBuilder(name)
    x, neg, clear = b.input("x", x_bits), b.input("neg", 1)[0], b.input("clear", 1)[0]
    for port, kind in (("acc_pos", "ANDNOT"), ("acc_neg", "AND")):
        term = [b.gate(kind, xi, neg, group="mux") for xi in x]
        b.output(port, _accumulate(b, term, False, clear, acc_bits, adder_arch))
    return sweep(b.build())


def sign_select_unit(x_bits: int, acc_bits: int = 32, x_signed: bool = True,
                     adder_arch: str = DEFAULT_ADDER) -> Netlist:
    """BWN (`pannjax.ops.bwn`): acc <= (clear ? 0 : acc) + (s ? -x : x), s = 1 for a weight -alpha.
    Inputs x, s, clear; output acc. Conditional negation: x XOR s and carry-in s."""
    return _signed_select_netlist(f"sign_select_x{x_bits}{_sign_tag(x_signed)}_acc{acc_bits}_{adder_arch}",
                                  x_bits, x_signed, "s", acc_bits, adder_arch)


def shift_accumulate_unit(x_bits: int, shift_bits: int, acc_bits: int = 32, x_signed: bool = True,
                          adder_arch: str = DEFAULT_ADDER) -> Netlist:
    """PoT / DeepShift bitshift-and-accumulate, exactly `pannjax.ops.shift.shift_accumulate`:

        acc <= (clear ? 0 : acc) + sign * (x << (M - shift)),    M = max_shift = 2^shift_bits - 1

    Inputs x (x_bits), sign (2-bit two's complement: 1, -1, or 0 for a zero (pruned) weight), shift
    (shift_bits, 0..M), clear; output acc. Datapath: x gated by sign bit 0 (a zero weight adds 0; the
    unused code -2 also adds 0), a barrel shifter by M - shift = ~shift (the multiplexers' inputs
    swapped, no inverters) to x_bits + M bits, conditional negation by sign bit 1 (XOR, and the
    accumulator's carry-in)."""
    _check_int("x_bits", x_bits, 1, MAX_OPERAND_BITS)
    _check_int("shift_bits", shift_bits, 1, MAX_SHIFT_BITS)
    _check_acc_bits(acc_bits, x_bits + 2 ** shift_bits)
    _check_choice("adder_arch", adder_arch, ADDERS)
    b = HashingBuilder(f"shift_x{x_bits}{_sign_tag(x_signed)}_s{shift_bits}_acc{acc_bits}_{adder_arch}")
    x = b.input("x", x_bits, x_signed)
    nonzero, neg = b.input("sign", 2, signed=True)
    shift, clear = b.input("shift", shift_bits), b.input("clear", 1)[0]
    gated = [b.gate("AND", xi, nonzero, group="shifter") for xi in x]
    shifted = barrel_shift_left(b, gated, shift, x_signed, "shifter", invert_amount=True)
    term = conditional_invert(b, extend(shifted, len(shifted) + (not x_signed), x_signed), neg, "negate")
    b.output("acc", _accumulate(b, term, True, clear, acc_bits, adder_arch, carry_in=neg), signed=True)
    return sweep(b.build())


def absdiff_accumulate_unit(x_bits: int, w_bits: int, acc_bits: int = 32, signed: bool = True,
                            adder_arch: str = DEFAULT_ADDER) -> Netlist:
    """AdderNet (`pannjax.ops.adder`, y = -sum |x - w|): acc <= (clear ? 0 : acc) - |x - w|.

    Inputs x, w (both two's complement or both unsigned), clear; output acc. d = x - w exact in
    D = max(x_bits, w_bits) + 1 bits (subtractor: inverters and carry-in 1, group "absdiff"). Then
    -|d| = (d < 0 ? d : -d), a conditional negation by ~sign(d): the addend is d XNOR sign(d) (group
    "negate") with carry-in ~sign(d). Its top bit is sign(d) XNOR sign(d) = 1, a constant."""
    _check_int("x_bits", x_bits, 1, MAX_OPERAND_BITS)
    _check_int("w_bits", w_bits, 1, MAX_OPERAND_BITS)
    width = max(x_bits, w_bits) + 1
    _check_acc_bits(acc_bits, width)
    _check_choice("adder_arch", adder_arch, ADDERS)
    b = HashingBuilder(f"absdiff_x{x_bits}_w{w_bits}{_sign_tag(signed)}_acc{acc_bits}_{adder_arch}")
    x, w, clear = _operands(b, x_bits, signed, w_bits, signed)
    w_inv = conditional_invert(b, extend(w, width, signed), CONST1, "absdiff")
    d, _ = ADDERS[adder_arch](b, extend(x, width, signed), w_inv, CONST1, "absdiff")
    term = [b.gate("XNOR", di, d[-1], group="negate") for di in d[:-1]] + [CONST1]
    carry_in = b.gate("NOT", d[-1], group="negate")
    b.output("acc", _accumulate(b, term, True, clear, acc_bits, adder_arch, carry_in), signed=True)
    return sweep(b.build())


def mf_unit(x_bits: int, w_bits: int, acc_bits: int = 32, x_signed: bool = True, w_signed: bool = True,
            adder_arch: str = DEFAULT_ADDER) -> Netlist:
    """ENOS's MF operator (`pannjax.ops.mf`): acc <= (clear ? 0 : acc) + sign(x)|w| + sign(w)|x|, sign(0) = 0.

    For x, w != 0, |w| = sign(w) w, so the term is sign(x) sign(w) (x + w), and 0 when either is 0.
    Datapath: s = x + w exact in W = max(width of x, width of w) + 1 bits (an unsigned operand counts one
    bit more; group "mf"), flip = sign bit of x XOR that of w, live = (x != 0) & (w != 0) (OR trees,
    "mf"); the addend is (s XOR flip) & live with carry-in flip & live ("negate"). Inputs x, w, clear."""
    _check_int("x_bits", x_bits, 1, MAX_OPERAND_BITS)
    _check_int("w_bits", w_bits, 1, MAX_OPERAND_BITS)
    width = max(x_bits + (not x_signed), w_bits + (not w_signed)) + 1
    _check_acc_bits(acc_bits, width)
    _check_choice("adder_arch", adder_arch, ADDERS)
    b = HashingBuilder(f"mf_x{x_bits}{_sign_tag(x_signed)}_w{w_bits}{_sign_tag(w_signed)}_acc{acc_bits}_{adder_arch}")
    x, w, clear = _operands(b, x_bits, x_signed, w_bits, w_signed)
    s, _ = ADDERS[adder_arch](b, extend(x, width, x_signed), extend(w, width, w_signed), CONST0, "mf")
    flip = b.gate("XOR", x[-1] if x_signed else CONST0, w[-1] if w_signed else CONST0, group="mf")
    live = b.gate("AND", any_bit(b, x, "mf"), any_bit(b, w, "mf"), group="mf")
    term = [b.gate("AND", v, live, group="negate") for v in conditional_invert(b, s, flip, "negate")]
    carry_in = b.gate("AND", flip, live, group="negate")
    b.output("acc", _accumulate(b, term, True, clear, acc_bits, adder_arch, carry_in), signed=True)
    return sweep(b.build())


def xnor_popcount_unit(n: int, acc_bits: int = 16, adder_arch: str = DEFAULT_ADDER) -> Netlist:
    """XNOR-Net (`pannjax.ops.xnor`): acc <= (clear ? 0 : acc) + popcount(XNOR(x, w)) over n-bit words of
    binary activations and weights (bit 1 = +1). Inputs x, w (n bits), clear; output acc. The +-1 dot
    product of K operations is 2 acc - n K (`xnor_popcount_dense`), formed once per output. XNOR cells
    and a Wallace-tree counter, group "popcount"."""
    _check_int("n", n, 1, MAX_POPCOUNT_BITS)
    _check_acc_bits(acc_bits, n.bit_length())
    _check_choice("adder_arch", adder_arch, ADDERS)
    b = HashingBuilder(f"xnor_popcount_{n}_acc{acc_bits}_{adder_arch}")
    x, w, clear = _operands(b, n, False, n, False)
    count = popcount(b, [b.gate("XNOR", xi, wi, group="popcount") for xi, wi in zip(x, w)], "popcount")
    b.output("acc", _accumulate(b, count, False, clear, acc_bits, adder_arch), signed=True)
    return sweep(b.build())


# ---------------------------------------------------------------------------------------------------
# Dispatcher
# ---------------------------------------------------------------------------------------------------

UNITS: dict[str, Callable[..., Netlist]] = {
    "mult": multiplier_unit, "mac": mac_unit, "add": repeated_addition_unit, "shift": shift_accumulate_unit,
    "absdiff": absdiff_accumulate_unit, "sign_select": sign_select_unit, "mf": mf_unit,
    "xnor": xnor_popcount_unit, "adder": adder_unit, "accumulator": accumulator_unit,
    "subtractor": subtractor_unit,
}


@functools.lru_cache(maxsize=512)
def _cached_unit(unit: str, arguments: tuple) -> Netlist:
    return UNITS[unit](**{name: value for name, _, value in arguments})


def unit_netlist(unit: str, **kwargs) -> Netlist:
    """The netlist of a unit by its pricing name (`UNITS`: "mult", "mac", "add" (PANN repeated addition),
    "shift", "absdiff", "sign_select", "mf", "xnor", "adder", "accumulator", "subtractor") and its generator's keyword
    arguments; cached on the arguments with defaults filled in (netlists are immutable)."""
    _check_choice("unit", unit, UNITS)
    try:
        bound = inspect.signature(UNITS[unit]).bind(**kwargs)
    except TypeError as e:
        raise ConfigError(f"unit {unit!r}: {e}") from None
    bound.apply_defaults()
    return _cached_unit(unit, tuple((k, type(v), v) for k, v in bound.arguments.items()))  # True != 1 here


__all__ = [
    "ACCUMULATIONS", "ADDERS", "MULTIPLIERS", "UNITS", "absdiff_accumulate_unit", "absolute", "accumulator_unit",
    "adder_unit", "any_bit", "array_multiplier", "barrel_shift_left", "baugh_wooley_multiplier", "BitHeap",
    "booth4_multiplier", "brent_kung_adder", "conditional_invert", "conditional_negate", "extend", "full_adder",
    "half_adder", "HashingBuilder", "kogge_stone_adder", "mac_unit", "mf_unit", "multiplier_unit", "mux", "negate",
    "popcount", "prefix_adder", "repeated_addition_unit", "ripple_adder", "shift_accumulate_unit",
    "sign_select_unit", "subtractor_unit", "sweep", "unit_netlist", "xnor_popcount_unit",
]
