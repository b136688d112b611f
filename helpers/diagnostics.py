"""Looking inside a network without training it: per-layer gradient norms, activation statistics, theory.

Everything is ordered input -> output, like `model.layer_names()`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from helpers.compiles import compiled_cache
from helpers.models import layer_kernels, layer_norms, per_layer
from helpers.step import loss_value


def _loss_and_hidden(model: nnx.Module, x, y):
    hidden = model.hidden(x)
    logits = model.readout(hidden[-1])
    return loss_value(logits, y), hidden


def layer_grad_norms(model: nnx.Module, x, y) -> np.ndarray:
    """||dL/dW_l|| for every weight kernel at the current parameters; nothing is updated.

    BatchNorm uses batch statistics as in training, but its running averages are left untouched.
    Compiled once per model structure, so sweeps over init_scale or seeds are fast.
    """
    model.check_input(np.shape(x))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    norms = _grad_norms(graphdef)(params, rest, jnp.asarray(x), jnp.asarray(y))
    return np.asarray(norms, dtype=np.float64)


@compiled_cache
def _grad_norms(graphdef):
    def norms(params, rest, x, y):
        loss = lambda p: _loss_and_hidden(nnx.merge(graphdef, p, rest, copy=True), x, y)[0]  # noqa: E731
        return layer_norms(jax.grad(loss)(params))[0]

    return jax.jit(norms)


@dataclasses.dataclass
class ActivationStats:
    """Per hidden block (input -> output): statistics over a batch of the block's output."""

    layer_names: list[str]
    mean: np.ndarray
    std: np.ndarray
    dead_fraction: np.ndarray  # units that are exactly 0 for every example of the batch (dead ReLUs)


def activation_stats(model: nnx.Module, x) -> ActivationStats:
    """Mean, std and dead-unit fraction of every hidden block's output, in training mode, nothing updated."""
    model.check_input(np.shape(x))
    model.train()
    graphdef, state = nnx.split(model)
    hidden = nnx.merge(graphdef, state, copy=True).hidden(jnp.asarray(x))
    units = [h.reshape(-1, h.shape[-1]) for h in np.asarray(hidden)]
    return ActivationStats(
        layer_names=model.layer_names()[:-1],
        mean=np.array([u.mean() for u in units]),
        std=np.array([u.std() for u in units]),
        dead_fraction=np.array([float(np.all(u == 0, axis=0).mean()) for u in units]),
    )


@dataclasses.dataclass
class LayerValues:
    """Every value, for histograms: each hidden block's output on a batch, and each weight kernel's gradient."""

    layer_names: list[str]  # the weight layers, input -> output: the hidden blocks, then the head
    activations: list[np.ndarray]  # one flat array per hidden block
    grads: list[np.ndarray]  # one flat array per weight kernel (the head's last): dL/dW


def activations_and_grads(model: nnx.Module, x, y) -> LayerValues:
    """The values behind per-layer histograms (as in Karpathy's makemore part 3 and the UvA tutorials): every
    hidden block's output and every kernel's gradient on the batch (x, y), in training mode, nothing updated."""
    model.check_input(np.shape(x))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    hidden, kernels = _values(graphdef)(params, rest, jnp.asarray(x), jnp.asarray(y))
    return LayerValues(
        layer_names=model.layer_names(),
        activations=[np.asarray(h).ravel() for h in hidden],
        grads=[np.asarray(k).ravel() for k in kernels],
    )


@compiled_cache
def _values(graphdef):
    def values(params, rest, x, y):
        loss = lambda p: _loss_and_hidden(nnx.merge(graphdef, p, rest, copy=True), x, y)  # noqa: E731
        (_, hidden), grads = jax.value_and_grad(loss, has_aux=True)(params)
        layers = per_layer(grads)
        kernels = [jnp.concatenate([k.ravel() for k in layer_kernels(layer)]) for layer in layers[:-1]]
        return hidden, [*kernels, layers[-1]["kernel"]]

    return jax.jit(values)


def time_grad_norms(model: nnx.Module, x, y) -> np.ndarray:
    """||dL/dh_t|| for every time step t of a one-layer recurrent network on the batch (x, y), averaged over the
    examples: how the gradient reaching step t shrinks or grows with the lag T - t (like rho^(T - t))."""
    if getattr(model, "gates", None) is None or model.depth != 1:
        raise ValueError("model: needs a one-layer recurrent network (ModelConfig(kind='rnn' or 'lstm', depth=1))")
    model.check_input(np.shape(x))
    graphdef, state = nnx.split(model)
    x, y = jnp.asarray(x), jnp.asarray(y)
    return np.asarray(_time_grads(graphdef)(state, x, y), dtype=np.float64)


@compiled_cache
def _time_grads(graphdef):
    def norms(state, x, y):
        model = nnx.merge(graphdef, state, copy=True)

        def loss(nudge):
            return loss_value(model.readout(model.first.layer(x, nudge)), y)

        g = jax.grad(loss)(jnp.zeros((*x.shape[:2], model.first.layer.width), x.dtype))
        return jnp.linalg.norm(g, axis=-1).mean(axis=0)

    return jax.jit(norms)


def relu_gain_per_layer(init_scale: float) -> float:
    """Factor by which a ReLU net with Var(W) = init_scale^2 * 2 / fan_in multiplies a signal's RMS per layer.

    Forward: E[h_l^2] = fan_in * Var(W) * E[relu(z)^2] = init_scale^2 * 2 * (1/2) * E[h_{l-1}^2];
    backward the same argument with E[relu'(z)^2] = 1/2 gives the same factor, init_scale, for the RMS.
    """
    return float(init_scale)
