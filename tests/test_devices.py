"""Data-parallel training (`TrainConfig(devices=N, sync_batchnorm=...)`, helpers.devices).

The tests that need several devices run in a subprocess started with
`XLA_FLAGS=--xla_force_host_platform_device_count=8`: the flag is read once, when JAX starts, so this process (one
CPU device) cannot grow more. Here they are skipped; `test_with_8_simulated_devices` runs them.
"""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from helpers import devices as D
from helpers.compiles import CompileCounter
from helpers.models import ModelConfig
from helpers.step import loss_and_grads
from helpers.train import TrainConfig, _batch_indices, evaluate, is_compiled, train, train_seeds

BN = ModelConfig(depth=4, width=16, batchnorm=True)
CONFIG = TrainConfig(lr=0.05, clip_norm=1.0, steps=100, chunk_steps=25)
FIELDS = ("loss", "grad_norm", "layer_grad_norms", "update_ratio", "clipped", "lr")
needs_8 = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices: test_with_8_simulated_devices runs it")


def arrays(model):
    return [np.asarray(a) for a in jax.tree.leaves(nnx.state(model))]


# --- bad input, on any number of devices ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [dict(devices=0), dict(devices=-2), dict(devices=2.0), dict(devices=True), dict(devices=3), dict(devices=5)],
)
def test_bad_devices_raise_value_error_naming_devices(kwargs):
    with pytest.raises(ValueError, match="devices"):
        TrainConfig(**kwargs)  # batch_size 64: 3 and 5 do not divide it


def test_more_devices_than_jax_sees_raise_value_error_naming_devices(small):
    too_many = 2 ** (jax.device_count()).bit_length()  # a power of two: it divides batch_size 64
    with pytest.raises(ValueError, match="devices must be <="):
        train(BN.build(small.image_shape), small, TrainConfig(devices=too_many, batch_size=too_many * 8))


def test_devices_and_sync_batchnorm_print_and_parse_back():
    config = TrainConfig(devices=8, sync_batchnorm=False)
    assert "devices=8 sync_batchnorm=False" in str(config)
    assert TrainConfig.parse(str(config)) == config
    assert "devices" not in str(TrainConfig())  # the default is one device, and says nothing


# --- with 8 devices --------------------------------------------------------------------------------------


