"""Deep MLP and small CNN as Flax NNX modules, with switches for init scale, BatchNorm and residual connections.

Initialisation, stated once: every kernel (hidden layers and head) is drawn from a zero-mean *normal*
distribution with variance::

    Var(W) = init_scale**2 * gain / fan_in_or_avg,

where ``init="he"`` means gain 2 over fan_in (Kaiming He et al. 2015), ``"lecun"`` gain 1 over fan_in
(LeCun et al. 1998) and ``"xavier"`` gain 1 over (fan_in + fan_out) / 2 (Glorot & Bengio 2010); fan_in of a
convolution is kernel_height * kernel_width * in_channels. So with the default ``init="he"`` the standard
deviation is ``init_scale * sqrt(2 / fan_in)`` and ``init_scale = 1`` is the critical value for ReLU: the
signal's second moment neither grows nor shrinks from layer to layer. Biases start at zero; BatchNorm starts
at scale 1, shift 0.

A hidden block is ``activation(batchnorm(linear(x)))`` (the original BatchNorm paper's order); with
``residual=True`` every block whose input and output widths match computes ``x + block(x)``, and with
``zero_init_residual=True`` too, ``x + alpha * block(x)`` with a learnable scalar ``alpha`` per block that starts
at 0 (SkipInit, De & Smith 2020), so that every residual block starts as the identity. Goyal et al. (2017)
zero the scale of a ResNet block's last BatchNorm instead, but there the ReLU comes after the addition; in
``x + relu(batchnorm(linear(x)))`` a zero BatchNorm scale would make the ReLU's input 0, where its derivative
is 0, and the scale and shift would never receive a gradient (tested). With
``batchnorm=True`` the linear or convolution layers have no bias: BatchNorm subtracts the batch mean, which
cancels any bias exactly, and its own shift takes the bias's place (as in ResNets).
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from helpers.config import Config, setting

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "linear": lambda x: x,
}
INITS: dict[str, tuple[float, str]] = {
    "he": (2.0, "fan_in"),
    "lecun": (1.0, "fan_in"),
    "xavier": (1.0, "fan_avg"),
}


def kernel_init(init: str = "he", init_scale: float = 1.0) -> nnx.Initializer:
    """Normal initializer with Var(W) = init_scale^2 * gain / fan (see the module docstring).

    The same numbers as `jax.nn.initializers.variance_scaling(init_scale**2 * gain, mode, "normal")` (tested: the
    same expression, drawn flat, and threefry numbers an array's elements in flat order), but quicker to make:
    XLA:CPU takes seconds to compile the draw for some kernel shapes (3.5-4.8 s for 3x3x16x16, 0.2 s flat).
    """
    gain, mode = INITS[init]
    scale = init_scale**2 * gain

    def init_fn(key, shape, dtype=jnp.float32):
        receptive = math.prod(shape[:-2])  # a kernel is (..., fan in, fan out), its receptive field before
        fan_in, fan_out = receptive * shape[-2], receptive * shape[-1]
        fan = fan_in if mode == "fan_in" else (fan_in + fan_out) / 2
        stddev = jnp.sqrt(jnp.array(scale / fan, dtype))
        return jax.nn.initializers.normal(stddev)(key, (math.prod(shape),), dtype).reshape(shape)

    return init_fn


def _positive_int(name: str, value: int) -> int:
    """`value`, or ValueError naming `name` unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _check_switches(activation: str, init: str, init_scale: float) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {sorted(INITS)}, got {init!r}")
    if not (isinstance(init_scale, int | float) and math.isfinite(init_scale) and init_scale > 0):
        raise ValueError(f"init_scale must be a finite number > 0, got {init_scale!r}")


class _Block(nnx.Module):
    """activation(batchnorm(layer(x))); when residual and shapes match, x plus that (times `gate`, if gated)."""

    def __init__(
        self,
        layer: nnx.Module,
        features: int,
        activation: str,
        batchnorm: bool,
        residual: bool,
        rngs,
        *,
        gated: bool = False,
    ):
        self.layer = layer
        self.norm = nnx.BatchNorm(features, momentum=0.9, rngs=rngs) if batchnorm else None
        self.activation = activation
        self.residual = residual
        #: SkipInit's alpha: the residual branch's weight, learnable, starting at 0 (the block starts as identity)
        self.gate = nnx.Param(jnp.zeros(())) if gated else None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.layer(x)
        if self.norm is not None:
            h = self.norm(h)
        h = ACTIVATIONS[self.activation](h)
        if not (self.residual and h.shape == x.shape):
            return h
        return x + (self.gate[...] * h if self.gate is not None else h)


class _Net(nnx.Module):
    """Shared parts: the first hidden block (input -> width), the other `depth - 1` blocks stacked, a linear head.

    The blocks after the first all map width -> width, so they are stored as ONE `_Block` whose arrays carry a
    leading axis of length depth - 1, and `hidden` runs them with `nnx.scan`: for deep nets as a loop, so the
    block is compiled once whatever the depth (a depth-100 MLP compiles in about the time a depth-17 one does),
    for shallow ones unrolled. The optimizer and the per-layer diagnostics then handle a few stacked arrays
    instead of a few arrays per layer (`layer_norms`). The blocks are still *built* one by one, each from the
    next draws of `rngs`, and stacked afterwards, so a seed gives the same weights as a plain loop (tested).
    Caution for hand-written code: a stacked kernel has shape (layers, fan_in, fan_out); a rule that reads
    units off an array's shape (e.g. `optax.adaptive_grad_clip`) must be applied per layer (`jax.vmap`).
    """

    first: _Block
    blocks: _Block | None  # None when depth == 1
    head: nnx.Linear
    #: From this depth on, `hidden` loops over the stacked blocks; below it they are unrolled (straight-line
    #: code). Unrolled steps run faster on CPU, a loop compiles in the same time whatever the depth
    #: (benchmarks/README.md). None: always unrolled.
    loop_from_depth: int | None = 17

    @property
    def config(self) -> ModelConfig | None:
        """The ModelConfig that built this network (`ModelConfig.build`), or None for one built by hand.

        Kept beside the network, not in it: an attribute would enter the graph that compiled programs are keyed
        by, and every new init_scale would compile again."""
        return _BUILT_BY.get(self)

    def hidden(self, x: jax.Array) -> jax.Array:
        """Post-activation outputs of all hidden blocks, stacked: shape (depth, batch, ...), input -> output."""
        if self._eager():
            return _compiled_hidden(self, x)
        h = self.first(self._prepare(x))
        if self.blocks is None:
            return h[None]
        return jnp.concatenate([h[None], self._run_blocks(h, collect=True)[1]])

    def __call__(self, x: jax.Array) -> jax.Array:
        if self._eager():
            return _compiled_call(self, x)
        h = self.first(self._prepare(x))
        if self.blocks is not None:
            h = self._run_blocks(h, collect=False)[0]
        return self.readout(h)

    def _eager(self) -> bool:
        """Called outside any JAX transformation (the parameters are concrete arrays, not tracers)?

        Eager calls go through `nnx.jit`, compiled once per model structure and input shape: run eagerly, the
        `nnx.scan` over the blocks would be traced and compiled anew at every call (0.3 s for a depth-10 MLP).
        """
        return not isinstance(self.head.kernel.get_value(), jax.core.Tracer)

    def _run_blocks(self, h: jax.Array, collect: bool):
        """(last output, every output stacked if `collect` else None) of the stacked blocks applied to `h`."""
        loop = self.loop_from_depth is not None and self.depth >= self.loop_from_depth

        @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0), unroll=1 if loop else True)
        def run(h, block):
            h = block(h)
            return h, h if collect else None

        return run(h, self.blocks)

    def readout(self, h: jax.Array) -> jax.Array:
        """Logits from the last hidden block's output."""
        return self.head(self._pool(h))

    def layer_names(self) -> list[str]:
        """Names of the weight layers, ordered input -> output (hidden blocks, then the head)."""
        return [f"{self.block_prefix}{i}" for i in range(self.depth)] + ["head"]

    def block(self, i: int) -> _Block:
        """Hidden block `i` (0 = the first) as a module of its own, for reading and calling.

        Block 0 is the network's own first block (changing it changes the network); the others are copies sliced
        out of the stacked blocks (changing them does not).
        """
        i = range(self.depth)[i]  # IndexError outside [-depth, depth)
        if i == 0:
            return self.first
        graphdef, state = nnx.split(self.blocks)
        return nnx.merge(graphdef, jax.tree.map(lambda a: a[i - 1], state))

    def kernels(self) -> list[jax.Array]:
        """The weight kernels, in the order of `layer_names`."""
        stacked = list(self.blocks.layer.kernel[...]) if self.blocks is not None else []
        return [self.first.layer.kernel[...], *stacked, self.head.kernel[...]]

    def _prepare(self, x):
        return x

    def _pool(self, h):
        return h

    def __init__(
        self,
        n_in: int,
        depth: int,
        width: int,
        num_classes: int,
        *,
        activation: str = "relu",
        init_scale: float = 1.0,
        init: str = "he",
        batchnorm: bool = False,
        residual: bool = False,
        zero_init_residual: bool = False,
        rngs: nnx.Rngs,
        make_layer: Callable | None = None,
    ):
        """`depth` blocks (the first takes `n_in` features or channels) and the head; the switches as in ModelConfig.

        `make_layer(i, n_in, width, k_init, bias, rngs)` builds block i's weight layer (default: `self._layer`, the
        same for every block)."""
        for name, value in [("depth", depth), ("width", width)]:
            _positive_int(name, value)
        _positive_int("num_classes", num_classes)  # the number of outputs: classes, or 1 for a regression target
        _check_switches(activation, init, init_scale)
        k_init = kernel_init(init, init_scale)
        make_layer = make_layer or (lambda i, *args: self._layer(*args))
        blocks = [
            _Block(
                make_layer(i, n_in if i == 0 else width, width, k_init, not batchnorm, rngs),
                width,
                activation,
                batchnorm,
                residual,
                rngs,
                gated=residual and zero_init_residual and (n_in if i == 0 else width) == width,
            )
            for i in range(depth)
        ]
        self.depth = depth
        self.first = blocks[0]
        self.blocks = _stack(blocks[1:]) if depth > 1 else None
        self.head = nnx.Linear(width, num_classes, kernel_init=k_init, rngs=rngs)

    def _layer(self, n_in: int, width: int, k_init, bias: bool, rngs: nnx.Rngs) -> nnx.Module:
        """The weight layer of a block: `n_in` -> `width` features (MLP) or channels (CNN)."""
        raise NotImplementedError


