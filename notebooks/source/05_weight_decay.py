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
from helpers.plots import compare_histories, plot_theory_vs_measurement
from helpers.train import SEEDS, TrainConfig, mean_range, train, train_seeds
from helpers.widgets import panel

data = load_digits(seed=0)
NET = ModelConfig(depth=8, width=64)  # 8 ReLU layers, He initialisation: trains well
EXPLODING = NET.replace(init_scale=2.0)  # the same with weights twice He's scale: 2^8 = 256 times the signal
print(f"{len(data.x_train)} training and {len(data.x_test)} test digits")
print("network:", NET)
print("every comparison of training runs uses the seeds", SEEDS)


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
# (130 % to 145 %). Where does the difference come from? Look at the coordinates whose data gradient is exactly
# 0 (dead ReLUs give zero columns, always-blank pixels zero rows of the first kernel):

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

# %% jupyter={"source_hidden": true}
# Checks the updates above (fixed gradients, no training: exact up to float32 rounding).
assert sgd_diff == 0, (
    f"SGD with L2 and with decay run the same operations: they should agree bit for bit, got {sgd_diff:.1e}"
)
assert adamw_diff == 0, f"our decoupled chain runs optax.adamw's operations: bit for bit, got {adamw_diff:.1e}"
assert abs(min(adam_rel) - 1.3) < 0.01 and abs(max(adam_rel) - 1.45) < 0.01, f"Adam L2 vs decoupled: {adam_rel}"
assert abs(float(zero.mean()) - 0.24) < 0.005, (
    f"about 24 % of the gradient entries should be 0, got {float(zero.mean()):.1%}"
)
assert abs(step_l2 - lr) < 1e-6, f"Adam's first L2 step on an untouched weight should be lr = {lr}, got {step_l2:.6f}"
assert 80 < lr / step_dec < 90, f"the decoupled step should be about 85 times smaller, got {lr / step_dec:.1f}"

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

# %%
fig, (ax_b, ax_u) = plt.subplots(1, 2, figsize=(11, 4), dpi=90, layout="constrained")
every, first = slice(19, None, 40), slice(0, 200, 8)  # which steps to draw as points
plot_theory_vs_measurement(
    {name: (t[every], paths[name][0][every]) for name in ("decoupled", "L2 0.1")},
    {"theory: (1 - lr wd)^t": (t, theory["decoupled"]), "theory: exp(-lr l2 t / G)": (t, theory["L2 busy"])},
    ax=ax_b,
    yscale="linear",
    xlabel="step",
    ylabel="mean weight",
    title=f"busy weights (gradient RMS G = {G:g}), mean of {N_BUSY}",
).set_ylim(0, 1.05)
plot_theory_vs_measurement(
    {"decoupled": (t[every], paths["decoupled"][1][every])}
    | {"L2 0.01, 0.1 and 1 (one path)": (t[first], paths["L2 0.1"][1][first])},  # the same within 1e-3
    {"theory: (1 - lr wd)^t": (t, theory["decoupled"]), "L2, initial rate: lr per step": (t[:100], 1 - lr * t[:100])},
    ax=ax_u,
    yscale="linear",
    xlabel="step",
    ylabel="weight",
    title="a weight the data never touches",
).set_ylim(-0.05, 1.05)
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

# %% jupyter={"source_hidden": true}
# Checks theory against measurement, and the numbers quoted above.
gap_dec = np.max(np.abs(paths["decoupled"][1] - theory["decoupled"]))
assert gap_dec < 1e-4, f"the untouched weight should follow (1 - lr wd)^t, largest difference {gap_dec:.1e}"
for name, key in (("decoupled", "decoupled"), ("L2 0.1", "L2 busy")):
    busy_end, predicted_end = paths[name][0][-1], theory[key][-1]
    assert abs(busy_end - predicted_end) < 0.01, f"{name}: busy mean {busy_end:.3f}, predicted {predicted_end:.3f}"
