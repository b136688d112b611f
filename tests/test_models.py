import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers.models import CNN, MLP, ModelConfig, kernel_init, layer_norms


@pytest.mark.parametrize("init, gain, fan", [("he", 2.0, "in"), ("lecun", 1.0, "in"), ("xavier", 1.0, "avg")])
@pytest.mark.parametrize("init_scale", [0.5, 1.0, 1.5])
def test_kernel_variance_is_init_scale_squared_times_gain_over_fan(init, gain, fan, init_scale):
    model = MLP(400, 2, 300, 10, init=init, init_scale=init_scale, rngs=nnx.Rngs(0))
    w = np.asarray(model.block(1).layer.kernel[...])  # 300 x 300
    fan_value = 300 if fan == "in" else (300 + 300) / 2
    expected = init_scale**2 * gain / fan_value
    assert np.var(w) == pytest.approx(expected, rel=0.02)
    assert abs(np.mean(w)) < 0.01 * math.sqrt(expected)
    # A normal (not truncated) distribution: about 0.27% of draws beyond 3 standard deviations.
    assert 0.001 < np.mean(np.abs(w) > 3 * math.sqrt(expected)) < 0.005


@pytest.mark.parametrize("init", ["he", "lecun", "xavier"])
@pytest.mark.parametrize("shape", [(3, 3, 16, 16), (3, 3, 1, 32), (64, 10), (5, 7)])
def test_kernel_init_draws_exactly_what_the_library_draws(init, shape):
    gain, mode = {"he": (2.0, "fan_in"), "lecun": (1.0, "fan_in"), "xavier": (1.0, "fan_avg")}[init]
    library = jax.nn.initializers.variance_scaling(1.5**2 * gain, mode, "normal")
    key = jax.random.key(7)
    np.testing.assert_array_equal(kernel_init(init, 1.5)(key, shape), library(key, shape))


@pytest.mark.slow
def test_conv_fan_in_counts_the_receptive_field():
    model = CNN((8, 8, 16), 2, 64, 10, init_scale=1.0, rngs=nnx.Rngs(0))
    w = np.asarray(model.block(1).layer.kernel[...])  # 3 x 3 x 64 x 64
    assert np.var(w) == pytest.approx(2.0 / (3 * 3 * 64), rel=0.03)


def test_layer_names_are_ordered_input_to_output_and_match_kernels():
    model = MLP(64, 3, 16, 10, rngs=nnx.Rngs(0))
    assert model.layer_names() == ["dense0", "dense1", "dense2", "head"]
    assert [k.shape for k in model.kernels()] == [(64, 16), (16, 16), (16, 16), (16, 10)]
    norms = layer_norms(nnx.state(model, nnx.Param), nnx.state(model, nnx.Param))  # one row per tree
    np.testing.assert_allclose(norms, [[np.linalg.norm(k) for k in model.kernels()]] * 2, rtol=1e-6)


def test_residual_adds_the_input_where_widths_match():
    plain = MLP(64, 3, 16, 10, activation="linear", rngs=nnx.Rngs(0))
    res = MLP(64, 3, 16, 10, activation="linear", residual=True, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 64))
    h0 = plain.hidden(x)[0]
    assert np.allclose(res.hidden(x)[0], h0)  # first block changes width: no skip
    assert np.allclose(res.hidden(x)[1], h0 + plain.block(1)(h0), atol=1e-5)


