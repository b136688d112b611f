"""diagnose names the cause of a catalogue of broken runs, several per cause built in different ways, and its fix
makes each of them train; healthy runs are left alone."""

import dataclasses
import math

import numpy as np
import pytest

from helpers.data import Dataset, load_digits
from helpers.diagnose import CAUSES, critical_init_scale, diagnose, sharpness
from helpers.models import ModelConfig
from helpers.train import TrainConfig, train

DATA = load_digits(seed=0)
MLP = ModelConfig(depth=8, width=64)
BN_CNN = ModelConfig(kind="cnn", depth=3, width=16, batchnorm=True)


def affine(data: Dataset, scale: float, shift: float = 0.0) -> Dataset:
    """The same digits with every pixel x -> scale * x + shift."""
    return dataclasses.replace(data, x_train=data.x_train * scale + shift, x_test=data.x_test * scale + shift)


def standardized(data: Dataset) -> Dataset:
    """x -> (x - mean) / std over the training set: the data change an input_scale report asks for."""
    mean, std = float(data.x_train.mean()), float(data.x_train.std())
    return affine(data, 1 / std, -mean / std)


CATALOGUE = {
    # the step size: diverged, or the loss rose and stayed up
    "sgd lr 2": ("learning_rate", MLP, TrainConfig(lr=2.0), None),
    "momentum lr 1": ("learning_rate", MLP, TrainConfig(optimizer="momentum", lr=1.0), None),
    "gelu lr 2": ("learning_rate", MLP.replace(activation="gelu"), TrainConfig(lr=2.0), None),
    "tanh lr 2": ("learning_rate", MLP.replace(activation="tanh"), TrainConfig(lr=2.0), None),
    "batchnorm tanh cnn lr 20": ("learning_rate", BN_CNN.replace(activation="tanh"), TrainConfig(lr=20.0), None),
    # the initial weights: geometric growth or decay with depth
    "relu 12 x 64 at 2": ("init_scale", ModelConfig(depth=12, init_scale=2.0), TrainConfig(lr=0.05), None),
    "relu 16 x 64 at 1.8": ("init_scale", ModelConfig(depth=16, init_scale=1.8), TrainConfig(lr=0.05), None),
    "relu 20 x 64 at 0.5": ("init_scale", ModelConfig(depth=20, init_scale=0.5), TrainConfig(lr=0.05), None),
    "tanh 20 x 64 at 0.3": (
        "init_scale",
        ModelConfig(depth=20, activation="tanh", init_scale=0.3),
        TrainConfig(lr=0.05),
        None,
    ),
    # the data
    "pixels 0-255": ("input_scale", MLP, TrainConfig(lr=0.05), (255.0, 0.0)),
    "pixels + 50": ("input_scale", MLP, TrainConfig(lr=0.05), (1.0, 50.0)),
    "pixels / 1000": ("input_scale", MLP, TrainConfig(lr=0.05), (1e-3, 0.0)),
    "pixels 0-255, momentum": ("input_scale", MLP, TrainConfig(optimizer="momentum", lr=0.01), (255.0, 0.0)),
    "pixels 0-255, tanh": ("input_scale", MLP.replace(activation="tanh"), TrainConfig(lr=0.05), (255.0, 0.0)),
    # BatchNorm on too few rows
    "batch of 1": ("batchnorm_mode", MLP.replace(batchnorm=True), TrainConfig(lr=0.05, batch_size=1), None),
    "batch of 2": ("batchnorm_mode", MLP.replace(batchnorm=True), TrainConfig(lr=0.05, batch_size=2), None),
    "batch of 4, momentum": (
        "batchnorm_mode",
        MLP.replace(batchnorm=True, depth=4),
        TrainConfig(optimizer="momentum", lr=0.01, batch_size=4),
        None,
    ),
    # float16 overflow
    "float16, loss scale 2^20": (
        "low_precision",
        MLP,
        TrainConfig(lr=0.05, precision="float16", loss_scale=2.0**20),
        None,
    ),
    "float16 cnn, loss scale 1e6": (
        "low_precision",
        BN_CNN,
        TrainConfig(lr=0.2, precision="float16", loss_scale=1e6),
        None,
    ),
    "float16 tanh, loss scale 2^19": (
        "low_precision",
        MLP.replace(activation="tanh"),
        TrainConfig(lr=0.05, precision="float16", loss_scale=2.0**19),
        None,
    ),
    # ReLUs killed by large steps
    "adam lr 0.1": ("dead_units", MLP, TrainConfig(optimizer="adam", lr=0.1), None),
    "adam lr 1": ("dead_units", MLP, TrainConfig(optimizer="adam", lr=1.0), None),
    "sgd lr 1, clipped at 5": ("dead_units", MLP, TrainConfig(lr=1.0, clip_norm=5.0), None),
    "batchnorm cnn lr 20": ("dead_units", BN_CNN, TrainConfig(lr=20.0), None),
    "batchnorm mlp lr 30": ("dead_units", MLP.replace(batchnorm=True), TrainConfig(lr=30.0), None),
    # healthy runs, some with unusual settings that are not the cause of anything
    "healthy mlp": ("none", MLP, TrainConfig(lr=0.05), None),
    "healthy cnn": ("none", BN_CNN, TrainConfig(lr=0.2), None),
    "healthy float16": ("none", MLP, TrainConfig(lr=0.1, precision="float16"), None),
    "healthy bfloat16 adam": ("none", MLP, TrainConfig(optimizer="adam", lr=1e-3, precision="bfloat16"), None),
    "batchnorm absorbs pixels 0-255": ("none", MLP.replace(batchnorm=True), TrainConfig(lr=0.05), (255.0, 0.0)),
}


