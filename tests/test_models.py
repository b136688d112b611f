import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers.models import CNN, MLP, ModelConfig


@pytest.mark.parametrize("init, gain, fan", [("he", 2.0, "in"), ("lecun", 1.0, "in"), ("xavier", 1.0, "avg")])
@pytest.mark.parametrize("init_scale", [0.5, 1.0, 1.5])
def test_kernel_variance_is_init_scale_squared_times_gain_over_fan(init, gain, fan, init_scale):
    model = MLP(400, 2, 300, 10, init=init, init_scale=init_scale, rngs=nnx.Rngs(0))
    w = np.asarray(model.blocks[1].layer.kernel[...])  # 300 x 300
    fan_value = 300 if fan == "in" else (300 + 300) / 2
    expected = init_scale**2 * gain / fan_value
    assert np.var(w) == pytest.approx(expected, rel=0.02)
    assert abs(np.mean(w)) < 0.01 * math.sqrt(expected)
    # A normal (not truncated) distribution: about 0.27% of draws beyond 3 standard deviations.
    assert 0.001 < np.mean(np.abs(w) > 3 * math.sqrt(expected)) < 0.005


def test_conv_fan_in_counts_the_receptive_field():
    model = CNN((8, 8, 16), 2, 64, 10, init_scale=1.0, rngs=nnx.Rngs(0))
    w = np.asarray(model.blocks[1].layer.kernel[...])  # 3 x 3 x 64 x 64
    assert np.var(w) == pytest.approx(2.0 / (3 * 3 * 64), rel=0.03)


def test_layer_names_are_ordered_input_to_output_and_match_kernels():
    model = MLP(64, 3, 16, 10, rngs=nnx.Rngs(0))
    assert model.layer_names() == ["dense0", "dense1", "dense2", "head"]
    assert [k.shape for k in model.kernels()] == [(64, 16), (16, 16), (16, 16), (16, 10)]
    state = nnx.to_pure_dict(nnx.state(model, nnx.Param))  # kernel_paths name the same arrays in the state
    for path, kernel in zip(model.kernel_paths(), model.kernels(), strict=True):
        node = state
        for key in path:
            node = node[key]
        np.testing.assert_array_equal(node, kernel)


def test_residual_adds_the_input_where_widths_match():
    plain = MLP(64, 3, 16, 10, activation="linear", rngs=nnx.Rngs(0))
    res = MLP(64, 3, 16, 10, activation="linear", residual=True, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 64))
    h0 = plain.hidden(x)[0]
    assert np.allclose(res.hidden(x)[0], h0)  # first block changes width: no skip
    assert np.allclose(res.hidden(x)[1], h0 + plain.blocks[1](h0), atol=1e-5)


def test_cnn_pools_large_images_and_accepts_digits():
    assert CNN((28, 28, 1), 2, 8, 10, rngs=nnx.Rngs(0))(jnp.ones((3, 28, 28, 1))).shape == (3, 10)
    assert CNN((8, 8, 1), 2, 8, 10, rngs=nnx.Rngs(0))(jnp.ones((3, 8, 8, 1))).shape == (3, 10)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(depth=0), "depth"),
        (dict(width=0), "width"),
        (dict(init_scale=0.0), "init_scale"),
        (dict(init_scale=float("nan")), "init_scale"),
        (dict(activation="sigmoidal"), "activation"),
        (dict(init="orthogonal"), "init"),
        (dict(kind="rnn"), "kind"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_model_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ModelConfig(**kwargs)


def test_mlp_rejects_bad_num_classes_and_mismatched_data():
    with pytest.raises(ValueError, match="num_classes"):
        MLP(64, 2, 8, 1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="data"):
        MLP(64, 2, 8, 10, rngs=nnx.Rngs(0)).check_input((5, 28, 28, 1))
    with pytest.raises(ValueError, match="data"):
        CNN((8, 8, 1), 2, 8, 10, rngs=nnx.Rngs(0)).check_input((5, 28, 28, 1))


def test_model_config_round_trips_and_builds_the_same_weights():
    cfg = ModelConfig(kind="cnn", depth=3, width=16, activation="tanh", init="lecun", init_scale=1.25, batchnorm=True)
    assert ModelConfig.parse(str(cfg)) == cfg
    a, b = cfg.build((8, 8, 1)), ModelConfig.parse(str(cfg)).build((8, 8, 1))
    assert np.array_equal(a.blocks[0].layer.kernel[...], b.blocks[0].layer.kernel[...])
    with pytest.raises(ValueError, match="unknown item"):
        ModelConfig.parse("depth=3 colour=red")
