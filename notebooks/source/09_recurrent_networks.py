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
# # 09 · Recurrent networks, where clipping was born
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/taming-gradients/taming-gradients/blob/main/notebooks/09_recurrent_networks.ipynb)
#
# A recurrent network applies the same weights at every time step, so its gradient through time is a product of
# the same Jacobian, again and again: depth in time instead of depth in layers. Gradient clipping by the global
# norm was introduced for exactly this case (Pascanu, Mikolov & Bengio 2013; Mikolov 2012 had clipped each entry). After this notebook you can predict how
# the gradient reaching an early time step scales with the recurrent matrix's spectral radius, see a sharply
# curved stretch of a recurrent network's loss surface and what a clipped step does there, measure what
# clipping does on the adding problem, and say what an LSTM's gates change in the gradient's path.

# %%
# On Colab, install this course's helpers (elsewhere `make lab` has, and this line does nothing).
# !python -c "import google.colab" 2>/dev/null && pip install -q flax==0.12.12 optax==0.2.8 git+https://github.com/taming-gradients/taming-gradients

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

from helpers.data import adding_problem
from helpers.diagnostics import time_grad_norms
from helpers.exercises import recurrent as ex
from helpers.models import ModelConfig
from helpers.plots import COLORS, plot_seed_rows, plot_theory_vs_measurement, reference_lines
from helpers.step import loss_value
from helpers.train import SEEDS, TrainConfig, batch_indices, mean_range, train, train_seeds
from helpers.widgets import panel

T = 20  # time steps per sequence
data = adding_problem(T, n_train=2000, n_test=500)
RNN = ModelConfig(kind="rnn", depth=1, width=32, activation="tanh")  # init_scale: the spectral radius of W_h
GUESS, SECOND_ONLY = 1 / 6, 1 / 12  # the error of ignoring the input; of remembering only the second number
SEEDS10 = tuple(range(10))  # section 3's comparison: its failures are rare enough to need ten seeds
print("network:", RNN)
print(f"adding problem: {data.x_train.shape[0]} training sequences of {T} steps x {data.x_train.shape[2]} inputs")
print(
    f"test error of always answering 1 on these 500 sequences: {np.mean((data.y_test - 1) ** 2):.3f} (1/6 = {GUESS:.3f})"
)

# %% [markdown]
# **The adding problem** (Hochreiter & Schmidhuber 1997, in the form of Le, Jaitly & Hinton 2015). Each time step
# carries two inputs: a number drawn uniformly from $[0, 1]$, and a marker that is 1 at exactly two steps (one in
# each half) and 0 elsewhere. The target is the sum of the two marked numbers. Two baselines: ignoring the input and
# answering 1 scores a mean squared error of $\mathrm{Var}(u_1 + u_2) = 2 \cdot \tfrac{1}{12} = \tfrac{1}{6}$
# (0.160 on these 500 test sequences, sampling noise); remembering only the *second* number, at most 9 steps back,
# and adding $\tfrac12$ scores $\mathrm{Var}(u_1) = \tfrac{1}{12}$. Below $\tfrac{1}{12}$, the first marked number
# has been carried across the gap, up to 19 steps.
#
# ## Predict first
#
# 1. A vanilla RNN $h_t = \tanh(x_t W_x + h_{t-1} W_h + b)$ whose $W_h$ has spectral radius (largest
#    $|\text{eigenvalue}|$) $\rho = 0.8$. The loss depends on $h_{20}$. Roughly how does $\|\partial L / \partial
#    h_1\|$ compare with $\|\partial L / \partial h_{20}\|$? And with $\rho = 1.2$?
# 2. On the adding problem, does global-norm clipping make the training better on every run, on some runs, or on
#    none?

