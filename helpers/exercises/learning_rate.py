"""Checkers for notebook 03 (learning rate, sharpness and warmup). Each prints what is wrong and a hint,
never the answer; none of them raises, so the notebook always runs through."""

from __future__ import annotations

import math

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from helpers.exercises._check import close, correct, not_answered, not_yet, number, unanswered

__all__ = ["check_adam_after_spike", "check_hvp", "check_max_stable_lr", "check_warmup_schedule"]

# Exercise 1: f(w) = 1/2 w^T A w with this A; its eigenvalues are 6 and 1.
A_EXERCISE = np.array([[5.0, 2.0], [2.0, 2.0]])
# Exercise 3: the schedule asked for.
_PEAK, _WARMUP = 0.1, 100
# Exercise 4: a gradient spike at step 1 (then a gradient of 1), and the learning rate.
_SPIKE, _ADAM_LR = 1e4, 1e-3


def check_max_stable_lr(answer) -> bool:
    """Exercise 1: the largest lr for which gradient descent on 1/2 w^T A w converges, A = A_EXERCISE."""
    if unanswered(answer):
        return not_answered()
    lr = number(answer)
    if lr is None:
        return not_yet(f"`answer` should be one number (a learning rate such as 0.25), got {answer!r}.")
    lam = np.linalg.eigvalsh(A_EXERCISE)  # ascending
    if close(lr, 2 / lam[-1], rel=0.01):
        return correct(
            "Above it the sharpest direction is multiplied by |1 - lr * lambda_max| > 1 at every step; the flat "
            "direction alone would tolerate a learning rate six times larger."
        )
    if close(lr, 1 / lam[-1], rel=0.01):
        hint = (
            "That learning rate solves the sharpest direction in a single step (1 - lr * lambda = 0), but larger "
            "ones still converge, oscillating with a shrinking amplitude. Where does |1 - lr * lambda| reach 1?"
        )
    elif close(lr, 2 / lam[0], rel=0.01):
        hint = "That is the limit of the flattest direction; gradient descent must be stable in every direction."
    elif any(close(lr, 2 / d, rel=0.01) for d in np.diag(A_EXERCISE)):
        hint = (
            "A diagonal entry of A is not an eigenvalue: the off-diagonal entries couple the two coordinates. "
            "Compute the eigenvalues (np.linalg.eigvalsh)."
        )
    elif close(lr, 2 / np.trace(A_EXERCISE), rel=0.01):
        hint = "The trace is the sum of the eigenvalues, not the largest one."
    elif lr <= 0:
        hint = "A learning rate is positive."
    else:
        hint = (
            "In A's eigenbasis each coordinate is multiplied by (1 - lr * lambda_i) per step. Find the "
            "eigenvalues of A and the largest lr with |1 - lr * lambda_i| < 1 for all of them."
        )
    return not_yet(hint)


def _hvp_test_problem():
    """A small non-quadratic loss of a dict of arrays, with its exact gradient and H v written out by hand.

    loss = 1/2 w^T M w + 1/4 sum(b^4) + (c.w)(d.b), so H v = (M v_w + c (d.v_b), 3 b^2 v_b + d (c.v_w)).
    """
    rng = np.random.default_rng(3)
    m = rng.normal(size=(3, 3))
    m = m @ m.T
    c, d = rng.normal(size=3), rng.normal(size=2)
    w, b, vw, vb = rng.normal(size=3), rng.normal(size=2), rng.normal(size=3), rng.normal(size=2)

    def loss(p):
        return (
            0.5 * p["w"] @ jnp.asarray(m, jnp.float32) @ p["w"]
            + 0.25 * jnp.sum(p["b"] ** 4)
            + (jnp.asarray(c, jnp.float32) @ p["w"]) * (jnp.asarray(d, jnp.float32) @ p["b"])
        )

    params = {"b": jnp.asarray(b, jnp.float32), "w": jnp.asarray(w, jnp.float32)}
    v = {"b": jnp.asarray(vb, jnp.float32), "w": jnp.asarray(vw, jnp.float32)}
    # flattened in the order of the dict's sorted keys: b, then w
    grad = np.concatenate([b**3 + d * (c @ w), m @ w + c * (d @ b)])
    hv = np.concatenate([3 * b**2 * vb + d * (c @ vw), m @ vw + c * (d @ vb)])
    return loss, params, v, grad, hv


def check_hvp(hvp) -> bool:
    """Exercise 2: `hvp(loss, params, v)` returns H v (a tree shaped like params) without forming H."""
    if unanswered(hvp):
        return not_answered()
    if not callable(hvp):
        return not_yet(f"Pass your function itself (`check_hvp(hvp)`), got {type(hvp).__name__}.")
    loss, params, v, grad, exact = _hvp_test_problem()
    try:
        out = hvp(loss, params, v)
    except Exception as error:  # the student's code: say what happened, never raise
        return not_yet(f"Your function raised {type(error).__name__}: {error}")
    if out is None:
        return not_answered()
    if isinstance(out, tuple) and len(out) == 2:
        return not_yet("You returned a pair. jax.jvp returns (value, directional derivative): which of the two is H v?")
    try:
        same_structure = jax.tree.structure(out) == jax.tree.structure(params)
        flat_out = np.asarray(jax.flatten_util.ravel_pytree(out)[0], dtype=float) if same_structure else None
    except Exception:  # not a tree of arrays
        same_structure, flat_out = False, None
    if not same_structure or flat_out is None or flat_out.shape != exact.shape:
        return not_yet("Return a tree shaped like `params` (here a dict with keys 'w' and 'b').")
    scale = np.linalg.norm(exact)
    if np.linalg.norm(flat_out - exact) <= 1e-3 * scale:
        return correct(
            "One forward-over-reverse pass costs about as much as two gradients, and never stores the P x P Hessian."
        )
    if np.linalg.norm(flat_out - grad) <= 1e-3 * np.linalg.norm(grad):
        hint = "That is the gradient. H v is the derivative of the gradient in the direction v."
    elif any(np.linalg.norm(flat_out - k * exact) <= 1e-3 * scale * abs(k) for k in (2.0, 0.5, -1.0)):
        hint = "Right direction, wrong factor or sign: differentiate jax.grad(loss) once along v, nothing more."
    else:
        hint = (
            "Differentiate the function jax.grad(loss) at params in the direction v with jax.jvp "
            "(forward over reverse); the tangent output is H v."
        )
    return not_yet(hint)


