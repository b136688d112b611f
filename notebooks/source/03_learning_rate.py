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
from helpers.models import ModelConfig, layer_norms
from helpers.plots import COLORS, compare_histories, plot_layer_profile, plot_theory_vs_measurement
from helpers.train import SEEDS, TrainConfig, mean_range, train_seeds
from helpers.widgets import panel

data = load_digits(seed=0)
print(f"{len(data.x_train)} training and {len(data.x_test)} test digits of shape {data.image_shape}")
print("every comparison of training runs uses the seeds", SEEDS)


# %% [markdown]
# ## Predict first
#
# Write down your guesses before running anything; each is measured below.
#
# 1. Gradient descent on $f(w) = \tfrac{10}{2} w^2$ (curvature 10), starting at $w = 1$. With `lr = 0.19` and
#    with `lr = 0.21`: does $w$ go to 0, oscillate forever, or blow up?
# 2. An 8-layer ReLU MLP initialised with weights 1.5 times He's (`init_scale = 1.5`) produces NaN within a few
#    steps of gradient descent at `lr = 0.1`. With a 100-step linear warmup to the *same* `lr = 0.1` it does
#    not. During those 100 steps, does the sharpness $\lambda_{\max}$ grow, stay, or shrink, and by roughly how much?
# 3. One weight's gradient is 10,000 times larger than usual. How much larger is Adam's first update of that
#    weight than it would be for a usual gradient?

# %% [markdown]
# ## 1. A quadratic: gradient descent diverges exactly when `lr > 2 / lambda_max`
#
# On $f(w) = \tfrac12 w^\top A w$ with a symmetric $A = \sum_i \lambda_i u_i u_i^\top$, one step of gradient
# descent is $w_{t+1} = w_t - \eta A w_t = (I - \eta A)\, w_t$. In $A$'s eigenvectors every coordinate evolves on
# its own, $c_{i,t} = (1-\eta\lambda_i)^t c_{i,0}$, and all of them shrink if and only if $|1-\eta\lambda_i| < 1$
# for all $i$:
#
# $$0 < \eta < \frac{2}{\lambda_{\max}} .$$
#
# Between $1/\lambda_{\max}$ and $2/\lambda_{\max}$ the sharpest coordinate flips sign at every step with a
# shrinking amplitude; above, the amplitude grows by $|1-\eta\lambda_{\max}|$ per step. The *sharpest* direction
# sets the limit, the flattest one the speed (LeCun et al. 1998, "Efficient BackProp"). In plain JAX, with
# eigenvalues 10 and 1 in a rotated basis:

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

# %% jupyter={"source_hidden": true}
# Checks: ||w|| after 500 steps on either side of the edge, and the edge itself.
assert 5e-5 < final[0.99] < 7e-5, f"1% below the edge ||w|| should shrink to about 6e-5, got {final[0.99]:.2g}"
assert 2.5e4 < final[1.01] < 3.5e4, f"1% above the edge ||w|| should grow to about 3e4, got {final[1.01]:.2g}"
assert abs(2 / lam_max - 0.2) < 1e-5, f"the edge 2 / lambda_max should be 0.2, got {2 / lam_max:.6f}"

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

ax = plot_theory_vs_measurement(
    {"measured: (||w_100|| / ||w_50||)^(1/50)": (lr_grid, measured_rate)},
    {"theory: max |1 - lr * lambda_i|": (lr_fine, theory_rate)},
    yscale="linear",
    xlabel="learning rate lr",
    ylabel="growth factor of ||w|| per step",
    title="Gradient descent on a quadratic with eigenvalues 10 and 1",
)
ax.axvspan(2 / lam_max, lr_fine[-1], color=COLORS["diverged"], alpha=0.12, lw=0, label="diverges: lr > 2 / lambda_max")
ax.axhline(1, color="grey", lw=0.8)
ax.axvline(1 / lam_max, color="grey", ls=":", lw=1, label="lr = 1 / lambda_max: the sharp direction solved in one step")
ax.legend(fontsize=8, loc="upper left")
print(f"largest relative gap between measurement and theory: {np.max(np.abs(measured_rate / theory_at_grid - 1)):.1e}")
ax.figure

# %% jupyter={"source_hidden": true}
# Checks: measurement on the theory line within 1%, growth above 1 exactly beyond the edge.
gap = np.max(np.abs(measured_rate / theory_at_grid - 1))
assert gap < 0.01, f"the measured growth factors should be within 1% of theory, largest gap {gap:.1e}"
assert np.all((measured_rate > 1) == (lr_grid > 2 / lam_max)), "||w|| should grow exactly for lr > 2 / lambda_max"

# %% [markdown]
# Every measured point sits on the theory line (within 1 %), and the growth factor crosses 1 exactly at
# $2/\lambda_{\max} = 0.2$. The V is this notebook's story in one picture: below $1/\lambda_{\max}$ a larger
# learning rate is faster, beyond it the sharp direction overshoots, and at $2/\lambda_{\max}$ overshooting turns
# into divergence. In a network the loss is this quadratic only near the current point (its second-order Taylor
# expansion), so there the edge is a *local* statement.

# %% [markdown]
# ## 2. The sharpness of a network, with Hessian-vector products
#
# Near a point $\theta$ the loss is, to second order,
# $\mathcal{L}(\theta+\Delta) \approx \mathcal{L}(\theta) + g^\top\Delta + \tfrac12 \Delta^\top H \Delta$, and
# while the steps stay where this holds, the same edge $2/\lambda_{\max}(H)$ applies. Forming the Hessian $H$ is
# out of the question (see the count below), but $Hv$ costs about two gradients: one forward-mode pass
# (`jax.jvp`) through the reverse-mode gradient (`jax.grad`) (Pearlmutter 1994). Power iteration,
# $v \leftarrow Hv / \|Hv\|$, converges to the eigenvector whose eigenvalue is largest in magnitude, and
# $v^\top H v$ estimates that eigenvalue (we check that it comes out positive).
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