_compiled_call = nnx.jit(lambda model, x: model(x))
_compiled_hidden = nnx.jit(lambda model, x: model.hidden(x))


def _stack(modules: list[nnx.Module]) -> nnx.Module:
    """One module of the same kind whose every array is the modules' arrays stacked on a new leading axis."""
    graphdef, _ = nnx.split(modules[0])

    def stack(*arrays):
        if isinstance(arrays[0], jax.core.Tracer):  # built batched over seeds (`ModelConfig.build_seeds`)
            return jnp.stack(arrays)
        # stacked by numpy: eager jnp.stack would compile an XLA program for every new depth, ~0.1 s each
        return jnp.asarray(np.stack(arrays))

    return nnx.merge(graphdef, jax.tree.map(stack, *[nnx.state(m) for m in modules]))


def layer_norms(*trees) -> jax.Array:
    """||W_l|| (Frobenius) of every weight kernel, input -> output, shape (len(trees), layers).

    Each tree is shaped like a model's nnx.Param state: the parameters, their gradients or their updates.
    A stacked kernel takes one batched dot product for all its layers (XLA:CPU runs a dot faster than a reduction).
    """

    def norms(t):
        t = nnx.to_pure_dict(t) if isinstance(t, nnx.State) else t
        parts = [sum(jnp.vdot(k, k) for k in layer_kernels(t["first"]))[None]]
        if "blocks" in t:
            parts.append(sum(jnp.einsum("l...,l...->l", k, k) for k in layer_kernels(t["blocks"])))
        parts.append(jnp.vdot(t["head"]["kernel"], t["head"]["kernel"])[None])
        return jnp.sqrt(jnp.concatenate(parts))

    return jnp.stack([norms(t) for t in trees])


