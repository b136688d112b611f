"""Training: one config object, an Optax chain whose hyperparameters live in its state, a compiled step, the loop.

The step is compiled once per model shape and optimizer structure and cached, so moving a slider (a new lr,
clip_norm, l2, weight_decay or warmup_steps) reuses the compiled code: those values are arrays in the
optimizer state (`optax.inject_hyperparams`), not constants in the program.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from helpers.config import Config, setting
from helpers.models import layer_norms

OPTIMIZERS = ("sgd", "momentum", "adam")
CLIP_MODES = ("global_norm", "value", "adaptive")


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """Every knob a slider may turn. `str(config)` gives a short string that `TrainConfig.parse` reads back exactly."""

    optimizer: str = setting("sgd", "choice", choices=OPTIMIZERS, printed=True, control=("dropdown",))
    """"sgd" | "momentum" (heavy ball, 0.9) | "adam"."""
    lr: float = setting(0.05, "float", low=0, above=True, printed=True, control=("log", -4, 1))
    """Peak learning rate."""
    warmup_steps: int = setting(0, "int", low=0, control=("int", 0, 500, 10))
    """Linear warmup: lr * min(1, (step + 1) / warmup_steps)."""
    clip_norm: float | None = setting(None, "float", low=0, above=True, optional=True, control=("log", -2, 2, 1.0))
    """None: no clipping; else the threshold of `clip_mode`."""
    clip_mode: str = setting("global_norm", "choice", choices=CLIP_MODES, control=("dropdown",))
    """"global_norm" (Pascanu et al. 2013) | "value" | "adaptive" (Brock et al. 2021)."""
    l2: float = setting(0.0, "float", low=0, control=("log", -6, 0, 1e-3))
    """Coupled L2: l2/2 * sum ||W||^2 added to the loss, so l2 * W added to the gradient."""
    weight_decay: float = setting(0.0, "float", low=0, control=("log", -5, 0, 1e-3))
    """Decoupled (AdamW-style): W -= lr * weight_decay * W after the optimizer."""
    batch_size: int = setting(64, "int", low=1)
    steps: int = setting(200, "int", low=1, printed=True, control=("int", 10, 2000, 10))
    seed: int = setting(0, "int", low=0, control=("int", 0, 20, 1))
    """The order of the batches; the initial weights' seed is ModelConfig.seed."""
    chunk_steps: int = setting(50, "int", low=1)
    """Steps per compiled call (MLP) and per `on_chunk` report."""
    skip_nonfinite: bool = setting(False, "bool")
    """Skip steps whose gradient is not finite (optax.apply_if_finite) instead of stopping."""


@dataclasses.dataclass
class History:
    """Per-step record of a run (numpy arrays, one row per step; per-layer columns ordered input -> output).

    Gradients are those of the training loss including the coupled L2 term, before clipping.
    A run that diverged stops at `diverged_at`: its row holds the non-finite values, and the model keeps
    the parameters from before that step.
    """

    config: TrainConfig
    layer_names: list[str]
    loss: np.ndarray  # (steps,)
    grad_norm: np.ndarray  # (steps,) global L2 norm, before clipping
    layer_grad_norms: np.ndarray  # (steps, layers) norm of each weight kernel's gradient
    update_ratio: np.ndarray  # (steps, layers) ||update|| / ||kernel|| of each layer
    clipped: np.ndarray  # (steps,) bool: clipping changed the gradient
    skipped: np.ndarray  # (steps,) bool: non-finite gradient skipped (skip_nonfinite=True)
    lr: np.ndarray  # (steps,) learning rate after warmup
    diverged_at: int | None = None  # first step whose loss, gradient or new parameters are not finite
    diverged_layer: str | None = None  # where the non-finite values began (see `_blame`)
    diverged_reason: str | None = None  # "loss" | "gradient" | "parameters"

    @property
    def steps(self) -> int:
        return len(self.loss)

    @property
    def done(self) -> bool:
        """The run has ended: all its steps are done, or it diverged."""
        return self.diverged_at is not None or self.steps >= self.config.steps

    def summary(self) -> str:
        """One line: how the run ended and, if it diverged, where."""
        if self.diverged_at is None:
            return (
                f"{self.steps} steps, final loss {self.loss[-1]:.4g}, max gradient norm {np.nanmax(self.grad_norm):.3g}"
            )
        return (
            f"diverged at step {self.diverged_at} ({self.diverged_reason} not finite); "
            f"began in: {self.diverged_layer}; the model keeps its parameters from before step {self.diverged_at}"
        )


