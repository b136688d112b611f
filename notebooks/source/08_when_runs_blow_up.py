# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · When a run blows up: finding the NaN, low precision, and an automatic diagnosis
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/taming-gradients/taming-gradients/blob/main/notebooks/08_when_runs_blow_up.ipynb)
#
# A loss that prints `nan` says that something went wrong, not where or why. After this notebook you can find the
# operation where the first `inf` and the first NaN appeared (with `History`, `jax.debug_nans`, `checkify` and
# `jax.debug.print`), say why skipping non-finite steps hides a bug instead of fixing it, predict at which layer a
# float16 forward pass overflows, train in bfloat16 or float16 with loss scaling, knowing what each of them
# rounds away, and let `helpers.diagnose` name the cause of a failed run and a fix that trains.

# %%
# On Colab, install this course's helpers (elsewhere `make lab` has, and this line does nothing).
# !python -c "import google.colab" 2>/dev/null && pip install -q flax==0.12.12 optax==0.2.8 git+https://github.com/taming-gradients/taming-gradients

# %%
import dataclasses
import traceback

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from jax.experimental import checkify

from helpers.data import load_digits
from helpers.diagnose import diagnose
from helpers.diagnostics import relu_gain_per_layer
from helpers.exercises import debugging as ex
from helpers.models import ModelConfig, per_layer
from helpers.plots import COLORS, plot_seed_rows, plot_theory_vs_measurement
from helpers.precision import cast
from helpers.step import loss_and_grads
from helpers.train import SEEDS, TrainConfig, batch_indices, mean_range, train, train_seeds
from helpers.widgets import panel

data = load_digits(seed=0)
NET = ModelConfig(depth=8, width=64)  # He-initialised ReLU MLP (notebook 02)
HEALTHY = TrainConfig(lr=0.1, clip_norm=1.0, steps=300)  # trains it well (notebooks 03 and 04)
TOO_HIGH = TrainConfig(lr=5.0, steps=300)  # 50 times that learning rate, no clipping
F16_MAX = float(jnp.finfo(jnp.float16).max)
print("network:", NET)
print("training:", HEALTHY, "| too high:", TOO_HIGH, "| every comparison of training runs uses the seeds", SEEDS)
print(f"float16: largest {F16_MAX:g}, smallest normal {float(jnp.finfo(jnp.float16).tiny):.2g}")

# %% [markdown]
# ## Predict first
#
# 1. A run's loss is `nan` at step 3. Is the layer where the first NaN appears the layer where the trouble began?
# 2. The same healthy network is trained in float32, in bfloat16 and in float16 without loss scaling. Which one
#    ends with the lowest test accuracy, and by how many points?
# 3. bfloat16 keeps 8 significant bits. An SGD step changes a weight of 1.5 by 0.003. Does the weight change?
#
# Sections 1, 4 and 5 answer them.

# %% [markdown]
# ## 1. Where the NaN is born
#
# Train the network with a learning rate 50 times too high. `train` never raises: it stops at the first step whose
# loss, gradient or new parameters are not finite, keeps the parameters from before that step, and records in
# `History` which step it was, what was not finite, and in which layer it began.

# %%
model = NET.build(data.image_shape)
history = train(model, data, TOO_HIGH)
print(history.summary())
for t in range(history.diverged_at):
    print(
        f"step {t}: loss {history.loss[t]:.2g}, gradient norm {history.grad_norm[t]:.2g}, "
        f"largest ||update|| / ||W|| {np.max(history.update_ratio[t]):.2g}"
    )
print(f"step {history.diverged_at}: loss {history.loss[history.diverged_at]}")

# %% [markdown]
# The loss is NaN at step 3, and `History` says the forward pass went wrong in `dense4`: replaying that step's
# forward pass, it is the first layer whose output is not finite. But the cause came earlier. Already at step 0 the
# update was 0.84 times as large as the weights it changed (healthy runs here take $10^{-3}$ to $10^{-2}$), at step 1 it was 42 times,
# and at step 2 the loss was $10^{12}$. `History`'s update ratios showed the explosion two steps before the NaN:
# read them before reaching for a debugger.

# %% jupyter={"source_hidden": true}
# Checks: where and how the run diverged, and the update ratios quoted above.
assert (history.diverged_at, history.diverged_reason) == (3, "loss"), f"NaN loss at step 3: {history.summary()}"
assert history.diverged_layer == "dense4", f"the forward pass should overflow in dense4: {history.diverged_layer}"
first_ratios = np.max(history.update_ratio[:3], axis=1)
assert 0.7 < first_ratios[0] < 1 and 30 < first_ratios[1] < 60, f"update ratios 0.84 then 42: {first_ratios}"
assert 1e11 < history.loss[2] < 1e13, f"the loss at step 2 should be about 1e12: {history.loss[2]:.3g}"

# %% [markdown]
# Now find it by hand, in plain JAX, on the batch of step 3 and the parameters the model kept. The forward pass is
# eight lines: `per_layer` hands out the weights one layer at a time. `jax.debug.print` prints from *inside* a
# jitted function, where a plain `print` would only show tracers: here the largest $|h|$ of every layer and how
# many of its $64 \times 64$ entries are NaN.

# %%
step3 = batch_indices(len(data.x_train), TOO_HIGH.batch_size, TOO_HIGH.steps, TOO_HIGH.seed)[history.diverged_at]
x3, y3 = jnp.asarray(data.x_train[step3]), jnp.asarray(data.y_train[step3])
layers = per_layer(nnx.state(model, nnx.Param))  # one dict of arrays per layer, input -> output


def forward(layers, x, show=False):
    h = x.reshape(len(x), -1)
    for i, layer in enumerate(layers[:-1]):
        h = jax.nn.relu(h @ layer["layer"]["kernel"] + layer["layer"]["bias"])
        if show:
            largest = jnp.nanmax(jnp.abs(h))  # NaN entries left out; NaN when all are
            jax.debug.print("dense{}: largest |h| {:.2g}, NaN entries {}", i, largest, jnp.isnan(h).sum(), ordered=True)
    return h @ layers[-1]["kernel"] + layers[-1]["bias"]


