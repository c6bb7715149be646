import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pannjax.errors import ConfigError
from pannjax.quant import FloatQuantizer, UniformQuantizer, round_ste, scale_grad


@pytest.mark.parametrize("bits,signed", [(1, False), (2, True), (4, True), (4, False), (8, True), (16, False)])
def test_uniform_levels_and_integer_view(bits, signed):
    x = jax.random.uniform(jax.random.key(bits), (4096,), minval=-8, maxval=8)
    q = UniformQuantizer(bits=bits, signed=signed, step_mode="fixed", fixed_step=6 / 2**bits)
    view = q.integer(x)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    codes = np.asarray(view.codes)
    assert codes.dtype == np.int32 and codes.min() >= lo and codes.max() <= hi
    assert codes.min() == lo and codes.max() == hi  # the range exceeds the codes: both ends clip
    np.testing.assert_array_equal(np.asarray(view.codes * view.scale), np.asarray(q.quantize(x)))
    assert view.format.bits == bits and view.format.signed == signed


def test_per_channel_max_step_maps_each_channel_max_to_top_code():
    w = jax.random.normal(jax.random.key(0), (3, 3, 8, 16)) * jnp.arange(1, 17)
    q = UniformQuantizer(bits=4, per_channel=True, step_mode="max")
    view = q.integer(w)
    assert view.scale.shape == (1, 1, 1, 16)
    np.testing.assert_array_equal(np.abs(np.asarray(view.codes)).max(axis=(0, 1, 2)), 7)


def test_quantization_error_bounded_by_half_step():
    x = jax.random.uniform(jax.random.key(1), (1000,), minval=-1, maxval=1)
    q = UniformQuantizer(bits=6, step_mode="fixed", fixed_step=1 / 31)
    assert float(jnp.max(jnp.abs(q.quantize(x) - x))) <= 0.5 / 31 + 1e-7


def test_round_ste_gradient_is_identity():
    g = jax.grad(lambda x: jnp.sum(round_ste(x) * jnp.arange(3.0)))(jnp.array([0.2, 1.7, -2.4]))
    np.testing.assert_array_equal(g, [0.0, 1.0, 2.0])


def test_scale_grad():
    value, grad = jax.value_and_grad(lambda s: scale_grad(s, 0.25) * 3)(2.0)
    assert value == 6.0 and grad == 0.75


def test_lsq_gradients_match_paper():
    """LSQ Eq. 3: d v_hat / d s = -v/s + round(v/s) inside the range, -Q_N or Q_P outside; d v_hat / d v =
    1 inside, 0 outside (times the gradient scale g for s)."""
    s = jnp.array(0.5)
    q = UniformQuantizer(bits=3, signed=True).with_learned(step=s)  # Q_N = 4, Q_P = 3
    v = jnp.array([0.3, -0.9, 5.0, -5.0])
    gv = jax.grad(lambda v: q.quantize(v).sum())(v)
    np.testing.assert_array_equal(gv, [1, 1, 0, 0])
    gs = jax.grad(lambda q: q.quantize(v).sum())(q).step
    g = 1 / np.sqrt(v.size * 3)
    expected = ((-0.6 + 1) + (1.8 - 2) + 3 - 4) * g
    np.testing.assert_allclose(gs, expected, rtol=1e-6)


def test_lsq_init():
    x = jnp.abs(jax.random.normal(jax.random.key(2), (10000,)))
    step = UniformQuantizer(bits=4, signed=False).init_learned(x)["step"]
    np.testing.assert_allclose(step.ravel(), 2 * np.mean(np.asarray(x)) / np.sqrt(15), rtol=1e-5)


@pytest.mark.parametrize("kwargs,key", [
    (dict(bits=0), "bits"), (dict(bits=17), "bits"), (dict(bits=1, signed=True), "bits=1"),
    (dict(bits=4.0), "bits"), (dict(step_mode="minmax"), "step_mode"), (dict(step_mode="fixed", fixed_step=0), "fixed_step"),
])
def test_bad_settings_give_one_line_error(kwargs, key):
    with pytest.raises(ConfigError, match=key) as e:
        UniformQuantizer(**kwargs)
    assert "\n" not in str(e.value)


def test_unbound_lsq_and_unresolved_sign_errors():
    with pytest.raises(ConfigError, match="no learned step"):
        UniformQuantizer(bits=4).quantize(jnp.ones(3))
    with pytest.raises(ConfigError, match="unresolved"):
        UniformQuantizer(bits=4, signed=None, step_mode="max").quantize(jnp.ones(3))
    assert UniformQuantizer(bits=4, signed=None).with_input_sign(False).signed is False
    assert UniformQuantizer(bits=4, signed=True).with_input_sign(False).signed is True


def test_quantizers_are_hashable_pytrees_with_static_settings():
    a, b = UniformQuantizer(bits=4), UniformQuantizer(bits=4)
    assert a == b and hash(a) == hash(b) and a != UniformQuantizer(bits=5)
    bound = a.with_learned(step=jnp.ones(()))
    leaves, treedef = jax.tree_util.tree_flatten(bound)
    assert len(leaves) == 1 and jax.tree_util.tree_unflatten(treedef, leaves).bits == 4
    # jit retraces only when a static setting changes
    traces = []

    @jax.jit
    def f(q, x):
        traces.append(1)
        return q.quantize(x)

    f(bound, jnp.ones(3)); f(bound.with_learned(step=jnp.ones(()) * 2), jnp.ones(3))
    assert len(traces) == 1


def test_float_quantizer_is_identity_and_has_no_integer_view():
    x = jnp.arange(5.0)
    assert FloatQuantizer().quantize(x) is x
    assert str(FloatQuantizer().format) == "fp32"
    with pytest.raises(TypeError, match="no integer view"):
        FloatQuantizer().integer(x)