class _Spec(NamedTuple):
    """The parts of a TrainConfig that change the compiled program (everything else is data)."""

    optimizer: str
    clip_mode: str | None
    skip_nonfinite: bool
    scan: bool
    # False: the same step without the diagnostics (per-layer gradient norms, update ratios, clipped flag);
    # each step reports only loss, ok and reason. What benchmarks/ measures the diagnostics' cost against.
    diagnostics: bool = True


#: A step's metrics travel as two float32 arrays (two writes per step, one fetch per chunk): these scalars,
#: and a (2, layers) array of the per-layer gradient norms and update ratios.
_SCALARS = ("loss", "grad_norm", "clipped", "skipped", "lr", "ok", "reason")


def _mask(params, predicate: Callable[[list], bool]):
    """A params-shaped tree of bools: `predicate(names)` of each leaf's path (an nnx.State or a plain dict)."""

    def names(path):
        return [getattr(k, "key", getattr(k, "idx", None)) for k in path if not isinstance(k, jax.tree_util.GetAttrKey)]

    return jax.tree_util.tree_map_with_path(lambda path, _: predicate(names(path)), params)


def _kernel_mask(params):
    """True for weight kernels (what l2 and weight decay act on), False for biases and BatchNorm's scale/shift."""
    return _mask(params, lambda names: names[-1] == "kernel")


def _inject_state(opt_state) -> optax.InjectHyperparamsState:
    """The InjectHyperparamsState, whether or not apply_if_finite wraps it."""
    return opt_state.inner_state if isinstance(opt_state, optax.ApplyIfFiniteState) else opt_state


def _hyperparams(opt_state) -> dict[str, jax.Array]:
    return _inject_state(opt_state).hyperparams


def warmup_factor(count, warmup_steps):
    """min(1, (count + 1) / warmup_steps); 1 when warmup_steps is 0. Same as optax.linear_schedule (tested)."""
    return jnp.minimum(1.0, (count + 1) / jnp.maximum(warmup_steps, 1.0))


def adaptive_grad_clip(clipping, params) -> optax.GradientTransformation:
    """`optax.adaptive_grad_clip` layer by layer, also for the stacked blocks of `helpers.models`.

    AGC clips each unit's gradient to `clipping` times that unit's weight norm, reading the units off each
    array's shape. A stacked array carries the layers on its leading axis, so there the clip is `jax.vmap`-ed
    over that axis: every layer is clipped exactly as if it were stored on its own (tested).
    """
    agc = optax.adaptive_grad_clip(clipping)
    stacked = _mask(params, lambda names: names[0] == "blocks")
    if not any(jax.tree.leaves(stacked)):  # depth 1: nothing stacked
        return agc
    per_layer = optax.GradientTransformation(
        agc.init, lambda u, state, p: (jax.vmap(lambda u, p: agc.update(u, state, p)[0])(u, p), state)
    )
    return optax.chain(optax.masked(agc, jax.tree.map(lambda s: not s, stacked)), optax.masked(per_layer, stacked))


def hyperparameters(config: TrainConfig) -> dict[str, float]:
    """The values that live in the optimizer state (`optax.inject_hyperparams`): changing them compiles nothing."""
    values = dict(
        lr=config.lr,
        warmup_steps=config.warmup_steps,
        clip_norm=config.clip_norm or 0.0,
        l2=config.l2,
        weight_decay=config.weight_decay,
    )
    return {k: float(v) for k, v in values.items()}