def check_warmup_schedule(schedule) -> bool:
    """Exercise 3: an Optax schedule that is 0 at step 0, rises linearly to 0.1 at step 100, then stays at 0.1."""
    if unanswered(schedule):
        return not_answered()
    if not callable(schedule):
        return not_yet(f"`schedule` should be a function step -> learning rate (an Optax schedule), got {schedule!r}.")
    steps = [0, 1, 25, 50, 99, 100, 101, 250, 1000, 10_000]
    try:
        got = np.array([float(schedule(jnp.asarray(s))) for s in steps])
    except Exception as error:
        return not_yet(f"Calling schedule(step) raised {type(error).__name__}: {error}")
    want = np.array([_PEAK * min(1.0, s / _WARMUP) for s in steps])
    if np.allclose(got, want, rtol=1e-5, atol=1e-7):
        return correct("This is what TrainConfig(warmup_steps=100) does, up to a shift of one step.")
    if not np.isfinite(got).all():
        hint = "Your schedule returns NaN or Inf at some step."
    elif abs(got[0]) > 1e-9:
        hint = f"At step 0 your schedule gives {got[0]:.3g}; the exercise asks for 0 (the warmup starts from zero)."
    elif np.max(got) > _PEAK * (1 + 1e-5):
        hint = f"Your schedule goes above the peak: its largest value is {np.max(got):.3g}."
    elif got[-1] < _PEAK * (1 - 1e-5):
        hint = (
            f"After the warmup the lr should stay at the peak; yours is {got[-1]:.3g} at step {steps[-1]} "
            "(a decaying schedule, or a peak that is never reached)."
        )
    else:
        reached = next((s for s, g in zip(steps, got, strict=True) if close(g, _PEAK, rel=1e-5)), None)
        hint = (
            f"Your schedule gives {got[3]:.3g} at step 50 and first reaches the peak at step {reached} of the "
            "steps checked; the rise should be linear and end exactly at the warmup length."
        )
    return not_yet(hint)


def _adam_second_step(lr=_ADAM_LR, b1=0.9, b2=0.999, g=(_SPIKE, 1.0), correct_m=True, correct_v=True) -> float:
    """|Adam's update| at step 2 for gradients g[0], g[1], from zero moments (epsilon is negligible here)."""
    m = (1 - b1) * (b1 * g[0]) + (1 - b1) * g[1]
    v = (1 - b2) * (b2 * g[0] ** 2) + (1 - b2) * g[1] ** 2
    m_hat = m / (1 - b1**2) if correct_m else m
    v_hat = v / (1 - b2**2) if correct_v else v
    return lr * abs(m_hat) / math.sqrt(v_hat)


def check_adam_after_spike(answer) -> bool:
    """Exercise 4: the size of Adam's second update of a weight whose gradients are 1e4 (a spike), then 1; lr 1e-3."""
    if unanswered(answer):
        return not_answered()
    value = number(answer)
    if value is None:
        return not_yet(f"`answer` should be one number (the size of the update), got {answer!r}.")
    value = abs(value)
    if close(value, _adam_second_step(), rel=0.01):
        return correct(
            "The spike is still in both moments: the step stays below lr, and keeps the spike's sign. Adam "
            "bounds the step, but the spike still steers the direction for a while."
        )
    if close(value, _ADAM_LR, rel=0.01):
        hint = (
            "That is lr * g for SGD with g = 1, and Adam's step after a fresh start. But Adam's moments still "
            "remember the spike of step 1: write m_2 and v_2 from m_1 and v_1."
        )
    elif close(value, _ADAM_LR * _SPIKE, rel=0.01):
        hint = "That is SGD's step at the spike. The question asks for Adam's update at step 2."
    elif close(value, _adam_second_step(correct_m=False, correct_v=False), rel=0.01):
        hint = "Apply the bias corrections for step t = 2: divide m_2 by (1 - beta1^2) and v_2 by (1 - beta2^2)."
    elif close(value, _adam_second_step(correct_m=False), rel=0.01) or close(
        value, _adam_second_step(correct_v=False), rel=0.01
    ):
        hint = "Correct both moments, each with its own beta: m_2 / (1 - beta1^2) and v_2 / (1 - beta2^2)."
    else:
        hint = (
            "m_t = beta1 m_(t-1) + (1 - beta1) g_t and v_t = beta2 v_(t-1) + (1 - beta2) g_t^2, from zero; after "
            "step 2 divide by (1 - beta^2) and form lr * m_hat / sqrt(v_hat)."
        )
    return not_yet(hint)
