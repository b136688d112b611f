"""Checkers of notebook 07: each accepts a correct answer and rejects wrong ones with a helpful message."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers.exercises import cnn as ex
from helpers.exercises._check import NOT_ANSWERED
from helpers.models import ModelConfig
from helpers.train import TrainConfig


def verdict(capsys, ok, expected_ok):
    out = capsys.readouterr().out
    assert ok is expected_ok
    assert out.startswith("Correct." if expected_ok else "Not yet.")
    return out


def unanswered(capsys, ok):
    """The checker said only that the exercise is not answered yet (no "Not yet." verdict)."""
    return ok is False and capsys.readouterr().out.strip() == NOT_ANSWERED


def cross_entropy(logits, labels):
    log_p = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(log_p, labels[:, None], axis=1).mean()


def test_loss_accepts_correct_versions(capsys):
    verdict(capsys, ex.check_loss(cross_entropy), True)
    verdict(capsys, ex.check_loss(lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y).mean()), True)


def test_loss_rejects_binary_cross_entropy(capsys):
    def binary(logits, labels):
        onehot = jax.nn.one_hot(labels, 10)
        return optax.sigmoid_binary_cross_entropy(logits, onehot).mean()

    assert "binary cross-entropy" in verdict(capsys, ex.check_loss(binary), False)


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y).sum(), "sum over the batch"),
        (lambda z, y: -z[np.arange(len(y)), y].mean(), "raw logit"),
        (lambda z, y: ((z - jax.nn.one_hot(y, 10)) ** 2).mean(), "squared error"),
        (lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y), "Return one number"),
        (lambda z, y: optax.softmax_cross_entropy(z, y).mean(), "not one-hot"),
        (lambda z, y: None, "returns None"),
        (lambda z, y: jnp.float32(1.0), "Not the softmax cross-entropy"),
    ],
)
def test_loss_rejects_with_a_hint(capsys, wrong, hint):
    assert hint in verdict(capsys, ex.check_loss(wrong), False)


def test_loss_unanswered(capsys):
    assert unanswered(capsys, ex.check_loss(...))
    assert "Write a function" in verdict(capsys, ex.check_loss(3), False)


GOOD_MODEL = ModelConfig(kind="cnn", depth=3, width=32, batchnorm=True)
GOOD_CONFIG = TrainConfig(optimizer="momentum", lr=0.1, clip_norm=1.0, weight_decay=5e-4, warmup_steps=50, steps=150)


def test_recipe_accepts_the_stabilized_recipe(capsys):
    verdict(capsys, ex.check_recipe(GOOD_MODEL, GOOD_CONFIG), True)
    verdict(capsys, ex.check_recipe(GOOD_MODEL, GOOD_CONFIG.replace(weight_decay=0.0, l2=1e-4)), True)


@pytest.mark.parametrize(
    ("model", "config", "hint"),
    [
        (GOOD_MODEL.replace(batchnorm=False), GOOD_CONFIG, "BatchNorm is missing"),
        (GOOD_MODEL.replace(init_scale=10.0), GOOD_CONFIG, "He initialisation"),
        (GOOD_MODEL.replace(init="xavier"), GOOD_CONFIG, "He initialisation"),
        (GOOD_MODEL.replace(kind="mlp"), GOOD_CONFIG, 'kind="cnn"'),
        (GOOD_MODEL, GOOD_CONFIG.replace(clip_norm=None), "global norm"),
        (GOOD_MODEL, GOOD_CONFIG.replace(clip_mode="value"), "global norm"),
        (GOOD_MODEL, GOOD_CONFIG.replace(clip_norm=1000.0), "far from the gradient norms"),
        (GOOD_MODEL, GOOD_CONFIG.replace(weight_decay=0.0), "no weight decay"),
        (GOOD_MODEL, GOOD_CONFIG.replace(weight_decay=0.5), "so strong"),
        (GOOD_MODEL, GOOD_CONFIG.replace(warmup_steps=0), "no learning-rate warmup"),
        (GOOD_MODEL, GOOD_CONFIG.replace(warmup_steps=500), "never ends"),
    ],
)
def test_recipe_rejects_with_a_hint(capsys, model, config, hint):
    assert hint in verdict(capsys, ex.check_recipe(model, config), False)


def test_recipe_lists_every_missing_fix(capsys):
    unstable = GOOD_CONFIG.replace(clip_norm=None, weight_decay=0.0, warmup_steps=0)
    out = verdict(capsys, ex.check_recipe(GOOD_MODEL.replace(batchnorm=False), unstable), False)
    for hint in ("BatchNorm", "global norm", "weight decay", "warmup"):
        assert hint in out


def test_recipe_unanswered_and_wrong_types(capsys):
    assert unanswered(capsys, ex.check_recipe(..., GOOD_CONFIG))
    assert "ModelConfig" in verdict(capsys, ex.check_recipe("cnn", GOOD_CONFIG), False)


def test_gradient_factor(capsys):
    verdict(capsys, ex.check_gradient_factor(1000), True)
    verdict(capsys, ex.check_gradient_factor(10**3, init_scale=10.0, weight_layers=4), True)
    verdict(capsys, ex.check_gradient_factor(8, init_scale=2.0, weight_layers=4), True)
    assert "factor of the logits" in verdict(capsys, ex.check_gradient_factor(10_000), False)
    assert "factors multiply" in verdict(capsys, ex.check_gradient_factor(10), False)
    assert "Count the layers" in verdict(capsys, ex.check_gradient_factor(100), False)
    assert "positively homogeneous" in verdict(capsys, ex.check_gradient_factor(42), False)
    assert unanswered(capsys, ex.check_gradient_factor(...))
