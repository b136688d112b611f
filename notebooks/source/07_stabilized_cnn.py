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
# # 07 · The stabilized CNN
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/taming-gradients/taming-gradients/blob/main/notebooks/07_stabilized_cnn.ipynb)
#
# This notebook puts the fixes of notebooks 01-06 together on a convolutional network, first with 3
# convolutions, then with 16. Afterwards you can say why a bad initial scale is so dangerous in a CNN, build a
# training recipe that survives it, recognise a divergence that never produces a NaN, tell what residual
# connections do and do not fix in a deep CNN, train one whose residual blocks start as the identity, and
# write correctly a broken Keras example that circulates in a popular blog post.

# %%
# On Colab, install this course's helpers (elsewhere `make lab` has, and this line does nothing).
# !python -c "import google.colab" 2>/dev/null && pip install -q flax==0.12.12 optax==0.2.8 git+https://github.com/taming-gradients/taming-gradients

# %%
import math

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

from helpers import studies
from helpers.data import Dataset, load_digits, load_mnist
from helpers.diagnostics import activation_stats, activations_and_grads, layer_grad_norms
from helpers.exercises import cnn as ex
from helpers.models import ModelConfig
from helpers.plots import (
    compare_histories,
    plot_history,
    plot_layer_histograms,
    plot_seed_rows,
    plot_theory_vs_measurement,
)
from helpers.studies import ABLATION, DEPTHS, LRS, WARMUPS, check_deep_cnn, grid_label, recorded, separated_runs
from helpers.train import SEEDS, TrainConfig, evaluate, mean_range, train, train_seeds
from helpers.widgets import panel

plt.rcParams["figure.dpi"] = 90
data = load_digits(seed=0)
print(f"digits: {len(data.x_train)} train, {len(data.x_test)} test images of shape {data.image_shape}")

# %% [markdown]
# ## Predict first
#
# A recipe for a small CNN has five fixes: He initialisation, BatchNorm, gradient clipping, weight
# decay and learning-rate warmup. Take them all away (and initialise the weights 10x too large) and training
# fails. Before running anything, guess:
#
# 1. When the failing recipe diverges, does a check for NaN catch it?
# 2. At 16 convolution blocks, what do residual connections ($x + \mathrm{block}(x)$) do to the gradient at
#    initialisation: make it better balanced across layers, or worse somewhere?
# 3. At 16 blocks, with BatchNorm, clipping and weight decay but no warmup: does a network of plain blocks
#    train as well as one whose residual blocks start as the identity?
#
# Section 2 answers the first, section 4 the other two, each on five seeds.

# %% [markdown]
# ## 1 · By hand: why a bad initial scale is so dangerous in a CNN
#
# A plain JAX CNN: three 3x3 convolutions with ReLU, global average pooling, a linear head. Biases start at
# zero, and ReLU is positively homogeneous ($\mathrm{relu}(sx) = s\,\mathrm{relu}(x)$ for $s > 0$), so
# multiplying **every** kernel by $s$ multiplies the logits by exactly $s^4$ (four weight layers), and the
# gradient with respect to any one kernel by $s^3$ (the other three layers), times the derivative of the
# softmax cross-entropy at the new logits. That derivative, $p - y$, is bounded; once the logits are large
# it saturates ($p$ becomes one-hot), and from there on the gradient grows exactly like $s^3$.


# %%
def conv(x, w):
    """3x3 'SAME' convolution, NHWC images, HWIO kernel."""
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def tiny_cnn(params, x):
    for w in params["convs"]:
        x = jax.nn.relu(conv(x, w))
    return x.mean(axis=(1, 2)) @ params["head"]  # global average pool, then the head


rng = np.random.default_rng(0)


def he(shape, fan_in):
    return jnp.asarray(rng.normal(size=shape) * math.sqrt(2 / fan_in), jnp.float32)  # He et al. (2015)


params = {
    "convs": [he((3, 3, 1, 16), 9), he((3, 3, 16, 16), 144), he((3, 3, 16, 16), 144)],
    "head": he((16, 10), 16),
}
x_batch, y_batch = jnp.asarray(data.x_train[:128]), jnp.asarray(data.y_train[:128])