# %% [markdown]
# ## 1. The gradient through time is a product of Jacobians
#
# Backpropagation through time sends the gradient from $h_T$ back to $h_t$ through $T - t$ Jacobians built on the
# same matrix: $\frac{\partial L}{\partial h_t} = \frac{\partial L}{\partial h_T}\, J_T J_{T-1} \cdots J_{t+1}$
# with $J_s = \frac{\partial h_s}{\partial h_{s-1}} = \mathrm{diag}(\tanh'(z_s))\, W_h^\top$ (notebook 01's
# product of Jacobians, with the same $W_h$ in every factor). Without the activation the product is
# $(W_h^\top)^{T-t}$. `ModelConfig(kind="rnn", init_scale=rho)` draws $W_h = \rho\,Q$ with $Q$ a random
# orthogonal matrix, so every eigenvalue has modulus $\rho$ and $\|v (W_h^\top)^k\| = \rho^k \|v\|$ for every
# vector: the gradient reaching lag $k = T - t$ is exactly $\rho^k$ times the last one.
#
# `helpers.diagnostics.time_grad_norms(model, x, y)` measures $\|\partial L / \partial h_t\|$ for every $t$ (it adds
# a zero "nudge" to each $h_t$ and differentiates with respect to it). Here for $\rho$ = 0.8, 1 and 1.2, without
# an activation (linear) and with tanh, at initialisation, on 256 sequences:

# %%
x256, y256 = data.x_train[:256], data.y_train[:256]
lags = np.arange(T)[::-1]  # lag T - t of each time step t = 1 ... T
rhos = (0.8, 1.0, 1.2)
ratio = {}  # (activation, rho) -> ||dL/dh_t|| / ||dL/dh_T|| per time step
for activation in ("linear", "tanh"):
    for rho in rhos:
        net = RNN.replace(activation=activation, init_scale=rho).build(data.image_shape, 1)
        norms = time_grad_norms(net, x256, y256)
        ratio[activation, rho] = norms / norms[-1]
for rho in rhos:
    print(
        f"rho {rho}: ||dL/dh_1|| / ||dL/dh_20|| = {ratio['linear', rho][0]:.3g} linear (rho^19 = {rho**19:.3g}), "
        f"{ratio['tanh', rho][0]:.3g} tanh"
    )

# %%
fig, (ax_lin, ax_tanh) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=90, layout="constrained", sharey=True)
for ax, activation in [(ax_lin, "linear"), (ax_tanh, "tanh")]:
    plot_theory_vs_measurement(
        {f"rho = {rho}": (lags, ratio[activation, rho]) for rho in rhos},
        {f"rho^k, rho = {rho}": (lags, rho ** lags.astype(float)) for rho in rhos},
        ax=ax,
        xlabel="lag k = T - t (steps back in time)",
        ylabel="||dL/dh_t|| / ||dL/dh_T|| (log scale)",
        title=f"{activation} RNN, width 32, at initialisation",
    )
plt.show()

# %% [markdown]
# Without the activation, measurement and $\rho^k$ agree to the last digits: $0.8^{19} \approx 0.014$, $1.2^{19}
# \approx 32$ (exactly $\rho^k$ because $W_h = \rho Q$; for another $W_h$ with the same spectral radius, $\rho^k$
# is only the long-run rate, and Pascanu et al.'s bound uses the largest singular value). With tanh every factor
# also carries $\tanh'(z) \le 1$, so the measured ratios lie at or below $\rho^k$, and far below it here: the
# inputs, through $W_x$ drawn at He's scale, push the units away from 0, where $\tanh' < 1$. Even at $\rho = 1.2$
# the tanh network's gradient *shrinks* over the 19 steps. That is Pascanu et al.'s point: $\rho > 1$ is necessary
# for an explosion, not sufficient. So the answer to question 1: about $0.8^{19} \approx 1.4\,\%$ without the
# activation, far less with tanh; and at $\rho = 1.2$, $32$ times *larger* without it, but still smaller with
# tanh. Here a tanh RNN starts out vanishing; section 3 measures how training then grows $W_h$.

# %% jupyter={"source_hidden": true}
# Checks: the linear network follows rho^k exactly; tanh stays at or below it, and shrinks even at rho = 1.2.
for rho in rhos:
    assert np.allclose(ratio["linear", rho], rho ** lags.astype(float), rtol=1e-4), f"linear, rho {rho}"
    assert np.all(ratio["tanh", rho] <= rho ** lags.astype(float) * (1 + 1e-5)), f"tanh above rho^k at rho {rho}"
