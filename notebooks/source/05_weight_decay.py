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
# # 05 · L2 regularization and weight decay
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/taming-gradients/taming-gradients/blob/main/notebooks/05_weight_decay.ipynb)
#
# L2 regularization adds $\tfrac{\lambda}{2}\|W\|^2$ to the loss; weight decay shrinks the weights directly. After
# this notebook you can say when the two are the same (plain SGD) and why they are not with Adam (Loshchilov &
# Hutter 2019), predict how fast each one shrinks a weight, and tell what they do against exploding gradients
# (little, and only over many steps) apart from what they are for (overfitting).

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
from helpers.exercises import weight_decay as ex
from helpers.models import ModelConfig
from helpers.plots import COLORS, compare_histories, plot_layer_profile, series
from helpers.train import TrainConfig, evaluate, train
from helpers.widgets import panel

data = load_digits(seed=0)
NET = ModelConfig(depth=8, width=64)  # 8 ReLU layers, He initialisation: trains well
EXPLODING = NET.replace(init_scale=2.0)  # the same with weights twice He's scale: 2^8 = 256 times the signal
print(f"{len(data.x_train)} training and {len(data.x_test)} test digits")
print("network:", NET)

# %% [markdown]
# ## Predict first
#
# 1. Plain SGD, once with `l2 = 0.01` (added to the loss) and once with `weight_decay = 0.01` (decoupled). After
#    300 steps, how different are the two networks' weights?
# 2. Adam with `lr = 0.01` and a weight that the data never touches (its data gradient is 0), starting at 1.
#    After 50 steps, is it smaller with L2 ($\lambda = 0.1$) or with decoupled weight decay (0.1)? What if
#    $\lambda$ were 1 instead?
# 3. The 8-layer network with weights twice He's scale makes SGD (`lr = 0.05`) diverge at step 2. Which L2
#    strength prevents that?
#
# The answers are measured in sections 1, 2 and 3.

# %% [markdown]
# ## 1. Two ways to shrink weights, by hand
#
# **L2 regularization (coupled).** Minimise $L(W) + \tfrac{\lambda}{2}\|W\|^2$. The gradient becomes
# $g + \lambda W$, and the optimizer sees that sum: whatever it does to gradients (momentum, Adam's per-coordinate
# normalisation, clipping) it also does to the $\lambda W$ term.
#
# **Decoupled weight decay.** Let the optimizer turn $g$ into a direction $u(g)$, then shrink the weights
# separately: $W \leftarrow W - \text{lr}\,\big(u(g) + \text{wd}\cdot W\big)$. This is `optax.adamw`,
# PyTorch's `AdamW` and `helpers.train`'s `weight_decay`: the decay is multiplied by the learning rate. (In
# Loshchilov & Hutter's paper the decay is multiplied only by the schedule factor $\eta_t$, not by Adam's
# $\alpha$; with a constant schedule their $\lambda$ is our $\text{lr}\cdot\text{wd}$.)
#
# For SGD, $u(g) = g$ and both are $W \leftarrow W - \text{lr}\,g - \text{lr}\,\lambda W$: identical when
# $\lambda = \text{wd}$. For Adam, $u(g) = \hat m / (\sqrt{\hat v} + \epsilon)$ with $\hat m$, $\hat v$ running
# averages of $g$ and $g^2$, so with L2 the term $\lambda W$ is divided, coordinate by coordinate, by the RMS of
# that coordinate's recent gradients. In Optax both are chains of the same three pieces, in a different order:


# %%
def with_l2(inner, lr, l2):
    """Coupled: l2 * W joins the gradient *before* the optimizer's own scaling `inner`."""
    return optax.chain(optax.add_decayed_weights(l2), inner, optax.scale(-lr))


def with_decay(inner, lr, weight_decay):
    """Decoupled: weight_decay * W is added *after* `inner`; the whole update is then scaled by -lr."""
    return optax.chain(inner, optax.add_decayed_weights(weight_decay), optax.scale(-lr))


def run_updates(tx, params, grads_list):
    """The updates `tx` makes for a list of gradients, applying each one (compiled once per `tx`)."""
    update = jax.jit(tx.update)
    state, updates = tx.init(params), []
    for g in grads_list:
        u, state = update(g, state, params)
        params = optax.apply_updates(params, u)
        updates.append(u)
    return updates