# %%
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


# %%
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

# %% jupyter={"source_hidden": true}
# Checks: the parameter count, a converged lambda_max near 20.9, and the finite-difference curvature within 1%.
assert n_params == 33930, f"the 8 x 64 MLP should have 33,930 parameters, got {n_params}"
assert round(lam0_he, 1) == 20.9 and abs(float(lam_again) / lam0_he - 1) < 1e-3, (
    f"lambda_max should be 20.9 and stay there with 10 more iterations: {lam0_he:.3f}, {float(lam_again):.3f}"
)
assert abs(second_difference / lam0_he - 1) < 0.01, (
    f"the second difference should match lambda_max within 1%: {second_difference:.2f} vs {lam0_he:.2f}"
)

# %% [markdown]
# ### Crossing `2 / lambda_max` in a network
#
# The cleanest test of a local statement is near a minimum, where the quadratic model holds best. Five networks
# (seeds 0 to 4: other random initial weights), each trained by full-batch gradient descent at `lr = 0.05` for
# 320 steps; there we measure $\lambda_{\max}$ ($\lambda^*$, one per network) and continue for 40 steps at
# learning rates from half to twice $2/\lambda^*$.


# %% tags=["nbval-ignore-output"]
@jax.jit
def descend(params, lrs):
    """Full-batch gradient descent, one step per entry of lrs; returns (params, (losses, gradient norms))."""

    def step(p, lr):
        loss, g = jax.value_and_grad(loss_fn)(p)
        return jax.tree.map(lambda w, gw: w - lr * gw, p, g), (loss, optax.tree.norm(g))

    return jax.lax.scan(step, params, lrs)


def initial_weights(model_config):
    """The initial weights of model_config's network for each seed in SEEDS, as plain trees of arrays."""
    return [nnx.split(m, nnx.Param, ...)[1] for m in model_config.build_seeds(SEEDS, data.image_shape)]


def highest_over_start(losses):
    """Highest loss of a run divided by its first loss (inf once a loss is not finite)."""
    return np.max(np.where(np.isfinite(losses), losses, np.inf)) / losses[0]


# %% tags=["nbval-ignore-output"]
factors = [0.5, 0.7, 0.9, 0.95, 1.1, 2.0]
trained_loss, lam_star, after = [], [], []  # per seed: loss after 320 steps, lambda*, {factor: 40 losses}
for params in initial_weights(ModelConfig(depth=8, width=64)):
    for _ in range(8):  # 8 x 40 = 320 steps, one compiled length
        params, (losses, _) = descend(params, jnp.full(40, 0.05))
    lam = float(sharpness(params, unit_random_like(params), 40)[0])
    after.append({c: np.asarray(descend(params, jnp.full(40, c * 2 / lam))[1][0]) for c in factors})
    trained_loss.append(float(losses[-1]))
    lam_star.append(lam)
rise = np.array([[highest_over_start(run[c]) for c in factors] for run in after])  # (seeds, factors)
falls = np.array([[bool(np.all(np.diff(run[c]) < 0)) for c in factors] for run in after])

lines = [
    f"after 320 steps: loss {min(trained_loss):.4f} to {max(trained_loss):.4f}, "
    f"lambda* {min(lam_star):.1f} to {max(lam_star):.1f} over the {len(SEEDS)} seeds"
]
for k, c in enumerate(factors):
    lines.append(
        f"lr = {c:4} x 2/lambda*: loss fell at every step on {falls[:, k].sum()} of {len(SEEDS)} seeds; "
        f"highest loss / starting loss, per seed: {' '.join(f'{r:.2g}' for r in rise[:, k])}"
    )
print("\n".join(lines))

# %%
ax = plot_theory_vs_measurement(
    {"highest loss / starting loss, one point per seed": (factors, rise)},
    each_seed=True,
    xscale="log",
    xticks=[c for c in factors if c != 0.95],  # 0.9 and 0.95 sit too close to label both
    xlabel="lr / (2 / lambda*) (log scale)",
    ylabel="highest loss / starting loss (log scale)",
    title=f"All {len(SEEDS)} seeds: how far the loss rose in 40 steps",
)
ax.axvline(1, color=COLORS["theory"], ls="--", lw=1, label="lr = 2 / lambda* (the edge)")
ax.legend(fontsize=8, loc="upper left")
ax.figure

# %% [markdown]
# On every one of the five networks, at $0.5\times$ and $0.7\times 2/\lambda^*$ the loss fell at every one of the
# 40 steps, and at $1.1\times$ and beyond it rose more than a hundredfold (or became NaN): a few steps beyond the
# edge undo 320 steps of training. Just below the edge, at $0.9\times$ and $0.95\times$, it depends on the network
# (and can depend on the last bits of the arithmetic): $\lambda^*$ is measured at the starting point only and the
# first steps move it, so the edge holds here to within about 10 %. Far from a minimum the quadratic model holds
# only over short distances (cross-entropy becomes linear in saturated logits, ReLUs switch on and off), so a
# network can survive learning rates beyond the edge for a while: section 4 measures how.

# %% jupyter={"source_hidden": true}
# Checks: on every seed the loss falls at 0.5x and 0.7x the edge and jumps beyond 1.1x; just below, seeds differ.
at = {c: k for k, c in enumerate(factors)}
assert falls[:, [at[0.5], at[0.7]]].all(), f"the loss should fall at every step at 0.5x and 0.7x on every seed: {falls}"
jumps = rise[:, [at[1.1], at[2.0]]]
assert jumps.min() > 100, (
    f"beyond 1.1x the edge the loss should rise over 100-fold on every seed; least {jumps.min():.3g}"
)
just_below = [at[0.9], at[0.95]]
assert falls[:, just_below].any() and (rise[:, just_below] > 100).any(), (
    f"at 0.9x-0.95x some seeds should still fall and some jump; rises per seed: {rise[:, just_below]}"
)
assert max(trained_loss) < 0.05 and 10 < min(lam_star) and max(lam_star) < 30, (
    f"320 steps should reach a loss near 0.01 with lambda* near 20; got {trained_loss}, {lam_star}"
)

