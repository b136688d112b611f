"""Training, read top to bottom: the config, what a run records, the loop, several seeds, evaluation::

    history = train(model, data, TrainConfig(lr=0.1, clip_norm=1.0))     # never raises on divergence
    runs = train_seeds(ModelConfig(depth=8), data, config, seeds=range(5))

The pieces it uses live beside it: the Optax chain in `helpers.optimizer`, the compiled step in `helpers.step`.
The step is compiled once per model structure and optimizer structure and cached, so moving a slider (a new lr,
clip_norm, l2, weight_decay or warmup_steps) reuses the compiled code: those values are arrays in the optimizer
state (`optax.inject_hyperparams`), not constants in the program.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import queue
import threading
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from helpers.compiles import compiled_cache
from helpers.config import Config, setting
from helpers.devices import check_devices, make_mesh, replicated
from helpers.models import CNN
from helpers.optimizer import adaptive_grad_clip, hyperparameters, make_optimizer, warmup_factor
from helpers.precision import DTYPES
from helpers.step import REASONS, Spec, compiled_chunk, unpack

__all__ = [
    "SEEDS",
    "History",
    "SeedRuns",
    "TrainConfig",
    "adaptive_grad_clip",
    "batch_indices",
    "evaluate",
    "hyperparameters",
    "is_compiled",
    "make_optimizer",
    "mean_range",
    "train",
    "train_seeds",
    "warmup_factor",
]

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
    steps: int = setting(200, "int", low=1, printed=True, control=("int", 10, 3000, 10))
    seed: int = setting(0, "int", low=0, control=("int", 0, 20, 1))
    """The order of the batches; the initial weights' seed is ModelConfig.seed."""
    chunk_steps: int = setting(50, "int", low=1)
    """Steps per compiled call (MLP) and per `on_chunk` report."""
    skip_nonfinite: bool = setting(False, "bool")
    """Skip steps whose gradient is not finite (optax.apply_if_finite) instead of stopping."""
    devices: int = setting(1, "int", low=1)
    """Data parallelism: each batch split over the first `devices` devices, parameters replicated (helpers.devices)."""
    sync_batchnorm: bool = setting(True, "bool", control=("checkbox",))
    """With devices > 1: BatchNorm statistics over the whole batch (True) or over each device's rows (False)."""
    precision: str = setting("float32", "choice", choices=tuple(DTYPES), control=("dropdown",))
    """The dtype of the forward and backward passes; the parameters stay float32 (helpers.precision)."""
    loss_scale: float | str | None = setting(
        None, "float", low=0, above=True, optional=True, words=("dynamic",), control=("log", 0, 6, 1024.0)
    )
    """None: no loss scaling. A number S: the loss times S before differentiating, the gradient divided by S after
    (a new S compiles nothing). "dynamic": S from 2^15, halved with the step skipped when a gradient is not finite,
    doubled after 200 finite steps in a row; a skipped step is not a divergence."""

    def __post_init__(self):
        super().__post_init__()
        if self.devices > 1 and not self.sync_batchnorm and (self.precision != "float32" or self.loss_scale):
            raise ValueError("precision and loss_scale need sync_batchnorm=True when devices > 1")
        if self.batch_size % self.devices:
            raise ValueError(
                f"devices must divide batch_size (each device gets batch_size / devices examples), "
                f"got devices={self.devices}, batch_size={self.batch_size}"
            )


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
    skipped: np.ndarray  # (steps,) bool: non-finite gradient skipped (skip_nonfinite=True or loss_scale="dynamic")
    lr: np.ndarray  # (steps,) learning rate after warmup
    diverged_at: int | None = None  # first step whose loss, gradient or new parameters are not finite
    diverged_layer: str | None = None  # where the non-finite values began (see `_blame`)
    diverged_reason: str | None = None  # "loss" | "gradient" | "parameters"
    loss_scale: np.ndarray | None = None  # (steps,) the loss scale S each step used (1 without loss scaling)

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


def _spec(model: nnx.Module, config: TrainConfig) -> Spec:
    """What of this run the compiled program depends on. The training policy lives here: an MLP runs a chunk of
    steps inside one `lax.scan`; a CNN runs one step per call, because XLA:CPU runs a convolution's gradient
    inside a loop 20-70x slower than outside one (jax-ml/jax#12868; measured in benchmarks/)."""
    clip_mode = config.clip_mode if config.clip_norm is not None else None
    sync = config.sync_batchnorm or config.devices == 1  # on one device, both are the same program
    scan = not isinstance(model, CNN)
    scaling = None if config.loss_scale is None else "dynamic" if config.loss_scale == "dynamic" else "fixed"
    return Spec(
        config.optimizer, clip_mode, config.skip_nonfinite, scan, config.devices, sync, config.precision, scaling
    )


def is_compiled(model: nnx.Module, config: TrainConfig) -> bool:
    """Has `train` compiled the step for this model's structure and this optimizer already? (Then it reuses it.)"""
    return (nnx.split(model, nnx.Param, ...)[0], _spec(model, config)) in compiled_chunk


