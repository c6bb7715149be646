"""PoT-aware pruning: schedule, masks, and pruned weights staying exactly zero through QAT steps."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pannjax.errors import ConfigError
from pannjax.nn import QDense
from pannjax.ops import ShiftOperator
from pannjax.nn import abstract_layers
from pannjax.prune import kernel_density, polynomial_sparsity, pot_prune_mask, pot_pruning, prunable_layers
from pannjax.quant import PotQuantizer, UniformQuantizer


def test_polynomial_sparsity_schedule():
    sched = polynomial_sparsity(0.8, begin_step=10, end_step=20, initial_sparsity=0.1)
    values = [float(sched(t)) for t in (0, 10, 15, 20, 50)]
    np.testing.assert_allclose(values, [0.1, 0.1, 0.8 - 0.7 * 0.125, 0.8, 0.8], rtol=1e-6)
    with pytest.raises(ConfigError, match="final_sparsity=1.0"):
        polynomial_sparsity(1.0, 0, 10)
    with pytest.raises(ConfigError, match="begin_step=5, end_step=5"):
        polynomial_sparsity(0.5, 5, 5)


def test_mask_ranks_relative_to_each_channels_pot_scale():
    # channel 0 has scale 8, channel 1 scale 1: 0.5 is tiny in channel 0 (2^-4) but big in channel 1
    w = jnp.array([[8.0, 1.0], [4.0, 0.5], [0.5, 0.25], [2.0, 0.9]])
    q = PotQuantizer(bits=4, scale_mode="max")
    keep = pot_prune_mask(w, 0.25, q)  # floor(0.25 * 8) = 2 pruned: u = 1/16 (w=0.5 ch 0) and 1/4 (w=0.25 ch 1)
    np.testing.assert_array_equal(keep, [[True, True], [True, True], [False, False], [True, True]])
    assert int(jnp.sum(~pot_prune_mask(w, 0.5, q))) == 4


def test_underflow_weights_are_pruned_even_at_zero_sparsity():
    q = PotQuantizer(bits=3, per_channel=False, scale_mode="fixed", fixed_scale=1.0)  # smallest level 1/8
    w = jnp.array([1.0, 0.1, 0.0626, 0.0624, -0.01])  # below 1/16 is nearer zero than 1/8
    np.testing.assert_array_equal(pot_prune_mask(w, 0.0, q), [True, True, True, False, False])
    np.testing.assert_array_equal(pot_prune_mask(w, 0.0, q, prune_underflow=False), [True] * 5)


class TwoLayer(nn.Module):
    @nn.compact
    def __call__(self, x):
        qx = UniformQuantizer(bits=4, signed=None, step_mode="lsq")
        qw = PotQuantizer(bits=4)
        x = nn.relu(QDense(32, input_signed=True, quantizer_w=qw, quantizer_x=qx, operator=ShiftOperator(),
                           name="hidden")(x))
        return QDense(3, quantizer_w=qw, quantizer_x=qx, operator=ShiftOperator(), name="head")(x)


def test_pruned_weights_stay_zero_through_training_steps():
    x = jax.random.normal(jax.random.key(0), (32, 16))
    y = jax.random.randint(jax.random.key(1), (32,), 0, 3)
    model = TwoLayer()
    params = model.init(jax.random.key(2), x)["params"]
    schedule = polynomial_sparsity(0.75, begin_step=0, end_step=4)
    layers = abstract_layers(model, jax.ShapeDtypeStruct(x.shape, x.dtype))
    targets = prunable_layers(layers, exclude=r"^head$")
    assert list(targets) == ["hidden"]
    tx = optax.chain(optax.adam(1e-2), pot_pruning(targets, schedule, frequency=2, prune_underflow=False))
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state):
        loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x), y).mean()
        grads = jax.grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    pruned_so_far = np.zeros((16, 32), bool)
    densities = []
    for t in range(7):
        params, opt_state = step(params, opt_state)
        kernel = np.asarray(params["hidden"]["kernel"])
        assert np.all(kernel[pruned_so_far] == 0.0)  # once pruned, exactly zero at every later step
        pruned_so_far |= kernel == 0.0
        densities.append(kernel_density(params)["hidden/kernel"])
    # masks refreshed at steps 0, 2, 4, 6: sparsity 0, 0.75 - 0.75 * (1 - 2/4)^3 = 0.65625, 0.75, 0.75 of 512
    expected_zero = [0, 0, 336, 336, 384, 384, 384]
    np.testing.assert_allclose(densities, [1 - z / 512 for z in expected_zero])
    assert kernel_density(params)["head/kernel"] == 1.0  # excluded layer stays dense
    qw = PotQuantizer(bits=4).with_learned(**params["hidden"]["quantizer_w"])
    view = qw.integer(params["hidden"]["kernel"])
    np.testing.assert_array_equal(np.asarray(view.sign) == 0, pruned_so_far)  # zeros reach the integer view


def test_pot_pruning_needs_params_and_a_pot_quantizer():
    with pytest.raises(ConfigError, match="PotQuantizer per layer; d: UniformQuantizer"):
        pot_pruning({"d": UniformQuantizer()}, polynomial_sparsity(0.5, 0, 10))
    with pytest.raises(ConfigError, match="no layer with power-of-two weights"):
        pot_pruning({}, polynomial_sparsity(0.5, 0, 10))
    tx = pot_pruning({"d": PotQuantizer(scale_mode="max")}, polynomial_sparsity(0.5, 0, 10))
    params = {"d": {"kernel": jnp.ones((2, 2))}}
    with pytest.raises(ConfigError, match="needs params"):
        tx.update(params, tx.init(params))