# %% [markdown]
# ## 3. An exploding gradient or a learning rate that is too large?
#
# Both end in NaN. Now with `helpers.train` (minibatches of 64, plain SGD), three recipes for the same 8 x 64
# MLP, each on the five seeds (initial weights and batch order), shown as the mean with the min-max band:
# **healthy** (He, `lr = 0.1`), **learning rate too large** (He, `lr = 3.0`) and **exploding gradient** (weights
# 1.5 times He's, `init_scale = 1.5`, `lr = 0.1`). The step-0 gradient is computed before any update, so it is
# the network's, not the learning rate's: that is the diagnostic.

# %% tags=["nbval-ignore-output"]
he, sharp = ModelConfig(depth=8, width=64), ModelConfig(depth=8, width=64, init_scale=1.5)
runs = {
    "healthy: He, lr 0.1": train_seeds(he, data, TrainConfig(lr=0.1, steps=30)),
    "lr too large: He, lr 3.0": train_seeds(he, data, TrainConfig(lr=3.0, steps=30)),
    "exploding: init_scale 1.5, lr 0.1": train_seeds(sharp, data, TrainConfig(lr=0.1, steps=30)),
}
healthy, too_large, exploding = runs.values()
g0 = {name: r.stacked("grad_norm")[:, 0] for name, r in runs.items()}  # one step-0 gradient norm per seed
layer_ratio = exploding.stacked("layer_grad_norms")[:, 0] / healthy.stacked("layer_grad_norms")[:, 0]

# The sharpness at initialisation of every seed's network; the top eigenvectors serve again in section 4.
weights_he, weights_sharp = initial_weights(he), initial_weights(sharp)
lam0_he_seeds = np.array([float(sharpness(w, unit_random_like(w), 30)[0]) for w in weights_he])
top_sharp = [sharpness(w, unit_random_like(w), 30) for w in weights_sharp]
lam0_sharp = np.array([float(lam) for lam, _ in top_sharp])
params_sharp = weights_sharp[0]
logits_ratio = float(
    jnp.linalg.norm(nnx.merge(graphdef, params_sharp, rest)(xb))
    / jnp.linalg.norm(nnx.merge(graphdef, params_he, rest)(xb))
)

lines = []
for name, r in runs.items():
    steps = sorted(h.diverged_at for h in r.histories if h.diverged_at is not None)
    ended = f"NaN on {len(steps)} of {len(SEEDS)} seeds" + (f" (steps {steps[0]}-{steps[-1]})" if steps else "")
    if len(steps) < len(SEEDS):
        ended += f"; final loss {mean_range(r.final_loss[np.isfinite(r.final_loss)], '{:.2f}')}"
    lines.append(f"{name:34} step-0 gradient norm {mean_range(g0[name], '{:.3g}')}; {ended}")
ratio = g0["exploding: init_scale 1.5, lr 0.1"] / g0["healthy: He, lr 0.1"]
lines += [
    f"step-0 gradient, exploding / healthy, per seed: {mean_range(ratio, '{:.0f}x')}",
    f"per layer, over all seeds: {layer_ratio.min():.0f}x to {layer_ratio.max():.0f}x",
    f"logits at initialisation, init_scale 1.5 / He (seed 0): {logits_ratio:.1f} (1.5**9 = {1.5**9:.1f})",
    f"lambda_max at initialisation: He {mean_range(lam0_he_seeds, '{:.0f}')}, "
    f"init_scale 1.5 {mean_range(lam0_sharp, '{:.0f}')}; ratio on the same seed "
    f"{mean_range(lam0_sharp / lam0_he_seeds, '{:.0f}x')}; 2 / lambda_max at init_scale 1.5: "
    f"{2 / lam0_sharp.max():.2g} to {2 / lam0_sharp.min():.2g}",
]
print("\n".join(lines))

# %%
fig = compare_histories(runs, title="Same symptom (NaN), different causes: read the gradient at step 0")
for ax in fig.axes:
    ax.set_ylim(top=1e9)  # the last finite values before NaN reach 1e32; the start is what matters here
fig.axes[0].legend(fontsize=7, loc="center right")
fig

# %%
ax = None
for run, label, color in [
    (healthy, "He (init_scale 1): both He recipes", "measured"),
    (exploding, "init_scale 1.5", "diverged"),
]:
    ax = plot_layer_profile(
        run.stacked("layer_grad_norms")[:, 0].mean(0),
        run.layer_names,
        ax=ax,
        label=label,
        color=COLORS[color],
        title="Weight-gradient norm per layer at step 0, mean over the seeds",
    )
ax.set_ylim(0.1, 1000)  # both profiles (the first call fixed the limits around its own values)
ax.figure

# %% [markdown]
# What to read off:
#
# - **Learning rate too large** (He, `lr = 3.0`): the step-0 gradient is the healthy run's on every seed, to the
#   last digit (same network, same first batch), between 1.6 and 4.2 depending on the seed. The updates
#   overshoot, the gradient grows from step to step, and the loss is NaN within a few steps on every seed. The
#   network is fine: at `lr = 0.1` no seed diverges, and within the same 30 steps the loss falls from about 2.5
#   to about 1.5 on average. Fix: a smaller `lr` (or warmup).
# - **Exploding gradient** (`init_scale = 1.5`): the gradient is 58 to 75 times larger, depending on the seed,
#   *before the first update*, and in every layer alike (48x to 100x; notebook 01 explains why). The loss is NaN
#   within a few steps on every seed. The cause is the network, and so is the fix: initialisation (notebook 02),
#   normalisation (notebook 06; Ioffe & Szegedy 2015), or clipping (notebook 04; Pascanu et al. 2013).
#
# They meet in the sharpness. A ReLU network with zero biases is positively homogeneous: multiplying all 9
# weight matrices by 1.5 multiplies the logits by exactly $1.5^9 = 38.4$ (measured: 38.4). The softmax starts
# saturated, and $\lambda_{\max}$ at initialisation rises from 15-41 (He, five seeds) to 370-2,340, 16 to 112
# times more on the same seed, so the stable learning rate shrinks as much, to between 0.0009 and 0.005. For the
# optimizer, an exploding gradient *is* a learning rate that is too large for that network, which suggests a way
# around it.

