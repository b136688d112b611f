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
# # 01 · Exploding gradients in a deep MLP
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/taming-gradients/taming-gradients/blob/main/notebooks/01_exploding_gradients.ipynb)
#
# Backpropagation multiplies the gradient by one matrix per layer, so a deep network turns a small excess in
# its weights into a huge gradient. After this notebook you can write backprop by hand as a product of layer
# Jacobians, predict from the weights' variance how much the gradient of every layer grows with depth and
# `init_scale`, and recognise an explosion in a training run: when the loss turns into NaN and in which layer.

# %%
# On Colab, install this course's helpers (elsewhere `make lab` has, and this line does nothing).
# !python -c "import google.colab" 2>/dev/null && pip install -q flax==0.12.12 optax==0.2.8 git+https://github.com/taming-gradients/taming-gradients

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from helpers.data import load_digits
from helpers.diagnostics import activation_stats, activations_and_grads, layer_grad_norms
from helpers.exercises import exploding as ex
from helpers.models import ModelConfig
from helpers.plots import (
    LAYER_AXIS,
    Dashboard,
    compare_histories,
    plot_layer_histograms,
    plot_theory_vs_measurement,
)
from helpers.train import SEEDS, TrainConfig, train_seeds
from helpers.widgets import panel

data = load_digits(seed=0)
x = jnp.asarray(data.x_train[:256].reshape(256, -1))  # 256 digits, 8x8 pixels flattened, values in [0, 1]
y = jnp.asarray(data.y_train[:256])
print(f"{len(data.x_train)} training and {len(data.x_test)} test digits; a batch x of shape {x.shape}")

# %% [markdown]
# ## Predict first
#
# A ReLU MLP with 30 hidden layers of 128 units is initialised with He et al.'s (2015) rule, standard deviation
# $\sqrt{2/\text{fan\_in}}$. Now make every weight 20 % larger (`init_scale = 1.2`). Before running anything,
# write down your guesses:
#
# 1. By what factor does the gradient of the **first** layer's weights grow: about 1.2, about 6, about 240, or
#    more than 10 000?
# 2. Which layer then has the largest weight gradient: the one next to the input, the one next to the output,
#    or are they about the same?
#
# The answers are measured below, in the section "Theory next to measurement".

# %% [markdown]
# ## Backprop by hand: a product of layer Jacobians
#
# Write the network with rows as examples (as Flax does: a kernel $W_l$ has shape `(fan_in, fan_out)`):
#
# $$z_l = h_{l-1} W_l,\qquad h_l = \mathrm{relu}(z_l),\qquad l = 1..L,\qquad \text{logits} = z_{L+1} = h_L W_{L+1},$$
#
# with $h_0 = x$ and no biases (they start at zero anyway). Call $\delta_l = \partial \mathcal{L} / \partial z_l$
# the gradient with respect to a layer's pre-activations. For softmax cross-entropy averaged over a batch of
# $B$ examples, $\delta_{L+1} = (\mathrm{softmax}(\text{logits}) - \text{onehot}(y)) / B$, and the chain
# rule gives, going from the output back to the input,
#
# $$\delta_l = \big(\delta_{l+1} W_{l+1}^\top\big) \odot \mathrm{relu}'(z_l),\qquad
#   \frac{\partial \mathcal{L}}{\partial W_l} = h_{l-1}^\top \delta_l .$$
#
# Unrolled, $\delta_1 = \delta_{L+1}\, W_{L+1}^\top D_L\, W_L^\top D_{L-1} \cdots W_2^\top D_1$ with
# $D_l = \mathrm{diag}(\mathrm{relu}'(z_l))$: the error at the output is multiplied by one Jacobian per layer.
# Whether that product grows or shrinks with depth decides whether gradients explode or vanish (Pascanu et al.
# 2013 make this argument for recurrent networks; a deep MLP is the same product without weight sharing).
#
# Here it is in plain JAX, on a small network of depth 6 and width 32.


