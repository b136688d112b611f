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
# # 02 · Initialization
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/taming-gradients/taming-gradients/blob/main/notebooks/02_initialization.ipynb)
#
# The three classic initialisations, LeCun, Xavier/Glorot and He, come from one variance argument applied to
# different activations. After this notebook you can derive each of them, say which activation it is for,
# predict layer by layer what a 50-layer network does to its signal and its gradient at initialisation, and
# pick the `init_scale` at which a deep network is critical: neither exploding nor vanishing. On the way: why the
# weights must be random at all, and what orthogonal weights add that no variance rule can.

# %%
# On Colab, install this course's helpers (elsewhere `make lab` has, and this line does nothing).
# !python -c "import google.colab" 2>/dev/null && pip install -q flax==0.12.12 optax==0.2.8 git+https://github.com/taming-gradients/taming-gradients

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from IPython.display import display

from helpers.data import load_digits
from helpers.diagnostics import activation_stats
from helpers.exercises import initialization as ex
from helpers.models import ModelConfig
from helpers.plots import (
    LAYER_AXIS,
    add_open_points,
    compare_histories,
    plot_histograms,
    plot_theory_vs_measurement,
    reference_lines,
    series,
)
from helpers.train import SEEDS, TrainConfig, train_seeds
from helpers.widgets import panel

data = load_digits(seed=0)
x = jnp.asarray(data.x_train[:256].reshape(256, -1))  # 256 digits, 8x8 pixels flattened, values in [0, 1]
y = jnp.asarray(data.y_train[:256])
print(f"{len(data.x_train)} training digits; a batch x of shape {x.shape}")

# %% [markdown]
# ## Predict first
#
# An MLP with 50 hidden layers of 128 units, zero biases, initialised with each of the three rules below, once
# with tanh and once with ReLU: six networks. For each one, guess before running anything:
#
# 1. Does the signal reaching layer 50 keep its size, shrink towards 0, or blow up?
# 2. Does the gradient reaching layer 1 keep its size, shrink, or blow up?
# 3. Which of the six train (on a 20-layer version)?
#
# | rule | $\mathrm{Var}(W)$ | paper |
# |---|---|---|
# | LeCun | $1/\text{fan\_in}$ | LeCun et al. 1998, "Efficient BackProp" |
# | Xavier / Glorot | $2/(\text{fan\_in} + \text{fan\_out})$ | Glorot & Bengio 2010 |
# | He / Kaiming | $2/\text{fan\_in}$ | He et al. 2015 |

# %% [markdown]
# ## Why random at all? Zero and constant weights
#
# Every rule below draws the weights at random. Why not start them all at 0, or all at one small constant?
# Because of **symmetry**. If every unit of a layer has the same incoming and outgoing weights, every unit
# computes the same output, receives the same gradient, takes the same step, and so stays identical to the
# others forever: a layer of 32 such units is one unit, copied 32 times. All-zero weights are worse still: with
# ReLU every hidden output is 0, so every kernel gradient is exactly 0 (each is a product with a zero factor)
# and only the head's bias can learn. Random draws break the symmetry (d2l.ai, "Numerical Stability and
# Initialization").
#
# A 3-layer ReLU MLP (64 -> 32 -> 32 -> 10) by hand, trained by full-batch gradient descent (`lr=0.5`, 300
# steps) on the 256 digits, from three starts:

# %%
SIZES = [64, 32, 32, 10]


def forward(params, x):
    """The MLP: relu(h W + b) for each hidden layer, then the head's logits."""
    for W, b in params[:-1]:
        x = jax.nn.relu(x @ W + b)
    W, b = params[-1]
    return x @ W + b


def mlp_loss(params):
    return optax.softmax_cross_entropy_with_integer_labels(forward(params, x), y).mean()


@jax.jit
def descend(params):
    """300 steps of gradient descent, lr 0.5, on the whole batch."""
    step = lambda p, _: (jax.tree.map(lambda w, g: w - 0.5 * g, p, jax.grad(mlp_loss)(p)), None)  # noqa: E731
    return jax.lax.scan(step, params, None, length=300)[0]


# %%
STARTS = {  # each kernel's initial values, given its shape (fan_in, fan_out) and its layer index
    "all zero": lambda shape, i: jnp.zeros(shape),
    "all 0.1": lambda shape, i: jnp.full(shape, 0.1),
    "He (random)": lambda shape, i: jax.random.normal(jax.random.key(i), shape) * jnp.sqrt(2 / shape[0]),
}
x_test = jnp.asarray(data.x_test.reshape(len(data.x_test), -1))
symmetry = {}
for name, start in STARTS.items():
    params = [(start((m, n), i), jnp.zeros(n)) for i, (m, n) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True))]
    grads0 = [float(jnp.linalg.norm(g)) for g, _ in jax.grad(mlp_loss)(params)]
    trained = descend(params)
    spread = max(float(jnp.max(jnp.abs(W - W[:, :1]))) for W, _ in trained[:-1])  # largest gap between units
    accuracy = float(np.mean(np.argmax(np.asarray(forward(trained, x_test)), axis=1) == data.y_test))
    symmetry[name] = grads0, spread, accuracy
    print(
        f"{name:12} step-0 gradient norm per kernel {np.array2string(np.array(grads0), precision=2):28} after "
        f"training: largest difference between two units' weights {spread:.3g}, test accuracy {accuracy:.1%}"
    )
most_common = np.mean(data.y_test == np.bincount(data.y_train[:256]).argmax())
print(f"always answering the most common class of the 256 digits: {most_common:.1%}")

# %% [markdown]
# - **All zero**: every kernel's gradient is exactly 0, and after 300 steps no weight has moved. The network
#   answers the class it saw most often.
# - **All 0.1**: the units of each hidden layer stay *exactly* equal through training. Worse, the head starts
#   with the same weights for every class, so it sends back a gradient of $\sum_k (p_k - y_k)\,w = 0$ (up to
#   rounding, $10^{-7}$): the hidden layers barely learn, and the network is no better than the all-zero one.
# - **He (random)**: the same network trains to over 95%.
#
# So the weights must be random; the rest of this notebook is about how large.

# %% jupyter={"source_hidden": true}
# Checks: exact zeros and exact ties (symmetry is exact math, kept exactly by the same sums in the same order).
(zero_g, zero_spread, zero_acc), (const_g, const_spread, const_acc), (he_g, he_spread, he_acc) = symmetry.values()
assert zero_g == [0.0, 0.0, 0.0] and zero_spread == 0, f"all zero: gradients {zero_g}, spread {zero_spread}"
assert const_spread == 0, f"all 0.1: the units of a layer should stay identical, differ by {const_spread}"
assert max(const_g[:2]) < 1e-5 < const_g[2], f"all 0.1: only the head should get a real gradient: {const_g}"
assert zero_acc == const_acc == most_common, f"zero and constant starts should be at chance: {zero_acc}, {const_acc}"
assert he_acc > 0.95 and he_spread > 0.1, f"He: should train to over 95% ({he_acc:.1%}), its units differing"

