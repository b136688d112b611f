"""Each checker of notebook 11 accepts a correct answer and rejects wrong ones with a helpful message."""

import math

import jax
import optax
import pytest

from helpers.exercises import data_parallel


def clip(grads, max_norm):
    return optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())[0]


def right(grads, max_norm):
    return clip(jax.lax.pmean(grads, "batch"), max_norm)


def clip_then_average(grads, max_norm):
    return jax.lax.pmean(clip(grads, max_norm), "batch")


def each_its_own(grads, max_norm):
    return clip(grads, max_norm)


def summed(grads, max_norm):
    return jax.tree.map(lambda g: jax.lax.psum(g, "batch"), grads)


def wrong_axis(grads, max_norm):
    return clip(jax.lax.pmean(grads, "devices"), max_norm)


def test_clip_across_devices_accepts_average_then_clip(capsys):
    assert data_parallel.check_clip_across_devices(right)
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (clip_then_average, "Swap the order"),
        (each_its_own, "different results"),
        (summed, "Use `pmean`"),
        (wrong_axis, "raised"),
        (lambda grads, max_norm: [1.0], "shaped like `grads`"),
    ],
)
def test_clip_across_devices_rejects_wrong_answers_with_a_hint(fn, hint, capsys):
    assert not data_parallel.check_clip_across_devices(fn)
    assert hint in capsys.readouterr().out


def test_unanswered_exercises_say_so(capsys):
    assert not data_parallel.check_clip_across_devices(...)
    assert not data_parallel.check_orthogonal_ratio(...)
    assert capsys.readouterr().out.count("Not answered yet") == 2


def test_orthogonal_ratio(capsys):
    assert data_parallel.check_orthogonal_ratio(1 / math.sqrt(8))
    for wrong, hint in [(1.0, "equal"), (1 / 8, "Pythagoras"), (0.5, "c * u_d"), ("a lot", "one number")]:
        assert not data_parallel.check_orthogonal_ratio(wrong)
        assert hint in capsys.readouterr().out
