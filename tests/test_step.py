"""The pieces of the training step (helpers.step), one at a time, and the bounded cache of compiled programs."""

import gc
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from helpers import step as S
from helpers.compiles import CACHE_SIZE, CompiledCache
from helpers.models import ModelConfig
from helpers.optimizer import adaptive_grad_clip, hyperparameters, make_optimizer
from helpers.train import TrainConfig, _spec, train

MODEL = ModelConfig(depth=3, width=16, batchnorm=True)


def split(model):
    model.train()
    return nnx.split(model, nnx.Param, ...)


@pytest.mark.slow
def test_loss_and_grads_is_the_cross_entropy_and_its_gradient(small):
    model = MODEL.build(small.image_shape)
    graphdef, params, rest = split(model)
    x, y = jnp.asarray(small.x_train[:32]), jnp.asarray(small.y_train[:32])
    loss, new_rest, grads = S.loss_and_grads(graphdef, params, rest, x, y)

    def direct(m):
        return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

    expected_loss, expected_grads = nnx.value_and_grad(direct)(nnx.merge(graphdef, params, rest, copy=True))
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(nnx.state(expected_grads, nnx.Param)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new_rest, rest))
    assert max(moved) > 0, "BatchNorm's running statistics are updated by a training-mode pass"


def test_with_l2_adds_l2_times_the_kernels_only(small):
    _, params, _ = split(MODEL.build(small.image_shape))
    grads = jax.tree.map(jnp.zeros_like, params)
    out = nnx.to_pure_dict(S.with_l2(grads, params, 0.5))
    pure = nnx.to_pure_dict(params)
    np.testing.assert_allclose(out["head"]["kernel"], 0.5 * pure["head"]["kernel"])
    np.testing.assert_allclose(out["blocks"]["layer"]["kernel"], 0.5 * pure["blocks"]["layer"]["kernel"])
    assert not np.any(out["head"]["bias"]) and not np.any(out["first"]["norm"]["scale"])


@pytest.mark.parametrize("clip_mode", [None, "global_norm", "value", "adaptive"])
def test_clipped_says_whether_the_clip_changes_the_gradient(small, clip_mode):
    _, params, _ = split(MODEL.build(small.image_shape))
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.01), params)
    for threshold in (1e-6, 1e6):
        flag = bool(S.clipped(clip_mode, grads, params, threshold))
        if clip_mode is None:
            assert not flag
            continue
        tx = {
            "global_norm": optax.clip_by_global_norm,
            "value": optax.clip,
            "adaptive": lambda c: adaptive_grad_clip(c, params),
        }[clip_mode](threshold)
        out = tx.update(grads, tx.init(params), params)[0]
        changed = float(optax.tree.norm(optax.tree.sub(out, grads))) > 0
        assert flag == changed == (threshold < 1), (clip_mode, threshold)


@pytest.mark.parametrize(
    "loss, grad, reason", [(np.nan, 1.0, "loss"), (1.0, np.inf, "gradient"), (1.0, 1e30, "parameters")]
)
def test_guarded_update_refuses_what_is_not_finite_and_says_why(loss, grad, reason):
    params = {"w": jnp.ones(3) * 1e10}
    grads = {"w": jnp.full(3, grad, jnp.float32)}
    tx = optax.sgd(1e30)  # a finite gradient of 1e30 gives an update of 1e60: inf in float32
    _, _, ok, why = S.guarded_update(tx, grads, tx.init(params), params, jnp.float32(loss), jnp.float32(grad), False)
    assert not bool(ok) and S.REASONS[int(why)] == reason
    sgd = optax.sgd(0.1)
    _, _, ok, _ = S.guarded_update(sgd, {"w": jnp.ones(3)}, sgd.init(params), params, 1.0, 1.0, False)
    assert bool(ok)


def test_guarded_update_under_skip_nonfinite_goes_on_after_a_bad_gradient():
    params = {"w": jnp.ones(3)}
    tx = optax.apply_if_finite(optax.sgd(0.1), max_consecutive_errors=10)
    grads = {"w": jnp.array([1.0, np.nan, 1.0])}
    updates, _, ok, _ = S.guarded_update(tx, grads, tx.init(params), params, 1.0, jnp.nan, True)
    assert bool(ok) and not np.any(updates["w"]), "the bad step is skipped (a zero update), the run goes on"


def test_pack_and_unpack_keep_every_metric_by_name():
    metrics = S.StepMetrics(
        loss=jnp.float32(1.5),
        grad_norm=jnp.float32(2.5),
        clipped=jnp.array(True),
        skipped=jnp.array(False),
        lr=jnp.float32(0.1),
        ok=jnp.array(True),
        reason=jnp.int32(2),
        loss_scale=jnp.float32(1024.0),
        layer_grad_norms=jnp.arange(4.0),
        update_ratio=jnp.arange(4.0) / 10,
    )
    scalars, per_layer = S.pack(metrics)
    back = S.unpack(np.asarray(scalars)[None], np.asarray(per_layer)[None])
    for name in S.StepMetrics._fields:
        np.testing.assert_allclose(getattr(back, name)[0], np.asarray(getattr(metrics, name), np.float32))


@pytest.mark.slow
def test_the_compiled_chunk_holds_no_arrays(small):
    """The cache keeps compiled programs by structure; a model trained once must not stay alive through it."""
    model = MODEL.replace(width=13).build(small.image_shape)
    kernel = model.head.kernel.get_value()
    train(model, small, TrainConfig(steps=4, chunk_steps=2, clip_norm=1.0, clip_mode="adaptive"))
    probe = weakref.ref(model.head.kernel.get_value())
    del model, kernel
    gc.collect()
    assert probe() is None, "something cached holds the trained model's parameters"


@pytest.mark.slow
def test_the_cache_of_compiled_programs_stays_bounded(small):
    """Fill a cache past its bound with cheap models: it keeps the newest entries and frees the oldest."""
    cache = CompiledCache(S.compiled_chunk.__wrapped__, size=4)
    config = TrainConfig(steps=2, chunk_steps=2)
    made = []
    for width in range(1, 8):
        model = ModelConfig(depth=1, width=width).build(small.image_shape)
        graphdef = nnx.split(model, nnx.Param, ...)[0]
        run, init = cache(graphdef, _spec(model, config))
        made.append(weakref.ref(run))
        graphdef, params, rest = split(model)
        idx = jnp.zeros((2, 8), jnp.int32)
        run(
            (
                params,
                rest,
                init(params, hyperparameters(config)),
                jnp.array(False),
            ),
            jnp.asarray(small.x_train),
            jnp.asarray(small.y_train),
            idx,
            jnp.ones(2, bool),
        )
        del run, init
    gc.collect()
    assert len(cache) == 4
    assert [r() is None for r in made] == [True] * 3 + [False] * 4, "evicted programs must be freed"
    assert S.compiled_chunk._size == CACHE_SIZE >= 32, "a slider session must not recompile what it saw recently"


def test_make_optimizer_reads_only_the_structure_of_params(small):
    _, params, _ = split(MODEL.build(small.image_shape))
    tx = make_optimizer(TrainConfig(clip_norm=1.0, clip_mode="adaptive"), params)
    alive = weakref.ref(jax.tree.leaves(params)[0])
    del params
    gc.collect()
    assert alive() is None, "the optimizer chain must not keep the parameters it was built from"
    assert tx is not None
