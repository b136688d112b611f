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
# # 03 · Learning rate, sharpness and warmup
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/taming-gradients/taming-gradients/blob/main/notebooks/03_learning_rate.ipynb)
#
# Gradient descent is stable only while the learning rate stays below $2/\lambda_{\max}$, where $\lambda_{\max}$
# (the *sharpness*) is the largest eigenvalue of the loss's Hessian. After this notebook you can measure
# $\lambda_{\max}$ of a network with Hessian-vector products, tell an exploding gradient from a learning rate
# that is simply too large, explain what warmup does (with Optax schedules), and say why Adam survives an
# explosion that kills SGD without making it harmless.

# %%
# On Colab, install this course's helpers (elsewhere `make lab` has, and this line does nothing).
# !python -c "import google.colab" 2>/dev/null && pip install -q flax==0.12.12 optax==0.2.8 git+https://github.com/taming-gradients/taming-gradients

# %%
import functools

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

from helpers.data import load_digits
from helpers.exercises import learning_rate as ex
from helpers.models import ModelConfig
from helpers.plots import COLORS, compare_histories, plot_layer_profile, series
from helpers.train import TrainConfig, evaluate, train
from helpers.widgets import panel

data = load_digits(seed=0)
print(f"{len(data.x_train)} training and {len(data.x_test)} test digits of shape {data.image_shape}")

# %% [markdown]
# ## Predict first
#
# Write down your guesses before running anything; each is measured below.
#
# 1. Gradient descent on $f(w) = \tfrac{10}{2} w^2$ (curvature 10), starting at $w = 1$. With `lr = 0.19` and
#    with `lr = 0.21`: does $w$ go to 0, oscillate forever, or blow up?
# 2. An 8-layer ReLU MLP initialised with weights 1.5 times He's (`init_scale = 1.5`) produces NaN within a few
#    steps of SGD at `lr = 0.1`. With a 100-step linear warmup to the *same* `lr = 0.1` it trains. During those
#    100 steps, does the sharpness $\lambda_{\max}$ grow, stay, or shrink, and by roughly how much?
# 3. One weight's gradient is 10,000 times larger than usual. How much larger is Adam's first update of that
#    weight than it would be for a usual gradient?

# %% [markdown]
# ## 1. A quadratic: gradient descent diverges exactly when `lr > 2 / lambda_max`
#
# Take $f(w) = \tfrac12 w^\top A w$ with a symmetric $A = \sum_i \lambda_i u_i u_i^\top$. Its gradient is $Aw$,
# so one step of gradient descent is
#
# $$w_{t+1} = w_t - \eta A w_t = (I - \eta A)\, w_t .$$
#
# Write $w_t = \sum_i c_{i,t} u_i$ in $A$'s eigenvectors: each coordinate evolves on its own, $c_{i,t+1} =
# (1-\eta\lambda_i)\, c_{i,t}$, so $c_{i,t} = (1-\eta\lambda_i)^t c_{i,0}$. Every coordinate shrinks if and only
# if $|1-\eta\lambda_i| < 1$ for all $i$, that is
#
# $$0 < \eta < \frac{2}{\lambda_{\max}} .$$
#
# Between $1/\lambda_{\max}$ and $2/\lambda_{\max}$ the sharpest coordinate flips sign at every step with a
# shrinking amplitude; above $2/\lambda_{\max}$ the amplitude grows by $|1-\eta\lambda_{\max}|$ per step. The
# *sharpest* direction sets the limit, the flattest one the speed (LeCun et al. 1998, "Efficient BackProp").
# Here it is in plain JAX, with eigenvalues 10 and 1 in a rotated basis:

# %%
angle = 0.5
Q = jnp.array([[jnp.cos(angle), -jnp.sin(angle)], [jnp.sin(angle), jnp.cos(angle)]])
A = Q @ jnp.diag(jnp.array([10.0, 1.0])) @ Q.T
lams = jnp.linalg.eigvalsh(A)
lam_max = float(lams[-1])


def f(w):
    return 0.5 * w @ A @ w


@functools.partial(jax.jit, static_argnames="steps")
def gd_norms(w0, lr, steps):
    """||w_t|| for t = 0 .. steps under w <- w - lr * grad f(w)."""

    def step(w, _):
        w = w - lr * jax.grad(f)(w)
        return w, jnp.linalg.norm(w)

    _, norms = jax.lax.scan(step, w0, None, length=steps)
    return jnp.concatenate([jnp.linalg.norm(w0)[None], norms])


w0 = jnp.array([1.0, 1.0])
final = {factor: float(gd_norms(w0, factor * 2 / lam_max, 500)[-1]) for factor in (0.99, 1.01)}
# One print per cell: its text then arrives as one output, however long the computations before it take.
print(
    f"eigenvalues of A: {np.round(np.asarray(lams), 3)}; 2 / lambda_max = {2 / lam_max:.4f}\n"
    + "\n".join(
        f"lr = {f * 2 / lam_max:.4f} ({f} x 2/lambda_max): ||w|| after 500 steps = {final[f]:.2g}" for f in final
    )
)

# %% [markdown]
# One per cent below the edge, $\|w\|$ falls from 1.4 to $6\times10^{-5}$ in 500 steps; one per cent above, it
# grows to $3\times10^{4}$. So in question 1, `lr = 0.19` converges (oscillating) and `lr = 0.21` blows up:
# the edge is $2/10 = 0.2$ exactly.

# %%
assert 5e-5 < final[0.99] < 7e-5 and 2.5e4 < final[1.01] < 3.5e4
assert abs(2 / lam_max - 0.2) < 1e-5

# %% [markdown]
# **Theory next to measurement.** For each learning rate, the measured growth factor per step is
# $(\|w_{100}\| / \|w_{50}\|)^{1/50}$; the theory says $\max_i |1-\eta\lambda_i|$.

# %%
lr_grid = np.linspace(0.01, 0.25, 25)
measured_rate = np.array(
    [float((gd_norms(w0, lr, 100)[100] / gd_norms(w0, lr, 100)[50]) ** (1 / 50)) for lr in lr_grid]
)
lr_fine = np.linspace(0.0, 0.26, 300)
theory_rate = np.max(np.abs(1 - np.outer(lr_fine, np.asarray(lams))), axis=1)
theory_at_grid = np.max(np.abs(1 - np.outer(lr_grid, np.asarray(lams))), axis=1)