def max_abs_diff(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


# %% [markdown]
# Real gradients: the 8-layer network on 5 batches of 64 digits.

# %%
model = NET.build(data.image_shape, data.num_classes)
graphdef, params = nnx.split(model)


def loss_fn(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, params)(x), y).mean()


grad_fn = jax.jit(jax.grad(loss_fn))
grads_list = [grad_fn(params, data.x_train[i : i + 64], data.y_train[i : i + 64]) for i in range(0, 320, 64)]
lr, lam = 0.01, 0.1
sgd = {
    "l2": run_updates(with_l2(optax.identity(), lr, lam), params, grads_list),
    "decay": run_updates(with_decay(optax.identity(), lr, lam), params, grads_list),
}
adam = {
    "l2": run_updates(with_l2(optax.scale_by_adam(), lr, lam), params, grads_list),
    "decay": run_updates(with_decay(optax.scale_by_adam(), lr, lam), params, grads_list),
    "optax.adamw": run_updates(optax.adamw(lr, weight_decay=lam), params, grads_list),
}
sgd_diff = max(max_abs_diff(a, b) for a, b in zip(sgd["l2"], sgd["decay"], strict=True))
adamw_diff = max(max_abs_diff(a, b) for a, b in zip(adam["decay"], adam["optax.adamw"], strict=True))
adam_rel = [
    float(optax.tree.norm(optax.tree.sub(a, b)) / optax.tree.norm(b))
    for a, b in zip(adam["l2"], adam["decay"], strict=True)
]
print(f"SGD, 5 steps: largest difference between the L2 and the decoupled updates: {sgd_diff:.1e}")
print(f"Adam, our decoupled chain vs optax.adamw: largest difference {adamw_diff:.1e}")
print("Adam, L2 vs decoupled: ||u_L2 - u_decoupled|| / ||u_decoupled|| per step:", np.round(adam_rel, 2))

# %% [markdown]
# SGD: identical updates, to the last bit. Our decoupled Adam chain is `optax.adamw`, also to the last bit. Adam
# with L2 and Adam with decoupled decay differ from the first step on, by more than the update's own length
# (130 % to 145 %). Where does the difference come from? Look at the coordinates whose data gradient is exactly 0 (dead ReLUs give zero
# columns, always-blank pixels zero rows of the first kernel):

# %%
g0, u_l2, u_dec = (
    jnp.concatenate([x.ravel() for x in jax.tree.leaves(t)]) for t in (grads_list[0], adam["l2"][0], adam["decay"][0])
)
w0 = jnp.concatenate([x.ravel() for x in jax.tree.leaves(params)])
zero = (g0 == 0) & (w0 != 0)
step_l2, step_dec = float(jnp.median(jnp.abs(u_l2[zero]))), float(jnp.median(jnp.abs(u_dec[zero])))
expected_dec = float(jnp.median(lr * lam * jnp.abs(w0[zero])))
print(f"{float(zero.mean()):.0%} of the weights have a data gradient of exactly 0 at this batch")
print(
    f"their first Adam step (median |u|): with L2 {step_l2:.4f}; decoupled {step_dec:.6f} (lr * wd * |W|: {expected_dec:.6f})"
)
assert sgd_diff == 0 and adamw_diff == 0 and abs(min(adam_rel) - 1.3) < 0.01 and abs(max(adam_rel) - 1.45) < 0.01
assert abs(float(zero.mean()) - 0.24) < 0.005
assert abs(step_l2 - lr) < 1e-6 and 80 < lr / step_dec < 90

