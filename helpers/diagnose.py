"""Why did this run fail? `diagnose` names the likely cause of a failed or unhealthy run, with measured evidence and
a config change that should cure it::

    history = train(net, data, config)
    d = diagnose(history, net, data)       # d.cause, d.evidence, d.fix; print(d) for the report
    train(ModelConfig.parse(...).replace(**model_part).build(...), data, config.replace(**train_part))

A run is healthy when its losses stay finite and its last losses average below half its first loss and below
half the loss of a guess that ignores the input: ln(classes) for labels, the targets' variance for a regression.
For a run that is not, the causes are tried from the root outwards, each by a measurement:

1. batchnorm_mode: BatchNorm normalizes over fewer than `MIN_BATCH_ROWS` rows, so its statistics are noise;
2. input_scale: the inputs' root mean square is far from 1 (outside `INPUT_RMS`);
3. init_scale: at initialisation the activations' RMS or the gradient norms change more than `GROWTH` times from
   the first hidden layer to the last, and init_scale is not the critical value (notebook 02); not tried with
   BatchNorm, which renormalizes every layer;
4. low_precision: at initialisation the gradient in float16/bfloat16 (with the run's loss scale) is not finite
   where the float32 one is;
5. dead_units: the run ended with a layer whose ReLU units are at least `DEAD` zero for every example; the cure
   scales lr so that the first step moves no layer's weights by more than `UPDATE_RATIO` of their norm;
6. learning_rate: the loss was not finite or rose above `RISE` times its first value, or (SGD, momentum) lr is
   above the stable limit that the sharpness lambda_max at initialisation gives, 2 / lambda_max for SGD
   (notebook 03); the fix is lr = 1 / lambda_max (lr / 4 if lr is already below it; lr / 10 for Adam).

What a cause needs is measured only when it is tried, so a healthy run costs nothing.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from helpers.compiles import compiled_cache
from helpers.diagnostics import activation_stats, activations_and_grads
from helpers.models import INITS
from helpers.precision import INITIAL_SCALE
from helpers.step import loss_and_grads, loss_value
from helpers.train import batch_indices

__all__ = ["CAUSES", "Diagnosis", "critical_init_scale", "diagnose", "sharpness"]

CAUSES = ("learning_rate", "init_scale", "input_scale", "batchnorm_mode", "low_precision", "dead_units", "none")
MIN_BATCH_ROWS = 8  # BatchNorm statistics over fewer rows are mostly noise: sd of the mean >= sd / sqrt(8)
INPUT_RMS = (0.05, 10.0)  # inputs' root mean square outside this range: far from unit scale
GROWTH = 100.0  # activation RMS or gradient norm changing more than this over the depth: geometric
DEAD = 0.9  # a layer with this share of units zero on every example has died
UPDATE_RATIO = 0.03  # the largest ||update|| / ||W|| a first step may take (healthy runs' first steps here: 1-5 %)
RISE = 1.5  # the loss rising above this multiple of its first value: the steps overshoot
BATCH = 256  # examples the measurements use
MOMENTUM = 0.9  # helpers.optimizer's heavy-ball coefficient


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """The likely cause of a run's trouble (one of CAUSES), the measurements behind it, and a cure.

    `fix` holds ModelConfig / TrainConfig field changes (e.g. {"lr": 0.02}); it is empty where no config field cures
    the cause (input_scale: the data must change, and `headline` says how). `failed`: the run failed or is
    unhealthy (False only for a healthy run; a failed run whose cause is not found has cause "none" too).
    """

    cause: str
    headline: str
    evidence: list[str]
    fix: dict
    failed: bool = True

    def apply(self, model_config, train_config):
        """(model_config, train_config) with `fix` applied, each field to the config that has it."""
        names = {f.name for f in dataclasses.fields(model_config)}
        unknown = set(self.fix) - names - {f.name for f in dataclasses.fields(train_config)}
        if unknown:
            raise ValueError(f"fix: {sorted(unknown)} are fields of neither config")
        model_fix = {k: v for k, v in self.fix.items() if k in names}
        train_fix = {k: v for k, v in self.fix.items() if k not in names}
        return model_config.replace(**model_fix), train_config.replace(**train_fix)

    def __str__(self) -> str:
        lines = [f"diagnosis: {self.cause}: {self.headline}", *(f"  - {e}" for e in self.evidence)]
        if self.fix:
            lines.append("  fix: " + ", ".join(f"{k}={v!r}" for k, v in self.fix.items()))
        return "\n".join(lines)

    @property
    def line(self) -> str:
        """One line for a status bar: the cause, the headline and the fix."""
        fix = f" (try {', '.join(f'{k}={v!r}' for k, v in self.fix.items())})" if self.fix else ""
        return f"{self.cause}: {self.headline}{fix}"


def critical_init_scale(activation: str, init: str) -> float:
    """The init_scale at which a deep MLP neither explodes nor vanishes on average: Var(W) * fan = 2 for ReLU
    (and GELU, approximately), 1 for tanh and linear (the edge of chaos without biases, notebook 02)."""
    target = 2.0 if activation in ("relu", "gelu") else 1.0
    return math.sqrt(target / INITS[init][0])


def diagnose(history, model, data) -> Diagnosis:
    """The likely cause of `history`'s failure, measured on `model` (the network the run trained) and `data`."""
    _check(history, model, data)
    config, model_config = history.config, model.config
    x, y = data.x_train[:BATCH], data.y_train[:BATCH]
    first, last, diverged = _losses(history)
    if not diverged and last < 0.5 * min(first, _guess_loss(data)):
        fell = f"the loss fell from {first:.3g} to {last:.3g} (mean of the last steps)"
        return Diagnosis("none", "the run is healthy", [fell], {}, failed=False)
    how = f"diverged at step {history.diverged_at}" if diverged else f"the loss went from {first:.3g} to {last:.3g}"
    for tried in (_batchnorm_mode, _input_scale, _init_scale, _low_precision, _dead_units, _learning_rate):
        found = tried(history, model, model_config, config, data, x, y)
        if found is not None:
            return dataclasses.replace(found, evidence=[how, *found.evidence])
    return Diagnosis("none", "no cause found among the ones diagnose knows", [how], {})