# %% [markdown]
# ## Variance propagation, forward and backward
#
# A layer computes $z_l = h_{l-1} W_l$ and $h_l = \phi(z_l)$, with $n_{l-1}$ inputs (fan-in) and $n_l$ outputs
# (fan-out). Assume the weights are independent, zero-mean, independent of the signal, and write
# $\sigma_l^2 = n_{l-1}\mathrm{Var}(W_l)$.
#
# **Forward.** $z_{l,j} = \sum_i h_{l-1,i} W_{l,ij}$ is a sum of $n_{l-1}$ independent zero-mean terms, so
# $q_l := \mathbb{E}[z_l^2] = \sigma_l^2\,\mathbb{E}[h_{l-1}^2] = \sigma_l^2\,\mathbb{E}[\phi(z_{l-1})^2]$.
# For large width, $z_l$ is close to Gaussian, $N(0, q_l)$; this is the mean-field approximation (Poole et al.
# 2016; Schoenholz et al. 2017).
#
# **Backward.** $\delta_l = \partial\mathcal{L}/\partial z_l$ satisfies
# $\delta_{l,i} = \phi'(z_{l,i}) \sum_j W_{l+1,ij}\,\delta_{l+1,j}$. Treating $W_{l+1}$ as independent of
# $\delta_{l+1}$ and summing over the $n_l$ units,
# $\mathbb{E}\|\delta_l\|^2 = \chi_l\,\|\delta_{l+1}\|^2$ with $\chi_l = \sigma_{l+1}^2\,\mathbb{E}[\phi'(z_l)^2]$.
# The gradient reaching layer 1 is the head's error times $\prod_l \sqrt{\chi_l}$.
#
# **The three rules** make one of these factors 1 for a particular activation:
#
# - **ReLU**: $\mathbb{E}[\mathrm{relu}(z)^2] = q/2$ and $\mathbb{E}[\mathrm{relu}'(z)^2] = 1/2$ exactly (half
#   of a symmetric distribution is cut). Both conditions give $\sigma^2 = 2$: **He**, $\mathrm{Var}(W) =
#   2/\text{fan\_in}$. (He et al. note that $2/\text{fan\_out}$, from the backward condition, works as well;
#   with equal widths it is the same.)
# - **tanh** near 0: $\tanh(z) \approx z$ and $\tanh'(z) \approx 1$, so forward wants $\mathrm{Var}(W) =
#   1/\text{fan\_in}$ (**LeCun**) and backward $1/\text{fan\_out}$. **Xavier/Glorot** takes the compromise
#   $2/(\text{fan\_in}+\text{fan\_out})$. When fan-in equals fan-out these three tanh rules are the same
#   number: in our MLP, Xavier and LeCun differ only in the first layer (64 -> 128) and the head (128 -> 10).
#
# Since $\tanh$ is not linear, the tanh case is not exact: with $\sigma^2 < 1$ the signal and the gradients shrink
# to 0 with depth and two different inputs become ever more alike (the "ordered phase"); with $\sigma^2 = 1$ the
# signal shrinks slowly while $\chi_l \to 1$ (the "edge of chaos"); with $\sigma^2 > 1$ the signal settles at a
# fixed point $q^* > 0$, gradients grow by $\sqrt{\chi^*} > 1$ per layer and two nearby inputs drift apart (the
# "chaotic phase"; Poole et al. 2016). The code below computes the recursion numerically.

# %% [markdown]
# ## The three rules by hand, checked against `jax.nn.initializers`


# %%
def lecun_std(fan_in, fan_out):
    return np.sqrt(1 / fan_in)


def xavier_std(fan_in, fan_out):
    return np.sqrt(2 / (fan_in + fan_out))


def he_std(fan_in, fan_out):
    return np.sqrt(2 / fan_in)


STD = {"lecun": lecun_std, "xavier": xavier_std, "he": he_std}


def init_normal(key, shape, rule, init_scale=1.0):
    """A kernel of shape (fan_in, fan_out) with std = init_scale * STD[rule](fan_in, fan_out), normal."""
    return init_scale * STD[rule](*shape) * jax.random.normal(key, shape)


# %%
key, shape = jax.random.key(0), (64, 128)
jax_normal = {  # JAX's variance_scaling with an untruncated normal: the same rules
    "lecun": jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal"),
    "xavier": jax.nn.initializers.variance_scaling(1.0, "fan_avg", "normal"),
    "he": jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
}
exact = {rule: float(jnp.max(jnp.abs(init_normal(key, shape, rule) - f(key, shape)))) for rule, f in jax_normal.items()}
big = (500, 500)
named = {
    "lecun": jax.nn.initializers.lecun_normal(),
    "xavier": jax.nn.initializers.glorot_normal(),
    "he": jax.nn.initializers.he_normal(),
}
same = "equal" if max(exact.values()) < 1e-6 else "DIFFERENT"
lines = [f"by hand vs variance_scaling(..., 'normal'), same key: {same} to within 1e-6", ""]
lines.append("rule     formula std   lecun_normal & co: std   largest |w| / formula std")
for rule, f in named.items():
    w = f(key, big)
    lines.append(
        f"{rule:7s}  {STD[rule](*big):11.4f}   {float(w.std()):22.4f}   {float(jnp.abs(w).max()) / STD[rule](*big):25.3f}"
    )
print("\n".join(lines))

# %% [markdown]
# By hand, each rule is one line, and it matches JAX's `variance_scaling` with a normal distribution to the
# last bit. The named initialisers `jax.nn.initializers.lecun_normal`, `glorot_normal` and `he_normal` have
# the same variance (within 1 % on 250 000 draws) but a **truncated** normal: no weight is further than
# $2/0.8796 \approx 2.274$ standard deviations from 0 (JAX rescales the truncated normal to keep the variance).
# `helpers.models` uses the untruncated normal, as above; only the variance matters for the argument.

# %% jupyter={"source_hidden": true}
# Checks the paragraph above: the same draws as variance_scaling, and the named initialisers' std and truncation.
assert max(exact.values()) < 1e-6, (
    f"by hand should equal variance_scaling; largest difference {max(exact.values()):.1e}"
)
for rule, f in named.items():
    w = f(key, big)
    std_ratio, peak = float(w.std()) / STD[rule](*big), float(jnp.abs(w).max()) / STD[rule](*big)
    assert abs(std_ratio - 1) < 0.01, f"{rule}: std should be within 1 % of the formula, got x{std_ratio:.4f}"
    assert peak < 2 / 0.8796, f"{rule}: no weight should exceed 2.274 std (truncated normal), got {peak:.3f}"

# %% [markdown]
# `helpers.models` draws its kernels the same way; its standard deviations match the formulas (within the
# sampling error of a 128 x 10 head):

# %%
helper_std = {}
for rule in STD:
    model = ModelConfig(depth=2, width=128, init=rule).build(data.image_shape, data.num_classes)
    helper_std[rule] = [float(k.std()) for k in model.kernels()]
lines = [
    f"helpers, init={rule:6s}: kernel std {np.round(v, 4)}, formula {np.round([STD[rule](64, 128), STD[rule](128, 128), STD[rule](128, 10)], 4)}"
    for rule, v in helper_std.items()
]
print("\n".join(lines))

# %% jupyter={"source_hidden": true}
# Checks: the helpers' kernels have each rule's std, and LeCun equals Xavier when fan-in equals fan-out.
for rule, stds in helper_std.items():
    expected = [STD[rule](64, 128), STD[rule](128, 128), STD[rule](128, 10)]
    assert np.allclose(stds, expected, rtol=0.15), (
        f"init={rule}: kernel std {np.round(stds, 4)}, formula {np.round(expected, 4)}"
    )