# %% [markdown]
# With L2, Adam's first step divides $\lambda W$ by its own size: every such weight moves by exactly `lr` = 0.01
# towards zero, whatever $\lambda$ is. With decoupled decay it moves by $\text{lr}\cdot\text{wd}\cdot|W|$,
# 85 times less here (median). A quarter of the weights (24 %) are in that situation at this batch.
#
# ### Theory vs measurement: how fast does each one shrink a weight?
#
# Two kinds of weights, Adam with `lr = 0.01` and strength 0.1, starting at $w = 1$:
#
# - **Untouched** (data gradient 0). Decoupled: $w_t = (1 - \text{lr}\cdot\text{wd})^t$. L2: the only gradient is
#   $\lambda w$, and Adam is invariant to the scale of the gradient (up to $\epsilon$), so **the trajectory does
#   not depend on $\lambda$ at all**; it starts at one step of `lr` per step.
# - **Busy** (a noisy data gradient with RMS $G = 10$ and mean 0, so the data do not care where $w$ is). Decoupled:
#   on average the same $(1 - \text{lr}\cdot\text{wd})^t$. L2: $\sqrt{\hat v} \approx G$, so the decay term is
#   divided by $G$: $\mathbb{E}[w_t] \approx e^{-\text{lr}\,\lambda\, t / G}$, 10 times slower.
#
# Weights with large gradients are decayed less under L2 with Adam, and weights with none are decayed at a rate
# set by `lr` alone: the reason Loshchilov & Hutter (2019) proposed AdamW.

# %%
T, G, N_BUSY = 1000, 10.0, 2000


def shrink(tx, seed=0):
    """Adam-family `tx` on N_BUSY busy weights (noisy gradient, RMS G) and one untouched weight, all from 1."""
    w = {"busy": jnp.ones(N_BUSY), "untouched": jnp.ones(1)}

    def step(carry, key):
        w, state = carry
        g = {"busy": G * jax.random.normal(key, (N_BUSY,)), "untouched": jnp.zeros(1)}
        u, state = tx.update(g, state, w)
        w = optax.apply_updates(w, u)
        return (w, state), (w["busy"].mean(), w["untouched"][0])

    keys = jax.random.split(jax.random.key(seed), T)
    _, (busy, untouched) = jax.jit(lambda c: jax.lax.scan(step, c, keys))((w, tx.init(w)))
    return np.asarray(busy), np.asarray(untouched)


t = np.arange(1, T + 1)
paths = {"decoupled": shrink(with_decay(optax.scale_by_adam(), lr, lam))}
for l2 in (0.01, 0.1, 1.0):
    paths[f"L2 {l2:g}"] = shrink(with_l2(optax.scale_by_adam(), lr, l2))
theory = {"decoupled": (1 - lr * lam) ** t, "L2 busy": np.exp(-lr * lam * t / G)}

fig, (ax_b, ax_u) = plt.subplots(1, 2, figsize=(11, 4), dpi=90, layout="constrained")
every = slice(19, None, 40)
ax_b.plot(t[every], paths["decoupled"][0][every], "o", ms=4, color=COLORS["measured"], label="decoupled 0.1: measured")
ax_b.plot(t, theory["decoupled"], "--", color=COLORS["measured"], label="theory (1 - lr wd)^t")
ax_b.plot(t[every], paths["L2 0.1"][0][every], "s", ms=4, color=COLORS["grad_norm"], label="L2 0.1: measured")
ax_b.plot(t, theory["L2 busy"], "--", color=COLORS["grad_norm"], label="theory exp(-lr l2 t / G)")
ax_b.set(
    xlabel="step",
    ylabel="mean weight",
    ylim=(0, 1.05),
    title=f"busy weights (gradient RMS G = {G:g}), mean of {N_BUSY}",
)
ax_b.legend(fontsize=8)
ax_u.plot(t[every], paths["decoupled"][1][every], "o", ms=4, color=COLORS["measured"], label="decoupled 0.1: measured")
ax_u.plot(t, theory["decoupled"], "--", color=COLORS["measured"], label="theory (1 - lr wd)^t")
for (name, marker), color in zip(
    [("L2 0.01", "v"), ("L2 0.1", "s"), ("L2 1", "^")], series(3)[1:] + [COLORS["clipped"]], strict=True
):
    ax_u.plot(t[:200:8], paths[name][1][:200:8], marker, ms=4, ls="", color=color, label=f"{name}: measured")
ax_u.plot(t[:100], 1 - lr * t[:100], ":", color=COLORS["theory"], label="initial rate: lr per step")
ax_u.set(xlabel="step", ylabel="weight", ylim=(-0.05, 1.05), title="a weight the data never touches")
ax_u.legend(fontsize=8)
fig.suptitle(f"Adam, lr = {lr}: L2 (coupled) vs decoupled weight decay")
plt.show()

