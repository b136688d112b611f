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
# # 04 · Gradient clipping
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/taming-gradients/taming-gradients/blob/main/notebooks/04_gradient_clipping.ipynb)
#
# Clipping caps the size of a training step before the optimizer uses it. After this notebook you can write
# the three common kinds (by value, by global norm, adaptive) in a few lines of JAX, say which ones keep the
# gradient's direction, make the exploding network of notebook 01 trainable with it, say what it does *not*
# fix, and choose a threshold from recorded gradient norms.

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

from helpers.data import load_digits
from helpers.exercises import clipping as ex
from helpers.models import ModelConfig, per_layer
from helpers.plots import (
    COLORS,
    Dashboard,
    plot_histograms,
    plot_theory_vs_measurement,
    reference_lines,
    series,
)
from helpers.train import SEEDS, TrainConfig, mean_range, train, train_seeds
from helpers.widgets import panel

data = load_digits(seed=0)
# Notebook 01's exploding network (30 ReLU layers, weights 1.2x He's scale) at half its width, 64 instead of
# 128, so that the training runs below take seconds. It explodes just the same.
EXPLODING = ModelConfig(depth=30, width=64, init_scale=1.2)
HEALTHY = EXPLODING.replace(init_scale=1.0)  # the same network with He's initialisation (notebook 02)
SGD = TrainConfig(optimizer="sgd", lr=0.05, steps=600)  # batches of 64 digits
print(f"{len(data.x_train)} training and {len(data.x_test)} test digits")
print("exploding network:", EXPLODING)
print("training:", SGD)
print("every comparison of training runs uses the seeds", SEEDS)


# %% [markdown]
# ## Predict first
#
# With plain SGD at `lr = 0.05`, the exploding network's loss is not finite after a step or two. Now clip the
# gradient before every step so that its global norm is at most 1. Before running anything, write down:
#
# 1. Will it train, and will it reach the accuracy of a well-initialised network?
# 2. What fraction of the steps will be clipped: about 10 %, about half, or nearly all?
# 3. The gradient norm measured *before* clipping starts in the hundreds or thousands (3 800 for the initial
#    weights of seed 0). Will it come down to about 1 during training?
#
# The answers are measured in sections 2 and 3.


# %% [markdown]
# ## 1. Three ways to clip, by hand
#
# Write $g$ for the whole gradient (every layer's kernel and bias) and $c$ for the threshold.
#
# - **By value** (`optax.clip(c)`): every entry on its own, $g_i \leftarrow \min(\max(g_i, -c), c)$.
# - **By global norm** (`optax.clip_by_global_norm(c)`, Pascanu et al. 2013):
#   $g \leftarrow g \cdot \min\!\big(1, c / \|g\|\big)$ with $\|g\|^2$ the sum of the squares of *all* entries
#   of *all* layers. One factor for everything.
# - **Adaptive, unit-wise** (`optax.adaptive_grad_clip(c)`, "AGC", Brock et al. 2021): for every unit $u$ (one
#   output neuron: one column of a kernel; a bias vector counts as one unit),
#   $g_u \leftarrow g_u \cdot \min\!\big(1,\ c\,\max(\|W_u\|, \epsilon) / \|g_u\|\big)$ with $\epsilon = 10^{-3}$.
#   The threshold is relative: a unit's gradient may be at most $c$ times its weights' norm.
#
# First a real gradient: the exploding network, one batch of 64 digits, in plain JAX.

# %%
model = EXPLODING.build(data.image_shape, data.num_classes)
graphdef, state = nnx.split(model)  # the weights as a pytree of arrays, and how to rebuild the model


def loss_fn(state, x, y):
    logits = nnx.merge(graphdef, state)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


x, y = jnp.asarray(data.x_train[:64]), jnp.asarray(data.y_train[:64])
loss, state_grads = jax.jit(jax.value_and_grad(loss_fn))(state, x, y)  # compiled: one call, not ~1000 small ones
# one plain {"kernel", "bias"} tree per layer, input -> output: what the clipping rules below read
params, grads = per_layer(state), per_layer(state_grads)
n_entries = sum(g.size for g in jax.tree.leaves(grads))
print(
    f"loss {float(loss):.4g}; the gradient: {len(grads)} layers, {len(jax.tree.leaves(grads))} arrays, {n_entries} entries"
)

# %% [markdown]
# The three rules, each a few lines on a pytree (`jax.jit` compiles each once; a new threshold is just data):


# %%
@jax.jit
def global_norm(tree):
    """sqrt of the sum of squares of every entry of every array."""
    return jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(tree)))


@jax.jit
def clip_by_global_norm(tree, max_norm):
    """Scale everything by one factor, min(1, max_norm / ||g||) (Pascanu et al. 2013)."""
    scale = jnp.minimum(1.0, max_norm / jnp.maximum(global_norm(tree), 1e-12))
    return jax.tree.map(lambda g: g * scale, tree)


@jax.jit
def clip_by_value(tree, max_value):
    """Clip every entry to [-max_value, max_value] on its own."""
    return jax.tree.map(lambda g: jnp.clip(g, -max_value, max_value), tree)


@jax.jit
def adaptive_clip(tree, params, clipping, eps=1e-3):
    """AGC (Brock et al. 2021): each unit's gradient norm at most clipping * max(its weights' norm, eps)."""

    def one(g, w):
        axis = 0 if g.ndim == 2 else None  # kernel (fan_in, fan_out): a unit is a column; a bias is one unit
        g_norm = jnp.sqrt(jnp.sum(g**2, axis=axis, keepdims=True))
        max_norm = clipping * jnp.maximum(jnp.sqrt(jnp.sum(w**2, axis=axis, keepdims=True)), eps)
        return jnp.where(g_norm > max_norm, g * max_norm / jnp.maximum(g_norm, 1e-12), g)

    return jax.tree.map(one, tree, params)