assert ratio["tanh", 1.2][0] < 0.2, f"tanh at rho 1.2 should shrink over 19 steps: {ratio['tanh', 1.2][0]:.3g}"
assert ratio["tanh", 0.8][0] < 0.1 * 0.8**19, f"tanh at 0.8: far below rho^19: {ratio['tanh', 0.8][0]:.3g}"

# %% [markdown]
# ## 2. A cliff
#
# Now train: plain SGD with `lr` 0.1, no clipping, 600 steps, five seeds.

# %% tags=["nbval-ignore-output"]
SGD = TrainConfig(lr=0.1, steps=600)
unclipped = train_seeds(RNN, data, SGD)
print(unclipped.summary())
print("diverged at steps:", {s: h.diverged_at for s, h in zip(SEEDS, unclipped.histories, strict=True)})

# %% [markdown]
# Some seeds diverge outright (asserted below). Look at where a run that survives goes wrong. Among the runs that
# did not diverge, take the three steps after which the batch loss rose the most (a ratio of two batches' losses,
# so a rough pointer), replay each run to just before that step, and keep the step whose update raised the loss
# on 1000 training sequences the most. From there, on that step's batch (`batch_indices` gives a run's batches),
# the loss along the direction of the gradient $g$ as a function of the step length $a$: SGD steps $a =
# \text{lr}\,\|g\|$; clipped at norm $c$, it steps $a = \text{lr}\,\min(\|g\|, c)$.

# %%
X, Y = jnp.asarray(data.x_train[:1000]), jnp.asarray(data.y_train[:1000])  # the training loss, on 1000 sequences


def before_step(i, t):
    """Seed i's unclipped run stopped before step t: its parameters, and the gradient on step t's batch."""
    net = RNN.replace(seed=SEEDS[i]).build(data.image_shape, 1)
    if t > 0:  # the same run: the same seed, the same batches
        train(net, data, SGD.replace(steps=t, seed=SEEDS[i]))
    graphdef, params = nnx.split(net)
    idx = batch_indices(len(data.x_train), SGD.batch_size, t + 1, SEEDS[i])[t]
    loss_at = lambda p, x, y: loss_value(nnx.merge(graphdef, p)(x), y)  # noqa: E731
    return params, jax.grad(loss_at)(params, data.x_train[idx], data.y_train[idx]), loss_at


def after(params, g, a, loss_at):
    """The training loss after a step of length a along -g."""
    return float(loss_at(optax.tree.add_scale(params, -a / optax.tree.norm(g), g), X, Y))


# %%
jumps = [
    (i, t, r)
    for i, h in enumerate(unclipped.histories)
    if h.diverged_at is None
    for t, r in enumerate(h.loss[1:] / h.loss[:-1])
]
candidates = sorted(jumps, key=lambda j: -j[2])[:3]
rise = {}
for i, t, _ in candidates:
    params, g, loss_at = before_step(i, t)
    rise[i, t] = after(params, g, SGD.lr * float(optax.tree.norm(g)), loss_at) / after(params, g, 0.0, loss_at)
seed_i, t = max(rise, key=rise.get)
params, g, loss_at = before_step(seed_i, t)
g_norm = float(optax.tree.norm(g))
a_sgd, a_clip = SGD.lr * g_norm, SGD.lr * min(g_norm, 1.0)
steps_a = np.linspace(0, 3 * a_sgd, 61)
along = np.array([after(params, g, a, loss_at) for a in steps_a])
loss_sgd, loss_clip = after(params, g, a_sgd, loss_at), after(params, g, a_clip, loss_at)
x_t, y_t = jnp.asarray(data.x_train[:64]), jnp.asarray(data.y_train[:64])  # the gradient where each step lands
g_at = {
    a: float(optax.tree.norm(jax.grad(loss_at)(optax.tree.add_scale(params, -a / g_norm, g), x_t, y_t)))
    for a in (0.0, a_clip, a_sgd)
}