def loss_fn(layers, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(forward(layers, x), y).mean()


logits = jax.jit(forward, static_argnames="show")(layers, x3, show=True)

# %% [markdown]
# The largest value grows by a factor between $10^{7}$ and $10^{10}$ per layer, passes float32's largest number
# ($3.4\cdot10^{38}$) in `dense4` and becomes `inf`, and the next layer turns it into NaN: an `inf` times a positive
# weight plus an `inf` times a negative one is $\infty - \infty$. So the NaN is born one layer after the overflow,
# and the cause lies two steps before (question 1 of "Predict first").
#
# Two switches of JAX find each of them without any printing: `jax.debug_infs` and `jax.debug_nans` check the
# output of every operation and raise `FloatingPointError` at the first one that made an `inf` (or a NaN). The
# traceback then points at the line of `forward`, and its frame still holds the loop variable `i`, the layer (in
# Jupyter, `%debug` after the error shows the same).


# %%
def first_invalid(check):
    """Run loss_fn under `check` (jax.debug_infs or jax.debug_nans): the error's first line and the layer i."""
    with check(True):
        try:
            loss_fn(layers, x3, y3)
        except FloatingPointError as error:
            frame = [f for f, _ in traceback.walk_tb(error.__traceback__) if f.f_code.co_name == "forward"][-1]
            return str(error).splitlines()[0], frame.f_locals["i"]
    return None, None


first_inf_at, first_nan_at = first_invalid(jax.debug_infs), first_invalid(jax.debug_nans)
print(f"debug_infs: {first_inf_at[0]}, in layer dense{first_inf_at[1]}")
print(f"debug_nans: {first_nan_at[0]}, in layer dense{first_nan_at[1]}")

# %% jupyter={"source_hidden": true}
# Checks: the growth per layer above; the first inf comes from dense4's matrix product, the first NaN from dense5's.
h, largest = x3.reshape(len(x3), -1), []
for layer in layers[:4]:
    h = jax.nn.relu(h @ layer["layer"]["kernel"] + layer["layer"]["bias"])
    largest.append(float(jnp.max(jnp.abs(h))))
growth = np.array(largest[1:]) / np.array(largest[:-1])
assert np.all((1e7 < growth) & (growth < 1e10)), f"from dense0 to dense3, 1e7 to 1e10 per layer: {growth}"
assert first_inf_at == ("invalid value (inf) encountered in dot_general", 4), f"first inf: {first_inf_at}"
assert first_nan_at == ("invalid value (nan) encountered in dot_general", 5), f"first NaN: {first_nan_at}"

# %% [markdown]
# The line "Calling the de-optimized version" (JAX words it "nan" for either switch) is the price: when a checked
# function's output holds a NaN or an `inf`, JAX runs it again operation by operation, without `jit`, to find the
# culprit (and it checks every output even when all is well). That is fine for one batch, far too slow for
# training: switch it on to find a NaN, then off again.
#
# `checkify` does the checking inside the compiled program instead. `checkify.checkify(f, errors=float_checks)`
# returns a function that also returns an error value; `err.get()` is `None` when nothing went wrong, else the
# message. It works under `jit`, `vmap` and `lax.scan`, nothing is re-run, and the cost is one check per
# floating-point operation compiled into the program (it catches NaN and division by zero, not `inf`).

# %%
checked_loss = jax.jit(checkify.checkify(loss_fn, errors=checkify.float_checks))
err_bad, _ = checked_loss(layers, x3, y3)
healthy_layers = per_layer(nnx.state(NET.build(data.image_shape), nnx.Param))
err_ok, loss_ok = checked_loss(healthy_layers, x3, y3)
print("the batch of step 3, the parameters from before it:", err_bad.get().split(" at ")[0])
print(f"the same batch, a freshly initialised network: {err_ok.get()} (loss {float(loss_ok):.2f})")

# %% jupyter={"source_hidden": true}
# Checks: checkify names the operation that made the NaN, and reports nothing for a healthy network.
assert err_bad.get().startswith("nan generated by primitive: dot_general"), f"checkify said: {err_bad.get()}"
assert err_ok.get() is None, f"a fresh network should give no error, got {err_ok.get()}"

# %% [markdown]
# Which tool when: `History` (free, always on) says which step, what and which layer; `jax.debug.print` shows values
# inside a compiled function, at the cost of a transfer to the host per print (inside a `lax.scan` over 50 steps it
# prints 50 times); `jax.debug_infs` / `jax.debug_nans` point at the exact operation, slowly; `checkify` catches
# NaN inside a compiled training step, at a small cost on every step.
#
# ## 2. Skipping non-finite steps is a band-aid
#
# `TrainConfig(skip_nonfinite=True)` wraps the optimizer in `optax.apply_if_finite`: a step whose gradient has a
# non-finite entry is not applied, and the run goes on. (Optax gives up after `max_consecutive_errors` skips in a
# row and applies the update anyway; `helpers` sets that to $2^{30}$, so that skipping never ends on its own, and
# counts the skips in `History.skipped`.) Here is the run of section 1 with it, five seeds, against fixing the
# cause (`lr` 0.1, the gradient clipped at norm 1).

# %% tags=["nbval-ignore-output"]
skipping = train_seeds(NET, data, TOO_HIGH.replace(skip_nonfinite=True))
fixed = train_seeds(NET, data, HEALTHY)
acc_skipping, acc_fixed = skipping.evaluate(data.x_test, data.y_test), fixed.evaluate(data.x_test, data.y_test)
skipped = np.array([h.skipped.sum() for h in skipping.histories])
first_skipped = np.array([np.argmax(h.skipped) for h in skipping.histories])
finite_losses = np.isfinite(skipping.stacked("loss")).sum(axis=1)
print(f"lr 5, skip_nonfinite=True: seeds diverged {skipping.diverged}; steps skipped per seed {skipped.tolist()},")
print(f"    the first at step {first_skipped.tolist()}; finite losses per seed {finite_losses.tolist()} of 300")
print(f"    test accuracy {mean_range(acc_skipping)}")

# %% tags=["nbval-ignore-output"]
print(f"lr 0.1, clip_norm 1: test accuracy {mean_range(acc_fixed)}")

# %% [markdown]
# No seed "diverged": by `History`'s account the skipping runs finished their 300 steps. But every seed skipped
# every step from step 3 or 4 on, 296 or 297 of 300: a skipped step leaves the parameters where they were, at a
# point where the forward or the backward pass overflows on every batch, so the next step is skipped too, and so
# on forever.
# The network's outputs are NaN for every digit, which `argmax` reads as class 0: 7.8 %, the share of zeros in the
# test set. Fixing the cause trains to about 92 %, every seed above 80 %.
#
# Skipping is for a *rare* non-finite gradient whose cause is not in the parameters: a corrupt example, or float16
# with loss scaling (section 4), where an overflowing step is expected and is the signal to lower the scale. When
# you switch it on, count `History.skipped`: more than a handful of skipped steps is a bug that skipping hides.

# %% jupyter={"source_hidden": true}
# Checks the claims above on every seed.
assert not skipping.diverged, f"with skipping no run should count as diverged: {skipping.diverged}"
every_step_after = all(h.skipped[t:].all() for h, t in zip(skipping.histories, first_skipped, strict=True))
assert np.all(first_skipped <= 4) and every_step_after, (
    f"every seed should skip every step from step 3 or 4 on: first at {first_skipped}, {skipped} skipped"
)
assert np.allclose(acc_skipping, np.mean(data.y_test == 0)), f"class 0 for every digit: {acc_skipping}"
stuck_outputs = [np.asarray(m(jnp.asarray(data.x_test))) for m in skipping.models]
assert all(np.isnan(o).all() for o in stuck_outputs), "every skipping run's outputs should be NaN for every digit"
assert acc_fixed.min() > 0.8 and 0.88 < acc_fixed.mean() < 0.96, f"the fixed runs, about 92 %: {acc_fixed}"

# %% [markdown]
# ## 3. float16 overflows in the forward pass of an exploding network
#
# float16 has 5 bits of exponent: its largest number is 65504, where float32's is $3.4\cdot10^{38}$. A ReLU network
# whose weights are `init_scale` $= s$ times He's multiplies the RMS of its activations by
# `relu_gain_per_layer(s)` $= s$ per layer (notebook 02). If the largest $|h|$ of a batch stays a roughly constant
# factor above the RMS, it too grows like $s^l$ from the first hidden layer's value:
#
# $$\max|h_l| \approx \max|h_0|\, s^{l} \quad\Rightarrow\quad \text{it passes 65504 at}\quad
# l^* = \frac{\log(65504 / \max|h_0|)}{\log s},$$
#
# with $l = 0$ for `dense0`. Measured on 256 digits: the largest $|h|$ of every layer of a 30-layer network in
# float32, and the first layer where the same network run in float16 (parameters and input cast, as
# `helpers.precision.cast` does in training) holds an `inf`. Five seeds per `init_scale`.

# %% tags=["nbval-ignore-output"]
DEEP = ModelConfig(depth=30, width=64)
x256 = jnp.asarray(data.x_train[:256])
scales = (1.5, 2.0, 3.0)
peak, crossing, inf16 = {}, {}, {}  # per init_scale: one row / value per seed
for s in scales:
    rows = []
    for net in DEEP.replace(init_scale=s).build_seeds(SEEDS, data.image_shape):
        h32 = np.abs(np.asarray(net.hidden(x256))).max(axis=(1, 2))  # largest |h| per layer, float32
        graphdef, params = nnx.split(net)
        h16 = nnx.merge(graphdef, cast(params, jnp.float16)).hidden(x256.astype(jnp.float16))
        finite = np.asarray(jnp.isfinite(h16).all(axis=(1, 2)))
        rows.append((h32, np.argmin(finite) if not finite.all() else None))
    peak[s] = np.array([r[0] for r in rows])
    inf16[s] = [r[1] for r in rows]
    crossing[s] = np.log(F16_MAX / peak[s][:, 0]) / np.log(relu_gain_per_layer(s))
    print(
        f"init_scale {s}: predicted crossing l* {mean_range(crossing[s], '{:.1f}')}; first inf in float16, "
        f"per seed: {', '.join(f'dense{i}' if i is not None else 'none' for i in inf16[s])}"
    )

# %%
fig, ax = plt.subplots(figsize=(7, 3.6), dpi=90, layout="constrained")
layer_index = np.arange(DEEP.depth)
plot_theory_vs_measurement(
    {f"init_scale {s}, float32": (layer_index, peak[s][0]) for s in scales},
    {f"_theory {s}": (layer_index, peak[s][0, 0] * relu_gain_per_layer(s) ** layer_index) for s in scales},
    ax=ax,
    layer_names=[f"dense{i}" for i in layer_index],
    ylabel="largest |h| over the batch (log scale)",
    title="where float16 overflows: 30 x 64 ReLU MLP at initialisation, seed 0",
)
ax.axhline(F16_MAX, color=COLORS["diverged"], lw=1, label="65504, float16's largest number")
for s, color in zip(scales, COLORS.series(len(scales)), strict=True):
    ax.plot(inf16[s][0], F16_MAX, "X", ms=9, color=color, mec="white")
ax.plot([], [], "--", color="grey", label="predicted: max|h_0| * s^l")
ax.plot([], [], "X", ms=8, color="grey", label="first inf in float16 (series' colour)")
ax.legend(fontsize=7, loc="upper left")
plt.show()

# %% [markdown]
# In every one of the 15 networks the float16 forward pass holds its first `inf` exactly in the layer where the
# float32 values first pass 65504: below its largest number float16 only rounds, above it it overflows (exactly:
# values from 65520 on become `inf`; 65504 to 65519 round down to 65504).
#
# The prediction is the crossing of the *average* network. One network of width 64 strays from the line, because
# its gain per layer fluctuates around $s$ and the fluctuations add up over the layers (notebook 02); being off by
# a factor $f$ in $|h|$ moves the crossing by $\log f / \log s$ layers, more the closer $s$ is to 1. At $s = 2$
# and $3$ every seed's first `inf` lies within 2 layers of the first layer past $l^*$. At $s = 1.5$ the seeds
# spread over several layers around the predicted `dense25`, and some stay finite through all 30 layers (the
# figure shows seed 0, the earliest here). float32 overflows nowhere here: by the same rule, at $s = 3$ it would take about 80 layers.

# %% jupyter={"source_hidden": true}
# Checks: float16's first inf is where float32 passes 65504, and the prediction's margins stated above.
for s in scales:
    for seed_peak, first_inf in zip(peak[s], inf16[s], strict=True):  # 1 % of slack: float16 rounds on the way
        sure, maybe = np.flatnonzero(seed_peak > 1.01 * F16_MAX), np.flatnonzero(seed_peak > 0.99 * F16_MAX)
        allowed = set(range(maybe[0], sure[0] + 1)) if len(sure) else set(maybe[:1]) | {None}
        assert first_inf in allowed, (
            f"init_scale {s}: float16's first inf {first_inf}, float32 passes 65504 at {allowed}"
        )
    assert np.isfinite(peak[s]).all(), f"init_scale {s}: float32 should stay finite"
    predicted_layer = np.floor(crossing[s]).astype(int) + 1  # the first whole layer past l*
    overflowed = [(i, p) for i, p in zip(inf16[s], predicted_layer, strict=True) if i is not None]
    if s >= 2:
        assert len(overflowed) == len(SEEDS) and all(abs(i - p) <= 2 for i, p in overflowed), (
            f"init_scale {s}: within 2 layers of the prediction, got {inf16[s]} vs {predicted_layer}"
        )
    else:
        layers_hit = sorted(i for i, _ in overflowed)
        assert len(layers_hit) < len(SEEDS) and layers_hit[-1] - layers_hit[0] >= 2, f"init_scale 1.5: {inf16[s]}"
        assert set(predicted_layer) == {25}, f"init_scale 1.5: predicted dense25, got {predicted_layer}"
float32_crossing = np.log(float(jnp.finfo(jnp.float32).max) / peak[3.0][:, 0]) / np.log(3.0)
assert np.all((75 < float32_crossing) & (float32_crossing < 85)), f"about 80 layers: {float32_crossing}"

# %% [markdown]
# ## 4. float32, bfloat16 and float16 on a healthy network
#
# `TrainConfig(precision=...)` runs the forward and backward passes in that dtype: each step casts the parameters
# and the batch, and the loss and the gradient come back in float32. The parameters themselves stay float32
# (section 5 says why). Five seeds of the healthy recipe in each precision, and float16 once more with dynamic loss
# scaling (explained below); the float32 runs are those of section 2.

# %%
RECIPES = {
    "bfloat16": HEALTHY.replace(precision="bfloat16"),
    "float16": HEALTHY.replace(precision="float16"),
    "float16, dynamic loss scale": HEALTHY.replace(precision="float16", loss_scale="dynamic"),
}
runs = {"float32": fixed} | {name: train_seeds(NET, data, config) for name, config in RECIPES.items()}
acc = {name: r.evaluate(data.x_test, data.y_test) for name, r in runs.items()}
late = {name: r.stacked("loss")[:, -50:].mean(axis=1) for name, r in runs.items()}  # each seed's last 50 steps
ax = plot_seed_rows(
    {name: 100 * a for name, a in acc.items()},
    reference="float32",
    xlabel="test accuracy (%)",
    title="8 x 64 ReLU MLP, lr 0.1, clip_norm 1, 300 steps: the compute precision",
)
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes: no seed hidden
ax.figure

# %% tags=["nbval-ignore-output"]
for name, r in runs.items():
    skips = sum(int(h.skipped.sum()) for h in r.histories)
    print(
        f"{name:28s} test accuracy {mean_range(acc[name])}, final loss {mean_range(late[name], '{:.2f}')}, "
        f"{len(r.diverged)} diverged, steps skipped: {skips}"
    )

# %% [markdown]
# The answer to question 2 of "Predict first": on this network the precision makes no difference that five seeds
# can see. The four means lie within 3 points of each other while the seeds of every recipe spread over about 10
# points, and the four mean training losses at the end agree to 0.02. No run diverged.
#
# float16 does round something away, though. Below $2^{-14} \approx 6.1\cdot10^{-5}$ (its smallest *normal* number)
# it keeps fewer and fewer significant bits (*subnormal* numbers), down to $2^{-24} \approx 6\cdot10^{-8}$; a value
# at or below half of that, $2^{-25}$, becomes 0. A small gradient entry can vanish that way on its way back through
# the layers. Count the entries of the gradient
# (one batch of 64) that are 0 in float16 but not in float32, at initialisation and after training, and again with
# the loss multiplied by $S = 2^{15}$ before the backward pass (and the gradient divided by $S$ after it):

# %%
grads_of = jax.jit(loss_and_grads, static_argnums=0, static_argnames="precision")
x64, y64 = jnp.asarray(data.x_train[:64]), jnp.asarray(data.y_train[:64])


def flushed_to_zero(models, **low):
    """Per model: the share of gradient entries that are 0 computed in low precision but not in float32."""
    shares = []
    for m in models:
        graphdef, params, rest = nnx.split(m, nnx.Param, ...)
        exact, rounded = (
            jnp.concatenate([g.ravel() for g in jax.tree.leaves(grads_of(graphdef, params, rest, x64, y64, **kw)[2])])
            for kw in ({}, low)
        )
        shares.append(float(jnp.mean((rounded == 0) & (exact != 0))))
    return np.array(shares)


# %% tags=["nbval-ignore-output"]
zeros = {}
for when, models in [("at initialisation", NET.build_seeds(SEEDS, data.image_shape)), ("trained", fixed.models)]:
    zeros[when] = {S: flushed_to_zero(models, precision="float16", scale=S) for S in (None, 2.0**15)}
    print(
        f"{when:17s}: gradient entries 0 in float16 only: {mean_range(zeros[when][None], '{:.3%}')}; "
        f"with S = 2^15: {mean_range(zeros[when][2.0**15], '{:.3%}')}"
    )

# %% [markdown]
# At initialisation float16 loses at most a few entries in $10^5$. After training it loses tens of times more,
# about 0.16 % on average and up to 0.3 %: a trained network is confident, so $\text{softmax} - \text{onehot}$ is
# tiny for most examples, and so are the gradients it sends back. With $S = 2^{15}$ the same gradients sit 15
# binades higher (a *binade* is the range from one power of two to the next), and again at most a few entries in $10^5$ are lost. Here the lost entries are too few to change
# the loss or the accuracy (above); loss scaling is the remedy for networks where they are not.
#
# **The rule** (Micikevicius et al. 2018): multiply the loss by $S$ before the backward pass, divide the gradient by
# $S$ after it, in float32. $S$ is a power of two, so both are exact. Too small an $S$ lets entries underflow; too
# large an $S$ makes the largest ones overflow to `inf`. Dynamic scaling (`loss_scale="dynamic"`) starts at
# $S = 2^{15}$; a step whose gradient is not finite is skipped and $S$ halved; after 200 finite steps in a row $S$ is
# doubled. A fixed $S = 2^{20}$ instead, five seeds:

# %%
too_large = train_seeds(NET, data, HEALTHY.replace(precision="float16", loss_scale=2.0**20))
print(too_large.summary())
for seed, h in zip(SEEDS, too_large.histories, strict=True):
    print(
        f"    seed {seed}: stopped at step {h.diverged_at}, {h.diverged_reason} not finite, began in {h.diverged_layer}"
    )

# %% [markdown]
# Every seed stops at step 0: the first layer the backward pass reaches, the head, already holds an `inf`. With
# `loss_scale="dynamic"` the five seeds above trained like float32. Over a longer run of one seed (1200 steps) the
# scale shows how it adapts:

# %%
dynamic = train(NET.build(data.image_shape), data, RECIPES["float16, dynamic loss scale"].replace(steps=1200))
overflows = np.flatnonzero(dynamic.skipped)
fig, ax = plt.subplots(figsize=(7, 3.6), dpi=90, layout="constrained")
ax.step(np.arange(dynamic.steps), dynamic.loss_scale, where="post", color=COLORS["measured"], label="loss scale S")
ax.plot(overflows, dynamic.loss_scale[overflows], "X", ms=9, color=COLORS["nonfinite"], label="skipped: overflow")
ax.set(yscale="log", xlabel="step", ylabel="S (log scale)", title="dynamic loss scaling, float16, seed 0")
ax.set_yticks(2.0 ** np.arange(15, 21), [f"2^{k}" for k in range(15, 21)])
ax.minorticks_off()
ax.legend(fontsize=8)
plt.show()

# %% tags=["nbval-ignore-output"]
changes = np.flatnonzero(np.diff(dynamic.loss_scale)) + 1
print(f"{dynamic.summary()}; steps skipped: {overflows.tolist()}")
print("S changed at steps:", ", ".join(f"{t} (to 2^{np.log2(dynamic.loss_scale[t]):.0f})" for t in changes))

# %% [markdown]
# $S$ doubles every 200 steps while the gradients stay finite, until a step overflows (in this run, once $S$ had
# reached $2^{16}$ to $2^{18}$; the exact step depends on the machine's rounding): that step is skipped and $S$
# halved, and after 200 more finite steps it doubles again. As the network trains its gradients shrink, so larger
# scales fit, and by step 1200 $S$ is above where it started. Dynamic scaling never needs to know the right $S$: it
# finds a power of two that does not overflow, by trial, and pays with a skipped step now and then. Those are the
# skipped steps section 2 called legitimate: one to a few in 1200 here.

# %% jupyter={"source_hidden": true}
# Checks: no precision separates from float32 (5 seeds), the underflow counts, the fixed and the dynamic scale.
for name in RECIPES:
    assert not runs[name].diverged, f"{name}: no seed should diverge, got {runs[name].diverged}"
means, final_losses = [a.mean() for a in acc.values()], [v.mean() for v in late.values()]
assert np.ptp(means) < 0.03, f"the mean accuracies should lie within 3 points: {np.round(means, 3)}"
assert min(np.ptp(a) for a in acc.values()) > 0.08, f"each recipe's seeds spread ~10 points: {acc}"
assert np.ptp(final_losses) < 0.02, f"the mean final losses should agree to 0.02: {np.round(final_losses, 3)}"
assert zeros["at initialisation"][None].max() < 1e-4, f"at most a few in 1e5 at init: {zeros['at initialisation']}"
assert 0.001 < zeros["trained"][None].mean() < 0.0025, f"~0.16 % after training: {zeros['trained'][None]}"
assert zeros["trained"][None].max() < 0.004, f"up to 0.3 % after training: {zeros['trained'][None]}"
assert zeros["trained"][None].mean() > 20 * zeros["at initialisation"][None].mean(), "far more after training"
assert max(z[2.0**15].max() for z in zeros.values()) < 1e-4, f"with S = 2^15 a few in 1e5 at most: {zeros}"
stops = [(h.diverged_at, h.diverged_reason, h.diverged_layer) for h in too_large.histories]
assert stops == [(0, "gradient", "head")] * len(SEEDS), (
    f"S = 2^20: every seed should overflow in the head at step 0: {stops}"
)
assert dynamic.diverged_at is None and 1 <= len(overflows) <= 5, f"a handful of overflows: {overflows}"
assert 2.0**16 <= dynamic.loss_scale[overflows[0]] <= 2.0**18, f"the first overflow at 2^16-2^18: {overflows}"
assert dynamic.loss_scale[:200].max() == 2.0**15 and dynamic.loss_scale[200] == 2.0**16, "doubles after 200 steps"
assert np.all(dynamic.loss_scale[overflows + 1] == dynamic.loss_scale[overflows] / 2), "an overflow halves S"
for t in overflows:  # the rule: 200 finite steps after an overflow (if no other comes first), S doubles again
    if t + 201 < dynamic.steps and not dynamic.skipped[t + 1 : t + 201].any():
        assert dynamic.loss_scale[t + 201] == 2 * dynamic.loss_scale[t + 1], f"200 finite steps after step {t}"
assert dynamic.loss_scale[-1] >= 2.0**17, f"S should end above 2^15: 2^{np.log2(dynamic.loss_scale[-1])}"

# %% [markdown]
# ## 5. bfloat16's 8 significant bits
#
# bfloat16 keeps float32's top 16 bits (converting rounds to the nearest bfloat16): the same 8 bits of exponent (the same range, so no overflow
# or underflow problems), but 8 significant bits instead of 24. Its neighbours around $|w| = m\,2^e$
# ($1 \le m < 2$) are $2^{e-7}$ apart, so $w + u$ rounds back to $w$ when $|u| < 2^{e-8}$. In terms of the ratio
# $r = |u / w|$: $u$ is lost when $m < 2^{-8}/r$. For weights spread evenly on a log scale, $\log_2 m$ is uniform
# in $[0, 1)$, and the share of updates lost at ratio $r$ is (one exception: just below a power of two the spacing
# halves, so a *downward* update of $w = \pm 2^e$ is lost only below $2^{e-9}$)
#
# $$P(\text{lost}) = \mathrm{clip}\big(\log_2(2^{-8} / r),\ 0,\ 1\big):$$
#
# all of them below $r = 2^{-9}$, none above $2^{-8}$. Measured with `jnp.bfloat16` on 20 000 random weights, an
# update of either sign at each ratio:

# %%
rng = np.random.default_rng(0)
w = jnp.asarray(2.0 ** rng.uniform(-8, 8, 20_000), jnp.bfloat16)  # log-uniform over 16 binades
sign = jnp.asarray(rng.choice([-1.0, 1.0], w.shape), jnp.float32)
r = 2.0 ** np.linspace(-11, -6, 21)
lost = np.array([float(jnp.mean((w.astype(jnp.float32) * (1 + sign * ri)).astype(jnp.bfloat16) == w)) for ri in r])
lost_theory = np.clip(np.log2(2.0**-8 / r), 0, 1)
ratios = fixed.stacked("update_ratio")  # the float32 runs of section 2: (seeds, steps, layers)

fig, ax = plt.subplots(figsize=(7, 3.6), dpi=90, layout="constrained")
plot_theory_vs_measurement(
    {"measured: w + u rounded to bfloat16 equals w": (r, lost)},
    {"theory: clip(log2(2^-8 / r), 0, 1)": (r, lost_theory)},
    ax=ax,
    xscale="log",
    yscale="linear",
    xlabel="r = |u / w| (log scale)",
    ylabel="share of updates lost",
    title="bfloat16 rounds small updates away",
)
low, high = np.percentile(ratios, [5, 95])
ax.axvspan(
    low, high, color=COLORS["band"], alpha=0.2, lw=0, label="per-layer ||update|| / ||W||, float32 runs (5-95 %)"
)
ax.legend(fontsize=8)
plt.show()
print("largest gap between measurement and theory:", f"{np.max(np.abs(lost - lost_theory)):.3f}")

# %% jupyter={"source_hidden": true}
# Checks: the measured share follows the theory (20 000 weights, 128 mantissa values: within 0.03).
assert np.max(np.abs(lost - lost_theory)) < 0.03, f"measurement vs theory: {np.round(lost - lost_theory, 3)}"
assert lost[r <= 2.0**-9.5].min() > 0.97 and lost[r >= 2.0**-7.5].max() < 0.03, "all lost below 2^-9, none above 2^-8"

# %% [markdown]
# The band is where this course's one measure of an explosion, the update ratio $\|\text{update}\| / \|W\|$
# that `History` records per layer, lay in the healthy float32 runs: right at the edge. It is a proxy (rounding acts
# on each entry, and entries' ratios spread around their layer's). How much would be lost if the *weights* were
# stored in bfloat16? Exactly, for one more step of each trained network, the share of its weight entries whose
# update rounds away; and from `History`, the share of per-layer ratios below $2^{-8}$:


# %%
def lost_in_bfloat16(model):
    """The share of kernel entries that one more SGD step (lr 0.1, clipped at 1) would leave unchanged in bfloat16."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    g = optax.clip_by_global_norm(HEALTHY.clip_norm).update(grads_of(graphdef, params, rest, x64, y64)[2], None)[0]
    kernels = lambda tree: [layer.get("layer", layer)["kernel"] for layer in per_layer(tree)]  # noqa: E731
    lost = changed = 0
    for w, u in zip(kernels(params), kernels(g), strict=True):
        w16, u = w.astype(jnp.bfloat16), -HEALTHY.lr * u
        lost += int(jnp.sum(((w16.astype(jnp.float32) + u).astype(jnp.bfloat16) == w16) & (u != 0)))
        changed += int(jnp.sum(u != 0))
    return lost / changed


below = np.mean(ratios < 2.0**-8, axis=(1, 2))  # per seed, over steps and layers
lost_entries = np.array([lost_in_bfloat16(m) for m in fixed.models])

# %% tags=["nbval-ignore-output"]
print(f"per-layer updates below 2^-8 of their weights: {mean_range(below, '{:.0%}')}")
print(f"weight entries one more step would not change in bfloat16: {mean_range(lost_entries, '{:.0%}')}")

# %% [markdown]
# In this healthy run nearly 9 in 10 per-layer updates are smaller than $2^{-8}$ of their weights, and of one late
# step about two thirds of the individual weight changes would vanish in bfloat16. That is why `helpers.train`
# keeps **float32 master weights**, as mixed-precision training does (Micikevicius et al. 2018): the forward and
# backward passes run in low precision, which on this network changed nothing (section 4), and each update is
# added to float32 parameters, where it is not lost.
#
# Question 3 of "Predict first": $1.5 = 1.5 \cdot 2^0$, so an update is lost below $2^{-8} \approx 0.0039$:
# $1.5 + 0.003$ and $1.5 - 0.003$ both round back to $1.5$ in bfloat16.

# %% jupyter={"source_hidden": true}
# Checks the shares quoted above, on every seed.
assert 0.8 < below.min() and below.mean() < 0.95, f"nearly 9 in 10 per-layer ratios below 2^-8: {below}"
assert 0.5 < lost_entries.min() and lost_entries.max() < 0.8, f"about two thirds of the entries: {lost_entries}"
for u in (0.003, -0.003):
    assert float(jnp.asarray(1.5 + u, jnp.bfloat16)) == 1.5, f"1.5 + {u} should round to 1.5 in bfloat16"

# %% [markdown]
# ## Exercises
#
# **1.** A 40-layer ReLU MLP at `init_scale` 2.5; on a batch, the largest $|h|$ of its first hidden layer
# (`dense0`) is 6.0. By the rule of section 3, in which layer does its float16 forward pass first hold an `inf`?
# Answer with the layer's index (7 for `dense7`).

# %%
answer = ...
ok = ex.check_overflow_layer(answer)

# %% [markdown]
# **2.** In a float16 backward pass, the largest entry the unscaled gradient reaches anywhere is 0.8. With loss
# scaling every entry is $S$ times larger. What is the largest power of two $S$ that does not overflow?

# %%
answer = ...
ok = ex.check_largest_loss_scale(answer)

# %% [markdown]
# **3.** Write `survives(w, u)`: for a bfloat16 number `w` (a Python float, not 0 and not a power of two, where
# the rule has its exception) and an update `u`, does `w + u`, rounded to bfloat16, differ from `w`? Use the rule
# of section 5 (`np.floor(np.log2(abs(w)))` is $e$), not `jnp.bfloat16`; the checker compares your answers with
# bfloat16's on 60 pairs.


# %%
def survives(w, u): ...  # your code here


ok = ex.check_survives_bfloat16(survives)

# %% [markdown]
# ## 6. An automatic diagnosis
#
# Sections 1 to 5 found causes one at a time, on runs whose cause we knew. A run that just failed comes with no
# label. `helpers.diagnose.diagnose(history, model, data)` puts the course's measurements in one order, from the
# root outwards, and stops at the first that fires:
#
# | cause | measured | notebook |
# |---|---|---|
# | `batchnorm_mode` | BatchNorm normalizes over fewer than 8 rows: its statistics are noise | 06 |
# | `input_scale` | the inputs' root mean square is outside 0.05-10 | 01 |
# | `init_scale` | at initialisation the activations' RMS or the gradient norms change over 100x across the depth, and `init_scale` is not the critical value (not tried with BatchNorm, which renormalizes every layer, or below 3 layers) | 01, 02 |
# | `low_precision` | the float16/bfloat16 gradient is not finite where the float32 one is (at initialisation, or on the batch where the run stopped, or at the end) | 08 |
# | `dead_units` | the run ended with a layer whose ReLUs are 0 for 90 % or more of the units on every example | 02 |
# | `learning_rate` | the loss was not finite or rose 1.5x in the first 20 steps, or `lr` is above the limit the sharpness gives, $2/\lambda_{\max}$ for SGD | 03 |
#
# A run counts as healthy when its loss stayed finite and its last tenth averages below half of both its first
# loss and $\ln 10$, the loss of a uniform guess. Each cause comes with a `fix`: the config fields to change (the
# learning rate it proposes is $1/\lambda_{\max}$, which solves the sharpest direction in one step; for dead units
# one that keeps the first step's largest update ratio at 3 %, about what healthy first steps take here; `fix`
# may also be `precision="float32"`, or a smaller `lr` for Adam). `diagnosis.apply(model_config, train_config)`
# puts each fixed field into the config that has it. For `input_scale` no config field helps: the report says how to
# change the data.
#
# Six runs that fail, each built differently (C's data has pixels from 0 to 255 instead of 0 to 1):

# %% tags=["nbval-ignore-output"]
pixels_255 = dataclasses.replace(data, x_train=data.x_train * 255, x_test=data.x_test * 255)
gallery = {  # name: (network, training, data)
    "A": (NET, TrainConfig(lr=2.0), data),
    "B": (NET.replace(depth=12, init_scale=0.3), TrainConfig(lr=0.05), data),
    "C": (NET, TrainConfig(lr=0.05), pixels_255),
    "D": (NET.replace(batchnorm=True), TrainConfig(lr=0.05, batch_size=2), data),
    "E": (NET, TrainConfig(lr=0.05, precision="float16", loss_scale=2.0**20), data),
    "F": (NET, TrainConfig(optimizer="adam", lr=0.1), data),
}
broken = {}
for name, (net_config, config, run_data) in gallery.items():
    net = net_config.build(run_data.image_shape)
    broken[name] = (net, train(net, run_data, config))
    print(f"{name}: {net_config} | {config}\n   {broken[name][1].summary()}")

# %% [markdown]
# **Exercise 4.** Before you run the diagnosis, say which cause `diagnose` will name for each run (one of
# `learning_rate`, `init_scale`, `input_scale`, `batchnorm_mode`, `low_precision`, `dead_units`). Remember that it
# tries them in the table's order and stops at the first that fires: a run can show more than one symptom.

# %%
guesses = {"A": ..., "B": ..., "C": ..., "D": ..., "E": ..., "F": ...}
ok = ex.check_gallery_causes(guesses)

# %% [markdown]
# Now the diagnoses (of seed 0's run each; the fixes are then tested on five seeds), with each run's report in one line (`print(d)` gives the whole report, evidence and all; the
# first is shown in full):

# %% tags=["nbval-ignore-output"]
diagnoses = {name: diagnose(history, net, gallery[name][2]) for name, (net, history) in broken.items()}
print(diagnoses["A"], end="\n\n")
for name, found in diagnoses.items():
    print(f"{name}: {found.line}")

# %% jupyter={"source_hidden": true}
# Checks: the cause each run was built with is the one named.
built_with = dict(
    A="learning_rate", B="init_scale", C="input_scale", D="batchnorm_mode", E="low_precision", F="dead_units"
)
assert {n: d.cause for n, d in diagnoses.items()} == built_with, {n: d.cause for n, d in diagnoses.items()}

# %% [markdown]
# A diagnosis is only as good as its fix. Apply each `fix` (for C, standardize the data as its report says) and
# train again, on five seeds, next to the broken recipe on the same seeds:


# %%
def standardized(d):
    mean, std = d.x_train.mean(), d.x_train.std()
    return dataclasses.replace(d, x_train=(d.x_train - mean) / std, x_test=(d.x_test - mean) / std)


def last_loss(seed_runs):
    """Per seed: the mean of the last tenth of the losses (inf for a seed that diverged)."""
    return np.array(
        [np.mean(h.loss[-h.steps // 10 :]) if h.diverged_at is None else np.inf for h in seed_runs.histories]
    )


before, after = {}, {}
for name, (net_config, config, run_data) in gallery.items():
    fixed_net, fixed_train = diagnoses[name].apply(net_config, config)  # each fixed field into its config
    fixed_data = standardized(run_data) if diagnoses[name].cause == "input_scale" else run_data
    before[name] = last_loss(train_seeds(net_config, run_data, config))
    after[name] = last_loss(train_seeds(fixed_net, fixed_data, fixed_train))

# %% tags=["nbval-ignore-output"]
for name in gallery:
    print(f"{name}: fix {diagnoses[name].fix or 'standardize the data'}")
    print(
        f"   last loss over seeds {list(SEEDS)}: before {np.round(before[name], 2)}, after {np.round(after[name], 2)}"
    )

# %% [markdown]
# Every broken recipe fails on every seed (a divergence, or a last loss above $\frac{1}{2}\ln 10 \approx 1.15$),
# and every fixed one trains on every seed, to a last loss below 1.15, most of them far below. Note how different
# the cures are: only two of the six (A and F) change the learning rate. E overflows at step 0, before any step
# is taken, so no learning rate can help it.

# %% jupyter={"source_hidden": true}
# Checks, on every seed: the broken recipes fail and the fixed ones train.
chance = np.log(10)
for name in gallery:
    assert np.all(before[name] > 0.5 * chance), f"{name} should fail on every seed: {before[name]}"
    assert np.all(after[name] < 0.5 * chance), f"{name} fixed should train on every seed: {after[name]}"
assert sum("lr" in d.fix for d in diagnoses.values()) == 2, "only A and F are cured by the learning rate"

# %% [markdown]
# The slider panel diagnoses every run that fails: break the network on purpose (`lr` at 0.3 or more, `init_scale`
# at 0.3 or 3, `precision` float16 with a `loss_scale` of $2^{16}$ or more) and read the one-line diagnosis under
# the plot, then move the slider to the value it proposes.

# %% tags=["nbval-ignore-output"]
panel(
    data,
    model=NET,
    config=TrainConfig(lr=0.05, steps=200),
    controls=["lr", "init_scale", "precision", "loss_scale"],
    title="8 x 64 ReLU MLP: break it, then read the diagnosis",
)

# %% [markdown]
# ## Takeaways
#
# - **Read `History` first.** It says at which step, what (loss, gradient or parameters) and in which layer a run
#   stopped, and its update ratios $\|\text{update}\|/\|W\|$ showed this explosion two steps before the NaN.
# - **Then the tools, each for its job:** `jax.debug.print` for values inside compiled code, `jax.debug_infs` /
#   `jax.debug_nans` for the exact operation (slow: they re-run un-jitted), `checkify` for NaN checks inside a
#   compiled step. The first `inf` comes before the first NaN, and the cause before both.
# - **Skipping non-finite steps hides a broken run** (296-297 of 300 steps skipped, no "divergence"); count
#   `History.skipped`.
# - **float16 overflows at 65504,** in a predictable layer of an exploding network ($\max|h_0|\,s^l$), where float32
#   stays finite; a fixed loss scale too large overflows at step 0, dynamic scaling finds the scale by itself.
# - **On this healthy network the precision changed nothing** (5 seeds); float16 underflow is real after training
#   (about 0.16 % of the gradient entries) but too small to matter here.
# - **bfloat16 loses updates below $2^{-8}$ of a weight,** and most healthy updates are that small: keep float32
#   master weights.
# - **`diagnose` names the cause** from measurements tried root-first, and its fixes train on every seed.
#
# **Claim vs measurement.** *"When the loss turns NaN, lower the learning rate."* Half-true. It cured two of the six
# broken runs above (A and F); for the other four the cure was the data, the initial weights, the batch size or
# the loss scale, and E fails at step 0 whatever the learning rate. *"Training in float16 needs
# loss scaling."* Not on this network: without it float16 trained as well as float32 on five seeds (section 4). It
# needs float32 master weights, and loss scaling where small gradients matter; a badly chosen fixed scale is a cause
# of failure in its own right.
