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
from helpers.diagnostics import activation_stats, layer_grad_norms
from helpers.exercises import batchnorm as ex
from helpers.models import ModelConfig
from helpers.plots import COLORS, plot_layer_profile
from helpers.train import TrainConfig, evaluate, train
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
assert np.allclose(y.mean(0), 0, atol=1e-5) and np.allclose(y.std(0), 1, atol=1e-3)

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
assert max(train_diff, stats_diff, eval_diff) < 1e-5

# %% [markdown]
# ## 2 · Train mode vs eval mode: two classic bugs
#
# We train a BatchNorm MLP (10 hidden layers of 64 units) for 300 steps. Its linear layers carry no bias:
# BatchNorm subtracts the batch mean, which cancels any bias, and its shift $\beta$ takes the bias's place (as in
# ResNets). `helpers.train.evaluate` switches the model to `model.eval()`, so BatchNorm uses its running averages.

# %%
bn_config = ModelConfig(depth=10, width=64, batchnorm=True)
sgd = TrainConfig(optimizer="momentum", lr=0.02, steps=300)
model = bn_config.build(data.image_shape)
history = train(model, data, sgd)
acc_eval = evaluate(model, data.x_test, data.y_test)
print(history.summary())
print(f"test accuracy, eval mode (running averages): {acc_eval:.1%}")
assert acc_eval > 0.95

# %% [markdown]
# **Bug 1: evaluating with batch statistics** (forgetting `model.eval()`). In training mode each example's
# output depends on the other examples of its batch. With a large shuffled test batch the bug hides,
# because its statistics look like a training batch's. With a batch of one class, or a batch of one
# example, it does not. We work on copies (`nnx.clone`), because every forward pass in training mode also
# overwrites the running averages.


# %%
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
acc_whole = accuracy(predict_in_train_mode(model, whole)[0], whole)
labels, polluted = predict_in_train_mode(model, by_class)
acc_by_class = accuracy(labels, by_class)
labels_single = predict_in_train_mode(model, singles)[0]
acc_single, single_labels = accuracy(labels_single, singles), set(labels_single.tolist())
acc_polluted = evaluate(polluted, data.x_test, data.y_test)
print(f"train mode, whole test set in one batch: {acc_whole:.1%}")
print(f"train mode, one batch per class:         {acc_by_class:.1%}")
print(
    f"train mode, batches of one example:      {acc_single:.1%} (labels predicted for 25 images: {sorted(single_labels)})"
)
print(f"eval mode after those one-class batches overwrote the running averages: {acc_polluted:.1%}")

# %% [markdown]
# The whole test set in one batch still gets 97.5%: the bug is invisible in the usual check. One class per
# batch (25 images of each class) gets 11.2%: normalising within a batch of 3s removes exactly what all 3s
# share. A batch of one example normalises every unit to $0$, so BatchNorm outputs $\beta$ whatever the input
# and the network predicts the same label, 2, for each of the first 25 test images (right only for the three
# 2s among them: 12.0%). The one-class batches also overwrote the copy's running averages: in eval mode
# afterwards it gets 95.3% instead of 97.5%.

# %%
assert abs(acc_whole - 0.975) < 0.006 and abs(acc_by_class - 0.112) < 0.006 and abs(acc_eval - 0.975) < 0.006
assert single_labels == {2} and np.sum(data.y_test[:25] == 2) == 3 and abs(acc_single - 0.120) < 1e-9
assert abs(acc_polluted - 0.953) < 0.006 and acc_polluted < acc_eval

# %% [markdown]
# **Bug 2: stale running averages.** In a hand-written JAX training loop the running averages are state
# that the step must return and the loop must keep (in Flax Linen, the `batch_stats` collection returned by
# `apply(..., mutable=["batch_stats"])`; in NNX, the `nnx.BatchStat` variables of `nnx.split(model)`).
# A loop that keeps only the parameters evaluates with the initial averages (mean 0, variance 1). We
# simulate it: the trained parameters in a freshly built model.

# %%
stale = bn_config.build(data.image_shape)
nnx.update(stale, nnx.state(model, nnx.Param))  # the trained weights, but not the trained BatchStat
acc_stale = evaluate(stale, data.x_test, data.y_test)
first_mean = np.asarray(nnx.state(model, nnx.BatchStat)["first"]["norm"]["mean"][...])
print(f"stale running averages: {acc_stale:.1%} (vs {acc_eval:.1%} with the trained ones)")
print("layer 0, first 4 running means, trained:", np.round(first_mean[:4], 2), " stale: [0. 0. 0. 0.]")