@pytest.mark.slow
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
        (dict(kind="gru"), "kind"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_model_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ModelConfig(**kwargs)


def test_mlp_rejects_bad_num_classes_and_mismatched_data():
    with pytest.raises(ValueError, match="num_classes"):
        MLP(64, 2, 8, 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="data"):
        MLP(64, 2, 8, 10, rngs=nnx.Rngs(0)).check_input((5, 28, 28, 1))
    with pytest.raises(ValueError, match="data"):
        CNN((8, 8, 1), 2, 8, 10, rngs=nnx.Rngs(0)).check_input((5, 28, 28, 1))


@pytest.mark.slow
def test_model_config_round_trips_and_builds_the_same_weights():
    cfg = ModelConfig(kind="cnn", depth=3, width=16, activation="tanh", init="lecun", init_scale=1.25, batchnorm=True)
    assert ModelConfig.parse(str(cfg)) == cfg
    a, b = cfg.build((8, 8, 1)), ModelConfig.parse(str(cfg)).build((8, 8, 1))
    assert all(np.array_equal(ka, kb) for ka, kb in zip(a.kernels(), b.kernels(), strict=True))
    with pytest.raises(ValueError, match="unknown item"):
        ModelConfig.parse("depth=3 colour=red")


def test_stacked_blocks_hold_the_weights_a_plain_loop_would_draw():
    """Blocks are built one by one from the same Rngs, then stacked: the seed means the same weights as before."""
    rngs = nnx.Rngs(0)
    fans = [(64, 16), (16, 16), (16, 16)]
    expected = [nnx.Linear(i, o, kernel_init=kernel_init(), rngs=rngs).kernel[...] for i, o in fans]
    expected.append(nnx.Linear(16, 10, kernel_init=kernel_init(), rngs=rngs).kernel[...])
    got = MLP(64, 3, 16, 10, rngs=nnx.Rngs(0)).kernels()
    assert all(np.array_equal(e, g) for e, g in zip(expected, got, strict=True))


def test_looped_and_unrolled_blocks_compute_the_same():
    """A deep MLP loops over its stacked blocks, a shallow one unrolls them: same outputs, same BatchNorm updates."""
    looped = MLP(64, 20, 16, 10, batchnorm=True, residual=True, rngs=nnx.Rngs(0))
    unrolled = MLP(64, 20, 16, 10, batchnorm=True, residual=True, rngs=nnx.Rngs(0))
    assert looped.depth >= looped.loop_from_depth
    unrolled.loop_from_depth = None
    x = jnp.asarray(np.random.default_rng(0).normal(size=(32, 64)), jnp.float32)
    np.testing.assert_allclose(looped.hidden(x), unrolled.hidden(x), rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree.leaves(nnx.state(looped)), jax.tree.leaves(nnx.state(unrolled)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_block_returns_each_hidden_block_and_rejects_bad_indices():
    model = MLP(64, 3, 16, 10, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 64))
    hidden = model.hidden(x)
    assert hidden.shape == (3, 2, 16)
    np.testing.assert_allclose(model.block(2)(hidden[1]), hidden[2], rtol=1e-6)
    assert model.block(-1).layer.kernel[...].shape == (16, 16)
    with pytest.raises(IndexError):
        model.block(3)


def test_deep_nets_compile_one_block_whatever_their_depth():
    """From `loop_from_depth` on, the stacked blocks run in one loop; shallower nets are unrolled."""

    def program(depth):
        model = MLP(64, depth, 16, 10, batchnorm=True, rngs=nnx.Rngs(0))
        graphdef, state = nnx.split(model)
        text = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)).lower(state, jnp.ones((2, 64))).as_text()
        return text.count("stablehlo.dot_general"), "stablehlo.while" in text

    deep = MLP.loop_from_depth
    assert program(deep) == program(deep + 40) == (3, True)  # first block, the looped block, the head
    assert program(4) == (5, False) and program(8) == (9, False)  # a copy of the block per layer, and the head


def test_eager_calls_are_compiled_once_per_shape():
    """Outside jit a model call goes through nnx.jit: a scan over the blocks is not re-traced at every call."""
    from helpers.compiles import CompileCounter

    model = MLP(64, 20, 16, 10, batchnorm=True, rngs=nnx.Rngs(0))
    x, other_x = (jnp.asarray(np.random.default_rng(s).normal(size=(4, 64)), jnp.float32) for s in (0, 1))
    model(x), model.hidden(x)
    with CompileCounter() as compiles:
        model(x), model.hidden(x), model(other_x)
    assert compiles.count == 0
    mean = nnx.state(model, nnx.BatchStat)["blocks"]["norm"]["mean"][...]
    assert not np.allclose(mean, 0)  # training-mode calls still update the running averages


def test_per_layer_gives_one_plain_tree_per_layer_and_inverts():
    from helpers.models import from_per_layer, per_layer

    model = ModelConfig(depth=5, width=8, batchnorm=True).build((8, 8, 1))
    params = nnx.state(model, nnx.Param)
    layers = per_layer(params)
    assert len(layers) == len(model.layer_names()) == 6
    for layer, kernel in zip(layers[:-1], model.kernels()[:-1], strict=True):
        np.testing.assert_array_equal(layer["layer"]["kernel"], kernel)
        assert set(layer["norm"]) == {"scale", "bias"}
    np.testing.assert_array_equal(layers[-1]["kernel"], model.head.kernel[...])
    back = from_per_layer(layers)
    expected = nnx.to_pure_dict(params)
    assert jax.tree.structure(back) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(per_layer(nnx.state(ModelConfig(depth=1).build((8, 8, 1)), nnx.Param))) == 2


