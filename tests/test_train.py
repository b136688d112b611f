import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers import diagnostics
from helpers import step as step_module
from helpers import train as train_module
from helpers.compiles import CompileCounter
from helpers.models import MLP, ModelConfig
from helpers.train import TrainConfig, evaluate, train, warmup_factor

MLP4 = ModelConfig(depth=4, width=16)


def params_of(model):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def fresh(small, cfg=MLP4):
    return cfg.build(small.image_shape)


def one_step_delta(small, config, cfg=MLP4):
    model = fresh(small, cfg)
    before = params_of(model)
    history = train(model, small, config.replace(steps=1, chunk_steps=1))
    return [a - b for a, b in zip(params_of(model), before, strict=True)], history, before


def global_norm(arrays):
    return float(np.sqrt(sum((a.astype(np.float64) ** 2).sum() for a in arrays)))


# --- clipping really acts inside train ----------------------------------------------------------------


@pytest.mark.slow
def test_sgd_step_with_tiny_clip_norm_moves_params_by_lr_times_clip_norm(small):
    lr, clip_norm = 0.1, 1e-3
    delta, history, _ = one_step_delta(small, TrainConfig(lr=lr, clip_norm=clip_norm))
    assert history.grad_norm[0] > 100 * clip_norm and history.clipped[0]
    assert global_norm(delta) == pytest.approx(lr * clip_norm, rel=1e-3)
    unclipped, history, _ = one_step_delta(small, TrainConfig(lr=lr))
    assert global_norm(unclipped) == pytest.approx(lr * history.grad_norm[0], rel=1e-3)
    assert not history.clipped.any()


@pytest.mark.parametrize("clip_mode", ["value", "adaptive"])
def test_other_clip_modes_act_inside_train(small, clip_mode):
    clipped, h, _ = one_step_delta(small, TrainConfig(lr=0.1, clip_norm=1e-4, clip_mode=clip_mode))
    free, _, _ = one_step_delta(small, TrainConfig(lr=0.1))
    assert h.clipped[0] and global_norm(clipped) < 0.5 * global_norm(free)