# %% [markdown]
# Do they agree with Optax? Each Optax clipper is a `GradientTransformation`: `update(grads, state, params)`
# returns the transformed gradient, for any pytree: here the same list of layers.


# %%
def max_rel_diff(a, b):
    return max(
        float(jnp.max(jnp.abs(u - v)) / (jnp.max(jnp.abs(v)) + 1e-30))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def with_optax(transform):
    """The gradient after an Optax transformation (compiled); AGC reads the parameters too."""
    return jax.jit(lambda g, p: transform.update(g, transform.init(p), p)[0])(grads, params)


ours_vs_optax = {
    "global_norm, c=1": (clip_by_global_norm(grads, 1.0), with_optax(optax.clip_by_global_norm(1.0))),
    "value, c=0.01": (clip_by_value(grads, 0.01), with_optax(optax.clip(0.01))),
    "adaptive, c=0.01": (adaptive_clip(grads, params, 0.01), with_optax(optax.adaptive_grad_clip(0.01))),
}
differences = {name: max_rel_diff(ours, theirs) for name, (ours, theirs) in ours_vs_optax.items()}
norm_before, norm_after = float(global_norm(grads)), float(global_norm(ours_vs_optax["global_norm, c=1"][0]))
for name, difference in differences.items():
    print(f"{name:17s} the same as Optax's, to a relative difference below 1e-6: {difference < 1e-6}")
print(f"||g|| = {norm_before:.4g}; after global-norm clipping to 1: {norm_after:.4f}")

# %% jupyter={"source_hidden": true}
# Checks: our three clippers agree with Optax's to float32 rounding.
for name, difference in differences.items():
    assert difference < 1e-6, (
        f"{name}: ours and Optax's should agree to 1e-6, largest relative difference {difference:.1e}"
    )

# %% [markdown]
# ### Which ones keep the direction?
#
# SGD steps along $-\text{(clipped gradient)}$, so the question is the angle between the clipped and the
# original gradient: their cosine similarity, $\cos = \langle g, \tilde g\rangle / (\|g\|\,\|\tilde g\|)$.


# %%
@jax.jit
def cosine(a, b):
    dot = sum(jnp.sum(u * v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    return dot / (global_norm(a) * global_norm(b))


cos = {name: float(cosine(grads, ours)) for name, (ours, _) in ours_vs_optax.items()}
for name, value in cos.items():
    print(f"cosine(gradient, clipped {name:>16s}) = {value:.3f}")

# %% [markdown]
# - **Global norm** keeps the direction exactly (cosine 1.000): it only shortens the vector.
# - **By value** at $c = 0.01$ turns it by 60° (cosine 0.50). Small entries pass unchanged while the large
#   ones are cut to $\pm c$, so the step no longer points where the gradient does.
# - **Adaptive** turns it too (cosine 0.70): every unit is rescaled by its *own* factor. That is its purpose:
#   it bounds each unit's relative change $\|\Delta W_u\| / \|W_u\|$, not the global step.

# %% jupyter={"source_hidden": true}
# Checks the cosines quoted above (one gradient at initialisation: exact up to float32 rounding).
assert abs(cos["global_norm, c=1"] - 1) < 1e-5, (
    f"global norm should keep the direction, cosine {cos['global_norm, c=1']:.6f}"
)
assert abs(cos["value, c=0.01"] - 0.50) < 0.01, (
    f"clipping by value should give cosine 0.50, got {cos['value, c=0.01']:.3f}"
)
assert abs(cos["adaptive, c=0.01"] - 0.70) < 0.01, f"AGC should give cosine 0.70, got {cos['adaptive, c=0.01']:.3f}"

# %% [markdown]
# How much direction clipping by value loses depends on the threshold. Two limits are exact: above the largest
# entry nothing is clipped (cosine 1); as $c \to 0$ every nonzero entry becomes $\pm c$ (and zeros stay 0), so
# $\tilde g \to c\,\mathrm{sign}(g)$ and $\cos \to \|g\|_1 / (\sqrt{n_{\neq 0}}\,\|g\|_2)$, with $n_{\neq 0}$
# the number of nonzero entries. If those entries were Gaussian, the limit would be
# $\sqrt{2/\pi} \approx 0.80$. This gradient is far from Gaussian: 48 % of its entries are exactly 0 (dead
# ReLUs zero a kernel's column, always-blank pixels a row of the first kernel), and among the others a few
# large entries carry most of the norm, which pushes the limit down to 0.49.
# Left, the picture in two dimensions; right, the measurement on the real gradient with both limits.

# %%
g_all = jnp.concatenate([g.ravel() for g in jax.tree.leaves(grads)])
n_nonzero = int(jnp.sum(g_all != 0))
sign_limit = float(jnp.sum(jnp.abs(g_all)) / (jnp.sqrt(n_nonzero) * jnp.linalg.norm(g_all)))
largest = float(jnp.max(jnp.abs(g_all)))
thresholds = np.logspace(-5, 3, 25)
cos_value = np.array([float(cosine(grads, clip_by_value(grads, c))) for c in thresholds])

# %%
fig, (ax2d, ax) = plt.subplots(1, 2, figsize=(11, 4), dpi=90, layout="constrained")
g2 = np.array([3.0, 0.5])
arrows = {
    "gradient g": (g2, COLORS["measured"]),
    "by value, c=1": (np.clip(g2, -1, 1), COLORS["diverged"]),
    "by global norm, c=1": (g2 * min(1, 1 / np.linalg.norm(g2)), COLORS["clip"]),
}
for name, (v, color) in arrows.items():
    angle = np.degrees(np.arctan2(v[1], v[0]))
    ax2d.annotate("", xy=v, xytext=(0, 0), arrowprops=dict(arrowstyle="->", lw=2, color=color))
    ax2d.plot([], [], color=color, lw=2, label=f"{name} = ({v[0]:.2f}, {v[1]:.2f}), {angle:.0f} deg")
ax2d.add_patch(plt.Rectangle((-1, -1), 2, 2, fill=False, ls=":", color="grey", label="|g_i| <= 1 (by value)"))
ax2d.add_patch(plt.Circle((0, 0), 1, fill=False, ls="--", color="grey", label="||g|| <= 1 (by global norm)"))
ax2d.set(
    xlim=(-1.2, 3.2),
    ylim=(-1.2, 1.2),
    aspect="equal",
    xlabel="g_1",
    ylabel="g_2",
    title="a gradient with 2 entries, clipped at c = 1",
)
ax2d.legend(fontsize=8, loc="lower right")

plot_theory_vs_measurement(
    {"by value: measured": (thresholds, cos_value)},
    ax=ax,
    xscale="log",
    yscale="linear",
    xlabel="threshold c of clipping by value (log scale)",
    ylabel="cosine(g, clipped g)",
    title="direction kept by clipping, exploding network's gradient",
)
reference_lines(ax, y={"by global norm: 1 at every threshold": 1.0}, ls="-", lw=2)
reference_lines(ax, y={f"c -> 0 limit = {sign_limit:.2f}": sign_limit}, ls="--")
reference_lines(ax, x={f"largest |g_i| = {largest:.0f}: nothing clipped above": largest})
ax.set_ylim(0, 1.05)
plt.show()

# %%
print(
    f"entries exactly 0: {1 - n_nonzero / g_all.size:.1%}; c -> 0 limit {sign_limit:.3f}, "
    f"Gaussian entries would give {np.sqrt(2 / np.pi):.3f}"
)
print(f"measured at c = 1e-5: {cos_value[0]:.3f}; at c = 1000: {cos_value[-1]:.3f}")

# %% jupyter={"source_hidden": true}
# Checks the numbers quoted above, and that the measured cosines reach both exact limits.
zero_share = 1 - n_nonzero / g_all.size
assert abs(zero_share - 0.48) < 0.01, f"about 48% of the entries should be exactly 0, got {zero_share:.1%}"
assert abs(sign_limit - 0.49) < 0.01, f"the c -> 0 limit should be 0.49, got {sign_limit:.3f}"
assert abs(cos_value[0] - sign_limit) < 0.005, (
    f"at c = 1e-5 the cosine should be the limit {sign_limit:.3f}, got {cos_value[0]:.3f}"
)
assert abs(cos_value[-1] - 1) < 1e-5, f"above the largest entry nothing is clipped (cosine 1), got {cos_value[-1]:.6f}"


# %% [markdown]
# ## 2. The exploding network, with and without clipping
#
# Now with `helpers.train`: SGD, `lr = 0.05`, 600 steps of 64 digits. One training run is one sample: another
# seed (other initial weights, another order of the batches) gives another run, and so can another CPU, whose
# arithmetic rounds the last bits differently. So every comparison of training runs from here on uses five
# seeds (`train_seeds`), reported as their mean and their range. Seed 0's network is the one of section 1.
# First without clipping.

# %%
raw = train_seeds(EXPLODING, data, SGD)
h_raw = raw.histories[0]  # seed 0
last = max(h.diverged_at for h in raw.histories)
print(f"no clipping: {len(raw.diverged)} of {len(SEEDS)} seeds diverged, each by step {last}")
print(
    "step 0 (the initial weights), gradient norm per seed:", ", ".join(f"{h.grad_norm[0]:.0f}" for h in raw.histories)
)
print(
    f"seed 0, step 0: loss {h_raw.loss[0]:.4g}, "
    f"||update|| / ||W|| from {h_raw.update_ratio[0].min():.2f} to {h_raw.update_ratio[0].max():.2f}"
)

# %% jupyter={"source_hidden": true}
# Checks: every seed diverges within two steps (the first steps are fixed by the initial weights).
assert raw.diverged == list(SEEDS) and last <= 2, (
    f"every seed should diverge by step 2; diverged: {raw.diverged}, at {[h.diverged_at for h in raw.histories]}"
)
assert abs(h_raw.grad_norm[0] / 3799 - 1) < 1e-3, (
    f"seed 0's first gradient norm should be 3799, got {h_raw.grad_norm[0]:.1f}"
)

# %% [markdown]
# Then the same runs with `clip_norm = 1` (`clip_mode = "global_norm"`, the default). The dashboard redraws while
# they train: the line is the mean over the five seeds and the band their range; the dotted line is the
# threshold, and purple dots mark the steps clipped on most seeds.

# %% tags=["nbval-ignore-output"]
dash = Dashboard("exploding network (init_scale 1.2), SGD with clip_norm = 1", max_redraws_per_s=1)
clip_runs = train_seeds(EXPLODING, data, SGD.replace(clip_norm=1.0), on_chunk=dash.update)
fig = dash.finish(clip_runs)

# %% tags=["nbval-ignore-output"]
acc_clip = clip_runs.evaluate(data.x_test, data.y_test)
first_loss = np.array([h.loss[0] for h in clip_runs.histories])
final_loss = np.array([h.loss[-50:].mean() for h in clip_runs.histories])
late_norm = np.array([np.median(h.grad_norm[-100:]) for h in clip_runs.histories])
print(f"clipped: {len(clip_runs.diverged)} of {len(SEEDS)} seeds diverged")
print(f"loss at step 0: {mean_range(first_loss, '{:.0f}')}")
print(f"loss, mean of the last 50 steps: {mean_range(final_loss, '{:.2f}')}")
print(f"test accuracy: {mean_range(acc_clip)}")
print(f"steps clipped: {mean_range([h.clipped.mean() for h in clip_runs.histories])}")
print(f"gradient norm before clipping, median of the last 100 steps: {mean_range(late_norm, '{:.0f}')}")

# %% [markdown]
# Clipping makes the run possible on every seed: none diverges, the loss falls from 47-226 at step 0 to about
# 0.8 (0.76-0.82, the mean of the last 50 steps), and the test accuracy is 75 % on average (71-77 %). It
# answers the predictions too: **every** step of every seed was clipped, and the gradient norm before clipping,
# although it fell from the hundreds or thousands, is still 21-28 at the end, more than 20 times the threshold.

# %% jupyter={"source_hidden": true}
# Checks the claims above on every seed, with margins wider than the seeds' spread.
assert not clip_runs.diverged, f"no clipped seed should diverge, got {clip_runs.diverged}"
assert all(h.clipped.all() for h in clip_runs.histories), "every step of every clipped seed should be clipped"
assert np.allclose(first_loss, [225.6, 201.3, 113.7, 62.5, 47.0], rtol=1e-3), f"step-0 losses: {first_loss}"
assert 0.6 < final_loss.min() and final_loss.max() < 1.0, f"final losses should be about 0.8, got {final_loss}"
assert 0.62 < acc_clip.min() and acc_clip.max() < 0.85, f"test accuracies should be 71-77 % +- margin, got {acc_clip}"
assert 12 < late_norm.min() and late_norm.max() < 40, f"late gradient norms should be about 21-28, got {late_norm}"

# %% [markdown]
# ## 3. What clipping does not fix
#
# ### When every step is clipped, the threshold is the learning rate
#
# With SGD, a clipped step is $-\text{lr}\cdot c\, g/\|g\|$: its length is always $\text{lr}\cdot c$, whatever
# $\|g\|$ is. This is *normalized* gradient descent, and `lr` and `clip_norm` stop being two knobs: only their
# product counts. Test it on seed 0: halve `clip_norm` and double `lr`.

# %%
h_clip = clip_runs.histories[0]  # seed 0, exactly what `train` gives for it
h_same = train(EXPLODING.build(data.image_shape, data.num_classes), data, SGD.replace(lr=0.1, clip_norm=0.5))
diff = np.max(np.abs(h_same.loss - h_clip.loss))
print(f"lr 0.05, clip 1   vs   lr 0.1, clip 0.5: largest difference between the 600 losses {diff:.1e}")

# %% jupyter={"source_hidden": true}
# Checks the identity: with every step clipped, only lr * clip_norm counts, to the last bit.
assert h_same.clipped.all() and diff == 0, f"the two runs should be identical, largest loss difference {diff:.1e}"

# %% [markdown]
# The same 600 losses, bit for bit. That is exact math, not luck: halving and doubling are exact in floating
# point, so both runs round every operation alike. The tuning playbook (Godbole et al. 2023) puts it this
# way: "extremely aggressive gradient clipping is in essence a strange way of reducing the learning rate", and
# it counts more than half of the steps clipped as extremely aggressive.
#
# Is it *just* a smaller learning rate here? Not quite: the effective learning rate is
# $\text{lr}\cdot c/\|g\|$, and it grows as $\|g\|$ falls (from hundreds or thousands to about 25 here). A fixed
# learning rate must be small enough for the first steps. Without clipping, at `lr = 1e-3` (50 times smaller):

# %% tags=["nbval-ignore-output"]
small_lr = train_seeds(EXPLODING, data, SGD.replace(lr=1e-3))
survivors = [i for i, s in enumerate(SEEDS) if s not in small_lr.diverged]
acc_small = small_lr.evaluate(data.x_test, data.y_test)[survivors]
print(
    f"no clipping, lr 0.001: diverged on seeds {small_lr.diverged}; test accuracy of the others {mean_range(acc_small)}"
)
print(f"clipping, lr 0.05, clip_norm 1: test accuracy {mean_range(acc_clip)}")

# %% [markdown]
# At `lr = 1e-3`, seed 0 (the largest first gradient, 3 800) still diverges, within five steps. The four others
# train, but 600 steps take them to 56-63 % only, and every clipped seed (71-77 %) beats every one of them.
# Clipping takes short steps while the gradient is huge and full ones once it has come down; a fixed learning
# rate has to be small enough for the largest gradient, and is then small for the rest of the run.
# Zhang, He, Sra & Jadbabaie (ICLR 2020, "Why gradient clipping accelerates training") make this precise: where
# the loss's curvature grows with the gradient's norm (their "relaxed smoothness"), the safe step size falls
# like $1/\|g\|$, which is what clipping's effective learning rate $\text{lr}\cdot c/\|g\|$ follows, and
# they prove that clipped gradient descent can converge arbitrarily faster than any fixed learning rate there.

# %% jupyter={"source_hidden": true}
# Checks: lr 1e-3 diverges on seed 0 only (within five steps), and the worst clipped seed beats the best of the others.
assert small_lr.diverged == [0], f"at lr 1e-3 only seed 0 should diverge, diverged: {small_lr.diverged}"
assert acc_clip.min() > acc_small.max(), (
    f"clipping should win on every seed; got {acc_clip.min():.1%} vs {acc_small.max():.1%}"
)
assert 0.45 < acc_small.min() and acc_small.max() < 0.70, f"lr 1e-3 should reach about 56-63 %, got {acc_small}"

# %% [markdown]
# ### The cause is still there
#
# Why does this network explode at all? The variance argument of notebook 01: if the kernels of layer $l$ are
# independent of its input, zero-mean, with $\mathrm{Var}(W) = s^2\cdot 2/n_{l-1}$ ($s$ = `init_scale`) and
# the biases are zero, then $\mathbb{E}[z_l^2] = 2s^2\,\mathbb{E}[h_{l-1}^2]$, ReLU keeps half of it (the
# pre-activation is symmetric around 0), and
#
# $$\mathrm{RMS}(h_l) = s\,\mathrm{RMS}(h_{l-1}) = s^l\,\mathrm{RMS}(x).$$
#
# At $s = 1.2$ the signal leaving layer 30 is $1.2^{30} \approx 240$ times the input's; backwards, the same
# factor per layer multiplies the error. Clipping acts on the gradient after it is computed: it cannot change
# this forward amplification, only the size of the steps. Below, the RMS of every layer's output for 256
# digits, at initialisation for $s = 1.2$ and $s = 1$ (seed 0's weights; dashed: the prediction, no free
# parameter), and for the $s = 1.2$ networks of the five seeds after their 600 clipped steps.

# %%
xb = jnp.asarray(data.x_train[:256])
rms_x = float(jnp.sqrt(jnp.mean(xb**2)))


def layer_rms(net):
    """RMS of every hidden block's output for the batch xb, input -> output."""
    net.eval()
    return np.array([float(jnp.sqrt(jnp.mean(h**2))) for h in net.hidden(xb)])


def growth(rms):
    """Factor per layer: the slope of a straight line fitted to log RMS."""
    return float(np.exp(np.polyfit(layers, np.log(rms), 1)[0]))


layers = np.arange(1, EXPLODING.depth + 1)
profiles = {
    "init_scale 1.2, at initialisation": (layer_rms(EXPLODING.build(data.image_shape)), 1.2),
    "init_scale 1.0, at initialisation": (layer_rms(HEALTHY.build(data.image_shape)), 1.0),
}
worst = {name: float(np.max(np.abs(np.log(rms / (rms_x * s**layers))))) for name, (rms, s) in profiles.items()}
draws = np.array([layer_rms(net) for net in EXPLODING.build_seeds(SEEDS, data.image_shape)])  # seeds 0-4, s = 1.2
trained = np.array([layer_rms(net) for net in clip_runs.models])  # the same five networks after training

# %%
names = clip_runs.models[0].layer_names()[:-1]
at_init = {f"{name}, seed 0: x{growth(rms):.3f} per layer": (layers - 1, rms) for name, (rms, _) in profiles.items()}
ax = plot_theory_vs_measurement(
    {**at_init, "init_scale 1.2, after 600 clipped steps": (layers - 1, trained)},
    {f"theory: RMS(x) * {s}^l, l = 1 at dense0": (layers - 1, rms_x * s**layers) for _, s in profiles.values()},
    layer_names=names,
    ylabel="RMS of the layer's output (log scale)",
    title="forward signal per layer: theory (dashed) vs measurement (points; band: min-max over seeds)",
)
ax.set_ylim(top=3e3)  # room for the legend above the points
ax.figure

# %%
for name, (rms, _) in profiles.items():
    print(f"{name}, seed 0: x{growth(rms):.3f} per layer, last layer / input RMS = {rms[-1] / rms_x:.3g}")
    print(f"{name}, seed 0: every layer within a factor {np.exp(worst[name]):.2f} of the theory line")
draw_growth, draw_amp = np.array([growth(rms) for rms in draws]), draws[:, -1] / rms_x
print(f"init_scale 1.2, at initialisation, seeds 0-4: x{draw_growth.min():.2f} to x{draw_growth.max():.2f} per layer,")
print(f"    last layer / input RMS from {draw_amp.min():.0f} to {draw_amp.max():.0f} (theory 1.2^30 = {1.2**30:.0f})")

# %% jupyter={"source_hidden": true}
# Checks the initial networks (no training: exact up to float32 rounding).
g12, g10 = (growth(profiles[f"init_scale {s}, at initialisation"][0]) for s in ("1.2", "1.0"))
w12, w10 = (worst[f"init_scale {s}, at initialisation"] for s in ("1.2", "1.0"))
assert abs(g12 / 1.2 - 1) < 0.005 and abs(g10 - 1) < 0.005, (
    f"seed 0's fits should be 1.2 and 1, got {g12:.4f}, {g10:.4f}"
)
assert abs(np.exp(w12) - 2.08) < 0.02 and abs(w12 - w10) < 1e-3, (
    f"largest deviation: {np.exp(w12):.3f}, {np.exp(w10):.3f}"
)
assert abs(draw_growth.min() - 1.113) < 0.003 and abs(draw_growth.max() - 1.203) < 0.003, f"fits: {draw_growth}"
assert abs(draw_amp.min() - 26) < 1 and abs(draw_amp.max() - 249) < 2, f"amplifications at init: {draw_amp}"
assert abs(profiles["init_scale 1.0, at initialisation"][0][-1] / rms_x - 0.844) < 0.005, "s = 1 amplification"

# %% tags=["nbval-ignore-output"]
trained_growth, trained_amp = np.array([growth(rms) for rms in trained]), trained[:, -1] / rms_x
print(f"after 600 clipped steps: {mean_range(trained_growth, 'x{:.2f}')} per layer")
print(f"    last layer / input RMS {mean_range(trained_amp, '{:.0f}')}")
print("    the same seeds at initialisation:", ", ".join(f"{a:.0f}" for a in draw_amp))

# %% [markdown]
# - At initialisation, seed 0's network fits the theory well: a straight line through the points gives 1.203
#   per layer for $s = 1.2$ and 1.002 for $s = 1$, the theory's $s$ to within 0.3 %, and no layer is off the
#   line by more than a factor 2.1. That is partly this draw's luck. Over the draws of seeds 0-4 the fitted
#   factor at $s = 1.2$ ranges from 1.11 to 1.20, and the last layer's RMS from 26 to 249 times the input's
#   (theory: 240). With 64 units, each layer's factor is a little random and the errors multiply over 30
#   layers; the theory gives the *mean square*, and a typical draw grows a little slower. The wiggles are
#   identical at both scales because, with zero biases, the $s = 1.2$ network computes exactly $1.2^l$ times
#   the $s = 1$ network's signal (ReLU is positively homogeneous, notebook 01): they belong to the draw of the
#   weights, not to $s$.
# - After 600 clipped steps every seed's network still amplifies, by 1.06 to 1.09 per layer: its last layer's
#   RMS is 7 to 15 times its input's, where the $s = 1$ network's is 0.84 times. Training brought the
#   amplification down, slowly, at a fixed step length; clipping itself does nothing about it. Fixing the
#   initialisation (notebook 02) does, and the next section shows what that network reaches.

# %% jupyter={"source_hidden": true}
# Checks, on every seed: training lowered the amplification, and the trained network still amplifies.
assert np.all(trained_amp < draw_amp), f"amplification should fall on every seed: {draw_amp} -> {trained_amp}"
assert 1.03 < trained_growth.min() and trained_growth.max() < 1.13, f"trained factors per layer: {trained_growth}"
assert 3 < trained_amp.min() and trained_amp.max() < 35, f"trained amplifications should be about 7-16: {trained_amp}"

# %% [markdown]
# ## 4. Choosing the threshold from data
#
# Where clipping earns its keep is a network that trains but sometimes takes a huge step. The tuning playbook's
# recipe: log the *unclipped* gradient norm, plot it against the step and as a histogram, and "choose a
# gradient clipping threshold based on the 90th percentile of gradient norms". Then watch the fraction of
# clipped steps.
#
# Take the He-initialised network (`init_scale = 1`), which has no reason to explode, with SGD at `lr = 0.02`,
# and record runs without clipping, one per seed.

# %% tags=["nbval-ignore-output"]
BASE = SGD.replace(lr=0.02)
record = train_seeds(HEALTHY, data, BASE)
acc_record = record.evaluate(data.x_test, data.y_test)
norms = record.stacked("grad_norm")  # (seeds, steps)
p90 = float(np.percentile(norms, 90))
medians, largest_norms = np.median(norms, axis=1), norms.max(axis=1)
between = np.mean((norms > 1) & (norms < 10), axis=1)
print(f"unclipped: {len(record.diverged)} of {len(SEEDS)} seeds diverged; test accuracy {mean_range(acc_record)}")
print(f"gradient norm, median of each run: {mean_range(medians, '{:.1f}')}")
print(f"steps with a norm between 1 and 10: {mean_range(between)}")
print(f"largest norm of each run: {mean_range(largest_norms, '{:.0f}')}")
print(f"    that is {mean_range(largest_norms / medians, '{:.0f}')} times the run's median")
print(f"90th percentile of all the recorded norms: {p90:.1f}")

# %% jupyter={"source_hidden": true}
# Checks the claims below on every seed, with margins wider than the seeds' spread.
assert not record.diverged, f"the He network should not diverge at lr 0.02, diverged: {record.diverged}"
assert 0.75 < between.min() and between.max() < 0.97, f"most steps' norms should lie in 1-10: {between}"
assert np.all(largest_norms > 3 * medians), (
    f"every run should have spikes above 3x its median: {largest_norms / medians}"
)
assert acc_record.max() - acc_record.min() > 0.15, f"the unclipped runs should spread widely, got {acc_record}"
assert acc_record.min() < 0.6 and 0.6 < acc_record.max() < 0.93, f"unclipped accuracies (51-86 % here): {acc_record}"

# %%
fig, (ax_t, ax_h) = plt.subplots(1, 2, figsize=(11, 3.6), dpi=90, layout="constrained")
for seed, trace, color in zip(SEEDS, norms, series(len(SEEDS)), strict=True):
    ax_t.semilogy(trace, color=color, lw=0.7, alpha=0.8, label=f"seed {seed}")
ax_t.set(xlabel="step", ylabel="||gradient|| (log scale)", title="gradient norm vs step, He init, lr 0.02, unclipped")
reference_lines(ax_t, y={"90th percentile of all": p90}).legend(fontsize=7, ncols=2)
plot_histograms(
    {f"all {norms.size} steps": norms},
    ax=ax_h,
    bins=39,
    xscale="log",
    colors=[COLORS["grad_norm"]],
    xlabel="||gradient|| (log scale)",
    ylabel="number of steps",
    title=f"histogram over the {norms.size} recorded steps ({len(SEEDS)} seeds)",
)
reference_lines(ax_h, x={"90th percentile": p90})
plt.show()

# %% [markdown]
# On every seed most steps (85-91 %) have a gradient norm between 1 and 10, and a few spikes go far above: the
# largest of each run is 5 to 23 times its median. A spike is one step many times longer than the others, and
# it can undo much of what the run had learned, down to chance level. The unclipped runs end far apart, between
# 51 % and 86 % test accuracy here: which spikes a run meets, and when, decides much of its result. Even the
# last bits of the arithmetic do: on a CPU that rounds differently, some of these same seeds end at chance.
#
# Now train again from the same initial weights (and batches), clipped at the 90th percentile of all the recorded
# norms, and at their median for comparison.

# %% tags=["nbval-ignore-output"]
percentiles = [50, 90]
thresholds = {q: float(np.percentile(norms, q)) for q in percentiles}
clipped_runs = {q: train_seeds(HEALTHY, data, BASE.replace(clip_norm=c)) for q, c in thresholds.items()}
acc_q = {q: runs.evaluate(data.x_test, data.y_test) for q, runs in clipped_runs.items()}
share_q = {q: np.array([h.clipped.mean() for h in runs.histories]) for q, runs in clipped_runs.items()}
for q, c in thresholds.items():
    print(
        f"clip at the {q}th percentile (clip_norm {c:.3g}): steps clipped {mean_range(share_q[q])}, "
        f"test accuracy {mean_range(acc_q[q])}"
    )
print(f"no clipping: test accuracy {mean_range(acc_record)}")
clipped_medians = np.array([np.median(h.grad_norm) for h in clipped_runs[90].histories])
print(
    f"median gradient norm: {mean_range(medians, '{:.1f}')} in the recorded runs, "
    f"{mean_range(clipped_medians, '{:.1f}')} in the runs clipped at the 90th percentile"
)

# %% [markdown]
# - Clipped at the 90th percentile (`clip_norm` about 10), the test accuracy is 90 % on average (85-94 %),
#   against 65 % (51-86 %) unclipped, and the worst clipped seed (85 %) is far above the worst unclipped one
#   (51 %). The two ranges can overlap (here the best unclipped run, 86 %, matches the worst clipped one): what
#   clipping buys reliably is a better mean and a much better worst case. Clipped at the median, the accuracies
#   are 79-91 %: on five seeds, the two thresholds are not told apart.
# - At the 90th percentile, 17 % of the steps were clipped on average (13-18 %), not 10 %. The percentile
#   describes the *recorded* runs, and a clipped run is a different run: spared the setbacks, it trains further,
#   through a region where its gradients are larger than the recorded ones (median 5.8 against 4.6, averaged
#   over the seeds). The plot puts the naive prediction (a threshold at percentile $q$ clips $1 - q/100$ of the
#   steps) over the measurement: measure the clipped fraction, don't assume it.
# - At the median, 77-94 % of the steps were clipped. Most steps then have the length $\text{lr}\cdot c$
#   exactly, as in section 3: the threshold has become the learning rate. The playbook's advice for this case:
#   when more than half of the steps are clipped, lower `lr` instead.

# %% jupyter={"source_hidden": true}
# Checks the claims above, with margins wider than the seeds' spread.
assert not any(runs.diverged for runs in clipped_runs.values()), "no clipped run should diverge"
assert acc_q[90].mean() > acc_record.mean() + 0.1 and acc_q[90].min() > acc_record.min() + 0.15, (
    f"clipping at the 90th percentile should lift the mean and the worst seed; got {acc_q[90]} vs {acc_record}"
)
assert 0.75 < acc_q[90].min() and acc_q[90].max() < 0.98, (
    f"accuracies clipped at p90 should be about 85-94 %: {acc_q[90]}"
)
assert 0.12 < share_q[90].mean() < 0.25, (
    f"about 17 % of the steps should be clipped at p90, got {share_q[90].mean():.1%}"
)
assert share_q[50].min() > 0.5, f"clipping at the median should clip most steps on every seed: {share_q[50]}"
assert 7 < thresholds[90] < 14, (
    f"the 90th percentile of the recorded norms should be about 10, got {thresholds[90]:.1f}"
)
assert 0.65 < acc_q[50].min() and acc_q[50].max() < 0.98, (
    f"accuracies clipped at p50 should be about 79-91 %: {acc_q[50]}"
)
assert clipped_medians.mean() > medians.mean() + 0.5, f"median norms: {clipped_medians} vs {medians}"
assert 5.0 < clipped_medians.mean() < 6.6 and 4.0 < medians.mean() < 5.3, f"{clipped_medians} vs {medians}"

# %%
qs = np.linspace(40, 100, 61)
ax = plot_theory_vs_measurement(
    {"measured in the clipped runs, one point per seed": (percentiles, np.array([share_q[q] for q in percentiles]).T)},
    {"prediction: 1 - q/100 (if the run did not change)": (qs, 1 - qs / 100)},
    each_seed=True,
    yscale="linear",
    xlabel="clip_norm = q-th percentile of the recorded norms",
    ylabel="fraction of steps clipped",
    title="He init, SGD lr 0.02: clipped fraction vs threshold",
)
ax.axhline(0.5, color="grey", lw=0.8, ls=":", label="50 %: 'extremely aggressive' (playbook)")
ax.set_ylim(0, 1.02)
ax.legend(fontsize=8)
ax.figure

# %% [markdown]
# ## 5. Explore
#
# The panel trains the exploding network (seed 0) again after every change (150 steps, about a second; `steps`
# goes to the 600 of the runs above and further; a new
# `clip_mode` compiles its training step once, a few seconds). Things to try: untick `clip_norm` (no clipping)
# and the run stops within two steps; raise `clip_norm` to 10 or 100 and watch the fraction of clipped steps and
# the loss; double `lr` and halve `clip_norm` and compare the dashboards; try `clip_mode` "value" and "adaptive"
# at `clip_norm` 0.01 (for them the threshold means a largest entry and a largest gradient-to-weight ratio per
# unit, so the dotted line is not drawn). Each run is one seed: before trusting a difference you see here,
# measure it on several seeds with `train_seeds`.

# %% tags=["nbval-ignore-output"]
explore = panel(
    data,
    model=EXPLODING,
    config=SGD.replace(clip_norm=1.0, steps=150),
    controls=["clip_mode", "clip_norm", "lr", "steps"],
    title="the exploding network (init_scale 1.2), SGD",
)
explore

# %% [markdown]
# ## 6. Exercises
#
# **1.** Write global-norm clipping yourself: `my_clip(grads, max_norm)` takes a pytree and returns a pytree of
# the same shape. The checker tries it on a few gradients, including one already below the threshold and one
# that is all zeros.


# %%
def my_clip(grads, max_norm): ...  # your code here


ok = ex.check_clip_by_global_norm(my_clip)

# %% [markdown]
# **2.** SGD with `lr = 0.05` and `clip_norm = 1` meets a gradient of norm 3 800 (the exploding network of seed 0
# at step 0). How long is the update, $\|\theta_{t+1} - \theta_t\|$?

# %%
answer = ...
ok = ex.check_update_length(answer, lr=0.05, clip_norm=1.0, grad_norm=3800.0)

# %% [markdown]
# **3.** From the recorded norms `norms` (section 4: every step of the five unclipped runs), compute the
# `clip_norm` that would have clipped half of the recorded steps: the playbook's limit of "extremely
# aggressive".

# %%
answer = ...
ok = ex.check_half_clipped_threshold(answer, norms)

# %% [markdown]
# ## Takeaways
#
# - Global-norm clipping (Pascanu et al. 2013) multiplies the whole gradient by $\min(1, c/\|g\|)$: the direction
#   is kept (cosine 1.000), the step is at most $\text{lr}\cdot c$. Clipping by value bends the direction
#   (cosine 0.50 here); AGC (Brock et al. 2021) bends it on purpose, to bound each unit's relative change.
# - Clipping made the exploding network trainable on every seed (71-77 % test accuracy instead of a non-finite
#   loss within two steps), by bounding the steps. It did not remove the cause: after training every seed's
#   network still amplified its signal 7- to 15-fold, and every step was clipped.
# - When (nearly) every step is clipped, `lr` and `clip_norm` fuse into one step length: doubling one and
#   halving the other gives the same run, bit for bit. Fix the cause (initialisation, notebook 02) or the
#   learning rate.
# - Pick the threshold from data: record unclipped norms, clip at about their 90th percentile, and *measure* the
#   fraction of clipped steps in the clipped runs: 13-18 % here, not 10 %. Above half, lower the learning rate.
# - Judge a recipe on several seeds. Here the unclipped runs of one recipe ended anywhere between 51 % and 86 %:
#   one run could have told either story.
#
# ## Claim vs measurement
#
# > "If the result of the gradient computation exceeds the model's input range, gradient explosion occurs."
#
# In the exploding network at step 0, every gradient entry is finite and far from any limit of float32; what
# went wrong is the *step*, not the gradient's range:

# %%
float32_max = float(np.finfo(np.float32).max)
first_norms = np.array([h.grad_norm[0] for h in raw.histories])
print(
    f"step 0, seed 0: gradient norm {h_raw.grad_norm[0]:.3g} (float32 goes up to {float32_max:.2g}), largest entry "
    f"{largest:.0f} in our batch; the SGD step changed each layer's weights by "
    f"{h_raw.update_ratio[0].min():.1f} to {h_raw.update_ratio[0].max():.1f} times their own norm"
)
print(f"step 0, seeds 0-4: gradient norms from {first_norms.min():.0f} to {first_norms.max():.0f}")
print(f"step 1, seed 0: loss {h_raw.loss[1]:.2g}, gradient norm finite: {bool(np.isfinite(h_raw.grad_norm[1]))}")
print(f"with clip_norm = 1 the largest ratio at step 0 is {h_clip.update_ratio[0].max():.1e}")

# %% jupyter={"source_hidden": true}
# Checks the numbers quoted below (the first two steps: fixed by the initial weights, up to float32 rounding).
assert np.all(np.isfinite(first_norms)) and first_norms.max() < 1e4, f"step-0 gradient norms: {first_norms}"
assert abs(np.log10(float32_max / h_raw.grad_norm[0]) - 35) < 0.5, "3.8e3 should be 35 orders below float32's limit"
ratio_min, ratio_max = h_raw.update_ratio[0].min(), h_raw.update_ratio[0].max()
assert abs(ratio_min - 1.08) < 0.01 and abs(ratio_max - 6.22) < 0.01, (
    f"step-0 ratios: {ratio_min:.3f} to {ratio_max:.3f}"
)
assert abs(h_raw.loss[1] / 5.4e26 - 1) < 0.1 and not np.isfinite(h_raw.grad_norm[1]), (
    f"step 1: loss {h_raw.loss[1]:.2g}"
)
assert abs(h_clip.update_ratio[0].max() - 1.64e-3) < 2e-5, (
    f"clipped ratio at step 0: {h_clip.update_ratio[0].max():.3g}"
)

# %% [markdown]
# The gradient norm at step 0 is 3.8e3 for seed 0 (670 to 3 800 over the five seeds), 35 orders of magnitude
# below float32's largest number: no range is exceeded. The explosion is the update: `lr * g` moves every
# layer by more than its own size (ratios 1.1 to 6.2, where about 1e-3 is healthy), the next forward pass
# multiplies 31 of those larger matrices, and the loss at step 1 is 5e26. Clipping works by bounding that step
# (largest ratio 1.6e-3 with `clip_norm = 1`), which is also why it cannot fix what made the gradient large in
# the first place.