# %% jupyter={"source_hidden": true}
# Checks: identical step-0 gradients for both He recipes; the NaNs; the numbers above (at initialisation: exact).
same = np.array_equal(g0["lr too large: He, lr 3.0"], g0["healthy: He, lr 0.1"])
assert same, "the step-0 gradient cannot depend on the learning rate: both He recipes should have identical ones"
g_he0 = g0["healthy: He, lr 0.1"]
assert (round(g_he0.min(), 1), round(g_he0.max(), 1)) == (1.6, 4.2), f"He step-0 gradient norms 1.6-4.2: {g_he0}"
loss_he, start_he = healthy.final_loss, healthy.stacked("loss")[:, 0]
assert not healthy.diverged and 1.0 < loss_he.mean() < 2.0 and loss_he.max() < np.log(10), (
    f"lr 0.1 should train on every seed, final loss about 1.5: {healthy.summary()}"
)
assert 2.2 < start_he.mean() < 2.8, f"the loss at step 0 should be about 2.5: {start_he}"
for name in ("lr too large: He, lr 3.0", "exploding: init_scale 1.5, lr 0.1"):
    stops = [h.diverged_at for h in runs[name].histories]
    assert all(t is not None and t <= 10 for t in stops), f"{name}: every seed should be NaN within 10 steps: {stops}"
assert (round(ratio.min()), round(ratio.max())) == (58, 75), f"exploding / healthy should be 58x-75x: {ratio}"
assert (round(layer_ratio.min()), round(layer_ratio.max())) == (48, 100), f"per layer 48x-100x: {layer_ratio}"
assert abs(logits_ratio / 1.5**9 - 1) < 1e-3, f"logits should scale by exactly 1.5^9 = 38.4, got {logits_ratio:.3f}"
lam_ratio = lam0_sharp / lam0_he_seeds
assert (round(lam0_he_seeds.min()), round(lam0_he_seeds.max())) == (15, 41), f"He lambda_max: {lam0_he_seeds}"
assert (round(lam0_sharp.min(), -1), round(lam0_sharp.max(), -1)) == (370, 2340), f"1.5: {lam0_sharp}"
assert (round(lam_ratio.min()), round(lam_ratio.max())) == (16, 112), f"lambda_max ratio 16-112: {lam_ratio}"

# %% [markdown]
# ## 4. Warmup: let the network become flat enough for its learning rate
#
# Warmup raises the learning rate from small to its peak over the first steps (Goyal et al. 2017 used it to
# train ImageNet with large batches). Gilmer et al. (2021) measured what it does: while the learning rate is
# small, training moves the network to regions of lower sharpness, so that the peak learning rate arrives at a
# network that can take it. We check that on the five `init_scale = 1.5` networks, full batch, with learning
# rates from Optax schedules (functions step -> lr):

# %% tags=["nbval-ignore-output"]
peak, warmup_steps = 0.1, 100
schedules = {
    "no warmup": optax.constant_schedule(peak),
    f"warmup {warmup_steps} steps": optax.linear_schedule(
        init_value=0.0, end_value=peak, transition_steps=warmup_steps
    ),
}


def run_with_sharpness(params, v, schedule, steps=120, every=5):
    """Full-batch GD with lr = schedule(step); lambda_max every `every` steps (power iteration warm-started at v)."""
    lrs = jax.vmap(schedule)(jnp.arange(steps))
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


# %% tags=["nbval-ignore-output"]
# One run per seed and schedule, each from its network's top eigenvector at initialisation (section 3).
warm = {
    name: [run_with_sharpness(w, v, s) for w, (_, v) in zip(weights_sharp, top_sharp, strict=True)]
    for name, s in schedules.items()
}
cold, warmed = warm["no warmup"], warm[f"warmup {warmup_steps} steps"]
first_nan = [
    int(np.flatnonzero(~np.isfinite(r["loss"]))[0]) if not np.isfinite(r["loss"]).all() else None for r in cold
]
growth = np.array([np.max(r["grad_norm"][np.isfinite(r["grad_norm"])]) / r["grad_norm"][0] for r in cold])
during = warmed[0]["sharp_steps"][(warmed[0]["sharp_steps"] >= 5) & (warmed[0]["sharp_steps"] < warmup_steps)]
over_edge = np.array([r["sharpness"][1 : 1 + len(during)] * r["lr"][during] / 2 for r in warmed])  # lambda / (2/lr)
end_sharpness = np.array([r["sharpness"][-1] for r in warmed])
loss_up = np.array([np.mean(np.diff(r["loss"]) > 0) for r in warmed])  # share of steps where the loss rose
lines = [
    f"lr at steps 0, 1, 50, 100, 200: {n}: {[round(float(s(t)), 4) for t in (0, 1, 50, 100, 200)]}"
    for n, s in schedules.items()
]
lines += [
    f"peak lr / (2 / lambda_max at step 0), per seed: {' '.join(f'{peak * lam / 2:.0f}' for lam in lam0_sharp)}",
    f"no warmup: gradient norm grows {mean_range(growth, '{:.1e}')}-fold; loss not finite from steps {first_nan}",
    f"warmup: loss finite on {sum(np.isfinite(r['loss']).all() for r in warmed)} of {len(SEEDS)} seeds; "
    f"the loss rose at {mean_range(loss_up, '{:.0%}')} of the steps",
    "  sharpness, step 0 -> step 115: "
    + ", ".join(f"{r['sharpness'][0]:.0f} -> {r['sharpness'][-1]:.1f}" for r in warmed),
    f"  above 2/lr(step) at {(over_edge > 1).sum(1)} of {len(during)} measurements in steps 5-95, "
    f"by up to {np.round(over_edge.max(1), 1)} times",
]
print("\n".join(lines))

