"""Notebook 03's checkers accept a correct answer and reject wrong ones with a hint that does not give it away."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers.exercises import learning_rate as ex


def _said(capsys) -> str:
    return capsys.readouterr().out


# ----- exercise 1: the largest stable learning rate of a quadratic ------------------------------------------


def test_max_stable_lr_accepts_two_over_lambda_max(capsys):
    lam_max = np.linalg.eigvalsh(ex.A_EXERCISE)[-1]
    assert ex.check_max_stable_lr(2 / lam_max) is True
    assert _said(capsys).startswith("Correct.")


@pytest.mark.parametrize(
    ("answer", "phrase"),
    [
        (1 / 6, "single step"),  # 1 / lambda_max
        (2.0, "flattest direction"),  # 2 / lambda_min
        (2 / 5, "diagonal entry"),  # 2 / A[0, 0]
        (2 / 7, "trace"),
        (-0.3, "positive"),
        (0.05, "eigenbasis"),
        ("a lot", "one number"),
    ],
)
def test_max_stable_lr_rejects_with_a_hint(capsys, answer, phrase):
    assert ex.check_max_stable_lr(answer) is False
    out = _said(capsys)
    assert out.startswith("Not yet.") and phrase in out
    assert "0.333" not in out and "1/3" not in out


def test_max_stable_lr_unanswered(capsys):
    assert ex.check_max_stable_lr(...) is False
    assert "Not answered yet" in _said(capsys)


# ----- exercise 2: Hessian-vector product ---------------------------------------------------------------------


def test_hvp_accepts_forward_over_reverse(capsys):
    def hvp(loss, params, v):
        return jax.jvp(jax.grad(loss), (params,), (v,))[1]

    assert ex.check_hvp(hvp) is True
    assert _said(capsys).startswith("Correct.")


def test_hvp_accepts_reverse_over_reverse(capsys):
    def hvp(loss, params, v):
        return jax.grad(lambda p: optax.tree.vdot(jax.grad(loss)(p), v))(params)

    assert ex.check_hvp(hvp) is True


@pytest.mark.parametrize(
    ("hvp", "phrase"),
    [
        (lambda loss, p, v: jax.grad(loss)(p), "That is the gradient"),
        (lambda loss, p, v: jax.jvp(jax.grad(loss), (p,), (v,)), "a pair"),
        (lambda loss, p, v: jax.tree.map(lambda t: 2 * t, jax.jvp(jax.grad(loss), (p,), (v,))[1]), "factor"),
        (lambda loss, p, v: v, "jax.jvp"),
        (lambda loss, p, v: jnp.zeros(3), "shaped like `params`"),
        (lambda loss, p, v: 1 / 0, "raised ZeroDivisionError"),
    ],
)
def test_hvp_rejects_with_a_hint(capsys, hvp, phrase):
    assert ex.check_hvp(hvp) is False
    out = _said(capsys)
    assert out.startswith("Not yet.") and phrase in out


def test_hvp_unanswered_body(capsys):
    def hvp(loss, params, v): ...

    assert ex.check_hvp(hvp) is False
    assert "Not answered yet" in _said(capsys)
    assert ex.check_hvp(...) is False
    assert "Not answered yet" in _said(capsys)
    assert ex.check_hvp(3.0) is False
    assert "Pass your function" in _said(capsys)


# ----- exercise 3: a warmup schedule with Optax ----------------------------------------------------------------


def test_warmup_schedule_accepts_linear_schedule(capsys):
    assert ex.check_warmup_schedule(optax.linear_schedule(0.0, 0.1, 100)) is True
    assert _said(capsys).startswith("Correct.")
    assert ex.check_warmup_schedule(lambda t: 0.1 * jnp.minimum(1.0, t / 100)) is True


@pytest.mark.parametrize(
    ("schedule", "phrase"),
    [
        (optax.linear_schedule(0.001, 0.1, 99), "At step 0"),  # helpers' (t + 1) / warmup convention
        (optax.warmup_cosine_decay_schedule(0.0, 0.1, 100, 1000), "stay at the peak"),
        (optax.linear_schedule(0.0, 0.2, 100), "above the peak"),
        (optax.linear_schedule(0.0, 0.1, 50), "step 50"),
        (optax.linear_schedule(0.0, 0.01, 100), "stay at the peak"),
        (0.1, "function step -> learning rate"),
        (lambda t: 1 / 0, "raised ZeroDivisionError"),
    ],
)
def test_warmup_schedule_rejects_with_a_hint(capsys, schedule, phrase):
    assert ex.check_warmup_schedule(schedule) is False
    out = _said(capsys)
    assert out.startswith("Not yet.") and phrase in out


def test_warmup_schedule_unanswered(capsys):
    assert ex.check_warmup_schedule(...) is False
    assert "Not answered yet" in _said(capsys)


# ----- exercise 4: Adam's step after a gradient spike -------------------------------------------------------


def _optax_second_step() -> float:
    adam = optax.adam(1e-3)
    state = adam.init(jnp.zeros(1))
    _, state = adam.update(jnp.array([1e4]), state)
    update, _ = adam.update(jnp.array([1.0]), state)
    return float(update[0])


def test_adam_after_spike_accepts_what_optax_does(capsys):
    step = _optax_second_step()
    assert step < 0  # the checker takes |answer|
    assert ex.check_adam_after_spike(step) is True
    assert _said(capsys).startswith("Correct.")


@pytest.mark.parametrize(
    ("answer", "phrase"),
    [
        (1e-3, "remember the spike"),  # lr * g2, or a fresh start
        (10.0, "SGD's step at the spike"),
        (2.848e-3, "bias corrections"),  # no bias correction
        (1.499e-2, "both moments"),  # m corrected, v not
        (1.273e-4, "both moments"),  # v corrected, m not
        (0.5, "from zero"),
        ("small", "one number"),
    ],
)
def test_adam_after_spike_rejects_with_a_hint(capsys, answer, phrase):
    assert ex.check_adam_after_spike(answer) is False
    out = _said(capsys)
    assert out.startswith("Not yet.") and phrase in out
    assert f"{abs(_optax_second_step()):.2g}" not in out and "0.00067" not in out


def test_adam_after_spike_unanswered(capsys):
    assert ex.check_adam_after_spike(None) is False
    assert "Not answered yet" in _said(capsys)