untouched = paths["L2 0.1"][1]
assert abs(untouched[49] - 0.54) < 0.01 and abs(untouched[99] - 0.22) < 0.01, (
    f"{untouched[49]:.3f}, {untouched[99]:.3f}"
)
for l2 in ("0.01", "1"):
    apart = np.max(np.abs(paths[f"L2 {l2}"][1] - untouched))
    assert apart < 1e-3, f"with Adam the L2 strength should not matter; L2 {l2} differs from L2 0.1 by {apart:.1e}"
assert abs(untouched[0] - (1 - lr)) < 1e-5, f"the first step should be exactly lr, got {1 - untouched[0]:.6f}"

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

# %% jupyter={"source_hidden": true}
# Checks the identity: SGD with l2 and SGD with weight_decay make the same operations, so the same networks.
assert diff == 0, f"the two networks should be identical after 300 steps, largest difference {diff:.1e}"

# %% [markdown]
# Identical, bit for bit: both runs make exactly the same floating-point operations, so they round alike. (With
# momentum or clipping they would not be: the L2 term would be accumulated in the momentum buffer, or clipped
# along with the gradient. Section 3 measures the second.)
#
# ### Adam: the same number means different things
#
# Adam, `lr = 1e-3`, 3 000 steps (about 130 passes over the 1 438 training digits), four recipes: nothing,
# `l2 = 0.01`, `weight_decay = 0.01` and `weight_decay = 0.1`, each on the five seeds.

# %% tags=["nbval-ignore-output"]
ADAM = TrainConfig(optimizer="adam", lr=1e-3, steps=3000)
recipes = {
    "none": {},
    "l2 0.01": dict(l2=0.01),
    "weight_decay 0.01": dict(weight_decay=0.01),
    "weight_decay 0.1": dict(weight_decay=0.1),
}
runs = {}
for name, knob in recipes.items():
    seed_runs = train_seeds(NET, data, ADAM.replace(**knob))
    runs[name] = dict(
        seeds=seed_runs,
        kernel_norms=np.array([[float(jnp.linalg.norm(k)) for k in net.kernels()] for net in seed_runs.models]),
        late_grad=np.array([np.median(h.grad_norm[-200:]) for h in seed_runs.histories]),
        late_loss=np.array([h.loss[-100:].mean() for h in seed_runs.histories]),
        train_acc=seed_runs.evaluate(data.x_train, data.y_train),
        test_acc=seed_runs.evaluate(data.x_test, data.y_test),
    )
init_norms = np.array(
    [[float(jnp.linalg.norm(k)) for k in net.kernels()] for net in NET.build_seeds(SEEDS, data.image_shape)]
)
for name, run in runs.items():
    first_kernel, head = run["kernel_norms"][:, 0], run["kernel_norms"][:, -1]
    print(f"{name}:")
    print(f"  ||W|| of dense0 {mean_range(first_kernel, '{:.2f}')}, of the head {mean_range(head, '{:.2f}')}")
    print(f"  gradient norm, median of the last 200 steps: {mean_range(run['late_grad'], '{:.2g}')}")
    print(f"  training loss, mean of the last 100 steps: {mean_range(run['late_loss'], '{:.2g}')}")
    print(f"  accuracy: train {mean_range(run['train_acc'])}, test {mean_range(run['test_acc'])}")
print(f"at initialisation: ||W|| of dense0 {mean_range(init_norms[:, 0], '{:.2f}')}")

# %%
x_layers = np.arange(len(model.layer_names()))
plot_theory_vs_measurement(
    {name: (x_layers, run["kernel_norms"]) for name, run in runs.items()},
    {"at initialisation (mean over seeds)": (x_layers, init_norms.mean(0))},
    layer_names=model.layer_names(),
    ylabel="||W|| (log scale)",
    title="kernel norms after 3 000 Adam steps",
).figure

# %%
compare_histories({name: run["seeds"] for name, run in runs.items()}, title="Adam, lr 1e-3: loss and gradient norm")

