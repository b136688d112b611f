"""Step variants the benchmark compares with `helpers.train`'s real step (see benchmarks/README.md).

* `tutorial_step`: the step as Flax's MNIST tutorial writes it, `@nnx.jit` on
  `train_step(model, optimizer, x, y)` with `nnx.Optimizer(..., wrt=nnx.Param)`, called once per step.
* `bare_runner`: a minimal copy of `helpers.train`'s step (same loss, same `make_optimizer` chain, same
  batch gather, same `lax.scan` chunking and donation) without diagnostics: no gradient norms, no update
  ratios, no clipped flag, no divergence guard. It returns the loss only.
* `ours`: the real runner and carry of `helpers.train.train`, built the way `train` builds them, for
  timing compiled chunks without `train`'s Python loop; `no_diagnostics_runner`: the same step, from the same
  pieces of `helpers.step`, minus what it reports beyond the loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from helpers import optimizer as O
from helpers import step as S
from helpers import train as T
from helpers.models import CNN, layer_norms


def tutorial_step(model: nnx.Module, config: T.TrainConfig):
    """(step(x, y) -> loss, optimizer): the Flax-tutorial way, with `make_optimizer`'s very chain."""
    model.train()
    pure = nnx.as_pure(nnx.state(model, nnx.Param))  # the tree nnx.Optimizer hands to optax
    optimizer = nnx.Optimizer(model, T.make_optimizer(config, pure), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    return (lambda x, y: train_step(model, optimizer, x, y)), optimizer


def bare_runner(graphdef, params, config: T.TrainConfig, scan: bool):
    """jit(run)(carry, x_all, y_all, idx, active) -> (carry, loss): helpers.train's step minus diagnostics.

    `active` is accepted (and ignored) so that the call signature matches the real runner's.
    """
    tx = T.make_optimizer(config, params)

    def loss_fn(params, rest, x, y):
        model = nnx.merge(graphdef, params, rest, copy=True)
        logits = model(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, nnx.split(model, nnx.Param, ...)[2]

    def step(carry, idx, x_all, y_all):
        params, rest, opt_state = carry
        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, x_all[idx], y_all[idx])
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), rest, opt_state), loss

    if scan:

        def run(carry, x_all, y_all, idx, active):
            return jax.lax.scan(lambda c, i: step(c, i, x_all, y_all), carry, idx)
    else:

        def run(carry, x_all, y_all, idx, active):
            return step(carry, idx, x_all, y_all)

    return jax.jit(run, donate_argnums=(0,)), tx