def layer_kernels(layer: dict) -> list:
    """Every weight kernel in one layer's part of a parameter tree (a plain dict): one for an MLP, CNN or recurrent
    layer; the attention and MLP kernels of a transformer block. What a layer's norm is taken over."""
    return [v for path, v in sorted(_flatten(layer), key=lambda item: item[0]) if path[-1] == "kernel"]


def _flatten(tree, prefix: tuple = ()) -> list[tuple[tuple, object]]:
    if isinstance(tree, dict):
        return [item for key, sub in tree.items() for item in _flatten(sub, (*prefix, str(key)))]
    return [(prefix, tree)]


def per_layer(tree) -> list[dict]:
    """A tree shaped like a model's parameters (the parameters, their gradients, their updates) as one plain dict
    per layer, input -> output, in the order of `layer_names()`: {"kernel": ..., "bias": ...} for the head,
    {"layer": {"kernel": ...}, "norm": {...}} for a hidden block.

    How the hidden blocks are stored (stacked, for speed) stays inside helpers: each entry is a plain pytree,
    ready for hand-written code or any Optax transformation. `from_per_layer` is the inverse.
    """
    t = nnx.to_pure_dict(tree) if isinstance(tree, nnx.State) else tree
    blocks = t.get("blocks")
    count = len(jax.tree.leaves(blocks)[0]) if blocks else 0
    stacked = [jax.tree.map(lambda a, i=i: a[i], blocks) for i in range(count)]
    return [t["first"], *stacked, t["head"]]