# %% [markdown]
# - **Same number, different strength.** `weight_decay = 0.01` barely touches the weights: on every seed the first
#   kernel's norm goes from about 11.6 (no decay) to about 11.3, the factor $(1 - 10^{-3}\cdot 0.01)^{3000} = 0.97$
#   that decay alone predicts (0.97 on every seed). `l2 = 0.01` shrinks the same kernel to 3.6. Late in training
#   the data gradients are tiny (a median norm of about 0.0015 without regularization, training loss about
#   $2\cdot10^{-5}$), so the L2 term dominates, and Adam turns it into steps of about `lr` towards zero: the
#   untouched weight of section 1.
# - **Gradient norms.** Without regularization the gradient norm falls to about 0.0015: the network fits every
#   training example with a wide margin, and every example's gradient vanishes. With L2 it stays near 1
#   (0.93-0.97). That is not L2 pushing harder: `History.grad_norm` is the gradient of the whole objective
#   $L + \tfrac{\lambda}{2}\|W\|^2$ on one batch, and at the minimum of that objective its gradient over the whole
#   training set is 0, the data gradient balancing $\lambda W$. Two things keep the measured norm large; the
#   next cell measures both.
# - **Accuracy.** Every recipe fits the training set on every seed (99.7 % to 100 %), and the test accuracies
#   are 96.9 % to 99.2 %. Section 4 compares them.

# %% jupyter={"source_hidden": true}
# Checks the claims above on every seed, with margins wider than the seeds' spread.
k0 = {name: run["kernel_norms"][:, 0] for name, run in runs.items()}
ratio = k0["weight_decay 0.01"] / k0["none"]
assert np.all(np.abs(ratio - (1 - 1e-3 * 0.01) ** 3000) < 0.01), f"wd 0.01 should shrink dense0 by 0.97: {ratio}"
assert np.all(np.abs(k0["none"] - 11.6) < 0.3) and np.all(np.abs(k0["l2 0.01"] - 3.6) < 0.3), f"||W||: {k0}"
assert k0["l2 0.01"].max() < k0["weight_decay 0.01"].min() / 2, f"l2 0.01 should shrink far more than wd 0.01: {k0}"
late_grad = {name: run["late_grad"] for name, run in runs.items()}
assert late_grad["none"].max() < 0.005, f"without regularization the late gradient should vanish: {late_grad['none']}"
assert 0.6 < late_grad["l2 0.01"].min() and late_grad["l2 0.01"].max() < 1.4, (
    f"with L2 it should stay near 1: {late_grad}"
)
assert runs["none"]["late_loss"].max() < 1e-4, (
    f"the unregularized loss should be about 2e-5: {runs['none']['late_loss']}"
)
assert all(run["train_acc"].min() >= 0.99 for run in runs.values()), "every recipe should fit the training set"
assert all(0.95 < run["test_acc"].min() and run["test_acc"].max() < 0.997 for run in runs.values()), "test accuracies"

# %% [markdown]
# First: Adam at `lr = 1e-3` does not settle at the minimum. Below, the gradient of the objective over all
# 1 438 training digits at the end of each L2 run, next to $\lambda\|W\|$ (what the data gradient would have to
# balance). Then each network trains 300 more steps at `lr = 1e-5`, small enough to settle, and is measured
# again, over all the digits and on its batches.

# %% tags=["nbval-ignore-output"]
x_all, y_all = jnp.asarray(data.x_train), jnp.asarray(data.y_train)


@jax.jit
def objective_grad_norm(params, l2):
    """Norm of the gradient of L + l2/2 sum ||kernel||^2 over all the training digits (graphdef: section 1)."""

    def objective(params):
        loss = optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, params)(x_all), y_all).mean()
        kernels = [
            p for path, p in jax.tree_util.tree_leaves_with_path(params) if "kernel" in jax.tree_util.keystr(path)
        ]
        return loss + l2 / 2 * sum(jnp.sum(k**2) for k in kernels)

    return optax.tree.norm(jax.grad(objective)(params))