def loss_fn(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(tiny_cnn(params, x), y).mean()


grad_fn = jax.jit(jax.grad(loss_fn))
scaled = {s: jax.tree.map(lambda w, s=s: s * w, params) for s in (1.0, 10.0, 20.0)}
logits = {s: tiny_cnn(p, x_batch) for s, p in scaled.items()}
grad_norm = {s: float(optax.tree.norm(grad_fn(p, x_batch, y_batch))) for s, p in scaled.items()}
print(f"logits(s=10) / logits(s=1): {float(jnp.median(logits[10.0] / logits[1.0])):.1f}  (10^4 = 10000)")
print(f"||grad|| at s = 1, 10, 20: {grad_norm[1.0]:.3g}, {grad_norm[10.0]:.3g}, {grad_norm[20.0]:.3g}")
print(f"||grad(20)|| / ||grad(10)|| = {grad_norm[20.0] / grad_norm[10.0]:.2f}  (2^3 = 8: saturated softmax)")
print(f"||grad(10)|| / ||grad(1)||  = {grad_norm[10.0] / grad_norm[1.0]:.0f}  (10^3 = 1000 times the softmax factor)")

# %% [markdown]
# The logits scale by exactly $10^4$, and from $s = 10$ to $s = 20$ the gradient grows by 8.00 = $2^3$. From
# $s = 1$ to $s = 10$ it grows by 6083, more than $10^3$: at $s = 1$ the softmax is not saturated yet, and the
# batch's $p - y$ vectors partly cancel.

# %% jupyter={"source_hidden": true}
# Checks: the homogeneity factors (one forward and backward pass, exact up to rounding).
ratio_20_10, ratio_10_1 = grad_norm[20.0] / grad_norm[10.0], grad_norm[10.0] / grad_norm[1.0]
assert np.allclose(logits[10.0], 1e4 * logits[1.0], rtol=1e-3, atol=1e-3), "logits should scale by exactly 10^4"
assert abs(ratio_20_10 - 8) < 1e-3, f"saturated softmax: the gradient should grow by 2^3 = 8, got {ratio_20_10:.5f}"
assert abs(ratio_10_1 / 6083 - 1) < 1e-3, f"expected the gradient to grow by 6083 from s=1 to 10, got {ratio_10_1:.1f}"

# %% [markdown]
# The stabilizing part of the recipe is an Optax chain, each piece a few words long. `helpers.train` builds
# this same chain from a `TrainConfig` (with the hyperparameters injected, so sliders do not recompile):
# clip the gradient's global norm to 1 (Pascanu et al., 2013), momentum 0.9, decoupled weight decay
# (Loshchilov & Hutter, 2019), and a learning rate of 0.1 warmed up linearly over 50 steps (Goyal et al., 2017).
# Its first update on the 10x network, compared with plain SGD at the same learning rate:

# %%
lr, wd, warmup_steps = 0.1, 5e-4, 50
stabilizer = optax.chain(
    optax.clip_by_global_norm(1.0),
    optax.trace(decay=0.9),
    optax.add_decayed_weights(wd),
    optax.scale_by_schedule(lambda step: -lr * jnp.minimum(1.0, (step + 1) / warmup_steps)),
)
g10 = grad_fn(scaled[10.0], x_batch, y_batch)
update, _ = stabilizer.update(g10, stabilizer.init(scaled[10.0]), scaled[10.0])
size_stable = float(optax.tree.norm(update))
size_plain = lr * grad_norm[10.0]
weight_norm = float(optax.tree.norm(scaled[10.0]))
print(f"||weights|| = {weight_norm:.3g}")
print(f"first update, plain SGD:   {size_plain:.3g}")
print(f"first update, stabilized:  {size_stable:.3g}")

# %% [markdown]
# Plain SGD's first step (366) is 3.5 times the size of all the weights together (105): the network is
# thrown far from where it started. The stabilized step is 0.002 (clipped to norm 1, then 1/50 of the
# learning rate).

# %% jupyter={"source_hidden": true}
# Checks: the first steps' sizes (exact up to rounding: no training has happened yet).
expected_stable = lr / warmup_steps * math.sqrt(1 + (wd * weight_norm) ** 2)
assert abs(weight_norm / 105 - 1) < 0.005, f"||weights|| should be about 105, got {weight_norm:.2f}"
assert abs(size_plain / 366 - 1) < 0.005, f"plain SGD's first step should be about 366, got {size_plain:.2f}"
assert abs(size_plain / weight_norm - 3.47) < 0.01, f"step / weights should be 3.47, got {size_plain / weight_norm:.3f}"
assert abs(size_stable - expected_stable) < 1e-4, f"stabilized step {size_stable:.5f}, expected {expected_stable:.5f}"

# %% [markdown]
# **What weight decay can and cannot do here.** Decoupled decay multiplies the kernels by $(1 - \text{lr}\cdot
# \text{wd})$ at every step, whatever the gradient is. It adds its own small step; it does not make the
# gradient's step any smaller. How do the two compare on this first step, and over a whole run?

# %%
decay_step = lr * wd * weight_norm  # how far decay alone moves the weights in one step
print(f"first step of decay alone (lr * wd * ||W||): {decay_step:.2g}")
print(f"plain SGD's gradient step / decay's step:     {size_plain / decay_step:.3g}")
print(f"strongest possible decay, lr * wd = 1 (every weight set to 0): a step of {weight_norm:.3g}")
print(f"decay alone over 150 steps leaves at least {(1 - lr * wd) ** 150:.2%} of the kernels' norm")

# %% [markdown]
# The first decay step moves the weights by 0.0053, nearly 70,000 times less than plain SGD's gradient step.
# No decay strength can make up for it: the strongest one that makes sense, $\text{lr}\cdot\text{wd} = 1$,
# wipes out every weight at every step, and even that step (105) is less than a third of the gradient's (366).
# And over a 150-step run (the panel's, section 6), decay at this strength shrinks the kernels by less than 1% (to
# 99.25% at the very least), so in such a run it can barely act at all. What it does in a longer run depends
# on what follows the kernels:
#
# - **With BatchNorm after them** (the stabilized recipe), the loss does not depend on a kernel's scale
#   (notebook 06). Decay cannot regularize by shrinking; what it changes is the kernel's norm, and with it
#   the effective learning rate of the kernel's direction, about $\text{lr}/\|W\|^2$ (van Laarhoven, 2017).
#   There it is a learning-rate control.
# - **Without normalization**, it shrinks the weights by $(1 - \text{lr}\cdot\text{wd})$ per step and acts as
#   a regularizer against overfitting (notebook 05).
#
# In neither role is it a cure for exploding gradients. That is why it is no cure for the unstable recipe below.

# %% jupyter={"source_hidden": true}
# Checks: decay's step against the gradient's (closed forms on the numbers above).
assert abs(decay_step / 0.00525 - 1) < 0.01, f"decay's first step should be about 0.0053, got {decay_step:.5f}"
assert abs(size_plain / decay_step / 6.95e4 - 1) < 0.01, (
    f"expected a ratio of 69,500, got {size_plain / decay_step:.0f}"
)
assert weight_norm < size_plain / 3, f"even lr*wd = 1 ({weight_norm:.0f}) should be under a third of {size_plain:.0f}"
assert abs((1 - lr * wd) ** 150 - 0.9925) < 1e-4, "150 steps of decay at lr*wd = 5e-5 should leave 99.25%"

# %% [markdown]
# ## 2 · The unstable recipe: a divergence that never produces a NaN
#
# Now the helpers' CNN: three 3x3 convolution blocks of 32 channels, global average pooling, a linear head,
# on the 8x8 digits, trained by SGD with momentum 0.9 at `lr=0.1`, batches of 64. The stabilized recipe has
# all five fixes; the unstable one none of them:
#
# | | unstable | stabilized |
# |---|---|---|
# | initialisation | `init_scale=10` (plain $\mathcal N(0,1)$ weights would be 12 for a 3x3x32 convolution: $\sqrt{288/2}$) | He, `init_scale=1` |
# | BatchNorm | no | yes |
# | gradient clipping | no | `clip_norm=1` (global norm) |
# | weight decay | no | `weight_decay=5e-4` (decoupled) |
# | warmup | no | `warmup_steps=50` |
#
# Section 4 trains the stabilized recipe's network at 16 convolution blocks, on five seeds, with two changes that
# press it harder: `lr=0.2` and no warmup. The 3-block stabilized recipe itself is where the panel of section 6
# starts (one seed). Here the unstable recipe runs on five seeds (a seed sets the initial weights and the order of the batches) for 60 steps: all that happens to it
# happens in the first few.

# %%
stable_model = ModelConfig(kind="cnn", depth=3, width=32, batchnorm=True)
stable_train = TrainConfig(optimizer="momentum", lr=0.1, clip_norm=1.0, weight_decay=5e-4, warmup_steps=50, steps=150)
unstable_model = stable_model.replace(init_scale=10.0, batchnorm=False)
unstable_train = stable_train.replace(clip_norm=None, weight_decay=0.0, warmup_steps=0, steps=60)
print("stabilized:", stable_model, "|", stable_train)
print("unstable:  ", unstable_model, "|", unstable_train)
print(f"seeds: {SEEDS}; plain N(0, 1) weights = init_scale {math.sqrt(3 * 3 * 32 / 2):g} for a 3x3x32 convolution")

# %%
unstable = train_seeds(unstable_model, data, unstable_train)
unstable_acc = unstable.evaluate(data.x_test, data.y_test)
plot_history(unstable, "unstable recipe, 5 seeds")

# %% tags=["nbval-ignore-output"]
dead = np.array([activation_stats(m, data.x_train[:256]).dead_fraction for m in unstable.models])
print(f"test accuracy over seeds {SEEDS}: {mean_range(unstable_acc)}; {unstable.summary()}")
print("gradient norm at steps 0-2 (one row per seed):")
print(np.array2string(unstable.stacked("grad_norm")[:, :3], precision=2))
print("largest loss per seed:", np.array2string(np.nanmax(unstable.stacked("loss"), axis=1), precision=2))
print("fraction of dead units in conv0 per seed after training:", dead[:, 0])

# %% [markdown]
# The unstable recipe diverges on every seed, though **not to NaN**. On seed 0 the gradient norm goes
# 6.3e3 -> 1.0e6 -> 1.1e8 in three steps; on every seed the very first gradient, computed before any update, is
# already between 2.2e3 and 6.9e3, and the gradient norm and the loss both pass $10^6$. Then an update pushes
# every unit of the first convolution below zero for every input: on every seed the network ends dead. It
# outputs the same logits for every image, its training loss sits at $\ln 10 = 2.30$, the convolutions'
# gradients are exactly 0 for the whole second half of the run, and its test accuracy is that of always
# answering one class (at most 11.7%, the share of the most frequent digit in the test set). No number
# became non-finite on any seed, so `History.diverged_at` stays `None` and `SeedRuns.diverged` is empty: a NaN
# check alone would not catch this divergence. Watch the gradient norm and the loss.

# %% jupyter={"source_hidden": true}
# Checks: the unstable recipe explodes on every seed (the first steps: the same on any floating-point path).
first3, grads = unstable.stacked("grad_norm")[:, :3], unstable.stacked("grad_norm")
assert np.allclose(first3[0], [6.3e3, 1.0e6, 1.1e8], rtol=0.05), f"seed 0's first gradient norms: {first3[0]}"
assert abs(first3[:, 0].min() / 2198 - 1) < 1e-3 and abs(first3[:, 0].max() / 6944 - 1) < 1e-3, (
    f"the first gradients (before any update) should span 2198-6944, got {first3[:, 0]}"
)
assert np.all(np.nanmax(grads, 1) > 1e6), f"the gradient norm should pass 1e6 on every seed: {np.nanmax(grads, 1)}"
assert np.all(np.nanmax(unstable.stacked("loss"), 1) > 1e6), "the loss should pass 1e6 on every seed"

# %% jupyter={"source_hidden": true}
# Checks: the unstable network dies (conv0 off for every input, loss ln 10, chance accuracy) with finite numbers.
finite = [i for i, h in enumerate(unstable.histories) if h.diverged_at is None]
most_common = np.bincount(data.y_test).max() / len(data.y_test)  # the best a constant answer can score
half = unstable_train.steps // 2
assert abs(most_common - 0.117) < 5e-4, f"the most frequent test digit should make up 11.7%, got {most_common:.2%}"
assert len(finite) >= 3, f"most seeds should die with every number finite; non-finite: seeds {unstable.diverged}"
assert np.all(dead[finite, 0] == 1.0), f"conv0 should be entirely dead on every seed, got {dead[:, 0]}"
assert np.all(unstable.stacked("layer_grad_norms")[finite, half:, :3] == 0), "conv gradients: 0 in the 2nd half"
assert np.all(np.abs(unstable.final_loss[finite] - math.log(10)) < 0.05), f"final losses {unstable.final_loss}"
assert np.all(unstable_acc[finite] <= most_common), f"chance level is at most {most_common:.1%}, got {unstable_acc}"

# %% [markdown]
# ## 3 · Theory vs measurement: the initial gradient against `init_scale`
#
# Section 1's argument, on the helpers' CNN (3 convolutions + head, zero biases): without BatchNorm, the
# global norm of the kernels' gradient at initialisation should grow like $s^3$ once the softmax is
# saturated. With BatchNorm, each convolution is scale-invariant (notebook 06): its gradient is divided by
# $s$, while the head multiplies the backward signal by $s$; the two cancel, so the gradient should not
# depend on $s$ beyond the softmax's bounded factor.

# %%
scales = np.array([0.3, 1.0, 2.0, 5.0, 20.0])
x256, y256 = data.x_train[:256], data.y_train[:256]
measured = {}
for batchnorm in (False, True):
    nets = [stable_model.replace(batchnorm=batchnorm, init_scale=float(s)).build(data.image_shape) for s in scales]
    measured[batchnorm] = np.array([np.linalg.norm(layer_grad_norms(net, x256, y256)) for net in nets])
predicted = measured[False][-1] * (scales / scales[-1]) ** 3  # s^3 through the last (most saturated) point
slope = math.log(measured[False][-1] / measured[False][-2]) / math.log(scales[-1] / scales[-2])
print("init_scale:          ", " ".join(f"{s:8g}" for s in scales))
print("no BatchNorm ||grad||:", " ".join(f"{g:8.3g}" for g in measured[False]))
print("BatchNorm ||grad||:   ", " ".join(f"{g:8.3g}" for g in measured[True]))
print(f"slope from s=5 to 20 without BatchNorm: {slope:.2f} (theory 3)")

# %%
plot_theory_vs_measurement(
    {"measured, no BatchNorm": (scales, measured[False]), "measured, BatchNorm": (scales, measured[True])},
    {
        "theory, no BatchNorm: $\\propto s^3$ (saturated softmax)": (scales, predicted),
        "theory, BatchNorm: flat (up to the softmax factor)": (scales, np.full(len(scales), measured[True][1])),
    },
    xscale="log",
    xticks=scales,
    xlabel="init_scale (log scale)",
    ylabel="||dL/dW|| at initialisation (log scale)",
    title="CNN at initialisation: gradient norm vs init_scale",
).figure

# %% [markdown]
# Without BatchNorm the points follow the $s^3$ line from $s = 2$ on (within 1%; slope 3.00 between 5 and
# 20), and fall below it for $s \le 1$, where the softmax is far from saturated. From `init_scale` 0.3 to 20
# the gradient grows by a factor of 8.2e6 without BatchNorm and 4.9 with it.

# %% jupyter={"source_hidden": true}
# Checks: s^3 growth without BatchNorm, near independence with it (at initialisation: exact up to rounding).
spread = {bn: measured[bn][-1] / measured[bn][0] for bn in (False, True)}
assert abs(slope - 3) < 0.01, f"slope between s=5 and 20 should be 3, got {slope:.4f}"
assert np.allclose(measured[False][2:], predicted[2:], rtol=0.01), "from s=2 on the points should sit on s^3"
assert np.all(measured[False][:2] < predicted[:2]), "below s=2 the points should fall under the s^3 line"
assert abs(spread[False] / 8.2e6 - 1) < 0.01, f"growth without BatchNorm should be 8.2e6, got {spread[False]:.3g}"
assert abs(spread[True] / 4.9 - 1) < 0.01, f"growth with BatchNorm should be 4.9, got {spread[True]:.3f}"

# %% [markdown]
# ## 4 · Going deep: 16 convolution blocks
#
# Depth is this course's subject, and the network above has three convolutions. Here is the stabilized
# recipe's network at 16 blocks of 16 channels, in three versions:
#
# - **plain**: 16 blocks of convolution, BatchNorm, ReLU, one after the other;
# - **residual**: `residual=True` adds each block's input to its output, $x + \mathrm{block}(x)$, for every
#   block after the first (the first changes the number of channels). Notebook 06 measured that this tames
#   BatchNorm's geometric growth of the gradient with depth;
# - **residual, starting as the identity**: `zero_init_residual=True` also multiplies each residual branch by
#   a learnable scalar that starts at 0, $x + \alpha\,\mathrm{block}(x)$ (SkipInit, De & Smith 2020), so at
#   initialisation every block passes its input through unchanged. Goyal et al. (2017) get the same start by
#   zeroing the scale of the last BatchNorm in a ResNet block. That works there because their ReLU comes
#   after the addition; in our block the ReLU comes after BatchNorm, and a zero scale would feed it zeros,
#   where its slope is 0: the scale would never receive a gradient, and the block would never learn.
#
# First the three networks at initialisation, 5 seeds each, on 256 digits: the gradient norm of every
# kernel. A gate of 1 makes $x + 1\cdot\mathrm{block}(x)$, the plain residual block, so the residual networks
# here are the identity-start ones with their gates opened: the same weights, one compiled program for both.

# %% tags=["nbval-ignore-output"]
DEEP = {
    "plain": ModelConfig(kind="cnn", depth=16, width=16, batchnorm=True),
    "residual": ModelConfig(kind="cnn", depth=16, width=16, batchnorm=True, residual=True),  # = open_gates below
    "residual, identity start": ModelConfig(
        kind="cnn", depth=16, width=16, batchnorm=True, residual=True, zero_init_residual=True
    ),
}


def open_gates(net):
    """A copy of an identity-start network with every gate at 1: each block computes x + block(x)."""
    net = nnx.clone(net)
    net.blocks.gate[...] = jnp.ones_like(net.blocks.gate[...])
    return net


identity_nets = DEEP["residual, identity start"].build_seeds(SEEDS, data.image_shape)
nets = {
    "plain": DEEP["plain"].build_seeds(SEEDS, data.image_shape),
    "residual": [open_gates(net) for net in identity_nets],
    "residual, identity start": identity_nets,
}
deep_values = {  # each layer's outputs and kernel gradients on 256 digits, for 5 networks (seeds) each
    name: [activations_and_grads(net, x256, y256) for net in seeds_nets] for name, seeds_nets in nets.items()
}
init_grads = {  # (seeds, layers): ||dL/dW|| of conv0 .. conv15 and the head
    name: np.array([[np.linalg.norm(g) for g in v.grads] for v in values]) for name, values in deep_values.items()
}
for name, g in init_grads.items():
    closed = np.all(g[:, 1:16] == 0)  # every residual block's gate at 0: no gradient behind it yet
    balance = "no gradient (gates closed)" if closed else mean_range(g[:, 1] / g[:, 15], "{:.1f}")
    print(f"{name:25} conv1 / conv15: {balance:26}  head: {mean_range(g[:, -1], '{:.2f}')}")

# %% [markdown]
# - **Plain**: the input-side gradients are 2.8 to 8.4 times the output-side ones (conv1 against conv15,
#   depending on the seed): BatchNorm's growth towards the input that notebook 06 derived.
# - **Residual**: that ratio falls to 2.8 to 3.8, but the head's gradient grows from about 0.3 to 17-25,
#   about 70 times the plain network's on average. The head reads the sum of the first block's output and 15 branches, which
#   no BatchNorm rescales (notebook 06 saw the same in the MLP). Clipping the global norm to 1 then divides
#   *every* layer's first gradient by at least 17 to cap the head's: the convolutions start 17 times slower.
# - **Residual, identity start**: the head's gradient is the plain network's size again, and the kernels
#   behind the closed gates get exactly zero gradient at step 0. Their gates do get one, so they open in the
#   first steps, and the blocks behind them start to learn.
#
# The plain network's layers at initialisation as histograms (notebook 01 shows how to read them). BatchNorm
# gives every block's output the same distribution; the kernel gradients sit further right the closer a layer
# is to the input (the head apart: it has no BatchNorm).

# %% jupyter={"source_hidden": true}
# Checks: the three networks at initialisation (no training: exact up to rounding, over 5 seeds).
plain_g, res_g, id_g = init_grads.values()
assert 2.5 < (plain_g[:, 1] / plain_g[:, 15]).min() and (plain_g[:, 1] / plain_g[:, 15]).max() < 9, (
    f"plain: conv1 / conv15 should lie between 2.5 and 9, got {(plain_g[:, 1] / plain_g[:, 15]).round(2)}"
)
assert 2.5 < (res_g[:, 1] / res_g[:, 15]).min() and (res_g[:, 1] / res_g[:, 15]).max() < 4.2, (
    f"residual: conv1 / conv15 should lie between 2.5 and 4.2, got {(res_g[:, 1] / res_g[:, 15]).round(2)}"
)
assert res_g[:, -1].min() > 30 * max(plain_g[:, -1].max(), id_g[:, -1].max()), (
    f"residual: the head's gradient should be over 30x the others'; got {res_g[:, -1].round(2)} against "
    f"{plain_g[:, -1].round(2)} (plain) and {id_g[:, -1].round(2)} (identity start)"
)
assert np.all(id_g[:, 1:16] == 0) and np.all(id_g[:, [0, 16]] > 0), "identity start: closed gates, zero gradients"
head_ratio = res_g[:, -1].mean() / plain_g[:, -1].mean()
assert 60 < head_ratio < 80, f"residual: the head's gradient should be about 70x the plain one's, got {head_ratio:.0f}x"

# %%
plot_layer_histograms(
    deep_values["plain"][0],
    "plain CNN, 16 blocks of 16 channels + BatchNorm, seed 0, at initialisation, 256 digits",
)

# %% [markdown]
# Now training the plain network and the one that starts as the identity, with the stabilized recipe's SGD
# with momentum, clipping and weight decay, but at `lr=0.2` and **without warmup**, for 200 steps on 5 seeds
# each. The panel of section 6 trains the third, residual without the identity start, and the recipe with
# warmup, on one seed.

# %% tags=["nbval-ignore-output"]
DEEP_TRAIN = TrainConfig(optimizer="momentum", lr=0.2, clip_norm=1.0, weight_decay=5e-4, steps=200)
deep = {name: train_seeds(DEEP[name], data, DEEP_TRAIN) for name in ("plain", "residual, identity start")}
deep_acc = {name: runs.evaluate(data.x_test, data.y_test) for name, runs in deep.items()}
for name, runs in deep.items():
    print(
        f"{name:25} test accuracy {mean_range(deep_acc[name]):30} final training loss {mean_range(runs.final_loss, '{:.3f}')}"
    )
print(
    ", ".join(
        f"{name}: clipping changed {runs.stacked('clipped').mean():.0%} of the steps" for name, runs in deep.items()
    )
)
compare_histories(deep, title=f"16 conv blocks, lr 0.2, no warmup, {len(SEEDS)} seeds")

# %% [markdown]
# The network that starts as the identity ends above 93% test accuracy on every seed (95-99% here, 97% on average); the plain
# one scatters from 55% to 93% (81% on average), and clipping acts on most of its steps, against a minority of
# the other's. On another CPU the last bits of every sum differ and the seeds land elsewhere, but the picture
# stays: the plain network's gradients, 3 to 8 times larger at the input than at the output from the first
# step, keep hitting the clipping threshold, and at this learning rate without warmup it trains slowly and
# unevenly. Does warmup or a lower `lr` let it catch up, and at what depth does it stop paying? The next
# subsection answers from recorded runs; the panel of section 6 lets you try single runs yourself.

# %% jupyter={"source_hidden": true}
# Checks: the identity start trains on every seed; the plain network trains worse on average and unevenly.
ident, plain = deep_acc["residual, identity start"], deep_acc["plain"]
clipped = {name: runs.stacked("clipped").mean() for name, runs in deep.items()}
assert ident.min() > 0.93, f"identity start: every seed should pass 93%, got {ident.round(3)}"
assert ident.mean() - plain.mean() > 0.05, (
    f"the identity start should beat the plain network by over 5 points on average: {ident.mean():.1%} vs "
    f"{plain.mean():.1%}"
)
assert plain.min() < 0.9, f"plain: at least one seed should stay below 90%, got {plain.round(3)}"
assert clipped["plain"] > 0.5 > clipped["residual, identity start"], f"share of steps clipped: {clipped}"

# %% [markdown]
# ### Where the plain network's imbalance costs it: learning rate, warmup, depth, training length
#
# The runs above are one setting. `helpers.studies` trained the same two networks at four learning rates with
# and without warmup, at four depths and for twice as many steps, then the ablation further below, every run on
# 5 seeds: 140 trainings, 6 minutes on 2 cores, too long to run here. This notebook reads the recorded
# results (`python -m helpers.studies deep_cnn` runs them again).
#
# Two rules for reading them:
#
# - **Separated.** One setting's seeds spread over up to 40 points, so a difference of means says little alone.
#   When *every* seed of one network beats every seed of the other, chance would do that once in 252 (5 seeds
#   against 5): we call the two separated.
# - **Another CPU, other numbers.** Another processor rounds the last bits of each sum differently, and after 200
#   steps each seed lands elsewhere. The course's tests re-run the whole study with other CPU kernels (a second
#   "floating-point path": AVX without FMA) and check every claim below on those fresh numbers too. So each claim
#   asks a little less than this recording shows (6 of 8 settings where it shows 8); the numbers quoted are
#   this recording's.

# %%
study = recorded("deep_cnn")
runs = study["runs"]
acc = {label: np.array(run["accuracy"]) for label, run in runs.items()}
print(f"recorded {study['recorded']['date']} in {study['recorded']['seconds']} s on {study['recorded']['machine']}")
print("test accuracy: mean (lowest to highest seed); steps clipped    plain                       identity start")
settings = [(lr, w, 16, 200) for w in WARMUPS for lr in LRS] + [(0.1, 50, d, 200) for d in DEPTHS if d != 16]
for lr, w, d, steps in [*settings, (0.1, 50, 16, 400)]:
    cells = []
    for net in ("plain", "identity start"):
        run = runs[grid_label(net, lr, w, steps, d)]
        a = np.array(run["accuracy"])
        cells.append(f"{a.mean():.1%} ({a.min():.1%}-{a.max():.1%}); {np.mean(run['clipped']):.0%}")
    sep = (
        "  separated"
        if separated_runs(study, *(grid_label(n, lr, w, steps, d) for n in ("plain", "identity start")))
        else ""
    )
    print(f"  {d:2} blocks, lr {lr:<4} warmup {w:2}, {steps} steps:  {cells[0]:27} {cells[1]}{sep}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.8), dpi=90, layout="constrained", sharey=True)
pair = ("plain", "identity start")
for ax, w in zip(axes, WARMUPS, strict=False):
    plot_theory_vs_measurement(
        {net: (LRS, np.array([acc[grid_label(net, lr, w)] for lr in LRS]).T) for net in pair},
        ax=ax,
        each_seed=True,
        xscale="log",
        xticks=LRS,
        yscale="linear",
        xlabel="learning rate (log scale)",
        ylabel="test accuracy (one point per seed)" if ax is axes[0] else "",
        title=f"16 blocks, warmup {w}, 200 steps",
    )
plot_theory_vs_measurement(
    {net: (DEPTHS, np.array([acc[grid_label(net, 0.1, 50, depth=d)] for d in DEPTHS]).T) for net in pair},
    ax=axes[2],
    each_seed=True,
    xscale="log",
    xticks=DEPTHS,
    yscale="linear",
    xlabel="blocks (log scale)",
    title="lr 0.1, warmup 50, 200 steps",
)
fig.suptitle(f"plain vs identity-start CNN, 16 channels: test accuracy on the digits, {len(study['seeds'])} seeds")
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=8)
for ax in axes:
    ax.get_legend().remove()  # one legend for the three panels, below them
plt.show()

# %% [markdown]
# What the 5 seeds of each setting support:
#
# - **At 16 blocks the plain network's mean is lower in all 8 settings**, by 2.6 to 17 points (6.5 on average),
#   and clipping acts on 44% to 90% of its steps, against 24% to 30% of the identity start's. In most settings
#   the seeds overlap. Two are separated here, lr 0.1 and 0.2 without warmup; the second, this section's own
#   run, is the one the check asks for, since only it was separated on the other path too.
# - **Neither warmup nor a lower learning rate closes the gap.** With 50 warmup steps the plain network still
#   trails at all four learning rates, and at lr 0.05 by 2.6 and 4.0 points; how the gap changes from one
#   setting to the next, 5 seeds cannot tell.
# - **Depth is where the boundary lies.** At 4 and 8 blocks the two networks are level: the difference of
#   their means is smaller than the spread of either's seeds (at 4 blocks the plain network is even 3 points
#   ahead). At 32 blocks they are separated: the plain network reaches 38% to 80.5%, the identity start 98% to
#   99.7%. The imbalance grows geometrically with depth (notebook 06); on these four depths its cost appears
#   between 16 and 32 blocks.
# - **Twice the steps do not close the gap.** After 400 steps the 16-block plain network's mean, 97.0%, is still
#   below the identity start's lowest seed (98.6%).

# %% jupyter={"source_hidden": true}
# Checks: every claim above and below, on the recorded runs (the tests re-run them on another floating-point path).
check_deep_cnn(study)
seps = [
    cell
    for cell in ((lr, w) for w in WARMUPS for lr in LRS)
    if separated_runs(study, *(grid_label(n, *cell) for n in ("plain", "identity start")))
]
assert seps == [(0.1, 0), (0.2, 0)], f"the text says two settings are separated, lr 0.1 and 0.2 without warmup: {seps}"
assert list(DEEP.values()) == list(studies.DEEP.values()), "this notebook's deep networks are the study's"
grid = {(lr, w): [acc[grid_label(net, lr, w)] for net in pair] for lr in LRS for w in WARMUPS}
gaps = {cell: i.mean() - p.mean() for cell, (p, i) in grid.items()}
clip_share = {net: [np.mean(runs[grid_label(net, lr, w)]["clipped"]) for lr, w in grid] for net in pair}
median_norm = {label: np.median(runs[f"ablation: {label}"]["grad_norm"]) for label in ABLATION}
quoted = {  # the numbers quoted in the text, as recorded: (value, quoted, tolerance)
    "smallest gap at 16 blocks": (min(gaps.values()), 0.026, 0.0005),
    "largest gap": (max(gaps.values()), 0.17, 0.005),
    "mean gap": (np.mean(list(gaps.values())), 0.065, 0.0005),
    "gap at lr 0.05, warmup 50": (gaps[0.05, 50], 0.040, 0.0005),
    "plain clipped, least": (min(clip_share["plain"]), 0.44, 0.005),
    "plain clipped, most": (max(clip_share["plain"]), 0.90, 0.005),
    "identity clipped, least": (min(clip_share["identity start"]), 0.24, 0.005),
    "identity clipped, most": (max(clip_share["identity start"]), 0.30, 0.005),
    "plain at 32 blocks, lowest": (acc[grid_label("plain", 0.1, 50, depth=32)].min(), 0.38, 0.005),
    "plain at 32 blocks, highest": (acc[grid_label("plain", 0.1, 50, depth=32)].max(), 0.805, 0.0005),
    "identity start at 32 blocks, lowest": (acc[grid_label("identity start", 0.1, 50, depth=32)].min(), 0.98, 0.005),
    "identity start at 32 blocks, highest": (acc[grid_label("identity start", 0.1, 50, depth=32)].max(), 0.997, 0.0005),
    "plain, 400 steps": (acc[grid_label("plain", 0.1, 50, steps=400)].mean(), 0.970, 0.0005),
    "identity start, 400 steps, lowest": (acc[grid_label("identity start", 0.1, 50, steps=400)].min(), 0.986, 0.0005),
    "no identity start": (acc["ablation: no identity start"].mean(), 0.68, 0.005),
    "no identity start, lowest": (acc["ablation: no identity start"].min(), 0.52, 0.005),
    "no identity start, highest": (acc["ablation: no identity start"].max(), 0.89, 0.005),
    "no residual connections": (acc["ablation: no residual connections"].mean(), 0.94, 0.005),
    "no identity start, clipped": (np.mean(runs["ablation: no identity start"]["clipped"]), 0.89, 0.005),
    "no residual connections, clipped": (np.mean(runs["ablation: no residual connections"]["clipped"]), 0.86, 0.005),
    "no BatchNorm, clipped": (np.mean(runs["ablation: no BatchNorm"]["clipped"]), 0.64, 0.005),
    "no identity start, median gradient norm": (median_norm["no identity start"], 2.7, 0.05),
    "no residual connections, median gradient norm": (median_norm["no residual connections"], 1.7, 0.05),
    "no BatchNorm, median gradient norm": (median_norm["no BatchNorm"], 2.5, 0.05),
    "full recipe, median gradient norm": (median_norm["full recipe"], 0.6, 0.05),
    "largest move of another fix": (
        max(
            abs(acc[f"ablation: {k}"].mean() - acc["ablation: full recipe"].mean())
            for k in ("no warmup", "no clipping", "no weight decay", "no BatchNorm")
        ),
        0.026,
        0.0005,
    ),
}
wrong = {name: f"{value:.4f}, quoted {q}" for name, (value, q, tol) in quoted.items() if abs(value - q) > tol}
assert not wrong, f"the text quotes other numbers than the recording holds: {wrong}"

# %% [markdown]
# ### What each fix is worth: the ablation
#
# The same study took the 16-block identity-start network with the full recipe (momentum, lr 0.1, warmup 50,
# clipping at 1, weight decay 5e-4, BatchNorm), and removed one fix at a time, 5 seeds each.

# %%
plot_seed_rows(
    {label: acc[f"ablation: {label}"] for label in ABLATION},
    reference="full recipe",
    title="16 blocks, 200 steps: the full recipe, less one fix at a time",
).figure

# %% [markdown]
# - **One removal separates from the full recipe: the identity start.** Residual blocks that start as
#   $x + \mathrm{block}(x)$ reach 68% on average (52% to 89%), every seed below every seed of the full recipe,
#   and 25 points below even the plain network on average (94%, "no residual connections").
# - **Why, this study cannot say for sure.** At initialisation that network's head gets a gradient about 70
#   times the plain network's (the start of this section), and during training its median gradient norm before
#   clipping stays the highest of the ablation, 2.7 against 1.7 for the plain network and 0.6 for the full
#   recipe, so clipping shrinks its steps most. But the identity start without BatchNorm runs at 2.5 and still
#   trains: the size of the clipping alone does not explain the gap. (How often clipping acts does not either:
#   89% of the steps, against 86% for the plain network.)
# - **Every other fix is within the noise** here: without warmup, clipping, weight decay or BatchNorm the mean
#   moves by at most 2.6 points, less than the spread of the seeds within each row. Five seeds cannot rank
#   them, so this notebook does not. Without BatchNorm no loss was detectable with 5 seeds (while clipping
#   still acts on 64% of that network's steps), in line with De & Smith (2020), who train deep residual networks
#   without normalisation from such an identity start.

# %% [markdown]
# ## 5 · The Keras example, done right
#
# A widely copied blog post on avoiding exploding gradients ends with a TensorFlow/Keras snippet meant to
# train a CNN with batch normalization on 28x28x1 images: batch size 32, learning rate 0.001, Adam, a
# validation split of 0.2, 100 epochs. The snippet does not run, and would not do what it says if it did:
#
# | the snippet | done right |
# |---|---|
# | passes an `Input` and a `Dense` layer object to `fit` as data and labels | passes image arrays and integer labels |
# | its "CNN" is two Dense layers, with no convolution | three 3x3 convolutions, global average pooling, a linear head |
# | calls `tf.nn.batch_normalization()` with no arguments, then, after training, assigns to a Keras layer's `output`, which is read-only | BatchNorm is a layer inside every block, from the start, with train/eval modes (notebook 06) |
# | compiles the model after the first `fit` | the optimizer exists before the first step |
# | `binary_crossentropy` with one output unit, for a 10-class problem | 10 logits and the softmax cross-entropy |
#
# Below, the same hyperparameters (Adam, `lr=1e-3`, batches of 32, 20% held out), for 5 epochs instead of 100,
# in one run: this section compares no recipes, it only shows that the example's recipe, written correctly,
# trains. MNIST itself is used when its files are already in the local cache (`load_mnist(download=False)`
# never downloads); otherwise the 8x8 digits stand in for it, as in the outputs shown here.

# %% tags=["nbval-ignore-output"]
try:
    images = load_mnist(download=False)
    source = "MNIST (28x28x1) from the local cache"
except FileNotFoundError:
    images = data
    source = "the 8x8 digits (MNIST is not in the local cache; load_mnist(download=True) would fetch it)"
print("data:", source)

n_fit = int(0.8 * len(images.x_train))  # validation split 0.2, as in the example
split = Dataset(images.x_train[:n_fit], images.y_train[:n_fit], images.x_train[n_fit:], images.y_train[n_fit:], 10)
epochs = 5 if images is data else 1  # the example's 100 epochs would take minutes
steps = epochs * (n_fit // 32)
keras_train = TrainConfig(optimizer="adam", lr=1e-3, batch_size=32, steps=steps)
keras_net = stable_model.build(images.image_shape)
keras_history = train(keras_net, split, keras_train)
val_acc = evaluate(keras_net, split.x_test, split.y_test)
test_acc = evaluate(keras_net, images.x_test, images.y_test)
print(f"{epochs} epochs = {steps} steps of batch 32: {keras_history.summary()}")
print(f"validation accuracy {val_acc:.1%}, test accuracy {test_acc:.1%}")

# %% [markdown]
# On the digits: about 98% of the test images and 97% of the held-out 20% right after 5
# epochs (one run: other seeds land a point or so away). With Adam at `lr=1e-3` nothing here comes near an
# explosion: the gradient norm stays below 2. The example's recipe was a safe one; only its code was broken.

# %% jupyter={"source_hidden": true}
# Checks: the example's recipe, done right, trains (margins of a few points: this is one run), far from exploding.
if images is data:
    assert test_acc > 0.95, f"test accuracy should be about 98% (at least 95%), got {test_acc:.1%}"
    assert val_acc > 0.94, f"validation accuracy should be about 97% (at least 94%), got {val_acc:.1%}"
else:
    assert test_acc > 0.9, f"MNIST: the test accuracy should pass 90%, got {test_acc:.1%}"
assert keras_history.grad_norm.max() < 2, (
    f"the gradient norm should stay below 2, got {keras_history.grad_norm.max():.2f}"
)

# %% [markdown]
# ## 6 · Explore
#
# Every switch of the recipe, on the 3-block CNN (one seed: in section 4 the seeds of one recipe spread over
# several points, so a difference of a point or two between two settings says nothing). Try: turn off BatchNorm
# and set `init_scale` to 3, then add clipping; raise `lr` to 1 with and without warmup; turn off everything,
# then add one fix at a time; take one fix at a time out of the stabilized recipe (`init_scale` 10 for no He
# init). Then set `depth` and `width` to 16 for section 4's networks.
# The heat map shows which layers' gradients explode first.

# %% tags=["nbval-ignore-output"]
recipe = panel(
    data,
    model=stable_model,
    config=stable_train,
    controls=[
        "depth",
        "width",
        "residual",
        "zero_init_residual",
        "init_scale",
        "batchnorm",
        "clip_norm",
        "weight_decay",
        "warmup_steps",
        "lr",
        "optimizer",
        "steps",
    ],
    title="The CNN recipe",
)
recipe

# %% [markdown]
# ## Exercises
#
# **1.** The Keras example used `binary_crossentropy`. Write the loss a 10-class classifier needs: `logits`
# has shape (batch, 10), `labels` holds integers 0..9. Use `jax.numpy` (or NumPy) only, no `optax`.


# %%
def my_loss(logits, labels): ...  # your code: the mean over the batch of the per-example loss


ok = ex.check_loss(my_loss)

# %% [markdown]
# **2.** Write the stabilized recipe as two configs: a `ModelConfig` for the CNN and a `TrainConfig` with
# all the training-side fixes (any sensible values).

# %%
my_model = ...  # ModelConfig(kind="cnn", ...)
my_config = ...  # TrainConfig(optimizer="momentum", lr=0.1, ...)

ok = ex.check_recipe(my_model, my_config)

# %% [markdown]
# **3.** The helpers' CNN has 4 weight layers and zero biases at initialisation. Without BatchNorm, with the
# softmax saturated, by what factor does the initial gradient norm grow when `init_scale` is multiplied by 10?

# %%
answer = ...  # your number

ok = ex.check_gradient_factor(answer, init_scale=10.0, weight_layers=4)

# %% [markdown]
# ## Takeaways
#
# - A bias-free ReLU network is homogeneous: scaling every kernel by $s$ scales the logits by $s^{\text{depth}}$
#   and the gradient by $s^{\text{depth}-1}$. In the hand-made CNN a 10x initial scale meant a first SGD step
#   3.5x the size of all the weights.
# - Divergence is not always a NaN. The unstable recipe exploded (the gradient norm passed $10^6$), then died
#   (every ReLU of the first layer off, loss $\ln 10$, chance accuracy) on every seed, with every number
#   finite. Monitor the gradient norm and the loss, not only `isfinite`.
# - Weight decay is no cure for an explosion: its step is proportional to the weights, not to the gradient.
# - Depth changes the answer. At 16 blocks, plain BatchNorm blocks start with input-side gradients 3 to 8 times
#   the output-side ones, and without warmup the network trained unevenly. Residual connections balanced the
#   blocks but gave the head a gradient about 70 times too large, which global-norm clipping then took out of every
#   layer's step: with the full recipe they trained worst of all (68% on average). Starting every residual
#   block as the identity (a gate at 0) kept both in check: at lr 0.2 without warmup that network passed 93% on
#   every seed.
# - Where the imbalance costs, measured on 5 seeds per setting: at 4 and 8 blocks nothing detectable; at 16
#   blocks 2.6 to 17 points on average in all 8 learning rates and warmups tried (separated in two); at 32
#   blocks the plain network fails (38% to 80.5%) where the identity start reaches 98% to 99.7%. With the
#   identity start, removing warmup, clipping, weight decay or BatchNorm moved the mean less than the seeds'
#   spread.
# - A claim about training runs needs several seeds. At 16 blocks the plain network's seeds spread over
#   almost 40 points (55% to 93%): one seed alone could have shown it nearly level with the identity start, or
#   hopeless.
#
# ## Claim vs measurement
#
# The blog post with the Keras example of section 5 makes three claims that this notebook measured; a fourth
# comes from the deep-learning folklore.
#
# **The claim:** with batch normalization, a CNN for image classification reaches very good performance.
# **Measured:** true here: the 16-block CNN with BatchNorm whose residual blocks start as the identity reached
# 97% on average over five seeds, and the example's own Adam recipe about 98% in one run after 5 epochs. But
# BatchNorm was not enough alone: the 16 plain BatchNorm blocks, at lr 0.2 without warmup, scattered from 55% to
# 93%.
#
# **The claim:** normalizing every neuron's input with BatchNorm prevents vanishing and exploding gradients.
# **Measured:** half true. BatchNorm made the initial gradient nearly independent of the weights' scale (a
# factor 4.9 across `init_scale` 0.3 to 20, against 8.2e6 without it). It does not bound the gradient in
# general: at 16 plain blocks it made the input-side gradients 3 to 8 times the output-side ones, the growth
# with depth that notebook 06 derives.
#
# **A claim heard everywhere (notebook 06 calls it the usual cure):** residual connections solve exploding and
# vanishing gradients in deep networks. **Measured:** half true. At 16 blocks they made the convolutions'
# gradients better balanced (input-side over output-side 2.8 to 3.8, against 2.8 to 8.4 without), but the
# head's gradient grew about 70-fold, because the sum of all branches reaches it unnormalised, and with
# clipping that network trained worse than the plain one (68% against 94% on average). What made the deep
# network train reliably (every seed above 93% in section 4's run, and every seed at 32 blocks above every
# plain one) was starting each block as the identity.
#
# **The claim:** regularization, a technique against overfitting, also helps against exploding gradients.
# **Measured:** not against explosion. Weight decay's step is proportional to the weights, not to the
# gradient: at this recipe's strength it was nearly 70,000 times smaller than the hand-made 10x network's first
# gradient step, and even the strongest decay that makes sense could not offset a step 3.5 times the size of
# all the weights. With BatchNorm after the kernels, decay is mostly a control of the effective learning rate;
# without normalization, a regularizer. In neither role does it cure exploding gradients.
#
# **References.** He et al. (2015), *Delving deep into rectifiers*. Ioffe & Szegedy (2015), *Batch
# normalization*. Pascanu, Mikolov & Bengio (2013), *On the difficulty of training recurrent neural networks*.
# Loshchilov & Hutter (2019), *Decoupled weight decay regularization*. Goyal et al. (2017), *Accurate, large
# minibatch SGD: training ImageNet in 1 hour*. van Laarhoven (2017), *L2 regularization versus batch and
# weight normalization*. LeCun et al. (1998),
# *Gradient-based learning applied to document recognition* (MNIST). De & Smith (2020), *Batch normalization
# biases residual blocks towards the identity function in deep networks* (SkipInit).