def make_optimizer(config: TrainConfig, params) -> optax.GradientTransformation:
    """l2 -> clip -> sgd | momentum | adam -> weight decay -> -lr * warmup, hyperparameters injected.

    `params` (the model's nnx.Param state, or the same as plain arrays) gives the tree's structure: l2 and
    weight decay act on the weight kernels only.
    """
    kernel_mask = _kernel_mask(params)
    clippers = {
        "global_norm": optax.clip_by_global_norm,
        "value": optax.clip,
        "adaptive": lambda clip_norm: adaptive_grad_clip(clip_norm, params),
    }

    def chain(lr, warmup_steps, clip_norm, l2, weight_decay):
        parts = [optax.add_decayed_weights(l2, kernel_mask)]
        if config.clip_norm is not None:
            parts.append(clippers[config.clip_mode](clip_norm))
        parts.append(
            {"sgd": optax.identity, "momentum": lambda: optax.trace(0.9), "adam": optax.scale_by_adam}[
                config.optimizer
            ]()
        )
        parts.append(optax.add_decayed_weights(weight_decay, kernel_mask))
        parts.append(optax.scale_by_schedule(lambda count: -lr * warmup_factor(count, warmup_steps)))
        return optax.chain(*parts)

    tx = optax.inject_hyperparams(chain, hyperparam_dtype=jnp.float32)(**hyperparameters(config))
    if config.skip_nonfinite:
        tx = optax.apply_if_finite(tx, max_consecutive_errors=2**30)
    return tx


def _all_finite(tree) -> jax.Array:
    """True iff every element of every leaf is finite: x * 0 is 0 for a finite x and NaN otherwise, so one sum
    per leaf decides it, and never overflows.

    Not `isfinite(concatenate(leaves)).all()`: XLA:CPU runs that concatenation slowly, 0.85 ms per step for the
    125k parameters of a 30 x 64 MLP, as long as the rest of its training step (benchmarks/README.md).
    """
    return jnp.isfinite(sum(jnp.sum(x * 0) for x in jax.tree.leaves(tree)))


def _forward_ok(graphdef, params, rest, x) -> np.ndarray:
    """Per layer (input -> output, then the logits): is the forward signal finite? Run only after a divergence.

    The step does not compute this (there it took ~13% of the small MLP's step time): when a run stops because its
    loss is not finite, the model still holds the parameters and BatchNorm statistics from before that step,
    so replaying that step's forward pass on its batch gives exactly the per-layer flags.
    """
    if graphdef not in _FORWARD_OK:

        def forward_ok(params, rest, x):
            model = nnx.merge(graphdef, params, rest, copy=True)
            hidden = model.hidden(x)
            finite = jnp.isfinite(hidden).all(axis=tuple(range(1, hidden.ndim)))
            return jnp.concatenate([finite, jnp.isfinite(model.readout(hidden[-1])).all()[None]])

        _FORWARD_OK[graphdef] = jax.jit(forward_ok)
    return np.asarray(_FORWARD_OK[graphdef](params, rest, x))


_FORWARD_OK: dict[Any, Callable] = {}