# %% tags=["nbval-ignore-output"]
print(f"seed {SEEDS[seed_i]}, step {t}: ||g|| = {g_norm:.2f}; training loss before the step {along[0]:.3f}")
print(f"after the SGD step (a = {a_sgd:.3f}): {loss_sgd:.3f}; clipped at c = 1 (a = {a_clip:.3f}): {loss_clip:.3f}")
print("||g|| on 64 sequences: " + ", ".join(f"at a = {a:.2f}: {n:.2f}" for a, n in g_at.items()))

# %%
fig, ax = plt.subplots(figsize=(7, 3.6), dpi=90, layout="constrained")
ax.plot(steps_a, along, color=COLORS["measured"], lw=2, label="loss along -g (1000 training sequences)")
reference_lines(ax, x={f"SGD step, a = lr ||g|| = {a_sgd:.2f}": a_sgd})
reference_lines(ax, x={f"clipped at c = 1, a = lr c = {a_clip:.2f}": a_clip}, color=COLORS["clip"], ls="--")
ax.set(xlabel="step length a along -g", ylabel="training loss (mean squared error)", title="a cliff: the loss along -g")
plt.show()

# %% [markdown]
# The loss falls for a very short step and then climbs steeply: a narrow, sharply curved valley with a wall on
# its far side, where a small move in the parameters changes the recurrent dynamics (units cross into or out of
# saturation for many time steps at once). The step's own gradient was not extreme, but the SGD step, longer than
# the clipped one, carried the parameters far up the wall; the clipped step also overshoots the valley's floor, and
# lands much lower. Up on the wall the gradient is larger (printed above): from there the next SGD
# step would be longer still, and that is how a run gets thrown off (Pascanu et al.'s figure 6 draws the wall as
# a cliff). Clipping does not know where the wall is; with plain SGD it refuses any step longer than
# $\text{lr}\cdot c$, which is what a region of steep, sudden curvature punishes.

# %% jupyter={"source_hidden": true}
# Checks: some seeds diverged; the unclipped step went up the wall; the clipped one landed lower.
assert len(unclipped.diverged) >= 1, f"at lr 0.1 without clipping some seed should diverge: {unclipped.summary()}"
assert g_norm > 1, f"the gradient should be above the threshold c = 1 there: {g_norm:.3g}"
assert loss_sgd > 5 * along[0], f"the SGD step should raise the loss over 5x: {along[0]:.3g} -> {loss_sgd:.3g}"
assert loss_clip < 0.5 * loss_sgd, f"the clipped step should land much lower: {loss_clip:.3g} vs {loss_sgd:.3g}"
assert g_at[a_sgd] > 2 * g_at[0.0], f"on the wall the gradient should be larger: {g_at}"

# %% [markdown]
# ## 3. Clipping on the adding problem
#
# Plain SGD is slow on this task (and section 2's `lr` diverges on some seeds), so here the optimizer is momentum
# SGD (0.9) with `lr` 0.05, for 600 steps, with and without clipping the gradient at global norm 1
# (`TrainConfig(clip_norm=1.0)`, which is `optax.clip_by_global_norm`), on ten seeds: an unclipped run's failure
# is not rare, but not so common that five seeds always show one. The LSTM of section 4 runs beside them.

# %%
MOMENTUM = TrainConfig(optimizer="momentum", lr=0.05, steps=600)
runs = {
    "no clipping": train_seeds(RNN, data, MOMENTUM, seeds=SEEDS10),
    "clipped at 1": train_seeds(RNN, data, MOMENTUM.replace(clip_norm=1.0), seeds=SEEDS10),
    "LSTM, clipped at 1": train_seeds(RNN.replace(kind="lstm"), data, MOMENTUM.replace(clip_norm=1.0), seeds=SEEDS10),
}
mse = {name: r.evaluate(data.x_test, data.y_test) for name, r in runs.items()}


def spectral_radius(net):
    """The largest |eigenvalue| of a one-layer RNN's recurrent matrix W_h (the kernel's rows below W_x's)."""
    kernel = np.asarray(net.first.layer.kernel[...])
    return float(np.abs(np.linalg.eigvals(kernel[-net.first.layer.width :])).max())