def from_per_layer(layers: list[dict]) -> dict:
    """The inverse of `per_layer`: one tree in the model's layout (a plain dict, as `nnx.to_pure_dict` gives)."""
    first, *blocks, head = layers
    tree = {"first": first, "head": head}
    if blocks:
        tree["blocks"] = jax.tree.map(lambda *a: jnp.stack(a), *blocks)
    return tree


class MLP(_Net):
    """Deep MLP on flattened inputs: `depth` hidden blocks of `width` units, then a linear head."""

    block_prefix = "dense"

    def __init__(self, in_features: int, depth: int, width: int, num_classes: int, **switches):
        """`in_features` inputs (the flattened image); `switches`: activation, init_scale, init, batchnorm,
        residual, zero_init_residual and rngs (required), as in ModelConfig."""
        self.in_features = _positive_int("in_features", in_features)
        super().__init__(in_features, depth, width, num_classes, **switches)

    @staticmethod
    def input_of(image_shape: Sequence[int]) -> int:
        """The first argument for images of shape `image_shape`: their number of values."""
        return math.prod(image_shape)

    def _layer(self, n_in, width, k_init, bias, rngs):
        return nnx.Linear(n_in, width, use_bias=bias, kernel_init=k_init, rngs=rngs)

    def check_input(self, x_shape: Sequence[int]) -> None:
        """Raise ValueError unless a batch of shape `x_shape` flattens to `in_features`."""
        if math.prod(x_shape[1:]) != self.in_features:
            raise ValueError(
                f"data: each example has {math.prod(x_shape[1:])} values (shape {tuple(x_shape[1:])}) "
                f"but the MLP expects in_features={self.in_features}"
            )

    def _prepare(self, x):
        return x.reshape(x.shape[0], -1)