# %%
for name, (busy, untouched) in paths.items():
    print(
        f"{name:10s}: busy mean at step {T}: {busy[-1]:.3f}; untouched weight at steps 50, 100, 1000: "
        f"{untouched[49]:.3f}, {untouched[99]:.3f}, {untouched[-1]:.3f}"
    )
print(f"theory: decoupled {theory['decoupled'][-1]:.3f}, L2 busy {theory['L2 busy'][-1]:.3f}")

# %% [markdown]
# - Busy weights: decoupled decay brings their mean to 0.368 after 1000 steps, as $(1-10^{-3})^{1000}$ predicts;
#   L2 only to 0.90, against the predicted $e^{-0.01} = 0.905$.
# - The untouched weight: decoupled decay again follows $(1 - \text{lr}\cdot\text{wd})^t$ exactly. With L2 it is
#   at 0.54 after 50 steps and 0.22 after 100, the same for $\lambda$ = 0.01, 0.1 and 1: the L2 strength does not
#   matter. It starts at `lr` per step and then slows down, because $\hat v$ averages over the last ~1000 steps
#   ($\beta_2 = 0.999$) and still remembers the larger gradients of the start.

# %%
assert np.max(np.abs(paths["decoupled"][1] - theory["decoupled"])) < 1e-4
assert abs(paths["decoupled"][0][-1] - theory["decoupled"][-1]) < 0.01
assert abs(paths["L2 0.1"][0][-1] - theory["L2 busy"][-1]) < 0.01
assert abs(paths["L2 0.1"][1][49] - 0.54) < 0.01 and abs(paths["L2 0.1"][1][99] - 0.22) < 0.01
for l2 in ("0.01", "1"):
    assert np.max(np.abs(paths[f"L2 {l2}"][1] - paths["L2 0.1"][1])) < 1e-3
assert abs(paths["L2 0.1"][1][0] - (1 - lr)) < 1e-5

# %% [markdown]
# ## 2. On a real network, over long training
#
# ### SGD: the same thing twice
#
# `helpers.train` with `l2 = 0.01` and with `weight_decay = 0.01`, plain SGD, 300 steps. (`helpers.train` applies
# both to the weight kernels only, not to the biases, a common choice; `optax.adamw` alone decays everything.)

# %%
nets = {}
for name, knob in [("l2", dict(l2=0.01)), ("weight_decay", dict(weight_decay=0.01))]:
    nets[name] = NET.build(data.image_shape, data.num_classes)
    train(nets[name], data, TrainConfig(optimizer="sgd", lr=0.05, steps=300, **knob))
diff = max_abs_diff(nnx.state(nets["l2"], nnx.Param), nnx.state(nets["weight_decay"], nnx.Param))
print(f"largest difference between the two networks' parameters after 300 steps: {diff:.1e}")
assert diff == 0

# %% [markdown]
# Identical, bit for bit. (With momentum or clipping they would not be: the L2 term would be accumulated in the
# momentum buffer, or clipped along with the gradient. Section 3 measures the second.)
#
# ### Adam: the same number means different things
#
# Adam, `lr = 1e-3`, 3 000 steps (about 130 passes over the 1 438 training digits), four runs: nothing,
# `l2 = 0.01`, `weight_decay = 0.01` and `weight_decay = 0.1`.

# %%
ADAM = TrainConfig(optimizer="adam", lr=1e-3, steps=3000)
runs = {}
for name, knob in [
    ("none", {}),
    ("l2 0.01", dict(l2=0.01)),
    ("weight_decay 0.01", dict(weight_decay=0.01)),
    ("weight_decay 0.1", dict(weight_decay=0.1)),
]:
    net = NET.build(data.image_shape, data.num_classes)
    h = train(net, data, ADAM.replace(**knob))
    runs[name] = dict(
        history=h,
        kernel_norms=np.array([float(jnp.linalg.norm(k)) for k in net.kernels()]),
        train_acc=evaluate(net, data.x_train, data.y_train),
        test_acc=evaluate(net, data.x_test, data.y_test),
    )