full_end, lam_w, full_settled, batch_settled = [], [], [], []
for seed, net in zip(SEEDS, runs["l2 0.01"]["seeds"].models, strict=True):
    state = nnx.state(net)
    full_end.append(float(objective_grad_norm(state, 0.01)))
    lam_w.append(0.01 * float(jnp.sqrt(sum(jnp.sum(k**2) for k in net.kernels()))))
    settled = nnx.merge(graphdef, jax.tree.map(jnp.copy, state))  # a copy: `train` consumes the arrays it trains
    h = train(settled, data, ADAM.replace(l2=0.01, lr=1e-5, steps=300, seed=seed))
    full_settled.append(float(objective_grad_norm(nnx.state(settled), 0.01)))
    batch_settled.append(float(np.median(h.grad_norm[-100:])))
print(f"end of training (lr 1e-3): gradient over all the digits {mean_range(full_end, '{:.2f}')}")
print(f"    lambda * ||W||: {mean_range(lam_w, '{:.2f}')}")
print(f"after 300 steps at lr 1e-5: gradient over all the digits {mean_range(full_settled, '{:.2f}')}")
print(f"    on a batch of 64 (median of the last 100 steps): {mean_range(batch_settled, '{:.2f}')}")

# %% [markdown]
# - At the end of training the gradient over all the digits is 0.35-1.0, three to ten times $\lambda\|W\|$ = 0.1:
#   the network is not at the minimum. Adam moves each weight by about `lr` per step whatever the gradient's
#   size, so at `lr = 1e-3` it keeps jumping around the minimum instead of settling in it. At `lr = 1e-5` the
#   gradient over all the digits falls to 0.04-0.17 within 300 steps.
# - A batch's gradient stays at about 0.5 even then: each batch of 64 digits has its own data gradient, and the
#   differences between them do not cancel. That is minibatch noise, and L2 keeps it alive: it stops the network
#   from fitting every example perfectly (training loss 0.04 instead of $2\cdot10^{-5}$), so the examples'
#   gradients no longer vanish.
#
# L2 does not make the gradients at the end of training small, and it does not make them large by pushing: the
# measured norm near 1 is an optimizer that has not settled plus the noise of small batches.

# %% jupyter={"source_hidden": true}
# Checks, on every seed: not at the minimum at lr 1e-3; much closer after lr 1e-5; a batch's gradient stays ~0.5.
full_end, lam_w, full_settled, batch_settled = map(np.array, (full_end, lam_w, full_settled, batch_settled))
assert full_end.min() > 2 * lam_w.max(), f"full gradient {full_end} should exceed lambda ||W|| {lam_w} several times"
assert np.all(np.abs(lam_w - 0.1) < 0.01), f"lambda ||W|| should be about 0.1, got {lam_w}"
assert full_end.max() < 1.5 and full_settled.max() < 0.3, f"full gradients: {full_end} -> {full_settled}"
assert np.all(full_settled < full_end), (
    f"a smaller lr should bring the full gradient down: {full_end} -> {full_settled}"
)
assert 0.3 < batch_settled.min() and batch_settled.max() < 0.8, f"a batch's gradient should stay ~0.5: {batch_settled}"
assert batch_settled.mean() > 3 * full_settled.mean(), f"batch {batch_settled} vs all digits {full_settled}"
assert 0.02 < runs["l2 0.01"]["late_loss"].min() and runs["l2 0.01"]["late_loss"].max() < 0.06, "L2 training loss"

# %% [markdown]
# ## 3. What L2 does, and does not do, against explosion
#
# ### It does not stop a divergence
#
# The network with weights twice He's scale, plain SGD, `lr = 0.05`, with L2 from 0 to 3 (and the same values
# as decoupled weight decay), on the five seeds:

# %%
strengths = [0.0, 1e-3, 1e-2, 0.1, 1.0, 3.0]
first = {}
for knob in ("l2", "weight_decay"):
    for value in strengths:
        first[knob, value] = train_seeds(EXPLODING, data, TrainConfig(lr=0.05, steps=50, **{knob: value}))