def test_adaptive_clipping_treats_every_stacked_layer_as_optax_treats_a_layer_of_its_own(small):
    """AGC reads units off each array's shape; stacked blocks are clipped layer by layer (vmap), as if unstacked."""
    model = fresh(small)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    rng = np.random.default_rng(0)
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 0.5, jnp.float32), params)
    tx = train_module.adaptive_grad_clip(0.05, params)
    ours = tx.update(grads, tx.init(params), params)[0]
    agc = optax.adaptive_grad_clip(0.05)
    for i in range(len(params["blocks"]["layer"]["kernel"])):  # each stacked layer on its own, through optax
        layer = lambda tree: jax.tree.map(lambda a: a[i], tree["blocks"])  # noqa: B023, E731
        expected = agc.update(layer(grads), agc.init(layer(params)), layer(params))[0]
        for a, b in zip(jax.tree.leaves(layer(ours)), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    for part in ("first", "head"):
        expected = agc.update(grads[part], agc.init(params[part]), params[part])[0]
        for a, b in zip(jax.tree.leaves(ours[part]), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not np.allclose(ours["blocks"]["layer"]["kernel"], grads["blocks"]["layer"]["kernel"])  # it did clip


# --- L2 vs weight decay --------------------------------------------------------------------------------


def _hand_l2_sgd_step(small, lr, l2):
    """One SGD step on loss + l2/2 * sum ||kernel||^2, written by hand."""
    model = fresh(small)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x, y = small.x_train[:64], small.y_train[:64]
    order = train_module._batch_indices(len(small.x_train), 64, 1, 0)[0]
    x, y = small.x_train[order], small.y_train[order]

    def loss(p):
        logits = nnx.merge(graphdef, p, rest, copy=True)(x)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        pure = nnx.to_pure_dict(p)
        kernels = [pure["first"]["layer"]["kernel"], pure["blocks"]["layer"]["kernel"], pure["head"]["kernel"]]
        return ce + 0.5 * l2 * sum(jnp.sum(k**2) for k in kernels)

    value, grads = jax.value_and_grad(loss)(params)
    new = jax.tree.map(lambda p, g: p - lr * g, params, grads)
    return [np.asarray(a) for a in jax.tree.leaves(new)], float(optax.tree.norm(grads))


@pytest.mark.slow
def test_coupled_l2_with_sgd_equals_the_hand_written_l2_loss(small):
    lr, l2 = 0.1, 0.05
    delta, history, before = one_step_delta(small, TrainConfig(lr=lr, l2=l2))
    expected, grad_norm = _hand_l2_sgd_step(small, lr, l2)
    for b, d, e in zip(before, delta, expected, strict=True):
        np.testing.assert_allclose(b + d, e, rtol=1e-4, atol=1e-6)
    assert history.grad_norm[0] == pytest.approx(grad_norm, rel=1e-4)  # reported gradient includes the L2 term


def test_with_sgd_coupled_l2_equals_decoupled_decay_but_with_adam_they_differ(small):
    sgd_l2, _, _ = one_step_delta(small, TrainConfig(lr=0.1, l2=0.05))
    sgd_wd, _, _ = one_step_delta(small, TrainConfig(lr=0.1, weight_decay=0.05))
    for a, b in zip(sgd_l2, sgd_wd, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    adam_l2, _, _ = one_step_delta(small, TrainConfig(optimizer="adam", lr=0.01, l2=0.05))
    adam_wd, _, _ = one_step_delta(small, TrainConfig(optimizer="adam", lr=0.01, weight_decay=0.05))
    assert global_norm([a - b for a, b in zip(adam_l2, adam_wd, strict=True)]) > 0.1 * global_norm(adam_wd)


def test_warmup_factor_matches_optax_linear_schedule():
    for warmup in (1, 5, 37):
        schedule = optax.linear_schedule(1.0 / warmup, 1.0, max(warmup - 1, 1))
        for count in range(60):
            assert float(warmup_factor(count, float(warmup))) == pytest.approx(float(schedule(count)), rel=1e-6)
    assert float(warmup_factor(0, 0.0)) == 1.0


def test_history_lr_follows_warmup(small):
    h = train(fresh(small), small, TrainConfig(lr=0.1, warmup_steps=10, steps=20, chunk_steps=5))
    np.testing.assert_allclose(h.lr, 0.1 * np.minimum(1, (np.arange(20) + 1) / 10), rtol=1e-6)


# --- diagnostics inside the step ----------------------------------------------------------------------


def test_step_diagnostics_match_the_standalone_ones(small):
    lr = 0.05
    model = fresh(small)
    order = train_module._batch_indices(len(small.x_train), 64, 1, 0)[0]
    expected = diagnostics.layer_grad_norms(model, small.x_train[order], small.y_train[order])
    kernels = [np.linalg.norm(w) for w in model.kernels()]
    h = train(model, small, TrainConfig(lr=lr, steps=1, chunk_steps=1))
    assert h.layer_names == ["dense0", "dense1", "dense2", "dense3", "head"]
    np.testing.assert_allclose(h.layer_grad_norms[0], expected, rtol=1e-4)
    np.testing.assert_allclose(h.update_ratio[0], lr * expected / np.array(kernels), rtol=1e-4)


# --- compilation --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_continuous_hyperparameters_and_new_weights_never_recompile(small):
    base = TrainConfig(optimizer="adam", lr=1e-3, clip_norm=1.0, steps=4, chunk_steps=2)
    train(fresh(small), small, base)
    with CompileCounter() as compiles:
        for field, values in {
            "lr": [1e-4, 3e-3, 0.01, 0.1, 1.0],
            "clip_norm": [0.01, 0.1, 0.5, 2.0, 100.0],
            "l2": [0.0, 1e-5, 1e-3, 0.1, 1.0],
            "weight_decay": [0.0, 1e-5, 1e-3, 0.1, 1.0],
            "warmup_steps": [0, 1, 3, 10, 100],
            "seed": [1, 2],
        }.items():
            for value in values:
                train(fresh(small), small, base.replace(**{field: value}))
        for init_scale in (0.5, 1.3):  # a slider that rebuilds the model: new weights, same shapes
            train(MLP4.replace(init_scale=init_scale).build(small.image_shape), small, base)
    assert compiles.count == 0, f"{compiles.count} compilations for changes that are data, not program"
    with CompileCounter() as compiles:
        train(fresh(small, MLP4.replace(width=11)), small, base)  # a new program: the counter sees it
    assert compiles.count > 0


# --- divergence and bad input ------------------------------------------------------------------------

EXPLODING = ModelConfig(depth=20, width=32, init_scale=2.0)


@pytest.mark.slow
def test_divergence_stops_cleanly_and_keeps_the_last_finite_parameters(small):
    model = fresh(small, EXPLODING)
    history = train(model, small, TrainConfig(lr=0.5, steps=100, chunk_steps=10))
    assert history.diverged_at is not None and history.diverged_at < 10
    assert history.steps == history.diverged_at + 1
    assert np.isfinite(history.loss[: history.diverged_at]).all()
    assert not (np.isfinite(history.loss[-1]) and np.isfinite(history.grad_norm[-1]))
    assert history.diverged_layer in history.layer_names
    # Here the forward pass overflows, and the named layer is where it first does on the diverging batch.
    assert history.diverged_reason == "loss"
    order = train_module._batch_indices(len(small.x_train), 64, history.diverged_at + 1, 0)[-1]
    model.train()
    finite = [bool(np.isfinite(h).all()) for h in model.hidden(small.x_train[order])]
    assert history.layer_names[finite.index(False)] == history.diverged_layer
    assert "diverged at step" in history.summary()
    assert all(np.isfinite(p).all() for p in params_of(model))
    # The kept parameters are the ones from before the diverging step: replaying its predecessors gives them.
    replay = fresh(small, EXPLODING)
    train(replay, small, TrainConfig(lr=0.5, steps=history.diverged_at, chunk_steps=10))
    for a, b in zip(params_of(model), params_of(replay), strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_update_that_overflows_stops_the_run_before_it_is_applied(small):
    """Finite loss and gradient, but lr * weight_decay * W overflows float32: stopped, and nothing applied."""
    model = fresh(small)
    before = params_of(model)
    history = train(model, small, TrainConfig(lr=3e38, weight_decay=1e10, steps=5, chunk_steps=5))
    assert history.diverged_at == 0 and history.diverged_reason == "parameters"
    assert np.isfinite(history.loss[0]) and np.isfinite(history.grad_norm[0])
    assert history.diverged_layer in history.layer_names
    for a, b in zip(before, params_of(model), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_non_finite_inputs_stop_the_run_or_are_skipped_with_apply_if_finite(small):
    class Poisoned:
        x_train = small.x_train[:64].copy()
        y_train = small.y_train[:64]

    Poisoned.x_train[5] = np.nan
    stop = train(fresh(small), Poisoned, TrainConfig(batch_size=8, steps=16, chunk_steps=4))
    assert stop.diverged_at is not None and stop.diverged_reason == "loss"
    model = fresh(small)
    skip = train(model, Poisoned, TrainConfig(batch_size=8, steps=16, chunk_steps=4, skip_nonfinite=True))
    assert skip.diverged_at is None and skip.steps == 16
    assert skip.skipped.sum() == 2  # the poisoned example is in one batch of each of the two epochs
    assert skip.skipped[stop.diverged_at]
    assert all(np.isfinite(p).all() for p in params_of(model))
    assert np.isfinite(np.asarray(jax.tree.leaves(nnx.state(model, nnx.BatchStat)) or [0.0])).all()


@pytest.mark.slow
def test_cnn_trains_with_per_step_calls_and_diverges_cleanly(small):
    cnn = ModelConfig(kind="cnn", depth=2, width=8, batchnorm=True)
    h = train(cnn.build(small.image_shape), small, TrainConfig(optimizer="adam", lr=1e-2, steps=6, chunk_steps=3))
    assert h.steps == 6 and h.diverged_at is None and h.layer_names == ["conv0", "conv1", "head"]
    bad = cnn.replace(batchnorm=False, init_scale=30.0, depth=4)
    h = train(bad.build(small.image_shape), small, TrainConfig(lr=10.0, steps=30, chunk_steps=5))
    assert h.diverged_at is not None


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(lr=0.0), "lr"),
        (dict(lr=-1.0), "lr"),
        (dict(lr=float("inf")), "lr"),
        (dict(clip_norm=-1.0), "clip_norm"),
        (dict(clip_norm=0.0), "clip_norm"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(clip_mode="elementwise"), "clip_mode"),
        (dict(l2=-0.1), "l2"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(warmup_steps=-1), "warmup_steps"),
        (dict(warmup_steps=2.5), "warmup_steps"),
        (dict(batch_size=0), "batch_size"),
        (dict(steps=0), "steps"),
        (dict(seed=-3), "seed"),
        (dict(chunk_steps=0), "chunk_steps"),
    ],
)
def test_bad_config_raises_value_error_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TrainConfig(**kwargs)


def test_data_that_does_not_fit_raises_value_error(small):
    class Wrong:
        x_train = np.zeros((32, 28, 28, 1), np.float32)
        y_train = np.zeros(32, np.int32)

    with pytest.raises(ValueError, match="data"):
        train(fresh(small), Wrong, TrainConfig())

    class BadLabels:
        x_train = small.x_train[:32]
        y_train = np.full(32, 10)

    with pytest.raises(ValueError, match="data"):
        train(fresh(small), BadLabels, TrainConfig())
    with pytest.raises(ValueError, match="batch_size"):
        train(fresh(small), small, TrainConfig(batch_size=10_000))


VALID = {
    "optimizer": st.sampled_from(["sgd", "momentum", "adam"]),
    "lr": st.floats(1e-4, 10),
    "clip_norm": st.one_of(st.none(), st.floats(1e-3, 5)),
    "clip_mode": st.sampled_from(["global_norm", "value", "adaptive"]),
    "l2": st.floats(0, 0.5),
    "weight_decay": st.floats(0, 0.5),
    "warmup_steps": st.integers(0, 5),
    "batch_size": st.sampled_from([16, 64]),
    "skip_nonfinite": st.booleans(),
    "depth": st.integers(1, 2),
    "init_scale": st.floats(0.1, 4),
}
INVALID = {
    "optimizer": st.sampled_from(["lbfgs", "SGD", ""]),
    "lr": st.sampled_from([0.0, -1.0, float("nan"), float("inf")]),
    "clip_norm": st.sampled_from([0.0, -1.0, float("nan")]),
    "clip_mode": st.just("bogus"),
    "l2": st.floats(-1, -1e-6),
    "weight_decay": st.floats(-1, -1e-6),
    "warmup_steps": st.integers(-3, -1),
    "batch_size": st.sampled_from([0, 300]),  # 300 > the 256 training examples
    "depth": st.just(0),
    "init_scale": st.sampled_from([0.0, -0.5, float("inf")]),
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), broken=st.one_of(st.none(), st.sampled_from(sorted(INVALID))))
@pytest.mark.slow
def test_random_configurations_train_or_raise_value_error_naming_the_argument(small, data, broken):
    """Random valid configurations train; breaking one argument raises a ValueError that names it."""
    values = {name: data.draw(INVALID[name] if name == broken else strategy) for name, strategy in VALID.items()}
    model_args = {"depth": values.pop("depth"), "init_scale": values.pop("init_scale")}

    def run():
        model = ModelConfig(width=8, **model_args).build(small.image_shape)
        return train(model, small, TrainConfig(steps=3, chunk_steps=3, **values))

    if broken is not None:
        with pytest.raises(ValueError, match=broken):
            run()
        event("raised")
        return
    history = run()
    event("trained" if history.diverged_at is None else "diverged cleanly")
    assert history.steps <= 3
    if history.diverged_at is None:
        assert history.steps == 3 and (values["skip_nonfinite"] or np.isfinite(history.loss).all())
    else:
        assert history.steps == history.diverged_at + 1


# --- reproducibility, reporting, evaluation ----------------------------------------------------------


@pytest.mark.slow
def test_same_seed_gives_identical_histories_and_other_seeds_differ(small):
    config = TrainConfig(optimizer="momentum", lr=0.05, clip_norm=1.0, steps=30, chunk_steps=10, seed=3)
    bn = MLP4.replace(batchnorm=True)
    a, b = train(fresh(small, bn), small, config), train(fresh(small, bn), small, config)
    for field in ("loss", "grad_norm", "layer_grad_norms", "update_ratio", "clipped", "lr"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = train(fresh(small, bn), small, config.replace(seed=4))
    assert not np.array_equal(a.loss, c.loss)


def test_on_chunk_sees_growing_histories_and_steps_need_not_divide_chunks(small):
    seen = []
    h = train(fresh(small), small, TrainConfig(steps=23, chunk_steps=10), on_chunk=lambda h: seen.append(h.steps))
    assert seen == [10, 20, 23] and h.steps == 23


def test_config_string_round_trips():
    c = TrainConfig(optimizer="adam", lr=3e-4, clip_norm=0.5, clip_mode="adaptive", l2=1e-4, warmup_steps=7)
    assert TrainConfig.parse(str(c)) == c
    assert "clip_norm=0.5" in str(c) and "optimizer=adam" in str(c)
    with pytest.raises(ValueError, match="unknown item"):
        TrainConfig.parse("lr=0.1 speed=3")


@pytest.mark.slow
def test_batchnorm_eval_output_does_not_depend_on_the_rest_of_the_batch(small):
    model = fresh(small, MLP4.replace(batchnorm=True))
    train(model, small, TrainConfig(steps=20, chunk_steps=10))
    model.eval()
    x = jnp.asarray(small.x_test[:32])
    alone = model(x[:1])
    with_others = model(x)[:1]
    np.testing.assert_allclose(alone, with_others, rtol=1e-5, atol=1e-6)
    model.train()  # in training mode the batch statistics do couple the examples
    assert not np.allclose(model(x[:2])[:1], model(x)[:1], atol=1e-4)


def test_evaluate_gives_accuracy_and_training_improves_it(digits):
    model = MLP(64, 2, 64, 10, rngs=nnx.Rngs(0))
    before = evaluate(model, digits.x_test, digits.y_test)
    train(model, digits, TrainConfig(optimizer="adam", lr=3e-3, steps=300))
    after = evaluate(model, digits.x_test, digits.y_test)
    assert 0 <= before < 0.5 < 0.9 < after <= 1


def test_compiled_optimizer_init_equals_optax_init(small):
    for config in (
        TrainConfig(optimizer="adam", lr=3e-3, clip_norm=0.5, l2=1e-3, weight_decay=0.1, warmup_steps=7),
        TrainConfig(optimizer="momentum", skip_nonfinite=True),
    ):
        model = fresh(small)
        graphdef, params, _ = nnx.split(model, nnx.Param, ...)
        _, init = step_module.compiled_chunk(graphdef, train_module._spec(model, config))
        ours = init(params, train_module.hyperparameters(config))
        expected = train_module.make_optimizer(config, params).init(params)
        assert jax.tree.structure(ours) == jax.tree.structure(expected)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(expected), strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_the_benchmarks_variants_of_the_step_make_the_same_updates(small):
    """benchmarks/ times the step against itself without diagnostics and against the step before it was split
    into pieces: all three must train identically, or the comparisons mean nothing."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import _variants as V

    config = TrainConfig(lr=0.05, clip_norm=1.0, weight_decay=1e-4, steps=20, chunk_steps=20)
    finals = []
    for kind in ("ours", "ours without diagnostics", "previous"):
        stepper = V.Stepper(fresh(small, ModelConfig(depth=4, width=16, batchnorm=True)), small, config, kind)
        stepper(1)
        finals.append(jax.tree.leaves((stepper.carry[0], stepper.carry[1])))
    for a, b, c in zip(*finals, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-7)
