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
# # 06 · Batch normalization
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/taming-gradients/taming-gradients/blob/main/notebooks/06_batchnorm.ipynb)
#
# After this notebook you can write BatchNorm by hand, use `nnx.BatchNorm` without the two classic
# train/eval bugs, explain why BatchNorm makes a layer indifferent to the scale of its weights, and say
# precisely what it does to exploding gradients: in a deep plain network at initialisation it *causes* them,
# at a rate you can compute.

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

from helpers.data import load_digits
from helpers.diagnostics import activation_stats, activations_and_grads, layer_grad_norms
from helpers.exercises import batchnorm as ex
from helpers.models import ModelConfig
from helpers.plots import (
    COLORS,
    compare_histories,
    plot_layer_histograms,
    plot_layer_profile,
    plot_theory_vs_measurement,
)
from helpers.train import SEEDS, TrainConfig, evaluate, mean_range, train_seeds
from helpers.widgets import Panel

plt.rcParams["figure.dpi"] = 90
data = load_digits(seed=0)
print(f"digits: {len(data.x_train)} train, {len(data.x_test)} test images of shape {data.image_shape}")


# %% [markdown]
# ## Predict first
#
# Take a plain (no residual connections) ReLU MLP with 30 hidden layers of 128 units, He initialisation,
# and BatchNorm after every linear layer: every layer's input is normalised to mean 0 and variance 1.
# At initialisation, compare the gradient of the loss with respect to the weights of an early hidden layer
# (the 2nd) and of the last hidden layer (the 30th). Is the ratio early/last
#
# - (a) about 1: BatchNorm keeps every layer normalised,
# - (b) about 10,
# - (c) more than 100?
#
# Write your answer down. Section 4 measures it and derives it.

# %% [markdown]
# ## 1 · BatchNorm by hand
#
# For a batch of pre-activations $z$ (shape: batch $B$ x units), BatchNorm (Ioffe & Szegedy, 2015) works
# **per unit** $j$, across the batch:
#
# $$\mu_j = \frac{1}{B}\sum_b z_{bj},\qquad \sigma_j^2 = \frac{1}{B}\sum_b (z_{bj}-\mu_j)^2,\qquad
# y_{bj} = \gamma_j\,\frac{z_{bj}-\mu_j}{\sqrt{\sigma_j^2+\epsilon}} + \beta_j .$$
#
# $\gamma$ (scale, starts at 1) and $\beta$ (shift, starts at 0) are trained, so the layer can undo the
# normalisation if that helps. The batch statistics exist only during training. For evaluation, BatchNorm
# keeps **running averages** updated at every training step,
# $m \leftarrow \alpha\, m + (1-\alpha)\,\mu$ and $v \leftarrow \alpha\, v + (1-\alpha)\,\sigma^2$, and uses
# $m, v$ instead of $\mu, \sigma^2$. Flax calls $\alpha$ `momentum` (0.9 in `helpers.models`); PyTorch's
# `momentum=0.1` means the same $\alpha = 0.9$, but PyTorch stores the unbiased ($B-1$) variance in
# `running_var`, Flax the biased one.


# %%
def batchnorm_train(z, gamma, beta, eps=1e-5):
    """Training mode: normalise with the batch's own statistics; also return them."""
    mean = z.mean(axis=0)
    var = z.var(axis=0)  # biased (divides by B), as in the paper and in Flax
    return gamma * (z - mean) / jnp.sqrt(var + eps) + beta, mean, var


def batchnorm_eval(z, gamma, beta, running_mean, running_var, eps=1e-5):
    """Evaluation mode: normalise with the running averages; the output of one example ignores the others."""
    return gamma * (z - running_mean) / jnp.sqrt(running_var + eps) + beta


def update_running(running, batch_value, momentum=0.9):
    return momentum * running + (1 - momentum) * batch_value


rng = np.random.default_rng(0)
z = jnp.asarray(3.0 + 5.0 * rng.normal(size=(64, 4)), jnp.float32)  # 64 examples, 4 units: mean 3, std 5
gamma = jnp.asarray(rng.uniform(0.5, 2.0, size=4), jnp.float32)
beta = jnp.asarray(rng.normal(size=4), jnp.float32)
y, mean, var = batchnorm_train(z, jnp.ones(4), jnp.zeros(4))


def fmt(values):
    return " ".join(f"{float(v):6.2f}".replace("-0.00", " 0.00") for v in values)


print(f"before BatchNorm: per-unit mean {fmt(z.mean(0))}   std {fmt(z.std(0))}")
print(f"after BatchNorm:  per-unit mean {fmt(y.mean(0))}   std {fmt(y.std(0))}")

# %% jupyter={"source_hidden": true}
# Check: after BatchNorm (gamma = 1, beta = 0) every unit has batch mean 0 and standard deviation 1.
assert np.allclose(y.mean(0), 0, atol=1e-5) and np.allclose(y.std(0), 1, atol=1e-3), (
    f"each unit should have mean 0 and std 1 after BatchNorm; got means {y.mean(0)} and stds {y.std(0)}"
)

# %% [markdown]
# The same with `nnx.BatchNorm`: `bn.train()` (batch statistics, running averages updated) and `bn.eval()`
# (running averages, nothing updated). We give it random $\gamma, \beta$ so the comparison tests them too.

# %%
bn = nnx.BatchNorm(4, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
bn.scale[...] = gamma
bn.bias[...] = beta

bn.train()
y_flax = bn(z)
y_hand, mean, var = batchnorm_train(z, gamma, beta)
running_mean, running_var = update_running(jnp.zeros(4), mean), update_running(jnp.ones(4), var)
train_diff = float(jnp.abs(y_flax - y_hand).max())
stats_diff = max(float(jnp.abs(bn.mean[...] - running_mean).max()), float(jnp.abs(bn.var[...] - running_var).max()))

bn.eval()
z_new = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)  # a new batch of 5 examples
eval_diff = float(jnp.abs(bn(z_new) - batchnorm_eval(z_new, gamma, beta, running_mean, running_var)).max())
print(
    f"train mode: output {train_diff < 1e-5}, running averages {stats_diff < 1e-5}; eval mode: output {eval_diff < 1e-5}"
)

