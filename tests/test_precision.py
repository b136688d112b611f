"""helpers.precision and low-precision training: the loss-scaling rule, the compute dtype, the config and the engine."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from helpers import step as step_module
from helpers.compiles import CompileCounter
from helpers.models import ModelConfig
from helpers.precision import DynamicLossScaleState, cast, dynamic_loss_scale
from helpers.train import TrainConfig, train

MLP4 = ModelConfig(depth=4, width=16)


def test_dynamic_loss_scale_halves_and_skips_on_a_non_finite_gradient_and_doubles_after_a_period():
    tx = dynamic_loss_scale(optax.trace(0.9), initial=8.0, period=3)
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    finite, bad = {"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([1.0, jnp.inf])}
    seen = []
    for g in [finite, bad, bad, finite, finite, finite, finite, bad, bad, bad, bad, bad]:
        before = state
        updates, state = tx.update(g, state, params)
        seen.append((float(state.scale), int(state.good_steps)))
        if g is bad:  # zero update; the momentum buffer is not touched
            assert float(optax.tree.norm(updates)) == 0
            np.testing.assert_array_equal(state.inner_state.trace["w"], before.inner_state.trace["w"])
    assert seen == [
        (8, 1), (4, 0), (2, 0),  # halved on each non-finite gradient
        (2, 1), (2, 2), (4, 0),  # doubled once 3 finite steps in a row have passed, the count restarts
        (4, 1),
        (2, 0), (1, 0), (1, 0), (1, 0), (1, 0),  # never below 1
    ]  # fmt: skip
    np.testing.assert_allclose(tx.update(finite, tx.init(params))[0]["w"], [1.0, 2.0])  # inner's own update


def test_cast_changes_floating_leaves_only():
    tree = {"w": jnp.ones(3), "count": jnp.array(2, jnp.int32)}
    out = cast(tree, jnp.bfloat16)
    assert out["w"].dtype == jnp.bfloat16 and out["count"].dtype == jnp.int32


def test_the_passes_run_in_the_compute_dtype_and_the_gradient_comes_back_in_float32(small):
    model = MLP4.build(small.image_shape)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x, y = jnp.asarray(small.x_train[:64]), jnp.asarray(small.y_train[:64])
    jaxpr = str(
        jax.make_jaxpr(lambda p: step_module.loss_and_grads(graphdef, p, rest, x, y, precision="bfloat16"))(params)
    )
    assert "bf16[64,16]" in jaxpr  # the hidden activations
    loss32, _, g32 = step_module.loss_and_grads(graphdef, params, rest, x, y)
    loss16, _, g16 = step_module.loss_and_grads(graphdef, params, rest, x, y, precision="bfloat16")
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g16))
    assert 0 < abs(float(loss16 - loss32)) < 0.02 * float(loss32)  # bfloat16's 8-bit mantissa: close, not equal


def test_a_power_of_two_loss_scale_in_float32_changes_no_bit_and_the_report_is_unscaled(small):
    """x * 2^k / 2^k is exact in floating point: the run with S = 1024 must be the run without S, bit for bit,
    which also shows that the gradient norms are reported after dividing by S."""
    config = TrainConfig(lr=0.1, steps=20, chunk_steps=10)
    plain = train(MLP4.build(small.image_shape), small, config)
    scaled = train(MLP4.build(small.image_shape), small, config.replace(loss_scale=1024.0))
    for field in ("loss", "grad_norm", "layer_grad_norms", "update_ratio"):
        np.testing.assert_array_equal(getattr(scaled, field), getattr(plain, field), err_msg=field)
    assert (scaled.loss_scale == 1024).all() and (plain.loss_scale == 1).all()


@pytest.mark.slow
def test_dynamic_scaling_skips_overflowing_float16_steps_where_a_fixed_scale_diverges(small):
    """Weights 3x He's scale over 8 layers: float16's backward pass overflows at S = 2^15. A fixed S stops the run;
    dynamic scaling skips those steps, halves S until the gradient fits, and trains on."""
    net = ModelConfig(depth=8, width=32, init_scale=3.0)
    config = TrainConfig(lr=1e-4, steps=30, chunk_steps=10, precision="float16")
    fixed = train(net.build(small.image_shape), small, config.replace(loss_scale=2.0**15))
    assert fixed.diverged_at is not None and fixed.diverged_reason == "gradient"
    dynamic = train(net.build(small.image_shape), small, config.replace(loss_scale="dynamic"))
    assert dynamic.diverged_at is None and dynamic.steps == 30
    skipped = np.flatnonzero(dynamic.skipped)
    assert len(skipped) >= 1 and skipped[0] == 0, f"the first steps should be skipped, got {skipped}"
    assert dynamic.loss_scale[0] == 2.0**15 and dynamic.loss_scale[-1] < 2.0**15
    np.testing.assert_array_equal(dynamic.loss_scale[skipped + 1], dynamic.loss_scale[skipped] / 2)
    assert np.isfinite(dynamic.loss).all() and dynamic.loss[-1] < dynamic.loss[0]


@pytest.mark.slow
def test_a_new_fixed_loss_scale_compiles_nothing(small):
    base = TrainConfig(lr=0.1, steps=4, chunk_steps=2, precision="bfloat16", loss_scale=1.0)
    train(MLP4.build(small.image_shape), small, base)
    with CompileCounter() as compiles:
        for s in (2.0, 128.0, 3e4):
            train(MLP4.build(small.image_shape), small, base.replace(loss_scale=s))
    assert compiles.count == 0


def test_the_config_names_and_round_trips_the_new_fields():
    config = TrainConfig(precision="float16", loss_scale="dynamic")
    assert TrainConfig.parse(str(config)) == config and "loss_scale=dynamic" in str(config)
    assert TrainConfig.parse(str(config.replace(loss_scale=1024.0))).loss_scale == 1024.0
    for bad, name in [({"precision": "float8"}, "precision"), ({"loss_scale": "auto"}, "loss_scale"),
                      ({"loss_scale": -1.0}, "loss_scale")]:  # fmt: skip
        with pytest.raises(ValueError, match=name):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="sync_batchnorm"):
        TrainConfig(devices=2, sync_batchnorm=False, precision="bfloat16")
    assert isinstance(TrainConfig(loss_scale="dynamic"), TrainConfig)
    assert DynamicLossScaleState._fields == ("scale", "good_steps", "inner_state")


def test_a_huge_but_finite_gradient_is_applied_not_skipped():
    """Its squared norm overflows float32, its entries do not: finiteness is decided entry by entry."""
    tx = dynamic_loss_scale(optax.sgd(1.0), initial=8.0, period=3)
    params = {"w": jnp.ones(2)}
    updates, state = tx.update({"w": jnp.array([3e20, 3e20])}, tx.init(params), params)
    assert float(state.scale) == 8.0 and int(state.good_steps) == 1
    np.testing.assert_allclose(updates["w"], [-3e20, -3e20])
