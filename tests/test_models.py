"""CIFAR model zoo: logits shapes, parameter counts against the papers, the layer description, per-layer
arithmetic and one 4-bit quantized gradient step per model.

Shapes and counts use `jax.eval_shape` (nothing computed). The gradient step runs small models on variables
made in numpy, with XLA's optimisations off: compiling, not computing, is what costs time here.
"""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pannjax.errors import ConfigError
from pannjax.models import build_model
from pannjax.models.shufflenet import channel_shuffle
from pannjax.nn import FLOAT_MAC, ArithPolicy, LayerArith, bound_layers
from pannjax.ops import MacOperator
from pannjax.quant import FloatQuantizer, UniformQuantizer

CIFAR_MODELS = ("resnet", "squeezenet", "shufflenet")
IMAGES = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
# Float arithmetic, but activation quantizers whose sign follows each layer's `input_signed`.
SIGN_REVEALING = ArithPolicy(
    LayerArith(FloatQuantizer(), UniformQuantizer(bits=4, signed=None), MacOperator()))
# Small enough that a real forward and backward pass compiles in seconds.
TINY = {
    "resnet": dict(depth=8, width=4, shortcut="B"),  # the projection path; option A has no parameters
    "squeezenet": {},
    "shufflenet": dict(scale=0.5, stage_repeats=(2, 1, 1)),  # down-sampling and basic units
}


@pytest.fixture(autouse=True, scope="module")
def fast_compiles():
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


@functools.cache
def variable_shapes(model):
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), IMAGES)


