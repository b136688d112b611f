"""train_seeds: several seeds of one recipe, each run exactly what `train` gives for that seed."""

import jax
import numpy as np
import pytest
from flax import nnx

from helpers.compiles import CompileCounter
from helpers.models import ModelConfig
from helpers.train import SeedRuns, TrainConfig, train, train_seeds

MLP = ModelConfig(depth=4, width=16, batchnorm=True)
CONFIG = TrainConfig(lr=0.05, clip_norm=1.0, steps=40, chunk_steps=10)


def arrays(model):
    return [np.asarray(a) for a in jax.tree.leaves(nnx.state(model))]


@pytest.mark.parametrize("config", [MLP, ModelConfig(kind="cnn", depth=2, width=8), ModelConfig(depth=20, width=8)])
@pytest.mark.slow
def test_build_seeds_makes_the_networks_build_makes(small, config):
    together = config.replace(init_scale=1.3).build_seeds([3, 0, 7], small.image_shape)
    for seed, model in zip([3, 0, 7], together, strict=True):
        alone = config.replace(init_scale=1.3, seed=seed).build(small.image_shape)
        assert nnx.graphdef(model) == nnx.graphdef(alone)
        for a, b in zip(arrays(model), arrays(alone), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "model_config, config",
    [
        (MLP, CONFIG),
        (ModelConfig(kind="cnn", depth=2, width=8, batchnorm=True), CONFIG.replace(steps=12, chunk_steps=4)),
    ],
    ids=["mlp", "cnn"],
)
@pytest.mark.slow
def test_each_seed_matches_train_on_that_seed(small, model_config, config):
    runs = train_seeds(model_config, small, config, seeds=[2, 5])
    for seed, history, model in zip(runs.seeds, runs.histories, runs.models, strict=True):
        alone_model = model_config.replace(seed=seed).build(small.image_shape)
        alone = train(alone_model, small, config.replace(seed=seed))
        assert history.config == config.replace(seed=seed) and history.steps == config.steps
        np.testing.assert_allclose(history.loss[:20], alone.loss[:20], rtol=1e-3)
        np.testing.assert_allclose(history.layer_grad_norms[:20], alone.layer_grad_norms[:20], rtol=1e-3)
        for a, b in zip(arrays(model), arrays(alone_model), strict=True):  # the trained weights too
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    assert not np.allclose(runs.histories[0].loss, runs.histories[1].loss), "seeds should give different runs"


@pytest.mark.slow
def test_divergence_is_handled_per_seed(small):
    """At init_scale 1100 the first gradient's norm, about 1e19 and growing like init_scale^6, overflows on some
    seeds and not on others (seed 6 by a margin of 1.1x, seed 7 of 1.04x: far above rounding). The tiny lr keeps
    the others finite: each seed ends on its own."""
    runs = train_seeds(
        ModelConfig(depth=6, width=16, init_scale=1100.0), small, TrainConfig(lr=1e-30, steps=20), seeds=range(8)
    )
    diverged = np.array([h.diverged_at is not None for h in runs.histories])
    assert diverged.any() and not diverged.all(), f"want a mix of diverged and healthy seeds, got {diverged}"
    for h, bad in zip(runs.histories, diverged, strict=True):
        assert (h.steps, h.diverged_reason) == ((1, "gradient") if bad else (20, None))
    assert runs.diverged == list(np.flatnonzero(diverged))
    assert np.isnan(runs.final_loss[diverged]).all() and np.isfinite(runs.final_loss[~diverged]).all()
    assert f"{diverged.sum()} diverged" in runs.summary()
    stacked = runs.stacked("loss")
    assert stacked.shape == (8, 20) and np.isnan(stacked[diverged, 1:]).all() and np.isfinite(stacked[~diverged]).all()


def test_on_chunk_sees_every_seed_advance_and_the_finished_runs_last(small):
    seen = []
    runs = train_seeds(MLP, small, CONFIG, seeds=[0, 1, 2], on_chunk=seen.append)
    assert all(isinstance(r, SeedRuns) for r in seen)
    slowest = [min(h.steps for h in r.histories) for r in seen]
    # Every call shows all seeds further on than the last one did, at a chunk boundary. How many calls there are
    # depends on the threads' timing: a caller slower than the runs sees fewer (reports never queue up).
    assert slowest == sorted(set(slowest)) and all(s % CONFIG.chunk_steps == 0 for s in slowest), slowest
    assert slowest[-1] == CONFIG.steps and set(slowest) <= {10, 20, 30, 40}, slowest
    assert seen[-1] is runs and runs.models is not None and all(r.models is None for r in seen[:-1])


def test_evaluate_and_summary(small):
    runs = train_seeds(MLP, small, CONFIG, seeds=[0, 1, 2])
    accuracy = runs.evaluate(small.x_test, small.y_test)
    assert accuracy.shape == (3,) and (accuracy > 0.3).all()
    loss = runs.final_loss
    assert runs.summary() == (
        f"3 seeds, none diverged; final loss {loss.mean():.3g} (min {loss.min():.3g}, max {loss.max():.3g})"
    )


def test_summary_of_runs_that_skipped_every_bad_step(small):
    """skip_nonfinite: no seed stops, yet every final loss is NaN; the summary says so instead of raising."""
    broken = CONFIG.replace(lr=5.0, clip_norm=None, skip_nonfinite=True)
    runs = train_seeds(ModelConfig(depth=8, width=64), small, broken, seeds=[0, 1])
    assert not runs.diverged and not np.isfinite(runs.final_loss).any(), runs.final_loss
    assert runs.summary() == "2 seeds, none diverged; no finite final loss"


def test_a_slider_move_compiles_nothing(small):
    train_seeds(MLP, small, CONFIG, seeds=[0, 1])
    with CompileCounter() as compiles:
        train_seeds(MLP.replace(init_scale=1.4), small, CONFIG.replace(lr=0.2, clip_norm=3.0), seeds=[4, 9])
    assert compiles.count == 0, "a new lr, clip_norm, init_scale or seed must reuse the compiled step"


@pytest.mark.parametrize("seeds", [[], [1, 1], [-1], [0.5], [True], "ab", 3])
def test_bad_seeds_raise_value_error_naming_seeds(small, seeds):
    with pytest.raises(ValueError, match="seeds"):
        train_seeds(MLP, small, CONFIG, seeds=seeds)


def test_mean_range_reads_as_mean_and_range_over_seeds():
    from helpers.train import mean_range

    assert mean_range([0.97, 0.95, 0.99]) == "97.0% (seeds: 95.0% to 99.0%)"
    assert mean_range([1.0, 3.0], "{:.2g}") == "2 (seeds: 1 to 3)"