# %% [markdown]
# Trained weights with stale averages: 35.4% test accuracy, from 97.5%. The fix for both bugs: `model.train()`
# for training steps, `model.eval()` for evaluation, and carry *all* of the model's state, not only `nnx.Param`.

# %%
assert abs(acc_stale - 0.354) < 0.006 and acc_eval - acc_stale > 0.5

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
#   (van Laarhoven, 2017). That is why weight decay on BatchNorm layers acts mostly as a learning-rate
#   control, not as a regulariser.
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
print(f"{'c':>5} {'loss':>8} {'||grad||':>9} {'c * ||grad||':>13}")
shifts = {}
for c in (0.1, 1.0, 10.0):
    loss_c, grad_c = loss_and_grad(c * W)
    print(
        f"{c:5g} {float(loss_c):8.4f} {float(jnp.linalg.norm(grad_c)):9.4f} {c * float(jnp.linalg.norm(grad_c)):13.4f}"
    )
    shifts[c] = abs(float(loss_c) - float(loss_1))
    assert abs(c * float(jnp.linalg.norm(grad_c)) / float(jnp.linalg.norm(grad_1)) - 1) < 1e-2
smallest_var = float((0.1 * x64 @ W).var(0).min())
print(
    f"at c = 0.1 the smallest unit variance is {smallest_var:.1e}; epsilon = 1e-5 shifts the loss by {shifts[0.1]:.3f}"
)
assert shifts[0.1] < 5e-3 and shifts[10.0] < 1e-4
cosines = jnp.sum(W * grad_1, 0) / (jnp.linalg.norm(W, axis=0) * jnp.linalg.norm(grad_1, axis=0))
print(f"largest |cos(W_j, grad_j)| over the 32 units: {float(jnp.abs(cosines).max()):.1e}")
assert float(jnp.abs(cosines).max()) < 1e-3

# %% [markdown]
# **BatchNorm lets a badly initialised network train.** The same 10-layer MLP, 300 steps of SGD with
# momentum, with the weights initialised 4x too small (`init_scale=0.25`) or 3x too large (`init_scale=3`),
# with and without BatchNorm.

# %%
runs = {}
for init_scale in (0.25, 1.0, 3.0):
    for batchnorm in (False, True):
        net = ModelConfig(depth=10, width=64, init_scale=init_scale, batchnorm=batchnorm).build(data.image_shape)
        h = train(net, data, sgd)
        runs[init_scale, batchnorm] = (h, evaluate(net, data.x_test, data.y_test))
print(f"{'init_scale':>10} {'batchnorm':>9} {'test acc':>8}  how it ended")
for (init_scale, batchnorm), (h, acc) in runs.items():
    print(f"{init_scale:10g} {batchnorm!s:>9} {acc:8.1%}  {h.summary()}")

# %% [markdown]
# Without BatchNorm, `init_scale=0.25` shrinks the signal by 4x per layer: the loss stays at
# $\ln 10 \approx 2.30$ and the test accuracy at 9.2% (chance). `init_scale=3` blows up the logits (initial loss
# 2.6e5) and the run diverges at step 1. With BatchNorm, the same initialisations reach 97.2% and 94.7%.
# Not completely indifferent: the head has no BatchNorm after it, and the $1/c$ gradients change the
# effective learning rate (97.5% at `init_scale=1`).

# %%
acc = {k: a for k, (h, a) in runs.items()}
assert abs(acc[0.25, False] - 0.092) < 0.006 and abs(runs[0.25, False][0].loss[-1] - math.log(10)) < 0.01
assert runs[3.0, False][0].diverged_at == 1 and abs(runs[3.0, False][0].loss[0] / 2.6e5 - 1) < 0.05
assert abs(acc[0.25, True] - 0.972) < 0.006 and abs(acc[3.0, True] - 0.947) < 0.006
assert abs(acc[1.0, True] - 0.975) < 0.006

# %% [markdown]
# ## 4 · Does BatchNorm prevent exploding gradients?
#
# The claim is everywhere (see *claim vs measurement* at the end). We measure it on the network of the
# prediction question, at initialisation, on 256 digits: the norm of $\partial L/\partial W_l$ for every
# layer, for a plain net without BatchNorm, the same with BatchNorm, and BatchNorm with residual connections
# (`x + block(x)` wherever the shapes match, i.e. every hidden block except the first).

# %%
L = 30
x256, y256 = data.x_train[:256], data.y_train[:256]
nets = {
    "plain, no BatchNorm": ModelConfig(depth=L, width=128),
    "plain + BatchNorm": ModelConfig(depth=L, width=128, batchnorm=True),
    "residual + BatchNorm": ModelConfig(depth=L, width=128, batchnorm=True, residual=True),
}
grads, stds = {}, {}
for name, config in nets.items():
    net = config.build(data.image_shape)
    grads[name] = layer_grad_norms(net, x256, y256)
    stds[name] = activation_stats(net, x256).std
