"""Step variants the benchmark compares with `helpers.train`'s real step (see benchmarks/README.md).

* `tutorial_step`: the step as Flax's MNIST tutorial writes it, `@nnx.jit` on
  `train_step(model, optimizer, x, y)` with `nnx.Optimizer(..., wrt=nnx.Param)`, called once per step.
* `bare_runner`: a minimal copy of `helpers.train`'s step (same loss, same `make_optimizer` chain, same
  batch gather, same `lax.scan` chunking and donation) without diagnostics: no gradient norms, no update
  ratios, no clipped flag, no divergence guard. It returns the loss only.
* `ours`: the real runner and carry of `helpers.train.train`, built the way `train` builds them, for
  timing compiled chunks without `train`'s Python loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from helpers import train as T


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
    """(runner, carry) exactly as `helpers.train.train` builds them, with the chunking forced by `scan`.

    diagnostics=False: the same runner without per-layer gradient norms, update ratios and clipped flag.
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    clip_mode = config.clip_mode if config.clip_norm is not None else None
    fields = dict(
        optimizer=config.optimizer,
        clip_mode=clip_mode,
        skip_nonfinite=config.skip_nonfinite,
        chunk_steps=chunk,
        scan=scan,
        diagnostics=diagnostics,
    )
    spec = T._Spec(**{f: fields[f] for f in T._Spec._fields})
    runner, init = T._build_runner(graphdef, spec, params)
    return runner, (params, rest, init(params, T.hyperparameters(config)), jnp.array(False))


class Stepper:
    """A runner plus its (donated) carry, stepping through pre-uploaded batch indices.

    kind "ours": helpers.train's own runner (`_build_runner`), carry as `train` builds it.
    kind "bare": `bare_runner`. `scan` overrides the model's `scan_steps` (chunk of `chunk_steps` steps
    inside one `lax.scan`) when not None. `__call__(n_calls)` runs n compiled calls and blocks.
    """

    def __init__(self, model, data, config: T.TrainConfig, kind: str = "ours", scan: bool | None = None):
        model.train()
        self.scan = bool(model.scan_steps) if scan is None else scan
        chunk = config.chunk_steps if self.scan else 1
        self.steps_per_call = chunk
        if kind in ("ours", "ours without diagnostics"):
            self.runner, self.carry = ours_runner(model, config, self.scan, chunk, kind == "ours")
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
