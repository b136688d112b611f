"""Checkers for notebook 04 (gradient clipping). Each prints what is wrong and a hint, never the answer."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from helpers.exercises._check import close, correct, not_answered, not_yet, unanswered


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(g, dtype=np.float64) for g in jax.tree.leaves(tree)]


def _norm(tree) -> float:
    return math.sqrt(sum(float(np.sum(g * g)) for g in _leaves(tree)))


def _cosine(a, b) -> float:
    dot = sum(float(np.sum(u * v)) for u, v in zip(_leaves(a), _leaves(b), strict=True))
    return dot / max(_norm(a) * _norm(b), 1e-30)


def _test_trees():
    """Gradient-shaped pytrees: a large one with leaves of different sizes, and one already below norm 1."""
    rng = np.random.default_rng(0)
    large = {
        "dense0": {"kernel": jnp.asarray(rng.normal(size=(4, 3)) * 3.0, jnp.float32), "bias": jnp.zeros(3)},
        "head": {"kernel": jnp.asarray(rng.normal(size=(3, 2)) * 0.1, jnp.float32), "bias": jnp.ones(2)},
    }
    small = {"w": jnp.asarray([0.3, -0.4], jnp.float32), "b": jnp.asarray([0.0], jnp.float32)}
    return large, small


def _same_structure(out, tree) -> bool:
    try:
        return jax.tree.structure(out) == jax.tree.structure(tree) and all(
            np.shape(a) == np.shape(b) for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(tree), strict=True)
        )
    except Exception:
        return False


def _call(fn, tree, max_norm):
    """(result, error message or None); the student's code may fail in any way, the notebook keeps running."""
    try:
        return fn(tree, max_norm), None
    except Exception as error:
        return None, f"Your function raised {type(error).__name__}: {error}. Try it on `grads` to debug."


def check_clip_by_global_norm(fn) -> bool:
    """Exercise 1: `fn(grads, max_norm)` must scale the whole pytree by min(1, max_norm / global norm)."""
    if unanswered(fn):
        return not_answered()
    large, small = _test_trees()
    out, error = _call(fn, large, 1.0)
    if error:
        return not_yet(error)
    if out is None or out is ...:
        return not_answered()
    if not _same_structure(out, large):
        return not_yet(
            "Return a pytree with the same structure and array shapes as `grads` (jax.tree.map helps), "
            "not one flattened vector or a number."
        )
    if not all(np.all(np.isfinite(g)) for g in _leaves(out)):
        return not_yet("Your result contains NaN or Inf: check the division by the norm.")
    leaf_cosines = [
        float(np.sum(u * v) / (np.linalg.norm(u) * np.linalg.norm(v)))
        for u, v in zip(_leaves(out), _leaves(large), strict=True)
        if np.linalg.norm(v) > 0 and np.linalg.norm(u) > 0
    ]
    if _cosine(out, large) < 0.999:
        if all(c > 0.999 for c in leaf_cosines):
            hint = (
                "Each array kept its own direction, but the arrays were scaled by different factors, so the "
                "gradient as a whole changed direction. The norm is *global*: one factor for all leaves, "
                "computed from the sum of squares over every array together."
            )
        else:
            hint = (
                "The direction changed inside an array: clipping each entry separately (by value) does that. "
                "Multiply every array by one and the same scalar."
            )
        return not_yet(hint)
    if abs(_norm(out) - 1.0) > 1e-3:
        return not_yet(
            f"A gradient with global norm {_norm(large):.3g} clipped to max_norm = 1 should have norm 1 "
            f"afterwards, but yours has {_norm(out):.4g}. Which scalar makes the norm exactly max_norm?"
        )
    kept, error = _call(fn, small, 1.0)
    if error:
        return not_yet(error)
    if not _same_structure(kept, small) or abs(_norm(kept) - _norm(small)) > 1e-5:
        return not_yet(
            f"A gradient whose norm ({_norm(small):.2g}) is already below max_norm must come back "
            "unchanged: the scale factor is never larger than 1."
        )
    zeros, error = _call(fn, jax.tree.map(jnp.zeros_like, small), 1.0)
    if error or not _same_structure(zeros, small) or any(np.any(g != 0) for g in _leaves(zeros)):
        return not_yet("An all-zero gradient must come back as zeros, not NaN: avoid dividing 0 by 0.")
    return correct(
        "The whole gradient is scaled by one factor, min(1, max_norm / ||g||): direction kept, norm capped. "
        "Compare your function with optax.clip_by_global_norm on `grads`."
    )


def check_update_length(answer, lr: float, clip_norm: float, grad_norm: float) -> bool:
    """Exercise 2: the L2 norm of the SGD update lr * clip(g) when ||g|| = grad_norm."""
    if unanswered(answer):
        return not_answered()
    target = lr * min(clip_norm, grad_norm)
    if close(answer, target, 1e-3):
        return correct("||update|| = lr * min(||g||, clip_norm): clipping caps the length of every step.")
    if close(answer, lr * grad_norm, 1e-3):
        hint = "That is the length of the step *without* clipping. What norm does the gradient have after clipping?"
    elif close(answer, min(clip_norm, grad_norm), 1e-3):
        hint = "That is the norm of the clipped gradient; SGD then multiplies it by the learning rate."
    elif close(answer, clip_norm / grad_norm, 1e-3) or close(answer, lr * clip_norm / grad_norm, 1e-3):
        hint = "That is a scale factor, not a length. Start from the norm the clipped gradient has."
    else:
        hint = "SGD's update is -lr * (clipped gradient). Write down the norm of the clipped gradient first."
    return not_yet(hint)


def check_half_clipped_threshold(answer, grad_norms) -> bool:
    """Exercise 3: the clip_norm that would have clipped half of the recorded (unclipped) steps."""
    if unanswered(answer):
        return not_answered()
    norms = np.asarray(grad_norms, dtype=float)
    norms = norms[np.isfinite(norms)]
    target = float(np.median(norms))
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return not_yet("Give one number: a clip_norm threshold.")
    if close(value, target, 0.02):
        return correct(
            "Half of the recorded steps lie above it. The tuning playbook calls clipping more than half of "
            "the steps 'extremely aggressive': then lowering lr is the cleaner knob."
        )
    fraction = float(np.mean(norms > value))
    if close(value, float(np.mean(norms)), 0.02):
        hint = (
            f"That is the mean, pulled up by the rare spikes: it would clip {fraction:.0%} of the recorded "
            "steps. Which statistic has exactly half of the values above it?"
        )
    elif close(value, float(np.percentile(norms, 90)), 0.02):
        hint = "That is the 90th percentile: it clips about 10% of the recorded steps, not half."
    else:
        hint = (
            f"That threshold would clip {fraction:.0%} of the recorded steps, not 50%. "
            "Which statistic of the recorded norms has half the values above it?"
        )
    return not_yet(hint)
