"""Checkers for notebook 05 (L2 regularization and weight decay). Each prints what is wrong and a hint, never
the answer."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from helpers.exercises._check import close, correct, not_answered, not_yet, unanswered


def check_remaining_fraction(answer, lr: float, l2: float, steps: int) -> bool:
    """Exercise 1: the fraction of a weight left after `steps` SGD steps of pure L2 decay (no data gradient)."""
    if unanswered(answer):
        return not_answered()
    target = (1 - lr * l2) ** steps
    if close(answer, target, 0.01):
        return correct("Each step multiplies the weight by (1 - lr * l2); the factors compound.")
    if close(answer, max(0.0, 1 - lr * l2 * steps), 0.01) or close(answer, 1 - lr * l2 * steps, 0.01):
        hint = (
            "The decay is proportional to the weight itself: it shrinks by a *factor* each step, not by a fixed amount."
        )
    elif close(answer, 1 - lr * l2, 0.01):
        hint = "That is what one step leaves. Now apply it for every step."
    elif close(answer, (1 - l2) ** steps, 0.01) or close(answer, math.exp(-l2 * steps), 0.01):
        hint = "The L2 term enters the gradient, and SGD multiplies the gradient by the learning rate."
    elif close(answer, lr * l2, 0.01) or close(answer, 1 - target, 0.01):
        hint = "The question asks for the fraction that *remains*, a number between 0 and 1 close to neither end."
    else:
        hint = "Write one SGD step for a weight whose data gradient is 0: w <- w - lr * (l2 * w). Then repeat it."
    return not_yet(hint)


def _trees():
    rng = np.random.default_rng(0)
    params = {
        "kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
        "bias": jnp.asarray(rng.normal(size=4), jnp.float32),
    }
    grads = [
        jax.tree.map(
            lambda p, k=k: (
                jnp.asarray(np.random.default_rng(k).normal(size=p.shape), jnp.float32) * 10.0 ** (k % 3 - 1)
            ),
            params,
        )
        for k in range(5)
    ]
    return params, grads


def _updates(tx, params, grads) -> list:
    """The updates `tx` produces over a few steps, with the parameters moving as in training."""
    state = tx.init(params)
    out = []
    for g in grads:
        u, state = tx.update(g, state, params)
        out.append(u)
        params = optax.apply_updates(params, u)
    return out


def _same(a: list, b: list) -> bool:
    return all(
        np.allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-8)
        for ua, ub in zip(a, b, strict=True)
        for x, y in zip(jax.tree.leaves(ua), jax.tree.leaves(ub), strict=True)
    )


def check_adamw_chain(make_tx) -> bool:
    """Exercise 2: `make_tx(lr, weight_decay)` built from Optax pieces must behave exactly like optax.adamw."""
    if unanswered(make_tx):
        return not_answered()
    lr, wd = 0.01, 0.1
    try:
        tx = make_tx(lr, wd)
    except Exception as error:  # the student's code may fail in any way; the notebook keeps running
        return not_yet(f"make_tx raised {type(error).__name__}: {error}.")
    if tx is None or tx is ...:
        return not_answered()
    if not isinstance(tx, optax.GradientTransformation):
        return not_yet("Return an optax.GradientTransformation, e.g. the result of optax.chain(...).")
    params, grads = _trees()
    try:
        theirs = _updates(tx, params, grads)
    except Exception as error:
        return not_yet(f"Your transformation raised {type(error).__name__} during update: {error}.")
    if _same(theirs, _updates(optax.adamw(lr, weight_decay=wd), params, grads)):
        return correct(
            "The decay is added after Adam's normalisation, so every weight shrinks by lr * weight_decay * w per "
            "step, whatever its gradient history: decoupled weight decay."
        )
    adam = optax.scale_by_adam()
    wrong = {
        "coupled": optax.chain(optax.add_decayed_weights(wd), optax.scale_by_adam(), optax.scale(-lr)),
        "no_lr": optax.chain(adam, optax.scale(-lr), optax.add_decayed_weights(-wd)),
        "sign": optax.chain(adam, optax.add_decayed_weights(wd), optax.scale(lr)),
        "no_decay": optax.adam(lr),
    }
    if _same(theirs, _updates(wrong["coupled"], params, grads)):
        hint = (
            "Your decay goes through Adam's normalisation: that is L2 added to the loss (coupled), the thing "
            "AdamW was made to avoid. Move it to after the Adam scaling."
        )
    elif _same(theirs, _updates(wrong["no_lr"], params, grads)):
        hint = "Close: Optax's adamw (like PyTorch's AdamW) multiplies the decay by the learning rate as well."
    elif _same(theirs, _updates(wrong["sign"], params, grads)):
        hint = "Your updates have the wrong sign: optax.apply_updates *adds* the update, so it must be negative."
    elif _same(theirs, _updates(wrong["no_decay"], params, grads)):
        hint = "This is plain Adam: where is the weight decay?"
    else:
        hint = "Three pieces, in order: Adam's scaling, the decayed weights, the (negative) learning rate."
    return not_yet(hint)


def check_first_adam_l2_step(answer, lr: float, l2: float) -> bool:
    """Exercise 3: the size of the first Adam update of a weight w=1 whose only gradient is the L2 term l2 * w."""
    if unanswered(answer):
        return not_answered()
    target = lr  # bias-corrected: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps) = lr
    if close(answer, target, 0.01) or close(answer, -target, 0.01):
        return correct("Adam's first step has length lr for any nonzero gradient: the L2 strength cancels out.")
    if close(answer, lr * l2, 0.01) or close(answer, -lr * l2, 0.01):
        hint = "That is the step of SGD (or of decoupled decay). Adam divides the gradient by its own RMS first."
    elif close(answer, l2, 0.01) or close(answer, 1.0, 0.01):
        hint = "Adam normalises the gradient, and then multiplies by one more number."
    else:
        hint = (
            "At step 1 (with bias correction) Adam's m_hat equals g and v_hat equals g^2. What is m_hat / sqrt(v_hat)?"
        )
    return not_yet(hint)