# %% jupyter={"source_hidden": true}
# Check: nnx.BatchNorm and the hand-written version agree in both modes, running averages included.
assert max(train_diff, stats_diff, eval_diff) < 1e-5, (
    f"nnx.BatchNorm should match the hand-written BatchNorm to 1e-5; largest differences: train output "
    f"{train_diff:.1e}, running averages {stats_diff:.1e}, eval output {eval_diff:.1e}"
)

# %% [markdown]
# ## 2 · Train mode vs eval mode: two classic bugs
#
# We train a BatchNorm MLP (10 hidden layers of 64 units) for 300 steps. Its linear layers carry no bias:
# BatchNorm subtracts the batch mean, which cancels any bias, and its shift $\beta$ takes the bias's place (as in
# ResNets). `helpers.train.evaluate` switches the model to `model.eval()`, so BatchNorm uses its running averages.
# One training run is one sample: a bug that shows on one run may hide on the next. So we train the network
# 5 times, with seeds 0 to 4 (a seed sets the initial weights and the order of the batches), and look at every
# run.

# %% tags=["nbval-ignore-output"]
bn_config = ModelConfig(depth=10, width=64, batchnorm=True)
sgd = TrainConfig(optimizer="momentum", lr=0.02, steps=300)
runs = train_seeds(bn_config, data, sgd, seeds=SEEDS)  # one run per seed; runs.models[i] is seed i's network
acc_eval = runs.evaluate(data.x_test, data.y_test)  # one test accuracy per seed, in eval mode
print(runs.summary())
print(f"test accuracy, eval mode (running averages): {mean_range(acc_eval)}")

# %% jupyter={"source_hidden": true}
# Check: every seed trains.
assert acc_eval.min() > 0.93, f"every seed should reach over 93% test accuracy; the worst got {acc_eval.min():.1%}"

# %% [markdown]
# **Bug 1: evaluating with batch statistics** (forgetting `model.eval()`). In training mode each example's
# output depends on the other examples of its batch. With a large shuffled test batch the bug hides,
# because its statistics look like a training batch's. With a batch of one class, or a batch of one
# example, it does not. We work on copies (`nnx.clone`), because every forward pass in training mode also
# overwrites the running averages.


# %% tags=["nbval-ignore-output"]
def predict_in_train_mode(model, batches):
    """Labels predicted by a copy of the model wrongly left in training mode, batch by batch; and the copy."""
    copy = nnx.clone(model)
    copy.train()
    labels = np.concatenate([np.asarray(copy(data.x_test[i])).argmax(-1) for i in batches])
    return labels, copy


def accuracy(labels, batches):
    return float(np.mean(labels == data.y_test[np.concatenate(batches)]))


whole = [np.arange(len(data.y_test))]
by_class = [np.flatnonzero(data.y_test == c)[:25] for c in range(10)]  # 25 of each class: one shape, one compile
singles = [np.array([i]) for i in range(25)]
acc_whole, acc_by_class, acc_single, single_labels, acc_polluted = [], [], [], [], []
for model in runs.models:
    acc_whole.append(accuracy(predict_in_train_mode(model, whole)[0], whole))
    labels, polluted = predict_in_train_mode(model, by_class)
    acc_by_class.append(accuracy(labels, by_class))
    labels = predict_in_train_mode(model, singles)[0]
    acc_single.append(accuracy(labels, singles))
    single_labels.append(sorted(set(labels.tolist())))
    acc_polluted.append(evaluate(polluted, data.x_test, data.y_test))
acc_whole, acc_by_class, acc_single, acc_polluted = map(np.array, (acc_whole, acc_by_class, acc_single, acc_polluted))

print("test accuracy; 'train mode' = the bug: BatchNorm uses the statistics of each batch")
print(f"{'seed':>4} {'eval mode':>10} {'train mode: whole set':>22} {'one class/batch':>16} {'one example/batch':>30}")
for i, seed in enumerate(runs.seeds):
    single = f"{acc_single[i]:.1%} (labels: {single_labels[i]})"
    print(f"{seed:4} {acc_eval[i]:10.1%} {acc_whole[i]:22.1%} {acc_by_class[i]:16.1%} {single:>30}")
print(f"eval mode after the one-class batches overwrote the running averages: {mean_range(acc_polluted)}")
print(f"  (before: {mean_range(acc_eval)})")

# %% [markdown]
# On every seed, the whole test set in one batch gets 96% to 98%, within 1.5 points of eval mode: the
# bug is invisible in the usual check. One class per batch (25 images of each class) gets 11% to 14%, about
# chance: normalising within a batch of 3s removes exactly what all 3s share. A batch of one example normalises
# every unit to $0$, so the first BatchNorm outputs $\beta$ whatever the input, and each network predicts one
# and the same label for all 25 test images. Which label depends on the run (it is whatever the trained network
# makes of $\beta$), so the accuracy is just that class's share of the 25 images (12% to 20% here). The one-class
# batches also overwrote the copy's running averages: in eval mode afterwards it is about 2 points worse on
# average (95% instead of 97%); by how much varies from seed to seed.

# %% jupyter={"source_hidden": true}
# Check: the bug hides in one big batch and shows with one class or one example per batch, on every seed.
assert np.abs(acc_whole - acc_eval).max() < 0.03, (
    f"one big shuffled batch should hide the bug (within 3 points of eval mode on every seed); "
    f"got {acc_whole.round(3)} in train mode against {acc_eval.round(3)} in eval mode"
)
assert 0.05 < acc_by_class.min() and acc_by_class.max() < 0.3, (
    f"one class per batch should give about chance (5% to 30%) on every seed; got {acc_by_class.round(3)}"
)
share = [np.mean(data.y_test[:25] == labels[0]) for labels in single_labels]  # that label's share of the 25 images
assert all(len(labels) == 1 for labels in single_labels) and np.allclose(acc_single, share), (
    f"a batch of one example should get one label for every image, and that label's share as accuracy; "
    f"got labels {single_labels}, accuracies {acc_single} against shares {share}"
)
drop = acc_eval - acc_polluted
assert 0.005 < drop.mean() < 0.06, (
    f"the overwritten running averages should cost 0.5 to 6 points on average; got {drop.mean():.1%}"
)