net = EXPLODING.build(data.image_shape, data.num_classes)
w_norm = float(optax.tree.norm(nnx.state(net, nnx.Param)))
g_norm = first["l2", 0.0].histories[0].grad_norm[0]
for knob in ("l2", "weight_decay"):
    steps = sorted({h.diverged_at for v in strengths for h in first[knob, v].histories})
    diverged = sum(len(first[knob, v].diverged) for v in strengths)
    print(f"{knob:12s}: {diverged} of {len(strengths) * len(SEEDS)} runs diverged, at step {steps}, for {strengths}")
print(
    f"seed 0, step 0: ||gradient|| = {g_norm:.0f}, ||W|| = {w_norm:.1f}: the L2 term l2 * ||W|| is "
    f"{1.0 * w_norm / g_norm:.1%} of the gradient at l2 = 1"
)

# %% jupyter={"source_hidden": true}
# Checks: every strength, coupled or decoupled, diverges at step 2 on every seed (two steps from the initial weights).
steps_seen = {(k, v): [h.diverged_at for h in runs_.histories] for (k, v), runs_ in first.items()}
assert all(s == [2] * len(SEEDS) for s in steps_seen.values()), f"every run should diverge at step 2: {steps_seen}"
assert abs(w_norm * 1.0 / g_norm - 0.044) < 0.002, (
    f"the L2 term should be 4.4 % of the gradient, got {w_norm / g_norm:.1%}"
)

# %% [markdown]
# Every run diverges at step 2, on every seed, even at $\lambda = 3$, which shrinks every weight by 15 % per step.
# The explosion takes two steps; weight decay removes a fraction $\text{lr}\cdot\lambda$ of the weights per step,
# and the L2 gradient $\lambda W$ is 4 % of the data gradient even at $\lambda = 1$.
#
# ### Over many steps it shrinks the amplification, if it is decoupled from clipping
#
# Clip the gradient to norm 1 (notebook 04) so that the network trains, and add decay. ReLU is positively
# homogeneous, so with zero biases multiplying every kernel by $(1 - \text{lr}\cdot\text{wd})$ multiplies the
# last hidden layer's output by $(1 - \text{lr}\cdot\text{wd})^8$. If decay were the only thing changing the
# weights' scale, after $T$ steps the network's amplification (RMS of the last hidden layer / RMS of the input)
# would be that of the run without decay, same seed, times $(1 - \text{lr}\cdot\text{wd})^{8T}$. Coupled L2 goes
# through the clipping: when the gradient norm is in the hundreds, its $\lambda W$ is scaled down with it.

# %% tags=["nbval-ignore-output"]
xb = jnp.asarray(data.x_train[:256])


def amplification(net):
    """RMS of the last hidden layer's output over RMS of the input, for 256 digits."""
    return float(jnp.sqrt(jnp.mean(net.hidden(xb)[-1] ** 2)) / jnp.sqrt(jnp.mean(xb**2)))


CLIPPED = TrainConfig(lr=0.05, steps=600, clip_norm=1.0)
decays = [1e-3, 3e-3, 1e-2, 3e-2, 0.1]
amp, acc = {}, {}
for knob, value in [("weight_decay", 0.0)] + [(k, v) for k in ("weight_decay", "l2") for v in decays]:
    seed_runs = train_seeds(EXPLODING, data, CLIPPED.replace(**{knob: value}))
    amp[knob, value] = np.array([amplification(net) for net in seed_runs.models])
    acc[knob, value] = seed_runs.evaluate(data.x_test, data.y_test)
amp_init = np.array([amplification(net) for net in EXPLODING.build_seeds(SEEDS, data.image_shape)])
no_decay = amp["weight_decay", 0.0]
rel = {(k, v): amp[k, v] / no_decay for k, v in amp}  # relative to the no-decay run of the same seed
predicted = {v: (1 - CLIPPED.lr * v) ** (8 * CLIPPED.steps) for v in decays}
print("amplification at initialisation, seeds 0-4:", ", ".join(f"{a:.0f}" for a in amp_init))
print(f"after 600 clipped steps without decay: {mean_range(no_decay, '{:.0f}')}")
print(f"    test accuracy {mean_range(acc['weight_decay', 0.0])}")
print("amplification relative to the same seed without decay; test accuracy:")
for knob in ("weight_decay", "l2"):
    for v in decays:
        theory = f", theory {predicted[v]:.2g}" if knob == "weight_decay" else ""
        print(f"  {knob} {v:g}: {mean_range(rel[knob, v], '{:.2g}')}{theory}; {mean_range(acc[knob, v])}")

