"""The optimizer: one Optax chain, its pieces each a library transformation, its hyperparameters in its state::

    l2 -> clip -> sgd | momentum | adam -> weight decay -> -lr * warmup

`optax.inject_hyperparams` keeps lr, warmup_steps, clip_norm, l2, weight_decay and a fixed loss_scale (read by
the step, not the chain) in the optimizer state as arrays, so a new value (a slider move) is new data for the same
compiled program, never a recompilation.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from helpers.precision import DynamicLossScaleState, dynamic_loss_scale

#: The hyperparameters that live in the optimizer state: changing them compiles nothing.
HYPERPARAMETERS = ("lr", "warmup_steps", "clip_norm", "l2", "weight_decay", "loss_scale")


def warmup_factor(count, warmup_steps):
    """min(1, (count + 1) / warmup_steps); 1 when warmup_steps is 0. Same as optax.linear_schedule (tested)."""
    return jnp.minimum(1.0, (count + 1) / jnp.maximum(warmup_steps, 1.0))


def path_mask(params, predicate: Callable[[list], bool]):
    """A params-shaped tree of bools: `predicate(names)` of each leaf's path (an nnx.State or a plain dict)."""

    def names(path):
        return [getattr(k, "key", getattr(k, "idx", None)) for k in path if not isinstance(k, jax.tree_util.GetAttrKey)]

    return jax.tree_util.tree_map_with_path(lambda path, _: predicate(names(path)), params)


def kernel_mask(params):
    """True for weight kernels (what l2 and weight decay act on), False for biases and BatchNorm's scale/shift."""
    return path_mask(params, lambda names: names[-1] == "kernel")


def adaptive_grad_clip(clipping, params) -> optax.GradientTransformation:
    """`optax.adaptive_grad_clip` (Brock et al. 2021) layer by layer, also for the stacked blocks of helpers.models.

    AGC clips each unit's gradient to `clipping` times that unit's weight norm, reading the units off each
    array's shape. A stacked array carries the layers on its leading axis, so there the clip is `jax.vmap`-ed
    over that axis: every layer is clipped exactly as if it were stored on its own (tested). `params` gives the
    tree's structure only.
    """
    agc = optax.adaptive_grad_clip(clipping)
    stacked = path_mask(params, lambda names: names[0] == "blocks")
    if not any(jax.tree.leaves(stacked)):  # depth 1: nothing stacked
        return agc
    per_layer = optax.GradientTransformation(
        agc.init, lambda u, state, p: (jax.vmap(lambda u, p: agc.update(u, state, p)[0])(u, p), state)
    )
    return optax.chain(optax.masked(agc, jax.tree.map(lambda s: not s, stacked)), optax.masked(per_layer, stacked))


def hyperparameters(config) -> dict[str, float]:
    """The values of a TrainConfig that live in the optimizer state; clip_norm None (no clipping) reads as 0, and
    loss_scale None or "dynamic" (kept in the state of `dynamic_loss_scale`) as 1."""
    values = {name: float(getattr(config, name) or 0.0) for name in HYPERPARAMETERS if name != "loss_scale"}
    return values | {"loss_scale": 1.0 if config.loss_scale in (None, "dynamic") else float(config.loss_scale)}


def make_optimizer(config, params) -> optax.GradientTransformation:
    """l2 -> clip -> sgd | momentum | adam -> weight decay -> -lr * warmup, for a TrainConfig, hyperparameters injected.

    `params` (the model's nnx.Param state, or the same as plain arrays or shapes) gives the tree's structure: l2
    and weight decay act on the weight kernels only. Only structure is read, so the chain holds no arrays.
    """
    kernels = kernel_mask(params)
    structure = jax.tree.map(lambda p: jax.ShapeDtypeStruct(jnp.shape(p), jnp.result_type(p)), params)
    clippers = {
        "global_norm": optax.clip_by_global_norm,
        "value": optax.clip,
        "adaptive": lambda clip_norm: adaptive_grad_clip(clip_norm, structure),
    }
    optimizers = {"sgd": optax.identity, "momentum": lambda: optax.trace(0.9), "adam": optax.scale_by_adam}

    def chain(lr, warmup_steps, clip_norm, l2, weight_decay, loss_scale):
        del loss_scale  # the step multiplies the loss by it; the chain sees the gradient already divided
        parts = [optax.add_decayed_weights(l2, kernels)]
        if config.clip_norm is not None:
            parts.append(clippers[config.clip_mode](clip_norm))
        parts.append(optimizers[config.optimizer]())
        parts.append(optax.add_decayed_weights(weight_decay, kernels))
        parts.append(optax.scale_by_schedule(lambda count: -lr * warmup_factor(count, warmup_steps)))
        return optax.chain(*parts)

    tx = optax.inject_hyperparams(chain, hyperparam_dtype=jnp.float32)(**hyperparameters(config))
    if config.loss_scale == "dynamic":  # skips non-finite steps itself
        return dynamic_loss_scale(tx)
    if config.skip_nonfinite:
        tx = optax.apply_if_finite(tx, max_consecutive_errors=2**30)
    return tx


def inject_state(opt_state) -> optax.InjectHyperparamsState:
    """The InjectHyperparamsState, whether or not apply_if_finite or dynamic_loss_scale wraps it."""
    wrapped = isinstance(opt_state, optax.ApplyIfFiniteState | DynamicLossScaleState)
    return opt_state.inner_state if wrapped else opt_state