# %% [markdown]
# **Bug 2: stale running averages.** In a hand-written JAX training loop the running averages are state
# that the step must return and the loop must keep (in Flax Linen, the `batch_stats` collection returned by
# `apply(..., mutable=["batch_stats"])`; in NNX, the `nnx.BatchStat` variables of `nnx.split(model)`).
# A loop that keeps only the parameters evaluates with the initial averages (mean 0, variance 1). We
# simulate it: the trained parameters in a freshly built model.

# %% tags=["nbval-ignore-output"]
fresh = bn_config.build(data.image_shape)  # untrained: running means 0, running variances 1
acc_stale = []
for model in runs.models:
    stale = nnx.clone(fresh)
    nnx.update(stale, nnx.state(model, nnx.Param))  # the trained weights, but not the trained BatchStat
    acc_stale.append(evaluate(stale, data.x_test, data.y_test))
acc_stale = np.array(acc_stale)
first_mean = np.asarray(nnx.state(runs.models[0], nnx.BatchStat)["first"]["norm"]["mean"][...])
print(f"stale running averages: {mean_range(acc_stale)}")
print(f"trained running averages: {mean_range(acc_eval)}")
print("seed 0, layer 0, first 4 running means, trained:", np.round(first_mean[:4], 2), " stale: [0. 0. 0. 0.]")

# %% [markdown]
# Trained weights with stale averages: between about 15% and 40% test accuracy depending on the seed, from
# about 97%. The fix for both bugs: `model.train()` for training steps, `model.eval()` for evaluation, and carry
# *all* of the model's state, not only `nnx.Param`.

# %% jupyter={"source_hidden": true}
# Check: stale running averages break every seed's trained network.
assert 0.05 < acc_stale.min() and acc_stale.max() < 0.6, (
    f"with stale running averages every seed should fall to 5% to 60% test accuracy; got {acc_stale.round(3)}"
)
assert (acc_eval - acc_stale).min() > 0.35, (
    f"stale running averages should cost over 35 points on every seed; got {acc_eval.round(3)} -> {acc_stale.round(3)}"
)

# %% [markdown]
# ## 3 · Scale invariance: BatchNorm does not care how big the weights are
#
# For a layer $y = \mathrm{BN}(xW)$ and any $c > 0$: $xcW$ has batch mean $c\mu$ and standard deviation
# $c\sigma$, so $\mathrm{BN}(x\,cW) = \mathrm{BN}(xW)$, exactly when $\epsilon = 0$ and very nearly as long as
# every unit's batch variance is much larger than $\epsilon$. The loss is the same
# function of $cW$ as of $W$: $L(cW) = L(W)$. Differentiating both sides with respect to $W$ gives two
# consequences:
#
# - $\nabla L(cW) = \nabla L(W) / c$: larger weights get proportionally smaller gradients;
# - differentiating with respect to $c$ at $c = 1$: $\langle W_{:,j}, \nabla_{W_{:,j}} L\rangle = 0$ for every
#   unit $j$. The gradient is orthogonal to the weights, so a plain gradient step can only *grow* $\|W\|$,
#   and the effective learning rate of the direction of $W$ is about $\eta / \|W\|^2$
#   (van Laarhoven, 2017). That is why weight decay on the kernels of layers followed by BatchNorm acts mostly
#   as a control of that effective learning rate, not as a regulariser. (Without normalisation, weight decay
#   shrinks the weights and acts as a regulariser, notebook 05. In neither case is it a cure for exploding
#   gradients.)
#
# Checked in plain JAX on one layer: linear, BatchNorm, ReLU, then a linear readout.

# %%
x64 = jnp.asarray(data.x_train[:128].reshape(128, -1))
y64 = jnp.asarray(data.y_train[:128])
W = jnp.asarray(rng.normal(size=(64, 32)) * math.sqrt(2 / 64), jnp.float32)  # He init
V = jnp.asarray(rng.normal(size=(32, 10)) * math.sqrt(2 / 32), jnp.float32)


def one_layer_loss(W):
    h = jax.nn.relu(batchnorm_train(x64 @ W, jnp.ones(32), jnp.zeros(32))[0])
    return optax.softmax_cross_entropy_with_integer_labels(h @ V, y64).mean()


loss_and_grad = jax.jit(jax.value_and_grad(one_layer_loss))
loss_1, grad_1 = loss_and_grad(W)
print(f"{'c':>5} {'loss':>7} {'||grad||':>9} {'c * ||grad||':>13}")
shifts, scaled = {}, {}
for c in (0.1, 1.0, 10.0):
    loss_c, grad_c = loss_and_grad(c * W)
    shifts[c] = abs(float(loss_c) - float(loss_1))
    scaled[c] = c * float(jnp.linalg.norm(grad_c))
    print(f"{c:5g} {float(loss_c):7.3f} {float(jnp.linalg.norm(grad_c)):9.4g} {scaled[c]:13.4g}")
smallest_var = float((0.1 * x64 @ W).var(0).min())
print(
    f"at c = 0.1 the smallest unit variance is {smallest_var:.1e}; epsilon = 1e-5 shifts the loss by {shifts[0.1]:.3f}"
)
cosines = jnp.sum(W * grad_1, 0) / (jnp.linalg.norm(W, axis=0) * jnp.linalg.norm(grad_1, axis=0))
largest_cos = float(jnp.abs(cosines).max())
print(f"largest |cos(W_j, grad_j)| over the 32 units: {largest_cos:.0e} (exactly 0 if epsilon were 0)")