# %%
fig, (ax_l, ax_s) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=90, layout="constrained")
steps = np.arange(len(warmed[0]["loss"]))
padded = lambda r: np.pad(r["loss"], (0, len(steps) - len(r["loss"])), constant_values=np.nan)  # noqa: E731
plot_theory_vs_measurement(
    {name: (steps, np.array([padded(r) for r in runs])) for name, runs in warm.items()},
    ax=ax_l,
    lines=True,
    xlabel="step",
    ylabel="training loss (log scale)",
    title="loss (full batch); X: not finite",
)
plot_theory_vs_measurement(
    {"warmup: sharpness, measured": (warmed[0]["sharp_steps"], np.array([r["sharpness"] for r in warmed]))},
    {"2 / lr(step)": (steps[1:], 2 / warmed[0]["lr"][1:])},
    ax=ax_s,
    xlabel="step",
    ylabel="sharpness lambda_max (log scale)",
    title="sharpness vs the edge 2 / lr",
)
ax_l.set_ylim(1e-3, 1e5)  # the runs without warmup leave the axes upwards, then turn NaN
ax_s.set_ylim(3, 2e4)
fig.suptitle(f"init_scale 1.5, peak lr {peak}: without and with a {warmup_steps}-step linear warmup", fontsize=11)
plt.show()

# %% [markdown]
# Without warmup the first steps at `lr = 0.1`, 19 to 117 times the edge $2/\lambda_{\max}$ of these five
# networks, throw them far out: within a few steps the gradient norm grows more than a thousandfold and the loss
# turns NaN, on every seed. With warmup the loss stays finite on every seed, and the sharpness falls from
# 370-2,340 at the start to within a factor of 5 of $2/\text{peak} = 20$ by step 115. The answer to question 2:
# the sharpness shrinks, by a factor of ten to a few hundred depending on the seed.
#
# Not by keeping the learning rate below the edge: at most measurements during the warmup the sharpness sits
# *above* $2/\text{lr}(t)$, by up to several times (a power iteration stopped early can only underestimate
# $\lambda_{\max}$, so this is no artefact). Each time the rising learning rate oversteps the edge, the step
# overshoots along the sharpest direction and the loss goes up (at about a third of the steps); the overshoot
# carries the weights into a flatter region, where the loss falls again. This is the **catapult** mechanism of
# Lewkowycz et al. (2020); warmup keeps each overshoot small, many small catapults instead of one fatal jump
# (Kalra & Barkeshli 2024). It is not the *edge of stability* of Cohen et al. (2021), which goes the other way:
# with a fixed learning rate the sharpness *rises* until it reaches $2/\text{lr}$ and hovers there. Here it
# starts far above the edge and falls.

# %% jupyter={"source_hidden": true}
# Checks: no warmup is NaN within 10 steps; warmup stays finite, flattens near 2/peak, sits mostly above 2/lr(t).
peak_over_edge = peak * lam0_sharp / 2
assert (round(peak_over_edge.min()), round(peak_over_edge.max())) == (19, 117), f"peak / edge: {peak_over_edge}"
assert all(t is not None and t <= 10 for t in first_nan), (
    f"without warmup, NaN within 10 steps on every seed: {first_nan}"
)
assert np.all(growth > 1000), f"without warmup the gradient norm should grow over 1000-fold: {growth}"
assert all(np.isfinite(r["loss"]).all() for r in warmed), "with warmup the loss should stay finite on every seed"
assert np.all((4 < end_sharpness) & (end_sharpness < 100)), (
    f"with warmup the sharpness should end within a factor of 5 of 2/peak = 20 on every seed: {end_sharpness}"
)
assert np.all(lam0_sharp / end_sharpness > 5), f"the sharpness should fall over 5-fold: {lam0_sharp / end_sharpness}"
assert np.all((over_edge > 1).mean(1) > 0.5) and np.all(over_edge.max(1) > 2), (
    f"during warmup the sharpness should sit above 2/lr(t) at most measurements, by over 2x at the most: {over_edge}"
)
assert np.all((0.15 < loss_up) & (loss_up < 0.5)), f"the loss should rise at about a third of the steps: {loss_up}"

# %% [markdown]
# ## 5. Adam vs SGD: bounded steps, not a cure
#
# SGD's step is $\eta g$: a gradient 1,000 times too large gives a step 1,000 times too large. Adam (Kingma & Ba
# 2015) divides a running mean of the gradient by the square root of a running mean of its square,
# $\Delta = -\eta\, \hat m / (\sqrt{\hat v} + \epsilon)$ with $\hat m = m_t/(1-\beta_1^t)$ and
# $\hat v = v_t/(1-\beta_2^t)$, so the size of the gradient cancels. At the first step $\hat m = g$ and
# $\hat v = g^2$: every weight moves by exactly $\eta$ (up to $\epsilon$), whatever $g$ is. Later steps are at
# most $\eta (1-\beta_1)/\sqrt{1-\beta_2} \approx 3.2\,\eta$, and about $\eta$ or less in practice (Kingma & Ba,
# §2.1). By hand, on the gradient of the `init_scale = 1.5` network (seed 0):

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