class CNN(_Net):
    """Small CNN: `depth` 3x3 'SAME' conv blocks of `width` channels, global average pool, linear head.

    Inputs larger than 8x8 (e.g. 28x28 MNIST) are first average-pooled by an integer factor to at most
    about 8x8, which keeps a CPU step in milliseconds; 8x8 digits are used as they are.
    """

    block_prefix = "conv"
    # XLA:CPU runs convolution gradients inside a loop 20-70x slower than outside one (jax-ml/jax#12868; measured
    # in benchmarks/): the blocks are always unrolled (and helpers.train steps a CNN one call per step).
    loop_from_depth = None

    def __init__(self, in_shape: Sequence[int], depth: int, width: int, num_classes: int, **switches):
        """Images of shape `in_shape` (height, width, channels); `switches` as for MLP."""
        in_shape = tuple(in_shape)
        if len(in_shape) != 3 or not all(isinstance(s, int) and s >= 1 for s in in_shape):
            raise ValueError(f"in_shape must be (height, width, channels) of positive ints, got {in_shape!r}")
        self.in_shape = in_shape
        self.pool = max(1, in_shape[0] // 8)
        super().__init__(in_shape[2], depth, width, num_classes, **switches)

    @staticmethod
    def input_of(image_shape: Sequence[int]) -> tuple[int, ...]:
        """The first argument for images of shape `image_shape`: that shape."""
        return tuple(image_shape)

    def _layer(self, n_in, width, k_init, bias, rngs):
        return nnx.Conv(n_in, width, (3, 3), use_bias=bias, kernel_init=k_init, rngs=rngs)

    def check_input(self, x_shape: Sequence[int]) -> None:
        """Raise ValueError unless a batch of shape `x_shape` has images of shape `in_shape`."""
        if tuple(x_shape[1:]) != self.in_shape:
            raise ValueError(f"data: images have shape {tuple(x_shape[1:])} but the CNN expects {self.in_shape}")

    def _prepare(self, x):
        if self.pool > 1:
            x = nnx.avg_pool(x, (self.pool, self.pool), strides=(self.pool, self.pool))
        return x

    def _pool(self, h):
        return h.mean(axis=(1, 2))


class _Recurrent(nnx.Module):
    """One recurrent layer over a whole sequence, (batch, T, n_in) -> (batch, T, width), a `lax.scan` over time.

    One kernel W = [W_x; W_h] of shape (n_in + width, gates * width) acts on [x_t, h_{t-1}]. gates = 1: the
    vanilla RNN h_t = activation(x_t W_x + h_{t-1} W_h + b). gates = 4: the LSTM (Hochreiter & Schmidhuber 1997),
    input, forget, cell and output gates, c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t); the forget gate's bias
    starts at 1 (Gers et al. 2000). W_x is drawn as `init` prescribes at scale 1; each gate's block of W_h is
    `init_scale` times a random orthogonal matrix, so every eigenvalue of W_h has modulus `init_scale`: its
    spectral radius rho, which sets how the gradient through time grows or shrinks, like rho^k over k steps
    (Pascanu et al. 2013).
    """

    def __init__(self, n_in: int, width: int, *, gates: int, activation: str, init: str, init_scale: float, rngs):
        w_x = kernel_init(init)(rngs.params(), (n_in, gates * width))
        orthogonal = jax.nn.initializers.orthogonal(init_scale)
        w_h = jnp.concatenate([orthogonal(rngs.params(), (width, width)) for _ in range(gates)], axis=1)
        self.kernel = nnx.Param(jnp.concatenate([w_x, w_h]))
        bias = jnp.zeros(gates * width)
        self.bias = nnx.Param(bias.at[width : 2 * width].set(1.0) if gates == 4 else bias)
        self.width, self.gates, self.activation = width, gates, activation

    def __call__(self, x: jax.Array, nudge: jax.Array | None = None) -> jax.Array:
        """Every h_t, (batch, T, width). `nudge` (batch, T, width), added to each h_t as it is made, is 0 in use;
        the gradient of a loss with respect to it is dL/dh_t (`helpers.diagnostics.time_grad_norms`)."""
        kernel, bias, width = self.kernel[...], self.bias[...], self.width

        def step(carry, inputs):
            (h, c), (x_t, nudge_t) = carry, inputs
            z = jnp.concatenate([x_t, h], axis=-1) @ kernel + bias
            if self.gates == 1:
                h = ACTIVATIONS[self.activation](z) + nudge_t
                return (h, c), h
            i, f, g, o = (z[..., k * width : (k + 1) * width] for k in range(4))
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c) + nudge_t
            return (h, c), h

        zeros = jnp.zeros((x.shape[0], width), x.dtype)
        nudge = jnp.zeros((*x.shape[:2], width), x.dtype) if nudge is None else nudge
        _, hs = jax.lax.scan(step, (zeros, zeros), (jnp.swapaxes(x, 0, 1), jnp.swapaxes(nudge, 0, 1)))
        return jnp.swapaxes(hs, 0, 1)