fig, ax = plt.subplots(figsize=(7.5, 4), dpi=90, layout="constrained")
ax.axvspan(2 / lam_max, lr_fine[-1], color=COLORS["diverged"], alpha=0.12, lw=0, label="diverges: lr > 2 / lambda_max")
ax.plot(lr_fine, theory_rate, ls="--", color=COLORS["theory"], label="theory: max |1 - lr * lambda_i|")
ax.plot(lr_grid, measured_rate, "o", ms=5, color=COLORS["measured"], label="measured: (||w_100|| / ||w_50||)^(1/50)")
ax.axhline(1, color="grey", lw=0.8)
ax.axvline(1 / lam_max, color="grey", ls=":", lw=1)
ax.annotate(
    "lr = 1 / lambda_max:\nsharp direction solved\nin one step",
    (1 / lam_max, 0.3),
    xytext=(6, 0),
    textcoords="offset points",
    fontsize=8,
)
ax.set(
    xlabel="learning rate lr",
    ylabel="growth factor of ||w|| per step",
    title="Gradient descent on a quadratic with eigenvalues 10 and 1",
    xlim=(0, lr_fine[-1]),
)
ax.legend(fontsize=8, loc="upper left")
plt.show()
print(f"largest relative gap between measurement and theory: {np.max(np.abs(measured_rate / theory_at_grid - 1)):.1e}")

# %%
assert np.max(np.abs(measured_rate / theory_at_grid - 1)) < 0.01
assert np.all((measured_rate > 1) == (lr_grid > 2 / lam_max))

# %% [markdown]
# Every measured point sits on the theory line (within 1 %), and the growth factor crosses 1 exactly at
# $2/\lambda_{\max} = 0.2$. The V shape is the whole story of this notebook in one picture: below
# $1/\lambda_{\max}$ a larger learning rate is faster, beyond it the sharp direction starts to overshoot, and
# at $2/\lambda_{\max}$ overshooting turns into divergence.

# %% [markdown]
# ## 2. The sharpness of a network, with Hessian-vector products
#
# Near any point $\theta$ the training loss is, to second order,
# $\mathcal{L}(\theta+\Delta) \approx \mathcal{L}(\theta) + g^\top\Delta + \tfrac12 \Delta^\top H \Delta$,
# with $H$ the Hessian. As long as the steps stay where this expansion holds, gradient descent on a network is
# gradient descent on this quadratic, and the same edge $2/\lambda_{\max}(H)$ applies. Forming $H$ is out of the
# question (see the count below), but the product $Hv$ costs about two gradients: it is the derivative of the
# gradient in the direction $v$, one forward-mode pass (`jax.jvp`) through the reverse-mode gradient
# (`jax.grad`) (Pearlmutter 1994). Power iteration, $v \leftarrow Hv / \|Hv\|$, then converges to the
# eigenvector whose eigenvalue has the largest magnitude, and $v^\top H v$ estimates that eigenvalue (we check
# that it comes out positive).
#
# The network: an MLP with 8 hidden ReLU layers of 64 units, He initialisation; the loss: mean cross-entropy on
# the first 512 training digits (full batch, so that there is one well-defined Hessian).

# %%
N = 512
xb, yb = jnp.asarray(data.x_train[:N]), jnp.asarray(data.y_train[:N])

net = ModelConfig(depth=8, width=64, init_scale=1.0, seed=0).build(data.image_shape, data.num_classes)
graphdef, params_he, rest = nnx.split(net, nnx.Param, ...)  # the weights as a plain tree of arrays
n_params = sum(p.size for p in jax.tree.leaves(params_he))


def loss_fn(params):
    """Mean cross-entropy on the 512 digits of the network with these weights."""
    logits = nnx.merge(graphdef, params, rest, copy=True)(xb)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()


value_and_grad = jax.jit(jax.value_and_grad(loss_fn))


@jax.jit
def loss_along(params, v, ts):
    """L(params + t v) for every t in ts."""
    return jax.vmap(lambda t: loss_fn(optax.tree.add_scale(params, t, v)))(ts)


def hvp(params, v):
    """H v: the derivative of the gradient in the direction v (forward over reverse)."""
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


@jax.jit
def sharpness(params, v, iters):
    """Power iteration v <- Hv / ||Hv||, started at the unit vector v; returns (v^T H v, v)."""

    def body(_, carry):
        v, _ = carry
        hv = hvp(params, v)
        return optax.tree.scale(1 / optax.tree.norm(hv), hv), optax.tree.vdot(v, hv)

    v, lam = jax.lax.fori_loop(0, iters, body, (v, jnp.float32(0.0)))
    return lam, v


