"""The checkers of notebook 02 accept a right answer and reject wrong ones with a hint, never the answer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers.exercises import initialization as ex
from helpers.exercises._check import NOT_ANSWERED


def verdict(capsys, check, answer):
    ok = check(answer)
    return ok, capsys.readouterr().out


@pytest.mark.parametrize("check", [ex.check_leaky_relu_gain, ex.check_lecun_relu_scale, ex.check_glorot_uniform])
def test_unanswered_placeholder_is_not_an_error(capsys, check):
    ok, out = verdict(capsys, check, ...)
    assert not ok and out.strip() == NOT_ANSWERED


def test_leaky_relu_gain_accepts_2_over_1_plus_a_squared(capsys):
    ok, out = verdict(capsys, ex.check_leaky_relu_gain, 2 / 1.01)
    assert ok and out.startswith("Correct.")


@pytest.mark.parametrize(
    "answer, words",
    [
        (2, "ReLU's value"),
        (2 / 1.1, "square of the slope"),
        (1, "identity"),
        (1.01 / 2, "reciprocal"),
        (3.5, "one half from z > 0"),
        ("two", "one number"),
    ],
)
def test_leaky_relu_gain_rejects_with_a_hint(capsys, answer, words):
    ok, out = verdict(capsys, ex.check_leaky_relu_gain, answer)
    assert not ok and out.startswith("Not yet.") and words in out and "1.98" not in out


def test_lecun_relu_scale_accepts_sqrt2(capsys):
    ok, out = verdict(capsys, ex.check_lecun_relu_scale, 2**0.5)
    assert ok and out.startswith("Correct.")


@pytest.mark.parametrize(
    "answer, words", [(2, "standard deviation"), (0.7071, "larger"), (1.0, "larger"), (1.7, "solve")]
)
def test_lecun_relu_scale_rejects_with_a_hint(capsys, answer, words):
    ok, out = verdict(capsys, ex.check_lecun_relu_scale, answer)
    assert not ok and words in out and "1.41" not in out


def _uniform(bound):
    return lambda key, shape: jax.random.uniform(key, shape, minval=-bound(*shape), maxval=bound(*shape))


def test_glorot_uniform_accepts_a_correct_function_and_jax_own(capsys):
    ok, out = verdict(capsys, ex.check_glorot_uniform, _uniform(lambda i, o: (6 / (i + o)) ** 0.5))
    assert ok and out.startswith("Correct.")
    assert verdict(capsys, ex.check_glorot_uniform, jax.nn.initializers.glorot_uniform())[0]


@pytest.mark.parametrize(
    "fn, words",
    [
        (jax.nn.initializers.glorot_normal(), "normally distributed"),
        (_uniform(lambda i, o: (2 / (i + o)) ** 0.5), "too small by sqrt(3)"),
        (_uniform(lambda i, o: (3 / i) ** 0.5), "fan_in only"),
        (_uniform(lambda i, o: (6 / o) ** 0.5), "fan_out only"),
        (_uniform(lambda i, o: (12 / (i + o)) ** 0.5), "standard deviation is"),
        (lambda key, shape: jax.random.uniform(key, shape, maxval=(24 / sum(shape)) ** 0.5), "not centred"),
        (lambda key, shape: jax.random.uniform(key, shape[::-1]), "returned an array of shape"),
        (lambda key, shape: jnp.full(shape, 0.01), "Different keys"),
        (lambda key, shape: _uniform(lambda i, o: 0.1)(jax.random.key(7), shape), "Different keys"),
        (lambda key, shape: np.random.default_rng().uniform(-0.1, 0.1, shape), "same key"),
        (lambda key, shape: 1 / 0, "ZeroDivisionError"),
        ("glorot", "Pass the function itself"),
    ],
)
def test_glorot_uniform_rejects_with_a_hint(capsys, fn, words):
    ok, out = verdict(capsys, ex.check_glorot_uniform, fn)
    assert not ok and out.startswith("Not yet.") and words in out, out