init_norms = np.array([float(jnp.linalg.norm(k)) for k in model.kernels()])
print("run                 ||W|| dense0, head   grad norm (median, last 200 steps)   final loss   train acc   test acc")
for name, run in runs.items():
    h = run["history"]
    print(
        f"{name:18s}  {run['kernel_norms'][0]:6.2f} {run['kernel_norms'][-1]:6.2f}   {np.median(h.grad_norm[-200:]):12.3g}"
        f"                      {h.loss[-100:].mean():10.2g}   {run['train_acc']:9.3f}   {run['test_acc']:8.3f}"
    )
print(f"at initialisation   {init_norms[0]:6.2f} {init_norms[-1]:6.2f}")

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.8), dpi=90, layout="constrained")
for (name, run), color in zip(runs.items(), series(len(runs)), strict=True):
    plot_layer_profile(
        run["kernel_norms"],
        model.layer_names(),
        ax=ax,
        label=name,
        color=color,
        ylabel="||W|| (log scale)",
        title="kernel norms after 3 000 Adam steps",
    )
ax.plot(np.arange(len(init_norms)), init_norms, "k:", lw=1.5, label="at initialisation")
ax.legend(fontsize=8)
plt.show()
compare_histories({name: run["history"] for name, run in runs.items()}, title="Adam, lr 1e-3: loss and gradient norm")

# %% [markdown]
# - **Same number, different strength.** `weight_decay = 0.01` barely touches the weights: the first kernel's
#   norm goes from 11.7 (no decay) to 11.4, the factor $(1 - 10^{-3}\cdot 0.01)^{3000} = 0.97$ that decay alone
#   predicts. `l2 = 0.01` shrinks the same kernel to 3.5. Late in training the data gradients are tiny
#   (median norm 0.0014 without regularization, training loss about $2\cdot10^{-5}$), so the L2 term dominates,
#   and Adam turns it into steps of about `lr` towards zero: the untouched weight of section 1.
# - **Gradient norms.** Without regularization the gradient norm falls to 0.0014: the network memorises the
#   training set. With L2 it stays near 1: at the minimum of $L + \tfrac{\lambda}{2}\|W\|^2$ the data gradient
#   balances $-\lambda W$ instead of vanishing. (`History.grad_norm` includes the L2 term.) L2 does not make
#   gradients small; at the end of training it keeps them large.
# - **Accuracy.** Every run fits the training set (100 % but 99.9 % for L2), and the test accuracies are 96.9 %
#   to 98.9 %, the best with `weight_decay = 0.1`: that is what L2 and weight decay are for (section 4).

# %%
assert (
    abs(runs["none"]["kernel_norms"][0] - 11.7) < 0.05
    and abs(runs["weight_decay 0.01"]["kernel_norms"][0] - 11.4) < 0.05
)
assert abs(runs["l2 0.01"]["kernel_norms"][0] - 3.5) < 0.05
ratio = runs["weight_decay 0.01"]["kernel_norms"][0] / runs["none"]["kernel_norms"][0]
assert abs(ratio - (1 - 1e-3 * 0.01) ** 3000) < 0.01
assert abs(np.median(runs["none"]["history"].grad_norm[-200:]) - 0.0014) < 1e-4
assert abs(runs["none"]["history"].loss[-100:].mean() - 2e-5) < 0.5e-5
assert 0.7 < np.median(runs["l2 0.01"]["history"].grad_norm[-200:]) < 1.3
assert all(v["train_acc"] >= 0.999 for v in runs.values())
assert (
    abs(min(v["test_acc"] for v in runs.values()) - 0.969) < 0.001
    and abs(runs["weight_decay 0.1"]["test_acc"] - 0.989) < 0.001
)

# %% [markdown]
# ## 3. What L2 does, and does not do, against explosion
#
# ### It does not stop a divergence
#
# The network with weights twice He's scale, plain SGD, `lr = 0.05`, with L2 from 0 to 3 (and the same values
# as decoupled weight decay):