# %%
def init_weights(seed, sizes, init_scale=1.0):
    """He-normal kernels: std = init_scale * sqrt(2 / fan_in), one per layer (the last one is the head)."""
    rng = np.random.default_rng(seed)
    return [
        jnp.asarray(init_scale * np.sqrt(2.0 / m) * rng.standard_normal((m, n)), jnp.float32)
        for m, n in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def forward(Ws, x, act=jax.nn.relu):
    """Pre-activations z_1..z_L and outputs h_1..h_L of the hidden layers, and the logits."""
    zs, hs, h = [], [], x
    for W in Ws[:-1]:
        z = h @ W
        h = act(z)
        zs.append(z)
        hs.append(h)
    return zs, hs, h @ Ws[-1]


def loss_fn(Ws, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(forward(Ws, x)[2], y).mean()


def backprop(Ws, x, y):
    """The chain rule written out: deltas d1..d(L+1) and kernel gradients dL/dW_l, ordered input -> output."""
    zs, hs, logits = forward(Ws, x)
    delta = (jax.nn.softmax(logits) - jax.nn.one_hot(y, logits.shape[1])) / len(y)
    deltas, grads = [delta], [hs[-1].T @ delta]
    for layer in reversed(range(len(zs))):  # hidden layers, output side first
        delta = (delta @ Ws[layer + 1].T) * (zs[layer] > 0)  # one Jacobian: W^T, then the ReLU mask
        deltas.insert(0, delta)
        grads.insert(0, (x if layer == 0 else hs[layer - 1]).T @ delta)
    return deltas, grads


backprop_jit = jax.jit(backprop)  # compiled once per network shape; the same arithmetic as calling backprop
Ws_small = init_weights(0, [64, 32, 32, 32, 32, 32, 32, 10], init_scale=1.2)
deltas, grads = backprop_jit(Ws_small, x, y)
auto = jax.jit(jax.grad(loss_fn))(Ws_small, x, y)
rel_err = max(float(jnp.linalg.norm(g - a) / jnp.linalg.norm(a)) for g, a in zip(grads, auto, strict=True))

_, hs, _ = forward(Ws_small, x)
lines = [
    f"hand-written backprop vs jax.grad: {'equal' if rel_err < 1e-5 else 'DIFFERENT'} to within 1e-5 (relative)",
    "",
]
lines.append("layer   RMS of its input h_(l-1)   ||delta_l||   ||dL/dW_l||")
for layer, (h_in, d, g) in enumerate(zip([x, *hs], deltas, grads, strict=True), start=1):
    name = "head" if layer == len(Ws_small) else f"{layer}"
    rms_in, d_norm, g_norm = (float(v) for v in (jnp.sqrt(jnp.mean(h_in**2)), jnp.linalg.norm(d), jnp.linalg.norm(g)))
    lines.append(f"{name:>5}   {rms_in:22.3f}   {d_norm:11.4f}   {g_norm:11.4f}")
print("\n".join(lines))

# %% jupyter={"source_hidden": true}
# Checks: the chain rule written out gives jax.grad's gradients, to float32 rounding.
assert rel_err < 1e-5, (
    f"backprop by hand should equal jax.grad to float32 rounding; largest relative difference {rel_err:.1e}"
)

# %%
delta_growth = float(jnp.linalg.norm(deltas[0]) / jnp.linalg.norm(deltas[-1]))
kernel_norms = [float(jnp.linalg.norm(g)) for g in grads]
print(
    f"||delta_1|| / ||delta_head|| = {delta_growth:.2f}; kernel gradients {min(kernel_norms):.2f} .. {max(kernel_norms):.2f}"
)

# %% jupyter={"source_hidden": true}
# Checks the numbers quoted below: delta grows by about 1.2^6 while the kernel gradients stay within 1.6 .. 3.2.
assert abs(delta_growth / 1.2**6 - 1) < 0.2, (
    f"||delta_1|| / ||delta_head|| should be near 1.2^6 = 3.0, got {delta_growth:.2f}"
)
assert 1.6 < min(kernel_norms) and max(kernel_norms) < 3.2, (
    f"kernel gradients should lie in 1.6 .. 3.2, got {min(kernel_norms):.2f} .. {max(kernel_norms):.2f}"
)

# %% [markdown]
# Read the table from the bottom up. Going towards the input, $\|\delta_l\|$ grows from the head to layer 1
# by a factor 3.4, close to $1.2^6 \approx 3.0$: each Jacobian $W_l^\top D_l$ stretches the error by about
# `init_scale`. But the kernel gradient $\partial\mathcal{L}/\partial W_l = h_{l-1}^\top \delta_l$ also contains
# the layer's *input*, whose RMS grows in the other direction (at width 32 single layers scatter; the 30-layer
# network below averages better). The two trends cancel: the kernel gradients all lie between 1.6 and 3.2. The
# next section says why, and by how much everything grows.

# %% [markdown]
# ## The variance argument
#
# Assumptions: the weights of a layer are independent, zero-mean, with
# $\mathrm{Var}(W_l) = s^2 \cdot 2/n_{l-1}$ ($s$ = `init_scale`, $n_{l-1}$ = fan-in; $s=1$ is He et al.'s
# rule); the weights are independent of the signal they multiply; biases are zero; the width is large.
#
# **Forward.** A pre-activation is a sum of $n_{l-1}$ independent terms:
# $\mathbb{E}[z_{l,j}^2] = n_{l-1}\,\mathrm{Var}(W_l)\,\mathbb{E}[h_{l-1}^2] = 2s^2\,\mathbb{E}[h_{l-1}^2]$.
# Since $z_{l,j}$ is symmetric around zero (a zero-mean weight times anything), ReLU keeps exactly half of its
# second moment: $\mathbb{E}[h_l^2] = \tfrac12\mathbb{E}[z_l^2] = s^2\,\mathbb{E}[h_{l-1}^2]$. The RMS of the
# activations is multiplied by $s$ per layer: $\mathrm{RMS}(h_l) = s^l\,\mathrm{RMS}(x)$. This holds for
# the first layer too, although pixels are not zero-mean, because only the weights need to be.
#
# **Backward.** $\delta_{l,i} = \mathrm{relu}'(z_{l,i}) \sum_j W_{l+1,ij}\,\delta_{l+1,j}$. Treating
# $W_{l+1}$ as independent of $\delta_{l+1}$ (the usual mean-field approximation; Yang et al. 2019 discuss
# when it is exact) and using $\mathbb{E}[\mathrm{relu}'(z)^2] = \tfrac12$:
# $\mathbb{E}[\delta_{l,i}^2] = \tfrac12 \cdot \frac{2s^2}{n_l}\,\|\delta_{l+1}\|^2$, and summing over the
# $n_l$ units, $\mathbb{E}\|\delta_l\|^2 = s^2\,\|\delta_{l+1}\|^2$. So $\|\delta_l\| = s^{L+1-l}\,\|\delta_{L+1}\|$:
# the backpropagated signal grows by $s$ per layer towards the input, whatever the widths.
#
# **Kernel gradients.** For one example, $\|h_{l-1}^\top \delta_l\| = \|h_{l-1}\|\,\|\delta_l\|
# \propto s^{l-1}\cdot s^{L+1-l} = s^{L}$: **the same power of $s$ for every layer.** So at initialisation the
# weight gradients do *not* grow from the output layer to the input layer; what grows geometrically is the
# size of *every* layer's weight gradient, as $s^L$, with depth $L$ and with $s$.
#
# **An exact version.** ReLU is positively homogeneous, $\mathrm{relu}(s a) = s\,\mathrm{relu}(a)$ for $s>0$.
# With zero biases, multiplying every kernel by $s$ multiplies $h_l$ by exactly $s^l$ and the logits by
# $s^{L+1}$; backwards, each Jacobian carries one factor $s$. Hence
# $\partial\mathcal{L}/\partial W_l(s) = s^L \times$ (the $s=1$ network's backprop of the error
# $\mathrm{softmax} - \text{onehot}$). The only other way $s$ enters is through that error vector, whose norm is
# at most $\sqrt2$ per example: the softmax is nearly uniform when the logits are small ($s<1$) and saturated
# when they are large ($s>1$).

# %% [markdown]
# ### What "exploding" means in this course
#
# A gradient is large or small only relative to the weights it updates: a step changes $W_l$ by
# $\text{lr}\cdot\nabla W_l$, so what a layer feels is the **ratio $\|\nabla W_l\| / \|W_l\|$**, and after the
# optimizer has done its work, the update ratio $\|\Delta W_l\| / \|W_l\|$ that every dashboard of the course
# plots (about $10^{-3}$ per step is the usual healthy value). Both are scale-free: they read the same in every
# layer of every network. A layer's gradient *explodes* when its ratio is far above what a step of size lr can
# use, and *vanishes* when it is far below. Since $\|\nabla W_l\| \approx \|h_{l-1}\|\,\|\delta_l\|$ (exact for
# one example), it explodes in two ways, and the course meets both:
#
# - **every layer together**, as here: the forward signal grows by $s$ per layer and the backward one by $s$ per
#   layer the other way, so the two cancel along the network, and every layer's ratio grows alike, by
#   $s^{L}/s = s^{L-1}$ against the He network's (the gradient by $s^L$ times the softmax's bounded factor, the
#   weights by $s$);
# - **some layers more than others**: when something holds the forward signal fixed while the backward one still
#   grows per layer, the ratio grows towards the input. Notebook 06 derives this for BatchNorm (1.21 per layer),
#   and notebook 07 measures it in a 16-block CNN.

# %% [markdown]
# ## The same with `helpers`, 30 layers deep
#
# `ModelConfig(depth=30, width=128, init_scale=s)` builds the same kind of network with Flax (He-normal
# kernels, zero biases). Two checks first: with the same seed, `init_scale=s` draws exactly $s$ times the
# weights of `init_scale=1`; and our 15-line `backprop` computes the same kernel gradients as
# `helpers.diagnostics.layer_grad_norms`.

# %%
DEPTH, WIDTH = 30, 128


model = ModelConfig(depth=DEPTH, width=WIDTH, init_scale=1.0).build(data.image_shape, data.num_classes)
Ws = model.kernels()  # the weight kernels as a list, input -> output (hidden layers, then the head)
Ws_12 = ModelConfig(depth=DEPTH, width=WIDTH, init_scale=1.2).build(data.image_shape, data.num_classes).kernels()
scale_err = max(float(jnp.max(jnp.abs(1.2 * a - b) / jnp.max(jnp.abs(b)))) for a, b in zip(Ws, Ws_12, strict=True))
ours = np.array([float(jnp.linalg.norm(g)) for g in backprop_jit(Ws, x, y)[1]])
theirs = layer_grad_norms(model, x, y)
grad_err = float(np.max(np.abs(ours / theirs - 1)))
print(
    f"init_scale=1.2 kernels / 1.2 vs init_scale=1 kernels: {'equal' if scale_err < 1e-6 else 'DIFFERENT'} "
    "to within 1e-6 (relative)\n"
    f"our backprop vs layer_grad_norms: {'equal' if grad_err < 1e-4 else 'DIFFERENT'} to within 1e-4 (relative)"
)

# %% jupyter={"source_hidden": true}
# Checks: init_scale rescales one draw of weights, and our backprop agrees with the helpers' gradients.
assert scale_err < 1e-6, (
    f"init_scale=1.2 should draw exactly 1.2 x the init_scale=1 weights; relative difference {scale_err:.1e}"
)
assert grad_err < 1e-4, (
    f"our backprop and layer_grad_norms should agree to 1e-4; largest relative difference {grad_err:.1e}"
)

# %% [markdown]
# Now the profile of the network at five values of `init_scale`: the RMS of each layer's output, the norm of
# the backpropagated $\delta_l$, and the norm of each kernel gradient. Dashed lines are the variance argument:
# $s^l\,\mathrm{RMS}(x)$ forwards (no free parameter) and $s^{L+1-l}\,\|\delta_{L+1}\|$ backwards (starting
# from the error the loss hands to the head).

# %%
scales = [0.8, 0.9, 1.0, 1.1, 1.2]
layers = np.arange(1, DEPTH + 2)  # 1..30 hidden, 31 = head
rms_x = float(jnp.sqrt(jnp.mean(x**2)))
profiles = {}
for s in scales:
    Ws_s = [s * W for W in Ws]
    deltas_s, grads_s = backprop_jit(Ws_s, x, y)
    hs_s = forward(Ws_s, x)[1]
    profiles[s] = dict(
        rms=np.array([float(jnp.sqrt(jnp.mean(h**2))) for h in hs_s]),
        delta=np.array([float(jnp.linalg.norm(d)) for d in deltas_s]),
        kernel=np.array([float(jnp.linalg.norm(g)) for g in grads_s]),
    )

fig, axes = plt.subplots(1, 3, figsize=(11, 3.8), dpi=90, layout="constrained")
kernel_mean = {s: np.exp(np.mean(np.log(p["kernel"]))) for s, p in profiles.items()}
panels = {  # (title, quantity): the layers, the measured profile's key, the theory for init_scale s
    ("forward", "RMS of h_l"): (layers[:-1], "rms", lambda s: rms_x * s ** layers[:-1]),
    ("backward", "||delta_l||"): (layers, "delta", lambda s: profiles[s]["delta"][-1] * s ** (DEPTH + 1 - layers)),
    ("kernel gradients (theory: flat)", "||dL/dW_l||"): (
        layers,
        "kernel",
        lambda s: np.full(len(layers), kernel_mean[s]),
    ),
}
for ax, ((title, quantity), (xs, key, predict)) in zip(axes, panels.items(), strict=True):
    plot_theory_vs_measurement(
        {f"init_scale={s}": (xs, profiles[s][key]) for s in scales},
        {f"_theory {s}": (xs, predict(s)) for s in scales},  # "_": no legend entry
        ax=ax,
        title=f"{title}: {quantity}",
        xlabel=f"{LAYER_AXIS}; {DEPTH + 1} = head",
        ylabel=f"{quantity} (log scale)",
    )
fig.suptitle(
    f"ReLU MLP, depth {DEPTH}, width {WIDTH}, 256 digits: theory (dashed, coloured by init_scale) vs measurement (points)"
)
plt.show()

# %% [markdown]
# Fitting a straight line to $\log$ of each profile gives the measured factor per layer:

# %%
lines = ["init_scale   forward factor/layer   backward factor/layer   kernel gradients: smallest .. largest (max/min)"]
fits = {}
for s in scales:
    p = profiles[s]
    fwd = np.exp(np.polyfit(layers[:-1], np.log(p["rms"]), 1)[0])
    bwd = np.exp(-np.polyfit(layers, np.log(p["delta"]), 1)[0])
    spread = p["kernel"].max() / p["kernel"].min()
    fits[s] = (fwd, bwd, spread)
    lines.append(
        f"{s:10.1f}   {fwd:20.3f}   {bwd:21.3f}   {p['kernel'].min():.2g} .. {p['kernel'].max():.2g} ({spread:.2f})"
    )
print("\n".join(lines))

# %%
delta_ratio = profiles[1.2]["delta"][0] / profiles[1.2]["delta"][-1]
print(f"init_scale 1.2: ||delta_1|| / ||delta_head|| = {delta_ratio:.0f} (1.2^30 = {1.2**30:.0f})")

# %% [markdown]
# - Forwards and backwards, the measured factor per layer is $s$ to within 1 %, as the variance argument says.
#   At `init_scale = 1.2` the backpropagated signal reaching the first layer is 280 times the error the loss
#   hands to the head (30 Jacobians: $1.2^{30} \approx 240$).
# - The kernel gradients are **not** ordered like that: within each network the largest and the smallest
#   layer differ by less than a factor 3.5, while $\delta_l$ spans a factor $s^{30}$. The answer to question 2
#   of "Predict first" is: about the same.
# - What explodes is their common level: from $3\cdot10^{-4}$ .. $9\cdot10^{-4}$ at `init_scale = 0.8` to
#   $4\cdot10^{2}$ .. $1.4\cdot10^{3}$ at `init_scale = 1.2`. That is the explosion that breaks training below.

# %% jupyter={"source_hidden": true}
# Checks the numbers above: factors per layer within 1 % of init_scale, kernel-gradient levels and spreads.
for s in scales:
    fwd, bwd, spread = fits[s]
    assert abs(fwd / s - 1) < 0.01 and abs(bwd / s - 1) < 0.01, (
        f"init_scale {s}: factors {fwd:.3f}, {bwd:.3f}, not within 1 %"
    )
    assert spread < 3.5, (
        f"init_scale {s}: kernel gradients should differ by less than x3.5 across layers, got x{spread:.2f}"
    )
assert 260 < delta_ratio < 300, f"||delta_1|| / ||delta_head|| at 1.2 should be about 280, got {delta_ratio:.0f}"
k08, k12 = profiles[0.8]["kernel"], profiles[1.2]["kernel"]
assert 2.5e-4 < k08.min() and k08.max() < 1e-3, f"init_scale 0.8: kernel gradients {k08.min():.2g} .. {k08.max():.2g}"
assert 3.5e2 < k12.min() and k12.max() < 1.5e3, f"init_scale 1.2: kernel gradients {k12.min():.2g} .. {k12.max():.2g}"

# %% [markdown]
# **The five rows are one measurement, not five.** Every network in the table is the same random draw: the
# `init_scale = 1` network with each kernel multiplied by $s$. ReLU is positively homogeneous, so the forward
# profile at $s$ is *exactly* $s^l$ times the one at 1, and its fitted factor is exactly $s$ times one and the
# same number; the backward profile differs from row to row only through the softmax error. Five rows that agree
# tell us nothing about how far another random network would be off. For that, draw five independent networks
# (seeds 0 to 4) and fit each at `init_scale = 1`:

# %%
draw_fits = []
for net in ModelConfig(depth=DEPTH, width=WIDTH).build_seeds(SEEDS, data.image_shape, data.num_classes):
    Ws_n = net.kernels()
    rms_n = [float(jnp.sqrt(jnp.mean(h**2))) for h in forward(Ws_n, x)[1]]
    delta_n = [float(jnp.linalg.norm(d)) for d in backprop_jit(Ws_n, x, y)[0]]
    fwd_n = np.exp(np.polyfit(layers[:-1], np.log(rms_n), 1)[0])
    draw_fits.append((fwd_n, np.exp(-np.polyfit(layers, np.log(delta_n), 1)[0])))
draw_fits = np.array(draw_fits)  # (networks, 2): forward, backward factor per layer
print(
    f"init_scale 1, {len(SEEDS)} independent networks: forward factor per layer "
    f"{draw_fits[:, 0].min():.3f} .. {draw_fits[:, 0].max():.3f}, "
    f"backward {draw_fits[:, 1].min():.3f} .. {draw_fits[:, 1].max():.3f}"
)

# %% [markdown]
# Backwards, every network is within about 1 % of $s$ (0.989 to 1.002). Forwards, the networks scatter more,
# from 0.965 to 1.004: the network above happened to sit close to the average. A single network of finite width
# drifts randomly away from the variance argument, which describes the average over random weights; notebook 02
# measures that drift. Over 30 layers, a 4 % spread per layer compounds to a factor 3 in the last layer's RMS:
# small next to the factors $s^{30}$ the argument is about ($0.8^{30} \approx 10^{-3}$, $1.2^{30} \approx 240$).

# %% jupyter={"source_hidden": true}
# Checks the ranges quoted above, over the five independent networks.
fwd_lo, fwd_hi = draw_fits[:, 0].min(), draw_fits[:, 0].max()
bwd_lo, bwd_hi = draw_fits[:, 1].min(), draw_fits[:, 1].max()
assert 0.96 < fwd_lo < 0.97 and 1.0 < fwd_hi < 1.01, (
    f"forward factors should span 0.965 .. 1.004, got {fwd_lo:.3f} .. {fwd_hi:.3f}"
)
assert 0.985 < bwd_lo and bwd_hi < 1.01, (
    f"backward factors should lie within about 1 % of 1, got {bwd_lo:.3f} .. {bwd_hi:.3f}"
)
compounded = (fwd_hi / fwd_lo) ** DEPTH
assert 2.5 < compounded < 3.5, f"30 layers should turn the forward spread into about x3, got x{compounded:.1f}"

# %% [markdown]
# Finite width shows up too: ReLU units that output 0 for all 256 digits ("dead" for this batch). Their fraction grows
# with depth, from 3 % in layer 1 to 40 % in layer 30, and it is the same for every `init_scale`, because scaling the
# weights by $s>0$ never changes a sign. The variance argument survives it (it averages over random weights, not over
# the batch), but dead units are a sign that deep layers see the 256 digits as more and more alike.

# %%
dead = {
    s: activation_stats(ModelConfig(depth=DEPTH, width=WIDTH, init_scale=s).build(data.image_shape), x).dead_fraction
    for s in (0.8, 1.2)
}
print(
    f"dead fraction at layers 1, 10, 20, 30: {np.round(dead[0.8][[0, 9, 19, 29]], 2)}\n"
    f"the same at init_scale 0.8 and 1.2: {np.array_equal(dead[0.8], dead[1.2])}"
)

# %% jupyter={"source_hidden": true}
# Checks the dead fractions quoted above, and that scaling the weights leaves them unchanged.
assert np.array_equal(dead[0.8], dead[1.2]), "scaling every kernel by s > 0 should not change which units are dead"
assert dead[0.8][0] < 0.05 and 0.35 < dead[0.8][-1] < 0.45, (
    f"dead fraction should grow from about 3 % to about 40 %, got {dead[0.8][0]:.0%} and {dead[0.8][-1]:.0%}"
)

# %% [markdown]
# ## Theory next to measurement: the first layer's gradient vs `init_scale` and depth
#
# The exact version of the argument predicts $\|\partial\mathcal{L}/\partial W_1\| \propto s^L$, up to the
# bounded change of the softmax error. Below, the measured first-layer kernel gradient for depths 10 to 40
# and `init_scale` from 0.7 to 1.3 (same seeds: each network is the $s=1$ network times $s$), with the
# prediction $s^L \times$ (the value at $s = 1$) dashed.

# %%
depths = [10, 20, 30, 40]
sweep = np.array([0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3])
first = {}
for depth in depths:
    Ws_d = ModelConfig(depth=depth, width=WIDTH, init_scale=1.0).build(data.image_shape, data.num_classes).kernels()
    first[depth] = np.array([float(jnp.linalg.norm(backprop_jit([s * W for W in Ws_d], x, y)[1][0])) for s in sweep])

fig, (ax_s, ax_d) = plt.subplots(1, 2, figsize=(11, 4), dpi=90, layout="constrained")
fine = np.linspace(0.68, 1.32, 100)
at_1 = {d: first[d][sweep == 1.0][0] for d in depths}  # each depth's value at init_scale 1
growth_by_depth = {
    s: np.array([first[d][np.isclose(sweep, s)][0] / at_1[d] for d in depths]) for s in (0.8, 0.9, 1.1, 1.2)
}
plot_theory_vs_measurement(  # theory lines named "_...": drawn in their series' colour, one legend entry below
    {f"depth {d}": (sweep, first[d]) for d in depths},
    {f"_theory {d}": (fine, at_1[d] * fine**d) for d in depths},
    ax=ax_s,
    xlabel="init_scale",
    ylabel="||dL/dW_1|| (log scale)",
    title="first-layer kernel gradient vs init_scale",
)
plot_theory_vs_measurement(
    {f"init_scale={s}": (np.array(depths), g) for s, g in growth_by_depth.items()},
    {f"_theory {s}": (np.array(depths), s ** np.array(depths)) for s in growth_by_depth},
    ax=ax_d,
    xlabel="depth (hidden layers)",
    ylabel="||dL/dW_1|| / value at init_scale=1 (log scale)",
    title="growth with depth, relative to init_scale = 1",
)
for ax, theory in ((ax_s, "(value at init_scale 1) x init_scale^depth"), (ax_d, "init_scale^depth")):
    ax.plot([], [], "--", color="grey", label=f"theory: {theory}")
    ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The prediction spans almost twelve decades and the points follow it, off the dashed line by a factor between 1/4
# and 4. That factor is the softmax error, and it stops changing once the logits are far from 1: for depths 20
# to 40, on each side of $s = 1$ separately, the measured slope
# $d\log\|\partial\mathcal{L}/\partial W_1\|/d\log s$ equals the depth to within 1 %. (At depth 10 the logits
# at $s = 1.1$ are only $1.1^{11}\approx 2.9$ times those at $s = 1$, the softmax is still changing, and the
# slope above 1 is 12 instead of 10.) So the answer to question 1 of "Predict first": about $1.2^{30}\approx 240$
# from the weights, times the softmax factor; measured, about 570.

# %%
lines, fit = [], {}
for depth in depths:
    g = first[depth]
    ratio = g / (g[sweep == 1.0][0] * sweep**depth)
    below = np.polyfit(np.log(sweep[sweep < 1]), np.log(g[sweep < 1]), 1)[0]
    above = np.polyfit(np.log(sweep[sweep > 1]), np.log(g[sweep > 1]), 1)[0]
    fit[depth] = (ratio.min(), ratio.max(), below, above)
    lines.append(
        f"depth {depth}: measured / theory from {ratio.min():.2f} to {ratio.max():.2f}; "
        f"slope {below:.2f} for init_scale < 1, {above:.2f} for init_scale > 1"
    )
decades = np.log10(max(g.max() for g in first.values()) / min(g.min() for g in first.values()))
growth_30 = first[30][np.isclose(sweep, 1.2)][0] / first[30][sweep == 1.0][0]
lines.append(f"measured values span {decades:.1f} decades")
lines.append(f"depth 30, init_scale 1.0 -> 1.2: first-layer gradient x {growth_30:.0f} (1.2^30 = {1.2**30:.0f})")
print("\n".join(lines))

# %% jupyter={"source_hidden": true}
# Checks the numbers quoted above: within x4 of theory, slopes equal to the depth, the span and the x570.
for depth, (low, high, below, above) in fit.items():
    assert 0.25 < low and high < 4, (
        f"depth {depth}: measured / theory should stay within 1/4 .. 4, got {low:.2f} .. {high:.2f}"
    )
    want = (1.0, 1.0, 0.01) if depth >= 20 else (1.0, 1.2, 0.03)  # slope / depth below and above 1, tolerance
    assert abs(below / depth - want[0]) < want[2] and abs(above / depth - want[1]) < want[2], (
        f"depth {depth}: slopes {below:.2f} and {above:.2f}, expected {want[0] * depth:.0f} and {want[1] * depth:.0f}"
    )
assert 11 < decades < 12, f"the measured values should span almost twelve decades, got {decades:.1f}"
assert 520 < growth_30 < 620, (
    f"depth 30, 1.0 -> 1.2 should multiply the first-layer gradient by about 570, got {growth_30:.0f}"
)

# %% [markdown]
# The same network at `init_scale = 1.2` as histograms, the picture Karpathy and the UvA tutorials draw: the
# distribution of every value of a few layers' outputs and kernel gradients, on a log axis. Multiplying by 1.2
# per layer moves a layer's histogram right by $\log_{10} 1.2 \approx 0.079$, so six layers apart the curves
# sit 0.48 apart, evenly spaced. The kernel gradients, as in the profile above, stay at one height.

# %%
values_12 = activations_and_grads(ModelConfig(depth=DEPTH, width=WIDTH, init_scale=1.2).build(data.image_shape), x, y)
plot_layer_histograms(values_12, f"ReLU MLP, depth {DEPTH}, init_scale 1.2, at initialisation, 256 digits")

# %% tags=["nbval-ignore-output"]
medians = np.array([np.median(np.log10(a[a > 0])) for a in values_12.activations])
shift = np.polyfit(np.arange(DEPTH), medians, 1)[0]
print(f"median log10|h_l| moves by {shift:.4f} per layer (log10 1.2 = {np.log10(1.2):.4f})")

# %% jupyter={"source_hidden": true}
# Check: the histograms move by log10(1.2) per layer, within 3 %.
assert abs(shift / np.log10(1.2) - 1) < 0.03, f"expected {np.log10(1.2):.4f} per layer, measured {shift:.4f}"

# %% [markdown]
# ## Before any training: the loss at step 0
#
# One check costs nothing and catches a bad initialisation before a single step (Karpathy's first check in
# makemore part 3). A network that knows nothing should spread its bets evenly over the 10 classes, probability
# 1/10 each, for a cross-entropy of $-\ln\tfrac1{10} = \ln 10 \approx 2.30$. A loss far above that means large
# initial logits: the network is confidently wrong before it has learned anything. The loss at initialisation on
# our 256 digits, for each `init_scale` above, on 5 seeds:

# %% tags=["nbval-ignore-output"]
init_loss = {}
for s in scales:
    nets = ModelConfig(depth=DEPTH, width=WIDTH, init_scale=s).build_seeds(SEEDS, data.image_shape)
    init_loss[s] = np.array([optax.softmax_cross_entropy_with_integer_labels(net(x), y).mean() for net in nets])
print(f"ln 10 = {np.log(10):.3f}")
print("\n".join(f"init_scale {s}: loss at step 0 from {v.min():.4g} to {v.max():.4g}" for s, v in init_loss.items()))

# %% [markdown]
# Below 1 the loss is $\ln 10$ to the second decimal on every seed: the logits have shrunk by $s^{31}$ to almost
# nothing (and so have the gradients). At 1.0 it is a little above (2.3 to 2.7): the logits are of order 1. At
# 1.1, only 10 % above He's scale, it is already 8 to 31, and at 1.2 it is in the hundreds: the logits are
# $1.1^{31} \approx 19$ and $1.2^{31} \approx 280$ times those at 1.0. Such a run has to undo its
# initialisation before it can learn anything, and at 1.2 it does not get that far.

# %% jupyter={"source_hidden": true}
# Check: the initial loss against ln 10, on every seed.
for s, (low, high) in {0.8: (2.29, 2.32), 0.9: (2.29, 2.32), 1.0: (2.3, 2.7), 1.1: (7, 35), 1.2: (100, 500)}.items():
    assert low < init_loss[s].min() and init_loss[s].max() < high, (
        f"init_scale {s}: the loss at step 0 should lie between {low} and {high} on every seed; got {init_loss[s]}"
    )

# %% [markdown]
# ## Training: the loss becomes NaN within a few steps
#
# Plain SGD (`lr = 0.01`, batches of 64) on the 30-layer network with `init_scale = 1.2`, with the live
# dashboard as `on_chunk`. One run is one sample, so `train_seeds` trains five: seeds 0 to 4, each with its own
# initial weights and its own order of batches; the dashboard draws their mean and their range. `train` never
# raises: it stops at the first step whose loss, gradient or new parameters are not finite, records where, and
# keeps the parameters from before that step.

# %% tags=["nbval-ignore-output"]
config = TrainConfig(lr=0.01, steps=300)
explode = ModelConfig(depth=DEPTH, width=WIDTH, init_scale=1.2)
dash = Dashboard(f"{DEPTH} ReLU layers, init_scale 1.2")
runs_explode = train_seeds(explode, data, config, seeds=SEEDS, on_chunk=dash.update)
fig = dash.finish(runs_explode)

# %% tags=["nbval-ignore-output"]
# Each seed's first steps; then its model, which kept the parameters from before the diverging step, run
# forward on our 256 digits.
first_inf, growth = {}, {}
lines = [runs_explode.summary()]
for seed, h, net in zip(SEEDS, runs_explode.histories, runs_explode.models, strict=True):
    peak = [float(jnp.max(jnp.abs(v))) for v in net.hidden(x)]
    first_inf[seed] = next(i for i, v in enumerate(peak) if not np.isfinite(v))
    growth[seed] = [b / a for a, b in zip(peak[: first_inf[seed] - 1], peak[1 : first_inf[seed]], strict=True)]
    lines.append(
        f"seed {seed}: step 0 loss {h.loss[0]:.3g}, gradient norm {h.grad_norm[0]:.2g}, largest ||update||/||W|| "
        f"{np.max(h.update_ratio[0]):.2g}; step 1 loss {h.loss[1]:.2g}, "
        f"||update||/||W|| {np.max(h.update_ratio[1]):.1g}; "
        f"step {h.diverged_at}: {h.diverged_reason} not finite, began in {h.diverged_layer}\n"
        f"        largest |h_l| on our digits, layers 1..{first_inf[seed] + 1}: "
        + " ".join(f"{v:.2g}" for v in peak[: first_inf[seed] + 1])
    )
print("\n".join(lines))

# %% [markdown]
# What happened, step by step. Every seed ends the same way; the numbers are ranges over the five seeds, and the
# table above lists each one:
#
# - Step 0: the loss is already in the hundreds (120 to 460: each seed's logits are exactly $1.2^{31}$ times those
#   of the He network drawn with the same seed) and the gradient norm in the thousands. With `lr = 0.01` the
#   update is 0.9 to 2.6 times as large as the weights it changes (`||update||/||W||`; about $10^{-3}$ is the
#   usual healthy value).
# - Step 1: the loss is between $10^{8}$ and $10^{16}$, and the update $10^{5}$ times the weights or more.
# - Step 2: the forward pass overflows float32 (largest value $3.4\cdot10^{38}$) on every seed: the activations
#   grow by a factor between $10^{4}$ and $10^{12}$ per layer and reach `inf` in one of layers 4 to 8 (`dense3`
#   to `dense7`; the helpers count layers from 0). For each seed that is the layer `train` reports: for a
#   non-finite loss, the first layer whose output is not finite.

# %% jupyter={"source_hidden": true}
# Checks, on every seed: NaN at step 2 from a forward overflow, in the layer train names, and the ranges above.
hs_explode = runs_explode.histories
ends = [(h.diverged_at, h.diverged_reason) for h in hs_explode]
assert ends == [(2, "loss")] * len(SEEDS), f"every seed should diverge at step 2 with a non-finite loss, got {ends}"
overflow = [net.layer_names()[first_inf[s]] for s, net in zip(SEEDS, runs_explode.models, strict=True)]
blamed = [h.diverged_layer for h in hs_explode]
assert blamed == overflow, f"train should name the first layer that overflows, {overflow}; it named {blamed}"
quoted = {  # what the text says, over the five seeds: (measured values, lowest allowed, highest allowed)
    "step-0 loss": ([h.loss[0] for h in hs_explode], 100, 500),
    "step-0 largest ||update||/||W||": ([np.max(h.update_ratio[0]) for h in hs_explode], 0.8, 3),
    "step-1 loss": ([h.loss[1] for h in hs_explode], 5e7, 5e16),
    "step-1 largest ||update||/||W||": ([np.max(h.update_ratio[1]) for h in hs_explode], 1e5, np.inf),
    "growth of the largest |h_l| per layer": (np.concatenate(list(growth.values())), 1e4, 1e13),
    "first layer to overflow (dense index)": (list(first_inf.values()), 3, 7),
}
for what, (values, low, high) in quoted.items():
    assert low <= np.min(values) and np.max(values) <= high, (
        f"{what}: expected {low:g} .. {high:g}, measured {np.min(values):.2g} .. {np.max(values):.2g}"
    )

# %% [markdown]
# ## Contrast: `init_scale` at and below 1, and tanh
#
# Same data, same SGD, five seeds each: He's value (1.0), weights 20 % too small (0.8, vanishing gradients), and
# tanh instead of ReLU with the same too-large weights (1.2). For tanh, 1 is not the critical value: with He's
# variance $2s^2/\text{fan\_in}$, the factor per layer near 0 (where $\tanh' = 1$) is $\sqrt2\,s$, which is 1 at
# $s = 1/\sqrt2 \approx 0.71$ (notebook 02 derives it). So a fourth recipe trains tanh at that critical value.

# %%
runs = {}
for name, cfg in [
    ("relu, init_scale 1.0", ModelConfig(depth=DEPTH, width=WIDTH, init_scale=1.0)),
    ("relu, init_scale 0.8", ModelConfig(depth=DEPTH, width=WIDTH, init_scale=0.8)),
    ("tanh, init_scale 1.2", ModelConfig(depth=DEPTH, width=WIDTH, init_scale=1.2, activation="tanh")),
    ("tanh, init_scale 0.71", ModelConfig(depth=DEPTH, width=WIDTH, init_scale=1 / np.sqrt(2), activation="tanh")),
]:
    runs[name] = train_seeds(cfg, data, config, seeds=SEEDS)
# The exploding recipe is left out: its loss of 1e12 would squash the others (it is in the dashboard above).
compare_histories(runs, title=f"{DEPTH} hidden layers, SGD lr {config.lr}, 300 steps, {len(SEEDS)} seeds per recipe")

# %% tags=["nbval-ignore-output"]
late = {name: r.stacked("loss")[:, -50:].mean(axis=1) for name, r in runs.items()}  # each seed: last 50 steps
start = {name: r.stacked("loss")[:, 0] for name, r in runs.items()}  # each seed: at step 0, the initial weights
start_grad = {name: r.stacked("grad_norm")[:, 0] for name, r in runs.items()}
peak_grad = {name: np.nanmax(r.stacked("grad_norm"), axis=1) for name, r in runs.items()}  # each seed's largest
lines = [
    "recipe                  diverged   step 0: loss     gradient norm   largest gradient norm   "
    "loss, mean of the last 50 steps, per seed"
]
for name, r in runs.items():
    lines.append(
        f"{name:22s}  {len(r.diverged)} of {len(SEEDS)}     {start[name].min():.2f} .. {start[name].max():.2f}   "
        f"{start_grad[name].min():5.2g} .. {start_grad[name].max():<5.2g}   "
        f"{peak_grad[name].min():8.3g} .. {peak_grad[name].max():<8.3g}   " + " ".join(f"{v:.3f}" for v in late[name])
    )
print("\n".join(lines))

# %% [markdown]
# The last columns are each seed's mean loss over its last 50 steps: one batch's loss is too noisy to rank runs by.
#
# - **1.0** trains on every seed, slowly and unevenly: from 2.3 to 2.8 at step 0 down to between about 0.5 and 1,
#   depending on the seed. That is slow for a network this deep, but it is training.
# - **0.8** never leaves $\ln 10 \approx 2.30$ (within 0.05, at every step of every seed), the loss of a uniform
#   guess. In the network profiled above every kernel gradient starts below $10^{-3}$ at 0.8, against 0.76 to 2.2
#   at 1.0 ($0.8^{30}\approx 10^{-3}$), so SGD hardly moves. These are vanishing gradients, the same product of
#   Jacobians shrinking instead of growing.
# - **tanh at 1.2** does not blow up, and it trains best of the four: its worst seed ends below the best seed of
#   ReLU at 1.0 (about 0.1, against 0.5 to 1). The reason is where 1.2 sits for tanh: 1.7 times its critical value
#   0.71, in the phase where gradients grow with depth. So its gradients are larger: at step 0 the gradient norm
#   is 44 to 50, against 1 to 2 for tanh at its critical value and 3 to 12 for ReLU at 1.0. Plain SGD steps by
#   `lr` times the gradient, so a larger gradient acts like a larger learning rate, and at this small `lr` that
#   helps: the critical tanh network trains too, but more slowly, on every seed (about 0.4 to 0.55). Being
#   critical keeps the signal alive through depth; it does not promise the fastest training at a fixed `lr`. tanh
#   is bounded, so its forward pass cannot overflow, but its gradients still grow with depth, only more slowly
#   (next cell).

# %% jupyter={"source_hidden": true}
# Checks the bullets above on every seed: who trains, the ordering, and the gradients at step 0.
relu1, relu08, tanh12, tanh_crit = runs  # the four recipes, in the order they were trained
assert not any(r.diverged for r in runs.values()), f"no recipe should diverge: {[r.diverged for r in runs.values()]}"
for slower in (relu1, tanh_crit):
    assert late[tanh12].max() < late[slower].min(), (
        f"tanh 1.2's worst seed should beat {slower}'s best: {late[tanh12].max():.3f} vs {late[slower].min():.3f}"
    )
quoted = {  # what the text says: (measured values, lowest allowed, highest allowed)
    "relu 1.0, loss at step 0": (start[relu1], 2.3, 2.8),
    "relu 1.0, loss at the end": (late[relu1], 0.3, 1.5),
    "relu 0.8, distance from ln 10 at any step": (np.abs(runs[relu08].stacked("loss") - np.log(10)), 0, 0.05),
    "init_scale 0.8, kernel gradients of the profiled network": (profiles[0.8]["kernel"], 0, 1e-3),
    "init_scale 1.0, kernel gradients of the profiled network": (profiles[1.0]["kernel"], 0.7, 2.3),
    "tanh 1.2, loss at the end": (late[tanh12], 0, 0.3),
    "tanh 1.2, loss at the end, mean over seeds": (late[tanh12].mean(), 0.04, 0.2),
    "critical tanh, loss at the end": (late[tanh_crit], 0.3, 0.7),
    "tanh 1.2, gradient norm at step 0": (start_grad[tanh12], 40, 55),
    "critical tanh, gradient norm at step 0": (start_grad[tanh_crit], 1, 2),
    "relu 1.0, gradient norm at step 0": (start_grad[relu1], 2.5, 13),
}
for what, (values, low, high) in quoted.items():
    assert low <= np.min(values) and np.max(values) <= high, (
        f"{what}: expected {low:g} .. {high:g}, measured {np.min(values):.3g} .. {np.max(values):.3g}"
    )

# %% [markdown]
# Why tanh's gradients grow more slowly: in the backward recursion, $\tfrac12 = \mathbb{E}[\mathrm{relu}'^2]$
# becomes $\mathbb{E}[\tanh'(z)^2]$, which shrinks as the weights grow (more units saturate, where
# $\tanh' \approx 0$). Mean-field theory (Poole et al. 2016; Schoenholz et al. 2017) gives the factor per
# layer $\sqrt{\chi}$ with $\chi = \sigma_w^2\,\mathbb{E}[\tanh'(\sqrt{q^*}\,\xi)^2]$, $\xi\sim N(0,1)$,
# $\sigma_w^2 = 2s^2$, and $q^*$ the fixed point of $q = \sigma_w^2\,\mathbb{E}[\tanh(\sqrt q\,\xi)^2]$.
# The "probe" trick below measures $\delta_l$ for any activation: add a zero to every $z_l$ and differentiate
# with respect to it.


# %%
def deltas_by_probe(Ws, x, y, act):
    """dL/dz_l for every layer via jax.grad: z_l + probe_l, derivative at probe_l = 0."""

    def loss_of_probes(probes):
        h = x
        for W, p in zip(Ws[:-1], probes[:-1], strict=True):
            h = act(h @ W + p)
        return optax.softmax_cross_entropy_with_integer_labels(h @ Ws[-1] + probes[-1], y).mean()

    return jax.grad(loss_of_probes)([jnp.zeros((x.shape[0], W.shape[1])) for W in Ws])


def tanh_factor(init_scale, n=200_001):
    """sqrt(chi) from the mean-field recursion, Gaussian expectations on a fine grid."""
    xi = np.linspace(-8, 8, n)
    w = np.exp(-(xi**2) / 2) / np.sqrt(2 * np.pi) * (xi[1] - xi[0])
    sw2, q = 2 * init_scale**2, 1.0
    for _ in range(100):
        q = sw2 * np.sum(w * np.tanh(np.sqrt(q) * xi) ** 2)
    return float(np.sqrt(sw2 * np.sum(w * (1 - np.tanh(np.sqrt(q) * xi) ** 2) ** 2)))


probe_jit = jax.jit(deltas_by_probe, static_argnums=3)
measured, theory, tanh_fit = {}, {}, {}
for act_name, act in [("relu", jax.nn.relu), ("tanh", jnp.tanh)]:
    d = np.array([float(jnp.linalg.norm(v)) for v in probe_jit([1.2 * W for W in Ws], x, y, act)])
    factor = 1.2 if act_name == "relu" else tanh_factor(1.2)
    tanh_fit[act_name] = (np.exp(-np.polyfit(layers[10:], np.log(d[10:]), 1)[0]), factor)
    measured[f"{act_name}: measured"] = (layers, d)
    theory[f"{act_name}: theory, x{factor:.3f} per layer"] = (layers, d[-1] * factor ** (DEPTH + 1 - layers))
print("\n".join(f"{a}: measured factor per layer {m:.3f}, theory {t:.3f}" for a, (m, t) in tanh_fit.items()))
plot_theory_vs_measurement(
    measured,
    theory,
    title="backpropagated signal at init_scale 1.2: ReLU vs tanh",
    xlabel=f"{LAYER_AXIS}; {DEPTH + 1} = head",
    ylabel="||delta_l|| (log scale)",
).figure

# %% [markdown]
# The measured factor per layer for tanh is about 1.10 (the fit skips the first 10 layers, where $q$ has not
# yet settled at $q^*$), as the mean-field theory predicts, against 1.2 for ReLU: over 30 layers that is
# $1.1^{30}\approx 17$ instead of $\approx 240$. tanh's gradients do explode for large enough
# `init_scale` (above tanh's critical scale, in what Poole et al. call the "chaotic phase", where two nearby
# inputs drift apart with depth; notebook 02), just more gently, and its loss cannot overflow.

# %% jupyter={"source_hidden": true}
# Checks: the measured factors per layer match the theory within 2 %, and tanh's is about 1.10.
for act_name, (measured, theory) in tanh_fit.items():
    assert abs(measured / theory - 1) < 0.02, f"{act_name}: measured factor {measured:.3f}, theory {theory:.3f}"
assert abs(tanh_fit["tanh"][0] - 1.10) < 0.01, (
    f"tanh's factor per layer should be about 1.10, got {tanh_fit['tanh'][0]:.3f}"
)

# %% [markdown]
# ## Explore
#
# The panel trains the 30-layer network with the four knobs of this notebook, and a `seed`, for 200 steps (so
# that a move retrains in about a second; `steps` goes further); it starts at the exploding setting. Things to try: lower `init_scale` to 1.0 (trains) and 0.8 (stuck at 2.30); at `init_scale`
# 1.1, raise `lr` until the run diverges; set `depth` to 10 and find how large `init_scale` can get before it
# diverges; switch `activation` to tanh and look for the `init_scale` at which it trains fastest. The panel
# trains one seed at a time: move `seed` to see how much two runs of one setting differ before you trust a
# difference between two settings. Moving `init_scale`, `lr` or `seed` reuses the compiled step (instant); a
# new `depth` or `activation` compiles once (a few seconds).

# %% tags=["nbval-ignore-output"]
explore = panel(
    data,
    model=ModelConfig(depth=DEPTH, width=WIDTH, init_scale=1.2),
    config=TrainConfig(lr=0.01, steps=200),
    controls=["depth", "init_scale", "activation", "lr", "seed", "steps"],
    title="exploding gradients: a deep MLP on digits, plain SGD",
)
explore

# %% [markdown]
# ## Claim vs measurement
#
# > "If the result of the gradient computation exceeds the model's input range, gradient explosion occurs."
#
# Nothing in backprop compares a gradient with the range of the inputs. Two measurements:

# %%
factor_01 = np.exp(-np.polyfit(layers, np.log([float(jnp.linalg.norm(d)) for d in backprop_jit(Ws_12, x, y)[0]]), 1)[0])
factor_255 = np.exp(
    -np.polyfit(layers, np.log([float(jnp.linalg.norm(d)) for d in backprop_jit(Ws_12, 255 * x, y)[0]]), 1)[0]
)
print(
    f"init_scale 1.0 (trains): kernel gradients at step 0 from {profiles[1.0]['kernel'].min():.2f} "
    f"to {profiles[1.0]['kernel'].max():.2f}\n"
    f"init_scale 1.2: backward factor per layer {factor_01:.3f} with inputs in [0, 1], "
    f"{factor_255:.3f} with inputs in [0, 255]"
)

# %% [markdown]
# - The network that trains has gradients far outside its inputs' range $[0, 1]$ (kernel gradients up to 2.2 at
#   step 0; global norms that peak between 30 and 45 during training, on the five seeds of the table above), and
#   nothing goes wrong.
# - Stretching the input range from $[0, 1]$ to $[0, 255]$ leaves the growth factor per layer at 1.2. What
#   multiplies is the chain of Jacobians $W_l^\top D_l$, each of which scales the backpropagated signal by about
#   `init_scale` (for ReLU with He's variance); the gradient explodes when that factor is above 1 and the chain is
#   long. Input scale matters elsewhere (it scales the logits and the first layer's gradient), but it is not the
#   mechanism.

# %% jupyter={"source_hidden": true}
# Checks the two measurements: large gradients in a run that trains, and a growth factor that ignores input range.
peak_ok = peak_grad["relu, init_scale 1.0"]
assert 2.1 < profiles[1.0]["kernel"].max() < 2.3, (
    f"largest kernel gradient at 1.0 should be 2.2, got {profiles[1.0]['kernel'].max():.2f}"
)
assert 20 < peak_ok.min() and peak_ok.max() < 70, f"relu 1.0's peak gradient norms should be in the tens, got {peak_ok}"
assert abs(factor_01 / factor_255 - 1) < 0.02, (
    f"input range should not change the factor: {factor_01:.3f} vs {factor_255:.3f}"
)

# %% [markdown]
# ## Exercises
#
# **1.** A ReLU MLP with 20 hidden layers, He initialisation. According to the variance argument (ignore the
# change of the softmax error), which `init_scale` makes the first layer's weight gradient 1000 times larger than
# at `init_scale = 1`?

# %%
answer = ...
ok = ex.check_scale_for_growth(answer)

# %% [markdown]
# **2.** Same network, `activation="linear"` (no activation at all), still `init="he"` with `init_scale = 1`.
# By what factor per layer does the norm of the backpropagated signal $\delta_l$ grow towards the input?
# Derive it from the variance argument, then measure it with `deltas_by_probe` if you like.

# %%
answer = ...
ok = ex.check_linear_factor(answer)

# %% [markdown]
# **3.** Adapt `backprop` to a tanh network: write `backprop_tanh(Ws, x, y)` that returns the kernel gradients
# $\partial\mathcal{L}/\partial W_l$ of `loss = cross-entropy(forward(Ws, x, act=jnp.tanh))`, ordered input ->
# output, without calling `jax.grad`. The checker compares it with `jax.grad` on a random network.


# %%
def backprop_tanh(Ws, x, y):
    """Your code: the kernel gradients dL/dW_l of the tanh network, ordered input -> output."""
    ...


ok = ex.check_backprop_tanh(backprop_tanh)

# %% [markdown]
# ## Takeaways
#
# - Backprop multiplies the output error by one Jacobian $W_l^\top D_l$ per layer. With
#   $\mathrm{Var}(W) = s^2\cdot 2/\text{fan\_in}$ and ReLU, each multiplies its norm by $s$: measured within about
#   1 % backwards and a few per cent forwards, on five random networks.
# - At initialisation every layer's *kernel* gradient has about the same size (the growing $\delta_l$ meets a
#   shrinking input $h_{l-1}$); the common size grows as $s^L$ with depth and `init_scale`. A 20 % excess at
#   depth 30 gives gradients hundreds of times larger, and SGD turns the loss into NaN at step 2, on every seed.
# - Below 1, the same product vanishes: the loss stays at $\ln 10$. He's $s = 1$ is the critical value for ReLU
#   (notebook 02 derives it and its siblings).
# - Bounded activations (tanh) keep the loss finite and slow the growth, but do not remove it. tanh's critical
#   `init_scale` under He's variance is $1/\sqrt2$; past it, its larger gradients act like a larger learning rate,
#   which at a small `lr` trains faster.
# - "The gradient exceeds the input range" is not what causes an explosion; a long product of factors above 1 is.