class RNN(_Net):
    """Vanilla recurrent network on sequences (batch, T, features): `depth` stacked recurrent layers of `width`
    units (the activation, e.g. "tanh", inside the recurrence), then a linear head on the last time step.

    `init_scale` is the spectral radius of every layer's recurrent matrix W_h (see `_Recurrent`); the input
    weights and the head are drawn as `init` prescribes, at scale 1. No BatchNorm.
    """

    block_prefix = "rnn"
    gates = 1

    def __init__(self, in_features: int, depth: int, width: int, num_classes: int, **switches):
        """`in_features` values per time step; `switches` as for MLP (batchnorm must stay off)."""
        self.in_features = _positive_int("in_features", in_features)
        if switches.get("batchnorm"):
            raise ValueError("batchnorm: not for recurrent networks (use batchnorm=False)")
        activation, init = switches.get("activation", "relu"), switches.get("init", "he")
        init_scale = switches.get("init_scale", 1.0)
        _check_switches(activation, init, init_scale)

        def make_layer(i, n_in, width, k_init, bias, rngs):
            return _Recurrent(
                n_in, width, gates=self.gates, activation=activation, init=init, init_scale=init_scale, rngs=rngs
            )

        # the activation acts inside the recurrence, so the blocks around the layers add none
        switches |= dict(activation="linear", make_layer=make_layer)
        super().__init__(in_features, depth, width, num_classes, **switches)
        self.head = nnx.Linear(width, num_classes, kernel_init=kernel_init(init), rngs=switches["rngs"])  # scale 1

    @staticmethod
    def input_of(sequence_shape: Sequence[int]) -> int:
        """The first argument for sequences of shape `sequence_shape` (T, features): the features per step."""
        return int(sequence_shape[-1])

    def check_input(self, x_shape: Sequence[int]) -> None:
        """Raise ValueError unless a batch of shape `x_shape` is (batch, T, in_features)."""
        if len(x_shape) != 3 or x_shape[2] != self.in_features:
            raise ValueError(
                f"data: sequences of shape {tuple(x_shape[1:])}, but the network expects (T, {self.in_features})"
            )

    def _pool(self, h):
        return h[:, -1]


class LSTM(RNN):
    """LSTM network: as `RNN`, with LSTM layers (`_Recurrent` with 4 gates); `activation` is unused."""

    block_prefix = "lstm"
    gates = 4


