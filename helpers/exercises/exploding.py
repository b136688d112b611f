"""Checkers for notebook 01 (exploding gradients). Each prints what is wrong and a hint, never the answer."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from helpers.exercises._check import close, correct, not_answered, not_yet, number, unanswered

__all__ = ["check_backprop_tanh", "check_linear_factor", "check_scale_for_growth"]

_DEPTH, _GROWTH = 20, 1000.0


def check_scale_for_growth(answer) -> bool:
    """Exercise 1: the init_scale s with s**20 = 1000 (first-layer gradient ~ s**depth for a ReLU MLP)."""
    if unanswered(answer):
        return not_answered()
    s = number(answer)
    target = _GROWTH ** (1 / _DEPTH)
    if s is None:
        return not_yet(f"`answer` should be one number (an init_scale such as 1.3), got {answer!r}.")
    if close(s, target, rel=0.005):
        return correct(f"init_scale^{_DEPTH} = {s**_DEPTH:.0f}: a few per cent per layer compound to x1000.")
    if s <= 1:
        hint = "A larger gradient needs larger weights than He's: the answer is above 1."
    elif close(s, _GROWTH / _DEPTH, rel=0.01) or s > 3:
        hint = "The factor applies once per layer, so it compounds: the growth is a power of init_scale, not a product."
    elif close(s, 1 + math.log(_GROWTH) / _DEPTH, rel=0.005):
        hint = "That is the small-step approximation s ~ 1 + ln(1000)/depth; solve the power law exactly."
    elif any(close(s, _GROWTH ** (1 / n), rel=0.005) for n in (_DEPTH - 1, _DEPTH + 1)):
        hint = "Off by one layer: the first-layer kernel gradient scales as init_scale**depth, depth = hidden layers."
    else:
        hint = (
            f"With your value, init_scale**{_DEPTH} = {s**_DEPTH:.3g}, not 1000. "
            "Write the growth as a power of init_scale and solve for it."
        )
    return not_yet(hint)


def check_linear_factor(answer) -> bool:
    """Exercise 2: per-layer factor of ||delta|| in a linear network with He variance (2 / fan_in): sqrt(2)."""
    if unanswered(answer):
        return not_answered()
    value = number(answer)
    if value is None:
        return not_yet(f"`answer` should be one number (a factor per layer), got {answer!r}.")
    if close(value, math.sqrt(2), rel=0.01):
        return correct(
            "He's variance doubles the second moment to make up for ReLU halving it; without ReLU nothing "
            "halves it, so a 30-layer linear net at init_scale 1 grows the gradient by about 2**15."
        )
    if close(value, 1.0, rel=0.01):
        hint = (
            "1 would be right for ReLU. Redo the backward step without the activation: what replaces "
            "E[relu'(z)^2] = 1/2?"
        )
    elif close(value, 2.0, rel=0.01):
        hint = "2 is the factor for the second moment E[delta^2]; the question asks about the norm."
    elif close(value, 1 / math.sqrt(2), rel=0.01) or close(value, 0.5, rel=0.01):
        hint = "The signal grows, not shrinks, towards the input here: check which way the factor goes."
    else:
        hint = (
            "Use E||delta_l||^2 = fan_out * Var(W) * E[act'(z)^2] * ||delta_(l+1)||^2 with Var(W) = 2 / fan_in "
            "and equal widths; the norm's factor is the square root of that."
        )
    return not_yet(hint)


def _tanh_net(seed: int = 0):
    """A small random tanh network and batch: 3 hidden layers, 5 classes, 7 examples."""
    rng = np.random.default_rng(seed)
    sizes = [12, 9, 9, 9, 5]
    Ws = [
        jnp.asarray(rng.standard_normal((m, n)) * 1.3 / np.sqrt(m), jnp.float32)
        for m, n in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    x = jnp.asarray(rng.standard_normal((7, sizes[0])), jnp.float32)
    y = jnp.arange(7) % sizes[-1]
    return Ws, x, y


def _tanh_loss(Ws, x, y):
    h = x
    for W in Ws[:-1]:
        h = jnp.tanh(h @ W)
    return optax.softmax_cross_entropy_with_integer_labels(h @ Ws[-1], y).mean()


def _backprop_with_mask(Ws, x, y, mask):
    """Reference variants: `mask(z)` replaces tanh'(z); used to recognise common mistakes."""
    zs, hs, h = [], [], x
    for W in Ws[:-1]:
        z = h @ W
        h = jnp.tanh(z)
        zs.append(z)
        hs.append(h)
    logits = h @ Ws[-1]
    delta = (jax.nn.softmax(logits) - jax.nn.one_hot(y, logits.shape[1])) / len(y)
    grads = [hs[-1].T @ delta]
    for layer in reversed(range(len(zs))):
        delta = (delta @ Ws[layer + 1].T) * mask(zs[layer])
        grads.insert(0, (x if layer == 0 else hs[layer - 1]).T @ delta)
    return grads


def _matches(got, want) -> bool:
    return all(
        np.shape(g) == np.shape(w) and np.allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)
        for g, w in zip(got, want, strict=True)
    )


def check_backprop_tanh(fn) -> bool:
    """Exercise 3: `fn(Ws, x, y)` returns the kernel gradients of a tanh MLP, input -> output."""
    if unanswered(fn):
        return not_answered()
    if not callable(fn):
        return not_yet(f"Pass the function itself, `backprop_tanh`, not {type(fn).__name__}.")
    Ws, x, y = _tanh_net()
    try:
        got = fn(Ws, x, y)
    except Exception as error:  # the student's code: report, never raise
        return not_yet(f"Calling backprop_tanh(Ws, x, y) raised {type(error).__name__}: {error}")
    if unanswered(got):
        return not_answered()
    try:
        got = [np.asarray(g, dtype=np.float64) for g in got]
    except (TypeError, ValueError):
        return not_yet("Return a list with one gradient array per kernel (same shapes as Ws).")
    want = [np.asarray(g) for g in jax.grad(_tanh_loss)(Ws, x, y)]
    shapes = [w.shape for w in want]
    if len(got) != len(want):
        return not_yet(f"Expected one gradient per kernel ({len(want)} for this network), got {len(got)}.")
    if [g.shape for g in got] == shapes[::-1] and shapes != shapes[::-1]:
        return not_yet("Your gradients are ordered output -> input; return them input -> output.")
    if [g.shape for g in got] != shapes:
        return not_yet(f"Each gradient must have its kernel's shape {shapes}; got {[g.shape for g in got]}.")
    if _matches(got, want):
        return correct("Only the activation's derivative changed; the chain of W^T products is the same.")
    if _matches(got, _backprop_with_mask(Ws, x, y, lambda z: (z > 0).astype(z.dtype))):
        hint = "You still multiply by ReLU's derivative (z > 0). Which function is the derivative of tanh at z?"
    elif _matches(got, _backprop_with_mask(Ws, x, y, lambda z: jnp.ones_like(z))):
        hint = "You left out the activation's derivative: each step back needs it, evaluated at that layer's z."
    elif _matches(got, _backprop_with_mask(Ws, x, y, lambda z: 1 - z**2)):
        hint = "You squared the pre-activation z; tanh's derivative is written with the activation tanh(z) itself."
    elif _matches(got[-1:], want[-1:]):
        hint = "The head's gradient is right but an earlier one is not: check the derivative and which z it uses."
    else:
        hint = (
            "The gradients differ from jax.grad. Start from the head's error (softmax - onehot) / batch size, "
            "and check each step: delta_l = (delta_(l+1) @ W_(l+1).T) * (derivative of tanh at z_l)."
        )
    return not_yet(hint)