# %%
strengths = [0.0, 1e-3, 1e-2, 0.1, 1.0, 3.0]
first = {}
for knob in ("l2", "weight_decay"):
    for value in strengths:
        h = train(
            EXPLODING.build(data.image_shape, data.num_classes), data, TrainConfig(lr=0.05, steps=100, **{knob: value})
        )
        first[knob, value] = h
net = EXPLODING.build(data.image_shape, data.num_classes)
w_norm = float(optax.tree.norm(nnx.state(net, nnx.Param)))
g_norm = first["l2", 0.0].grad_norm[0]
for knob in ("l2", "weight_decay"):
    print(f"{knob:12s}: diverged at step", [first[knob, v].diverged_at for v in strengths], "for", strengths)
print(
    f"step 0: ||gradient|| = {g_norm:.0f}, ||W|| = {w_norm:.1f}: the L2 term l2 * ||W|| is "
    f"{1.0 * w_norm / g_norm:.1%} of the gradient at l2 = 1"
)
assert all(first[k, v].diverged_at == 2 for k in ("l2", "weight_decay") for v in strengths)

# %% [markdown]
# Every run diverges at step 2, even at $\lambda = 3$, which shrinks every weight by 15 % per step. The
# explosion takes two steps; weight decay removes a fraction $\text{lr}\cdot\lambda$ of the weights per step, and
# the L2 gradient $\lambda W$ is 4 % of the data gradient even at $\lambda = 1$.
#
# ### Over many steps it shrinks the amplification, if it is decoupled from clipping
#
# Clip the gradient to norm 1 (notebook 04) so that the network trains, and add decay. ReLU is positively
# homogeneous, so with zero biases multiplying every kernel by $(1 - \text{lr}\cdot\text{wd})$ multiplies the
# last hidden layer's output by $(1 - \text{lr}\cdot\text{wd})^8$. If decay were the only thing changing the
# weights' scale, after $T$ steps the network's amplification (RMS of the last hidden layer / RMS of the input)
# would be that of the run without decay times $(1 - \text{lr}\cdot\text{wd})^{8T}$. Coupled L2 goes through
# the clipping: when the gradient norm is in the hundreds, its $\lambda W$ is scaled down with it.

# %%
xb = jnp.asarray(data.x_train[:256])


def amplification(net):
    """RMS of the last hidden layer's output over RMS of the input, for 256 digits."""
    return float(jnp.sqrt(jnp.mean(net.hidden(xb)[-1] ** 2)) / jnp.sqrt(jnp.mean(xb**2)))


CLIPPED = TrainConfig(lr=0.05, steps=600, clip_norm=1.0)
decays = [1e-3, 3e-3, 1e-2, 3e-2, 0.1]
amp, acc = {}, {}
for knob, value in [("weight_decay", 0.0)] + [(k, v) for k in ("weight_decay", "l2") for v in decays]:
    net = EXPLODING.build(data.image_shape, data.num_classes)
    train(net, data, CLIPPED.replace(**{knob: value}))
    amp[knob, value], acc[knob, value] = amplification(net), evaluate(net, data.x_test, data.y_test)
amp_init = amplification(EXPLODING.build(data.image_shape, data.num_classes))
predicted = {v: amp["weight_decay", 0.0] * (1 - CLIPPED.lr * v) ** (8 * CLIPPED.steps) for v in decays}

fig, ax = plt.subplots(figsize=(7, 4), dpi=90, layout="constrained")
fine = np.logspace(-3, -1, 50)
ax.plot(
    fine,
    amp["weight_decay", 0.0] * (1 - CLIPPED.lr * fine) ** (8 * CLIPPED.steps),
    "--",
    color=COLORS["theory"],
    label="theory: decay alone, (1 - lr wd)^(8T) x no-decay run",
)
ax.plot(
    decays,
    [amp["weight_decay", v] for v in decays],
    "o",
    color=COLORS["measured"],
    label="weight_decay (decoupled): measured",
)
ax.plot(
    decays,
    [amp["l2", v] for v in decays],
    "s",
    color=COLORS["grad_norm"],
    label="l2 (coupled, clipped with the gradient): measured",
)
ax.axhline(amp["weight_decay", 0.0], color="grey", lw=0.8, ls=":", label=f"no decay: {amp['weight_decay', 0.0]:.0f}")
ax.axhline(1.0, color="grey", lw=0.8, label="1: neither amplified nor damped")
ax.set(
    xscale="log",
    yscale="log",
    ylim=(1e-2, 1e3),
    xlabel="decay strength (log scale)",
    ylabel="amplification after 600 steps (log scale)",
    title="init_scale 2, SGD lr 0.05, clip_norm 1: decay vs amplification",
)
ax.legend(fontsize=8)
plt.show()
print(
    f"amplification at initialisation {amp_init:.0f}; after 600 clipped steps without decay {amp['weight_decay', 0.0]:.0f}"
)
print("strength       weight_decay: amplification (theory)  test acc      l2: amplification  test acc")
for v in decays:
    print(
        f"{v:8g}     {amp['weight_decay', v]:14.3g} ({predicted[v]:8.3g}) {acc['weight_decay', v]:9.3f}"
        f"      {amp['l2', v]:17.3g} {acc['l2', v]:9.3f}"
    )

