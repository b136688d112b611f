"""Checkers for notebook 07 (the stabilized CNN)."""

from __future__ import annotations

import numpy as np

from helpers.exercises._check import close, correct, not_answered, not_yet, unanswered


def _logits_and_labels(seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = (3.0 * rng.normal(size=(16, 10))).astype(np.float32)
    labels = rng.integers(0, 10, size=16).astype(np.int32)
    return logits, labels


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def check_loss(fn) -> bool:
    """`fn(logits, labels)`: mean softmax cross-entropy for (batch, classes) logits and integer labels."""
    if unanswered(fn):
        return not_answered()
    if not callable(fn):
        return not_yet("Write a function `def loss_fn(logits, labels): ...` and pass it.")
    logits, labels = _logits_and_labels()
    try:
        value = fn(logits, labels)
    except Exception as error:  # noqa: BLE001 - the student's code may raise anything
        return not_yet(
            f"Your function raised {type(error).__name__}: {error}. The labels are integers 0..9 (one per "
            "example), not one-hot vectors: pick each example's log-probability with them."
        )
    if value is None:
        return not_yet("Your function returns None: end it with `return ...`.")
    value = np.asarray(value, np.float64)
    if value.shape != ():
        return not_yet(f"Return one number (the mean over the batch), not an array of shape {value.shape}.")
    value = float(value)
    n = len(labels)
    per_example = -_log_softmax(logits.astype(np.float64))[np.arange(n), labels]
    target = per_example.mean()
    if close(value, target, 1e-3):
        return correct("Softmax over the 10 logits, minus the log-probability of the true class, averaged.")
    onehot = np.eye(10)[labels]
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    binary = -(onehot * np.log(p + 1e-12) + (1 - onehot) * np.log(1 - p + 1e-12)).mean()
    binary_sum = -(onehot * np.log(p + 1e-12) + (1 - onehot) * np.log(1 - p + 1e-12)).sum(-1).mean()
    if close(value, binary, 1e-2) or close(value, binary_sum, 1e-2):
        hint = (
            "That is binary cross-entropy (a sigmoid per output), the broken Keras example's choice. The 10 "
            "classes are mutually exclusive: use one softmax over all logits."
        )
    elif close(value, per_example.sum(), 1e-3):
        hint = "That is the sum over the batch: take the mean, so the gradient's size does not grow with the batch."
    elif close(value, -(logits[np.arange(n), labels]).mean(), 1e-3):
        hint = "You used the raw logit of the true class: turn the logits into log-probabilities first (log-softmax)."
    elif close(value, ((logits - onehot) ** 2).mean(), 1e-3) or close(
        value, ((logits - onehot) ** 2).sum(-1).mean(), 1e-3
    ):
        hint = "That is a squared error on one-hot targets. Classification uses the softmax cross-entropy."
    else:
        hint = (
            "Not the softmax cross-entropy yet. Try your function on one example with all-zero logits: every "
            "class is equally likely, so what must the loss be? Then raise the true class's logit: the loss "
            "must fall."
        )
    return not_yet(hint)


def check_recipe(model, config) -> bool:
    """A stabilized recipe as a (ModelConfig, TrainConfig) pair: He init, BatchNorm, clipping, decay, warmup."""
    if unanswered(model) or unanswered(config):
        return not_answered()
    from helpers.models import ModelConfig
    from helpers.train import TrainConfig

    if not isinstance(model, ModelConfig) or not isinstance(config, TrainConfig):
        return not_yet("Give `model` as a ModelConfig(...) and `config` as a TrainConfig(...).")
    problems = []
    if model.kind != "cnn":
        problems.append('The exercise is about the CNN: use ModelConfig(kind="cnn", ...).')
    if model.init != "he" or not 0.7 <= model.init_scale <= 1.5:
        problems.append("For ReLU layers, He initialisation at its own scale: init='he' and init_scale about 1.")
    if not model.batchnorm:
        problems.append("BatchNorm is missing.")
    if config.clip_norm is None or config.clip_mode != "global_norm":
        problems.append("Clip the gradient by its global norm (clip_norm with clip_mode='global_norm').")
    elif not 0.1 <= config.clip_norm <= 10:
        problems.append(
            f"clip_norm={config.clip_norm:g} is far from the gradient norms this network has (about 1): "
            "a threshold should clip the spikes, not every step or none."
        )
    if config.weight_decay <= 0 and config.l2 <= 0:
        problems.append("There is no weight decay (weight_decay) or L2 penalty (l2).")
    elif max(config.weight_decay, config.l2) > 0.01:
        problems.append("The decay is so strong that it would fight the data: keep weight_decay or l2 below 0.01.")
    if config.warmup_steps <= 0:
        problems.append("There is no learning-rate warmup (warmup_steps).")
    elif config.warmup_steps >= config.steps:
        problems.append("The warmup never ends: warmup_steps should be a fraction of steps.")
    if not problems:
        return correct("He init, BatchNorm, global-norm clipping, decay and warmup: all five fixes.")
    return not_yet(" ".join(problems))


def check_gradient_factor(answer, init_scale: float = 10.0, weight_layers: int = 4) -> bool:
    """Factor by which the kernels' gradient grows at init when every kernel of a bias-free ReLU net is scaled."""
    if unanswered(answer):
        return not_answered()
    s, n = init_scale, weight_layers
    if close(answer, s ** (n - 1), 0.05):
        return correct(
            f"{s:g}^{n - 1}: every kernel's gradient picks up one factor {s:g} from each of the other "
            f"{n - 1} layers (up to the softmax's bounded factor)."
        )
    if close(answer, s**n, 0.05):
        hint = "That is the factor of the logits. A kernel's gradient does not contain that kernel's own factor."
    elif close(answer, s, 0.05) or close(answer, 1.0, 0.05):
        hint = "Every other layer on the path contributes a factor: the factors multiply."
    elif close(answer, s ** (n - 2), 0.05) or close(answer, s ** (2 * n - 2), 0.05):
        hint = f"Count the layers: {n} weight layers; a kernel's gradient is scaled by all of them but itself."
    else:
        hint = (
            "With zero biases a ReLU net is positively homogeneous: scaling every kernel by s scales the output "
            "by s per layer. Differentiate with respect to one kernel."
        )
    return not_yet(hint)