# %%
fine = np.logspace(-3, -1, 50)
ax = plot_theory_vs_measurement(
    {
        f"weight_decay (decoupled): {len(SEEDS)} seeds": (decays, np.array([rel["weight_decay", v] for v in decays]).T),
        f"l2 (coupled, clipped with the gradient): {len(SEEDS)} seeds": (
            decays,
            np.array([rel["l2", v] for v in decays]).T,
        ),
    },
    {"theory: decay alone, (1 - lr wd)^(8T)": (fine, (1 - CLIPPED.lr * fine) ** (8 * CLIPPED.steps))},
    each_seed=True,
    xscale="log",
    xlabel="decay strength (log scale)",
    ylabel="amplification relative to no decay, same seed (log scale)",
    title="init_scale 2, SGD lr 0.05, clip_norm 1, 600 steps: decay vs amplification",
)
ax.axhline(1.0, color="grey", lw=0.8, ls=":", label="1: as without decay")
ax.set_ylim(1e-4, 3)
ax.legend(fontsize=8, loc="lower left")
ax.figure

# %% [markdown]
# - Without decay, 600 clipped steps bring the amplification from 140-380 at initialisation (it depends on the
#   seed's draw) to 50-140: the network still multiplies its input's size by about a hundred.
# - Decoupled weight decay follows the theory while it is weak: at 1e-3 and 3e-3 the amplification is 0.74-0.82
#   and 0.45-0.50 times the same seed's no-decay run, predicted 0.79 and 0.49. At 1e-2 it cuts the
#   amplification to 7-13, at or a little above the prediction. Stronger decay overshoots the prediction by far
#   (at 3e-2 it predicts 0.0007, measured 0.02-0.05): the data gradient pushes back, because the network needs
#   some scale to fit the data. At 0.1 the amplification falls to about 1 (0.8-1.1): too much decay leads to the
#   other problem, vanishing signals, and the test accuracy drops to 29-52 %.
# - Accuracy: without decay the test accuracy is 80-83 %. Decay at 3e-2 lifts it to 87-93 %, on every seed above
#   the best no-decay seed; at 1e-2 the mean rises (81 % to 87 %), but the seeds overlap (82-91 %).
# - Coupled L2 at the same strengths hardly moves the amplification (at most a factor 2 down, at 0.1, where
#   decoupled decay gave a factor 100), and its test accuracies stay where no decay left them: clipping divides
#   the $\lambda W$ term by the same large factor as the data gradient.

# %% jupyter={"source_hidden": true}
# Checks the claims above on every seed, with margins wider than the seeds' spread.
assert np.allclose(amp_init, [312.9, 375.6, 315.8, 186.6, 137.4], rtol=2e-3), f"initial amplifications: {amp_init}"
assert 30 < no_decay.min() and no_decay.max() < 220, f"amplification without decay should be about 50-140: {no_decay}"
for v in (1e-3, 3e-3):
    off = rel["weight_decay", v] / predicted[v] - 1
    assert np.all(np.abs(off) < 0.2), f"weak decay {v:g} should follow the theory: off by {off}"