# %% [markdown]
# - Without decay, 600 clipped steps bring the amplification from 313 to 96: the network still multiplies its
#   input's size by about a hundred.
# - Decoupled weight decay follows the theory while it is weak (0.74 and 0.48 of the no-decay run at 1e-3 and
#   3e-3, predicted 0.79 and 0.49); at 1e-2 it cuts the amplification to 11 and the test accuracy rises from
#   81 % to 91.4 %. Stronger decay overshoots the prediction: the data gradient pushes back, because the network
#   needs some scale to fit the data. At 0.1 the amplification falls below 1 and accuracy to 52 %: too much
#   decay leads to the other problem, vanishing signals.
# - Coupled L2 at the same strengths hardly moves the amplification (96 down to 62 at 0.1): clipping divides
#   the $\lambda W$ term by the same large factor as the data gradient.

# %%
assert abs(amp_init - 313) < 2 and abs(amp["weight_decay", 0.0] - 96) < 1
rel = {v: amp["weight_decay", v] / amp["weight_decay", 0.0] for v in decays}
assert abs(rel[1e-3] - 0.74) < 0.01 and abs(rel[3e-3] - 0.48) < 0.01
assert (
    abs(predicted[1e-3] / amp["weight_decay", 0.0] - 0.79) < 0.01
    and abs(predicted[3e-3] / amp["weight_decay", 0.0] - 0.49) < 0.01
)
assert (
    abs(amp["weight_decay", 1e-2] - 11) < 0.5
    and abs(acc["weight_decay", 0.0] - 0.81) < 0.01
    and abs(acc["weight_decay", 1e-2] - 0.914) < 0.005
)
assert (
    amp["weight_decay", 3e-2] > 10 * predicted[3e-2]
    and amp["weight_decay", 0.1] < 1
    and abs(acc["weight_decay", 0.1] - 0.52) < 0.01
)
assert abs(amp["l2", 0.1] - 62) < 1 and all(amp["l2", v] > 60 for v in decays)

# %% [markdown]
# ## 4. What L2 is for: overfitting
#
# Regularization works on a different problem: the gap between training and test performance. The four Adam runs
# of section 2 all fit the training set; their test accuracies differ:

# %%
for name, run in runs.items():
    print(
        f"{name:18s} train {run['train_acc']:.3f}   test {run['test_acc']:.3f}   gap {run['train_acc'] - run['test_acc']:.3f}"
    )

# %% [markdown]
# The unregularized network's gap is 2.2 points (100 % vs 97.8 %); `weight_decay = 0.1` narrows it to 1.1. On
# 359 test digits that is 4 digits, one run each: suggestive, not proof. It is the kind of effect L2 and weight
# decay are for, and it is measured on a network that trains fine, with no explosion in sight.

# %%
gap = {name: run["train_acc"] - run["test_acc"] for name, run in runs.items()}
assert abs(gap["none"] - 0.022) < 0.001 and abs(gap["weight_decay 0.1"] - 0.011) < 0.001
assert round((runs["weight_decay 0.1"]["test_acc"] - runs["none"]["test_acc"]) * len(data.y_test)) == 4