assert lecun_std(128, 128) == xavier_std(128, 128), "LeCun and Xavier should be the same rule for a square kernel"

# %% [markdown]
# ## Mean-field theory next to a 50-layer network
#
# The recursion of the previous section, in numpy: Gaussian expectations by Gauss-Hermite quadrature (with an
# even number of nodes it is exact for ReLU, whose kink sits between the nodes).

# %%
nodes, weights = np.polynomial.hermite_e.hermegauss(100)  # E[f(xi)], xi ~ N(0, 1), = sum(weights * f(nodes))
weights = weights / weights.sum()
PHI = {  # activation and its derivative, in numpy
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
}


def mean_field(sigma2, q1, activation):
    """Predicted RMS(h_l) and chi_l for l = 1..L, from sigma2[l] = fan_in * Var(W_l) (head last) and q1 = E[z_1^2]."""
    phi, dphi = PHI[activation]
    q, rms, chi = q1, [], []
    for s2_next in sigma2[1:]:
        z = np.sqrt(q) * nodes
        rms.append(np.sqrt(np.sum(weights * phi(z) ** 2)))
        chi.append(s2_next * np.sum(weights * dphi(z) ** 2))
        q = s2_next * rms[-1] ** 2
    return np.array(rms), np.array(chi)


DEPTH, WIDTH = 50, 128
sizes = [64] + [WIDTH] * DEPTH + [data.num_classes]
mean_sq_x = float(jnp.mean(jnp.sum(x**2, axis=1)))  # E||x||^2: with Var(W_1), it gives q_1


def theory(rule, activation, init_scale=1.0):
    """Mean-field predictions for our network: RMS(h_l) and the factors chi_l."""
    sigma2 = [m * (init_scale * STD[rule](m, n)) ** 2 for m, n in zip(sizes[:-1], sizes[1:], strict=True)]
    return mean_field(sigma2, sigma2[0] * mean_sq_x / sizes[0], activation)


lines = ["rule    activation  sigma^2 (hidden)  predicted RMS(h_50)  predicted ||dL/dz_1|| / ||dL/dz_head||"]
for rule in STD:
    for activation in PHI:
        rms_th, chi = theory(rule, activation)
        lines.append(
            f"{rule:7s} {activation:10s}  {WIDTH * STD[rule](WIDTH, WIDTH) ** 2:16.0f}  {rms_th[-1]:19.3g}  "
            f"{np.sqrt(np.prod(chi)):.3g}"
        )
print("\n".join(lines))

# %% [markdown]
# Now the measurement, on 8 random networks per rule, because a single network at finite width drifts away
# from the mean-field average (more on that below). One set of standard-normal draws is scaled by each rule,
# so the networks of different rules differ only in their variances. As in notebook 01, a zero "probe" added
# to each $z_l$ gives $\delta_l$ by `jax.grad`; `jax.vmap` runs the 8 networks in one call.

# %%
NETS = 8
rng = np.random.default_rng(0)
draws = [
    jnp.asarray(rng.standard_normal((NETS, m, n)), jnp.float32) for m, n in zip(sizes[:-1], sizes[1:], strict=True)
]


def kernels(rule, init_scale=1.0):
    """The 8 networks' kernels for `rule`: a list of (NETS, fan_in, fan_out) arrays, input -> output."""
    return [init_scale * STD[rule](*d.shape[1:]) * d for d in draws]


ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh}


# %%
def measure(Ws, x, y, activation):
    """One network, per layer: RMS(h_l), ||dL/dz_l||, ||dL/dW_l||, dead fraction, mean cosine between examples."""
    act = ACTIVATIONS[activation]

    def loss(Ws, probes):
        h, hs = x, []
        for W, p in zip(Ws[:-1], probes[:-1], strict=True):
            h = act(h @ W + p)
            hs.append(h)
        return optax.softmax_cross_entropy_with_integer_labels(h @ Ws[-1] + probes[-1], y).mean(), hs

    probes = [jnp.zeros((x.shape[0], W.shape[1])) for W in Ws]
    (_, hs), (dW, dz) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(Ws, probes)
    b = x.shape[0]
    unit = [h / jnp.maximum(jnp.linalg.norm(h, axis=1, keepdims=True), 1e-30) for h in hs]
    return dict(
        rms=jnp.stack([jnp.sqrt(jnp.mean(h**2)) for h in hs]),
        dz=jnp.stack([jnp.linalg.norm(d) for d in dz]),
        dW=jnp.stack([jnp.linalg.norm(d) for d in dW]),
        dead=jnp.stack([jnp.mean(jnp.all(h == 0, axis=0)) for h in hs]),
        cosine=jnp.stack([(jnp.sum(jnp.sum(u, axis=0) ** 2) - b) / (b * (b - 1)) for u in unit]),  # mean over pairs
    )


measure_nets = jax.jit(jax.vmap(measure, in_axes=(0, None, None, None)), static_argnums=3)


def rms_over_nets(values):
    """Root-mean-square over the networks (axis 0): the mean-field theory predicts second moments."""
    return np.sqrt(np.mean(np.asarray(values) ** 2, axis=0))


def gradient_theory(chi):
    """Predicted ||dL/dz_l|| / ||dL/dz_head|| for l = 1..L+1: the product of sqrt(chi_k) for k >= l."""
    return np.sqrt(np.append(np.cumprod(chi[::-1])[::-1], 1.0))


results = {(rule, act): jax.tree.map(np.asarray, measure_nets(kernels(rule), x, y, act)) for act in PHI for rule in STD}

# %%
layers = np.arange(1, DEPTH + 2)  # 1..50 hidden, 51 = head
fig, axes = plt.subplots(2, 2, figsize=(11, 7), dpi=90, layout="constrained")
for row, act in zip(axes, PHI, strict=True):
    amp = {rule: results[(rule, act)]["dz"] / results[(rule, act)]["dz"][:, -1:] for rule in STD}
    for ax, what, xs, measured, predicted in [
        (
            row[0],
            "forward, RMS of h_l",
            layers[:-1],
            {r: results[(r, act)]["rms"] for r in STD},
            {r: theory(r, act)[0] for r in STD},
        ),
        (
            row[1],
            "backward, ||dL/dz_l|| / ||dL/dz_head||",
            layers,
            amp,
            {r: gradient_theory(theory(r, act)[1]) for r in STD},
        ),
    ]:
        plot_theory_vs_measurement(
            {f"{rule}: {NETS} networks": (xs, values) for rule, values in measured.items()},
            {f"_{rule}: mean-field theory": (xs, th) for rule, th in predicted.items()},  # in the rule's colour
            ax=ax,
            center="rms",
            title=f"{act}: {what}",
            xlabel=f"{LAYER_AXIS}; {DEPTH + 1} = head",
            ylabel=f"{what.split(', ')[1]} (log scale)",
        )
fig.suptitle(f"MLP, depth {DEPTH}, width {WIDTH}, 256 digits, init_scale 1: mean-field theory (dashed) vs measurement")
plt.show()