@compiled_cache
def _forward_ok(graphdef):
    """jit (params, rest, x) -> per layer (input -> output, then the logits): is the forward signal finite?

    Run only after a divergence (in the step it took ~13% of the small MLP's step time): when a run stops because
    its loss is not finite, the model still holds the parameters and BatchNorm statistics from before that step,
    so replaying that step's forward pass on its batch gives exactly the per-layer flags.
    """

    def forward_ok(params, rest, x):
        model = nnx.merge(graphdef, params, rest, copy=True)
        hidden = model.hidden(x)
        finite = jnp.isfinite(hidden).all(axis=tuple(range(1, hidden.ndim)))
        return jnp.concatenate([finite, jnp.isfinite(model.readout(hidden[-1])).all()[None]])

    return jax.jit(forward_ok)


@functools.lru_cache(maxsize=64)  # a slider move asks for the same batches again
def _batch_indices(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """(steps, batch_size) example indices: shuffled epochs without replacement, remainder dropped. Read-only."""
    per_epoch = n // batch_size
    rng = np.random.default_rng(seed)
    epochs = [rng.permutation(n)[: per_epoch * batch_size] for _ in range(-(-steps // per_epoch))]
    idx = np.concatenate(epochs).reshape(-1, batch_size)[:steps].astype(np.int32)
    idx.setflags(write=False)
    return idx


def batch_indices(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """The example indices of a run's batches, (steps, batch_size): what `train` uses for `TrainConfig.seed`."""
    return _batch_indices(n, batch_size, steps, seed)


def train(model: nnx.Module, data, config: TrainConfig = TrainConfig(), *, on_chunk=None) -> History:
    """Train `model` in place on `data.x_train, data.y_train`; never raises on divergence (see History).

    `on_chunk(history_so_far)` is called after every `config.chunk_steps` steps. The model's arrays are handed to
    the compiled step and replaced by new ones (donated, so no memory is copied): a module that shares them, such
    as an `nnx.clone` made before, loses them; copy its state (`jax.tree.map(jnp.copy, ...)`) to keep it.
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
    x, y = np.asarray(data.x_train, np.float32), _targets(data.y_train)
    model.check_input(x.shape)
    _check_targets(model, x, y)
    if config.batch_size > len(x):
        raise ValueError(f"batch_size must be <= the number of training examples ({len(x)}), got {config.batch_size}")
    check_devices(config.devices)

    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    chunk = config.chunk_steps
    spec = _spec(model, config)
    runner, init_optimizer = compiled_chunk(graphdef, spec)

    n_chunks = -(-config.steps // chunk)
    idx = _batch_indices(len(x), config.batch_size, n_chunks * chunk, config.seed).reshape(n_chunks, chunk, -1)
    active = (np.arange(n_chunks * chunk) < config.steps).reshape(n_chunks, chunk)
    carry = (params, rest, init_optimizer(params, hyperparameters(config)), jnp.array(False))
    x_dev, y_dev = jnp.asarray(x), jnp.asarray(y)
    if config.devices > 1:  # every device holds the parameters and the data set; `runner` splits each batch
        on_mesh = replicated(make_mesh(config.devices))
        carry, x_dev, y_dev = jax.device_put((carry, x_dev, y_dev), on_mesh)
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
                    x_t = x_dev[idx.reshape(-1, idx.shape[-1])[t]]
                    ok = np.asarray(_forward_ok(graphdef)(carry[0], carry[1], x_t))
                    history.diverged_layer = _blame(
                        "loss", ok, history.layer_grad_norms[t], history.update_ratio, t, history.layer_names
                    )
                yield history
                if history.diverged_at is not None:
                    return
        finally:
            if config.devices > 1:  # the model leaves as it came, on the default device
                carry = jax.device_put(carry, jax.devices()[0])
            nnx.update(model, carry[0], carry[1])

    return run()


def _targets(y) -> np.ndarray:
    """Labels as int32, float targets (regression) as float32."""
    y = np.asarray(y)
    return y.astype(np.float32 if np.issubdtype(y.dtype, np.floating) else np.int32)


def _check_targets(model: nnx.Module, x: np.ndarray, y: np.ndarray) -> None:
    """One target per example: an integer label in [0, outputs) (or one per position), or a float value (regression,
    one output)."""
    outputs = model.head.out_features
    if len(y) != len(x):
        raise ValueError(f"data: {len(y)} targets for {len(x)} examples")
    if np.issubdtype(y.dtype, np.floating):
        if y.ndim != 1 or outputs != 1 or not np.isfinite(y).all():
            raise ValueError(
                f"data: float targets need one finite value per example and a model with 1 output, "
                f"got targets of shape {y.shape} and {outputs} outputs"
            )
    elif y.ndim not in (1, 2) or y.min() < 0 or y.max() >= outputs:
        raise ValueError(f"data: need one integer label in [0, {outputs}) per example (or per position)")


def _history(config: TrainConfig, names: list[str], rows: list[tuple[np.ndarray, np.ndarray]]) -> History:
    """The History of the chunks so far (each a packed StepMetrics), cut after the first step that was not ok."""
    m = unpack(*(np.concatenate(part) for part in zip(*rows, strict=True)))
    ok = m.ok.astype(bool)
    bad = np.flatnonzero(~ok)
    end = int(bad[0]) + 1 if len(bad) else len(ok)
    h = History(
        config=config,
        layer_names=list(names),
        loss=m.loss[:end],
        grad_norm=m.grad_norm[:end],
        layer_grad_norms=m.layer_grad_norms[:end],
        update_ratio=np.where(ok[:end, None], m.update_ratio[:end], np.nan),  # no update was applied
        clipped=m.clipped[:end].astype(bool),
        skipped=m.skipped[:end].astype(bool),
        lr=m.lr[:end],
        loss_scale=m.loss_scale[:end],
    )
    if len(bad):
        t = int(bad[0])
        h.diverged_at = t
        h.diverged_reason = REASONS[int(m.reason[t])]
        if h.diverged_reason != "loss":  # a "loss" divergence is blamed by `train`, which replays the forward pass
            # the step's own update ratios (History hides them: that update was not applied)
            h.diverged_layer = _blame(h.diverged_reason, None, h.layer_grad_norms[t], m.update_ratio, t, names)
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


@compiled_cache
def _predictor(graphdef):
    """jit (state, x) -> the model's outputs, for one model structure."""
    return jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))


def evaluate(model: nnx.Module, x, y, batch_size: int = 1024) -> float:
    """Accuracy of `model` on (x, y) in evaluation mode (BatchNorm uses its running averages); for float targets
    (regression) the mean squared error instead.

    Leaves the model in evaluation mode: call `model.train()` before using it for training-mode statistics
    (`train` does so itself).
    """
    x, y = np.asarray(x, np.float32), _targets(y)
    model.check_input(x.shape)
    model.eval()
    graphdef, state = nnx.split(model)
    predict = _predictor(graphdef)
    outputs = [np.asarray(predict(state, x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    if np.issubdtype(y.dtype, np.floating):
        return float(np.mean(np.square(np.concatenate(outputs).reshape(y.shape) - y)))
    correct = sum(
        int((out.argmax(-1) == y[i * batch_size : (i + 1) * batch_size]).sum()) for i, out in enumerate(outputs)
    )
    return correct / y.size


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
            first, last = min(h.diverged_at for h in self.histories), max(h.diverged_at for h in self.histories)
            return (
                f"{n} seeds, all diverged (at step {first})"
                if first == last
                else (f"{n} seeds, all diverged (at steps {first}-{last})")
            )
        loss = self.final_loss[np.isfinite(self.final_loss)]
        if not loss.size:  # e.g. skip_nonfinite: no seed stopped, every loss is NaN
            return f"{head}; no finite final loss"
        return f"{head}; final loss {loss.mean():.3g} (min {loss.min():.3g}, max {loss.max():.3g})"


def mean_range(values, fmt: str = "{:.1%}") -> str:
    """A quantity measured once per seed, as its mean and its range: '97.5% (seeds: 96.9% to 98.1%)'."""
    values = np.asarray(values, float)
    return f"{fmt.format(values.mean())} (seeds: {fmt.format(values.min())} to {fmt.format(values.max())})"


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
    XLA:CPU runs a vmapped convolution as a slow grouped one). The threads take the runs a chunk at a time
    from one shared queue, so all seeds progress together and no core idles while a run still waits (5 seeds
    split 3 + 2 over 2 threads took 1.4x longer). `on_chunk(runs_so_far)` is called on the calling thread
    whenever every seed has finished another chunk, and once at the end with the finished SeedRuns; a caller
    slower than the runs (a redraw, a loaded machine) sees only the latest state: reports never queue up.
    """
    seeds = _check_seeds(seeds)
    models = model_config.build_seeds(seeds, data.image_shape, data.num_classes)
    runs = [_chunks(m, data, config.replace(seed=s)) for m, s in zip(models, seeds, strict=True)]
    latest: list[History | None] = [None] * len(seeds)
    reports: queue.SimpleQueue = queue.SimpleQueue()
    cancelled = threading.Event()

    pending: queue.SimpleQueue = queue.SimpleQueue()  # runs waiting for their next chunk, in turn
    for i in range(len(seeds)):
        pending.put(i)

    def work() -> None:
        """Take the next waiting run, advance it one chunk, put it back unless it has ended; stop when none waits
        (every run left is then held by another thread) or the caller has gone."""
        try:
            while not cancelled.is_set():
                try:
                    i = pending.get_nowait()
                except queue.Empty:
                    return
                latest[i] = next(runs[i])
                if latest[i].done:
                    runs[i].close()  # the model now holds the trained parameters
                else:
                    pending.put(i)
                reports.put(True)
        finally:
            reports.put(None)

    workers = min(len(seeds), os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(work) for _ in range(workers)]
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
    for run in runs:
        run.close()  # those a cancelled call left unfinished
    for f in futures:
        f.result()  # a worker's error is raised here
    result = SeedRuns(model_config, config, seeds, list(latest), models)
    if on_chunk is not None:
        on_chunk(result)
    return result


def _steps_done(history: History) -> int:
    """Steps run, counting a diverged run as complete (it will not run more)."""
    return history.config.steps if history.done else history.steps