# %% jupyter={"source_hidden": true}
# Checks: Adam's first step is lr for any gradient scale, SGD's scales with it; an inf gradient leaves NaN behind.
assert all(abs(adam_max / adam_lr - 1) < 1e-3 for adam_max, _ in first_steps.values()), (
    f"Adam's largest first step should be lr = {adam_lr} at any gradient scale: {first_steps}"
)
sgd_growth = first_steps[1000.0][1] / first_steps[1.0][1]
assert abs(sgd_growth - 1000) < 1, f"SGD's largest step should grow 1000-fold with the gradient, got {sgd_growth:.1f}"
assert np.isnan(u1[0]) and np.isnan(u2[0]) and abs(float(u2[1]) + adam_lr) < 1e-6, (
    f"an inf gradient should give NaN at step 1 and keep giving NaN; got {float(u1[0])}, {float(u2[0])}"
)

# %% [markdown]
# Every weight moves by exactly `lr` = 0.001 whether the gradient is multiplied by 1 or 1,000, while SGD's
# largest step grows from 0.03 to 30. That answers question 3: not at all larger. But an infinite gradient gives
# $\infty/\infty$ = NaN, and the infinity stays in Adam's moment estimates, so that weight's update is NaN at
# every later step too: Adam bounds finite steps, it does not stop overflow.
#
# Does a bounded step make the explosion harmless? Adam (`lr = 1e-3`, 300 steps, five seeds) at four initial
# scales. Besides the accuracies, two things at step 0 (exact, no training): the first update relative to the
# weights, for Adam and for SGD at the same learning rate ($\text{lr}\,\|g_l\|/\|W_l\|$ per layer), and how far
# Adam's first update moves the logits of the 512 digits of section 2.

# %% tags=["nbval-ignore-output"]
scales = [1.0, 1.5, 2.0, 2.5]
adam_runs = {
    s: train_seeds(he.replace(init_scale=s), data, TrainConfig(optimizer="adam", lr=adam_lr, steps=300)) for s in scales
}
first_weights = {
    1.0: weights_he,
    1.5: weights_sharp,
    2.0: initial_weights(he.replace(init_scale=2.0)),
    2.5: initial_weights(he.replace(init_scale=2.5)),
}


@jax.jit
def logits_moved_by_adam(params):
    """Root-mean-square change of the logits (512 digits) made by Adam's first step from these weights."""
    update, _ = adam.update(value_and_grad(params)[1], adam.init(params))
    logits = lambda p: nnx.merge(graphdef, p, rest, copy=True)(xb)  # noqa: E731
    return jnp.sqrt(jnp.mean((logits(optax.apply_updates(params, update)) - logits(params)) ** 2))


# %% tags=["nbval-ignore-output"]
step0 = {}
for s, r in adam_runs.items():
    kernel_norms = np.asarray(layer_norms(*first_weights[s]))  # (seeds, layers)
    step0[s] = {
        "adam_ratio": r.stacked("update_ratio")[:, 0].mean(-1),
        "sgd_ratio": (adam_lr * r.stacked("layer_grad_norms")[:, 0] / kernel_norms).mean(-1),
        "logits_moved": np.array([float(logits_moved_by_adam(w)) for w in first_weights[s]]),
        "train_acc": r.evaluate(data.x_train, data.y_train),
        "test_acc": r.evaluate(data.x_test, data.y_test),
        "loss_peak": np.nanmax(r.stacked("loss")[:, 10:], axis=1),  # highest minibatch loss after step 10
    }
col = {k: np.array([step0[s][k] for s in scales]) for k in step0[1.0]}  # (scales, seeds)
moved_theory = col["logits_moved"][0].mean() * np.array(scales) ** 8
print(
    "\n".join(
        f"init_scale {s}: NaN on {len(r.diverged)} seeds | step 0: ||update||/||W|| Adam "
        f"{mean_range(step0[s]['adam_ratio'], '{:.2g}')}, SGD {mean_range(step0[s]['sgd_ratio'], '{:.2g}')}; "
        f"logits moved by Adam {mean_range(step0[s]['logits_moved'], '{:.3g}')} | after 300 steps: "
        f"train {mean_range(step0[s]['train_acc'])}, test {mean_range(step0[s]['test_acc'])}, "
        f"highest loss after step 10 {mean_range(step0[s]['loss_peak'], '{:.3g}')}"
        for s, r in adam_runs.items()
    )
)

# %% tags=["nbval-ignore-output"]
fig, (ax_u, ax_m, ax_a) = plt.subplots(1, 3, figsize=(13, 3.8), dpi=90, layout="constrained")
plot_theory_vs_measurement(
    {"SGD, lr 1e-3": (scales, col["sgd_ratio"].T), "Adam, lr 1e-3": (scales, col["adam_ratio"].T)},
    ax=ax_u,
    xlabel="init_scale (1 = He)",
    ylabel="||update|| / ||W|| (log scale)",
    title="First step, relative to the weights",
)
plot_theory_vs_measurement(
    {"measured": (scales, col["logits_moved"].T)},
    {"theory: He's value x init_scale^8": (scales, moved_theory)},
    ax=ax_m,
    xlabel="init_scale (1 = He)",
    ylabel="RMS change of the logits (log scale)",
    title="Adam's first step, seen by the logits",
)
plot_theory_vs_measurement(
    {"training set": (scales, 100 * col["train_acc"].T), "test set": (scales, 100 * col["test_acc"].T)},
    ax=ax_a,
    yscale="linear",
    xlabel="init_scale (1 = He)",
    ylabel="accuracy (%)",
    title="Adam after 300 steps: no NaN, but...",
)
plt.show()

