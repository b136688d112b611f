"""Checkers for notebook 06 (batch normalization)."""

from __future__ import annotations

import math

import numpy as np

from helpers.exercises._check import close, correct, not_answered, not_yet, unanswered

#: Per-layer growth of the backpropagated gradient's RMS in a wide plain BN-ReLU net, large batch.
BN_RELU_RATE = math.sqrt(math.pi / (math.pi - 1))


def _test_batch(seed: int = 0):
    """A batch whose units have very different means and scales, one of them almost constant."""
    rng = np.random.default_rng(seed)
    scales = np.array([1.0, 5.0, 0.2, 1e-3, 3.0], np.float32)
    x = (rng.normal(size=(32, 5)) * scales + np.array([0.0, 3.0, -2.0, 1.0, 10.0])).astype(np.float32)
    gamma = rng.uniform(0.5, 2.0, size=5).astype(np.float32)
    beta = rng.normal(size=5).astype(np.float32)
    return x, gamma, beta


def _reference(x, gamma, beta, eps=1e-5, axis=0, ddof=0, eps_inside=True, affine=True):
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=axis, keepdims=True)
    var = x.var(axis=axis, ddof=ddof, keepdims=True)
    denom = np.sqrt(var + eps) if eps_inside else np.sqrt(var) + eps
    y = (x - mean) / denom
    return gamma * y + beta if affine else y


def check_batchnorm(fn) -> bool:
    """`fn(x, gamma, beta, eps=1e-5)`: BatchNorm's training-mode forward pass on a (batch, units) array."""
    if unanswered(fn):
        return not_answered()
    if not callable(fn):
        return not_yet("Write a function `def my_batchnorm(x, gamma, beta, eps=1e-5): ...` and pass it.")
    x, gamma, beta = _test_batch()
    try:
        y = fn(x, gamma, beta, eps=1e-5)
    except Exception as error:  # noqa: BLE001 - the student's code may raise anything
        return not_yet(f"Your function raised {type(error).__name__}: {error}. Test it on a (32, 5) array.")
    if y is None:
        return not_yet("Your function returns None: end it with `return ...`.")
    y = np.asarray(y, np.float64)
    if y.shape != x.shape:
        return not_yet(f"The output has shape {y.shape}, the input {x.shape}: BatchNorm keeps the shape of its input.")
    if not np.isfinite(y).all():
        return not_yet("The output has NaN or Inf: is there a division by a variance that can be 0?")

    def same(ref):
        return np.allclose(y, ref, rtol=2e-3, atol=2e-3)

    if same(_reference(x, gamma, beta)):
        return correct("Each unit is centred and scaled with its own batch mean and variance, then gamma and beta.")
    diagnoses = [
        (
            _reference(x, gamma, beta, axis=1),
            "You normalised each example across its units. BatchNorm computes "
            "one mean and one variance per unit, across the examples of the batch: which axis is the batch?",
        ),
        (
            _reference(x, gamma, beta, ddof=1),
            "Close: the variance should divide by B (the batch size), not B - 1, "
            "as in Ioffe & Szegedy (2015) and nnx.BatchNorm.",
        ),
        (
            _reference(x, gamma, beta, eps_inside=False),
            "Close: eps belongs inside the square root, "
            "sqrt(var + eps). Look at the unit whose values are almost constant.",
        ),
        (
            _reference(x, gamma, beta, affine=False),
            "The normalisation is right, but gamma (scale) and beta (shift) are not applied.",
        ),
        (_reference(x, beta, gamma), "gamma multiplies and beta is added: check which is which."),
    ]
    for ref, hint in diagnoses:
        if same(ref):
            return not_yet(hint)
    return not_yet(
        "The output does not match BatchNorm. Per unit: subtract the batch mean, divide by "
        "sqrt(batch variance + eps), then multiply by gamma and add beta."
    )