def unit_random_like(params, seed=0):
    """A random direction in parameter space, of norm 1."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    v = treedef.unflatten([jax.random.normal(k, p.shape) for k, p in zip(keys, leaves, strict=True)])
    return optax.tree.scale(1 / optax.tree.norm(v), v)


lam0_he, v_top = sharpness(params_he, unit_random_like(params_he), 30)
lam0_he = float(lam0_he)
lam_again, _ = sharpness(params_he, v_top, 10)
eps = 0.03
loss_minus, loss0, loss_plus = np.asarray(loss_along(params_he, v_top, jnp.array([-eps, 0.0, eps])), dtype=float)
second_difference = (loss_plus - 2 * loss0 + loss_minus) / eps**2
print(
    f"{n_params} parameters: the Hessian would have {n_params**2:.2g} entries ({4 * n_params**2 / 1e9:.1f} GB)\n"
    f"lambda_max at initialisation: {lam0_he:.1f} (10 more iterations: {float(lam_again):.1f}); "
    f"2 / lambda_max = {2 / lam0_he:.3f}\n"
    f"check: second difference of the loss along v, (L(+eps v) - 2 L + L(-eps v)) / eps^2 = {second_difference:.1f}"
)

# %% [markdown]
# 33,930 weights: the Hessian would hold 1.2 billion numbers (4.6 GB), but power iteration needs only
# products. $\lambda_{\max} \approx 20.9$ at initialisation, so the quadratic model says the edge is at
# `lr` $\approx 0.096$. Ten more iterations do not move the estimate, and an independent check, the
# curvature of the loss measured by finite differences along $v$, agrees within 1 %.

# %%
assert n_params == 33930
assert 19 < lam0_he < 23 and abs(float(lam_again) / lam0_he - 1) < 1e-3
assert abs(second_difference / lam0_he - 1) < 0.01

# %% [markdown]
# How far does the quadratic model hold? The loss along the top eigenvector, $\mathcal{L}(\theta + t v)$, next
# to its second-order model $\mathcal{L}(\theta) + t\, g^\top v + \tfrac12 \lambda_{\max} t^2$:

# %%
g_he = value_and_grad(params_he)[1]
gv = float(optax.tree.vdot(g_he, v_top))
ts = np.linspace(-0.6, 0.6, 25)
along = np.asarray(loss_along(params_he, v_top, jnp.asarray(ts)), dtype=float)
model_quadratic = loss0 + ts * gv + 0.5 * lam0_he * ts**2

fig, ax = plt.subplots(figsize=(7, 3.8), dpi=90, layout="constrained")
ax.plot(ts, model_quadratic, ls="--", color=COLORS["theory"], label="quadratic model (lambda_max from power iteration)")
ax.plot(ts, along, "o", ms=4, color=COLORS["measured"], label="measured loss")
ax.set(
    xlabel="t (distance along the top eigenvector v)",
    ylabel="training loss",
    title="Loss along the sharpest direction at initialisation (8 x 64 ReLU MLP)",
)
ax.legend(fontsize=8)
plt.show()
near = np.abs(ts) <= 0.1
rel_near = np.max(np.abs(along[near] / model_quadratic[near] - 1))
i_far = int(np.argmax(np.abs(model_quadratic - along)))
print(
    f"|t| <= 0.1: largest relative gap {rel_near:.1%}; at t = {ts[i_far]:+.2f}: quadratic {model_quadratic[i_far]:.2f}, "
    f"measured {along[i_far]:.2f}"
)

# %% [markdown]
# Within $|t| \le 0.1$ the parabola is within 1 % of the measured loss. Further out the loss is not a parabola:
# on one side it rises faster, on the other it stops rising (at $t = 0.6$ the quadratic predicts 5.2 and the
# loss is 2.6). Cross-entropy grows only linearly in the logits once the softmax saturates, and ReLU units
# switch on and off. This is why a network does not simply blow up the moment `lr` crosses $2/\lambda_{\max}$:
# an overshoot can land where the loss is flatter. The edge is a *local* statement.

# %%
assert rel_near < 0.01
assert abs(ts[i_far]) == 0.6 and model_quadratic[i_far] > 1.5 * along[i_far]

# %% [markdown]
# ### Crossing `2 / lambda_max` in a network
#
# The cleanest test of a local statement is near a minimum, where the gradient is small and the quadratic model
# holds. We train with full-batch gradient descent at `lr = 0.05` for 320 steps, measure $\lambda_{\max}$ there
# ($\lambda^*$), then continue from that point with learning rates just below and just above $2/\lambda^*$.


# %%
@jax.jit
def descend(params, lrs):
    """Full-batch gradient descent, one step per entry of lrs; returns (params, (losses, gradient norms))."""

    def step(p, lr):
        loss, g = jax.value_and_grad(loss_fn)(p)
        return jax.tree.map(lambda w, gw: w - lr * gw, p, g), (loss, optax.tree.norm(g))

    return jax.lax.scan(step, params, lrs)


params_trained = params_he
for _ in range(8):  # 8 x 40 = 320 steps
    params_trained, (losses, _) = descend(params_trained, jnp.full(40, 0.05))
lam_star, _ = sharpness(params_trained, unit_random_like(params_he), 40)
lam_star = float(lam_star)
edge = 2 / lam_star

factors = [0.5, 0.9, 0.95, 1.05, 1.3, 2.0]
after = {c: np.asarray(descend(params_trained, jnp.full(40, c * edge))[1][0]) for c in factors}
from_init = np.asarray(descend(params_he, jnp.full(40, 3 * 2 / lam0_he))[1][0])

lines = [f"after 320 steps: loss {float(losses[-1]):.4f}, lambda* = {lam_star:.1f}, 2 / lambda* = {edge:.3f}"]
for c, curve in after.items():
    worst = np.max(np.where(np.isfinite(curve), curve, np.inf))
    lines.append(
        f"lr = {c:4.2f} x 2/lambda*: loss falls at every step: {bool(np.all(np.diff(curve) < 0))!s:5}; "
        f"highest loss / starting loss = {worst / curve[0]:.2g}; loss at step 39: {curve[-1]:.3g}"
    )
lines.append(
    f"from initialisation at lr = 3 x 2/lambda_max = {6 / lam0_he:.2f}: loss {from_init[0]:.2f} -> highest "
    f"{from_init.max():.2f} (step {from_init.argmax()}) -> {from_init[-1]:.2f} at step 39"
)
print("\n".join(lines))

# %%
fig, ax = plt.subplots(figsize=(7.5, 4), dpi=90, layout="constrained")
below, above_edge = [c for c in factors if c < 1], [c for c in factors if c > 1]
colors = dict(zip(below + above_edge, ["#56B4E9", "#0072B2", "#009E73", "#E69F00", "#D55E00", "#CC79A7"], strict=True))
for c, curve in after.items():
    finite = np.isfinite(curve)
    ax.plot(
        np.where(finite, curve, np.nan),
        color=colors[c],
        lw=1.8,
        ls="-" if c < 1 else "--",
        label=f"lr = {c:g} x 2/lambda*",
    )
    if not finite.all():
        ax.plot(np.argmin(finite), 0.97, "X", ms=8, color=colors[c], transform=ax.get_xaxis_transform(), clip_on=False)
ax.axhline(np.log(10), color="grey", lw=0.8, ls=":", label="ln 10: loss of a uniform guess")
ax.set_yscale("log")
ax.set_ylim(2e-3, 1e3)
ax.set(
    xlabel="step (continuing from the trained point)",
    ylabel="training loss (log scale)",
    title=f"Crossing the edge: lambda* = {lam_star:.1f}, 2/lambda* = {edge:.3f} (X: loss not finite)",
)
ax.legend(fontsize=8, ncols=2, loc="upper right")
plt.show()

# %% [markdown]
# The edge is sharp: at $0.95 \times 2/\lambda^*$ the loss still falls at every one of the 40 steps; at
# $1.05\times$ it jumps by a factor of about 1,400 (from 0.008 to about 10), and 40 steps later it is still at
# 1.6, some 200 times worse than where it started: a few steps beyond the edge undid 320 steps of training.
# Larger factors blow up sooner, and at $2\times$ the loss turns NaN.
#
# Two honest caveats. First, $\lambda^*$ is measured at the starting point only; the sharpness moves as
# training goes on, so "exactly at $2/\lambda_{\max}$" holds here to within a few per cent, not to three digits.
# Second, far from a minimum a network can survive a learning rate beyond the edge: from *initialisation*,
# 40 steps at $3 \times 2/\lambda_{\max}$ raise the loss from 2.55 to 3.59 (step 13), and then it falls to 2.0,
# without a NaN. The overshoot throws the network into a flatter region, where the learning rate is stable
# again (the "catapult" of Lewkowycz et al. 2020; Cohen et al. 2021 found that full-batch training typically
# drives the sharpness up to $2/\text{lr}$ and then hovers there, the *edge of stability*). Whether such a
# rescue happens is what warmup is about (section 4).

# %%
for c in (0.5, 0.9, 0.95):
    assert np.all(np.diff(after[c]) < 0), c
for c in (1.05, 1.3, 2.0):
    assert np.nanmax(np.where(np.isfinite(after[c]), after[c], np.inf)) > 100 * after[c][0], c
assert 1000 < np.max(after[1.05]) / after[1.05][0] < 2000 and 150 < after[1.05][-1] / after[1.05][0] < 250
assert not np.all(np.isfinite(after[2.0]))
assert np.all(np.isfinite(from_init)) and round(from_init[0], 2) == 2.55 and round(from_init.max(), 2) == 3.59
assert from_init.argmax() == 13 and round(from_init[-1], 1) == 2.0

# %% [markdown]
# ## 3. An exploding gradient or a learning rate that is too large?
#
# Both end in NaN, so they are easy to confuse. Now with `helpers.train` (minibatches of 64, plain SGD), three
# runs of the same 8 x 64 MLP:
#
# - **healthy**: He initialisation, `lr = 0.1`;
# - **learning rate too large**: the same network, `lr = 1.0`;
# - **exploding gradient**: weights 1.5 times He's (`init_scale = 1.5`), `lr = 0.1`.
#
# The step-0 gradient is computed before any update, so it cannot depend on the learning rate: it is the
# network's. That is the diagnostic.

# %%
he, sharp = ModelConfig(depth=8, width=64), ModelConfig(depth=8, width=64, init_scale=1.5)
runs = {
    "healthy: He, lr 0.1": (he, TrainConfig(lr=0.1, steps=30)),
    "lr too large: He, lr 1.0": (he, TrainConfig(lr=1.0, steps=30)),
    "exploding: init_scale 1.5, lr 0.1": (sharp, TrainConfig(lr=0.1, steps=30)),
}
histories = {name: train(m.build(data.image_shape, data.num_classes), data, c) for name, (m, c) in runs.items()}

_, params_sharp, _ = nnx.split(sharp.build(data.image_shape, data.num_classes), nnx.Param, ...)
logits_ratio = float(
    jnp.linalg.norm(nnx.merge(graphdef, params_sharp, rest)(xb))
    / jnp.linalg.norm(nnx.merge(graphdef, params_he, rest)(xb))
)
lam0_sharp = float(sharpness(params_sharp, unit_random_like(params_sharp), 30)[0])

lines = []
for name, h in histories.items():
    ended = f"diverged at step {h.diverged_at}" if h.diverged_at is not None else f"final loss {h.loss[-1]:.3f}"
    lines.append(f"{name:34} step-0 gradient norm {h.grad_norm[0]:7.3g}   {ended}")
lines.append(f"logits at initialisation, init_scale 1.5 / He: {logits_ratio:.1f} (1.5**9 = {1.5**9:.1f})")
lines.append(
    f"lambda_max at initialisation (512 digits): He {lam0_he:.1f}, init_scale 1.5: {lam0_sharp:.0f} "
    f"-> 2 / lambda_max = {2 / lam0_he:.3f} and {2 / lam0_sharp:.5f}"
)
print("\n".join(lines))

# %%
fig = compare_histories(histories, title="Same symptom (NaN), different causes: read the gradient at step 0")
for ax in fig.axes:
    ax.set_ylim(top=1e9)  # the last finite values before NaN reach 1e32; the start is what matters here
    ax.legend(fontsize=7, loc="center right")
fig

# %%
ax = plot_layer_profile(
    histories["healthy: He, lr 0.1"].layer_grad_norms[0],
    histories["healthy: He, lr 0.1"].layer_names,
    label="He (init_scale 1): both He runs",
    color=COLORS["measured"],
    title="Weight-gradient norm per layer at step 0 (before any update)",
)
plot_layer_profile(
    histories["exploding: init_scale 1.5, lr 0.1"].layer_grad_norms[0],
    histories["healthy: He, lr 0.1"].layer_names,
    ax=ax,
    label="init_scale 1.5",
    color=COLORS["diverged"],
    title="Weight-gradient norm per layer at step 0 (before any update)",
)
ax.set_ylim(0.1, 1000)  # both profiles (the first call fixed the limits around its own values)
ax.figure

# %%
g0 = {name: h.grad_norm[0] for name, h in histories.items()}
per_layer_sharp = histories["exploding: init_scale 1.5, lr 0.1"].layer_grad_norms[0]
per_layer_he = histories["healthy: He, lr 0.1"].layer_grad_norms[0]
print(
    f"step-0 gradient, exploding / healthy: {g0['exploding: init_scale 1.5, lr 0.1'] / g0['healthy: He, lr 0.1']:.0f}x; "
    f"per layer from {np.min(per_layer_sharp / per_layer_he):.0f}x to {np.max(per_layer_sharp / per_layer_he):.0f}x"
)

# %% [markdown]
# What to read off:
#
# - **Learning rate too large** (He, `lr = 1.0`): the step-0 gradient is the healthy run's, 2.3, to the last
#   digit (same network, same first batch). The trouble builds up over the steps as the updates overshoot,
#   and the loss becomes NaN at step 12. The network is fine: at `lr = 0.1` its loss falls to 1.4 within the
#   same 30 steps. Fix: a smaller `lr` (or warmup).
# - **Exploding gradient** (`init_scale = 1.5`): the gradient is 65 times larger *before the first update*,
#   and in every layer alike (49x to 100x; notebook 01 explains why the weight gradients of all layers grow
#   together). The run is NaN at step 3. The cause is the network, and so is the fix: a correct
#   initialisation (notebook 02), normalisation (notebook 06; Ioffe & Szegedy 2015), or clipping the gradient
#   (notebook 04; Pascanu et al. 2013).
#
# They meet in the sharpness. A ReLU network with zero biases is positively homogeneous: multiplying all 9
# weight matrices by 1.5 multiplies the logits by exactly $1.5^9 = 38.4$ (measured: 38.4). The softmax starts
# saturated, and $\lambda_{\max}$ at initialisation rises from 21 to about 2,300, so the stable learning rate
# shrinks 110-fold, to about 0.0009. For the optimizer, an exploding
# gradient *is* a learning rate that is too large for that network. That also suggests a way around it.

# %%
assert histories["lr too large: He, lr 1.0"].grad_norm[0] == histories["healthy: He, lr 0.1"].grad_norm[0]
assert round(float(g0["healthy: He, lr 0.1"]), 1) == 2.3
assert (
    histories["healthy: He, lr 0.1"].diverged_at is None
    and round(float(histories["healthy: He, lr 0.1"].loss[-1]), 1) == 1.4
)
assert histories["lr too large: He, lr 1.0"].diverged_at == 12
assert histories["exploding: init_scale 1.5, lr 0.1"].diverged_at == 3
assert 55 < g0["exploding: init_scale 1.5, lr 0.1"] / g0["healthy: He, lr 0.1"] < 75
assert 45 < np.min(per_layer_sharp / per_layer_he) and np.max(per_layer_sharp / per_layer_he) < 110
assert 1800 < lam0_sharp < 2800 and 100 < lam0_sharp / lam0_he < 120
assert abs(logits_ratio / 1.5**9 - 1) < 1e-3

# %% [markdown]
# ## 4. Warmup: let the network become flat enough for its learning rate
#
# Warmup starts with a small learning rate and raises it to the peak over the first steps (Goyal et al. 2017
# used it to train ImageNet with large batches). Gilmer et al. (2021) measured what it does: while the learning
# rate is small, training moves the network to regions of lower sharpness, and by the time the peak is reached
# $\lambda_{\max}$ has fallen below $2/\text{lr}$. We check that directly on the `init_scale = 1.5` network,
# full batch, by hand. The learning rates come from Optax schedules, which are just functions step -> lr:

# %%
peak, warmup_steps = 0.1, 100
schedules = {
    "no warmup": optax.constant_schedule(peak),
    f"warmup {warmup_steps} steps": optax.linear_schedule(
        init_value=0.0, end_value=peak, transition_steps=warmup_steps
    ),
}


def run_with_sharpness(params, schedule, steps=120, every=5):
    """Full-batch GD with lr = schedule(step); lambda_max every `every` steps (warm-started power iteration)."""
    lrs = jax.vmap(schedule)(jnp.arange(steps))
    lam, v = sharpness(params, unit_random_like(params), 30)
    losses, norms, sharp_steps, sharp_values = [], [], [], []
    for start in range(0, steps, every):
        lam, v = sharpness(params, v, 6)
        sharp_steps.append(start)
        sharp_values.append(float(lam))
        params, (loss, norm) = descend(params, lrs[start : start + every])
        losses.extend(np.asarray(loss))
        norms.extend(np.asarray(norm))
        if not np.isfinite(losses[-1]):
            break
    return {
        "loss": np.array(losses),
        "grad_norm": np.array(norms),
        "lr": np.asarray(lrs),
        "sharp_steps": np.array(sharp_steps),
        "sharpness": np.array(sharp_values),
    }


warm = {name: run_with_sharpness(params_sharp, s) for name, s in schedules.items()}
lines = [
    f"lr at steps 0, 1, 50, 100, 200: {name}: {[round(float(s(t)), 4) for t in (0, 1, 50, 100, 200)]}"
    for name, s in schedules.items()
]
for name, r in warm.items():
    bad = np.flatnonzero(~np.isfinite(r["loss"]))
    end = f"loss not finite at step {bad[0]}" if len(bad) else f"final loss {r['loss'][-1]:.3f}"
    lines.append(f"{name:17}: {end}; sharpness {r['sharpness'][0]:.0f} -> {r['sharpness'][-1]:.3g} (last measured)")
print("\n".join(lines))

# %%
fig, (ax_l, ax_g, ax_s) = plt.subplots(1, 3, figsize=(11, 3.8), dpi=90, layout="constrained")
run_colors = {"no warmup": COLORS["diverged"], f"warmup {warmup_steps} steps": COLORS["measured"]}
for name, r in warm.items():
    steps = np.arange(len(r["loss"]))
    ax_l.plot(steps, np.where(np.isfinite(r["loss"]), r["loss"], np.nan), color=run_colors[name], label=name)
    ax_g.plot(steps, np.where(np.isfinite(r["grad_norm"]), r["grad_norm"], np.nan), color=run_colors[name], label=name)
    ok = np.isfinite(r["sharpness"])
    hollow = {"mfc": "none", "ms": 9, "mew": 1.5} if name == "no warmup" else {"ms": 4}
    ax_s.plot(
        r["sharp_steps"][ok], r["sharpness"][ok], "o", color=run_colors[name], label=f"{name}: measured", **hollow
    )
r = warm[f"warmup {warmup_steps} steps"]
t = np.arange(1, len(r["lr"]))
ax_s.plot(t, 2 / r["lr"][1:], ls="--", color=COLORS["theory"], label="2 / lr(step), warmup run")
ax_s.axhline(2 / peak, color=COLORS["theory"], ls=":", lw=1, label=f"2 / peak lr = {2 / peak:g}")
for ax, what in ((ax_l, "training loss"), (ax_g, "gradient norm"), (ax_s, "sharpness lambda_max")):
    ax.set_yscale("log")
    ax.set(xlabel="step", ylabel=f"{what} (log scale)")
    ax.legend(fontsize=7)
ax_l.set_title("loss (full batch)")
ax_g.set_title("global gradient norm")
ax_s.set_title("sharpness vs the edge 2 / lr")
ax_s.set_ylim(3, 2e4)
ax_l.set_ylim(1e-3, 1e5)  # the run without warmup leaves the axes upwards, then turns NaN at step 4
ax_g.set_ylim(1e-2, 1e9)
fig.suptitle(f"init_scale 1.5, peak lr {peak}: without and with a {warmup_steps}-step linear warmup", fontsize=11)
plt.show()

# %%
r0, r1 = warm["no warmup"], warm[f"warmup {warmup_steps} steps"]
during = (r1["sharp_steps"] >= 5) & (r1["sharp_steps"] < warmup_steps)
ratio_to_edge = r1["sharpness"][during] / (2 / r1["lr"][r1["sharp_steps"][during]])  # lambda_max / (2 / lr)
above = ratio_to_edge > 1
print(
    f"without warmup: gradient norm {r0['grad_norm'][0]:.0f} -> {r0['grad_norm'][2]:.2g} at step 2; "
    f"first non-finite loss at step {np.flatnonzero(~np.isfinite(r0['loss']))[0]}\n"
    f"with warmup: sharpness {r1['sharpness'][0]:.0f} -> {r1['sharpness'][-1]:.1f} "
    f"({r1['sharpness'][0] / r1['sharpness'][-1]:.0f}x flatter); above 2/lr(step) at {above.sum()} of "
    f"{above.size} measurements in steps 5-95, by up to {np.max(ratio_to_edge):.1f}x; final loss {r1['loss'][-1]:.3f}"
)

# %% [markdown]
# Without warmup the first step at `lr = 0.1`, 117 times the edge $2/\lambda_{\max} \approx 0.00085$, throws
# the network far out: the gradient norm goes from 168 to $6\times10^{7}$ in two steps and the loss is
# non-finite at step 4. With warmup the sharpness falls 280-fold, from about 2,340 to 8.3, *below*
# $2/\text{peak} = 20$, so the peak learning rate is stable when it arrives; the loss ends at 0.016. The answer
# to question 2: the sharpness shrinks, by more than two orders of magnitude. During warmup it is not exactly
# at the edge: at 17 of the 19 measurements between steps 5 and 95 it sits *above* $2/\text{lr}(t)$, by up to a
# factor of 5 (a power iteration stopped early can only *under*estimate $\lambda_{\max}$, so this is not an
# artefact of the estimate). Gradient descent survives that because the loss is not quadratic that far out
# (section 2): each overshoot kicks the network towards flatter regions instead of blowing it up. That is the
# edge-of-stability behaviour of Cohen et al. (2021), here driven by the rising learning rate.

# %%
assert round(peak / (2 / lam0_sharp)) == 117
assert np.flatnonzero(~np.isfinite(r0["loss"]))[0] == 4
assert round(float(r0["grad_norm"][0])) == 168 and 5.5e7 < r0["grad_norm"][2] < 6.5e7
assert np.all(np.isfinite(r1["loss"])) and round(float(r1["loss"][-1]), 3) == 0.016
assert round(r1["sharpness"][-1], 1) == 8.3 and 250 < r1["sharpness"][0] / r1["sharpness"][-1] < 310
assert above.sum() == 17 and above.size == 19 and 4.5 < np.max(ratio_to_edge) < 5.5

# %% [markdown] The same with `helpers.train` (minibatches of 64, 300 steps, `TrainConfig(warmup_steps=100)`,
# whose linear warmup is `lr * min(1, (step + 1) / warmup_steps)`):

# %%
net_warm = sharp.build(data.image_shape, data.num_classes)
warm_histories = {
    f"lr {peak}, warmup_steps={warmup_steps}": train(
        net_warm, data, TrainConfig(lr=peak, steps=300, warmup_steps=warmup_steps)
    ),
    f"lr {peak}, no warmup": train(
        sharp.build(data.image_shape, data.num_classes), data, TrainConfig(lr=peak, steps=300)
    ),
}
acc_warm = evaluate(net_warm, data.x_test, data.y_test)
ends = [
    f"diverged at step {h.diverged_at}" if h.diverged_at is not None else f"final loss {h.loss[-1]:.3f}"
    for h in warm_histories.values()
]
print(
    "\n".join(f"{name:28} {end}" for name, end in zip(warm_histories, ends, strict=True))
    + f"\ntest accuracy with warmup: {acc_warm:.1%}"
)
fig = compare_histories(
    warm_histories, title="init_scale 1.5, SGD with minibatches: warmup turns a NaN into a trained network"
)
fig.axes[0].set_ylim(top=1e6)  # the run without warmup reaches 1e32 before its NaN
fig

# %% [markdown]
# Again: NaN at step 3 without warmup; with it, 300 steps train the network to 97.8 % test accuracy.

# %%
assert warm_histories[f"lr {peak}, no warmup"].diverged_at == 3
assert warm_histories[f"lr {peak}, warmup_steps={warmup_steps}"].diverged_at is None
assert round(acc_warm, 3) == 0.978

# %% [markdown]
# ## 5. Adam vs SGD: bounded steps, not a cure
#
# SGD's step is $\eta g$: a gradient 1,000 times too large gives a step 1,000 times too large. Adam (Kingma & Ba
# 2015) divides a running mean of the gradient by the square root of a running mean of its square,
#
# $$\Delta = -\eta\, \frac{\hat m}{\sqrt{\hat v} + \epsilon},\qquad
# \hat m = \frac{m_t}{1-\beta_1^t},\; \hat v = \frac{v_t}{1-\beta_2^t},$$
#
# so the size of the gradient cancels. At the first step $\hat m = g$ and $\hat v = g^2$: every weight moves by
# exactly $\eta$ (up to $\epsilon$), whatever $g$ is. Later steps are bounded by
# $\eta (1-\beta_1)/\sqrt{1-\beta_2} \approx 3.2\,\eta$ in the worst case and are about $\eta$ or less in
# practice (Kingma & Ba, §2.1). By hand, on the gradient of the `init_scale = 1.5` network:

# %%
g_sharp = value_and_grad(params_sharp)[1]
adam_lr = 1e-3
adam = optax.adam(adam_lr)


@jax.jit
def largest_first_steps(g):
    """Largest |update| over all weights at the first step of Adam and of SGD, same lr, gradient g."""
    adam_update, _ = adam.update(g, adam.init(g))
    largest = lambda tree: optax.tree.max(jax.tree.map(jnp.abs, tree))  # noqa: E731
    return largest(adam_update), largest(optax.tree.scale(adam_lr, g))


first_steps = {
    scale: [float(u) for u in largest_first_steps(optax.tree.scale(scale, g_sharp))] for scale in (1.0, 1000.0)
}
# Two weights; the first one's gradient overflows at step 1, then both get ordinary gradients.
g1, g2 = jnp.array([jnp.inf, 1.0]), jnp.array([1.0, 1.0])
state = adam.init(g1)
u1, state = adam.update(g1, state)
u2, state = adam.update(g2, state)

print(
    "\n".join(
        f"gradient x {scale:6g}: largest |update| Adam {adam_max:.3g}, SGD {sgd_max:.3g}"
        for scale, (adam_max, sgd_max) in first_steps.items()
    )
    + f"\nAdam's updates of the two weights: step 1: {float(u1[0])}, {float(u1[1]):.3g}; "
    f"step 2: {float(u2[0])}, {float(u2[1]):.3g}"
)

# %%
assert all(abs(adam_max / adam_lr - 1) < 1e-3 for adam_max, _ in first_steps.values())
assert abs(first_steps[1000.0][1] / first_steps[1.0][1] - 1000) < 1
assert np.isnan(u1[0]) and np.isnan(u2[0]) and abs(float(u2[1]) + adam_lr) < 1e-6

# %% [markdown] Every weight moves by exactly `lr` = 0.001 whether the gradient is multiplied by 1 or 1,000,
# while SGD's largest step grows from 0.03 to 30. That answers question 3: not at all larger. But an infinite
# gradient gives $\infty/\infty$ = NaN, and the infinity stays in Adam's moment estimates, so that weight's
# update is NaN at every later step too: Adam bounds finite steps, it does not stop overflow.
#
# Does a bounded step make the explosion harmless? Train the same MLP with Adam (`lr = 1e-3`, 300 steps) at four
# initial scales, and compare the step-0 update (relative to the weights, per layer, averaged) with SGD's at the
# same learning rate:

# %%
scales = [1.0, 1.5, 2.0, 2.5]
adam_rows = []
for s in scales:
    m = ModelConfig(depth=8, width=64, init_scale=s)
    net_adam = m.build(data.image_shape, data.num_classes)
    h_adam = train(net_adam, data, TrainConfig(optimizer="adam", lr=adam_lr, steps=300))
    h_sgd = train(m.build(data.image_shape, data.num_classes), data, TrainConfig(lr=adam_lr, steps=1))
    adam_rows.append(
        {
            "init_scale": s,
            "grad0": h_adam.grad_norm[0],
            "diverged": h_adam.diverged_at,
            "adam_ratio0": h_adam.update_ratio[0].mean(),
            "sgd_ratio0": h_sgd.update_ratio[0].mean(),
            "train_acc": evaluate(net_adam, data.x_train, data.y_train),
            "test_acc": evaluate(net_adam, data.x_test, data.y_test),
        }
    )
print(
    "\n".join(
        f"init_scale {row['init_scale']}: step-0 gradient {row['grad0']:7.3g} | step-0 ||update||/||W||: "
        f"Adam {row['adam_ratio0']:.2g}, SGD {row['sgd_ratio0']:.2g} | Adam after 300 steps: NaN: "
        f"{row['diverged'] is not None}, train {row['train_acc']:.1%}, test {row['test_acc']:.1%}"
        for row in adam_rows
    )
)

# %%
fig, (ax_u, ax_a) = plt.subplots(1, 2, figsize=(10.5, 3.8), dpi=90, layout="constrained")
col = {k: np.array([row[k] for row in adam_rows]) for k in adam_rows[0] if k != "diverged"}
ax_u.plot(scales, col["sgd_ratio0"], "o-", color=COLORS["diverged"], label="SGD, lr 1e-3")
ax_u.plot(scales, col["adam_ratio0"], "s-", color=COLORS["measured"], label="Adam, lr 1e-3")
ax_u.set_yscale("log")
ax_u.set(
    xlabel="init_scale (1 = He)",
    ylabel="||update|| / ||W|| at step 0 (log scale)",
    title="Size of the first step, mean over layers",
)
ax_a.plot(scales, 100 * col["train_acc"], "o-", color=series(2)[1], label="training set")
ax_a.plot(scales, 100 * col["test_acc"], "s-", color=COLORS["measured"], label="test set")
ax_a.set(
    xlabel="init_scale (1 = He)", ylabel="accuracy (%)", title="Adam after 300 steps: no NaN, but...", ylim=(50, 101)
)
for ax in (ax_u, ax_a):
    ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Adam's first step stays between 0.002 and 0.005 of the weights' norm at every scale (it even shrinks, since
# the weights grow while the step does not), while SGD's grows by a factor of about 1,700 from `init_scale` 1 to
# 2.5. No Adam run produced a NaN. And yet test accuracy falls from 96.9 % (He) to 78.3 % (`init_scale` 2.5),
# with training accuracy still at 94 %. The network is ill-conditioned, not just its gradient: its logits start
# $s^9$ times larger than He's (section 3), the softmax is saturated, and the sharpness is huge (about 2,300
# already at 1.5), so a step of size `lr` per weight is still a large step for the loss. Adam hides the symptom
# (the gradient's size) and leaves the cause (the network). The cure is in the network: initialisation
# (notebook 02) or normalisation (notebook 06).

# %%
assert all(row["diverged"] is None for row in adam_rows)
assert np.all((0.0018 < col["adam_ratio0"]) & (col["adam_ratio0"] < 0.0051))
assert 1500 < col["sgd_ratio0"][-1] / col["sgd_ratio0"][0] < 1900
assert round(col["test_acc"][0], 3) == 0.969 and round(col["test_acc"][-1], 3) == 0.783
assert 0.93 < col["train_acc"][-1] < 0.95

# %% [markdown]
# ## 6. Explore: learning rate, warmup, optimizer
#
# The panel starts where section 4 ended: the `init_scale = 1.5` network at `lr = 0.1` without warmup (NaN at
# step 3). Try: raise `warmup_steps` until it trains, and find the shortest warmup that still works; then
# switch `optimizer` to `adam` and lower `lr` until Adam trains (its `lr` is a step size per weight, so 0.1 is
# a hundred times the usual 1e-3); finally try `momentum`: once its velocity has built up, a steady gradient
# moves the weights by $\text{lr}/(1-0.9) = 10\,\text{lr}$ per step.

# %% tags=["nbval-ignore-output"]
explore = panel(
    data,
    model=sharp,
    config=TrainConfig(lr=0.1, steps=300),
    controls=["lr", "warmup_steps", "optimizer"],
    title="init_scale 1.5 MLP: learning rate, warmup and optimizer",
)
explore

# %% [markdown]
# ## Exercises
#
# **1.** Gradient descent on $f(w) = \tfrac12 w^\top A w$ with $A = \begin{pmatrix}5 & 2\\ 2 & 2\end{pmatrix}$.
# What is the largest learning rate for which it converges from every starting point? (`ex.A_EXERCISE` is $A$.)

# %%
answer = ...
ok = ex.check_max_stable_lr(answer)

# %% [markdown] **2.** Write `my_hvp(loss, params, v)` that returns $Hv$ for any loss of a tree of parameters,
# without building $H$. The checker compares it with the exact Hessian of a small test loss.


# %%
def my_hvp(loss, params, v): ...  # your code here


ok = ex.check_hvp(my_hvp)

# %% [markdown]
# **3.** Make an Optax schedule that is 0 at step 0, rises linearly to 0.1 at step 100 and then stays at 0.1.
# (Pass it to `optax.sgd(schedule)` and it is a warmup.)

# %%
schedule = ...
ok = ex.check_warmup_schedule(schedule)

# %% [markdown]
# **4.** Adam with `lr = 1e-3` and Optax's defaults ($\beta_1 = 0.9$, $\beta_2 = 0.999$, $\epsilon = 10^{-8}$),
# starting from zero moments. A weight's gradient spikes to $g_1 = 10^4$ at the first step and is $g_2 = 1$ at
# the second. How large (in absolute value) is its second update? Is it larger or smaller than `lr`?

# %%
answer = ...
ok = ex.check_adam_after_spike(answer)

# %% [markdown]
# ## Claim vs measurement
#
# > "Use the learning rate to control the optimizer's speed, to avoid overfitting." (claim 4 of the blog post,
# > `../shared/claims-to-correct.md`)
#
# The first half is right: in the limit of small learning rates, gradient descent follows the gradient flow
# $\dot\theta = -\nabla\mathcal{L}(\theta)$, and `lr` only sets how fast it moves along that path: what matters
# is the product `lr x steps`. The second half does not follow: a smaller learning rate reaches the same
# overfitted point, later. Measured with the He-initialised 8 x 64 MLP, SGD, minibatches of 64, at `lr` 0.025
# and 0.1, with accuracies taken every 10 units of `lr x steps`:

# %%
lr_runs = {}
for lr in (0.025, 0.1):
    net_lr = he.build(data.image_shape, data.num_classes)
    rows = []
    for k in range(4):  # SGD keeps no state, so training in pieces is the same as one run (new batch order each piece)
        train(net_lr, data, TrainConfig(lr=lr, steps=round(10 / lr), seed=k))
        rows.append((evaluate(net_lr, data.x_train, data.y_train), evaluate(net_lr, data.x_test, data.y_test)))
    lr_runs[lr] = np.array(rows)
budget = 10 * np.arange(1, 5)
print(
    "\n".join(
        f"lr {lr}: {round(budget[-1] / lr)} steps; train accuracy {' '.join(f'{a:.3f}' for a in acc[:, 0])}; "
        f"test {' '.join(f'{a:.3f}' for a in acc[:, 1])}"
        for lr, acc in lr_runs.items()
    )
)

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.8), dpi=90, layout="constrained")
for (lr, acc), color in zip(lr_runs.items(), series(2), strict=True):
    steps_done = budget / lr
    ax.plot(steps_done, 100 * acc[:, 0], "o-", color=color, label=f"lr {lr}: training set")
    ax.plot(steps_done, 100 * acc[:, 1], "s--", color=color, label=f"lr {lr}: test set")
ax.set_xscale("log")
ax.set_xticks([100, 200, 400, 800, 1600], ["100", "200", "400", "800", "1600"])
ax.set(
    xlabel="SGD steps (log scale)",
    ylabel="accuracy (%)",
    title="Both learning rates end with the same train-test gap, about 2 points",
)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# After `lr x steps = 40` (1,600 steps at `lr = 0.025`, 400 at `lr = 0.1`) both networks fit the training set
# (100 % and 99.6 %) and reach 97.5 % and 97.8 % test accuracy: the same gap of about 2 points. On the way, the
# small learning rate was simply behind: after 400 steps it stood at 89.6 % training and 88.3 % test accuracy.
# Its gap was smaller then, but from underfitting, not from avoiding overfitting; stopping there would be early
# stopping, not the learning rate at work. (The larger `lr`, at the edge $2/\lambda_{\max} \approx 0.1$ of
# section 2, took a detour: the dip at `lr x steps = 20`.) What the measurement supports instead:
#
# - **The learning rate's real constraint is stability**, `lr < 2 / lambda_max` locally (sections 1-2), and the
#   sharpness changes during training (section 4).
# - **Its effect on generalisation is indirect**: here the two runs end 0.3 points apart. Large-step, noisy SGD
#   tends to settle in flatter regions and to generalise a little better (Keskar et al. 2017; Smith & Le 2018),
#   an *implicit* regularisation, not a knob that prevents overfitting.
# - **Against overfitting** use what targets it: weight decay (notebook 05, Loshchilov & Hutter 2019 for the
#   decoupled form), more data or augmentation, and early stopping on a validation set.

# %%
end = {lr: acc[-1] for lr, acc in lr_runs.items()}
assert end[0.025][0] == 1.0 and round(end[0.1][0], 3) == 0.996
assert round(end[0.025][1], 3) == 0.975 and round(end[0.1][1], 3) == 0.978
assert all(0.01 < train_acc - test_acc < 0.03 for train_acc, test_acc in end.values())
assert round(lr_runs[0.025][0, 0], 3) == 0.896 and round(lr_runs[0.025][0, 1], 3) == 0.883

# %% [markdown]
# ## Takeaways
#
# - On a quadratic, gradient descent converges if and only if `lr < 2 / lambda_max`; the growth factor per step
#   is $\max_i|1-\eta\lambda_i|$, measured to within 1 %.
# - A network's sharpness is measurable without its Hessian: Hessian-vector products (`jax.jvp` of `jax.grad`)
#   and power iteration. Near a trained point the edge is sharp (0.95 x: the loss keeps falling; 1.05 x: it
#   jumps 1,400-fold); far from a minimum the loss is not quadratic and a network can survive an overshoot.
# - Read the gradient at step 0. Large before any update: the network explodes (fix the network). Normal at
#   step 0, growing over the steps: the learning rate is too large (lower it or warm up). In sharpness terms
#   they are the same thing: `init_scale = 1.5` raised $\lambda_{\max}$ about 110-fold.
# - Warmup works by letting the network become flat enough: $\lambda_{\max}$ fell 280-fold, below
#   `2 / peak lr`, during a 100-step warmup that turned a NaN at step 4 into a loss of 0.016.
# - Adam moves each weight by about `lr` whatever the gradient's size, so it survives gradients that kill SGD,
#   but an inf still becomes NaN, and the exploding network it trains generalises worse (78 % vs 97 % test).
# - The learning rate is not an overfitting control: a smaller one reaches the same overfitted network later.
#
# **References.** LeCun, Bottou, Orr & Müller (1998), *Efficient BackProp*; Pearlmutter (1994), *Fast exact
# multiplication by the Hessian*; Kingma & Ba (2015), *Adam*; Goyal et al. (2017), *Accurate, large minibatch
# SGD*; Keskar et al. (2017), *On large-batch training for deep learning: generalization gap and sharp minima*;
# Smith & Le (2018), *A Bayesian perspective on generalization and SGD*; Lewkowycz et al. (2020), *The large
# learning rate phase of deep learning: the catapult mechanism*; Cohen et al. (2021), *Gradient descent on
# neural networks typically occurs at the edge of stability*; Gilmer et al. (2021), *A loss curvature
# perspective on training instability in deep learning*; Loshchilov & Hutter (2019), *Decoupled weight decay
# regularization*; He et al. (2015), *Delving deep into rectifiers*; Ioffe & Szegedy (2015), *Batch
# normalization*; Pascanu et al. (2013), *On the difficulty of training recurrent neural networks*.