def ours_runner(model, config: T.TrainConfig, scan: bool, chunk: int, diagnostics: bool = True):
    """(runner, carry) as `helpers.train.train` builds them, with the chunking forced by `scan`.

    diagnostics=False: the same step without what it reports beyond the loss (`no_diagnostics_runner`).
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    spec = S.Spec(config.optimizer, config.clip_mode if config.clip_norm else None, config.skip_nonfinite, scan)
    runner, init = (S.compiled_chunk if diagnostics else no_diagnostics_runner)(graphdef, spec)
    return runner, (params, rest, init(params, T.hyperparameters(config)), jnp.array(False))


def no_diagnostics_runner(graphdef, spec: S.Spec):
    """helpers.step's chunk without its diagnostics (per-layer norms, update ratios, clipped flag, lr), built
    from the same pieces: the loss and gradient, the guarded update, the same carry. Reports loss, ok, reason."""
    _, init = S.compiled_chunk(graphdef, spec)

    def step(tx, carry, batch):
        params, rest, opt_state, stopped = carry
        x, y, active = batch
        loss, new_rest, grads = S.loss_and_grads(graphdef, params, rest, x, y)
        grad_norm = optax.tree.norm(S.with_l2(grads, params, S.inject_state(opt_state).hyperparams["l2"]))
        updates, new_opt, ok, reason = S.guarded_update(
            tx, grads, opt_state, params, loss, grad_norm, spec.skip_nonfinite
        )
        apply = active & ~stopped & ok
        carry = (
            S.choose(optax.apply_updates(params, updates), params, apply),
            S.choose(new_rest, rest, apply & jnp.isfinite(loss)),
            S.choose(new_opt, opt_state, apply),
            stopped | (active & ~ok),
        )
        return carry, jnp.stack([loss, ok, reason]).astype(jnp.float32)

    def run(carry, x_all, y_all, idx, active):
        tx = S.optimizer_for(spec, carry[0])
        if spec.scan:
            return jax.lax.scan(lambda c, b: step(tx, c, b), carry, (x_all[idx], y_all[idx], active))
        return step(tx, carry, (x_all[idx], y_all[idx], active))

    return jax.jit(run, donate_argnums=(0,)), init


class Stepper:
    """A runner plus its (donated) carry, stepping through pre-uploaded batch indices.

    kind "ours": helpers.train's own runner (`helpers.step.compiled_chunk`), carry as `train` builds it.
    kind "previous": `previous_runner`, with the same carry as "ours". kind "bare": `bare_runner`.
    `scan` overrides the training policy (an MLP runs a chunk of `chunk_steps` steps inside one `lax.scan`, a
    CNN one step per call) when not None. `__call__(n_calls)` runs n compiled calls and blocks.
    """

    def __init__(self, model, data, config: T.TrainConfig, kind: str = "ours", scan: bool | None = None):
        model.train()
        self.scan = not isinstance(model, CNN) if scan is None else scan
        chunk = config.chunk_steps if self.scan else 1
        self.steps_per_call = chunk
        if kind in ("ours", "ours without diagnostics"):
            self.runner, self.carry = ours_runner(model, config, self.scan, chunk, kind == "ours")
        elif kind == "previous":
            graphdef, params, rest = nnx.split(model, nnx.Param, ...)
            _, self.carry = ours_runner(model, config, self.scan, chunk)
            spec = S.Spec(config.optimizer, config.clip_mode if config.clip_norm else None, False, self.scan)
            self.runner = previous_runner(graphdef, spec, params)
        else:
            graphdef, params, rest = nnx.split(model, nnx.Param, ...)
            self.runner, tx = bare_runner(graphdef, params, config, self.scan)
            self.carry = (params, rest, tx.init(params))
        self.x = jnp.asarray(np.asarray(data.x_train, np.float32))
        self.y = jnp.asarray(np.asarray(data.y_train), jnp.int32)
        n_calls = 64
        idx = T._batch_indices(len(data.x_train), config.batch_size, n_calls * chunk, config.seed)
        shape = (n_calls, chunk, -1) if self.scan else (n_calls, -1)
        self.idx = [jnp.asarray(i) for i in idx.reshape(shape)]
        self.active = [jnp.ones(chunk, bool) if self.scan else jnp.array(True)] * n_calls
        self.i = 0

    def args(self):
        return self.carry, self.x, self.y, self.idx[0], self.active[0]

    def __call__(self, n_calls: int = 1):
        out = None
        for _ in range(n_calls):
            k = self.i % len(self.idx)
            self.carry, out = self.runner(self.carry, self.x, self.y, self.idx[k], self.active[k])
            self.i += 1
        jax.block_until_ready((self.carry, out))


def previous_runner(graphdef, spec: S.Spec, params):
    """The step as it was before it was split into named pieces (helpers.train._build_runner, 2026-11-30), kept
    here only to time old against new in one run: the split must not cost more than 5%."""
    mask = O.kernel_mask(params)
    config = T.TrainConfig(
        optimizer=spec.optimizer,
        clip_norm=1.0 if spec.clip_mode else None,
        clip_mode=spec.clip_mode or "global_norm",
        skip_nonfinite=spec.skip_nonfinite,
    )
    tx = O.make_optimizer(config, params)
    scalar_names = ("loss", "grad_norm", "clipped", "skipped", "lr", "ok", "reason")

    def loss_fn(params, rest, x, y):
        model = nnx.merge(graphdef, params, rest, copy=True)
        logits = model(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, nnx.split(model, nnx.Param, ...)[2]

    def step(carry, batch):
        params, rest, opt_state, stopped = carry
        x, y, active = batch
        (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, x, y)
        hp = O.inject_state(opt_state).hyperparams
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
            agc = O.adaptive_grad_clip(hp["clip_norm"], params)
            clipped_g = agc.update(grads_l2, agc.init(params), params)[0]
            clipped = optax.tree.norm(optax.tree.sub(clipped_g, grads_l2)) > 0
        if spec.skip_nonfinite:
            ok = S.all_finite(updates)
            reason = jnp.int32(2)
        else:
            ok = jnp.isfinite(loss) & grads_ok & S.all_finite(updates)
            reason = jnp.where(~jnp.isfinite(loss), 0, jnp.where(~grads_ok, 1, 2))
        apply = active & ~stopped & ok
        keep_rest = apply & jnp.isfinite(loss)
        norms, params = jax.lax.optimization_barrier((layer_norms(grads_l2, updates, params), params))
        carry = (
            S.choose(optax.apply_updates(params, updates), params, apply),
            S.choose(new_rest, rest, keep_rest),
            S.choose(new_opt, opt_state, apply),
            stopped | (active & ~ok),
        )
        lr = hp["lr"] * O.warmup_factor(O.inject_state(opt_state).count, hp["warmup_steps"])
        scalars = dict(loss=loss, grad_norm=grad_norm, clipped=clipped, skipped=~grads_ok, lr=lr, ok=ok, reason=reason)
        g_norms, u_norms, p_norms = norms
        return carry, (
            jnp.stack([jnp.asarray(scalars[k], jnp.float32) for k in scalar_names]),
            jnp.stack([g_norms, u_norms / p_norms]),
        )

    if spec.scan:

        def run(carry, x_all, y_all, idx, active):
            return jax.lax.scan(step, carry, (x_all[idx], y_all[idx], active))
    else:

        def run(carry, x_all, y_all, idx, active):
            return step(carry, (x_all[idx], y_all[idx], active))

    return jax.jit(run, donate_argnums=(0,))