# %% [markdown]
# ## 5. Explore
#
# The panel retrains the 8-layer network (1 000 steps, Adam at `lr = 1e-3`) after each change. Try: turn on
# `l2` at 0.01, then turn it off and turn on `weight_decay` at 0.01, and compare the dashboards (different);
# switch `optimizer` to "sgd", set `lr` to 0.05 and do the same (identical, step for step); with "adam", raise
# `l2` to 0.1 and watch the loss stop falling, then compare `weight_decay` at 0.1; try "momentum", where L2
# goes through the momentum buffer. A new optimizer compiles its training step once (a few seconds); the
# sliders do not.

# %% tags=["nbval-ignore-output"]
explore = panel(
    data,
    model=NET,
    config=ADAM.replace(steps=1000),
    controls=["optimizer", "lr", "l2", "weight_decay"],
    title="8-layer MLP: L2 vs decoupled weight decay",
)
explore

# %% [markdown]
# ## 6. Exercises
#
# **1.** Plain SGD with `lr = 0.1` and `l2 = 0.01`, on a weight whose data gradient is always 0. What fraction of
# the weight is left after 1 000 steps?

# %%
answer = ...
ok = ex.check_remaining_fraction(answer, lr=0.1, l2=0.01, steps=1000)

# %% [markdown]
# **2.** Build AdamW from Optax pieces: `my_adamw(lr, weight_decay)` returns an `optax.chain(...)` that makes
# the same updates as `optax.adamw(lr, weight_decay=weight_decay)`. Useful pieces: `optax.scale_by_adam()`,
# `optax.add_decayed_weights(...)`, `optax.scale(...)`.


# %%
def my_adamw(lr, weight_decay): ...  # your code here


ok = ex.check_adamw_chain(my_adamw)

# %% [markdown]
# **3.** Adam with L2 ($\lambda = 0.1$, `lr = 0.01`), a weight $w = 1$ whose data gradient is 0. How long is its
# very first update, $|w_1 - w_0|$? (Adam's $\epsilon = 10^{-8}$ is negligible here.)

# %%
answer = ...
ok = ex.check_first_adam_l2_step(answer, lr=0.01, l2=0.1)

# %% [markdown]
# ## Takeaways
#
# - L2 adds $\lambda W$ to the gradient *before* the optimizer; decoupled weight decay subtracts
#   $\text{lr}\cdot\text{wd}\cdot W$ *after* it. For plain SGD they are the same update, bit for bit.
# - With Adam they are not: L2's $\lambda W$ is divided by each weight's gradient RMS. Weights with large
#   gradients are barely decayed (10 times slower at $G = 10$), weights with none move by about `lr` per step
#   whatever $\lambda$ is. Decoupled decay (AdamW, Loshchilov & Hutter 2019) shrinks every weight by the same
#   factor. The same number (0.01) gave kernel norms of 3.5 with L2 and 11.4 with AdamW.
# - L2 keeps the final gradients large (the data gradient balances $\lambda W$); it does not make them small.
# - Against explosion: no strength prevented a divergence that takes two steps. Over hundreds of clipped steps,
#   decoupled decay shrinks the network's amplification as $(1 - \text{lr}\cdot\text{wd})^{8T}$ while weak; coupled
#   L2 is clipped away with the gradient. Too much decay overshoots into vanishing signals. The cure for the
#   cause is the initialisation (notebook 02) or normalisation (notebook 06).
# - What L2 and weight decay are for is overfitting: the gap between training and test accuracy.
#
# ## Claim vs measurement
#
# > "Use regularization to prevent the model from overfitting" (listed as a technique against exploding
# > gradients).
#
# The first half is right and the listing is wrong. Measured here: (1) L2 from $10^{-3}$ to 3, and decoupled
# decay over the same range, left the exploding network's divergence at step 2 unchanged; (2) decay reduced the
# network's amplification only over hundreds of steps, only when applied after clipping, and only as fast as
# $(1 - \text{lr}\cdot\text{wd})$ per step allows; (3) its visible benefit on a network that trains was a
# narrower train-test gap (2.2 to 1.1 points). Overfitting is about what the network learns from too little data;
# explosion is about whether a training step is too large for the network's scale. Regularization acts on the
# first; initialisation, learning rate, clipping and normalisation act on the second.