rho_trained = {
    name: np.array([spectral_radius(m) for m in runs[name].models]) for name in ("no clipping", "clipped at 1")
}
ax = plot_seed_rows(mse, xlabel="test mean squared error", title=f"adding problem, T = {T}, 10 seeds")
reference_lines(ax, x={"1/6: answering 1": GUESS}, color=COLORS["diverged"])
reference_lines(ax, x={"1/12: only the second number": SECOND_ONLY}, color=COLORS["theory"], ls="--")
ax.figure

# %% tags=["nbval-ignore-output"]
for name, m in mse.items():
    print(f"{name:20s} test MSE {mean_range(m, '{:.3f}')}; seeds above 1/12: {int(np.sum(m > SECOND_ONLY))} of 10")
for name, rho in rho_trained.items():
    print(f"{name:20s} spectral radius of the trained W_h: {mean_range(rho, '{:.2f}')}")

# %% [markdown]
# Clipped, every seed carries the first number across the gap: every error is below $\tfrac1{12}$. Unclipped, some
# seeds do as well, and some fail, ending near or above the $\tfrac16$ of ignoring the input: they never left the
# plateau of the start, as large gradients kept knocking them back. Training grew $W_h$ beyond the initial
# $\rho = 1$ in every run, and furthest in the unclipped ones. So the answer to question 2: clipping made every
# run learn; without it, some runs failed.

# %% jupyter={"source_hidden": true}
# Checks, on every one of the ten seeds: clipped runs learn; some unclipped seed fails and some learns.
assert np.all(mse["clipped at 1"] < SECOND_ONLY), f"every clipped seed should beat 1/12: {mse['clipped at 1']}"
assert np.any(mse["no clipping"] > 0.6 * GUESS), f"some unclipped seed should fail: {mse['no clipping']}"
assert np.any(mse["no clipping"] < SECOND_ONLY), f"some unclipped seed should learn: {mse['no clipping']}"
assert all(r.min() > 1.1 for r in rho_trained.values()), f"training grows W_h beyond 1: {rho_trained}"
assert rho_trained["no clipping"].max() > rho_trained["clipped at 1"].max(), f"furthest unclipped: {rho_trained}"

# %% [markdown]
# ## 4. What an LSTM's gates change
#
# The LSTM (Hochreiter & Schmidhuber 1997; its forget gate is Gers et al. 2000) adds a memory cell $c_t = f_t
# \odot c_{t-1} + i_t \odot g_t$ beside the hidden state. Along the cell's direct path the Jacobian $\partial c_t /
# \partial c_{t-1}$ is the forget gate $\mathrm{diag}(f_t)$: no matrix product and no $\tanh'$, so gradient travels
# back as far as the forget gates stay near 1, and the network *learns* them. At initialisation they are not
# (the forget bias starts at 1, so $f \approx \sigma(1) \approx 0.73$, and $0.73^{19} \approx 0.003$). Section 3
# put the LSTM in the last row: with the same optimizer, its median error is several times below the clipped
# RNN's (at equal width it has four times the recurrent weights). How much gradient reaches the first step,
# $\|\partial L/\partial h_1\| / \|\partial L/\partial h_{20}\|$ (the hidden state, not the cell), at
# initialisation and after section 3's training, on five seeds:

# %%
reach = {}  # kind -> (at initialisation, trained): ||dL/dh_1|| / ||dL/dh_T|| per seed
for kind, trained in [("rnn", runs["clipped at 1"]), ("lstm", runs["LSTM, clipped at 1"])]:
    fresh = RNN.replace(kind=kind).build_seeds(SEEDS, data.image_shape, 1)
    start = np.array([time_grad_norms(m, x256, y256) for m in fresh])
    end = np.array([time_grad_norms(m, x256, y256) for m in trained.models[: len(SEEDS)]])
    reach[kind] = (start[:, 0] / start[:, -1], end[:, 0] / end[:, -1])

# %% tags=["nbval-ignore-output"]
for kind, (start, end) in reach.items():
    print(f"{kind}: at initialisation {mean_range(start, '{:.2g}')}; trained {mean_range(end, '{:.2g}')}")