# %%
lines = ["rule    activation  RMS(h_50): theory, 8 nets (RMS), range      grad ratio layer 1: theory, 8 nets, range"]
mean_dev, single_range, predicted = {}, {}, []
for act in PHI:
    for rule in STD:
        r, (rms_th, chi) = results[(rule, act)], theory(rule, act)
        amp, amp_th = r["dz"] / r["dz"][:, -1:], gradient_theory(chi)
        ratios = np.concatenate([rms_over_nets(r["rms"]) / rms_th, rms_over_nets(amp) / amp_th])
        mean_dev[(rule, act)] = np.exp(np.max(np.abs(np.log(ratios))))
        single = np.concatenate([(r["rms"] / rms_th).ravel(), (amp / amp_th).ravel()])
        single_range[(rule, act)] = (single.min(), single.max())
        predicted.append(np.concatenate([rms_th, amp_th]))
        lines.append(
            f"{rule:7s} {act:10s}  {rms_th[-1]:8.2g} {rms_over_nets(r['rms'])[-1]:8.2g} "
            f"{r['rms'][:, -1].min():8.2g}..{r['rms'][:, -1].max():<8.2g}     "
            f"{amp_th[0]:8.2g} {rms_over_nets(amp)[0]:8.2g} {amp[:, 0].min():8.2g}..{amp[:, 0].max():.2g}"
        )
predicted = np.concatenate(predicted)
lines.append(
    f"over all layers: the 8-network RMS is within x{max(mean_dev.values()):.2f} of theory; single ReLU "
    f"networks from x{min(v[0] for (_, a), v in single_range.items() if a == 'relu'):.2f} to "
    f"x{max(v[1] for (_, a), v in single_range.items() if a == 'relu'):.2f}; "
    f"the predictions span {np.ptp(np.log10(predicted)):.0f} decades"
)
print("\n".join(lines))

# %% [markdown]
# Over all 101 points of each of the six profiles, the root-mean-square of the 8 networks is within a factor
# 1.3 of the mean-field prediction, while the predictions span 9 decades. What they say:
#
# - **ReLU + He** is critical: on average, signal and gradient keep their size over 50 layers.
# - **ReLU + LeCun / Xavier** ($\sigma^2 = 1$) lose a factor $\sqrt{1/2}$ per layer both ways: after 50 layers
#   the signal is about $3\cdot10^{-8}$ of He's ($2^{-25}$), and so is the gradient reaching layer 1. Xavier and
#   LeCun are the same curve up to the first layer's and the head's factors.
# - **tanh + LeCun / Xavier** is at the edge of chaos: the signal decays slowly (RMS 0.1 at layer 50), and the
#   gradient at layer 1 is 0.2 to 0.4 of the head's, not $10^{-8}$.
# - **tanh + He** ($\sigma^2 = 2$) is in the chaotic phase: the signal settles at RMS 0.56 and the gradient
#   grows by $\sqrt{\chi^*}\approx 1.05$ per layer: 14 times over 50 layers in theory, 16 measured.
#
# The shaded bands show the other half of the truth: a *single* ReLU network at depth 50 and width 128 can be
# 6 times off the prediction at some layer (from 0.17 to 2.3 times it). Each layer multiplies the norm by a
# random factor close to its mean, so the log of the norm does a random walk whose variance grows like
# depth/width (Hanin 2018; Hanin & Rolnick 2018). Mean-field theory is exact for the average over networks
# as the width grows; a wider or shallower network is closer to it. tanh networks scatter much less.


# %% jupyter={"source_hidden": true}
# Checks every number quoted above (at initialisation: exact up to rounding, so the margins are tight).
rms_50 = lambda r: rms_over_nets(r["rms"])[-1]
grad_1 = lambda r: rms_over_nets(r["dz"] / r["dz"][:, -1:])[0]  # ||dL/dz_1|| / ||dL/dz_head||
R = results
quoted = {  # what the text says: (measured value(s), lowest allowed, highest allowed)
    "8-network RMS / theory, worst point": (max(mean_dev.values()), 1, 1.32),
    "decades spanned by the predictions": (np.ptp(np.log10(predicted)), 8.5, 9.5),
    "relu + He: RMS(h_50) / RMS(h_1)": (rms_50(R["he", "relu"]) / rms_over_nets(R["he", "relu"]["rms"])[0], 0.7, 1.4),
    "relu + LeCun: RMS(h_50) / He's": (rms_50(R["lecun", "relu"]) / rms_50(R["he", "relu"]), 2e-8, 4e-8),
    "relu + LeCun: layer-1 gradient / head's": (grad_1(R["lecun", "relu"]), 2e-8, 4e-8),
    "tanh + LeCun: RMS(h_50)": (rms_50(R["lecun", "tanh"]), 0.08, 0.12),
    "tanh + LeCun / Xavier: layer-1 gradient / head's": ([grad_1(R[r, "tanh"]) for r in ("lecun", "xavier")], 0.2, 0.4),
    "tanh + He: RMS(h_50)": (rms_50(R["he", "tanh"]), 0.54, 0.58),
    "tanh + He: predicted factor per layer": (np.sqrt(theory("he", "tanh")[1][-1]), 1.04, 1.06),
    "tanh + He: layer-1 gradient / head's, measured": (grad_1(R["he", "tanh"]), 15, 17),
    "tanh + He: layer-1 gradient / head's, theory": (gradient_theory(theory("he", "tanh")[1])[0], 13.5, 14.5),
    "single relu + He networks / theory, lowest": (single_range["he", "relu"][0], 0.15, 0.2),
    "single relu + He networks / theory, highest": (single_range["he", "relu"][1], 2.1, 2.4),
    "single tanh networks / theory": ([v for (_, a), v in single_range.items() if a == "tanh"], 0.5, 1.5),
}
for what, (values, low, high) in quoted.items():
    assert low <= np.min(values) and np.max(values) <= high, (
        f"{what}: expected {low:g} .. {high:g}, measured {np.min(values):.3g} .. {np.max(values):.3g}"
    )

# %% [markdown]
# The same with `helpers`: `ModelConfig(depth=50, width=128, init=rule, activation=act)` builds each network
# with Flax, and `helpers.diagnostics.activation_stats` gives each layer's mean and standard deviation, hence
# its RMS, $\sqrt{\text{mean}^2 + \text{std}^2}$. One more random network in each case (the helpers' seed 0), so
# at layer 50 it should land within the scatter of single networks measured above, not on the line:

# %%
lines, helper_ratio = (
    ["helpers network    RMS(h_50)   / theory   single networks above: range of measured / theory"],
    {},
)
for act in PHI:
    for rule in STD:
        net = ModelConfig(depth=DEPTH, width=WIDTH, init=rule, activation=act).build(data.image_shape, data.num_classes)
        stats = activation_stats(net, data.x_train[:256])
        rms_50 = float(np.sqrt(stats.mean[-1] ** 2 + stats.std[-1] ** 2))
        ratio_50, (lo, hi) = rms_50 / theory(rule, act)[0][-1], single_range[(rule, act)]
        helper_ratio[(rule, act)] = ratio_50
        lines.append(f"{act} + {rule:6s}   {rms_50:10.3g}   {ratio_50:8.2f}   {lo:.2f} .. {hi:.2f}")
print("\n".join(lines))

# %% [markdown]
# Each lands inside the range of the single networks above. But the three ReLU rows are one measurement, not three:
# with the same seed, the helpers draw the same standard-normal numbers for every rule and only scale them, and a ReLU
# network whose layers are rescaled has an exactly rescaled profile, so its ratio to the theory is the same number,
# 1.94, for all three rules. The tanh rows share that draw too (LeCun and Xavier differ only in the first layer and
# the head, and give the same 1.22). The 8-network measurements above are the ones that average over random weights.

