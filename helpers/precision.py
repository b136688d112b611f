"""Low precision: the compute dtype of a training step, and loss scaling (Micikevicius et al. 2018, "Mixed
precision training").

The parameters stay float32. Each step casts them and the inputs to the compute dtype, so the forward and backward
passes run in it; the loss is taken in float32 and the gradient arrives in float32. float16's largest number is
65504 and its smallest normal 2^-14 (about 6.1e-5): a small gradient underflows to 0 on its way back through the
layers unless the loss is first multiplied by a scale S (and the gradient divided by S after). bfloat16 keeps
float32's range but has 8 bits of mantissa.

Dynamic loss scaling picks S as it goes: a step whose gradient is not finite is skipped and S is halved; after
`period` finite steps in a row, S is doubled. `dynamic_loss_scale` is that rule as an Optax transformation.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
#: Dynamic loss scaling's start and period. jmp's period of 2000 never doubles S in a tutorial-length run.
INITIAL_SCALE, PERIOD, FACTOR = 2.0**15, 200, 2.0


def cast(tree, dtype):
    """Every floating-point leaf of `tree` in `dtype` (integer leaves, e.g. counters, unchanged)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


class DynamicLossScaleState(NamedTuple):
    scale: jax.Array  # S, float32
    good_steps: jax.Array  # finite steps in a row since S last changed, int32
    inner_state: optax.OptState


def dynamic_loss_scale(
    inner: optax.GradientTransformation, initial: float = INITIAL_SCALE, period: int = PERIOD, factor: float = FACTOR
) -> optax.GradientTransformation:
    """`inner`, applied only to finite gradients, with the loss scale S kept in the state.

    The step multiplies the loss by `state.scale` and divides the gradient by it before this update. A non-finite
    gradient: zero update, `inner`'s state unchanged, S / factor (never below 1). Else: `inner`'s update, and
    S * factor once `period` finite steps in a row have passed.
    """

    def init(params):
        return DynamicLossScaleState(jnp.asarray(initial, jnp.float32), jnp.asarray(0, jnp.int32), inner.init(params))

    def update(grads, state, params=None):
        # every entry finite: x * 0 is 0 for a finite x and NaN otherwise (a norm could overflow for finite x)
        finite = jnp.isfinite(sum(jnp.sum(g * 0) for g in jax.tree.leaves(grads)))
        safe = jax.tree.map(lambda g: jnp.where(finite, g, 0), grads)  # keeps NaN out of inner's state
        updates, inner_state = inner.update(safe, state.inner_state, params)
        grown = finite & (state.good_steps + 1 >= period)
        scale = jnp.where(finite, jnp.where(grown, state.scale * factor, state.scale), state.scale / factor)
        new_state = DynamicLossScaleState(
            jnp.maximum(scale, 1.0),
            jnp.where(finite & ~grown, state.good_steps + 1, 0).astype(jnp.int32),
            jax.tree.map(lambda new, old: jnp.where(finite, new, old), inner_state, state.inner_state),
        )
        return jax.tree.map(lambda u: jnp.where(finite, u, 0), updates), new_state

    return optax.GradientTransformation(init, update)