# %% jupyter={"source_hidden": true}
# Check: the loss ignores the scale c, the gradient shrinks as 1/c, and it is orthogonal to W.
assert all(abs(scaled[c] / scaled[1.0] - 1) < 1e-2 for c in scaled), (
    f"c * ||grad|| should be the same for every c, within 1%; got {scaled}"
)
assert shifts[0.1] < 5e-3 and shifts[10.0] < 1e-4, (
    f"the loss should barely depend on c (a shift below 5e-3 at c = 0.1, below 1e-4 at c = 10); got {shifts}"
)
assert largest_cos < 1e-3, f"the gradient should be orthogonal to each unit's weights; largest |cos| {largest_cos:.1e}"

# %% [markdown]
# **BatchNorm lets a badly initialised network train.** The same 10-layer MLP, 300 steps of SGD with
# momentum, with the weights initialised 4x too small (`init_scale=0.25`) or 3x too large (`init_scale=3`),
# with and without BatchNorm, 5 seeds each (the runs of section 2 are the `init_scale=1` row with BatchNorm).

# %% tags=["nbval-ignore-output"]
rescue = {}
for init_scale in (0.25, 1.0, 3.0):
    for batchnorm in (False, True):
        config = bn_config.replace(init_scale=init_scale, batchnorm=batchnorm)
        rescue[init_scale, batchnorm] = runs if config == bn_config else train_seeds(config, data, sgd, seeds=SEEDS)
acc = {key: seed_runs.evaluate(data.x_test, data.y_test) for key, seed_runs in rescue.items()}
print(f"{'init_scale':>10} {'batchnorm':>9}  {'test accuracy':<34}  how the 5 runs ended")
for (init_scale, batchnorm), seed_runs in rescue.items():
    print(f"{init_scale:10g} {batchnorm!s:>9}  {mean_range(acc[init_scale, batchnorm]):<34}  {seed_runs.summary()}")

# %%
shown = {(0.25, False): "init_scale=0.25, no BatchNorm", (0.25, True): "init_scale=0.25, BatchNorm"}
shown |= {(1.0, True): "init_scale=1, BatchNorm", (3.0, True): "init_scale=3, BatchNorm"}
compare_histories(
    {label: rescue[key] for key, label in shown.items()},
    title="10-layer MLP, SGD with momentum (init_scale=3 without BatchNorm diverges at step 1: not drawn)",
)

# %% [markdown]
# Without BatchNorm, `init_scale=0.25` shrinks the signal by 4x per layer: on every seed the loss stays at
# $\ln 10 \approx 2.30$ and the test accuracy at chance (8% to 11%). `init_scale=3` blows up the logits (initial
# loss between 7e4 and 3e5 over the seeds) and every seed diverges at its second step (step 1). With BatchNorm,
# the same initialisations train on every seed: 97% to 98% at `init_scale=0.25`, 95% to 97% at `init_scale=3`.
# Not completely indifferent: the head has no BatchNorm after it, and the $1/c$ gradients change the
# effective learning rate. `init_scale=3` ends about a point below `init_scale=1` on average (96% against 97%),
# but the two ranges of seeds touch, so 5 seeds do not settle that difference. Nor do they separate BatchNorm
# from no BatchNorm at `init_scale=1` (95% to 99% without it): from a good initialisation this 10-layer MLP
# trains either way.

# %% jupyter={"source_hidden": true}
# Check: without BatchNorm both bad scales fail on every seed; with it, both train on every seed.
flat, blown = rescue[0.25, False].final_loss, rescue[3.0, False].histories
assert acc[0.25, False].max() < 0.2 and np.abs(flat - math.log(10)).max() < 0.05, (
    f"without BatchNorm, init_scale=0.25 should stay at chance with the loss at ln 10 = 2.303 on every seed; "
    f"got accuracies {acc[0.25, False].round(3)}, final losses {flat.round(3)}"
)
assert all(h.diverged_at is not None and h.diverged_at <= 2 for h in blown), (
    f"without BatchNorm, init_scale=3 should diverge within 2 steps on every seed; got: {rescue[3.0, False].summary()}"
)
assert all(5e4 < h.loss[0] < 5e5 for h in blown), (
    f"initial loss at init_scale=3 without BatchNorm: expected 5e4 to 5e5, got {[f'{h.loss[0]:.2g}' for h in blown]}"
)
assert min(acc[0.25, True].min(), acc[3.0, True].min()) > 0.9, (
    f"with BatchNorm both bad scales should train on every seed (over 90%); "
    f"got {acc[0.25, True].round(3)} at 0.25 and {acc[3.0, True].round(3)} at 3"
)
assert 0.92 < acc[3.0, True].mean() < 0.98 and 0.95 < acc[1.0, True].mean() < 0.99, (
    f"mean accuracy with BatchNorm: expected 92-98% at init_scale=3 and 95-99% at init_scale=1; "
    f"got {acc[3.0, True].mean():.1%} and {acc[1.0, True].mean():.1%}"
)
assert acc[1.0, False].min() > 0.9, f"without BatchNorm, init_scale=1 should train on every seed: {acc[1.0, False]}"

# %% [markdown]
# ## 4 · Does BatchNorm prevent exploding gradients?
#
# The claim is everywhere (see *claim vs measurement* at the end). We measure it on the network of the
# prediction question, at initialisation, on 256 digits: the norm of $\partial L/\partial W_l$ for every
# layer, for a plain net without BatchNorm, the same with BatchNorm, and BatchNorm with residual connections
# (`x + block(x)` wherever the shapes match, i.e. every hidden block except the first). No training here, but
# each initialisation is still one random draw, so we measure 5 (seeds 0 to 4) of each network.