# %% jupyter={"source_hidden": true}
# Checks: each helpers network lands within the range of single networks, and the ReLU rows are one draw.
for key, ratio_50 in helper_ratio.items():
    lo, hi = single_range[key]
    assert lo <= ratio_50 <= hi, (
        f"{key}: helpers network at x{ratio_50:.2f} of theory, outside the range {lo:.2f} .. {hi:.2f}"
    )
relu_rows = np.array([helper_ratio[(rule, "relu")] for rule in STD])
assert np.allclose(relu_rows, relu_rows[0], rtol=1e-4) and abs(relu_rows[0] - 1.94) < 0.01, (
    f"the three ReLU rows should be one rescaled draw, all at x1.94 of theory; got {np.round(relu_rows, 4)}"
)
tanh_edge = [helper_ratio[(rule, "tanh")] for rule in ("lecun", "xavier")]
assert all(abs(r - 1.22) < 0.01 for r in tanh_edge), f"tanh + LeCun / Xavier should both be at x1.22, got {tanh_edge}"

# %% [markdown]
# ## Orthogonal weights: the whole spectrum, not only the norm
#
# Mean-field theory tracks one number per layer, the norm, and the 8-network average follows it. But
# backpropagation multiplies the gradient by the network's Jacobian $J = \partial h_{50} / \partial h_1$, a
# 128 x 128 matrix, and a norm that is right on average can hide a Jacobian that crushes most directions and
# stretches a few. Saxe et al. (2014) showed that in a deep *linear* network, orthogonal weight matrices (all
# singular values 1, so $\|hW\| = \|h\|$ for every $h$) make every singular value of $J$ equal to 1:
# **dynamical isometry**. Pennington et al. (2017) showed that tanh near its critical point can get close to
# it with orthogonal weights, and ReLU cannot, whatever the weights.
#
# We measure the singular values of $J$ at one digit, for layers 2-50 of 4 of the networks above (the same
# Gaussian draws, at the critical variance $\sigma^2$: 1 for linear and tanh, 2 for ReLU) and of 4 networks
# whose hidden kernels are orthogonal matrices from `jax.nn.initializers.orthogonal`, times $\sigma$.

# %%
ISO_NETS = 4
critical_gain = {"linear": 1.0, "tanh": 1.0, "relu": 2.0}  # sigma^2 that makes each activation critical
iso_activations = {"linear": lambda z: z, "tanh": jnp.tanh, "relu": jax.nn.relu}
hidden_kernels = {
    "Gaussian": jnp.stack([d[:ISO_NETS] / np.sqrt(WIDTH) for d in draws[1:-1]], axis=1),  # (nets, 49, 128, 128)
    "orthogonal": jax.vmap(jax.vmap(lambda k: jax.nn.initializers.orthogonal()(k, (WIDTH, WIDTH))))(
        jax.random.split(jax.random.key(0), (ISO_NETS, DEPTH - 1))
    ),
}


def jacobian_singular_values(W1, Ws, activation, gain):
    """Singular values of d h_50 / d h_1 at the first digit, for one network: its first kernel W1 (standard
    normal draws, scaled here) and its 49 hidden 128 x 128 kernels Ws (already of variance 1 / 128)."""
    act = iso_activations[activation]
    h1 = act(x[0] @ (jnp.sqrt(gain / x.shape[1]) * W1))

    def layers_2_to_50(h):
        for W in Ws:
            h = act(h @ (jnp.sqrt(gain) * W))
        return h

    return jnp.linalg.svd(jax.jacfwd(layers_2_to_50)(h1), compute_uv=False)


singular = jax.jit(jax.vmap(jacobian_singular_values, in_axes=(0, 0, None, None)), static_argnums=2)
spectra = {  # both kinds share the Gaussian first layer of the networks above
    (act, kind): np.asarray(singular(draws[0][:ISO_NETS], Ws, act, critical_gain[act]))
    for act in iso_activations
    for kind, Ws in hidden_kernels.items()
}

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.3), dpi=90, sharey=True, layout="constrained")
for ax, act in zip(axes, iso_activations, strict=True):
    reference_lines(ax, x={"isometry: all at 1": 0}, ls="--", lw=1)
    plot_histograms(
        {f"{kind} ({ISO_NETS} nets)": np.log10(np.maximum(spectra[act, kind], 1e-12)) for kind in hidden_kernels},
        ax=ax,
        bins=np.linspace(-12, 1.5, 55),  # exact zeros (ReLU) drawn at -12
        density=True,
        legend=ax is axes[0],  # one legend for the three panels
        xlabel="log10 singular value of dh_50/dh_1",
        ylabel="density" if ax is axes[0] else "",
        title=f"{act}, sigma^2 = {critical_gain[act]:g}",
    )
fig.suptitle(f"The Jacobian of layers 2-50 at initialisation, width {WIDTH}, one digit")
plt.show()

# %% tags=["nbval-ignore-output"]
print("activation  weights      singular values (4 networks):  RMS     median    smallest  largest  below 1e-12")
for (act, kind), s in spectra.items():
    print(
        f"{act:10}  {kind:11}  {' ':30}{np.sqrt(np.mean(s**2)):6.3g}  {np.median(s):8.2g}  {s.min():8.2g}  "
        f"{s.max():8.3g}  {np.mean(s < 1e-12):10.0%}"
    )

# %% [markdown]
# - **Linear, Gaussian**: the RMS of the singular values is about 1, exactly what mean-field theory promises, yet
#   the median singular value is below $10^{-6}$: most directions of the gradient are crushed by a factor of
#   over a million, a few are stretched. The single-network scatter of the sections above is this spread, seen through
#   one norm.
# - **Linear, orthogonal**: every singular value is 1, to rounding. This is Saxe et al.'s isometry: a
#   gradient reaches layer 1 with its norm *and its direction* intact.
# - **tanh, orthogonal**: not exact, but close: every singular value within two decades (from 0.007 to 0.4,
#   below 1 because at $\sigma^2 = 1$ tanh's signal slowly shrinks), against ten decades with Gaussian weights.
# - **ReLU**: orthogonal weights do not help. Each ReLU zeroes the directions of the units that are off, and
#   after 49 layers many directions are lost: with either kind of weights, over a third of the singular values
#   are 0 up to rounding (below $10^{-12}$, drawn at $-12$), and the rest spread over ten decades.
#
# So orthogonal initialisation is worth having for linear and tanh networks, and no cure for ReLU's spread; what keeps deep ReLU networks trainable is normalisation and residual
# connections (notebooks 06 and 07).


# %% jupyter={"source_hidden": true}
# Checks (at initialisation: exact up to rounding, over 4 networks each).
def spectrum(act, kind):
    s = spectra[act, kind]
    return np.sqrt(np.mean(s**2)), np.median(s), s.min(), s.max()