def _sinusoids(length: int, width: int) -> np.ndarray:
    """The fixed position vectors of Vaswani et al. (2017): sin and cos of position / 10000^(2i / width)."""
    position = np.arange(length)[:, None]
    rate = 1.0 / 10000 ** (np.arange(0, width, 2) / width)
    table = np.zeros((length, width), np.float32)
    table[:, 0::2], table[:, 1::2] = np.sin(position * rate), np.cos(position * rate[: width // 2])
    return table


class _Embed(nnx.Module):
    """Tokens given one-hot, (batch, L, vocab), to vectors (batch, L, width): x W_e plus fixed sinusoidal positions.
    (A one-hot row times W_e is an embedding lookup; the engine's inputs stay float arrays.)"""

    def __init__(self, vocab: int, width: int, k_init, rngs):
        self.kernel = nnx.Param(k_init(rngs.params(), (vocab, width)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.kernel[...] + _sinusoids(x.shape[1], self.kernel.shape[1])


class _TransformerLayer(nnx.Module):
    """One transformer block: multi-head self-attention and an MLP (width -> 4 width -> width, GELU), each with a
    residual connection and a LayerNorm, placed as `norm` says:

    - "post" (Vaswani et al. 2017): x = LN(x + attention(x)); x = LN(x + mlp(x));
    - "pre" (Xiong et al. 2020): x = x + attention(LN(x)); x = x + mlp(LN(x)).

    Attention is the textbook softmax(q k^T / sqrt(d)) v per head (tested against `jax.nn.dot_product_attention`);
    with `qk_norm`, q and k are LayerNorm-ed per head first (Dehghani et al. 2023), which bounds the logits.
    """

    def __init__(self, width: int, heads: int, norm: str, qk_norm: bool, k_init, rngs):
        d = width // heads
        self.qkv = nnx.Linear(width, 3 * width, use_bias=False, kernel_init=k_init, rngs=rngs)
        self.out = nnx.Linear(width, width, use_bias=False, kernel_init=k_init, rngs=rngs)
        self.up = nnx.Linear(width, 4 * width, kernel_init=k_init, rngs=rngs)
        self.down = nnx.Linear(4 * width, width, kernel_init=k_init, rngs=rngs)
        self.norm1, self.norm2 = nnx.LayerNorm(width, rngs=rngs), nnx.LayerNorm(width, rngs=rngs)
        self.q_norm = nnx.LayerNorm(d, rngs=rngs) if qk_norm else None
        self.k_norm = nnx.LayerNorm(d, rngs=rngs) if qk_norm else None
        self.heads, self.norm = heads, norm

    def logits(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The attention logits q k^T / sqrt(d), (batch, heads, L, L), and the values v, (batch, L, heads, d)."""
        batch, length, width = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(batch, length, 3 * self.heads, width // self.heads), 3, axis=2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(q.shape[-1]).astype(x.dtype), v

    def attend(self, x: jax.Array) -> jax.Array:
        logits, v = self.logits(x)
        mixed = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)
        return self.out(mixed.reshape(x.shape))

    def mlp(self, x: jax.Array) -> jax.Array:
        return self.down(jax.nn.gelu(self.up(x)))

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.norm == "pre":
            x = x + self.attend(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attend(x))
        return self.norm2(x + self.mlp(x))


class Transformer(_Net):
    """A small transformer encoder on token sequences (one-hot, (batch, L, vocab)): an embedding with fixed
    sinusoidal positions, `depth` transformer blocks (`_TransformerLayer`: `heads`, `norm` "pre" | "post",
    `qk_norm`), with pre-LN a last LayerNorm, and a linear head at every position (one label per position).

    Every kernel is drawn as `init` and `init_scale` prescribe. The blocks are always residual; no BatchNorm.
    """

    block_prefix = "block"

    def __init__(self, in_shape: Sequence[int], depth: int, width: int, num_classes: int, **switches):
        """`in_shape` (L, vocab); `heads`, `norm`, `qk_norm` as in ModelConfig; the other switches as for MLP."""
        in_shape = tuple(int(n) for n in in_shape)
        heads, norm, qk_norm = switches.pop("heads", 4), switches.pop("norm", "pre"), switches.pop("qk_norm", False)
        if len(in_shape) != 2:
            raise ValueError(f"in_shape must be (length, vocab), got {in_shape!r}")
        if switches.get("batchnorm"):
            raise ValueError("batchnorm: not for transformers (they use LayerNorm; use batchnorm=False)")
        if _positive_int("heads", heads) and width % heads:
            raise ValueError(f"heads must divide width, got heads={heads}, width={width}")
        if norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {norm!r}")
        self.in_shape = in_shape

        def make_layer(i, n_in, width, k_init, bias, rngs):  # block 0 is the embedding
            if i == 0:
                return _Embed(n_in, width, k_init, rngs)
            return _TransformerLayer(width, heads, norm, qk_norm, k_init, rngs)

        switches |= dict(residual=False, make_layer=make_layer)  # the layers hold their own residual connections
        super().__init__(in_shape[1], depth + 1, width, num_classes, **switches)
        # pre-LN's residual stream is never normalized inside the blocks: a last LayerNorm before the head, as in
        # Xiong et al. (2020) and GPT-2; post-LN's blocks already end with one
        self.final_norm = nnx.LayerNorm(width, rngs=switches["rngs"]) if norm == "pre" else None

    @staticmethod
    def input_of(sequence_shape: Sequence[int]) -> tuple[int, ...]:
        """The first argument for token sequences of shape `sequence_shape` (L, vocab): that shape."""
        return tuple(sequence_shape)

    def _pool(self, h):
        return h if self.final_norm is None else self.final_norm(h)

    def layer_names(self) -> list[str]:
        """Names of the weight layers, input -> output: the embedding, the blocks, the head."""
        return ["embed", *[f"block{i}" for i in range(1, self.depth)], "head"]

    def check_input(self, x_shape: Sequence[int]) -> None:
        """Raise ValueError unless a batch of shape `x_shape` is (batch, L, vocab), with (L, vocab) = `in_shape`."""
        if tuple(x_shape[1:]) != self.in_shape:
            raise ValueError(f"data: sequences of shape {tuple(x_shape[1:])}, the network expects {self.in_shape}")


@dataclasses.dataclass(frozen=True)
class ModelConfig(Config):
    """The model switches a slider may turn; `build` makes the network. Prints and parses back exactly, every field."""

    kind: str = setting("mlp", "choice", choices=("mlp", "cnn", "rnn", "lstm", "transformer"), printed=True)
    """"mlp" | "cnn" (images); "rnn" | "lstm" (sequences: init_scale is the recurrent matrix's spectral radius);
    "transformer" (token sequences, one-hot: depth transformer blocks after an embedding)."""
    depth: int = setting(8, "int", low=1, printed=True, control=("int", 1, 32, 1))
    width: int = setting(64, "int", low=1, printed=True, control=("options", (8, 16, 32, 64, 128, 256)))
    activation: str = setting("relu", "choice", choices=tuple(ACTIVATIONS), printed=True, control=("dropdown",))
    init: str = setting("he", "choice", choices=tuple(INITS), printed=True, control=("dropdown",))
    # a log slider: tanh's critical 1/sqrt(2), ReLU's 1 and a 10x-too-large start all fit, finely
    init_scale: float = setting(1.0, "float", low=0, above=True, printed=True, control=("log", -1, 1.5))
    batchnorm: bool = setting(False, "bool", printed=True, control=("checkbox",))
    residual: bool = setting(False, "bool", printed=True, control=("checkbox",))
    zero_init_residual: bool = setting(False, "bool", control=("checkbox",))
    """Every residual block starts as the identity: x + alpha * block(x), alpha learnable from 0 (SkipInit).
    Without `residual` there are no residual blocks and it changes nothing."""
    seed: int = setting(0, "int", low=0, printed=True, control=("int", 0, 20, 1))
    """The initial weights: nnx.Rngs(seed)."""
    heads: int = setting(4, "int", low=1)
    """Transformer only: attention heads (they must divide width)."""
    norm: str = setting("pre", "choice", choices=("pre", "post"), control=("dropdown",))
    """Transformer only: where each block's LayerNorm sits, "pre" (Xiong et al. 2020) or "post" (Vaswani et al.
    2017). Unrelated to batchnorm."""
    qk_norm: bool = setting(False, "bool", control=("checkbox",))
    """Transformer only: LayerNorm on queries and keys before their dot product (Dehghani et al. 2023)."""

    def build(self, image_shape: Sequence[int], num_classes: int = 10) -> MLP | CNN | RNN:
        """The network for inputs of shape `image_shape`, e.g. `data.image_shape`: (H, W, C) for images, (T, features)
        for sequences; `num_classes` outputs (1 for a regression target, as `data.num_classes` says)."""
        return _built_by(self._make(image_shape, num_classes, nnx.Rngs(self.seed)), self)

    def build_seeds(self, seeds: Sequence[int], image_shape: Sequence[int], num_classes: int = 10) -> list[MLP | CNN]:
        """One network per seed, each the one `replace(seed=s).build(...)` makes (tested), built together.

        The modules are made once, with every array batched over the seeds (`jax.vmap`), then split per seed:
        NNX's module construction, not the random draws, is what makes an eager build cost 30-40 ms.
        """
        graphdef = None

        def init(key):
            nonlocal graphdef
            graphdef, state = nnx.split(self._make(image_shape, num_classes, nnx.Rngs(key)))
            return state

        keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
        stacked = jax.tree.map(np.asarray, jax.vmap(init)(keys))  # on the CPU, free; then one slice per seed
        return [
            _built_by(
                nnx.merge(graphdef, jax.tree.map(lambda a, i=i: jnp.asarray(a[i]), stacked)), self.replace(seed=int(s))
            )
            for i, s in enumerate(seeds)
        ]

    def _make(self, image_shape: Sequence[int], num_classes: int, rngs: nnx.Rngs) -> MLP | CNN:
        net = {"mlp": MLP, "cnn": CNN, "rnn": RNN, "lstm": LSTM, "transformer": Transformer}[self.kind]
        switches = dict(
            activation=self.activation,
            init_scale=self.init_scale,
            init=self.init,
            batchnorm=self.batchnorm,
            residual=self.residual,
            zero_init_residual=self.zero_init_residual,
            rngs=rngs,
        )
        if self.kind == "transformer":
            switches |= dict(heads=self.heads, norm=self.norm, qk_norm=self.qk_norm)
        return net(net.input_of(image_shape), self.depth, self.width, num_classes, **switches)


_BUILT_BY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _built_by(net: MLP | CNN, config: ModelConfig) -> MLP | CNN:
    _BUILT_BY[net] = config
    return net