assert 3 < amp["weight_decay", 1e-2].min() and amp["weight_decay", 1e-2].max() < 25, f"{amp['weight_decay', 1e-2]}"
assert np.all(rel["weight_decay", 3e-2] > 10 * predicted[3e-2]), f"3e-2 should overshoot: {rel['weight_decay', 3e-2]}"
assert 0.4 < amp["weight_decay", 0.1].min() and amp["weight_decay", 0.1].max() < 2.5, f"{amp['weight_decay', 0.1]}"
assert acc["weight_decay", 0.1].max() < acc["weight_decay", 0.0].min() - 0.15, "too much decay should cost accuracy"
assert acc["weight_decay", 3e-2].min() > acc["weight_decay", 0.0].max(), (
    f"decay 3e-2 should win on every seed: {acc['weight_decay', 3e-2].min():.1%} vs {acc['weight_decay', 0.0].max():.1%}"
)
assert acc["weight_decay", 1e-2].mean() > acc["weight_decay", 0.0].mean() + 0.02, "decay 1e-2 should raise the mean"
assert 0.72 < acc["weight_decay", 0.0].min() and acc["weight_decay", 0.0].max() < 0.9, f"{acc['weight_decay', 0.0]}"
assert all(rel["l2", v].min() > 0.3 for v in decays) and rel["weight_decay", 0.1].max() < 0.05, "coupled vs decoupled"
assert all(0.65 < acc["l2", v].min() and acc["l2", v].max() < 0.9 for v in decays), "L2 accuracies near no decay"

# %% [markdown]
# ## 4. What L2 is for: overfitting
#
# Regularization works on a different problem: the gap between training and test performance. The four Adam
# recipes of section 2 all fit the training set. On the five seeds, their accuracies and gaps:

# %% tags=["nbval-ignore-output"]
gap = {name: run["train_acc"] - run["test_acc"] for name, run in runs.items()}
for name, run in runs.items():
    print(
        f"{name:18s} train {mean_range(run['train_acc'])}   test {mean_range(run['test_acc'])}   "
        f"gap {mean_range(100 * gap[name], '{:.1f}')} points"
    )

# %% [markdown]
# The gaps are 1 to 3 points for every recipe. The recipes' mean gaps lie within about half a point of each
# other (1.6 to 2.2 points), while one recipe's gap varies by up to 1.7 points from seed to seed; the mean test
# accuracies (97.7 % to 98.4 %) are as close. `weight_decay = 0.1` has the best means, but five seeds do not
# separate it from the others, and with spreads like these single runs could rank the four recipes in any
# order. (On 359 test digits, a point is 3.6 digits.)
#
# That is the honest measurement here: this network, trained on 1 438 digits, overfits little to begin with
# (98 % test accuracy without any regularization), and L2 or weight decay at these strengths do not measurably
# change that. What they are for is this gap, where there is one to close; it is measured on a network that
# trains fine, with no explosion in sight.

# %% jupyter={"source_hidden": true}
# Checks: every gap is small, and the recipes' means lie closer together than one recipe's seeds spread.
mean_gap = {name: g.mean() for name, g in gap.items()}
mean_test = {name: run["test_acc"].mean() for name, run in runs.items()}
assert all(-0.01 < g.min() and g.max() < 0.05 for g in gap.values()), f"gaps should be 1-3 points: {gap}"
assert max(mean_gap.values()) - min(mean_gap.values()) < 0.015, f"mean gaps should lie close: {mean_gap}"
widest = max(g.max() - g.min() for g in gap.values())
assert widest > max(mean_gap.values()) - min(mean_gap.values()), f"seed spread {widest:.3f} vs means {mean_gap}"
assert max(mean_test.values()) - min(mean_test.values()) < 0.015, f"mean test accuracies should lie close: {mean_test}"
assert all(0.97 < t < 0.99 for t in mean_test.values()), f"mean test accuracies should be about 98 %: {mean_test}"

