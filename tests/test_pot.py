"""Power-of-two and additive power-of-two quantizers, the shift operator and its integer path, config."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from pannjax.build import build_operator, build_policy, build_quantizers
from pannjax.errors import ConfigError
from pannjax.nn import QDense
from pannjax.numerics import FLOAT32, NumberFormat
from pannjax.ops import Analog, ContractionShape, ShiftOperator, shift_accumulate, shift_conv
from pannjax.quant import ApotQuantizer, PotQuantizer, UniformQuantizer
from pannjax.hw.units import table_ops

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")

# Published level sets in units of the scale: the paper variant (all 2^b codes are +-2^-k) and the
# variant with one code reserved for zero.
POT_LEVELS = {
    (2, False): [-1, -1 / 2, 1 / 2, 1],
    (3, False): [-1, -1 / 2, -1 / 4, -1 / 8, 1 / 8, 1 / 4, 1 / 2, 1],
    (4, False): sorted([s * 2.0**-k for s in (-1, 1) for k in range(8)]),
    (2, True): [-1, 0, 1],
    (3, True): [-1, -1 / 2, -1 / 4, 0, 1 / 4, 1 / 2, 1],
    (4, True): sorted([s * 2.0**-k for s in (-1, 1) for k in range(7)] + [0]),
}


def fixed_pot(bits, zero_level=False, scale=1.0):
    return PotQuantizer(bits=bits, zero_level=zero_level, per_channel=False, scale_mode="fixed", fixed_scale=scale)


@pytest.mark.parametrize("bits,zero_level", sorted(POT_LEVELS))
def test_pot_levels_are_the_published_set(bits, zero_level):
    q = fixed_pot(bits, zero_level)
    assert list(q.levels()) == POT_LEVELS[bits, zero_level]
    assert len(q.levels()) == 2**bits - zero_level  # every b-bit code used (one zero code if reserved)
    x = jnp.linspace(-1.5, 1.5, 30001)  # includes 0.0 exactly
    reached = sorted(set(np.asarray(q.quantize(x)).tolist()) - {0.0})
    assert reached == [v for v in POT_LEVELS[bits, zero_level] if v != 0]
    assert float(q.quantize(jnp.zeros(()))) == 0.0  # an exact (pruned) zero stays zero in both variants


def test_pot_rounding_is_in_the_log_domain():
    q = fixed_pot(4, scale=2.0)  # levels 2 * 2^-k
    x = jnp.array([2.0, 5.0, 1.4, 1.45, -0.3, 0.001, 0.0])
    # log2(1.4/2) = -0.515 -> 2^-1; log2(1.45/2) = -0.464 -> 2^0; 0.001 clamps up to the smallest level
    np.testing.assert_array_equal(q.quantize(x), [2.0, 2.0, 1.0, 2.0, -0.25, 2.0 / 128, 0.0])
    z = fixed_pot(4, zero_level=True, scale=2.0)  # smallest level 2/64: below half of it -> 0
    np.testing.assert_array_equal(z.quantize(jnp.array([2 / 64, 0.0157, 0.0156])), [2 / 64, 2 / 64, 0.0])


def test_pot_integer_view_gives_sign_and_shift():
    q = fixed_pot(3, scale=0.5)  # K = 4, max shift 3
    x = jnp.array([0.5, -0.25, 0.07, -0.01, 0.0])
    v = q.integer(x)
    np.testing.assert_array_equal(v.sign, [1, -1, 1, -1, 0])
    np.testing.assert_array_equal(v.shift, [0, 1, 3, 3, 0])
    np.testing.assert_array_equal(v.codes, [8, -4, 1, -1, 0])
    assert v.max_shift == 3 and float(v.scale) == 0.5 / 8 and v.codes.dtype == jnp.int32
    np.testing.assert_array_equal(v.codes * v.scale, q.quantize(x))
    assert v.format == NumberFormat("int", 3, True)


def test_pot_per_channel_max_scale_puts_each_channel_max_on_level_one():
    w = jax.random.normal(jax.random.key(0), (3, 3, 4, 6)) * jnp.arange(1, 7)
    q = PotQuantizer(bits=4, scale_mode="max")
    v = q.integer(w)
    assert v.scale.shape == (1, 1, 1, 6)
    np.testing.assert_array_equal(np.abs(np.asarray(v.codes)).max(axis=(0, 1, 2)), 128)
    np.testing.assert_array_equal(v.codes * v.scale, q.quantize(w))


def test_pot_straight_through_gradients_lsq_form():
    s = jnp.array(2.0)
    q = PotQuantizer(bits=3, per_channel=False).with_learned(scale=s)  # levels 2 * {1, .5, .25, .125}
    w = jnp.array([1.2, -0.3, 5.0, -5.0])
    np.testing.assert_array_equal(jax.grad(lambda w: q.quantize(w).sum())(w), [1, 1, 0, 0])
    gs = jax.grad(lambda q: q.quantize(w).sum())(q).scale
    # dQ/ds = Q/s - w/s inside, sign(w) outside; Q(1.2) = 1 (2^-1 * 2), Q(-0.3) = -0.25; g = 1/sqrt(4)
    expected = ((0.5 - 0.6) + (-0.125 + 0.15) + 1 - 1) * 0.5
    np.testing.assert_allclose(gs, expected, rtol=1e-6)
    init = PotQuantizer(bits=3, per_channel=True).init_learned(jnp.array([[1.0, -3.0], [-2.0, 0.5]]))
    np.testing.assert_array_equal(init["scale"], [[2.0, 3.0]])


@pytest.mark.parametrize("kwargs,match", [
    ({"bits": 1}, "bits=1"), ({"bits": 6}, "bits=6"), ({"bits": 4.0}, "bits=4.0"),
    ({"scale_mode": "lsq"}, "scale_mode='lsq'"), ({"scale_mode": "fixed", "fixed_scale": 0.0}, "fixed_scale=0.0"),
])
def test_pot_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PotQuantizer(**kwargs)
    with pytest.raises(ConfigError, match="no learned scale"):
        PotQuantizer().quantize(jnp.ones(3))


# -- APoT --------------------------------------------------------------------------------------------
def test_apot_levels_are_the_published_set():
    # Li et al. ICLR 2020 Eq. 5, k = 2, n = 2 (5-bit): p0 in {0, 1, 2^-2, 2^-4}, p1 in {0, 2^-1, 2^-3, 2^-5}
    q = ApotQuantizer(bits=5, k=2, per_channel=False, scale_mode="fixed")
    mags = [0, 1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 32, 33, 36, 48]  # x 1/48 (= gamma 2^-5)
    expected = sorted({np.float32(m) * np.float32(1 / 48) * sgn for m in mags for sgn in (-1, 1)})
    assert list(q.levels()) == [float(v) for v in expected]
    assert list(ApotQuantizer(bits=3, k=2, scale_mode="fixed").levels()) == [-1, -.5, -.25, 0, .25, .5, 1]
    x = jnp.linspace(-1.2, 1.2, 20001)
    assert sorted(set(np.asarray(q.quantize(x)).tolist())) == list(q.levels())


def test_apot_integer_view_and_gradients():
    w = jax.random.normal(jax.random.key(0), (16, 8))
    q = ApotQuantizer(bits=5)
    q = q.with_learned(**q.init_learned(w))
    v = q.integer(0.9 * w)
    np.testing.assert_array_equal(v.codes * v.scale, q.quantize(0.9 * w))
    assert set(np.abs(np.asarray(v.codes)).ravel()) <= {0, 1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 32, 33, 36, 48}
    np.testing.assert_array_equal(jax.grad(lambda w: q.quantize(w).sum())(jnp.array([[0.1] * 8, [99.0] * 8])),
                                  [[1] * 8, [0] * 8])
    with pytest.raises(ConfigError, match="k=2"):
        ApotQuantizer(bits=4, k=2)


# -- shift operator ----------------------------------------------------------------------------------
def test_shift_accumulate_by_hand():
    x = jnp.array([[3, 5, 7]], jnp.int32)
    sign = jnp.array([[1, -1], [-1, 0], [1, 1]], jnp.int32)
    shift = jnp.array([[0, 2], [3, 0], [1, 3]], jnp.int32)
    # max_shift 3: col 0 = 3<<3 - 5<<0 + 7<<2 = 24 - 5 + 28; col 1 = -(3<<1) + 7<<0 = -6 + 7
    np.testing.assert_array_equal(shift_accumulate(x, sign, shift, 3), [[47, 1]])


def _operands(key, x_shape, w_shape, w_bits, zero_level):
    kx, kw = jax.random.split(jax.random.key(key))
    x = jax.random.uniform(kx, x_shape, minval=-0.2, maxval=2.2)
    w = jax.random.normal(kw, w_shape) * 0.3
    qx = UniformQuantizer(bits=4, signed=False, step_mode="fixed", fixed_step=0.125)
    qw = PotQuantizer(bits=w_bits, zero_level=zero_level, per_channel=False, scale_mode="fixed", fixed_scale=0.5)
    return x, w, qx, qw


@pytest.mark.parametrize("w_bits,zero_level", [(2, False), (3, True), (4, False), (4, True)])
def test_shift_dense_integer_path_equals_float_path_bit_exactly(w_bits, zero_level):
    x, w, qx, qw = _operands(w_bits, (5, 40), (40, 7), w_bits, zero_level)
    op = ShiftOperator()
    y_float = op.dense(qx.quantize(x), qw.quantize(w))
    y_int = op.dense_integer(qx.integer(x), qw.integer(w))
    np.testing.assert_array_equal(y_int, y_float)
    assert float(jnp.abs(y_float).max()) > 1.0


@pytest.mark.parametrize("strides,padding,groups", [((1, 1), "SAME", 1), ((2, 1), "VALID", 2),
                                                    ((2, 2), ((1, 0), (2, 1)), 8)])
def test_shift_conv_integer_path_equals_float_path_bit_exactly(strides, padding, groups):
    x, w, qx, qw = _operands(groups, (2, 7, 6, 8), (3, 3, 8 // groups, 8), 4, False)
    op = ShiftOperator()
    y_float = op.conv(qx.quantize(x), qw.quantize(w), strides, padding, groups)
    y_int = op.conv_integer(qx.integer(x), qw.integer(w), strides, padding, groups)
    assert y_int.shape == y_float.shape
    np.testing.assert_array_equal(y_int, y_float)
    per_channel = PotQuantizer(bits=4, scale_mode="max")  # per-output-channel scales broadcast too
    np.testing.assert_allclose(op.conv_integer(qx.integer(x), per_channel.integer(w), strides, padding, groups),
                               op.conv(qx.quantize(x), per_channel.quantize(w), strides, padding, groups),
                               rtol=1e-6, atol=1e-6)


def test_shift_integer_path_needs_pot_weights():
    qu = UniformQuantizer(bits=4, step_mode="fixed", fixed_step=0.1)
    with pytest.raises(ConfigError, match="power-of-two weights"):
        ShiftOperator().dense_integer(qu.integer(jnp.ones((2, 3))), qu.integer(jnp.ones((3, 4))))
    with pytest.raises(ConfigError, match="max_shift=31"):
        shift_conv(jnp.ones((1, 4, 4, 2), jnp.int32), jnp.ones((1, 1, 2, 2), jnp.int32),
                   jnp.ones((1, 1, 2, 2), jnp.int32), 31)


def test_shift_cost_counts_shifts_and_adds_and_skips_zero_weights():
    shape = ContractionShape(outputs=100, fan_in=72)
    fx, fw = NumberFormat("int", 4, False), NumberFormat("int", 4, True)
    ops = table_ops(ShiftOperator().cost(shape, fx, fw, 24))
    assert [(o.kind, o.bits, o.count) for o in ops] == [("shift", (4, 7), 7200), ("add", (24,), 7200)]
    ops = table_ops(ShiftOperator().cost(shape, fx, fw, 24, density=0.25))
    assert [o.count for o in ops] == [1800, 1800]
    assert [o.kind for o in table_ops(ShiftOperator().cost(shape, FLOAT32, FLOAT32))] == ["fmul", "fadd"]
    analog = table_ops(Analog(ShiftOperator(), rows=36).cost(shape, fx, fw, 24,
                                                                                         density=0.5))
    assert [(o.kind, o.count) for o in analog] == [("cim_mac", 7200), ("adc", 200), ("add", 100)]
    with pytest.raises(ConfigError, match="density=1.5"):
        table_ops(ShiftOperator().cost(shape, fx, fw, density=1.5))


# -- configuration -----------------------------------------------------------------------------------
def test_quant_pot_config_contract_and_shift_operator():
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=["quant=pot", "quant.w_bits=3", "quant.x_bits=4", "op=shift"])
    quant = dict(cfg.quant)
    qw, qx = build_quantizers(quant)
    assert isinstance(qw, PotQuantizer) and qw.bits == 3 and not qw.zero_level and qw.per_channel
    assert isinstance(qx, UniformQuantizer) and qx.bits == 4 and qx.signed is None
    op = build_operator(dict(cfg.op))
    assert isinstance(op, ShiftOperator)
    assert build_policy(quant, dict(cfg.op)).default.operator == op
    qw, _ = build_quantizers({"name": "apot", "w_bits": 7, "w_k": 3})
    assert isinstance(qw, ApotQuantizer) and qw.n_terms == 2
    with pytest.raises(ConfigError, match="quant.w_k"):
        build_quantizers({"name": "pot", "w_k": 2})


def test_qdense_with_pot_and_shift_equals_mac_on_pot_weights():
    x = jax.random.uniform(jax.random.key(0), (4, 16))
    qw, qx = build_quantizers({"name": "pot", "w_bits": 4, "x_bits": 4})
    layer = QDense(5, quantizer_w=qw, quantizer_x=qx, operator=ShiftOperator())
    params = layer.init(jax.random.key(1), x)["params"]
    assert params["quantizer_w"]["scale"].shape == (1, 5)
    qwb = qw.with_learned(**params["quantizer_w"])
    qxb = qx.with_input_sign(False).with_learned(**params["quantizer_x"])
    expected = qxb.quantize(x) @ qwb.quantize(params["kernel"]) + params["bias"]
    np.testing.assert_array_equal(layer.apply({"params": params}, x), expected)
