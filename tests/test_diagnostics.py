import jax
import numpy as np
import pytest
from flax import nnx

from helpers.diagnostics import activation_stats, activations_and_grads, layer_grad_norms, relu_gain_per_layer
from helpers.models import ModelConfig


@pytest.mark.slow
def test_layer_grad_norms_update_nothing(small):
    model = ModelConfig(depth=3, width=16, batchnorm=True).build(small.image_shape)
    before = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model))]
    norms = layer_grad_norms(model, small.x_train[:64], small.y_train[:64])
    assert norms.shape == (4,) and np.all(norms > 0)
    after = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model))]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("init_scale", [0.7, 1.0, 1.3])
def test_relu_signal_rms_changes_by_init_scale_per_layer(init_scale):
    """Mean-field prediction checked on a wide net with random inputs: RMS ratio between blocks ~ init_scale."""
    model = ModelConfig(depth=6, width=1024, init_scale=init_scale).build((32, 32, 1))
    x = np.random.default_rng(0).normal(size=(256, 32, 32, 1)).astype(np.float32)
    hidden = model.hidden(x)
    rms = [float(np.sqrt(np.mean(np.asarray(h) ** 2))) for h in hidden]
    ratios = np.array(rms[1:]) / np.array(rms[:-1])
    np.testing.assert_allclose(ratios, relu_gain_per_layer(init_scale), rtol=0.05)


def test_activation_stats_count_dead_units(small):
    model = ModelConfig(depth=2, width=8).build(small.image_shape)
    x = small.x_train[:64]
    alive = np.flatnonzero(np.asarray(model.hidden(x)[1]).max(axis=0) > 0)
    naturally_dead = 8 - len(alive)
    bias = model.blocks.layer.bias  # the blocks after the first, stacked: block 1 is row 0
    bias[...] = bias[...].at[0, alive[:3]].set(-1e6)  # 3 more units never fire
    stats = activation_stats(model, x)
    assert stats.layer_names == ["dense0", "dense1"]
    assert stats.dead_fraction[1] == pytest.approx((naturally_dead + 3) / 8)
    assert stats.std.shape == (2,) and np.all(stats.std > 0)


def test_activations_and_grads_give_every_value_in_layer_order(small):
    """The histogram values agree with the per-layer norms and statistics measured separately."""
    model = ModelConfig(depth=4, width=16, init_scale=1.5).build(small.image_shape)
    x, y = small.x_train[:64], small.y_train[:64]
    values = activations_and_grads(model, x, y)
    assert values.layer_names == model.layer_names() and len(values.activations) == 4 and len(values.grads) == 5
    assert [g.size for g in values.grads] == [k.size for k in model.kernels()]
    np.testing.assert_allclose([np.linalg.norm(g) for g in values.grads], layer_grad_norms(model, x, y), rtol=1e-5)
    np.testing.assert_allclose([a.std() for a in values.activations], activation_stats(model, x).std, rtol=1e-5)