names = net.layer_names()
print(f"{'':22}{'dense1':>8}{'dense29':>9}{'ratio':>8}")
for name, g in grads.items():
    print(f"{name:22}{g[1]:8.3g}{g[L - 1]:9.3g}{g[1] / g[L - 1]:8.3g}")

# %% [markdown]
# Measured early/last ratio (dense1 / dense29): 0.6 without BatchNorm, 176 with BatchNorm, 5.4 with
# BatchNorm and residual connections. The answer to the prediction is (c). Without BatchNorm every hidden
# layer's gradient is within a factor 1.9 of every other's.

# %%
ratio = {name: g[1] / g[L - 1] for name, g in grads.items()}
assert ratio["plain + BatchNorm"] > 100 and abs(ratio["plain + BatchNorm"] - 176) < 5
assert abs(ratio["plain, no BatchNorm"] - 0.6) < 0.05 and abs(ratio["residual + BatchNorm"] - 5.4) < 0.1
g_plain = grads["plain, no BatchNorm"][1:L]
assert abs(g_plain.max() / g_plain.min() - 1.9) < 0.05

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
g_bn = grads["plain + BatchNorm"]
rate_measured = (g_bn[1] / g_bn[L - 1]) ** (1 / (L - 2))  # geometric mean of the 28 layer-to-layer factors
hidden = np.arange(1, L)
theory_bn = g_bn[L - 1] * rate_theory ** (L - 1 - hidden)
theory_plain = np.full(len(hidden), np.exp(np.log(grads["plain, no BatchNorm"][hidden]).mean()))
print(f"per-layer growth of ||dL/dW||, plain + BatchNorm: theory {rate_theory:.3f}, measured {rate_measured:.3f}")
print(f"dense1 / dense29: theory {rate_theory ** (L - 2):.0f}, measured {g_bn[1] / g_bn[L - 1]:.0f}")
rate_batch = math.sqrt(math.pi / (math.pi - 1) * (256 - 2) / 256)  # with the (B - 2) / B factor, B = 256
print(f"per-layer growth with the (B-2)/B factor: {rate_batch:.4f}")
print(
    f"forward: std of every BatchNorm block's output {stds['plain + BatchNorm'].min():.3f} to "
    f"{stds['plain + BatchNorm'].max():.3f} (theory {math.sqrt((math.pi - 1) / (2 * math.pi)):.3f})"
)

# %% [markdown]
# Measured 1.203 per layer against 1.211 predicted: 0.7% apart. The $(B-2)/B$ factor closes a little over
# half of the gap (1.2064 at $B = 256$); finite width (128 units) and the non-Gaussian batch statistics are the
# usual suspects for the rest. Compounded over 28 layers the 0.7% becomes 176 measured vs 214 predicted. The forward
# pass is flat, as promised: the blocks' outputs have std 0.580 to 0.625 (theory $\sqrt{(\pi-1)/(2\pi)} = 0.584$;
# within 7%, slowly rising in the deepest layers).

# %%
assert abs(1 - rate_measured / rate_theory - 0.007) < 0.001 and abs(rate_measured - 1.203) < 0.002
assert abs(rate_theory - 1.211) < 0.001 and abs(rate_theory ** (L - 2) - 214) < 1
assert abs(rate_batch - 1.2064) < 1e-4 and 0.5 < (rate_theory - rate_batch) / (rate_theory - rate_measured) < 0.65
assert np.allclose(stds["plain + BatchNorm"], math.sqrt((math.pi - 1) / (2 * math.pi)), rtol=0.075)
assert abs(stds["plain + BatchNorm"].min() - 0.580) < 0.002 and abs(stds["plain + BatchNorm"].max() - 0.625) < 0.002

# %%
fig, (ax_f, ax_b) = plt.subplots(1, 2, figsize=(10.5, 4.6), layout="constrained")
colors = COLORS.series(3)
for (name, g), color in zip(grads.items(), colors, strict=True):
    ax_f.plot(np.arange(L), stds[name], "o-", ms=3, lw=1, color=color, label=name)
    plot_layer_profile(
        g, names, ax=ax_b, label=name, color=color, title="backward: ||dL/dW|| per layer, at initialisation"
    )
