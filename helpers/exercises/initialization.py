"""Checkers for notebook 02 (initialization). Each prints what is wrong and a hint, never the answer."""

from __future__ import annotations

import math

import jax
import numpy as np

from helpers.exercises._check import close, correct, not_answered, not_yet, number, unanswered

__all__ = ["check_glorot_uniform", "check_lecun_relu_scale", "check_leaky_relu_gain"]

_SLOPE = 0.1


def check_leaky_relu_gain(answer) -> bool:
    """Exercise 1: fan_in * Var(W) that keeps E[h^2] constant through leaky ReLU with slope 0.1: 2 / (1 + 0.1^2)."""
    if unanswered(answer):
        return not_answered()
    value = number(answer)
    if value is None:
        return not_yet(f"`answer` should be one number (sigma^2 = fan_in * Var(W)), got {answer!r}.")
    if close(value, 2 / (1 + _SLOPE**2), rel=0.002):
        return correct("He et al. (2015) give the same rule for PReLU: sigma^2 = 2 / (1 + a^2).")
    if close(value, 2.0, rel=0.002):
        hint = (
            "2 is ReLU's value, where the negative half contributes nothing. Here the negative half contributes "
            "too: how much of its second moment survives a multiplication by a = 0.1?"
        )
    elif close(value, 2 / (1 + _SLOPE), rel=0.002):
        hint = "The negative half's second moment scales with the square of the slope, not the slope itself."
    elif close(value, 1.0, rel=0.01):
        hint = "1 is right for an activation that keeps the whole second moment (the identity); leaky ReLU keeps less."
    elif close(value, (1 + _SLOPE**2) / 2, rel=0.002):
        hint = "That is E[phi(z)^2] / E[z^2]; sigma^2 has to compensate for it, so take its reciprocal."
    else:
        hint = (
            "Write E[phi(z)^2] for z ~ N(0, q) as one half from z > 0 plus one half from z < 0, then choose "
            "sigma^2 so that sigma^2 * E[phi(z)^2] = q."
        )
    return not_yet(hint)


def check_lecun_relu_scale(answer) -> bool:
    """Exercise 2: init_scale that makes a ReLU MLP with LeCun's variance critical: s^2 / 2 = 1."""
    if unanswered(answer):
        return not_answered()
    value = number(answer)
    if value is None:
        return not_yet(f"`answer` should be one number (an init_scale), got {answer!r}.")
    if close(value, math.sqrt(2), rel=0.01):
        return correct("LeCun's variance times 2 is He's: ReLU needs sigma^2 = 2 and LeCun gives 1.")
    if close(value, 2.0, rel=0.01):
        hint = (
            "init_scale multiplies the standard deviation: Var(W) = init_scale**2 / fan_in. Which variance do you need?"
        )
    elif value <= 1:
        hint = "ReLU halves the second moment, so the weights must be larger than LeCun's, not smaller or equal."
    else:
        hint = (
            "Use the critical condition for ReLU: sigma^2 * E[relu'(z)^2] = 1 with sigma^2 = "
            "fan_in * Var(W) = init_scale**2, and solve for init_scale."
        )
    return not_yet(hint)


def _draws(fn, shape, seed):
    out = fn(jax.random.key(seed), shape)
    if unanswered(out):
        return None
    return np.asarray(out, dtype=np.float64)


def check_glorot_uniform(fn) -> bool:
    """Exercise 3: `fn(key, (fan_in, fan_out))` draws U(-a, a) with Var = 2 / (fan_in + fan_out)."""
    if unanswered(fn):
        return not_answered()
    if not callable(fn):
        return not_yet(f"Pass the function itself, `my_glorot_uniform`, not {type(fn).__name__}.")
    shapes = [(300, 500), (100, 900), (900, 100)]
    samples = []
    for i, shape in enumerate(shapes):
        try:
            w = _draws(fn, shape, i)
        except Exception as error:  # the student's code: report, never raise
            return not_yet(f"Calling my_glorot_uniform(key, {shape}) raised {type(error).__name__}: {error}")
        if w is None:
            return not_answered()
        if w.shape != shape:
            return not_yet(f"For shape {shape} your function returned an array of shape {w.shape}.")
        samples.append(w)
    try:
        again, other = _draws(fn, shapes[0], 0), _draws(fn, shapes[0], 99)
    except Exception as error:
        return not_yet(f"Calling my_glorot_uniform again raised {type(error).__name__}: {error}")
    if again is None or not np.array_equal(again, samples[0]):
        return not_yet("The same key should give the same weights: draw from the `key` argument only.")
    if other is None or np.array_equal(other, samples[0]):
        return not_yet("Different keys should give different weights: draw with jax.random and `key`.")
    for w, (fan_in, fan_out) in zip(samples, shapes, strict=True):
        target = math.sqrt(2 / (fan_in + fan_out))
        std, bound = w.std(), math.sqrt(3) * target
        kurtosis = np.mean((w - w.mean()) ** 4) / w.var() ** 2
        if abs(w.mean()) > 0.05 * target:
            return not_yet("Your weights are not centred on 0: the interval should be symmetric, (-a, a).")
        if kurtosis > 2.3:
            return not_yet(
                "Your weights look normally distributed; the exercise asks for a uniform "
                "distribution on an interval (-a, a)."
            )
        if abs(std / target - 1) > 0.03:
            if close(std, target / math.sqrt(3), rel=0.03):
                hint = "The shape is right but the spread is too small by sqrt(3): for U(-a, a), Var = a^2 / 3."
            elif any(close(std, math.sqrt(c / fan_in), rel=0.03) for c in (1, 2)):
                hint = "Your variance depends on fan_in only; Xavier/Glorot uses both fan_in and fan_out."
            elif any(close(std, math.sqrt(c / fan_out), rel=0.03) for c in (1, 2)):
                hint = "Your variance depends on fan_out only; Xavier/Glorot uses both fan_in and fan_out."
            else:
                hint = (
                    f"For shape {(fan_in, fan_out)} the standard deviation is {std:.4g}; it should make "
                    "Var = 2 / (fan_in + fan_out). Solve a^2 / 3 = that variance for a."
                )
            return not_yet(hint)
        if np.abs(w).max() > bound * (1 + 1e-5):
            return not_yet("Some weights lie outside the interval (-a, a) implied by the variance.")
    return correct("This is what jax.nn.initializers.glorot_uniform() draws (Glorot & Bengio 2010).")