def _check(history, model, data) -> None:
    if getattr(history, "loss", None) is None or len(history.loss) == 0:
        raise ValueError("history: needs a History of at least one step (from helpers.train.train)")
    if getattr(model, "config", None) is None:
        raise ValueError("model: needs a network built by ModelConfig.build, which records its config on it")
    if model.layer_names() != list(history.layer_names):
        raise ValueError(
            f"model: its layers {model.layer_names()} are not the history's {list(history.layer_names)}; "
            "pass the network the run trained"
        )
    try:
        model.check_input((1, *np.shape(data.x_train)[1:]))
    except (ValueError, AttributeError) as error:
        raise ValueError(f"data: does not fit the model ({error})") from None


def _guess_loss(data) -> float:
    """The loss of a guess that ignores the input: uniform over the classes, or the targets' mean (regression)."""
    y = np.asarray(data.y_train)
    return float(np.var(y)) if np.issubdtype(y.dtype, np.floating) else math.log(data.num_classes)


def _losses(history) -> tuple[float, float, bool]:
    """The first loss, the mean of the last tenth of the steps (at least 1), and whether the run diverged."""
    loss = np.asarray(history.loss, np.float64)
    diverged = history.diverged_at is not None or not np.isfinite(loss).all()
    tail = loss[-max(1, len(loss) // 10) :]
    return float(loss[0]), float(np.mean(tail)), diverged


def _batchnorm_mode(history, model, model_config, config, data, x, y) -> Diagnosis | None:
    if not model_config.batchnorm:
        return None
    per_statistic = config.batch_size // (1 if config.sync_batchnorm else config.devices)
    rows = per_statistic * (int(np.prod(data.image_shape[:2])) if model_config.kind == "cnn" else 1)
    if rows >= MIN_BATCH_ROWS:
        return None
    net = model_config.build(data.image_shape, data.num_classes)
    alone = np.asarray(net.hidden(jnp.asarray(x[:per_statistic])))[0]
    together = np.asarray(net.hidden(jnp.asarray(x)))[0][:per_statistic]
    change = np.linalg.norm(alone - together) / np.linalg.norm(together)
    return Diagnosis(
        "batchnorm_mode",
        f"BatchNorm's statistics come from {rows} row{'s' * (rows > 1)} per batch",
        [
            f"the first layer's output for the same {per_statistic} digit(s) changes by {change:.0%} between a batch "
            f"of {per_statistic} and a batch of {len(x)}: batch statistics of {rows} row(s) are noise"
            + (" (one row: every normalized value is 0)" if rows == 1 else "")
        ],
        {"batch_size": 64 * config.devices},
    )


def _input_scale(history, model, model_config, config, data, x, y) -> Diagnosis | None:
    rms = float(np.sqrt(np.mean(np.square(data.x_train, dtype=np.float64))))
    low, high = INPUT_RMS
    if low <= rms <= high:
        return None
    mean, std = float(np.mean(data.x_train)), float(np.std(data.x_train))
    return Diagnosis(
        "input_scale",
        f"the inputs' RMS is {rms:.3g}, far from 1: standardize the data, x -> (x - {mean:.3g}) / {std:.3g} "
        "(the training set's mean and standard deviation)",
        [
            f"inputs: mean {mean:.3g}, standard deviation {std:.3g}, root mean square {rms:.3g} "
            f"(expected between {low:g} and {high:g})"
        ],
        {},
    )


def _init_scale(history, model, model_config, config, data, x, y) -> Diagnosis | None:
    critical = critical_init_scale(model_config.activation, model_config.init)
    other_meaning = model_config.kind in ("rnn", "lstm", "transformer")  # init_scale means other things there
    if (
        model_config.depth < 3
        or model_config.batchnorm
        or other_meaning
        or abs(model_config.init_scale / critical - 1) < 0.1
    ):
        return None  # BatchNorm renormalizes every layer's output: no geometric growth (notebook 06)
    values = activations_and_grads(model_config.build(data.image_shape, data.num_classes), x, y)
    rms = np.array([np.sqrt(np.mean(np.square(h, dtype=np.float64))) for h in values.activations])
    grads = np.array([np.linalg.norm(g) for g in values.grads[:-1]])  # hidden kernels: the head has no layer above
    act_growth, grad_growth = rms[-1] / rms[0], grads[0] / grads[-1]
    if not any(g > GROWTH or g < 1 / GROWTH or not np.isfinite(g) for g in (act_growth, grad_growth)):
        return None
    names = model.layer_names()
    per_layer = act_growth ** (1 / (len(rms) - 1))
    return Diagnosis(
        "init_scale",
        f"at initialisation the signal {'grows' if per_layer > 1 else 'shrinks'} geometrically with depth",
        [
            f"activation RMS from {rms[0]:.3g} at {names[0]} to {rms[-1]:.3g} at {names[len(rms) - 1]}: "
            f"x{per_layer:.3g} per layer",
            f"gradient norm from {grads[-1]:.3g} at {names[len(grads) - 1]} to {grads[0]:.3g} at {names[0]} "
            "(output side to input side)",
            f"init_scale = {model_config.init_scale:g}; the critical value for {model_config.activation} with "
            f"{model_config.init} init is {critical:.3g}",
        ],
        {"init_scale": float(f"{critical:.3g}")},
    )


def _low_precision(history, model, model_config, config, data, x, y) -> Diagnosis | None:
    if config.precision == "float32":
        return None
    scale = INITIAL_SCALE if config.loss_scale == "dynamic" else config.loss_scale
    initial = ("at initialisation", model_config.build(data.image_shape, data.num_classes), x, y)
    if history.diverged_at is None:
        last = ("at the end", model, x, y)
    else:  # the batch the run stopped on: the run's batch order is fixed by its seed
        step = history.diverged_at
        idx = batch_indices(len(data.x_train), config.batch_size, step + 1, config.seed)[step]
        last = (f"at step {step}, on its batch,", model, data.x_train[idx], data.y_train[idx])
    where = ((when, _overflow(net, config.precision, scale, bx, by)) for when, net, bx, by in (initial, last))
    when, largest = next(((w, g) for w, g in where if g is not None), (None, None))  # stops at the first found
    if when is None:
        return None
    limit = float(jnp.finfo(config.precision).max)
    evidence = [
        f"{when} the {config.precision} gradient is not finite; the float32 one is (largest entry {largest:.3g})"
    ]
    fix = {"precision": "float32"}
    if scale is not None:
        evidence.append(
            f"loss scale {scale:.3g} multiplies every value of the backward pass: the largest gradient entry "
            f"becomes {largest * scale:.3g}; {config.precision}'s largest number is {limit:.6g}"
        )
        if config.loss_scale != "dynamic":
            fix = {"loss_scale": "dynamic"}
    return Diagnosis("low_precision", f"{config.precision} overflows", evidence, fix)


def _overflow(net, precision: str, scale: float | None, x, y) -> float | None:
    """The float32 gradient's largest entry if the `precision` one (loss scale `scale`) is not finite where the
    float32 one is; else None."""
    net.train()
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    low_ok, high_ok, largest = _grads(graphdef, precision, scale is not None)(params, rest, x, y, scale or 1.0)
    return float(largest) if bool(high_ok) and not bool(low_ok) else None


@compiled_cache
def _grads(graphdef, precision: str, scaled: bool):
    """(the `precision` gradient is finite (with loss scale `scale` if `scaled`), the float32 one is, the float32
    one's largest absolute entry), in one program: one compilation."""

    def finite(grads):
        return jnp.all(jnp.array([jnp.isfinite(g).all() for g in jax.tree.leaves(grads)]))

    def measure(params, rest, x, y, scale):
        low = loss_and_grads(graphdef, params, rest, x, y, precision=precision, scale=scale if scaled else None)[2]
        high = loss_and_grads(graphdef, params, rest, x, y)[2]
        return finite(low), finite(high), optax.tree.max(jax.tree.map(jnp.abs, high))

    return jax.jit(measure)


def _dead_units(history, model, model_config, config, data, x, y) -> Diagnosis | None:
    if model_config.activation != "relu" or history.diverged_at is not None:
        return None
    end = activation_stats(model, x).dead_fraction
    if end.max() < DEAD:
        return None
    start = activation_stats(model_config.build(data.image_shape, data.num_classes), x).dead_fraction
    worst = int(np.argmax(end))
    first_step = float(np.nanmax(history.update_ratio[0]))
    name = model.layer_names()[worst]
    return Diagnosis(
        "dead_units",
        f"{end[worst]:.0%} of {name}'s ReLU units output 0 for every example: no gradient reaches them",
        [
            f"dead units per layer at the end: {_percents(end)}; at initialisation: {_percents(start)}",
            f"the first step moved a layer's weights by up to {first_step:.0%} of their norm (||update|| / ||W||) "
            f"and the loss rose to {np.nanmax(history.loss[:20]):.3g}: large steps pushed the units' inputs below 0, "
            "where ReLU's gradient is 0, so they cannot come back",
        ],
        _lr(config.lr * UPDATE_RATIO / first_step),
    )


def _percents(fractions) -> str:
    return " ".join(f"{f:.0%}" for f in fractions)


def _learning_rate(history, model, model_config, config, data, x, y) -> Diagnosis | None:
    loss = np.asarray(history.loss, np.float64)
    early = loss[: min(20, len(loss))]
    blew_up = not np.isfinite(loss).all() or history.diverged_at is not None or early.max() > RISE * loss[0]
    if not blew_up and config.optimizer == "adam":
        return None
    lam = sharpness(model_config.build(data.image_shape, data.num_classes), x, y)
    edge = (2 + 2 * MOMENTUM if config.optimizer == "momentum" else 2) / lam
    if not blew_up and config.lr <= edge:
        return None
    peak = f"{np.nanmax(early):.3g}" if np.isfinite(early).any() else "a non-finite value"
    evidence = [f"the loss went from {loss[0]:.3g} to {peak} in the first {len(early)} steps"]
    if config.optimizer == "adam":
        evidence.append(f"sharpness at initialisation lambda_max = {lam:.3g} (Adam rescales steps: no simple limit)")
        headline = f"lr = {config.lr:g} is too large for Adam here"
        return Diagnosis("learning_rate", headline, evidence, _lr(config.lr / 10))
    rule = "2(1 + 0.9) / lambda_max for momentum 0.9" if config.optimizer == "momentum" else "2 / lambda_max"
    evidence.append(
        f"sharpness at initialisation lambda_max = {lam:.3g}: the steps are stable below {rule} = {edge:.3g}; "
        f"lr = {config.lr:g} is {config.lr / edge:.2g} x that"
    )
    fix = 1 / lam if config.lr > 1 / lam else config.lr / 4  # 1 / lambda_max: the sharp direction in one step (03)
    return Diagnosis("learning_rate", "the step size overshoots the loss's sharpest direction", evidence, _lr(fix))


def _lr(value: float) -> dict:
    return {"lr": float(f"{value:.2g}")}


def sharpness(model, x, y, iterations: int = 20) -> float:
    """lambda_max, the largest eigenvalue of the training loss's Hessian on (x, y) at the current parameters.

    Power iteration on Hessian-vector products finds the eigenvalue of largest magnitude; when that one is negative,
    a second run on H - lambda I finds the largest. BatchNorm uses batch statistics, as in training; nothing is
    updated. The iterations are a Python loop around one compiled step: inside a compiled loop, XLA:CPU runs a
    convolution's gradient 20-70x slower (helpers.train)."""
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    step = _power_step(graphdef)
    x, y = jnp.asarray(x), jnp.asarray(y)
    rng = np.random.default_rng(0)  # numpy: a jax.random draw would compile once per array shape
    start = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), a.dtype), params)

    def power(shift: float) -> float:
        v, lam = start, 0.0
        for _ in range(iterations):
            v, lam = step(params, rest, x, y, v, shift)
        return float(lam)

    lam = power(0.0)
    return lam if lam >= 0 else power(lam)


@compiled_cache
def _power_step(graphdef):
    """(params, rest, x, y, v, shift) -> ((H - shift I) v normalized, v's Rayleigh quotient v.Hv / v.v)."""

    def step(params, rest, x, y, v, shift):
        def loss(p):
            logits = nnx.merge(graphdef, p, rest, copy=True)(x)
            return loss_value(logits, y)

        hv = jax.jvp(jax.grad(loss), (params,), (v,))[1]
        rayleigh = optax.tree.vdot(v, hv) / optax.tree.vdot(v, v)
        shifted = optax.tree.add_scale(hv, -shift, v)
        return optax.tree.scale(1 / optax.tree.norm(shifted), shifted), rayleigh

    return jax.jit(step)