# %% tags=["nbval-ignore-output"]
L = 30
x256, y256 = data.x_train[:256], data.y_train[:256]
nets = {
    "plain, no BatchNorm": ModelConfig(depth=L, width=128),
    "plain + BatchNorm": ModelConfig(depth=L, width=128, batchnorm=True),
    "residual + BatchNorm": ModelConfig(depth=L, width=128, batchnorm=True, residual=True),
}
built = {name: config.build_seeds(SEEDS, data.image_shape) for name, config in nets.items()}
grads = {name: np.array([layer_grad_norms(net, x256, y256) for net in b]) for name, b in built.items()}
stds = {name: np.array([activation_stats(net, x256).std for net in b]) for name, b in built.items()}  # (seeds, layers)
names = built["plain + BatchNorm"][0].layer_names()
ratio = {name: g[:, 1] / g[:, L - 1] for name, g in grads.items()}
print(f"dense1 / dense29 at initialisation, {len(SEEDS)} seeds:")
for name, r in ratio.items():
    print(f"  {name:22}{r.min():6.3g} to {r.max():.3g}")

# %% [markdown]
# Measured early/last ratio (dense1 / dense29) over the 5 initialisations: 0.6 to 1.6 without BatchNorm, 166 to
# 195 with BatchNorm, 4.3 to 6.6 with BatchNorm and residual connections. The answer to the prediction is (c),
# for every initialisation. Without BatchNorm every hidden layer's gradient is within a factor of 3 of every
# other's.

# %% jupyter={"source_hidden": true}
# Check: with BatchNorm the early layers' gradients are over 100x the last hidden layer's, on every seed.
expected = {"plain, no BatchNorm": (0.4, 2), "plain + BatchNorm": (150, 210), "residual + BatchNorm": (3.5, 7.5)}
for name, (low, high) in expected.items():
    assert low < ratio[name].min() and ratio[name].max() < high, (
        f"{name}: dense1 / dense29 should be between {low} and {high} on every seed; got {ratio[name].round(2)}"
    )
g_plain = grads["plain, no BatchNorm"][:, 1:L]
spread = g_plain.max(1) / g_plain.min(1)
assert spread.max() < 3, f"without BatchNorm the hidden layers' gradients should be within 3x; got {spread}"
bn_nets = built["plain + BatchNorm"]
w_ratio = np.array([np.linalg.norm(net.kernels()[1]) / np.linalg.norm(net.kernels()[L - 1]) for net in bn_nets])
assert np.all(np.abs(w_ratio - 1) < 0.02), f"||W_1|| / ||W_29|| should be 1 within 2% on every seed: {w_ratio}"

# %% [markdown]
# **In notebook 01's terms.** The course measures an explosion by the scale-free ratio $\|\nabla W_l\|/\|W_l\|$.
# Every hidden kernel here has the same shape and the same initial scale, and $\|W_1\|$ and $\|W_{29}\|$ agree
# within 2% on every seed, so dense1 / dense29 above is also the ratio of the two layers' ratios: with BatchNorm,
# the first hidden layer's gradient is 166 to 195 times larger *for its weights* than the last one's.
# This is the second face of an explosion that notebook 01 announced. There, with weights too large, the
# forward signal grew by $s$ per layer and the backward one by $s$ the other way; in
# $\|\nabla W_l\| \approx \|h_{l-1}\|\,\|\delta_l\|$ the two cancelled, and every layer's ratio grew alike. Here
# BatchNorm holds the forward signal fixed, and the backward signal still grows per layer, as the theory below
# derives: nothing cancels it, and the ratio grows towards the input.
#
# The same as histograms (notebook 01 shows how to read them), for the BatchNorm network of seed 0: every hidden
# block's output has the same distribution, and the kernel gradients' histograms move right, towards larger
# values, the closer the layer is to the input.

# %%
values_bn = activations_and_grads(bn_nets[0], x256, y256)
plot_layer_histograms(values_bn, f"ReLU MLP + BatchNorm, depth {L}, width 128, seed 0, at initialisation, 256 digits")

# %% tags=["nbval-ignore-output"]
grad_medians = np.array([np.median(np.log10(np.abs(g[g != 0]))) for g in values_bn.grads[1:L]])
act_medians = np.array([np.median(np.log10(a[a > 0])) for a in values_bn.activations[1:L]])
grad_shift = -np.polyfit(np.arange(1, L), grad_medians, 1)[0]
bn_rate = math.sqrt(math.pi / (math.pi - 1))  # the growth per layer that the theory below derives, 1.211
act_shift = np.polyfit(np.arange(1, L), act_medians, 1)[0]
print(
    f"per layer towards the input, median log10 |dL/dW_l| grows by {grad_shift:.4f} "
    f"(theory log10 {bn_rate:.3f} = {np.log10(bn_rate):.4f}); median log10 |h_l| changes by {-act_shift:.4f}"
)

# %% [markdown]
# Towards the input, the gradients' histograms move right by 0.083 per layer on the log axis, the theory's
# $\log_{10} 1.211$; the outputs' histograms stay where they are (their medians move by less than 0.01 per layer).

# %% jupyter={"source_hidden": true}
# Check: the histograms' shifts per layer (one network at initialisation: exact up to rounding).
assert abs(grad_shift / np.log10(bn_rate) - 1) < 0.05, (
    f"expected {np.log10(bn_rate):.4f} per layer, got {grad_shift:.4f}"
)
assert abs(act_shift) < 0.01, f"the outputs' medians should stay put, they move by {act_shift:.4f} per layer"

