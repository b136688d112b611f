"""The checkers of notebook 01 accept a right answer and reject wrong ones with a hint, never the answer."""

import jax
import jax.numpy as jnp
import optax
import pytest

from helpers.exercises import exploding as ex
from helpers.exercises._check import NOT_ANSWERED


def verdict(capsys, check, answer):
    ok = check(answer)
    return ok, capsys.readouterr().out


@pytest.mark.parametrize("check", [ex.check_scale_for_growth, ex.check_linear_factor, ex.check_backprop_tanh])
def test_unanswered_placeholder_is_not_an_error(capsys, check):
    ok, out = verdict(capsys, check, ...)
    assert not ok and out.strip() == NOT_ANSWERED


def test_scale_for_growth_accepts_the_exact_power(capsys):
    ok, out = verdict(capsys, ex.check_scale_for_growth, 1000 ** (1 / 20))
    assert ok and out.startswith("Correct.")


@pytest.mark.parametrize(
    "answer, words",
    [
        (0.9, "above 1"),
        (50, "compounds"),
        (1 + 6.9078 / 20, "approximation"),
        (1000 ** (1 / 21), "Off by one"),
        (1.2, "not 1000"),
        ("big", "one number"),
    ],
)
def test_scale_for_growth_rejects_with_a_hint(capsys, answer, words):
    ok, out = verdict(capsys, ex.check_scale_for_growth, answer)
    assert not ok and out.startswith("Not yet.") and words in out
    assert "1.41" not in out  # never the answer


def test_linear_factor_accepts_sqrt2(capsys):
    ok, out = verdict(capsys, ex.check_linear_factor, 2**0.5)
    assert ok and out.startswith("Correct.")


@pytest.mark.parametrize(
    "answer, words", [(1.0, "without the activation"), (2.0, "second moment"), (0.5, "grows"), (3, "square root")]
)
def test_linear_factor_rejects_with_a_hint(capsys, answer, words):
    ok, out = verdict(capsys, ex.check_linear_factor, answer)
    assert not ok and words in out and "1.41" not in out


def _forward(Ws, x):
    zs, hs, h = [], [], x
    for W in Ws[:-1]:
        z = h @ W
        h = jnp.tanh(z)
        zs.append(z)
        hs.append(h)
    return zs, hs, h @ Ws[-1]


def _student(derivative, reverse=False, drop_head=False):
    """A hand-written tanh backprop; `derivative(z, h)` is where students go wrong."""

    def backprop_tanh(Ws, x, y):
        zs, hs, logits = _forward(Ws, x)
        delta = (jax.nn.softmax(logits) - jax.nn.one_hot(y, logits.shape[1])) / len(y)
        grads = [hs[-1].T @ delta]
        for layer in reversed(range(len(zs))):
            delta = (delta @ Ws[layer + 1].T) * derivative(zs[layer], hs[layer])
            grads.insert(0, (x if layer == 0 else hs[layer - 1]).T @ delta)
        grads = grads[:-1] if drop_head else grads
        return grads[::-1] if reverse else grads

    return backprop_tanh


def test_backprop_tanh_accepts_a_correct_function(capsys):
    ok, out = verdict(capsys, ex.check_backprop_tanh, _student(lambda z, h: 1 - h**2))
    assert ok and out.startswith("Correct.")


def test_backprop_tanh_accepts_jax_grad_too(capsys):
    def via_grad(Ws, x, y):
        return jax.grad(lambda W: optax.softmax_cross_entropy_with_integer_labels(_forward(W, x)[2], y).mean())(Ws)

    assert verdict(capsys, ex.check_backprop_tanh, via_grad)[0]


@pytest.mark.parametrize(
    "fn, words",
    [
        (_student(lambda z, h: (z > 0).astype(z.dtype)), "ReLU's derivative"),
        (_student(lambda z, h: jnp.ones_like(z)), "left out the activation's derivative"),
        (_student(lambda z, h: 1 - z**2), "squared the pre-activation"),
        (_student(lambda z, h: 1 - h), "head's gradient is right"),
        (_student(lambda z, h: 1 - h**2, reverse=True), "output -> input"),
        (_student(lambda z, h: 1 - h**2, drop_head=True), "one gradient per kernel"),
        (lambda Ws, x, y: 1 / 0, "ZeroDivisionError"),
        (lambda Ws, x, y: 3.0, "Return a list"),
        ("backprop_tanh", "Pass the function itself"),
    ],
)
def test_backprop_tanh_rejects_with_a_hint(capsys, fn, words):
    ok, out = verdict(capsys, ex.check_backprop_tanh, fn)
    assert not ok and out.startswith("Not yet.") and words in out, out