def trains(history, num_classes: int = 10) -> bool:
    """No divergence, and the last tenth of the losses averages below half the first (and half of ln classes)."""
    loss = np.asarray(history.loss)
    tail = loss[-max(1, len(loss) // 10) :].mean()
    return history.diverged_at is None and tail < 0.5 * min(loss[0], math.log(num_classes))


def run(model_config, config, data):
    net = model_config.build(data.image_shape, data.num_classes)
    return net, train(net, data, config)


@pytest.mark.slow
@pytest.mark.parametrize("name", CATALOGUE)
def test_the_cause_is_named_and_the_fix_makes_the_run_train(name):
    cause, model_config, config, change = CATALOGUE[name]
    data = DATA if change is None else affine(DATA, *change)
    net, history = run(model_config, config, data)
    assert trains(history) == (cause == "none"), (
        f"{name}: the catalogue's run should {'' if cause == 'none' else 'not '}train"
    )
    found = diagnose(history, net, data)
    assert found.cause == cause, f"{name}: expected {cause}, got\n{found}"
    assert found.evidence and all(isinstance(e, str) and e for e in found.evidence), found
    assert found.failed == (cause != "none"), found
    if cause == "none":
        assert found.fix == {}, found
        return
    fixed_model, fixed_config = found.apply(model_config, config)
    if cause == "input_scale":
        assert found.fix == {} and "standardize" in found.headline, found
        data = standardized(data)
    else:
        assert found.fix, f"{name}: a {cause} report should change a config field"
    _, fixed = run(fixed_model, fixed_config, data)
    assert trains(fixed), (
        f"{name}: after {found.fix} the loss went {fixed.loss[0]:.3g} -> {fixed.loss[-20:].mean():.3g}"
    )


def test_the_catalogue_covers_every_cause_several_ways():
    counts = {c: sum(entry[0] == c for entry in CATALOGUE.values()) for c in CAUSES}
    assert min(counts.values()) >= 3, counts


def test_the_report_reads_as_cause_evidence_fix():
    net, history = run(MLP, TrainConfig(lr=2.0, steps=20), DATA)
    found = diagnose(history, net, DATA)
    text = str(found).splitlines()
    assert text[0].startswith("diagnosis: learning_rate: ") and text[-1].startswith("  fix: lr="), text
    assert all(line.startswith("  - ") for line in text[1:-1]) and len(text) >= 3, text
    assert "\n" not in found.line and found.line.startswith("learning_rate: "), found.line
    lr = found.fix["lr"]
    assert lr == pytest.approx(
        1 / sharpness(MLP.build(DATA.image_shape), DATA.x_train[:256], DATA.y_train[:256]), rel=0.01
    )


def test_sharpness_is_the_hessians_top_eigenvalue():
    """The Hessian of a tiny network formed in full: its eigenvalue of largest magnitude is what power iteration on
    Hessian-vector products finds."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    net = ModelConfig(depth=1, width=4).build(DATA.image_shape)
    x, y = DATA.x_train[:32], DATA.y_train[:32]
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def loss(v):
        logits = nnx.merge(graphdef, unravel(v), rest, copy=True)(jnp.asarray(x))
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    eigenvalues = np.linalg.eigvalsh(np.asarray(jax.hessian(loss)(flat), np.float64))
    top = eigenvalues[np.argmax(np.abs(eigenvalues))]
    assert sharpness(net, x, y, iterations=200) == pytest.approx(top, rel=1e-3)


def test_a_fix_goes_to_the_config_that_has_the_field():
    from helpers.diagnose import Diagnosis

    found = Diagnosis("init_scale", "", [], {"init_scale": 1.0, "lr": 0.02})
    assert found.apply(MLP, TrainConfig()) == (MLP.replace(init_scale=1.0), TrainConfig(lr=0.02))
    with pytest.raises(ValueError):
        Diagnosis("x", "", [], {"no_such_field": 1}).apply(MLP, TrainConfig())


def test_an_lr_above_the_stable_limit_is_named_even_when_the_loss_never_rose():
    """SGD at 3 x 2 / lambda_max: the loss need not rise 1.5x, but the run does not train."""
    net, history = run(MLP, TrainConfig(lr=0.3), DATA)
    assert not trains(history) and np.nanmax(history.loss[:20]) <= 1.5 * history.loss[0], "the case this test is for"
    found = diagnose(history, net, DATA)
    assert found.cause == "learning_rate" and found.fix["lr"] < 0.1, found
    _, fixed = run(*found.apply(MLP, TrainConfig(lr=0.3)), DATA)
    assert trains(fixed)


def test_critical_init_scale_is_notebook_02s():
    assert critical_init_scale("relu", "he") == 1.0
    assert critical_init_scale("relu", "lecun") == pytest.approx(math.sqrt(2))
    assert critical_init_scale("tanh", "he") == pytest.approx(1 / math.sqrt(2))
    assert critical_init_scale("tanh", "lecun") == 1.0


def test_the_model_records_the_config_that_built_it_without_entering_its_graph():
    from flax import nnx

    a, b = MLP.build(DATA.image_shape), MLP.replace(init_scale=2.0).build(DATA.image_shape)
    assert a.config == MLP and b.config == MLP.replace(init_scale=2.0)
    assert nnx.split(a)[0] == nnx.split(b)[0], "a new init_scale must not change the graph (it would recompile)"
    seeds = MLP.build_seeds([3, 4], DATA.image_shape)
    assert [net.config for net in seeds] == [MLP.replace(seed=3), MLP.replace(seed=4)]


def test_bad_arguments_name_themselves():
    net, history = run(MLP, TrainConfig(lr=0.05, steps=5), DATA)
    empty = dataclasses.replace(history, loss=history.loss[:0])
    with pytest.raises(ValueError, match="history"):
        diagnose(empty, net, DATA)
    with pytest.raises(ValueError, match="model"):
        diagnose(history, MLP.replace(depth=4).build(DATA.image_shape), DATA)
    from flax import nnx

    from helpers.models import MLP as MLPNet

    with pytest.raises(ValueError, match="model"):
        diagnose(history, MLPNet(64, 8, 64, 10, rngs=nnx.Rngs(0)), DATA)
    wrong = dataclasses.replace(DATA, x_train=DATA.x_train[:, :4], x_test=DATA.x_test[:, :4])
    with pytest.raises(ValueError, match="data"):
        diagnose(history, net, wrong)
