"""One training step, in pieces a reader can take one at a time, and the compiled chunk of steps that runs them::

    loss, new_rest, grads = loss_and_grads(graphdef, params, rest, x, y)     # the forward and backward pass
    updates, new_opt_state, ok, reason = guarded_update(tx, grads, ...)     # the optimizer, and may we apply it?
    metrics = StepMetrics(...)                                                # what the step reports

`compiled_chunk(graphdef, spec)` composes them into one jitted program per model structure and optimizer
structure (kept in a bounded cache), which runs a chunk of steps inside `lax.scan` (MLPs) or one step per call
(CNNs: XLA:CPU runs a convolution's gradient inside a loop 20-70x slower, jax-ml/jax#12868).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from helpers.compiles import compiled_cache
from helpers.devices import batch_sharded, make_mesh, per_device, replicated
from helpers.models import layer_norms
from helpers.optimizer import adaptive_grad_clip, inject_state, kernel_mask, make_optimizer, warmup_factor
from helpers.precision import DTYPES, cast

#: Why a step was not applied, in the order the step meets them.
REASONS = ("loss", "gradient", "parameters")


class Spec(NamedTuple):
    """The parts of a training run that change the compiled program; everything else is data."""

    optimizer: str  # "sgd" | "momentum" | "adam"
    clip_mode: str | None  # None: no clipping
    skip_nonfinite: bool
    scan: bool  # a chunk of steps inside one lax.scan (else one step per call)
    devices: int = 1  # the batch sharded over this many devices (helpers.devices)
    sync_batchnorm: bool = True  # BatchNorm statistics over the whole batch (else per device)
    precision: str = "float32"  # the compute dtype of the forward and backward passes (helpers.precision)
    loss_scaling: str | None = None  # None | "fixed" (S a hyperparameter) | "dynamic" (S in the optimizer state)


class StepMetrics(NamedTuple):
    """What one step reports. Gradients are those of the training loss plus the coupled L2 term, before clipping;
    per-layer values are ordered input -> output."""

    loss: jax.Array
    grad_norm: jax.Array  # global L2 norm
    clipped: jax.Array  # clipping changed the gradient
    skipped: jax.Array  # the gradient was not finite (skipped under skip_nonfinite)
    lr: jax.Array  # after warmup
    ok: jax.Array  # loss, gradient and update finite: the update was applied
    reason: jax.Array  # when not ok, why: an index into REASONS
    loss_scale: jax.Array  # the loss scale S this step used (1 without loss scaling)
    layer_grad_norms: jax.Array  # (layers,)
    update_ratio: jax.Array  # (layers,) ||update|| / ||W||


_SCALARS = tuple(f for f in StepMetrics._fields if f not in ("layer_grad_norms", "update_ratio"))


def loss_value(outputs, y):
    """The training loss: mean softmax cross-entropy for integer labels (one per example, or one per position, the
    classes on the last axis of `outputs`); mean squared error for float targets (regression)."""
    if jnp.issubdtype(y.dtype, jnp.floating):
        return jnp.mean(jnp.square(outputs.reshape(y.shape) - y))
    return optax.softmax_cross_entropy_with_integer_labels(outputs, y).mean()


def loss_and_grads(graphdef, params, rest, x, y, axis_name: str | None = None, *, precision="float32", scale=None):
    """The loss on the batch (`loss_value`), the model's new non-parameter state (BatchNorm's running
    statistics), and the gradient with respect to the parameters.

    `axis_name`: called on one device's rows inside `jax.shard_map` (helpers.devices.per_device); the loss is then
    the mean over every device's rows, so the gradient is the global one. `precision`: the forward and backward
    passes run in that dtype (parameters and inputs cast; the loss in float32; helpers.precision). `scale`: loss
    scaling, the loss times `scale` is differentiated and the gradient divided by it; the loss returned is
    unscaled."""
    dtype = DTYPES[precision]

    def loss_fn(params):
        low = precision != "float32"
        model = nnx.merge(graphdef, cast(params, dtype) if low else params, rest, copy=True)
        logits = model(x.astype(dtype) if low else x).astype(jnp.float32)
        loss = loss_value(logits, y)
        if axis_name is not None:
            loss = jax.lax.pmean(loss, axis_name)
        new_rest = nnx.split(model, nnx.Param, ...)[2]
        return (loss if scale is None else loss * scale), (loss, new_rest)

    (_, (loss, new_rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    new_rest = jax.tree.map(lambda new, old: new.astype(old.dtype), new_rest, rest)
    if scale is not None:
        grads = jax.tree.map(lambda g: g / scale, grads)
    return loss, new_rest, grads


def with_l2(grads, params, l2):
    """The gradient of loss + l2/2 * sum ||W||^2 over the kernels: what clipping sees, and what the step reports."""
    return jax.tree.map(lambda g, p, m: g + l2 * p if m else g, grads, params, kernel_mask(params))


def clipped(clip_mode: str | None, grads, params, clip_norm) -> jax.Array:
    """Does clipping change this gradient? global_norm: ||g|| > c; value: some `|g_i|` > c; adaptive: AGC changes it."""
    if clip_mode is None:
        return jnp.array(False)
    if clip_mode == "global_norm":
        return optax.tree.norm(grads) > clip_norm
    if clip_mode == "value":
        return optax.tree.max(jax.tree.map(jnp.abs, grads)) > clip_norm
    agc = adaptive_grad_clip(clip_norm, params)
    return optax.tree.norm(optax.tree.sub(agc.update(grads, agc.init(params), params)[0], grads)) > 0


def all_finite(tree) -> jax.Array:
    """True iff every element of every leaf is finite: x * 0 is 0 for a finite x and NaN otherwise, so one sum
    per leaf decides it, and never overflows.

    Not `isfinite(concatenate(leaves)).all()`: XLA:CPU runs that concatenation slowly, 0.85 ms per step for the
    125k parameters of a 30 x 64 MLP, as long as the rest of its training step (benchmarks/README.md).
    """
    return jnp.isfinite(sum(jnp.sum(x * 0) for x in jax.tree.leaves(tree)))


def guarded_update(tx, grads, opt_state, params, loss, grad_norm, skip_nonfinite: bool):
    """The optimizer's update, its new state, whether the update may be applied, and if not why (into REASONS).

    Finite parameters plus a finite update give finite new parameters (unless the sum itself overflows, which
    needs values near 3e38), so checking the update decides before it is applied, and XLA fuses the check into
    `apply_updates`. Under skip_nonfinite, `optax.apply_if_finite` has already zeroed the update of a non-finite
    gradient; only a non-finite update stops the run.
    """
    loss_, gradient, parameters = (jnp.int32(REASONS.index(r)) for r in ("loss", "gradient", "parameters"))
    updates, new_opt_state = tx.update(grads, opt_state, params)
    if skip_nonfinite:
        return updates, new_opt_state, all_finite(updates), parameters
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & all_finite(updates)
    reason = jnp.where(~jnp.isfinite(loss), loss_, jnp.where(~jnp.isfinite(grad_norm), gradient, parameters))
    return updates, new_opt_state, ok, reason


def choose(new, old, flag):
    """`new` where flag is true, else `old`, leaf by leaf (a branch-free `if` inside the compiled step)."""
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def make_step(graphdef, spec: Spec, tx, mesh=None):
    """step((params, rest, opt_state, stopped), (x, y, active)) -> (new carry, packed StepMetrics).

    A step that is not `ok` changes nothing and sets `stopped`, after which every step changes nothing: a run
    that diverged keeps the parameters from before its divergence. `active` False marks padding steps.
    `mesh`: the devices of a data-parallel run (`spec.devices` > 1), for per-device BatchNorm statistics.
    """
    forward_backward = loss_and_grads if spec.sync_batchnorm else per_device(mesh, loss_and_grads)

    def step(carry, batch):
        params, rest, opt_state, stopped = carry
        x, y, active = batch
        hp = inject_state(opt_state).hyperparams
        scale = None  # the loss scale S; None without loss scaling
        if spec.loss_scaling == "fixed":
            scale = hp["loss_scale"]
        elif spec.loss_scaling == "dynamic":
            scale = opt_state.scale
        low = {} if scale is None and spec.precision == "float32" else {"precision": spec.precision, "scale": scale}
        loss, new_rest, grads = forward_backward(graphdef, params, rest, x, y, **low)
        reported = with_l2(grads, params, hp["l2"])
        grad_norm = optax.tree.norm(reported)
        skips = spec.skip_nonfinite or spec.loss_scaling == "dynamic"  # a skipped step is not a divergence
        updates, new_opt_state, ok, reason = guarded_update(tx, grads, opt_state, params, loss, grad_norm, skips)
        # read the kernels' norms before the update overwrites the parameters in place
        norms, params = jax.lax.optimization_barrier((layer_norms(reported, updates, params), params))
        apply = active & ~stopped & ok
        carry = (
            choose(optax.apply_updates(params, updates), params, apply),
            choose(new_rest, rest, apply & jnp.isfinite(loss)),
            choose(new_opt_state, opt_state, apply),
            stopped | (active & ~ok),
        )
        grad_norms, update_norms, param_norms = norms
        metrics = StepMetrics(
            loss=loss,
            grad_norm=grad_norm,
            clipped=clipped(spec.clip_mode, reported, params, hp["clip_norm"]),
            skipped=skips & ~all_finite(grads),  # what apply_if_finite tests: every entry, not the norm
            lr=hp["lr"] * warmup_factor(inject_state(opt_state).count, hp["warmup_steps"]),
            ok=ok,
            reason=reason,
            loss_scale=jnp.float32(1.0) if scale is None else scale,
            layer_grad_norms=grad_norms,
            update_ratio=update_norms / param_norms,
        )
        return carry, pack(metrics)

    return step


def pack(metrics: StepMetrics) -> tuple[jax.Array, jax.Array]:
    """A step's metrics as two float32 arrays, the scalars and the (2, layers) per-layer values: two writes per
    step and one fetch per chunk instead of nine (measured faster, benchmarks/README.md)."""
    scalars = jnp.stack([jnp.asarray(getattr(metrics, k), jnp.float32) for k in _SCALARS])
    return scalars, jnp.stack([metrics.layer_grad_norms, metrics.update_ratio])


def unpack(scalars: np.ndarray, per_layer: np.ndarray) -> StepMetrics:
    """The inverse of `pack`, for a chunk: arrays with a leading step axis."""
    columns = {k: scalars[:, i] for i, k in enumerate(_SCALARS)}
    return StepMetrics(**columns, layer_grad_norms=per_layer[:, 0], update_ratio=per_layer[:, 1])


def optimizer_for(spec: Spec, params):
    """The optimizer chain of a run with this spec (hyperparameter values are set in its state, not here)."""
    from helpers.train import TrainConfig  # the config's checks; a cycle at import time otherwise

    config = TrainConfig(
        optimizer=spec.optimizer,
        clip_norm=1.0 if spec.clip_mode else None,
        clip_mode=spec.clip_mode or "global_norm",
        skip_nonfinite=spec.skip_nonfinite,
        loss_scale={None: None, "fixed": 1.0, "dynamic": "dynamic"}[spec.loss_scaling],
    )
    return make_optimizer(config, params)


@compiled_cache
def compiled_chunk(graphdef, spec: Spec):
    """(run, init), both jitted, for one model structure and optimizer structure.

    run(carry, x_all, y_all, idx, active) -> (carry, packed metrics): a chunk of steps (or one, without scan) on
    the batches `x_all[idx]`, carry donated. init(params, hyperparameters) -> the optimizer's first state.

    With `spec.devices` > 1 the carry and the data set are replicated over a mesh of that many devices (the caller
    puts them there, `helpers.devices.replicated`) and each batch is sharded over it: `jax.jit` then runs the same
    program on every device on its rows, and reduces across devices wherever the step reduces over the batch.
    """
    mesh = make_mesh(spec.devices) if spec.devices > 1 else None

    def run(carry, x_all, y_all, idx, active):
        step = make_step(graphdef, spec, optimizer_for(spec, carry[0]), mesh)
        x, y = x_all[idx], y_all[idx]  # the chunk's batches gathered at once, outside the loop
        if mesh is not None:  # (steps,) batch, ... or batch, ...: rows split over the devices
            x, y = (jax.lax.with_sharding_constraint(a, batch_sharded(mesh, idx.ndim - 1)) for a in (x, y))
        if spec.scan:
            carry, metrics = jax.lax.scan(step, carry, (x, y, active))
        else:
            carry, metrics = step(carry, (x, y, active))
        if mesh is not None:  # the next call then finds its arguments where this one did: no recompilation
            carry = jax.lax.with_sharding_constraint(carry, replicated(mesh))
        return carry, metrics

    def init(params, hyperparams):
        """`tx.init` with these hyperparameter values: one compiled call instead of a dozen eager ones."""
        state = optimizer_for(spec, params).init(params)
        values = {k: jnp.asarray(v, jnp.float32) for k, v in hyperparams.items()}
        inject = inject_state(state)._replace(hyperparams=values)
        return inject if state is inject_state(state) else state._replace(inner_state=inject)

    return jax.jit(run, donate_argnums=(0,)), jax.jit(init)