def param_count(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


@functools.cache
def records(model):
    return bound_layers(model, variable_shapes(model), IMAGES)


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_logits_have_shape_batch_by_classes(name):
    model = build_model(name, num_classes=100)
    logits = jax.eval_shape(model.apply, variable_shapes(model), IMAGES)
    assert logits.shape == (2, 100)  # train=True: see the SGD step test


@pytest.mark.parametrize("depth, exact, published_millions",
                         [(20, 269_722, 0.27), (32, 464_154, 0.46), (56, 853_018, 0.85)])
def test_resnet_parameter_counts_match_he_et_al_table_6(depth, exact, published_millions):
    count = param_count(variable_shapes(build_model("resnet", depth=depth))["params"])
    assert count == exact
    assert round(count / 1e6, 2) == published_millions


def test_resnet_option_b_adds_two_projection_shortcuts():
    counts = [param_count(variable_shapes(build_model("resnet", shortcut=s))["params"]) for s in "AB"]
    # 1x1 kernels 16->32 and 32->64, plus BN scale and bias on 32 + 64 channels.
    assert counts[1] - counts[0] == 16 * 32 + 32 * 64 + 2 * (32 + 64)


@pytest.mark.parametrize("depth", [0, 2, 18, 21, 27])
def test_resnet_invalid_depth_raises_config_error(depth):
    with pytest.raises(ConfigError, match=r"model\.depth"):
        build_model("resnet", depth=depth)


@pytest.mark.parametrize("name, kwargs, key", [
    ("resnet", dict(shortcut="C"), "model.shortcut"),
    ("shufflenet", dict(scale=0.75), "model.scale"),
    ("shufflenet", dict(stage_repeats=(4, 8)), "model.stage_repeats"),
])
def test_invalid_architecture_options_raise_config_error(name, kwargs, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        build_model(name, **kwargs)


def test_squeezenet_fire_modules_match_iandola_et_al_table_1():
    params = variable_shapes(build_model("squeezenet"))["params"]
    # Table 1 counts kernel + conv bias; here BN's bias stands in for the conv bias.
    table_1 = {"fire2": 11_920, "fire3": 12_432, "fire4": 45_344, "fire5": 49_440,
               "fire6": 104_880, "fire7": 111_024, "fire8": 188_992, "fire9": 197_184}
    for fire, expected in table_1.items():
        layers = params[fire]
        kernels_and_biases = sum(param_count(layers[conv]) + param_count(layers[f"{conv}_bn"]["bias"])
                                 for conv in ("squeeze", "expand1x1", "expand3x3"))
        assert kernels_and_biases == expected, fire
    assert param_count(params) == 732_010


@pytest.mark.parametrize("scale, torchvision_count",
                         [(0.5, 1_366_792), (1.0, 2_278_604), (1.5, 3_503_624), (2.0, 7_393_996)])
def test_shufflenet_at_1000_classes_matches_the_imagenet_model(scale, torchvision_count):
    # The CIFAR changes (stem stride, no max-pool) add no parameters, so the ImageNet counts carry over.
    model = build_model("shufflenet", scale=scale, num_classes=1000)
    assert param_count(variable_shapes(model)["params"]) == torchvision_count


@pytest.mark.parametrize("name, kwargs, n_layers", [
    ("resnet", {}, 20),                     # 19 convs + dense
    ("resnet", dict(shortcut="B"), 22),     # + two 1x1 projections
    ("squeezenet", {}, 26),                 # stem + 8 Fire x 3 + head conv
    ("shufflenet", {}, 57),                 # stem + 3 x 5 + 13 x 3 unit convs + conv5 + head
])
def test_bound_layers_lists_every_arithmetic_layer(name, kwargs, n_layers):
    model = build_model(name, policy=SIGN_REVEALING, **kwargs)
    recs = records(model)
    assert len(recs) == n_layers
    assert recs[0].path == "stem" and recs[-1].path == "head"
    with_kernel = {"/".join(k.key for k in path[:-1])
                   for path, _ in jax.tree_util.tree_leaves_with_path(variable_shapes(model)["params"])
                   if path[-1].key == "kernel"}
    assert with_kernel == {r.path for r in recs}


@pytest.mark.parametrize("name, signed_input", [
    ("resnet", {"stem"}),
    ("squeezenet", {"stem"}),
    # The 1x1 convs that follow a depthwise conv + BN without ReLU.
    ("shufflenet", {"stem"} | {f"stage{s}_unit0/shortcut_conv" for s in (2, 3, 4)}
     | {f"stage{s}_unit{u}/conv2" for s, n in zip((2, 3, 4), (4, 8, 4)) for u in range(n)}),
])
def test_only_layers_with_possibly_negative_inputs_are_signed(name, signed_input):
    recs = records(build_model(name, policy=SIGN_REVEALING))
    assert {r.path for r in recs if r.quantizer_x.signed} == signed_input


@pytest.mark.parametrize("name, pattern", [
    ("resnet", r"stage2_block0/conv1$"),
    ("squeezenet", r"fire5/expand"),
    ("shufflenet", r"/dwconv$"),
])
def test_override_changes_exactly_the_matched_layers(name, pattern):
    policy = ArithPolicy(FLOAT_MAC, ((pattern, LayerArith(quantizer_w=UniformQuantizer(bits=3))),))
    recs = records(build_model(name, policy=policy))
    matched = {r.path for r in recs if re.search(pattern, r.path)}
    changed = {r.path for r in recs if isinstance(r.quantizer_w, UniformQuantizer)}
    assert changed == matched and 0 < len(matched) < len(recs)
    assert all(r.quantizer_w.bits == 3 for r in recs if r.path in changed)
    assert all(r.quantizer_x == FloatQuantizer() and r.operator == MacOperator() for r in recs)


def test_shufflenet_depthwise_convs_have_one_group_per_channel():
    recs = records(build_model("shufflenet", policy=SIGN_REVEALING))
    depthwise = [r for r in recs if r.path.endswith("dwconv")]
    assert len(depthwise) == 3 + 16  # one shortcut dwconv per stage + one per unit
    for r in depthwise:
        assert r.groups == r.input_shape[-1] == r.output_shape[-1] and r.kernel_shape == (3, 3, 1, r.groups)
    assert all(r.groups == 1 for r in recs if r not in depthwise)


def test_channel_shuffle_interleaves_the_two_halves():
    x = np.arange(6.0).reshape(1, 1, 1, 6)
    np.testing.assert_array_equal(channel_shuffle(x, 2).ravel(), [0, 3, 1, 4, 2, 5])


def concrete_variables(shapes, seed: int = 0):
    """Variables for `shapes` made in numpy: He-normal kernels, identity BatchNorm, zero biases. Compiling
    `model.init` would cost seconds per model on CPU (its per-parameter RNG), and the step test needs
    only sensible values."""
    rng = np.random.default_rng(seed)

    def value(path, leaf):
        name = path[-1].key
        assert name in ("kernel", "bias", "scale", "mean", "var"), jax.tree_util.keystr(path)
        if name == "kernel":
            fan_in = math.prod(leaf.shape[:-1])
            return (rng.standard_normal(leaf.shape) * math.sqrt(2 / fan_in)).astype(leaf.dtype)
        return np.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, leaf.dtype)

    return jax.tree_util.tree_map_with_path(value, shapes)


# 4-bit weights (per output channel) and activations, steps from the max (no calibration needed).
FOUR_BIT = ArithPolicy(LayerArith(UniformQuantizer(bits=4, step_mode="max", per_channel=True),
                                  UniformQuantizer(bits=4, signed=None, step_mode="max"), MacOperator()))


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_one_sgd_step_with_4bit_uniform_quantizers(name):
    check_one_sgd_step(build_model(name, policy=FOUR_BIT, **TINY[name]))


def check_one_sgd_step(model, descent: bool = True):
    """One jitted SGD step of `model` (10 classes) on two random 32x32 images: the loss and every gradient
    are finite, every kernel gets a gradient, BN statistics update and (`descent`) the step lowers the loss.
    A deep 4-bit network's loss on two images is not smooth in its weights (every layer rounds, and XLA's
    CPU code generation changes which values round which way), so there one straight-through step need
    not lower it: its descent is checked on the float network."""
    images = np.random.default_rng(0).standard_normal(IMAGES.shape, np.float32)
    labels = np.arange(IMAGES.shape[0]) % 10
    variables = concrete_variables(variable_shapes(model))

    @jax.jit
    def loss_and_grads(params):
        def loss_fn(params):
            logits, updates = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, images,
                                          train=True, mutable=["batch_stats"])
            assert logits.shape == (2, 10)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates
        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    # Checks and the SGD step run in numpy: eager jax ops would each compile.
    (loss, updates), grads = jax.device_get(loss_and_grads(variables["params"]))
    assert np.isfinite(loss)
    for path, grad in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(grad)), jax.tree_util.keystr(path)
        if path[-1].key == "kernel":  # every conv and dense layer is reached
            assert np.any(grad != 0), jax.tree_util.keystr(path)
    assert not np.allclose(updates["batch_stats"]["stem_bn"]["mean"], 0.0)

    if descent:
        (new_loss, _), _ = loss_and_grads(jax.tree.map(lambda p, g: p - 0.05 * g, variables["params"], grads))
        assert float(new_loss) < loss