def check_scale_factor(answer) -> bool:
    """The factor by which dL/dW changes when W (followed by BatchNorm) is multiplied by 10."""
    if unanswered(answer):
        return not_answered()
    if close(answer, 0.1, 1e-3):
        return correct(
            "L(cW) = L(W) for every c > 0, so c * dL/dW at cW equals dL/dW at W: the gradient shrinks as 1/c."
        )
    if close(answer, 1.0, 1e-3):
        hint = (
            "The output does not change, but the gradient is taken at a different point. Differentiate "
            "L(c W) = L(W) with respect to W (chain rule)."
        )
    elif close(answer, 10.0, 1e-3):
        hint = "Bigger weights, bigger gradient? Not here: differentiate L(c W) = L(W) with the chain rule."
    elif close(answer, 0.01, 1e-3) or close(answer, 100.0, 1e-3):
        hint = "One factor of c too many: the chain rule gives a single factor of c."
    else:
        hint = "Start from L(c W) = L(W) (scale invariance) and differentiate both sides with respect to W."
    return not_yet(hint)


def check_growth(answer, layers: int = 20) -> bool:
    """Predicted growth of the gradient norm across `layers` layers of a plain BN-ReLU net (large batch)."""
    if unanswered(answer):
        return not_answered()
    target = BN_RELU_RATE**layers
    if close(answer, target, 0.05):
        return correct(
            f"sqrt(pi / (pi - 1))^{layers} = {target:.3g}: every layer multiplies the gradient norm by about 1.21."
        )
    if close(answer, target**2, 0.05):
        hint = "That is the growth of the squared norm (the second moment). The norm grows by its square root."
    elif close(answer, 1.0, 0.05):
        hint = (
            "BatchNorm keeps the forward activations normalised, not the backward gradients: "
            "use the per-layer rate derived above."
        )
    elif close(answer, BN_RELU_RATE * layers, 0.05) or close(answer, 1 + (BN_RELU_RATE - 1) * layers, 0.05):
        hint = "The growth compounds: each layer multiplies the gradient, it does not add to it."
    elif close(answer, BN_RELU_RATE ** (layers - 1), 0.05) or close(answer, BN_RELU_RATE ** (layers + 1), 0.05):
        hint = f"Count the factors: {layers} layers, one factor each."
    else:
        hint = f"Multiply the per-layer factor of the gradient norm (not of its square) {layers} times."
    return not_yet(hint)


def check_predict(predict, model, data) -> bool:
    """`predict(model, x) -> labels` must use the running averages and must not change them."""
    if unanswered(predict):
        return not_answered()
    if not callable(predict):
        return not_yet("Write a function `def predict(model, x): ...` returning one label per row of x.")
    import jax
    from flax import nnx

    from helpers.train import evaluate

    def batch_stats(m):
        return [np.asarray(v) for v in jax.tree.leaves(nnx.state(m, nnx.BatchStat))]

    probe = nnx.clone(model)
    before = batch_stats(probe)
    x, y = np.asarray(data.x_test), np.asarray(data.y_test)
    try:
        one = np.array([np.asarray(predict(probe, x[i : i + 1])).reshape(-1)[0] for i in range(20)])
        by_class = np.concatenate([np.asarray(predict(probe, x[y == c])).reshape(-1) for c in range(3)])
    except Exception as error:  # noqa: BLE001
        return not_yet(f"Your function raised {type(error).__name__}: {error}.")
    after = batch_stats(probe)
    changed = any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    reference = nnx.clone(model)
    reference.eval()
    want_one = np.asarray(reference(x[:20])).argmax(-1)
    want_class = np.concatenate([np.asarray(reference(x[y == c])).argmax(-1) for c in range(3)])
    if changed:
        return not_yet(
            "Your predict changed the model's running averages: a forward pass in training "
            "mode updates them. Which mode should evaluation use?"
        )
    if one.shape != want_one.shape or by_class.shape != want_class.shape:
        return not_yet("Return one integer label per example (argmax over the last axis of the logits).")
    if len(set(one.tolist())) == 1 and len(set(want_one.tolist())) > 1:
        return not_yet(
            "Every single-example batch gets the same label: BatchNorm is using the "
            "statistics of a batch of one. Which mode uses the running averages?"
        )
    if not (np.array_equal(one, want_one) and np.array_equal(by_class, want_class)):
        return not_yet(
            "The labels depend on which other examples are in the batch: BatchNorm is "
            "using batch statistics. Switch the model to evaluation mode before the forward pass."
        )
    acc = evaluate(nnx.clone(model), x, y)
    return correct(
        f"Same labels for a batch of one, a batch of one class and the whole test set "
        f"(accuracy {acc:.1%}), and the running averages untouched."
    )