# %% [markdown]
# No Adam run produced a NaN, at any scale, on any seed. Adam's first step stays between 0.0015 and 0.005 of the
# weights' norm at every scale (it even shrinks, since the weights grow while the step does not), while SGD's
# grows 1,500- to 1,900-fold from `init_scale` 1 to 2.5, depending on the seed. And yet test accuracy falls from
# 97 % (97 to 98 % over the seeds) with He to about 74 % (70 to 78 %) at `init_scale` 2.5, and training accuracy
# to about 90 %.
#
# Small for the weights is not small for what the loss sees, the logits. They are $s^9$ times He's (section 3),
# and a step of the same size per weight is a relative change $s$ times smaller, so it moves the logits about
# $s^8$ times more (middle panel): by 0.2 (root mean square over the digits) with He and by 360 at `init_scale`
# 2.5, close to the predicted $2.5^8 \approx 1{,}500$. The training loss shows these jumps: after step 10 it
# spikes above 500 on every seed at `init_scale` 2.5, while with He it never returns to its starting value. Adam
# hides the symptom (the size of the gradient) and leaves the cause (the scale of the network), whose cure is
# initialisation (notebook 02) or normalisation (notebook 06).

# %% jupyter={"source_hidden": true}
# Checks: no NaN; the step-0 numbers above (exact); accuracies and loss spikes with margins over the seeds.
assert not any(r.diverged for r in adam_runs.values()), "no Adam run should diverge"
assert 0.0015 < col["adam_ratio"].min() and col["adam_ratio"].max() < 0.005, f"Adam's first step: {col['adam_ratio']}"
sgd_up = col["sgd_ratio"][-1] / col["sgd_ratio"][0]
assert np.all((1500 < sgd_up) & (sgd_up < 1900)), f"SGD's first step should grow about 1,700-fold: {sgd_up}"
assert round(col["logits_moved"][0].mean(), 1) == 0.2 and round(col["logits_moved"][-1].mean(), -1) == 360, (
    f"Adam's first step should move the logits by 0.2 (He) and 360 (2.5): {col['logits_moved'].mean(1)}"
)
assert np.all(np.abs(col["logits_moved"].mean(1) / moved_theory - 1) < 0.2), (
    f"the logits should move about init_scale^8 times more: {col['logits_moved'].mean(1) / moved_theory}"
)
acc_he, acc_25 = col["test_acc"][0], col["test_acc"][-1]
assert acc_25.max() + 0.1 < acc_he.min(), f"init_scale 2.5 should be far below He on every seed: {acc_25} vs {acc_he}"
assert 0.95 < acc_he.mean() < 0.985 and 0.65 < acc_25.mean() < 0.82, f"test: He {acc_he}, 2.5 {acc_25}"
assert 0.84 < col["train_acc"][-1].mean() < 0.96, (
    f"training accuracy at 2.5 should be about 90%: {col['train_acc'][-1]}"
)
loss_start_he = adam_runs[1.0].stacked("loss")[:, 0]
assert np.all(col["loss_peak"][-1] > 500) and np.all(col["loss_peak"][0] < loss_start_he), (
    f"loss after step 10: above 500 at 2.5 on every seed {col['loss_peak'][-1]}, below its start with He {col['loss_peak'][0]}"
)

# %% [markdown]
# ## 6. Explore: learning rate, warmup, optimizer
#
# The panel starts with section 3's exploding network, `init_scale = 1.5` at `lr = 0.1` without warmup (NaN within
# a few steps). `warmup_steps` is `TrainConfig`'s linear warmup, `lr * min(1, (step + 1) / warmup_steps)`: unlike
# `optax.linear_schedule` above, its first step is not 0. Try: find the shortest warmup that trains; then switch
# `optimizer` to `adam` and lower `lr` until it trains (0.1 is a hundred times Adam's usual 1e-3); finally try
# `momentum`, whose steady steps are $\text{lr}/(1-0.9) = 10\,\text{lr}$ long. The panel trains one seed: compare
# settings by large differences, not by a point or two.

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

# %% [markdown]
# **2.** Write `my_hvp(loss, params, v)` that returns $Hv$ for any loss of a tree of parameters,
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
# A widely copied blog post on avoiding exploding gradients gives this advice:
#
# > "Use the learning rate to control the optimizer's speed, to avoid overfitting."
#
# The first half is right: for small learning rates gradient descent follows the gradient flow
# $\dot\theta = -\nabla\mathcal{L}(\theta)$, and `lr` only sets the speed along that path: what matters is
# `lr x steps`. The second half does not follow: a smaller learning rate walks (nearly) the same path more
# slowly, so it reaches the same overfitted network, later. Measured with the He 8 x 64 MLP, SGD, minibatches of
# 64, five seeds: `lr = 0.1` for 400 steps, `lr = 0.025` for 1,600 steps (the same `lr x steps = 40`), and
# `lr = 0.025` stopped after 400 steps:

# %% tags=["nbval-ignore-output"]
lr_runs = {
    "lr 0.1, 400 steps": train_seeds(he, data, TrainConfig(lr=0.1, steps=400)),
    "lr 0.025, 1600 steps": train_seeds(he, data, TrainConfig(lr=0.025, steps=1600)),
    "lr 0.025, 400 steps": train_seeds(he, data, TrainConfig(lr=0.025, steps=400)),
}
acc = {
    name: (r.evaluate(data.x_train, data.y_train), r.evaluate(data.x_test, data.y_test)) for name, r in lr_runs.items()
}
print(
    "\n".join(
        f"{name:21} train {mean_range(train_acc, '{:.1%}')}; test {mean_range(test_acc, '{:.1%}')}; "
        f"gap {mean_range(100 * (train_acc - test_acc), '{:.1f}')} points"
        for name, (train_acc, test_acc) in acc.items()
    )
)

smoothed = {}  # per seed, the minibatch loss averaged over 2 units of lr x steps (the same stretch of the path)
for name in list(lr_runs)[:2]:
    window = round(2 / lr_runs[name].config.lr)
    kernel = np.ones(window) / window
    smoothed[name] = np.array([np.convolve(loss, kernel, mode="valid") for loss in lr_runs[name].stacked("loss")])