def _build_runner(graphdef, spec: _Spec, params_template):
    """Jitted (state, x, y, batch indices, active flags) -> (state, per-step metrics), state donated; and the
    jitted (params, hyperparameters) -> fresh optimizer state that goes with it."""
    mask = _kernel_mask(params_template)
    config = TrainConfig(
        optimizer=spec.optimizer,
        clip_norm=1.0 if spec.clip_mode else None,
        clip_mode=spec.clip_mode or "global_norm",
        skip_nonfinite=spec.skip_nonfinite,
    )
    tx = make_optimizer(config, params_template)

    def loss_fn(params, rest, x, y):
        model = nnx.merge(graphdef, params, rest, copy=True)
        logits = model(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, nnx.split(model, nnx.Param, ...)[2]

    def step(carry, batch):
        params, rest, opt_state, stopped = carry
        x, y, active = batch
        (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, x, y)
        hp = _hyperparams(opt_state)
        # The gradient of the regularized loss: what clipping sees, and what we report.
        grads_l2 = jax.tree.map(lambda g, p, m: g + hp["l2"] * p if m else g, grads, params, mask)
        grad_norm = optax.tree.norm(grads_l2)
        updates, new_opt = tx.update(grads, opt_state, params)
        grads_ok = jnp.isfinite(grad_norm)
        if spec.clip_mode is None:
            clipped = jnp.array(False)
        elif spec.clip_mode == "global_norm":
            clipped = grad_norm > hp["clip_norm"]
        elif spec.clip_mode == "value":
            clipped = optax.tree.max(jax.tree.map(jnp.abs, grads_l2)) > hp["clip_norm"]
        else:
            agc = adaptive_grad_clip(hp["clip_norm"], params)
            clipped_g = agc.update(grads_l2, agc.init(params), params)[0]
            clipped = optax.tree.norm(optax.tree.sub(clipped_g, grads_l2)) > 0
        # Finite parameters plus a finite update give finite new parameters (unless the sum itself overflows,
        # which needs values near 3e38), so checking the update decides before it is applied, and XLA fuses
        # the guard into `apply_updates` (no second pass). Reason 2, "parameters": that update was not finite.
        if spec.skip_nonfinite:
            ok = _all_finite(updates)  # apply_if_finite already zeroed the update for bad gradients
            reason = jnp.int32(2)
        else:
            ok = jnp.isfinite(loss) & grads_ok & _all_finite(updates)
            reason = jnp.where(~jnp.isfinite(loss), 0, jnp.where(~grads_ok, 1, 2))
        apply = active & ~stopped & ok
        keep_rest = apply & jnp.isfinite(loss)
        if spec.diagnostics:  # read the parameters' norms before the update overwrites them in place
            norms, params = jax.lax.optimization_barrier((layer_norms(grads_l2, updates, params), params))
        carry = (
            choose(optax.apply_updates(params, updates), params, apply),
            choose(new_rest, rest, keep_rest),
            choose(new_opt, opt_state, apply),
            stopped | (active & ~ok),
        )
        if not spec.diagnostics:
            return carry, jnp.stack([loss, ok, reason]).astype(jnp.float32)
        lr = hp["lr"] * warmup_factor(_inject_state(opt_state).count, hp["warmup_steps"])
        scalars = dict(loss=loss, grad_norm=grad_norm, clipped=clipped, skipped=~grads_ok, lr=lr, ok=ok, reason=reason)
        g_norms, u_norms, p_norms = norms
        return carry, (
            jnp.stack([jnp.asarray(scalars[k], jnp.float32) for k in _SCALARS]),
            jnp.stack([g_norms, u_norms / p_norms]),
        )

    if spec.scan:

        def run(carry, x_all, y_all, idx, active):  # the chunk's batches gathered at once, outside the loop
            return jax.lax.scan(step, carry, (x_all[idx], y_all[idx], active))
    else:

        def run(carry, x_all, y_all, idx, active):
            carry, metrics = step(carry, (x_all[idx], y_all[idx], active))
            return carry, metrics

    def init(params, hyperparams):
        """`tx.init` with these hyperparameter values: one compiled call instead of a dozen eager ones."""
        state = tx.init(params)
        values = {k: jnp.asarray(v, jnp.float32) for k, v in hyperparams.items()}
        inject = _inject_state(state)._replace(hyperparams=values)
        return state._replace(inner_state=inject) if spec.skip_nonfinite else inject

    return jax.jit(run, donate_argnums=(0,)), jax.jit(init)


def choose(new, old, flag):
    """`new` where flag is true, else `old`, leaf by leaf (a branch-free `if` inside the compiled step)."""
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


# Compiled runners, one per (model structure, optimizer structure): a slider move finds its runner here.
_RUNNERS: dict[tuple, Callable] = {}


def _spec(model: nnx.Module, config: TrainConfig) -> _Spec:
    clip_mode = config.clip_mode if config.clip_norm is not None else None
    return _Spec(config.optimizer, clip_mode, config.skip_nonfinite, bool(model.scan_steps))


def is_compiled(model: nnx.Module, config: TrainConfig) -> bool:
    """Has `train` compiled the step for this model's structure and this optimizer already? (Then it reuses it.)"""
    return (nnx.split(model, nnx.Param, ...)[0], _spec(model, config)) in _RUNNERS


@functools.lru_cache(maxsize=64)  # a slider move asks for the same batches again
def _batch_indices(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """(steps, batch_size) example indices: shuffled epochs without replacement, remainder dropped. Read-only."""
    per_epoch = n // batch_size
    rng = np.random.default_rng(seed)
    epochs = [rng.permutation(n)[: per_epoch * batch_size] for _ in range(-(-steps // per_epoch))]
    idx = np.concatenate(epochs).reshape(-1, batch_size)[:steps].astype(np.int32)
    idx.setflags(write=False)
    return idx


def train(model: nnx.Module, data, config: TrainConfig = TrainConfig(), *, on_chunk=None) -> History:
    """Train `model` in place on `data.x_train, data.y_train`; never raises on divergence (see History).

    `on_chunk(history_so_far)` is called after every `config.chunk_steps` steps.
    """
    history = None
    with contextlib.closing(_chunks(model, data, config)) as chunks:
        for history in chunks:
            if on_chunk is not None:
                on_chunk(history)
    return history


def _chunks(model: nnx.Module, data, config: TrainConfig) -> Iterator[History]:
    """`train`, one chunk at a time: checks its arguments now, then yields the History after every chunk.

    The model holds the trained parameters once the generator is exhausted or closed.
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    x, y = np.asarray(data.x_train, np.float32), np.asarray(data.y_train)
    model.check_input(x.shape)
    num_classes = model.head.out_features
    if len(y) != len(x) or y.ndim != 1 or y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"data: need one integer label in [0, {num_classes}) per example")
    if config.batch_size > len(x):
        raise ValueError(f"batch_size must be <= the number of training examples ({len(x)}), got {config.batch_size}")

    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    chunk = config.chunk_steps
    spec = _spec(model, config)
    compiled = _RUNNERS.get((graphdef, spec))
    if compiled is None:
        compiled = _RUNNERS[graphdef, spec] = _build_runner(graphdef, spec, params)
    runner, init_optimizer = compiled

    n_chunks = -(-config.steps // chunk)
    idx = _batch_indices(len(x), config.batch_size, n_chunks * chunk, config.seed).reshape(n_chunks, chunk, -1)
    active = (np.arange(n_chunks * chunk) < config.steps).reshape(n_chunks, chunk)
    carry = (params, rest, init_optimizer(params, hyperparameters(config)), jnp.array(False))
    x_dev, y_dev = jnp.asarray(x), jnp.asarray(y, jnp.int32)
    rows: list[tuple[np.ndarray, np.ndarray]] = []

    def dispatch(c, carry):
        """Queue chunk c; JAX runs it asynchronously. Returns the new carry and the chunk's metrics, unread."""
        if spec.scan:
            return runner(carry, x_dev, y_dev, idx[c], active[c])
        per_step = []
        for s in range(chunk):
            carry, m = runner(carry, x_dev, y_dev, idx[c, s], active[c, s])
            per_step.append(m)
        return carry, jax.tree.map(lambda *a: jnp.stack(a), *per_step)

    def run():
        nonlocal carry
        try:
            carry, metrics = dispatch(0, carry)
            for c in range(n_chunks):
                current = metrics
                # Queue the next chunk before reading this one, so that the host work below overlaps it. If this
                # chunk diverged, the queued one changes nothing: the `stopped` flag makes its steps no-ops.
                if c + 1 < n_chunks:
                    carry, metrics = dispatch(c + 1, carry)
                rows.append(tuple(np.asarray(m)[: int(active[c].sum())] for m in current))
                history = _history(config, model.layer_names(), rows)
                if history.diverged_reason == "loss":  # where did the forward pass overflow? replay that step
                    t = history.diverged_at
                    ok = _forward_ok(graphdef, carry[0], carry[1], x_dev[idx.reshape(-1, idx.shape[-1])[t]])
                    history.diverged_layer = _blame(
                        "loss", ok, history.layer_grad_norms[t], history.update_ratio, t, history.layer_names
                    )
                yield history
                if history.diverged_at is not None:
                    return
        finally:
            nnx.update(model, carry[0], carry[1])

    return run()


def _history(config: TrainConfig, names: list[str], rows: list[tuple[np.ndarray, np.ndarray]]) -> History:
    scalars, per_layer = (np.concatenate(part) for part in zip(*rows, strict=True))
    cat = {k: scalars[:, i] for i, k in enumerate(_SCALARS)}
    cat["layer_grad_norms"], cat["update_ratio"] = per_layer[:, 0], per_layer[:, 1]
    cat["ok"] = cat["ok"].astype(bool)
    bad = np.flatnonzero(~cat["ok"])
    end = int(bad[0]) + 1 if len(bad) else len(cat["loss"])
    cat = {k: v[:end] for k, v in cat.items()}
    h = History(
        config=config,
        layer_names=list(names),
        loss=cat["loss"],
        grad_norm=cat["grad_norm"],
        layer_grad_norms=cat["layer_grad_norms"],
        update_ratio=np.where(cat["ok"][:, None], cat["update_ratio"], np.nan),  # no update was applied
        clipped=cat["clipped"].astype(bool),
        skipped=cat["skipped"].astype(bool),
        lr=cat["lr"],
    )
    if len(bad):
        t = int(bad[0])
        h.diverged_at = t
        h.diverged_reason = ("loss", "gradient", "parameters")[int(cat["reason"][t])]
        if h.diverged_reason != "loss":  # a "loss" divergence is blamed by `train`, which replays the forward pass
            # the step's own update ratios (History hides them: that update was not applied)
            h.diverged_layer = _blame(h.diverged_reason, None, h.layer_grad_norms[t], cat["update_ratio"], t, names)
    return h


def _blame(reason: str, forward_ok, grad_norms, update_ratio, t: int, names: list[str]) -> str:
    """Where the divergence began, in the order the computation ran into it.

    loss: the first layer (input -> output) whose forward output is not finite (the forward pass overflowed),
    else "loss" itself (finite logits, non-finite cross-entropy). gradient: the output-most layer whose
    gradient is not finite (backprop runs output -> input, so that is where it overflowed first).
    parameters: the layer with the largest update/parameter ratio in that step.
    """
    if reason == "loss":
        return names[int(np.argmin(forward_ok))] if not forward_ok.all() else "loss"
    bad = ~np.isfinite(grad_norms)
    if reason == "gradient" and bad.any():
        return names[int(np.flatnonzero(bad)[-1])]
    row = np.where(np.isnan(update_ratio[t]), -np.inf, update_ratio[t])  # an overflowing layer's ratio is inf
    return names[int(np.argmax(row))]


_EVALUATORS: dict[Any, Callable] = {}


def evaluate(model: nnx.Module, x, y, batch_size: int = 1024) -> float:
    """Accuracy of `model` on (x, y) in evaluation mode (BatchNorm uses its running averages).

    Leaves the model in evaluation mode: call `model.train()` before using it for training-mode statistics
    (`train` does so itself).
    """
    x, y = np.asarray(x, np.float32), np.asarray(y)
    model.check_input(x.shape)
    model.eval()
    graphdef, state = nnx.split(model)
    if graphdef not in _EVALUATORS:
        _EVALUATORS[graphdef] = jax.jit(lambda s, xb: jnp.argmax(nnx.merge(graphdef, s)(xb), -1))
    predict = _EVALUATORS[graphdef]
    correct = sum(
        int((np.asarray(predict(state, x[i : i + batch_size])) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)


# ----------------------------------------------------------------------------------------------------------
# Several seeds of one recipe
# ----------------------------------------------------------------------------------------------------------

#: The seeds a claim about training runs rests on, unless it says otherwise.
SEEDS = (0, 1, 2, 3, 4)


@dataclasses.dataclass
class SeedRuns:
    """One recipe trained once per seed: `histories[i]` and `models[i]` belong to `seeds[i]`.

    Seed s means `model_config.replace(seed=s)` (the initial weights) and `config.replace(seed=s)` (the batch
    order). `models` is None while the runs are still going (in `on_chunk`).
    """

    model_config: Any  # helpers.models.ModelConfig
    config: TrainConfig
    seeds: tuple[int, ...]
    histories: list[History]
    models: list[nnx.Module] | None = None

    @property
    def layer_names(self) -> list[str]:
        return self.histories[0].layer_names

    @property
    def steps(self) -> int:
        """Steps done by the slowest seed (a diverged seed has done all it will)."""
        return min(_steps_done(h) for h in self.histories)

    @property
    def done(self) -> bool:
        return all(h.done for h in self.histories)

    @property
    def diverged(self) -> list[int]:
        """The seeds whose run diverged."""
        return [s for s, h in zip(self.seeds, self.histories, strict=True) if h.diverged_at is not None]

    @property
    def final_loss(self) -> np.ndarray:
        """The last training loss of each seed (NaN for a diverged run)."""
        return np.array([np.nan if h.diverged_at is not None else h.loss[-1] for h in self.histories], float)

    def stacked(self, field: str) -> np.ndarray:
        """`field` of every History as one float array (seeds, steps, ...), NaN after a run's last step."""
        arrays = [np.asarray(getattr(h, field), float) for h in self.histories]
        out = np.full((len(arrays), max(len(a) for a in arrays), *arrays[0].shape[1:]), np.nan)
        for i, a in enumerate(arrays):
            out[i, : len(a)] = a
        return out

    def evaluate(self, x, y) -> np.ndarray:
        """The accuracy of each seed's trained model on (x, y)."""
        if self.models is None:
            raise ValueError("evaluate: the runs have not finished (models is None)")
        return np.array([evaluate(m, x, y) for m in self.models])

    def summary(self) -> str:
        """One line: how many seeds diverged, and the final loss as mean and min-max over the others."""
        n, bad = len(self.seeds), len(self.diverged)
        head = f"{n} seeds, {bad} diverged" if bad else f"{n} seeds, none diverged"
        if bad == n:
            steps = sorted(h.diverged_at for h in self.histories)
            return f"{n} seeds, all diverged (at steps {steps[0]}-{steps[-1]})"
        loss = self.final_loss[np.isfinite(self.final_loss)]
        return f"{head}; final loss {loss.mean():.3g} (min {loss.min():.3g}, max {loss.max():.3g})"


def _check_seeds(seeds) -> tuple[int, ...]:
    try:
        seeds = tuple(seeds)
    except TypeError:
        raise ValueError(f"seeds must be a sequence of integers >= 0, got {seeds!r}") from None
    if not seeds:
        raise ValueError("seeds must not be empty")
    if any(isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must not repeat, got {seeds!r}")
    return tuple(int(s) for s in seeds)


def train_seeds(model_config, data, config: TrainConfig = TrainConfig(), seeds=SEEDS, *, on_chunk=None) -> SeedRuns:
    """Train `model_config` with `config` once per seed; each seed's History is exactly what `train` gives.

    The networks are built together (`ModelConfig.build_seeds`); the runs are `train`'s own, chunk by chunk,
    spread over one thread per core: XLA:CPU runs a small program on the thread that calls it, so two threads
    use two cores. On 2 cores this measured faster than one `jax.vmap`-ed program over the seeds (5 seeds of the
    8 x 64 BatchNorm MLP, 300 steps: 0.36 s against 0.53-0.60 s; a 3 x 32 CNN, 150 steps: 3.4 s against 12 s,
    XLA:CPU runs a vmapped convolution as a slow grouped one). Each thread advances its seeds a chunk at a
    time, so all seeds progress together. `on_chunk(runs_so_far)` is called on the calling thread whenever
    every seed has finished another chunk, and once at the end with the finished SeedRuns.
    """
    seeds = _check_seeds(seeds)
    models = model_config.build_seeds(seeds, data.image_shape, data.num_classes)
    runs = [_chunks(m, data, config.replace(seed=s)) for m, s in zip(models, seeds, strict=True)]
    latest: list[History | None] = [None] * len(seeds)
    reports: queue.SimpleQueue = queue.SimpleQueue()
    cancelled = threading.Event()

    def work(group: list[int]) -> None:
        """Advance the runs in `group` one chunk each, in turn, until all have ended (or the caller has gone)."""
        try:
            while group and not cancelled.is_set():
                for i in list(group):
                    latest[i] = next(runs[i])
                    if latest[i].done:
                        group.remove(i)
                        runs[i].close()  # the model now holds the trained parameters
                reports.put(True)
        finally:
            for i in group:
                runs[i].close()
            reports.put(None)

    workers = min(len(seeds), os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(work, list(range(w, len(seeds), workers))) for w in range(workers)]
        try:
            shown, running = 0, workers
            while running:
                if reports.get() is None:
                    running -= 1
                elif on_chunk is not None and all(latest):
                    slowest = min(_steps_done(h) for h in latest)
                    if shown < slowest < config.steps:
                        shown = slowest
                        on_chunk(SeedRuns(model_config, config, seeds, list(latest)))
        finally:
            cancelled.set()  # e.g. KeyboardInterrupt: the workers stop after their current chunk
    for f in futures:
        f.result()  # a worker's error is raised here
    result = SeedRuns(model_config, config, seeds, list(latest), models)
    if on_chunk is not None:
        on_chunk(result)
    return result


def _steps_done(history: History) -> int:
    """Steps run, counting a diverged run as complete (it will not run more)."""
    return history.config.steps if history.done else history.steps
