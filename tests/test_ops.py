import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pannjax.errors import ConfigError
from pannjax.numerics import FLOAT32, NumberFormat
from pannjax.ops import Analog, ContractionShape, InMemory, MacOperator
from pannjax.ops.in_memory import crossbar_contraction, digitise, wrap
from pannjax.hw.units import table_ops


def reference_conv(x, w, stride, pad, groups):
    """Direct loops over output positions (numpy), NHWC/HWIO, explicit symmetric padding."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, h, wd, c = x.shape
    kh, kw, cg, co = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, ho, wo, co))
    og = co // groups
    for i, j, o in itertools.product(range(ho), range(wo), range(co)):
        g = o // og
        patch = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw, g * cg:(g + 1) * cg]
        out[:, i, j, o] = np.einsum("nhwc,hwc->n", patch, w[..., o])
    return out


@pytest.mark.parametrize("stride,pad,groups", [(1, 1, 1), (2, 1, 1), (1, 0, 2), (2, 1, 8)])
def test_mac_conv_matches_reference(stride, pad, groups):
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 8))
    w = jax.random.normal(jax.random.key(1), (3, 3, 8 // groups, 8))
    y = MacOperator().conv(x, w, (stride, stride), ((pad, pad), (pad, pad)), groups)
    np.testing.assert_allclose(y, reference_conv(x, w, stride, pad, groups), rtol=1e-5, atol=1e-5)


def test_mac_dense_and_gradient():
    x = jax.random.normal(jax.random.key(0), (5, 12))
    w = jax.random.normal(jax.random.key(1), (12, 3))
    np.testing.assert_allclose(MacOperator().dense(x, w), np.asarray(x) @ np.asarray(w), rtol=1e-5)
    gx = jax.grad(lambda x: MacOperator().dense(x, w).sum())(x)
    np.testing.assert_allclose(gx, np.broadcast_to(np.asarray(w).sum(1), x.shape), rtol=1e-5)


def test_analog_mode_quantizes_each_chunk_partial_sum():
    """With one row per array and a 1-bit-per-sign ADC, each chunk's sum is sign(p) * max|p|."""
    x = jax.random.normal(jax.random.key(2), (4, 6))
    w = jax.random.normal(jax.random.key(3), (6, 2))
    fine = Analog(MacOperator(), adc_bits=16, rows=4).dense(x, w)
    np.testing.assert_allclose(fine, np.asarray(x) @ np.asarray(w), atol=2e-3)
    coarse = Analog(MacOperator(), adc_bits=2, rows=6).dense(x, w)
    p = np.asarray(x) @ np.asarray(w)
    np.testing.assert_allclose(coarse, np.round(p / np.abs(p).max()) * np.abs(p).max(), rtol=1e-6)
    xc = jax.random.normal(jax.random.key(4), (2, 5, 5, 16))
    wc = jax.random.normal(jax.random.key(5), (3, 3, 16, 4))
    analog = Analog(MacOperator(), adc_bits=12, rows=36).conv(xc, wc)
    np.testing.assert_allclose(analog, MacOperator().conv(xc, wc), atol=0.05)


def test_analog_backward_equals_straight_through_each_chunk():
    """The crossbar backward pass is one exact contraction's VJP; it equals back-propagating through every
    chunk and its ADC with straight-through rounding, away from each chunk's full-scale element (where the
    clip splits the per-chunk gradient in two, so those outputs get no cotangent here)."""
    op = Analog(MacOperator(), adc_bits=4, rows=36)
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 16))
    w = jax.random.normal(jax.random.key(1), (3, 3, 16, 5))
    parts = op.conv_partials(op.inner, x, w, (1, 1), "SAME", 1)
    at_full_scale = sum(jnp.abs(p) == jnp.abs(p).max() for p in parts) > 0
    g = jnp.where(at_full_scale, 0.0, jax.random.normal(jax.random.key(2), (2, 6, 6, 5)))
    chunks = lambda x, w: op.conv_partials(op.inner, x, w, (1, 1), "SAME", 1)  # noqa: E731
    per_chunk = jax.grad(lambda x, w: jnp.sum(g * digitise(chunks(x, w), op, None)), (0, 1))(x, w)
    crossbar = jax.grad(lambda x, w: jnp.sum(g * op.conv(x, w)), (0, 1))(x, w)
    np.testing.assert_array_equal(op.conv(x, w), digitise(parts, op, None))
    for a, b in zip(crossbar, per_chunk):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_crossbar_contraction_runs_the_branch_of_a_traced_index():
    """Index 0: the exact sum; index j: the chunks digitised by ADC j. One compilation for every index; the
    gradient is the exact contraction's whichever branch ran."""
    modes = (Analog(MacOperator(), adc_bits=2, rows=4), Analog(MacOperator(), adc_bits=5, rows=4))
    op = modes[0]
    x = jax.random.normal(jax.random.key(3), (3, 10))
    w = jax.random.normal(jax.random.key(4), (10, 2))
    traces = []

    @jax.jit
    def value_and_grad(x, w, which):
        traces.append(which)
        return jax.value_and_grad(lambda w: jnp.sum(crossbar_contraction(
            op.dense_digital, lambda x, w: op.dense_partials(op.inner, x, w), x, w, modes, (None, None), which)))(w)

    parts = op.dense_partials(op.inner, x, w)
    expected = [x @ w, digitise(parts, modes[0], None), digitise(parts, modes[1], None)]
    for which, y in enumerate(expected):
        value, grad = value_and_grad(x, w, jnp.int32(which))
        np.testing.assert_allclose(value, jnp.sum(y), rtol=1e-5)
        np.testing.assert_allclose(grad, np.broadcast_to(np.asarray(x).sum(0)[:, None], w.shape), rtol=1e-5)
    assert len(traces) == 1 and len({float(jnp.sum(y)) for y in expected}) == 3