# %% [markdown]
# ### Theory: why BatchNorm makes the backward pass explode (mean field)
#
# Yang et al. (ICLR 2019) work this out exactly for any batch size and activation. Here is the short
# version for ReLU, with a wide layer and a large batch. Layer $l$: $z = W h$ with
# $W_{ij} \sim \mathcal N(0, \sigma^2/N)$, then per unit $\hat z = \mathrm{BN}(z)$ ($\gamma = 1$, $\beta = 0$),
# then $h' = \mathrm{relu}(\hat z)$. Assumptions: width $N \to \infty$, batch $B$ large, and the usual
# mean-field *gradient independence* assumption (the $W^\top$ of the backward pass is treated as independent
# of the $W$ of the forward pass).
#
# **Forward.** $\hat z$ has mean 0 and variance 1 over the batch in every unit of every layer, and for a wide
# layer it is close to Gaussian, so $h' = \mathrm{relu}(\hat z)$ has $\mathbb E[h'^2] = \tfrac12$, mean $1/\sqrt{2\pi}$ and batch variance
# $\tfrac12 - \tfrac1{2\pi} = \tfrac{\pi-1}{2\pi} \approx 0.341$, at any depth and for any $\sigma$.
# The forward signal cannot explode or vanish.
#
# **Backward, one layer.**
# 1. ReLU: $g_{\hat z} = \mathrm{relu}'(\hat z)\odot g_{h'}$ keeps half of the entries:
#    $\mathbb E[g_{\hat z}^2] = \tfrac12\,\mathbb E[g_{h'}^2]$.
# 2. BatchNorm: one unit's batch vector is $\hat z = (z - \mu)/\sigma_z$, whose Jacobian is
#    $\frac{1}{\sigma_z}\big(I - \tfrac1B \mathbf 1\mathbf 1^\top - \tfrac1B \hat z \hat z^\top\big)$: divide by the
#    unit's batch std $\sigma_z$ and project out two of $B$ directions (the mean and $\hat z$ itself; a factor
#    $\approx (B-2)/B$, negligible for a large batch). So $\mathbb E[g_z^2] = \mathbb E[g_{\hat z}^2]/\sigma_z^2$.
# 3. Linear: $g_h = W^\top g_z$ sums $N$ terms of variance $\sigma^2/N$: $\mathbb E[g_h^2] = \sigma^2\,\mathbb E[g_z^2]$.
# 4. And $\sigma_z^2 = \sigma^2\,\mathrm{Var}_{\text{batch}}(h) = \sigma^2\,\tfrac{\pi-1}{2\pi}$.
#
# Together:
# $$\mathbb E[g_h^2] = \sigma^2 \cdot \frac{\tfrac12\,\mathbb E[g_{h'}^2]}{\sigma^2\,\tfrac{\pi-1}{2\pi}}
#   = \frac{\pi}{\pi-1}\;\mathbb E[g_{h'}^2] \approx 1.467\;\mathbb E[g_{h'}^2].$$
#
# $\sigma$ cancels: no initialisation scale removes the explosion, BatchNorm itself causes it (Yang et al.'s
# conclusion). The ReLU halves the gradient's second moment, as without BatchNorm; but BatchNorm then divides
# by the batch std of $z$, which is set by the *variance* of $h$ (0.341), not by its second moment (0.5) as
# the He initialisation assumes. The difference is the mean of the ReLU output, which BatchNorm subtracts.
#
# **Weight gradients.** $\partial L/\partial W_l = h_{l-1}^\top g_{z_l}$. The forward factor $h_{l-1}$ has
# the same statistics in every layer, so $\|\partial L/\partial W_l\|$ grows like the backward signal, by
# $\sqrt{\pi/(\pi-1)} \approx 1.211$ per layer towards the input. From dense29 back to dense1 that is 28
# factors: $1.211^{28} \approx 214$. (Without BatchNorm at `init_scale=1`, neither pass changes with depth and
# every kernel gets about the same gradient; the first block `dense0` sees raw pixels, not normalised ReLU
# outputs, and the head has no BatchNorm: both are left out of the fit.)

# %%
rate_theory = math.sqrt(math.pi / (math.pi - 1))
rate_batch = math.sqrt(math.pi / (math.pi - 1) * (256 - 2) / 256)  # with the (B - 2) / B factor, B = 256
std_theory = math.sqrt((math.pi - 1) / (2 * math.pi))
print(
    f"per-layer growth of ||dL/dW||, plain + BatchNorm: {rate_theory:.4f} (with the (B-2)/B factor: {rate_batch:.4f})"
)
print(
    f"dense1 / dense29, 28 factors: {rate_theory ** (L - 2):.0f} (with the (B-2)/B factor: {rate_batch ** (L - 2):.0f})"
)
print(f"std of every BatchNorm block's output: {std_theory:.3f}")

# %% tags=["nbval-ignore-output"]
g_bn = grads["plain + BatchNorm"]
rate_measured = ratio["plain + BatchNorm"] ** (1 / (L - 2))  # per seed: geometric mean of the 28 factors
std_bn = stds["plain + BatchNorm"]
print(f"measured per-layer growth: {rate_measured.min():.4f} to {rate_measured.max():.4f} over {len(SEEDS)} seeds")
print(f"measured dense1 / dense29: {ratio['plain + BatchNorm'].min():.0f} to {ratio['plain + BatchNorm'].max():.0f}")
print(f"measured std of the BatchNorm blocks' outputs: {std_bn.min():.3f} to {std_bn.max():.3f}")

# %% [markdown]
# Over the 5 initialisations the measured per-layer factor is 1.200 to 1.207, 0.3% to 0.9% below the 1.211
# predicted for an infinitely wide layer and a large batch. The $(B-2)/B$ factor (1.2064 at $B = 256$) lands
# inside the measured range, so what is left of the gap is no larger than the differences between
# initialisations; finite width (128 units) and non-Gaussian batch statistics would need more seeds or wider
# layers to be seen. Compounded over 28 layers: 166 to 195 measured, 214 predicted (191 with the $(B-2)/B$
# factor). The forward pass is flat, as promised: on every seed every block's output has std 0.58 to 0.63
# (theory $\sqrt{(\pi-1)/(2\pi)} = 0.584$; within 7%, slowly rising in the deepest layers).