rms, median, smallest, largest = spectrum("linear", "Gaussian")
assert 0.5 < rms < 2 and median < 1e-5, f"linear, Gaussian: RMS {rms:.2f} near 1 but median {median:.1e} tiny"
rms, median, smallest, largest = spectrum("linear", "orthogonal")
assert abs(smallest - 1) < 1e-3 and abs(largest - 1) < 1e-3, f"linear, orthogonal: {smallest} .. {largest}, not 1"
rms, median, smallest, largest = spectrum("tanh", "orthogonal")
assert 4e-3 < smallest and largest < 0.5 and largest / smallest < 100, f"tanh, orthogonal: {smallest} .. {largest}"
rms, median, smallest, largest = spectrum("tanh", "Gaussian")
assert largest / smallest > 1e9, f"tanh, Gaussian: the spectrum should span ten decades, {smallest} .. {largest}"
for kind in hidden_kernels:
    relu_zero = np.mean(spectra["relu", kind] < 1e-12)
    assert relu_zero > 0.3, f"relu, {kind}: over 30% of the singular values should be 0, got {relu_zero:.0%}"
    rest = spectra["relu", kind][spectra["relu", kind] >= 1e-12]
    assert rest.max() / rest.min() > 1e8, f"relu, {kind}: the rest should spread over 8+ decades"

# %% [markdown]
# ## A sweep of `init_scale`: where is the critical value?
#
# Now fix the rule (He's variance times `init_scale`$^2$) and the depth (50), and sweep `init_scale`. The
# critical value is where the predicted factor per layer is 1: `init_scale` = 1 for ReLU, and
# $1/\sqrt2 \approx 0.71$ for tanh ($\sigma^2 = 1$, which is LeCun's rule). The theory line is the head's error
# times $\prod_l\sqrt{\chi_l}$; the hollow points are the first layer's kernel gradient
# $\|\partial\mathcal{L}/\partial W_1\|$, which is what SGD actually uses. Points are the RMS over the 8
# networks.

# %%
sweep = np.linspace(0.5, 1.5, 7)
swept = {act: [jax.tree.map(np.asarray, measure_nets(kernels("he", s), x, y, act)) for s in sweep] for act in PHI}
critical = {"relu": 1.0, "tanh": 1 / np.sqrt(2)}
first = {  # measured ||dL/dz_1||, its theory, measured ||dL/dW_1||: RMS over the networks, one per init_scale
    act: np.array(
        [
            [
                rms_over_nets(r["dz"][:, 0]),
                rms_over_nets(r["dz"][:, -1]) * gradient_theory(theory("he", act, s)[1])[0],
                rms_over_nets(r["dW"][:, 0]),
            ]
            for r, s in zip(swept[act], sweep, strict=True)
        ]
    )
    for act in PHI
}

# %%
ax = plot_theory_vs_measurement(
    {f"{act}: ||dL/dz_1|| measured": (sweep, first[act][:, 0]) for act in PHI},
    {f"{act}: theory": (sweep, first[act][:, 1]) for act in PHI},  # in the activation's colour
    xlabel="init_scale (times He's standard deviation)",
    ylabel="first-layer gradient norm (log scale)",
    title=f"first-layer gradient vs init_scale, depth {DEPTH}, width {WIDTH}",
)
add_open_points(ax, {f"{act}: ||dL/dW_1|| measured": (sweep, first[act][:, 2]) for act in PHI})
for act, color in zip(PHI, series(2), strict=True):
    reference_lines(ax, x={f"{act}: critical init_scale {critical[act]:.2f}": critical[act]}, color=color)
ax.legend(fontsize=8, ncols=2, loc="lower right")
ax.figure

# %%
ratio = {act: first[act][:, 0] / first[act][:, 1] for act in PHI}
span = np.log10(max(f[:, 0].max() for f in first.values()) / min(f[:, 0].min() for f in first.values()))
lines = ["init_scale   relu: measured / theory   tanh: measured / theory"]
lines += [f"{s:10.3f}   {ratio['relu'][i]:23.2f}   {ratio['tanh'][i]:23.2f}" for i, s in enumerate(sweep)]
lines.append(f"the measured first-layer gradients span {span:.0f} decades")
print("\n".join(lines))

# %% [markdown]
# The first-layer gradient spans more than 20 decades over this sweep and the theory follows it within a
# factor 1.3. Left of the critical value it vanishes, right of it it explodes; the further from critical, the
# faster, and the deeper the network, the narrower the usable window around it. For ReLU the decay and growth
# are exactly geometric ($\sqrt{\chi} = $ `init_scale`); for tanh they are gentler, because saturation lowers
# $\mathbb{E}[\tanh'^2]$ as the weights grow.

# %% jupyter={"source_hidden": true}
# Checks the paragraph above: theory within x1.3 at every init_scale, over more than 20 decades.
off = np.exp(np.max(np.abs(np.log(np.concatenate(list(ratio.values()))))))
assert off < 1.3, f"measured / theory should stay within x1.3 over the sweep, got x{off:.2f}"
assert span > 20, f"the first-layer gradients should span more than 20 decades, got {span:.1f}"

# %% [markdown]
# ## Dead ReLUs, layer by layer
#
# A ReLU unit is "dead" on a batch when it outputs 0 for every example. Below, the fraction of dead units per
# layer (mean over the 8 networks and its range) for every `init_scale` of the sweep, and the mean cosine
# similarity between the 256 examples' representations $h_l$.


# %%
def arccos_map(c):
    """Cosine between two ReLU outputs given the cosine c of their (jointly Gaussian) inputs (Cho & Saul 2009)."""
    c = np.clip(c, -1, 1)
    return (np.sqrt(1 - c**2) + (np.pi - np.arccos(c)) * c) / np.pi


x_unit = np.asarray(x) / np.linalg.norm(np.asarray(x), axis=1, keepdims=True)
pairs, cos_th = x_unit @ x_unit.T, []
for _ in range(DEPTH):
    pairs = arccos_map(pairs)
    cos_th.append((pairs.sum() - len(pairs)) / (len(pairs) * (len(pairs) - 1)))
cos_th = np.array(cos_th)

# %%
fig, (ax_dead, ax_cos) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=90, layout="constrained")
plot_theory_vs_measurement(  # the dead units are the same at every init_scale (checked below): one curve
    {
        f"relu, init_scale {sweep[0]:.1f} .. {sweep[-1]:.1f}": (layers[:-1], swept["relu"][0]["dead"]),
        "tanh (any init)": (layers[:-1], results[("he", "tanh")]["dead"].mean(0)),
    },
    ax=ax_dead,
    lines=True,
    yscale="linear",
    xlabel=LAYER_AXIS,
    ylabel="fraction of units dead on the batch",
    title=f"dead units: {len(sweep)} init_scales, one curve",
).set_ylim(-0.02, 0.6)
plot_theory_vs_measurement(
    {
        "relu (any init): measured": (layers[:-1], results[("he", "relu")]["cosine"].mean(0)),
        "tanh + LeCun: measured": (layers[:-1], results[("lecun", "tanh")]["cosine"].mean(0)),
        "tanh + He: measured": (layers[:-1], results[("he", "tanh")]["cosine"].mean(0)),
    },
    {"relu: arc-cosine theory": (layers[:-1], cos_th)},
    ax=ax_cos,
    yscale="linear",
    xlabel=LAYER_AXIS,
    ylabel="mean cosine between examples' h_l",
    title="how alike the 256 digits look, per layer",
)
plt.show()