plot_theory_vs_measurement(
    {
        name: (lr_runs[name].config.lr * (np.arange(smooth.shape[1]) + round(2 / lr_runs[name].config.lr)), smooth)
        for name, smooth in smoothed.items()
    },
    lines=True,
    xlabel="lr x steps",
    ylabel="training loss, moving average (log scale)",
    title="Training loss: the small lr fits the training set more tightly",
).figure

# %% [markdown]
# At the same `lr x steps = 40` the two learning rates reach the same test accuracy, about 97.5 % on average, and
# the seeds do not separate them. Both fit the training set (over 97 % on every seed, essentially 100 % with the
# small one), with a train-test gap of 1 to 3 points. The paths differ a little: `lr = 0.1` is beyond the edge
# $2/\lambda_{\max}$ of three of the five networks at initialisation (section 3) and its loss keeps bouncing,
# while the small learning rate ends with a lower training loss on every seed (the plot): it fits the training
# set more tightly, not less, for the same test accuracy. Stopped after 400 steps, it has fitted less on every
# seed and is worse on the test set on average: a smaller gap from underfitting, which is early stopping, not the
# learning rate at work. What the measurement supports instead:
#
# - **The learning rate's real constraint is stability**, `lr < 2 / lambda_max` locally (sections 1-2), and the
#   sharpness changes during training (section 4).
# - **Its effect on generalisation is indirect**, and here too small to see over five seeds: large-step, noisy
#   SGD tends to settle in flatter regions (Keskar et al. 2017; Smith & Le 2018), an *implicit* regularisation.
# - **Against overfitting** use what targets it: weight decay (notebook 05; Loshchilov & Hutter 2019), more
#   data or augmentation, and early stopping on a validation set.

# %% jupyter={"source_hidden": true}
# Checks: at equal lr x steps neither wins on every seed; both fit; the small lr ends lower; the early stop underfits.
(train_big, test_big), (train_small, test_small), (train_early, test_early) = acc.values()
assert test_big.max() > test_small.min() and test_small.max() > test_big.min(), (
    f"the seeds should not separate the two learning rates: test {test_big} vs {test_small}"
)
assert 0.96 < test_big.mean() < 0.985 and 0.96 < test_small.mean() < 0.985, (
    f"both about 97.5%: {test_big}, {test_small}"
)
assert train_big.min() > 0.97 and train_small.min() > 0.995, (
    f"both should fit the training set: {train_big}, {train_small}"
)
gaps = np.concatenate([train_big - test_big, train_small - test_small])
assert np.all((0.005 < gaps) & (gaps < 0.04)), f"the train-test gap should be 1-3 points with either: {gaps}"
assert np.sum(0.1 > 2 / lam0_he_seeds) == 3, f"lr 0.1 should be beyond the edge of 3 networks: {2 / lam0_he_seeds}"
end_big, end_small = (smooth[:, -1] for smooth in smoothed.values())
assert end_small.max() < end_big.min(), (
    f"the small lr should end with a lower loss on every seed: {end_small}, {end_big}"
)
assert np.all(train_early < train_small) and test_early.mean() < test_small.mean() - 0.01, (
    f"after 400 steps lr 0.025 should underfit: train {train_early}, test {test_early} vs {test_small}"
)

# %% [markdown]
# ## Takeaways
#
# - On a quadratic, gradient descent converges if and only if `lr < 2 / lambda_max`; the growth factor per step
#   is $\max_i|1-\eta\lambda_i|$, measured to within 1 %.
# - A network's sharpness is measurable without its Hessian: Hessian-vector products (`jax.jvp` of `jax.grad`)
#   and power iteration. Near a trained point the edge holds to about 10 % (five seeds: at 0.7 x the loss falls
#   at every step, at 1.1 x it jumps over a hundredfold). The edge is local: during a warmup a network crossed
#   it again and again and survived.
# - Read the gradient at step 0. Large before any update: the network explodes (fix the network). Normal at
#   step 0, growing over the steps: the learning rate is too large (lower it or warm up). In sharpness terms they
#   are the same thing: `init_scale = 1.5` raised $\lambda_{\max}$ 16- to 112-fold.
# - Warmup lets the network become flat enough, through many small catapults: the sharpness fell ten- to a few
#   hundredfold during a 100-step warmup, on every seed, to near `2 / peak lr`; with warmup no seed diverged,
#   without it every seed did.
# - Adam moves each weight by about `lr` whatever the gradient's size, so it survives gradients that kill SGD;
#   but an inf still becomes NaN, and on the exploding network each step moves the logits about $s^8$ times
#   more: it trains worse (about 74 % vs 97 % test, five seeds).
# - "Use the learning rate to avoid overfitting": at the same `lr x steps` a smaller learning rate reached the
#   same test accuracy and a lower training loss, later; it did not narrow the train-test gap.
#
# **References.** LeCun, Bottou, Orr & Müller (1998), *Efficient BackProp*; Pearlmutter (1994), *Fast exact
# multiplication by the Hessian*; Kingma & Ba (2015), *Adam*; Goyal et al. (2017), *Accurate, large minibatch
# SGD*; Keskar et al. (2017), *On large-batch training for deep learning: generalization gap and sharp minima*;
# Smith & Le (2018), *A Bayesian perspective on generalization and SGD*; Lewkowycz et al. (2020), *The large
# learning rate phase of deep learning: the catapult mechanism*; Cohen et al. (2021), *Gradient descent on
# neural networks typically occurs at the edge of stability*; Gilmer et al. (2021), *A loss curvature
# perspective on training instability in deep learning*; Kalra & Barkeshli (2024), *Why warmup the learning
# rate? Underlying mechanisms and improvements*; Loshchilov & Hutter (2019), *Decoupled weight decay
# regularization*; He et al. (2015), *Delving deep into rectifiers*; Ioffe & Szegedy (2015), *Batch
# normalization*; Pascanu et al. (2013), *On the difficulty of training recurrent neural networks*.