def test_analog_noise_needs_rng_and_changes_output():
    op = Analog(MacOperator(), adc_bits=8, rows=4, noise_std=0.1)
    x, w = jnp.ones((2, 8)), jnp.ones((8, 3))
    assert not np.allclose(op.dense(x, w, rng=jax.random.key(0)), op.dense(x, w))


def test_mac_cost_counts():
    shape = ContractionShape(outputs=100, fan_in=27)
    units = MacOperator().cost(shape, NumberFormat("int", 4, False), NumberFormat("int", 4), 32)
    counts = {c.kind: c for c in table_ops(units)}
    assert counts["mul"].count == 2700 and counts["mul"].bits == (4, 4)
    assert counts["add"].count == 2700 and counts["add"].bits == (32,)
    assert {c.kind for c in table_ops(MacOperator().cost(shape, FLOAT32, FLOAT32))} == {"fmul", "fadd"}
    analog = {c.kind: c for c in table_ops(Analog(MacOperator(), adc_bits=6, rows=10).cost(
        shape, NumberFormat("int", 4, False), NumberFormat("int", 4)))}
    assert analog["cim_mac"].count == 2700 and analog["adc"].count == 300 and analog["adc"].bits == (6,)


@pytest.mark.parametrize("kwargs, key", [(dict(kind="optical"), "mode.kind"), (dict(adc_bits=0), "mode.adc_bits"),
                                         (dict(rows_per_array=0), "mode.rows"), (dict(noise_std=-1), "mode.noise_std"),
                                         (dict(bit_serial=3), "mode.bit_serial"), (dict(depth=2), "mode.depth")])
def test_bad_mode(kwargs, key):
    with pytest.raises(ConfigError, match=f"^{key}"):
        wrap(MacOperator(), **{"kind": "aimc", **kwargs})
    with pytest.raises(ConfigError, match="^mode.kind"):
        InMemory(MacOperator(), "digital")


def test_shape_mismatch_errors_are_one_line():
    with pytest.raises(ConfigError, match="input channels") as e:
        MacOperator().conv(jnp.ones((1, 4, 4, 3)), jnp.ones((3, 3, 4, 8)))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="dense expects"):
        MacOperator().dense(jnp.ones((2, 5)), jnp.ones((4, 3)))
    with pytest.raises(ConfigError, match="groups"):
        MacOperator().conv(jnp.ones((1, 4, 4, 6)), jnp.ones((3, 3, 1, 8)), groups=6)


def test_digital_in_memory_computes_the_inner_operator_exactly():
    """A DIMC macro's adder trees give the exact digital result (MAC, and XNOR with its binarisation and
    scaling around the reduction); it prices the inner operator's units with every product computed."""
    from pannjax.ops import ShiftOperator, XnorOperator

    x = jax.random.normal(jax.random.key(6), (2, 6, 6, 8))
    w = jax.random.normal(jax.random.key(7), (3, 3, 8, 4))
    for inner in (MacOperator(), XnorOperator(), ShiftOperator()):
        np.testing.assert_array_equal(InMemory(inner, "dimc", rows=16).conv(x, w), inner.conv(x, w))
    shape = ContractionShape(outputs=10, fan_in=72)
    fx, fw = NumberFormat("int", 4, False), NumberFormat("int", 4)
    dense = ShiftOperator().cost(shape, fx, fw, 24, density=1.0)
    assert ShiftOperator().cost(shape, fx, fw, 24, density=0.5) != dense  # the digital shifter skips zeros
    assert InMemory(ShiftOperator(), "dimc").cost(shape, fx, fw, 24, density=0.5) == dense
    assert InMemory(XnorOperator(), "aimc", rows=16).conv(x, w).shape == XnorOperator().conv(x, w).shape


def test_a_digital_macro_exports_its_inner_datapath_and_an_analog_one_refuses():
    """DIMC computes the inner operator's integers (the same stored weights and datapath); an analog macro's ADC
    full scale follows the batch, so it has no integer program: one line."""
    from pannjax.ops import ShiftOperator
    from pannjax.quant.uniform import UniformQuantizer

    quantizer = UniformQuantizer(bits=4, step_mode="fixed", fixed_step=0.25)
    kernel = np.random.default_rng(0).integers(-7, 8, (3, 3, 2, 4)) * 0.25
    for inner in (MacOperator(), ShiftOperator()):
        want = inner.integer_weights(quantizer, kernel, 0.5, 8)
        got = InMemory(inner, "dimc").integer_weights(quantizer, kernel, 0.5, 8)
        assert got.datapath == want.datapath and got.attrs == want.attrs
        for name in want.arrays:
            np.testing.assert_array_equal(got.arrays[name], want.arrays[name])
        with pytest.raises(ConfigError, match=rf"^op={inner.name} in mode aimc: an analog macro's ADC full scale"):
            Analog(inner).integer_weights(quantizer, kernel, 0.5, 8)