# %%
dead = np.array([r["dead"] for r in swept["relu"]])  # (init_scales, networks, layers)
dead_mean = dead[0].mean(0)
cos_relu = results[("he", "relu")]["cosine"].mean(0)
same = bool(np.all(dead == dead[0]) and all(np.array_equal(results[(r, "relu")]["dead"], dead[0]) for r in STD))
print(
    f"dead fraction (mean of {NETS} networks) in layers 1, 10, 30, 50: {np.round(dead_mean[[0, 9, 29, 49]], 2)}; "
    f"identical for all {len(sweep)} init_scales and 3 rules, network by network: {same}\n"
    f"mean cosine, layer 30: relu measured {cos_relu[29]:.3f}, theory {cos_th[29]:.3f}; "
    f"tanh + He {results[('he', 'tanh')]['cosine'].mean(0)[29]:.2f}"
)

# %% [markdown]
# - The dead fraction grows from a few per cent in layer 1 to about 40 % in layer 50, and in every network
#   it is **identical** for every `init_scale` and every rule: with zero biases, multiplying a layer's weights
#   by a positive number never changes a sign. Dead units at initialisation are a property of depth, not of
#   the scale.
# - Why depth: the examples' representations line up, layer after layer (cosine 0.99 at layer 30). When all
#   256 inputs of a unit point nearly the same way, its pre-activation has the same sign for all of them, so
#   a unit tends to be either on for the whole batch or off for the whole batch. The arc-cosine kernel of an
#   infinitely wide ReLU layer (Cho & Saul 2009) predicts the mean cosine within 0.03 at every layer; in the
#   deep layers the width-128 networks align a little faster (0.988 vs 0.978 at layer 30).
# - tanh has no dead units, and in its chaotic phase (He) it decorrelates the examples instead.

# %% jupyter={"source_hidden": true}
# Checks the bullets above: identical dead units at every scale and rule, their growth, and the cosines.
assert same, "the dead units should be the same for every init_scale and rule, network by network"
assert dead_mean[0] < 0.1 and 0.35 < dead_mean[-1] < 0.5, (
    f"dead fraction: {dead_mean[0]:.0%} at layer 1, {dead_mean[-1]:.0%} at 50"
)
assert np.all(results[("he", "tanh")]["dead"] == 0), "tanh should have no dead units"
cos_gap = np.max(np.abs(cos_relu - cos_th))
assert cos_gap < 0.03, f"the arc-cosine kernel should predict the mean cosine within 0.03, off by {cos_gap:.3f}"
assert 0.97 < cos_th[29] < 0.98 and 0.985 < cos_relu[29] < 0.995, (
    f"layer 30: theory {cos_th[29]:.3f}, measured {cos_relu[29]:.3f}"
)

# %% [markdown]
# ## Training each rule on digits
#
# A 20-layer version (same width, same rules, `init_scale = 1`), plain SGD with `lr = 0.01`, 300 steps of 64
# digits. One training run is one sample, so each of the six networks trains on five seeds (each seed draws its
# own weights and its own order of batches); the plots show the mean over the seeds and their range.

# %%
train_depth, config = 20, TrainConfig(lr=0.01, steps=300)
runs = {}
for act in PHI:
    for rule in STD:
        cfg = ModelConfig(depth=train_depth, width=WIDTH, init=rule, activation=act)
        runs[(rule, act)] = train_seeds(cfg, data, config, seeds=SEEDS)
for act in PHI:
    fig = compare_histories(
        {rule: runs[(rule, act)] for rule in STD},
        title=f"{act}, {train_depth} hidden layers, SGD lr {config.lr}, by init rule",
    )
    display(fig)

# %% tags=["nbval-ignore-output"]
late = {k: r.stacked("loss")[:, -50:].mean(axis=1) for k, r in runs.items()}  # each seed: its last 50 steps
first_kernel = {k: r.stacked("layer_grad_norms")[:, 0, 0] for k, r in runs.items()}  # each seed: layer 1, step 0
lines = ["network          diverged   layer-1 kernel gradient, step 0   loss, mean of the last 50 steps, per seed"]
for (rule, act), r in runs.items():
    g = first_kernel[(rule, act)]
    lines.append(
        f"{act} + {rule:6s}   {len(r.diverged)} of {len(SEEDS)}     {g.min():12.2g} .. {g.max():<12.2g}     "
        + " ".join(f"{v:.3f}" for v in late[(rule, act)])
    )
print("\n".join(lines))

# %% [markdown]
# The last columns are each seed's mean loss over its last 50 steps: one batch's loss is too noisy to rank runs by.
#
# - **ReLU + LeCun / Xavier** stall at $\ln 10\approx 2.30$, the loss of a uniform guess, on every seed (within
#   0.03 at every step): at depth 20 the gradient reaching the first layer is $2^{-10}\approx10^{-3}$ of the
#   head's (He: about 1), and at step 0 their first-layer kernel gradient is 1/2000 to 1/700 of He's with the
#   same seed. **ReLU + He** trains on every seed, to a loss between about 0.2 and 0.6 (the seeds spread widely).
# - **tanh** trains with every rule, on every seed. Here He's larger variance trains fastest, to about 0.05: its
#   worst seed ends below the best seed of every other network. Yet it is on the chaotic side, and LeCun and
#   Xavier are the critical ones. At depth 20 He's gradient growth ($1.05^{20}\approx 2.7$) is harmless, and
#   larger gradients act like a larger learning rate at this fixed `lr` (notebook 01 shows the same for tanh at
#   1.7 times its critical scale). Criticality keeps signals alive; it does not promise the fastest training.
# - None of the 30 runs explodes at `init_scale = 1`. Explosion needs a factor above 1 per layer; notebook 01
#   gets it from ReLU + He at `init_scale = 1.2`.

# %% jupyter={"source_hidden": true}
# Checks the bullets above on every seed: stalls, who trains, tanh + He first, and the gradients at step 0.
assert not any(r.diverged for r in runs.values()), f"no run should diverge: {[r.diverged for r in runs.values()]}"
best, others = late["he", "tanh"], np.concatenate([v for k, v in late.items() if k != ("he", "tanh")])
assert best.max() < others.min(), (
    f"tanh + He's worst seed should beat all others: {best.max():.3f} vs {others.min():.3f}"
)
stall = {rule: np.abs(runs[rule, "relu"].stacked("loss") - np.log(10)) for rule in ("lecun", "xavier")}
share = {rule: first_kernel[rule, "relu"] / first_kernel["he", "relu"] for rule in ("lecun", "xavier")}
quoted = {  # what the text says: (measured values, lowest allowed, highest allowed)
    "relu + LeCun, distance from ln 10 at any step": (stall["lecun"], 0, 0.03),
    "relu + Xavier, distance from ln 10 at any step": (stall["xavier"], 0, 0.03),
    "relu + LeCun, layer-1 gradient at step 0 / He's": (share["lecun"], 1 / 2500, 1 / 600),
    "relu + Xavier, layer-1 gradient at step 0 / He's": (share["xavier"], 1 / 2500, 1 / 600),
    "relu + He, loss at the end": (late["he", "relu"], 0.1, 1.2),
    "tanh (every rule), loss at the end": ([late[rule, "tanh"] for rule in STD], 0, 0.7),
    "tanh + He, loss at the end, mean over seeds": (best.mean(), 0.02, 0.1),
}
for what, (values, low, high) in quoted.items():
    assert low <= np.min(values) and np.max(values) <= high, (
        f"{what}: expected {low:.3g} .. {high:.3g}, measured {np.min(values):.3g} .. {np.max(values):.3g}"
    )

