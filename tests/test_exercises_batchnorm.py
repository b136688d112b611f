"""Checkers of notebook 06: each accepts a correct answer and rejects wrong ones with a helpful message."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from helpers.exercises import batchnorm as ex
from helpers.exercises._check import NOT_ANSWERED
from helpers.models import ModelConfig
from helpers.train import TrainConfig, train


def verdict(capsys, ok, expected_ok):
    out = capsys.readouterr().out
    assert ok is expected_ok
    assert out.startswith("Correct." if expected_ok else "Not yet.")
    return out


def unanswered(capsys, ok):
    """The checker said only that the exercise is not answered yet (no "Not yet." verdict)."""
    return ok is False and capsys.readouterr().out.strip() == NOT_ANSWERED


def batchnorm(x, gamma, beta, eps=1e-5):
    return gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + beta


@pytest.mark.parametrize("answer", [..., None])
def test_batchnorm_unanswered(capsys, answer):
    assert unanswered(capsys, ex.check_batchnorm(answer))


def test_batchnorm_accepts_numpy_and_jax(capsys):
    verdict(capsys, ex.check_batchnorm(batchnorm), True)
    jax_version = lambda x, g, b, eps=1e-5: g * (x - x.mean(0)) / jnp.sqrt(x.var(0) + eps) + b  # noqa: E731
    verdict(capsys, ex.check_batchnorm(jax_version), True)


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda x, g, b, eps=1e-5: None, "returns None"),
        (
            lambda x, g, b, eps=1e-5: g * (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + eps) + b,
            "which axis is the batch",
        ),
        (lambda x, g, b, eps=1e-5: g * (x - x.mean(0)) / np.sqrt(x.var(0, ddof=1) + eps) + b, "not B - 1"),
        (lambda x, g, b, eps=1e-5: g * (x - x.mean(0)) / (x.std(0) + eps) + b, "inside the square root"),
        (lambda x, g, b, eps=1e-5: (x - x.mean(0)) / np.sqrt(x.var(0) + eps), "gamma (scale) and beta (shift)"),
        (lambda x, g, b, eps=1e-5: b * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + g, "which is which"),
        (lambda x, g, b, eps=1e-5: x.mean(0), "keeps the shape"),
        (lambda x, g, b, eps=1e-5: 1 / 0, "raised ZeroDivisionError"),
        (lambda x, g, b, eps=1e-5: x * 2.0, "does not match BatchNorm"),
    ],
)
def test_batchnorm_rejects_with_a_hint(capsys, wrong, hint):
    out = verdict(capsys, ex.check_batchnorm(wrong), False)
    assert hint in out


def test_scale_factor(capsys):
    verdict(capsys, ex.check_scale_factor(0.1), True)
    verdict(capsys, ex.check_scale_factor(1 / 10), True)
    assert "chain rule" in verdict(capsys, ex.check_scale_factor(1), False)
    assert "Bigger weights" in verdict(capsys, ex.check_scale_factor(10), False)
    assert "One factor of c too many" in verdict(capsys, ex.check_scale_factor(0.01), False)
    assert "scale invariance" in verdict(capsys, ex.check_scale_factor(3), False)
    assert unanswered(capsys, ex.check_scale_factor(...))


def test_growth(capsys):
    rate = math.sqrt(math.pi / (math.pi - 1))
    verdict(capsys, ex.check_growth(rate**20), True)
    verdict(capsys, ex.check_growth(1.211**20), True)
    assert "squared norm" in verdict(capsys, ex.check_growth((math.pi / (math.pi - 1)) ** 20), False)
    assert "forward activations" in verdict(capsys, ex.check_growth(1.0), False)
    assert "compounds" in verdict(capsys, ex.check_growth(rate * 20), False)
    assert "Count the factors" in verdict(capsys, ex.check_growth(rate**19), False)
    assert "Multiply the per-layer factor" in verdict(capsys, ex.check_growth(1000), False)
    assert unanswered(capsys, ex.check_growth(None))


@pytest.fixture(scope="module")
def trained(small):
    model = ModelConfig(depth=3, width=32, batchnorm=True).build(small.image_shape)
    train(model, small, TrainConfig(optimizer="momentum", lr=0.02, steps=100))
    return model


def test_predict_accepts_eval_mode(capsys, trained, small):
    def predict(model, x):
        model.eval()
        return np.asarray(model(x)).argmax(-1)

    verdict(capsys, ex.check_predict(predict, trained, small), True)


def test_predict_rejects_training_mode(capsys, trained, small):
    def predict(model, x):
        model.train()
        return np.asarray(model(x)).argmax(-1)

    assert "running averages" in verdict(capsys, ex.check_predict(predict, trained, small), False)


def test_predict_rejects_batch_statistics_without_updating(capsys, trained, small):
    from flax import nnx

    def predict(model, x):  # batch statistics, but on a copy: the running averages stay untouched
        copy = nnx.clone(model)
        copy.train()
        return np.asarray(copy(x)).argmax(-1)

    out = verdict(capsys, ex.check_predict(predict, trained, small), False)
    assert "batch of one" in out or "batch statistics" in out


def test_predict_rejects_wrong_output_and_errors(capsys, trained, small):
    def logits_not_labels(model, x):
        model.eval()
        return np.asarray(model(x))

    assert "one integer label" in verdict(capsys, ex.check_predict(logits_not_labels, trained, small), False)
    assert "raised" in verdict(capsys, ex.check_predict(lambda m, x: m.nope(x), trained, small), False)
    assert unanswered(capsys, ex.check_predict(..., trained, small))