# %% [markdown]
# ### With BatchNorm after the kernels, decay does another job
#
# This network has no normalization: shrinking a kernel shrinks what its layer computes, so decay acts on the
# function the network computes. That is what made it a regularizer in principle here, and what shrank the
# amplification in section 3. Put BatchNorm after a kernel and that changes (notebook 06, section 3):
# $\mathrm{BN}(x\,cW) = \mathrm{BN}(xW)$ for any $c > 0$, so shrinking $W$ changes nothing the network computes.
# What it changes is the step: the gradient is orthogonal to $W$ and scales as $1/\|W\|$, so a step of size `lr`
# turns $W$'s direction by about $\text{lr}/\|W\|^2$ (van Laarhoven 2017, *L2 regularization versus batch and
# weight normalization*). Without decay, the orthogonal steps make $\|W\|$ grow and the effective learning rate
# fall; decay holds $\|W\|$ down and the effective learning rate up. On kernels followed by BatchNorm, weight
# decay is mostly a learning-rate control, not a regularizer. In neither role is it a cure for exploding
# gradients: that needs the initialisation (notebook 02), a smaller step (notebooks 03 and 04) or normalization
# (notebook 06).

# %% [markdown]
# ## 5. Explore
#
# The panel retrains the 8-layer network (seed 0, 400 steps so that a move retrains in about a second, Adam at
# `lr = 1e-3`) after each change; `steps` goes to the 3 000 of the runs above. Try: turn
# on `l2` at 0.01, then turn it off and turn on `weight_decay` at 0.01, and compare the dashboards (different);
# switch `optimizer` to "sgd", set `lr` to 0.05 and do the same (identical, step for step); with "adam", raise
# `l2` to 0.1 and watch the loss, then compare `weight_decay` at 0.1; try "momentum", where L2 goes through the
# momentum buffer. A new optimizer compiles its training step once (a few seconds); the sliders do not. Each
# run is one seed: before trusting a difference you see here, measure it on several seeds with `train_seeds`.

# %% tags=["nbval-ignore-output"]
explore = panel(
    data,
    model=NET,
    config=ADAM.replace(steps=400),
    controls=["optimizer", "lr", "l2", "weight_decay", "steps"],
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
#   factor. The same number (0.01) gave first-kernel norms of about 3.6 with L2 and 11.3 with AdamW, on every
#   seed.
# - With L2 the gradient norm stays near 1 to the end of training. That is not L2 pushing: at the regularized
#   minimum the gradient over all the training data would be 0, but Adam at `lr = 1e-3` keeps jumping around it,
#   and each batch's gradient carries noise that L2 keeps alive.
# - Against explosion: no strength prevented a divergence that takes two steps, on any seed. Over hundreds of
#   clipped steps, decoupled decay shrinks the network's amplification as $(1 - \text{lr}\cdot\text{wd})^{8T}$
#   while weak; coupled L2 is clipped away with the gradient. Too much decay overshoots into vanishing signals.
# - One story for weight decay. Without normalization, as here, it shrinks the weights and so what the network
#   computes: a regularizer. On kernels followed by BatchNorm it changes nothing the network computes and acts
#   mostly as an effective-learning-rate control (van Laarhoven 2017, notebook 06). In neither case is it a cure
#   for exploding gradients: that is the initialisation (notebook 02), the step size (notebooks 03 and 04) or
#   normalization (notebook 06).
# - What L2 and weight decay are for is overfitting, the gap between training and test accuracy. This network
#   hardly overfits its 1 438 digits (gaps of 1-3 points), and five seeds do not separate the four recipes.
#
# ## Claim vs measurement
#
# > "Use regularization to prevent the model from overfitting" (listed as a technique against exploding
# > gradients).
#
# The first half is right in principle, and the listing is wrong. Measured here, on five seeds each: (1) L2 from
# $10^{-3}$ to 3, and decoupled decay over the same range, left the exploding network's divergence at step 2
# unchanged on every seed; (2) decay reduced the network's amplification only over hundreds of steps, only when
# applied after clipping, and only as fast as $(1 - \text{lr}\cdot\text{wd})$ per step allows; (3) on a network
# that trains, the benefit the claim promises was too small to measure: the train-test gaps were 1 to 3 points
# with or without regularization, and the recipes' means differed by less than the seeds' spread. Overfitting
# is about what the network learns from too little data; explosion is about whether a training step is too
# large for the network's scale. Regularization acts on the first (and, with BatchNorm, on the effective
# learning rate); initialisation, learning rate, clipping and normalization act on the second.