# %% [markdown]
# ## Explore
#
# The panel trains the 20-layer network, one seed at a time, for 100 steps (a third of the runs above, so that a move
# retrains in about a second; `steps` goes further); it starts at ReLU + LeCun, which stalls. Try: `init`
# he (trains); back to lecun with `init_scale` 1.4 ($\approx\sqrt2$: LeCun's variance times 2 is He's);
# `activation` tanh with each `init`; `depth` 30 with ReLU + He at `init_scale` 1.2 (every seed explodes, as in
# notebook 01), then 1.1: move `seed` and see whether every run survives. In general, move `seed` to see how much
# two runs of one setting differ before you trust a difference between two settings. Moving `init`, `init_scale`
# or `seed` reuses the compiled step; a new `depth` or `activation` compiles once (a few seconds).

# %% tags=["nbval-ignore-output"]
explore = panel(
    data,
    model=ModelConfig(depth=train_depth, width=WIDTH, init="lecun", activation="relu"),
    config=config.replace(steps=100),
    controls=["init", "init_scale", "depth", "activation", "seed", "steps"],
    title="initialization: a deep MLP on digits, plain SGD",
)
explore

# %% [markdown]
# ## Claim vs measurement
#
# > "Normalize both the model's inputs and outputs to avoid exploding gradients."
#
# Normalising the inputs is good practice, but it sets the scale of the first layer only; the factor per
# layer comes from the weights. Standardising every pixel (zero mean, unit variance over the training set) and
# measuring the 50-layer networks again:

# %%
pixels = data.x_train.reshape(len(data.x_train), -1)
mean, std = pixels.mean(0), pixels.std(0)
x_std = jnp.asarray((np.asarray(x) - mean) / np.where(std > 0, std, 1.0))  # pixels that never vary stay 0
lines = ["network                         ||dL/dz_1|| / ||dL/dz_head||:  pixels in [0, 1]   standardised pixels"]
amps = {}
for label, rule, act, s, raw in [  # the raw-pixel measurements are those of the sections above
    ("relu + He, init_scale 1.5", "he", "relu", 1.5, swept["relu"][-1]),
    ("relu + LeCun", "lecun", "relu", 1.0, results[("lecun", "relu")]),
    ("tanh + He", "he", "tanh", 1.0, results[("he", "tanh")]),
]:
    standardised = measure_nets(kernels(rule, s), x_std, y, act)
    a = [float(rms_over_nets(r["dz"][:, 0] / r["dz"][:, -1])) for r in (raw, standardised)]
    amps[label] = a
    lines.append(f"{label:30s}  {a[0]:40.3g}   {a[1]:19.3g}")
print("\n".join(lines))

# %% [markdown]
# Standardised inputs change each amplification by less than a factor 2: the explosion ($6\cdot10^{8}$ at
# `init_scale` 1.5), the vanishing ($2\cdot10^{-8}$) and tanh's chaotic growth (16, or 10 with standardised
# pixels, which start the tanh layers more saturated) all stay. What prevents them at initialisation is a
# per-layer factor of 1: the right variance for the activation (this notebook), or a normalisation inside
# every layer (BatchNorm, notebook 06, which has its own story at initialisation). "Normalising the outputs"
# refers to regression targets; for a classifier the softmax already bounds the error the head sends back
# ($\|\mathrm{softmax} - \text{onehot}\| \le \sqrt2$ per example), and the amplification happens after that.

# %% jupyter={"source_hidden": true}
# Checks the paragraph above: standardising changes no amplification by more than x2, and the quoted values.
for label, (a_raw, a_std) in amps.items():
    assert 0.5 < a_std / a_raw < 2, f"{label}: standardising changed the amplification x{a_std / a_raw:.2f}"
assert all(5e8 < a < 8e8 for a in amps["relu + He, init_scale 1.5"]), (
    f"explosion should be about 6e8: {amps['relu + He, init_scale 1.5']}"
)
assert all(1e-8 < a < 4e-8 for a in amps["relu + LeCun"]), f"vanishing should be about 2e-8: {amps['relu + LeCun']}"
assert 15 < amps["tanh + He"][0] < 17 and 9 < amps["tanh + He"][1] < 11, (
    f"tanh + He should give 16 and 10: {amps['tanh + He']}"
)

# %% [markdown]
# ## Exercises
#
# **1.** He et al. (2015) also derived the rule for leaky ReLU, $\phi(z) = z$ for $z > 0$ and $a z$ otherwise.
# For $a = 0.1$, which $\sigma^2 = \text{fan\_in}\cdot\mathrm{Var}(W)$ keeps the forward second moment
# constant?

# %%
answer = ...
ok = ex.check_leaky_relu_gain(answer)

# %% [markdown]
# **2.** A ReLU MLP built with `ModelConfig(init="lecun", init_scale=s)`, so $\mathrm{Var}(W) = s^2/\text{fan\_in}$.
# Which `init_scale` makes it critical?

# %%
answer = ...
ok = ex.check_lecun_relu_scale(answer)

# %% [markdown]
# **3.** By hand: write `my_glorot_uniform(key, shape)`, a uniform initialiser with Xavier/Glorot's variance
# for a kernel of shape `(fan_in, fan_out)`, like `jax.nn.initializers.glorot_uniform()`. (For $U(-a, a)$,
# $\mathrm{Var} = a^2/3$.)


# %%
def my_glorot_uniform(key, shape):
    """Your code: a (fan_in, fan_out) array, uniform, with Var = 2 / (fan_in + fan_out)."""
    ...


ok = ex.check_glorot_uniform(my_glorot_uniform)

# %% [markdown]
# ## Takeaways
#
# - One argument gives all three rules: keep $\sigma^2\,\mathbb{E}[\phi(z)^2]/q$ (forward) and
#   $\sigma^2\,\mathbb{E}[\phi'(z)^2]$ (backward) at 1. ReLU needs $\sigma^2 = 2$ (He); tanh near 0 needs
#   $\sigma^2 = 1$ (LeCun forward, Xavier's compromise between forward and backward).
# - With equal widths LeCun and Xavier are the same rule; they differ only where fan-in and fan-out differ.
# - Mean-field theory predicts 50 layers of forward and backward norms, averaged over 8 networks, within a
#   factor 1.3; a single network drifts from it randomly, more so the larger depth/width.
# - The wrong rule for the activation is a factor per layer: ReLU with LeCun/Xavier loses $\sqrt2$ per layer and
#   stalls at depth 20, on every seed. `init_scale` moves you off critical in either direction, exponentially in
#   depth.
# - Critical is not fastest: at depth 20 tanh + He, on the chaotic side, trains faster than the critical tanh
#   rules on every seed; its larger gradients act like a larger learning rate.
# - Dead ReLUs at initialisation come from depth (representations align), not from the weights' scale.
# - Zero or constant weights never break the symmetry between units: a layer of identical units is one unit.
# - Orthogonal weights give a deep linear network an exact isometry and a tanh network a near one; mean-field's
#   "norm preserved on average" can hide a Jacobian whose singular values spread over ten decades. ReLU
#   networks lose directions whatever the weights.
# - JAX's named `*_normal` initialisers are truncated normals with the same variance.