def _grads(model, x, y):
    """The gradient of the mean cross-entropy with respect to every parameter, as a plain dict."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params):
        logits = nnx.merge(graphdef, params, rest, copy=True)(x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    return nnx.to_pure_dict(jax.grad(loss)(params))


def test_zero_init_residual_blocks_start_as_the_identity_and_learn():
    x = jax.random.normal(jax.random.key(0), (32, 64))
    y = jnp.arange(32) % 10
    model = MLP(64, 4, 16, 10, batchnorm=True, residual=True, zero_init_residual=True, rngs=nnx.Rngs(0))
    hidden = model.hidden(x)
    for i in range(1, 4):  # every residual block passes its input through unchanged
        np.testing.assert_array_equal(hidden[i], hidden[0])
    g = _grads(model, x, y)["blocks"]
    assert np.all(np.asarray(g["gate"]) != 0), "the gates receive a gradient at initialisation"
    assert not np.any(np.asarray(g["layer"]["kernel"])), "and the kernels behind a closed gate none yet"
    assert "gate" not in _grads(model, x, y)["first"], "the first block changes width: no skip, no gate"
    # the switch is part of the structure, and it prints and parses back
    config = ModelConfig(depth=4, width=16, residual=True, zero_init_residual=True)
    assert "zero_init_residual=True" in str(config) and "zero_init_residual" not in str(ModelConfig())
    assert ModelConfig.parse(str(config)) == config
    # without residual there are no residual blocks, and the switch changes nothing
    same = [ModelConfig(depth=3, width=16, zero_init_residual=z).build((8, 8, 1)) for z in (False, True)]
    np.testing.assert_array_equal(same[0](x.reshape(-1, 8, 8, 1)), same[1](x.reshape(-1, 8, 8, 1)))


def test_an_identity_start_network_with_its_gates_opened_is_the_residual_network():
    """Same seed, same draws (a gate starts at a constant, it takes no random numbers): with every gate at 1 the
    identity-start network is `residual=True`'s, output and gradients bit for bit. Notebook 07 relies on it."""
    x = jax.random.normal(jax.random.key(0), (32, 8, 8, 1))
    y = jnp.arange(32) % 10
    kw = dict(kind="cnn", depth=3, width=8, batchnorm=True, residual=True)
    residual = ModelConfig(**kw).build((8, 8, 1))
    opened = ModelConfig(**kw, zero_init_residual=True).build((8, 8, 1))
    opened.blocks.gate[...] = jnp.ones_like(opened.blocks.gate[...])
    np.testing.assert_array_equal(residual(x), opened(x))
    g_residual, g_opened = _grads(residual, x, y), _grads(opened, x, y)
    for part in ("first", "blocks"):
        np.testing.assert_array_equal(g_residual[part]["layer"]["kernel"], g_opened[part]["layer"]["kernel"])
    np.testing.assert_array_equal(g_residual["head"]["kernel"], g_opened["head"]["kernel"])


def test_a_zero_batchnorm_scale_before_the_relu_would_never_learn():
    """Why zero_init_residual gates the branch instead of zeroing BatchNorm's scale (Goyal et al.'s way): in
    x + relu(BN(Wx)) a zero scale feeds the ReLU zeros, where its derivative is 0, so nothing behind it learns."""
    x = jax.random.normal(jax.random.key(0), (32, 64))
    y = jnp.arange(32) % 10
    model = MLP(64, 4, 16, 10, batchnorm=True, residual=True, rngs=nnx.Rngs(0))
    model.blocks.norm.scale[...] = jnp.zeros_like(model.blocks.norm.scale[...])
    g = _grads(model, x, y)["blocks"]
    assert not np.any(np.asarray(g["norm"]["scale"])) and not np.any(np.asarray(g["norm"]["bias"]))
    assert not np.any(np.asarray(g["layer"]["kernel"]))