ax_b.plot(
    hidden,
    theory_bn,
    "--",
    color=COLORS["theory"],
    lw=1.5,
    label=f"theory with BatchNorm: x{rate_theory:.3f} per layer",
)
ax_b.plot(hidden, theory_plain, ":", color=COLORS["theory"], lw=1.5, label="theory without BatchNorm: flat")
ax_b.set_ylim(0.3, 300)
ax_b.get_legend().remove()  # one legend for both panels, below them
ax_f.set_xticks(range(0, L, 3), names[0:L:3], rotation=45, ha="right")
ax_f.set_yscale("log")
ax_f.set_title("forward: std of each block's output")
ax_f.set_xlabel("layer (input -> output)")
ax_f.set_ylabel("activation std (log scale)")
fig.legend(*ax_b.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8)
fig.suptitle(
    f"ReLU MLP, depth {L}, width 128, He init, 256 digits: BatchNorm keeps the forward pass flat, not the backward"
)
plt.show()

# %% [markdown]
# **What residual connections change.** With $x_k = x_{k-1} + \mathrm{relu}(\mathrm{BN}(W_k x_{k-1}))$ the skip
# path carries the gradient back unchanged, and each block only *adds* its branch's contribution. That
# contribution shrinks with depth: the branches add up, so the batch variance of $x_k$ grows about linearly
# in $k$ (the forward std in the left plot grows), and BatchNorm divides the branch's gradient by the std of
# its input. The per-layer factor falls from 1.20 (average over the first 5 hidden layers) to 1.02 (last
# 10): a power-law growth, not a geometric one. A naive version of the calculation above (branch variances
# add up, $\mathrm{Var}(x_k) \approx (k+1)\,\tfrac{\pi-1}{2\pi}$, and each block multiplies the gradient's second
# moment by $1 + \tfrac{1}{2\mathrm{Var}(x_{k-1})}$) predicts 6.8 for dense1/dense29; we measure 5.4, so we use
# that estimate for the direction only. The head's large gradient (122, against 0.76 without residual
# connections) is the other side of the same coin: the last block's output is large and not normalised.

# %%
g_res = grads["residual + BatchNorm"]
first5, last10 = (g_res[1] / g_res[6]) ** (1 / 5), (g_res[L - 11] / g_res[L - 1]) ** (1 / 10)
print(f"residual + BatchNorm, mean layer-to-layer factor: dense1-6 {first5:.2f}, dense19-29 {last10:.2f}")
print(f"head gradient: {g_res[L]:.3g} (plain + BatchNorm: {g_bn[L]:.3g})")
naive = np.prod(np.sqrt(1 + math.pi / ((math.pi - 1) * np.arange(2, L))))
print(f"dense1 / dense29: naive estimate {naive:.1f}, measured {g_res[1] / g_res[L - 1]:.1f}")
assert abs(naive - 6.8) < 0.05 and abs(g_res[1] / g_res[L - 1] - 5.4) < 0.05
assert abs(g_res[L] - 122) < 0.6 and abs(g_bn[L] - 0.76) < 0.01
assert abs(first5 - 1.20) < 0.01 and abs(last10 - 1.02) < 0.01

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

ok = ex.check_predict(predict, model, data)

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
#   model (here 97.5% -> 11.2% for one-class batches, one label for every single example, 35.4% for stale
#   averages), and a big shuffled test batch hides the first bug (97.5%).
# - A layer followed by BatchNorm is scale-invariant: same output for $cW$, gradient divided by $c$, gradient
#   orthogonal to $W$. That is why BatchNorm rescues bad initialisation scales (9.2% -> 97.2% at
#   `init_scale=0.25`; divergence -> 94.7% at `init_scale=3`).
# - BatchNorm keeps the **forward** pass normalised, not the **backward** pass. In a deep plain ReLU net at
#   initialisation it makes the weight gradients grow by $\sqrt{\pi/(\pi-1)} \approx 1.21$ per layer towards
#   the input (Yang et al., 2019): 176x across 28 layers here. Residual connections turn this into a mild
#   power law (5.4x); the usual cures in practice are residual connections, warmup and clipping
#   (notebooks 03, 04, 07).
#
# ## Claim vs measurement
#
# > "Use Batch Normalization: normalizing each neuron's input prevents vanishing or exploding gradients."
#
# Half-true. Normalising each neuron's input does keep the forward activations from exploding or vanishing
# (std 0.58 to 0.63 in all 30 layers), and it makes training insensitive to the weights' scale (section 3). It does
# not prevent exploding gradients: in a 30-layer plain ReLU network with BatchNorm, the first layers' weight
# gradients are 176x larger than the last hidden layer's at initialisation, against 0.6x without BatchNorm.
# With residual connections the ratio is 5.4x.
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