# %% [markdown]
# At initialisation the LSTM carries more gradient back to the first step than the tanh RNN on every seed here,
# several times more at the median. Training raises the RNN's by two orders of magnitude and the LSTM's several
# times: a network that solves the task has learned to carry the first marked number, and with it the gradient,
# across the gap. The trained RNN ends with a reach comparable to the LSTM's, yet a larger error: reach says that
# the gradient arrives, not how precisely the network stores a number. Nothing in the LSTM bounds an explosion: the
# cell path is damped by $f < 1$, but the hidden-state path still multiplies by $W_h$ at every step. LSTMs are
# trained with clipping too (Sutskever et al. 2014 clip at norm 5).

# %% jupyter={"source_hidden": true}
# Checks: the LSTM's reach at initialisation, and what training does to both, seed by seed.
(rnn_start, rnn_end), (lstm_start, lstm_end) = reach["rnn"], reach["lstm"]
assert np.all(lstm_start > rnn_start) and np.median(lstm_start / rnn_start) > 3, reach
assert np.all(rnn_end > 30 * rnn_start), f"the RNN's reach should grow 30x or more: {reach['rnn']}"
assert np.all(lstm_end > 2 * lstm_start), f"the LSTM's reach should grow: {reach['lstm']}"
assert 1 / 3 < np.median(rnn_end) / np.median(lstm_end) < 3, f"comparable reach after training: {reach}"
assert np.median(mse["LSTM, clipped at 1"]) < np.median(mse["clipped at 1"]) / 3, f"LSTM, several times lower: {mse}"

# %% [markdown]
# ## Explore
#
# The panel trains the RNN on the adding problem. Switch clipping off (`clip_norm` unticked) and raise `lr` until
# a run blows up; move `init_scale` (the spectral radius) below and above 1; the dashboard's per-layer heatmap has
# two rows, `rnn0` (the recurrent layer's kernel $[W_x; W_h]$) and the head.

# %% tags=["nbval-ignore-output"]
panel(
    data,
    model=RNN,
    config=MOMENTUM.replace(clip_norm=1.0, steps=300),
    controls=["lr", "clip_norm", "init_scale", "optimizer"],
    title=f"tanh RNN, width 32, adding problem T = {T}",
)

# %% [markdown]
# ## Exercises
#
# **1.** A linear RNN with $W_h = 0.9\,Q$ as in section 1: after how many steps back in time (the smallest whole number $k$) is the
# gradient below 1 % of its size at $h_T$?

# %%
answer = ...
ok = ex.check_lag_below_one_percent(answer)

# %% [markdown]
# **2.** Section 2's SGD step had length $\text{lr}\,\|g\|$. With `lr` = 0.1, $\|g\| = 7$ and clipping at $c = 1$,
# by what factor is the clipped step shorter than the SGD step?

# %%
answer = ...
ok = ex.check_clip_factor(answer)

# %% [markdown]
# ## Takeaways
#
# - **The gradient through time is a product of Jacobians built on one matrix,** so at this initialisation ($W_h
#   = \rho Q$) it scales like $\rho^k$: exactly for a linear RNN, at most that with tanh, whose $\tanh' < 1$ makes vanishing the
#   usual state at initialisation even at $\rho = 1.2$.
# - **Recurrent losses have sharply curved stretches** where an SGD step lands far up a wall and meets a larger
#   gradient there. With plain SGD, a clipped step is never longer than $\text{lr}\cdot c$ (with momentum,
#   clipping bounds each gradient that enters the velocity).
# - **Clipping made every run learn the adding problem** (10 of 10 seeds below $\tfrac1{12}$); without it some
#   runs failed.
# - **An LSTM carries gradient along its cell through the forget gates,** more than the RNN at initialisation on
#   every seed here; it learns the task better, and is still trained with clipping.
#
# **Claim vs measurement.** *"LSTMs solve the exploding gradient problem."* Half-true: they were designed against
# *vanishing* gradients, and in section 4 carry more gradient back in time; but more gradient is also more room
# to explode, and nothing in the cell bounds it. Clipping, which this notebook showed makes a recurrent run
# reliable, stays part of LSTM training.