@needs_8
@pytest.mark.parametrize(
    "model_config, devices", [(BN, 2), (BN, 8), (ModelConfig(kind="cnn", depth=2, width=8, batchnorm=True), 8)]
)
def test_synchronized_batchnorm_on_n_devices_reproduces_one_device(small, model_config, devices):
    """Same losses, gradient norms (what clipping sees), per-layer diagnostics and clipped steps, to float32
    rounding: the batch is split, nothing else changes."""
    cnn = CONFIG.replace(steps=6, chunk_steps=3, clip_norm=0.1)  # a CNN steps slowly: fewer steps, all clipped
    config = CONFIG if model_config.kind == "mlp" else cnn
    one, many = model_config.build(small.image_shape), model_config.build(small.image_shape)
    h1, hn = train(one, small, config), train(many, small, config.replace(devices=devices))
    for field in FIELDS:
        np.testing.assert_allclose(getattr(hn, field), getattr(h1, field), rtol=1e-5, atol=1e-7, err_msg=field)
    assert h1.clipped.any(), "the test needs clipped steps"
    for a, b in zip(arrays(many), arrays(one), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert evaluate(many, small.x_test, small.y_test) == evaluate(one, small.x_test, small.y_test)


@needs_8
def test_the_trained_model_is_back_on_the_default_device(small):
    model = BN.build(small.image_shape)
    train(model, small, CONFIG.replace(steps=2, devices=8))
    placed = {frozenset(a.sharding.device_set) for a in jax.tree.leaves(nnx.state(model))}
    assert placed == {frozenset({jax.devices()[0]})}, f"the model's arrays are on {placed}"


@needs_8
def test_per_device_batchnorm_is_each_device_on_its_own_rows_then_averaged(small):
    """First step, by hand: every group of 8 rows through the one-device loss_and_grads, then the average."""
    config = TrainConfig(steps=1, chunk_steps=1, devices=8, sync_batchnorm=False)
    model = BN.build(small.image_shape)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    first = train(BN.build(small.image_shape), small, config)
    batch = _batch_indices(len(small.x_train), 64, 1, 0)[0]  # the first batch of seed 0
    x, y = jnp.asarray(small.x_train[batch]), jnp.asarray(small.y_train[batch])
    groups = [loss_and_grads(graphdef, params, rest, x[i : i + 8], y[i : i + 8]) for i in range(0, 64, 8)]
    loss = np.mean([g[0] for g in groups])
    grads = jax.tree.map(lambda *g: sum(g) / 8, *[g[2] for g in groups])
    np.testing.assert_allclose(first.loss[0], loss, rtol=1e-5)
    np.testing.assert_allclose(first.grad_norm[0], optax.tree.norm(grads), rtol=1e-5)
    # and shard_map's version of it agrees leaf by leaf (the helper the notebook uses)
    mesh = D.make_mesh(8)
    on_mesh = jax.jit(D.per_device(mesh, loss_and_grads), static_argnums=0)
    _, new_rest, sharded = on_mesh(graphdef, params, rest, x, y)
    for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    mean_rest = jax.tree.map(lambda *r: sum(r) / 8, *[g[1] for g in groups])
    for a, b in zip(jax.tree.leaves(new_rest), jax.tree.leaves(mean_rest), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@needs_8
def test_per_device_batchnorm_differs_and_without_batchnorm_changes_nothing(small):
    sync = train(BN.build(small.image_shape), small, CONFIG.replace(steps=20, devices=8))
    apart = train(BN.build(small.image_shape), small, CONFIG.replace(steps=20, devices=8, sync_batchnorm=False))
    assert abs(apart.grad_norm[0] / sync.grad_norm[0] - 1) > 0.05, "8 rows per device: other statistics"
    plain = BN.replace(batchnorm=False)
    a = train(plain.build(small.image_shape), small, CONFIG.replace(steps=20, devices=8))
    b = train(plain.build(small.image_shape), small, CONFIG.replace(steps=20, devices=8, sync_batchnorm=False))
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-5)


@needs_8
@pytest.mark.parametrize("sync", [True, False])
def test_continuous_hyperparameters_never_recompile_on_8_devices(small, sync):
    base = TrainConfig(optimizer="adam", lr=1e-3, clip_norm=1.0, steps=4, chunk_steps=2, devices=8, sync_batchnorm=sync)
    train(BN.build(small.image_shape), small, base)
    with CompileCounter() as compiles:
        for change in [dict(lr=0.01), dict(clip_norm=0.1), dict(l2=1e-3), dict(weight_decay=0.1), dict(seed=3)]:
            train(BN.build(small.image_shape), small, base.replace(**change))
        train(BN.replace(init_scale=1.3).build(small.image_shape), small, base)
    assert compiles.count == 0, f"{compiles.count} compilations for changes that are data, not program"
    model = BN.build(small.image_shape)
    assert is_compiled(model, base) and not is_compiled(model, base.replace(devices=4)), "devices is structure"


@needs_8
def test_divergence_is_handled_the_same_on_8_devices(small):
    exploding = ModelConfig(depth=20, width=32, init_scale=2.0)
    config = TrainConfig(lr=0.5, steps=100, chunk_steps=10)
    one, many = exploding.build(small.image_shape), exploding.build(small.image_shape)
    h1, h8 = train(one, small, config), train(many, small, config.replace(devices=8))
    assert h8.diverged_at == h1.diverged_at is not None
    assert (h8.diverged_reason, h8.diverged_layer) == (h1.diverged_reason, h1.diverged_layer)
    assert all(np.isfinite(a).all() for a in arrays(many))


@needs_8
def test_train_seeds_on_8_devices_is_train_per_seed(small):
    config = CONFIG.replace(steps=20, chunk_steps=10, devices=8, sync_batchnorm=False)
    runs = train_seeds(BN, small, config, seeds=[1, 2])
    for seed, history in zip(runs.seeds, runs.histories, strict=True):
        alone = train(BN.replace(seed=seed).build(small.image_shape), small, config.replace(seed=seed))
        np.testing.assert_array_equal(history.loss, alone.loss)


# --- the subprocess that runs the tests above ---------------------------------------------------------


@pytest.mark.slow
def test_with_8_simulated_devices():
    """The tests above, in a fresh Python whose JAX starts with 8 CPU devices (added to any XLA_FLAGS already set,
    such as the second floating-point path's)."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-k", "not simulated_devices"],
        env={**os.environ, "XLA_FLAGS": flags},
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and " skipped" not in result.stdout, result.stdout[-4000:] + result.stderr[-2000:]
