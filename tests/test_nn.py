import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pannjax.errors import ConfigError
from pannjax.models import DigitsCNN
from pannjax.nn import ArithPolicy, LayerArith, QConv, QDense, bound_layers
from pannjax.ops import MacOperator
from pannjax.quant import FloatQuantizer, UniformQuantizer

W4 = UniformQuantizer(bits=4, per_channel=True, step_mode="max")
X4 = UniformQuantizer(bits=4, signed=None, step_mode="lsq")


def test_qconv_equals_operator_on_quantized_operands():
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 4))
    layer = QConv(8, (3, 3), strides=(2, 2), input_signed=True, quantizer_w=W4, quantizer_x=X4)
    variables = layer.init(jax.random.key(1), x)
    params = variables["params"]
    assert set(params) == {"kernel", "quantizer_x"}  # W4 is not learned, X4 is
    qx = X4.with_input_sign(True).with_learned(**params["quantizer_x"])
    expected = MacOperator().conv(qx.quantize(x), W4.quantize(params["kernel"]), (2, 2), "SAME", 1)
    np.testing.assert_array_equal(layer.apply(variables, x), expected)


def test_input_signed_resolves_auto_activation_quantizer():
    x = jax.random.normal(jax.random.key(0), (3, 5))
    for signed in (True, False):
        layer = QDense(2, input_signed=signed, quantizer_x=X4)
        step = layer.init(jax.random.key(0), x)["params"]["quantizer_x"]["step"]
        codes = X4.with_input_sign(signed).with_learned(step=step).integer(x).codes
        assert (int(codes.min()) < 0) == signed


def test_qconv_groups_must_divide_channels():
    with pytest.raises(ValueError, match="groups=3"):
        QConv(6, groups=3).init(jax.random.key(0), jnp.ones((1, 4, 4, 4)))


def test_policy_overrides_apply_in_order_by_path():
    pol = ArithPolicy(LayerArith(W4, X4, MacOperator()), overrides=(
        (r"^conv\d$", LayerArith(quantizer_w=UniformQuantizer(bits=2, step_mode="max"))),
        (r"^conv2$", LayerArith(quantizer_x=FloatQuantizer())),
    ))
    assert pol.resolve("stem").quantizer_w.bits == 4
    assert pol.resolve("conv1").quantizer_w.bits == 2 and pol.resolve("conv1").quantizer_x == X4
    assert pol.resolve("conv2").quantizer_w.bits == 2 and pol.resolve("conv2").quantizer_x == FloatQuantizer()
    with pytest.raises(ConfigError, match="regex"):
        ArithPolicy(overrides=(("(", LayerArith()),))
    with pytest.raises(ConfigError, match="default"):
        ArithPolicy(LayerArith(W4))


def test_bound_layers_reports_every_arithmetic_layer_without_computing():
    pol = ArithPolicy(LayerArith(W4, X4, MacOperator()),
                      overrides=(("^head$", LayerArith(quantizer_w=UniformQuantizer(bits=8, step_mode="max"))),))
    model = DigitsCNN(policy=pol)
    x = jnp.zeros((5, 8, 8, 1))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    records = bound_layers(model, variables, jax.ShapeDtypeStruct(x.shape, x.dtype))
    assert [r.path for r in records] == ["stem", "conv1", "conv2", "head"]
    stem, conv1, _, head = records
    assert stem.quantizer_x.signed is True and conv1.quantizer_x.signed is False
    assert head.quantizer_w.bits == 8 and head.kind == "dense"
    assert conv1.output_shape == (5, 4, 4, 64) and conv1.strides == (2, 2)
    assert conv1.contraction.fan_in == 9 * 32 and conv1.contraction.outputs == 4 * 4 * 64