# %% jupyter={"source_hidden": true}
# Check: theory values, and the measured growth and forward std on every seed.
assert abs(rate_theory - 1.2112) < 1e-4 and abs(rate_batch - 1.2064) < 1e-4, (
    f"theory per layer: expected 1.2112 (1.2064 with (B-2)/B), got {rate_theory:.4f} ({rate_batch:.4f})"
)
assert abs(rate_theory ** (L - 2) - 214) < 1 and abs(rate_batch ** (L - 2) - 191) < 1, (
    f"theory over 28 layers: expected 214 (191), got {rate_theory ** (L - 2):.1f} ({rate_batch ** (L - 2):.1f})"
)
assert 1.195 < rate_measured.min() and rate_measured.max() < rate_theory, (
    f"measured growth per layer: expected 1.195 to {rate_theory:.4f} on every seed, got {rate_measured.round(4)}"
)
assert rate_measured.min() < rate_batch < rate_measured.max(), (
    f"the (B-2)/B prediction {rate_batch:.4f} should lie inside the measured range {rate_measured.round(4)}"
)
assert np.allclose(std_bn, std_theory, rtol=0.075), (
    f"every block's output std should be within 7.5% of {std_theory:.3f}; got {std_bn.min():.3f} to {std_bn.max():.3f}"
)
assert (std_bn[:, -10:].mean(1) > std_bn[:, :10].mean(1)).all(), (
    f"on every seed the std should be higher in the last 10 layers than in the first 10; got "
    f"{std_bn[:, -10:].mean(1).round(3)} against {std_bn[:, :10].mean(1).round(3)}"
)

# %%
hidden = np.arange(1, L)
theory_bn = np.exp(np.log(g_bn[:, L - 1]).mean()) * rate_theory ** (L - 1 - hidden)
theory_plain = np.exp(np.log(grads["plain, no BatchNorm"][:, hidden]).mean())
fig, (ax_f, ax_b) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=90, layout="constrained")
plot_theory_vs_measurement(
    {name: (np.arange(L), stds[name]) for name in grads},
    ax=ax_f,
    layer_names=names[:L],
    ylabel="activation std (log scale)",
    title="forward: std of each block's output",
).get_legend().remove()  # the same three networks as on the right
plot_theory_vs_measurement(
    {name: (np.arange(L + 1), g) for name, g in grads.items()},
    {
        f"theory with BatchNorm: x{rate_theory:.3f} per layer": (hidden, theory_bn),
        "theory without BatchNorm: flat": (hidden, np.full(len(hidden), theory_plain)),
    },
    ax=ax_b,
    layer_names=names,
    ylabel="||dL/dW|| (log scale)",
    title="backward: ||dL/dW|| per layer, at initialisation",
).set_ylim(0.3, 300)
fig.legend(*ax_b.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8)
ax_b.get_legend().remove()  # one legend for both panels, below them
fig.suptitle(
    f"ReLU MLP, depth {L}, width 128, He init, 256 digits: BatchNorm keeps the forward pass flat, not the backward"
)
plt.show()

# %% [markdown]
# **What residual connections change.** With $x_k = x_{k-1} + \mathrm{relu}(\mathrm{BN}(W_k x_{k-1}))$ the skip
# path carries the gradient back unchanged, and each block only *adds* its branch's contribution. That
# contribution shrinks with depth: the branches add up, so the batch variance of $x_k$ grows about linearly
# in $k$ (the forward std in the left plot grows), and BatchNorm divides the branch's gradient by the std of
# its input. The per-layer factor falls from about 1.2 (average over the first 5 hidden layers) to about 1.01
# (last 10): a power-law growth, not a geometric one. A naive version of the calculation above (branch variances
# add up, $\mathrm{Var}(x_k) \approx (k+1)\,\tfrac{\pi-1}{2\pi}$, and each block multiplies the gradient's second
# moment by $1 + \tfrac{1}{2\mathrm{Var}(x_{k-1})}$) predicts 6.8 for dense1/dense29; we measure 4.3 to 6.6 over
# the seeds, so we use that estimate for the direction only. The head's large gradient (80 to 130, against about
# 1 without residual connections) is the other side of the same coin: the last block's output is large and not
# normalised.

# %% tags=["nbval-ignore-output"]
g_res = grads["residual + BatchNorm"]
first5 = (g_res[:, 1] / g_res[:, 6]) ** (1 / 5)
last10 = (g_res[:, L - 11] / g_res[:, L - 1]) ** (1 / 10)
naive = np.prod(np.sqrt(1 + math.pi / ((math.pi - 1) * np.arange(2, L))))
print("residual + BatchNorm, over the seeds:")
print(f"  mean layer-to-layer factor, dense1-6: {first5.min():.2f} to {first5.max():.2f}")
print(f"  mean layer-to-layer factor, dense19-29: {last10.min():.3f} to {last10.max():.3f}")
print(f"  dense1 / dense29: {ratio['residual + BatchNorm'].min():.1f} to {ratio['residual + BatchNorm'].max():.1f}")
print(f"    (naive estimate {naive:.1f})")
print(f"  head gradient: {g_res[:, L].min():.0f} to {g_res[:, L].max():.0f}")
print(f"    (plain + BatchNorm: {g_bn[:, L].min():.2f} to {g_bn[:, L].max():.2f})")

# %% jupyter={"source_hidden": true}
# Check: residual connections turn the geometric growth into a mild one, and enlarge the head's gradient.
assert abs(naive - 6.8) < 0.05 and ratio["residual + BatchNorm"].max() < naive, (
    f"the naive estimate ({naive:.2f}, expected 6.8) should lie above every seed's measured dense1 / dense29 "
    f"({ratio['residual + BatchNorm'].round(2)})"
)
assert 1.15 < first5.min() and first5.max() < 1.3 and 0.98 < last10.min() and last10.max() < 1.04, (
    f"the per-layer factor should fall from 1.15-1.3 (dense1-6) to 0.98-1.04 (dense19-29) on every seed; "
    f"got {first5.round(3)} and {last10.round(3)}"
)
assert 60 < g_res[:, L].min() and g_res[:, L].max() < 160 and g_bn[:, L].max() < 1.5, (
    f"head gradient: expected 60 to 160 with residual connections and below 1.5 without; "
    f"got {g_res[:, L].round(1)} and {g_bn[:, L].round(2)}"
)

