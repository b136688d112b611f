"""Checkers for notebook 11 (data parallelism). Each prints what is wrong and a hint, never the answer."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from helpers.devices import AXIS
from helpers.exercises._check import close, correct, not_answered, not_yet, number, unanswered


def _device_grads(n_devices: int = 4, seed: int = 0):
    """One gradient-shaped pytree per device (stacked on a leading axis), each far above norm 1, all different."""
    rng = np.random.default_rng(seed)
    return {
        "kernel": jnp.asarray(rng.normal(size=(n_devices, 5, 3)) * 4.0, jnp.float32),
        "bias": jnp.asarray(rng.normal(size=(n_devices, 3)) + 2.0, jnp.float32),
    }


def _same(a, b) -> bool:
    return all(
        np.allclose(u, v, rtol=1e-4, atol=1e-6) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def _clip(g, max_norm: float = 1.0):
    return optax.clip_by_global_norm(max_norm).update(g, optax.EmptyState())[0]


def check_clip_across_devices(fn) -> bool:
    """Exercise 1: `fn(grads, max_norm)`, run on every device with that device's gradient, must return the
    global-norm clipped *mean* gradient on every device.

    The devices are simulated with `jax.vmap(..., axis_name="batch")`: collectives such as `jax.lax.pmean(x,
    "batch")` mean the same there as under `jax.shard_map`, and it runs on one device too.
    """
    if unanswered(fn):
        return not_answered()
    grads = _device_grads()
    try:
        out = jax.vmap(lambda g: fn(g, 1.0), axis_name=AXIS)(grads)
    except NameError as error:
        return not_yet(f"Your function raised NameError: {error}. The mesh's axis is called {AXIS!r}.")
    except Exception as error:
        return not_yet(f"Your function raised {type(error).__name__}: {error}.")
    if out is None:  # the exercise cell's placeholder body, `...`
        return not_answered()
    try:
        if jax.tree.structure(out) != jax.tree.structure(grads):
            return not_yet("Return a tree shaped like `grads` (the same keys), not something else.")
    except Exception:
        return not_yet("Return a tree shaped like `grads` (the same keys).")
    want = _clip(jax.tree.map(lambda g: g.mean(0), grads))
    clip_then_mean = jax.tree.map(lambda g: g.mean(0), jax.vmap(_clip)(grads))
    got = jax.tree.map(np.asarray, out)
    if any(not np.allclose(g, g[:1], rtol=1e-5, atol=1e-6) for g in jax.tree.leaves(got)):
        return not_yet(
            "The devices end with different results: each still holds its own gradient. All of them must "
            "take the same step, so combine the devices' gradients first (which collective averages over "
            f"the axis {AXIS!r}?)."
        )
    first = jax.tree.map(lambda g: g[0], got)
    if _same(first, want):
        return correct(
            "Average first (`pmean`), then clip: every device clips the same global gradient, so the update is "
            "the one a single device with the whole batch would take."
        )
    if _same(first, clip_then_mean):
        return not_yet(
            "Every device agrees, but on the average of the *clipped* per-device gradients: its norm is below 1. "
            "Swap the order of the two operations."
        )
    norm = float(optax.tree.norm(first))
    return not_yet(f"The result has norm {norm:.3g}; the mean gradient clipped to norm 1 has norm 1. Use `pmean`.")


def check_orthogonal_ratio(answer) -> bool:
    """Exercise 2: 8 per-device gradients of equal norm far above c, pairwise orthogonal: per-device clipping's
    update norm over global clipping's is 1/sqrt(8)."""
    if unanswered(answer):
        return not_answered()
    value = number(answer)
    if value is None:
        return not_yet("Answer with one number: the norm of the per-device clipped update divided by c.")
    target = 1 / math.sqrt(8)
    if close(value, target, 0.02):
        return correct(
            "Each clipped gradient is c times a unit vector; the mean of 8 orthogonal unit vectors has norm "
            "sqrt(8) / 8 = 1/sqrt(8) = 0.35. Global clipping gives norm c: the mean gradient is still far above c."
        )
    if close(value, 1.0, 0.02):
        return not_yet(
            "That is the case of 8 *equal* gradients. Orthogonal unit vectors cancel nothing but add up "
            "like the sides of a cube: what is the length of their sum?"
        )
    if close(value, 1 / 8, 0.02):
        return not_yet("Orthogonal vectors add up by Pythagoras, not like numbers: |u_1 + ... + u_8| = sqrt(8).")
    return not_yet("Write the per-device clipped gradient as c * u_d with |u_d| = 1, average, and take the norm.")
