"""Each checker of notebook 04 accepts a correct answer and rejects wrong ones with a helpful message."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers.exercises import clipping


def right_clip(grads, max_norm):
    norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
    scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
    return jax.tree.map(lambda g: g * scale, grads)


def optax_clip(grads, max_norm):
    return optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())[0]


def per_leaf_clip(grads, max_norm):
    return jax.tree.map(lambda g: g * jnp.minimum(1.0, max_norm / jnp.maximum(jnp.linalg.norm(g), 1e-12)), grads)


def value_clip(grads, max_norm):
    return jax.tree.map(lambda g: jnp.clip(g, -max_norm, max_norm), grads)


def always_rescale(grads, max_norm):
    norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
    return jax.tree.map(lambda g: g * max_norm / jnp.maximum(norm, 1e-12), grads)


def nan_on_zero(grads, max_norm):
    norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
    return jax.tree.map(lambda g: g * jnp.minimum(1.0, max_norm / norm) * (norm / norm), grads)


def wrong_scale(grads, max_norm):
    return jax.tree.map(lambda g: g * 0.5, right_clip(grads, max_norm))


def unanswered(grads, max_norm): ...


def crashes(grads, max_norm):
    raise RuntimeError("oops")


def flattened(grads, max_norm):
    return jnp.concatenate([g.ravel() for g in jax.tree.leaves(right_clip(grads, max_norm))])


@pytest.mark.parametrize("fn", [right_clip, optax_clip])
def test_clip_accepts_correct(fn, capsys):
    assert clipping.check_clip_by_global_norm(fn)
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.parametrize(
    "fn, words",
    [
        (per_leaf_clip, "global"),
        (value_clip, "by value"),
        (always_rescale, "unchanged"),
        (nan_on_zero, "NaN"),
        (wrong_scale, "norm 1"),
        (unanswered, "Not answered yet"),
        (crashes, "RuntimeError"),
        (flattened, "same structure"),
    ],
)
def test_clip_rejects_wrong(fn, words, capsys):
    assert not clipping.check_clip_by_global_norm(fn)
    out = capsys.readouterr().out
    assert words in out
    assert "min(1" not in out  # the hint never states the formula


def test_update_length(capsys):
    args = dict(lr=0.05, clip_norm=1.0, grad_norm=3800.0)
    assert clipping.check_update_length(0.05, **args)
    assert capsys.readouterr().out.startswith("Correct.")
    for wrong, words in [(190.0, "without"), (1.0, "learning rate"), (1 / 3800, "scale factor"), (7.0, "Write down")]:
        assert not clipping.check_update_length(wrong, **args)
        out = capsys.readouterr().out
        assert out.startswith("Not yet.") and words in out and "0.05" not in out
    assert not clipping.check_update_length(..., **args)
    assert "Not answered yet" in capsys.readouterr().out


def test_update_length_below_threshold(capsys):
    assert clipping.check_update_length(0.02, lr=0.1, clip_norm=1.0, grad_norm=0.2)
    assert capsys.readouterr().out.startswith("Correct.")


def test_half_clipped_threshold(capsys):
    norms = np.concatenate([np.linspace(1.0, 3.0, 99), [500.0]])
    median = float(np.median(norms))
    assert clipping.check_half_clipped_threshold(median, norms)
    assert capsys.readouterr().out.startswith("Correct.")
    cases = [(float(norms.mean()), "mean"), (float(np.percentile(norms, 90)), "90th"), (1.2, "of the recorded")]
    for wrong, words in cases:
        assert not clipping.check_half_clipped_threshold(wrong, norms)
        out = capsys.readouterr().out
        assert out.startswith("Not yet.") and words in out and f"{median:.3g}" not in out
    assert not clipping.check_half_clipped_threshold("abc", norms)
    assert "one number" in capsys.readouterr().out
    assert not clipping.check_half_clipped_threshold(None, norms)
    assert "Not answered yet" in capsys.readouterr().out
