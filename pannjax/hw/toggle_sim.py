"""Bit-accurate toggle (bit-flip) simulator of MAC units, in JAX (jit, vectorised).

A MAC unit is modelled at register-transfer level as the registers the PANN power model counts
(Spingarn-Eliezer et al., "Power Awareness in Low Precision Neural Networks", arXiv 2202.02783, Sec. 3:
power is proportional to the number of bit flips of the unit's signals):

  * ``inputs``       the b_x-bit activation register and the b_w-bit weight register;
  * ``multiplier``   the b_x x b_w partial-product array of an array / Baugh-Wooley multiplier,
                     pp_ij = x_i AND w_j (Baugh-Wooley complements some pp's, which leaves their toggle
                     count unchanged), our gate-level proxy for the multiplier's internal activity;
  * ``product``      the (b_x + b_w)-bit product register;
  * ``acc_input``    the B - (b_x + b_w) sign-extension lines that feed the product into the B-bit
                     adder (each flips whenever the product's sign bit flips; zero for unsigned products);
  * ``accumulator``  the B-bit accumulator register, two's complement with wrap-around mod 2^B.

Every register starts at zero, and one operation (one MAC) updates all of them once. Toggles of an
operation are ``popcount(new XOR old)`` of each register. With ``MacConfig.skip_zero_weights`` the unit
is clock-gated on zero weights (pruned weights of a bitshift-and-accumulate unit, Przewlocka-Rus &
Kryjak, arXiv 2209.15257): an operation whose weight is 0 updates no register and costs no toggles;
the next operation toggles against the registers' last values. Mean toggles stay per nominal operation
(skipped ones count 0), so mean x all MACs is still the layer's total.

Dataflows (``dataflow``):
  * ``"output_stationary"`` (default): each unit owns one output and streams its reduction: operand
    arrays ``(K, units)`` with the reduction order along axis 0; the accumulator runs through the partial
    sums S_1 .. S_K of that output.
  * ``"weight_stationary"``: unit k holds weight k of the reduction and sees the outputs one after another
    (arrays ``(outputs, K)``, axis 0 is time): its input register steps through x[o, k], its weight
    register holds w[k] (it toggles only when loaded: pass the same weight in every row), and its
    partial-sum register goes from S[o-1, k] to S[o, k] (S the running sum along the reduction).

Layout is time-major, (time, units). The simulator is a `lax.scan` over time whose body updates all
units at once (vectorised): products, the running sum (int32 arithmetic wraps mod 2^32 exactly like a
32-bit register; its low B bits are the B-bit register), XOR and `lax.population_count`. The partial-
product array is counted row by row in closed form from popcounts of the operands (see `_step_fn`),
so its cost does not grow with the widths; the widths themselves enter as data (masks), so one
compilation serves every configuration of a given stream shape.

`reference_toggles` is a pure-Python-integer re-implementation used by the tests.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from pannjax.errors import ConfigError

DATAFLOWS = ("output_stationary", "weight_stationary")
_UNROLL = 4  # scan steps per loop iteration (measured best on CPU)
COMPONENTS = ("inputs", "multiplier", "product", "acc_input", "accumulator")


@dataclasses.dataclass(frozen=True)
class MacConfig:
    """Widths and signedness of one MAC unit.

    x_bits, w_bits: operand widths (1..16); acc_bits: accumulator width B (>= x_bits + w_bits, <= 32);
    x_signed, w_signed: two's complement operands (else unsigned). The product is signed if either is.
    skip_zero_weights: the unit is not clocked when the weight is zero (no register updates).
    """

    x_bits: int
    w_bits: int
    acc_bits: int = 32
    x_signed: bool = True
    w_signed: bool = True
    skip_zero_weights: bool = False

    def __post_init__(self):
        for name, b in (("x_bits", self.x_bits), ("w_bits", self.w_bits)):
            if not 1 <= b <= 16:
                raise ConfigError(f"{name}={b}: the toggle model supports operand widths 1..16")
        if not self.product_bits <= self.acc_bits <= 32:
            raise ConfigError(f"acc_bits={self.acc_bits}: must be in {self.product_bits}..32 "
                              f"(the accumulator cannot be narrower than the {self.product_bits}-bit product)")

    @property
    def product_bits(self) -> int:
        return self.x_bits + self.w_bits

    @property
    def product_signed(self) -> bool:
        return self.x_signed or self.w_signed

    def code_range(self, which: str) -> tuple[int, int]:
        bits, signed = (self.x_bits, self.x_signed) if which == "x" else (self.w_bits, self.w_signed)
        return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _mask(bits: int) -> int:
    """Low-`bits` mask as an int32 value (bits == 32 gives -1, all ones)."""
    return -1 if bits >= 32 else (1 << bits) - 1


def _check_codes(name: str, arr, cfg: MacConfig) -> None:
    if isinstance(arr, jax.core.Tracer) or not np.size(arr):
        return
    lo, hi = cfg.code_range(name)
    amin, amax = int(np.min(arr)), int(np.max(arr))
    if amin < lo or amax > hi:
        raise ConfigError(f"{name} codes span [{amin}, {amax}] but {name}_bits and signedness allow [{lo}, {hi}]")


def _step_fn(dataflow: str, count_partial_products: bool, per_op: bool, skip_zero: bool, params):
    """One clock of every unit: new operands in, all registers updated, toggles of each counted.
    `params` = (x mask, w mask, product mask, product sign bit, accumulator mask, extension bits) as
    traced int32 scalars, so one compilation serves every width."""
    pc = jax.lax.population_count
    mx, mw, mp, sign_shift, macc, ext = params

    def step(carry, xw):
        px, pw, pc_px, pc_pw, pprod, ps, cnt = carry
        xs, ws = xw
        xs = xs.astype(jnp.int32)
        ws = ws.astype(jnp.int32)
        p = xs * ws
        if dataflow == "output_stationary":
            s = ps + p
        else:  # unit k's partial-sum register holds S[o, k] = sum_{i<=k} p[o, i]
            s = jnp.cumsum(p)
        xb, wb = xs & mx, ws & mw
        c_dx = pc(xb ^ px)
        pc_x, pc_w = pc(xb), pc(wb)
        if count_partial_products:
            # row j of the pp array is x AND w_j: it toggles popcount(x ^ x') bits if w_j = w'_j = 1,
            # popcount(x) if only w_j = 1, popcount(x') if only w'_j = 1, none if both are 0
            n11 = pc(wb & pw)
            c_mul = n11 * c_dx + (pc_w - n11) * pc_x + (pc_pw - n11) * pc_px
            c_dw = pc_w + pc_pw - 2 * n11  # popcount(w ^ w') without another popcount
        else:
            c_mul = jnp.zeros_like(p)
            c_dw = pc(wb ^ pw)
        dp = p ^ pprod
        c_prod = pc(dp & mp)
        c_ext = ((dp >> sign_shift) & 1) * ext
        c_acc = pc((s ^ ps) & macc)
        ops = jnp.stack([c_dx + c_dw, c_mul, c_prod, c_ext, c_acc])
        new = (xb, wb, pc_x, pc_w, p, s)
        if skip_zero:  # clock-gated unit: a zero weight leaves every register as it was
            active = ws != 0
            new = tuple(jnp.where(active, n, o) for n, o in zip(new, (px, pw, pc_px, pc_pw, pprod, ps)))
            ops = jnp.where(active, ops, 0)
        carry = (*new, cnt + ops)
        return carry, (ops if per_op else None)

    return step


def _simulate(x, w, cfg: MacConfig, dataflow: str, count_partial_products: bool, per_op: bool):
    """Widths enter as data (masks, sign bit, extension bits), so one compilation serves every config."""
    params = jnp.array([_mask(cfg.x_bits), _mask(cfg.w_bits), _mask(cfg.product_bits), cfg.product_bits - 1,
                        _mask(cfg.acc_bits), cfg.acc_bits - cfg.product_bits if cfg.product_signed else 0],
                       jnp.int32)
    return _simulate_jit(x, w, params, dataflow, count_partial_products, per_op, cfg.skip_zero_weights)


@partial(jax.jit, static_argnames=("dataflow", "count_partial_products", "per_op", "skip_zero"))
def _simulate_jit(x, w, params, dataflow: str, count_partial_products: bool, per_op: bool, skip_zero: bool):
    units = x.shape[1]
    z = jnp.zeros((units,), jnp.int32)
    carry0 = (z, z, z, z, z, z, jnp.zeros((len(COMPONENTS), units), jnp.int32))
    step = _step_fn(dataflow, count_partial_products, per_op, skip_zero, tuple(params[i] for i in range(6)))
    carry, ys = jax.lax.scan(step, carry0, (x, w), unroll=_UNROLL)
    return carry[-1], ys


def _prepare(x_codes, w_codes, cfg: MacConfig, dataflow: str):
    if dataflow not in DATAFLOWS:
        raise ConfigError(f"dataflow={dataflow!r}: expected one of {DATAFLOWS}")
    x, w = jnp.broadcast_arrays(jnp.asarray(x_codes), jnp.asarray(w_codes))
    if x.ndim != 2:
        raise ConfigError(f"operand streams must be 2-D (time, units); got shape {x.shape}")
    for name, arr in (("x", x_codes), ("w", w_codes)):
        _check_codes(name, arr, cfg)
    return x, w


def simulate_toggles(x_codes, w_codes, cfg: MacConfig, dataflow: str = "output_stationary",
                     count_partial_products: bool = True) -> dict[str, jax.Array]:
    """Exact toggles of every operation, by component: int32 arrays shaped (time, units).

    ``x_codes``/``w_codes``: integer codes broadcastable to one (time, units) shape. Output-stationary:
    column u is the reduction stream of output u, in dot-product order. Weight-stationary: column k is
    reduction index k, rows are the outputs in the order they pass. Codes outside the operand range give
    a one-line error."""
    x, w = _prepare(x_codes, w_codes, cfg, dataflow)
    _, ys = _simulate(x, w, cfg, dataflow, count_partial_products, True)
    return {name: ys[:, i, :] for i, name in enumerate(COMPONENTS)}


def toggle_counts(x_codes, w_codes, cfg: MacConfig, dataflow: str = "output_stationary",
                  count_partial_products: bool = True) -> jax.Array:
    """Total toggles of each unit over its whole stream, by component: int32 (len(COMPONENTS), units),
    rows in the order of `COMPONENTS` (the fast path: nothing per operation is materialised). With several
    local devices (e.g. ``XLA_FLAGS=--xla_force_host_platform_device_count=2``), output-stationary units
    are split across them."""
    x, w = _prepare(x_codes, w_codes, cfg, dataflow)
    n_dev = jax.local_device_count()
    if n_dev > 1 and dataflow == "output_stationary" and x.shape[1] % n_dev == 0:
        # units are independent: split them over the host devices (one thread each), e.g. with
        # XLA_FLAGS=--xla_force_host_platform_device_count=2 on a 2-core CPU
        mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("units",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "units"))
        x, w = jax.device_put(x, sharding), jax.device_put(w, sharding)
    counts, _ = _simulate(x, w, cfg, dataflow, count_partial_products, False)
    return counts


def mean_toggles(x_codes, w_codes, cfg: MacConfig, dataflow: str = "output_stationary",
                 count_partial_products: bool = True, chunk_units: int = 8192) -> dict[str, float]:
    """Mean toggles per operation by component (plus ``"total"``) over all operations of the (time, units)
    streams; output-stationary streams are processed in chunks of `chunk_units` units (padded to one
    compiled shape, padding excluded from the counts)."""
    x = np.asarray(x_codes)
    w = np.asarray(w_codes)
    x, w = np.broadcast_arrays(x, w)
    if x.ndim != 2:
        raise ConfigError(f"operand streams must be 2-D (time, units); got shape {x.shape}")
    totals = np.zeros(len(COMPONENTS), np.int64)
    if dataflow == "weight_stationary":
        totals += np.asarray(toggle_counts(x, w, cfg, dataflow, count_partial_products), np.int64).sum(1)
    elif x.shape[1] <= chunk_units:  # pad the units to a power of two: few distinct compiled shapes
        n = x.shape[1]
        width = max(256, 1 << (n - 1).bit_length())
        xs, ws = np.pad(x, ((0, 0), (0, width - n))), np.pad(w, ((0, 0), (0, width - n)))
        totals += np.asarray(toggle_counts(xs, ws, cfg, dataflow, count_partial_products), np.int64)[:, :n].sum(1)
    else:
        for lo in range(0, x.shape[1], chunk_units):
            xs, ws = x[:, lo:lo + chunk_units], w[:, lo:lo + chunk_units]
            n = xs.shape[1]
            if n < chunk_units:
                xs = np.pad(xs, ((0, 0), (0, chunk_units - n)))
                ws = np.pad(ws, ((0, 0), (0, chunk_units - n)))
            c = np.asarray(toggle_counts(xs, ws, cfg, dataflow, count_partial_products), np.int64)
            totals += c[:, :n].sum(1)
    n_ops = max(x.size, 1)
    out = {name: float(t) / n_ops for name, t in zip(COMPONENTS, totals)}
    out["total"] = float(sum(out[c] for c in COMPONENTS))
    return out


# ---------------------------------------------------------------------------------------------------
# Pure-Python reference (slow; for tests)
# ---------------------------------------------------------------------------------------------------

def _bits(v: int, n: int) -> int:
    return v & ((1 << n) - 1)


def reference_toggles(x_stream, w_stream, cfg: MacConfig) -> list[dict[str, int]]:
    """Toggles per operation of ONE output-stationary MAC unit fed `x_stream`/`w_stream` (Python ints),
    computed with Python integers bit by bit: registers start at 0; the accumulator is the B-bit two's
    complement value of the exact running sum mod 2^B. With `cfg.skip_zero_weights` an operation whose
    weight is 0 is not performed: all-zero toggles, registers unchanged."""
    n = cfg.product_bits
    prev = dict(x=0, w=0, p=0, s=0, pp=[0] * (cfg.x_bits * cfg.w_bits), sign=0)
    acc = 0
    out = []
    for xv, wv in zip(x_stream, w_stream):
        xv, wv = int(xv), int(wv)
        if cfg.skip_zero_weights and wv == 0:
            out.append(dict.fromkeys(("inputs", "multiplier", "product", "acc_input", "accumulator"), 0))
            continue
        xb, wb = _bits(xv, cfg.x_bits), _bits(wv, cfg.w_bits)
        p = xv * wv
        acc = acc + p
        pb, sb = _bits(p, n), _bits(acc, cfg.acc_bits)
        pp = [((xb >> i) & 1) & ((wb >> j) & 1) for i in range(cfg.x_bits) for j in range(cfg.w_bits)]
        sign = (pb >> (n - 1)) & 1 if cfg.product_signed else 0
        rec = dict(
            inputs=bin(xb ^ prev["x"]).count("1") + bin(wb ^ prev["w"]).count("1"),
            multiplier=sum(a != b for a, b in zip(pp, prev["pp"])),
            product=bin(pb ^ prev["p"]).count("1"),
            acc_input=(cfg.acc_bits - n) * (sign != prev["sign"]),
            accumulator=bin(sb ^ prev["s"]).count("1"),
        )
        out.append(rec)
        prev = dict(x=xb, w=wb, p=pb, s=sb, pp=pp, sign=sign)
    return out
