"""The operator zoo (adder, MF, BWN, XNOR, DeepShift rounding, MAC) against independent references:
explicit patch gathering in jnp (float64 numbers in numpy for values), per-product formulas from the
papers, gradients from jax.grad of the reference with the documented per-product gradient rules."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hydra import compose, initialize_config_dir

import pannjax.schema  # noqa: F401  (registers the entry points' config schemas, which configs/train.yaml names)
from pannjax.build import build_operator, build_policy
from pannjax.errors import ConfigError
from pannjax.hw.report import build_report
from pannjax.models import build_model
from pannjax.numerics import FLOAT32, NumberFormat
from pannjax.ops import (AdderOperator, Analog, BwnOperator, ContractionShape, InMemory, MacOperator, MfOperator,
                         ShiftOperator, XnorOperator, adder_lr_scaling, xnor_popcount_conv, xnor_popcount_dense)
from pannjax.quant.pot import PotQuantizer
from pannjax.quant.ste import binarize_ste, sign_ste
from pannjax.hw.units import table_ops

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


# -- references ---------------------------------------------------------------------------------
def explicit_pads(h, k, s, padding):
    if padding == "VALID":
        return (0, 0)
    if padding == "SAME":
        total = max((-(-h // s) - 1) * s + k - h, 0)
        return (total // 2, total - total // 2)
    return padding


def gather_patches(x, kh, kw, strides, padding, groups):
    """(N, Ho, Wo, G, kh*kw*C_g) patches by explicit index gathering from the zero-padded input, and
    the padded-validity mask (1 inside the image, 0 in the padding)."""
    n, h, w, c = x.shape
    ph = explicit_pads(h, kh, strides[0], padding if isinstance(padding, str) else padding[0])
    pw = explicit_pads(w, kw, strides[1], padding if isinstance(padding, str) else padding[1])
    xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
    ho = (h + sum(ph) - kh) // strides[0] + 1
    wo = (w + sum(pw) - kw) // strides[1] + 1
    rows = (np.arange(ho)[:, None] * strides[0] + np.arange(kh)[None])  # (ho, kh)
    cols = (np.arange(wo)[:, None] * strides[1] + np.arange(kw)[None])  # (wo, kw)
    p = xp[:, rows[:, None, :, None], cols[None, :, None, :], :]  # (n, ho, wo, kh, kw, c)
    p = p.reshape(n, ho, wo, kh, kw, groups, c // groups).transpose(0, 1, 2, 5, 3, 4, 6)
    return p.reshape(n, ho, wo, groups, -1)


def kernel_rows(w, groups):
    """HWIO -> (G, kh*kw*C_g, O_g), rows ordered like `gather_patches` features."""
    kh, kw, cg, co = w.shape
    return w.reshape(kh, kw, cg, groups, co // groups).transpose(3, 0, 1, 2, 4).reshape(groups, kh * kw * cg, -1)


def reference_conv(pair, x, w, strides, padding, groups):
    """y[n, p, o] = sum_k pair(patch[n, p, k], w[k, o]), one product at a time (no convolution)."""
    patches = gather_patches(x, w.shape[0], w.shape[1], strides, padding, groups)[..., None]
    out = jnp.sum(pair(*jnp.broadcast_arrays(patches, kernel_rows(w, groups))), axis=-2)  # (n, ho, wo, G, O_g)
    return out.reshape(*out.shape[:3], -1)


@jax.custom_vjp
def adder_pair(x, w):
    return -jnp.abs(x - w)


adder_pair.defvjp(lambda x, w: (-jnp.abs(x - w), (x, w)),  # AdderNet Eq. 5 and 6, per product
                  lambda r, g: (g * jnp.clip(r[1] - r[0], -1, 1), g * (r[0] - r[1])))


def alpha(w):
    return jnp.mean(jnp.abs(w), axis=tuple(range(w.ndim - 1)))


def pot_round(w, bits=5):
    """sign(w) * s * 2^clip(round(log2(|w| / s)), -(2^(b-1)-1), 0), s = max|w| per output channel."""
    s = np.abs(np.asarray(w, np.float64)).reshape(-1, w.shape[-1]).max(0)
    e = np.clip(np.round(np.log2(np.maximum(np.abs(np.asarray(w, np.float64)) / s, 1e-30))), -(2 ** (bits - 1) - 1), 0)
    return np.sign(w) * s * 2.0 ** e


PAIRS = {  # operator -> per-product reference (x, w_transformed) and the kernel transform
    "mac": (MacOperator(), lambda x, w: x * w),
    "adder": (AdderOperator(), adder_pair),
    "mf": (MfOperator(), lambda x, w: sign_ste(x) * jnp.abs(w) + sign_ste(w) * jnp.abs(x)),
    "bwn": (BwnOperator(), lambda x, w: x * w),
    "xnor": (XnorOperator(), lambda x, w: x * w),  # on binarised operands; zero padding contributes 0
    "shift": (ShiftOperator(), lambda x, w: x * w),
}
CONV_CASES = [((1, 1), "SAME", 1), ((2, 2), "VALID", 2), ((2, 1), ((1, 0), (2, 1)), 4), ((1, 1), ((1, 1), (1, 1)), 2)]


def reference(name, x, w, strides, padding, groups):
    pair = PAIRS[name][1]
    if name == "bwn":
        w = alpha(w) * binarize_ste(w)
    if name == "shift":
        w = jnp.asarray(pot_round(w), w.dtype)
    if name == "xnor":
        y = reference_conv(pair, binarize_ste(x), binarize_ste(w), strides, padding, groups)
    else:
        y = reference_conv(pair, x, w, strides, padding, groups)
    if name == "xnor":  # K: mean|x| over the group's channels, averaged over each window (zeros in padding)
        kh, kw = w.shape[:2]
        a = jnp.abs(x).reshape(*x.shape[:3], groups, -1).mean(-1)  # (n, h, w, G)
        ones = jnp.ones((kh, kw, 1, 1), x.dtype)
        k = jnp.stack([reference_conv(lambda p, q: p * q, a[..., g:g + 1], ones, strides, padding, 1)[..., 0]
                       for g in range(groups)], -1) / (kh * kw)
        y = y * alpha(w) * jnp.repeat(k, w.shape[-1] // groups, axis=-1)
    return y


def operands(groups, c_in=4, c_out=8, seed=0):
    kx, kw = jax.random.split(jax.random.key(seed))
    return (jax.random.normal(kx, (2, 7, 6, c_in)), 0.5 * jax.random.normal(kw, (3, 3, c_in // groups, c_out)))


# -- forward and gradients ---------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PAIRS))
def test_conv_and_dense_match_reference(name):
    op = PAIRS[name][0]
    for strides, padding, groups in CONV_CASES:
        x, w = operands(groups)
        want = reference(name, x, w, strides, padding, groups)
        np.testing.assert_allclose(op.conv(x, w, strides, padding, groups), want,
                                   rtol=2e-5, atol=2e-4, err_msg=f"{name} {strides} {padding} {groups}")
    x, w = operands(4, c_in=4, c_out=4)  # depthwise: groups == C_in
    np.testing.assert_allclose(op.conv(x, w, (1, 1), "SAME", 4), reference(name, x, w, (1, 1), "SAME", 4),
                               rtol=2e-5, atol=2e-4)
    xd, wd = jax.random.normal(jax.random.key(3), (3, 2, 10)), 0.5 * jax.random.normal(jax.random.key(4), (10, 5))
    # dense = the 1x1 VALID conv of the reference (XNOR: K = mean|x| over the features)
    ref = reference(name, xd.reshape(6, 1, 1, 10), wd[None, None], (1, 1), "VALID", 1).reshape(3, 2, 5)
    np.testing.assert_allclose(op.dense(xd, wd), ref, rtol=2e-5, atol=2e-4)


@pytest.mark.parametrize("name", ["mac", "adder", "mf", "bwn", "xnor"])
def test_gradients_match_reference(name):
    op = PAIRS[name][0]
    for strides, padding, groups in [((1, 1), "SAME", 1), ((2, 1), ((1, 0), (2, 1)), 2)]:
        x, w = operands(groups, seed=1)
        g = jax.random.normal(jax.random.key(9), op.conv(x, w, strides, padding, groups).shape)
        got = jax.grad(lambda x, w: jnp.sum(g * op.conv(x, w, strides, padding, groups)), (0, 1))(x, w)
        want = jax.grad(lambda x, w: jnp.sum(g * reference(name, x, w, strides, padding, groups)), (0, 1))(x, w)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=f"{name} {strides} {padding}")


def test_adder_exact_gradient_is_sign():
    x, w = operands(2, seed=2)
    op = AdderOperator(gradient="exact")
    dx, dw = jax.grad(lambda x, w: jnp.sum(op.conv(x, w, (2, 2), "SAME", 2)), (0, 1))(x, w)
    exact = lambda a, b: -jnp.abs(a - b)  # plain autodiff: sign derivatives
    rx, rw = jax.grad(lambda x, w: jnp.sum(reference_conv(exact, x, w, (2, 2), "SAME", 2)), (0, 1))(x, w)
    np.testing.assert_allclose(dx, rx, atol=1e-5)
    np.testing.assert_allclose(dw, rw, atol=1e-5)
    with pytest.raises(ConfigError, match="op.gradient"):
        AdderOperator(gradient="hardtanh")


def test_adder_lr_scaling_gives_each_leaf_norm_eta_sqrt_k():
    grads = {"a": jnp.arange(12.0).reshape(3, 4), "b": -jnp.ones((2, 2, 5))}
    tx = adder_lr_scaling(eta=0.2)
    out, _ = tx.update(grads, tx.init(grads))
    for k, v in out.items():
        assert np.isclose(float(jnp.linalg.norm(v)), 0.2 * np.sqrt(grads[k].size), rtol=1e-6)
        np.testing.assert_allclose(v / jnp.linalg.norm(v), grads[k] / jnp.linalg.norm(grads[k]), rtol=1e-6)
    assert isinstance(tx, optax.GradientTransformation)


def test_trainer_option_scales_kernel_updates_only():
    from pannjax.train import OptimizerConfig, make_optimizer

    cfg = OptimizerConfig(learning_rate=1.0, momentum=0.0, weight_decay=0.0, schedule="constant", adder_lr_eta=0.1)
    tx = make_optimizer(cfg, total_steps=10, steps_per_epoch=5)
    params = {"conv": {"kernel": jnp.ones((3, 3, 2, 4)), "bias": jnp.ones(4)}}
    grads = {"conv": {"kernel": jnp.full((3, 3, 2, 4), 0.01), "bias": jnp.full(4, 0.01)}}
    updates, _ = tx.update(grads, tx.init(params), params)
    assert np.isclose(float(jnp.linalg.norm(updates["conv"]["kernel"])), 0.1 * np.sqrt(72), rtol=1e-5)
    np.testing.assert_allclose(updates["conv"]["bias"], -0.01, rtol=1e-6)
    with initialize_config_dir(config_dir=os.path.abspath(CONFIGS), version_base="1.3"):
        assert compose("train", overrides=["op=adder"]).trainer.optimizer.adder_lr_eta == 0.1


# -- XNOR integer path ----------------------------------------------------------------------------
def test_xnor_popcount_equals_float_path_exactly():
    op = XnorOperator()
    popcount = jax.jit(lambda x, w, s, p, g: xnor_popcount_conv(binarize_ste(x), binarize_ste(w), s, p, g),
                       static_argnums=(2, 3, 4))
    for strides, padding, groups in CONV_CASES[1:]:
        x, w = operands(groups, c_in=8, c_out=8, seed=5)
        counts = popcount(x, w, strides, padding, groups)
        assert counts.dtype == jnp.int32
        signs = binarize_ste(x), binarize_ste(w)
        np.testing.assert_array_equal(counts, MacOperator().conv(*signs, strides, padding, groups))
        np.testing.assert_array_equal(op.conv_integer(x, w, strides, padding, groups),
                                      op.conv(x, w, strides, padding, groups))
    x, w = jax.random.normal(jax.random.key(6), (4, 70)), jax.random.normal(jax.random.key(7), (70, 3))  # 3 words
    xs, ws = np.where(np.asarray(x) > 0, 1, -1), np.where(np.asarray(w) > 0, 1, -1)
    np.testing.assert_array_equal(xnor_popcount_dense(jnp.asarray(xs), jnp.asarray(ws)), xs @ ws)
    np.testing.assert_array_equal(op.dense_integer(x, w), op.dense(x, w))


# -- DeepShift rounding ---------------------------------------------------------------------------
@pytest.mark.parametrize("bits,zero_level", [(2, False), (3, True), (4, False), (5, False), (5, True)])
def test_deepshift_rounding_is_identity_on_pot_quantizer_output(bits, zero_level):
    w = jax.random.normal(jax.random.key(bits), (3, 3, 4, 6)).at[0, 0, 0, 0].set(0.0)
    for q in (PotQuantizer(bits=bits, zero_level=zero_level, scale_mode="max"),
              PotQuantizer(bits=bits, zero_level=zero_level, per_channel=False, scale_mode="fixed", fixed_scale=0.3)):
        wq = q.quantize(w)
        np.testing.assert_array_equal(ShiftOperator().weight_transform(wq), wq)
    rounded = np.asarray(ShiftOperator(weight_bits=bits).weight_transform(w))  # float weights become PoT
    np.testing.assert_allclose(rounded, pot_round(w, bits), rtol=1e-6)
    np.testing.assert_array_equal(ShiftOperator(weight_bits=None).weight_transform(w), w)


# -- cost, analog mode, configuration ----------------------------------------------------------------
def test_costs_feed_the_network_report_for_every_operator():
    x = jax.ShapeDtypeStruct((2, 8, 8, 1), jnp.float32)
    kinds = {}
    uniform = {"name": "uniform", "w_bits": 4, "x_bits": 4}
    for name, quant in [(name, {"name": "float"}) for name in PAIRS] + [(n, uniform) for n in ("adder", "xnor")]:
        model = build_model("digits_cnn", num_classes=10, width=4, policy=build_policy(quant, {"name": name}))
        variables = jax.jit(lambda k: model.init(k, jnp.zeros(x.shape), train=False))(jax.random.key(0))
        report = build_report(model, variables, x, acc_bits=24)
        assert report.total_energy_pj > 0 and {l.operator for l in report.layers} == {name}
        kinds[name, quant["name"]] = {o.kind for l in report.layers for o in l.ops}
    assert kinds["adder", "uniform"] == {"add", "abs"} and kinds["adder", "float"] == {"fadd"}
    assert kinds["xnor", "uniform"] == {"xnor", "popcount", "mul"}
    assert kinds["mf", "float"] == {"fadd"} and kinds["bwn", "float"] == {"fadd", "fmul"}
    shape = ContractionShape(outputs=10, fan_in=72)
    fx, fw = NumberFormat("int", 4, False), NumberFormat("int", 4, True)
    assert [(o.kind, o.bits, o.count) for o in table_ops(XnorOperator().cost(shape, fx, fw, 24))] == [
        ("xnor", (72,), 10), ("popcount", (72,), 10), ("mul", (4, 4), 20)]
    assert [(o.kind, o.bits, o.count) for o in table_ops(AdderOperator().cost(shape, fx, fw, 24))] == [
        ("add", (5,), 720), ("abs", (5,), 720), ("add", (24,), 720)]
    assert [(o.kind, o.bits, o.count) for o in table_ops(MfOperator().cost(shape, fx, fw, 24))] == [("add", (5,), 720),
                                                                                      ("add", (24,), 720)]
    analog = table_ops(Analog(MfOperator()).cost(shape, FLOAT32, FLOAT32))
    assert [o.kind for o in analog] == ["cim_mac", "adc", "add"]


@pytest.mark.parametrize("name", list(PAIRS))
def test_analog_mode_runs_and_approaches_digital(name):
    digital = PAIRS[name][0]
    analog = Analog(digital, adc_bits=12, rows=18)
    noisy = Analog(digital, adc_bits=4, rows=18, noise_std=0.1)
    x, w = operands(1, c_in=8, c_out=4, seed=8)
    y = digital.conv(x, w)
    scale = float(jnp.abs(y).max())
    np.testing.assert_allclose(analog.conv(x, w), y, atol=0.02 * scale)
    y4 = noisy.conv(x, w, rng=jax.random.key(0))
    assert y4.shape == y.shape and bool(jnp.all(jnp.isfinite(y4))) and not np.allclose(y4, y)
    g = jax.grad(lambda w: jnp.sum(noisy.conv(x, w, rng=jax.random.key(1)) ** 2))(w)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).sum()) > 0


def test_op_configs_build_every_operator_by_name():
    classes = {"mac": MacOperator, "adder": AdderOperator, "mf": MfOperator, "bwn": BwnOperator,
               "xnor": XnorOperator, "shift": ShiftOperator}
    for name, cls in classes.items():
        with initialize_config_dir(config_dir=os.path.abspath(CONFIGS), version_base="1.3"):
            cfg = compose("train", overrides=[f"op={name}", "op.mode.kind=analog", "op.mode.adc_bits=4"])
        op = build_operator(dict(cfg.op))
        assert type(op.inner) is cls and op.name == name and op.adc_bits == 4 and op.analog and op.mode == "aimc"
    with pytest.raises(ConfigError, match="op.input_scale"):
        build_operator({"name": "xnor", "input_scale": "beta"})


@pytest.mark.parametrize("kind, alias", [("aimc", "analog"), ("dimc", "dimc")])
def test_a_mode_config_and_its_spelling_from_digital_build_the_default_macro(kind, alias):
    """mode=<kind>, op.mode.kind=<kind> (or its alias) from the digital default and InMemory(inner, kind)
    are one macro: the defaults live in the wrapper, the configs repeat them (aimc 2 input bits per cycle,
    dimc 1)."""
    with initialize_config_dir(config_dir=os.path.abspath(CONFIGS), version_base="1.3"):
        by_group = build_operator(dict(compose("train", overrides=[f"mode={kind}"]).op))
        by_key = build_operator(dict(compose("train", overrides=[f"op.mode.kind={alias}"]).op))
    assert by_group == by_key == InMemory(MacOperator(), kind)
    assert by_key.bit_serial == {"aimc": 2, "dimc": 1}[kind] and by_key.rows == 128 and by_key.adc_bits == 8
    with pytest.raises(ConfigError, match=r"^mode.noise_std=0.1: a digital macro \(dimc\) computes exactly"):
        InMemory(MacOperator(), "dimc", noise_std=0.1)