# %% [markdown]
# ## 5 · Explore
#
# The panel trains the network for 300 steps (SGD with momentum, lr 0.02) and shows the run; the per-layer
# heat map starts with the gradients at initialisation. Try: `init_scale` 0.25 and 3 with `batchnorm` on
# and off (section 3); `depth` 30 with `batchnorm` on, then `residual` on; `residual` on with `batchnorm`
# off (the forward signal doubles at every block: He initialisation assumes no skip path).


# %%
def loss_and_profile(history, fig):
    """Left: the loss. Right: ||dL/dW|| per layer at step 0 (initialisation) and at the last finite step."""
    ax_loss, ax_prof = fig.subplots(1, 2)
    ax_loss.plot(np.where(np.isfinite(history.loss), history.loss, np.nan), color=COLORS["loss"], lw=1.2)
    ax_loss.set_yscale("log")
    ax_loss.set(title="training loss", xlabel="step", ylabel="loss (log scale)")
    if history.diverged_at is not None:
        ax_loss.axvline(
            history.diverged_at, color=COLORS["diverged"], ls="--", label=f"diverged at step {history.diverged_at}"
        )
        ax_loss.legend(fontsize=8)
    # The last step whose gradients are all finite (a diverged run's final row holds NaN/Inf).
    finite = [t for t in range(history.steps) if np.isfinite(history.layer_grad_norms[t]).all()]
    shown = sorted({0, finite[-1]}) if finite else [0]
    for t, color in zip(shown, COLORS.series(2), strict=False):
        label = "step 0 (initialisation)" if t == 0 else f"step {t}"
        plot_layer_profile(
            history.layer_grad_norms[t],
            history.layer_names,
            ax=ax_prof,
            label=label,
            color=color,
            title="||dL/dW|| per layer",
        )
    fig.suptitle(history.summary(), fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.3, top=0.85, wspace=0.3)


# %% tags=["nbval-ignore-output"]
explore = Panel(
    data,
    model=bn_config,
    config=sgd,
    controls=["depth", "batchnorm", "residual", "init_scale"],
    plot=loss_and_profile,
    title="BatchNorm explorer",
    figsize=(10, 3.8),
)
explore

# %% [markdown]
# ## Exercises
#
# **1.** Write BatchNorm's training-mode forward pass without looking at section 1.


# %%
def my_batchnorm(
    x, gamma, beta, eps=1e-5
): ...  # your code: normalise each unit (column) of x with its batch mean and variance, then gamma and beta


ok = ex.check_batchnorm(my_batchnorm)

# %% [markdown]
# **2.** Write `predict(model, x)` that returns the predicted labels (an integer array) for any batch `x`,
# even a batch of one example, without changing the model's running averages.

# %%
predict = ...  # your code: def predict(model, x): ...

ok = ex.check_predict(predict, runs.models[0], data)

# %% [markdown]
# **3.** A layer is followed by BatchNorm. You multiply its weights by 10. By what factor does the gradient
# of the loss with respect to those weights change? (A number.)

# %%
answer = ...  # your number

ok = ex.check_scale_factor(answer)

# %% [markdown]
# **4.** In a wide, plain BatchNorm-ReLU network at initialisation (large batch), by what factor does the
# norm of the weight gradient grow across 20 layers, going from the output towards the input? (A number;
# `math` is imported.)

# %%
answer = ...  # your number

ok = ex.check_growth(answer, layers=20)

# %% [markdown]
# ## Takeaways
#
# - BatchNorm normalises each unit with its **batch** statistics while training and its **running averages**
#   when evaluating. Forgetting `model.eval()`, or forgetting to keep the running averages, breaks a trained
#   model (here, on every one of 5 seeds: about 97% -> 11-14% for one-class batches, one label for every single
#   example, 15-40% for stale averages), and a big shuffled test batch hides the first bug (96-98%).
# - A layer followed by BatchNorm is scale-invariant: same output for $cW$, gradient divided by $c$, gradient
#   orthogonal to $W$. That is why BatchNorm rescues bad initialisation scales (chance -> 97-98% at
#   `init_scale=0.25`; divergence -> 95-97% at `init_scale=3`; 5 seeds each).
# - BatchNorm keeps the **forward** pass normalised, not the **backward** pass. In a deep plain ReLU net at
#   initialisation it makes the weight gradients grow by $\sqrt{\pi/(\pi-1)} \approx 1.21$ per layer towards
#   the input (Yang et al., 2019): 166x to 195x across 28 layers here. Residual connections turn this into a
#   mild power law (4x to 7x); the usual cures in practice are residual connections, warmup and clipping
#   (notebooks 03, 04, 07).
#
# ## Claim vs measurement
#
# > "Use Batch Normalization: normalizing each neuron's input prevents vanishing or exploding gradients."
#
# Half-true. Normalising each neuron's input does keep the forward activations from exploding or vanishing
# (std 0.58 to 0.63 in all 30 layers), and it makes training insensitive to the weights' scale (section 3). It does
# not prevent exploding gradients: in a 30-layer plain ReLU network with BatchNorm, the first layers' weight
# gradients are 166x to 195x larger than the last hidden layer's at initialisation (5 initialisations), against
# 0.6x to 1.6x without BatchNorm. With residual connections the ratio is 4x to 7x.
#
# > "Normalize both the model's inputs and outputs to avoid exploding gradients."
#
# Normalising the *inputs* (pixel values in [0, 1] here) is good practice, and it is what BatchNorm does
# inside the network, with the result above. "Normalising the outputs" has no clear meaning for a
# classifier: its outputs are logits, and the softmax that follows already is a normalisation. The
# gradient with respect to the logits is $p - y$, every entry in $[-1, 1]$ whatever the logits; what grows
# is the gradient deeper in the network (section 4, and notebook 01). Not measured in this notebook.
#
# **References.** Ioffe & Szegedy (2015), *Batch normalization*. Yang, Pennington, Rao, Sohl-Dickstein &
# Schoenholz (ICLR 2019), *A mean field theory of batch normalization*. He et al. (2015), *Delving deep into
# rectifiers* (He initialisation). van Laarhoven (2017), *L2 regularization versus batch and weight
# normalization*.
