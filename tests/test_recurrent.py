"""Recurrent networks and sequences: the adding problem, RNN and LSTM models, and the engine's regression path."""

import numpy as np
import pytest

from helpers.compiles import CompileCounter
from helpers.data import adding_problem, load_digits
from helpers.diagnostics import activation_stats, layer_grad_norms, time_grad_norms
from helpers.models import LSTM, RNN, ModelConfig
from helpers.train import TrainConfig, evaluate, train

DATA = adding_problem(10, n_train=512, n_test=256)
RNN_CONFIG = ModelConfig(kind="rnn", depth=1, width=16, activation="tanh")


def test_the_adding_problem_is_what_hochreiter_and_schmidhuber_posed():
    d = adding_problem(12, n_train=300, n_test=100, seed=3)
    assert d.x_train.shape == (300, 12, 2) and d.x_test.shape == (100, 12, 2) and d.image_shape == (12, 2)
    assert d.regression and d.num_classes == 1 and d.y_train.dtype == np.float32
    values, markers = d.x_train[..., 0], d.x_train[..., 1]
    assert np.all(markers.sum(axis=1) == 2), "exactly two markers per sequence"
    assert np.all(markers[:, :6].sum(axis=1) == 1), "one marker in each half"
    np.testing.assert_allclose(d.y_train, (values * markers).sum(axis=1), rtol=1e-6)
    assert values.min() >= 0 and values.max() <= 1
    big = adding_problem(50, n_train=20_000, n_test=1)
    assert abs(np.mean((big.y_train - 1) ** 2) - 1 / 6) < 0.01, "predicting 1 scores the variance of the sum, 1/6"
    same = adding_problem(12, n_train=300, n_test=100, seed=3)
    assert np.array_equal(same.x_train, d.x_train), "the same seed gives the same data"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"length": 1}, "length"), ({"length": 2.5}, "length"), ({"n_train": 0}, "n_train"), ({"seed": -1}, "seed")],
)
def test_bad_adding_problem_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        adding_problem(**({"length": 10} | kwargs))


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
@pytest.mark.parametrize("rho", [0.5, 1.0, 1.7])
def test_init_scale_is_the_spectral_radius_of_every_recurrent_block(kind, rho):
    net = ModelConfig(kind=kind, depth=2, width=8, activation="tanh", init_scale=rho).build((10, 2), 1)
    gates = 4 if kind == "lstm" else 1
    for kernel, n_in in [(net.first.layer.kernel[...], 2), (net.blocks.layer.kernel[...][0], 8)]:
        w_h = np.asarray(kernel)[n_in:]
        for g in range(gates):
            block = w_h[:, g * 8 : (g + 1) * 8]
            assert np.abs(np.linalg.eigvals(block)).max() == pytest.approx(rho, rel=1e-5)
            np.testing.assert_allclose(block.T @ block, rho**2 * np.eye(8), atol=1e-5)  # rho times orthogonal


@pytest.mark.parametrize("rho", [0.8, 1.0, 1.25])
def test_a_linear_rnn_carries_the_gradient_back_exactly_as_rho_to_the_lag(rho):
    """h_t = x_t W_x + h_(t-1) W_h with W_h = rho Q, Q orthogonal: dL/dh_t = dL/dh_T (W_h^T)^(T-t), whose norm is
    rho^(T-t) ||dL/dh_T|| for every example (Pascanu et al. 2013, with the activation's derivative equal to 1)."""
    net = ModelConfig(kind="rnn", depth=1, width=16, activation="linear", init_scale=rho).build(DATA.image_shape, 1)
    norms = time_grad_norms(net, DATA.x_train[:32], DATA.y_train[:32])
    lags = np.arange(len(norms))[::-1]
    np.testing.assert_allclose(norms, norms[-1] * rho**lags, rtol=1e-4)


def test_tanh_only_shrinks_what_rho_to_the_lag_predicts():
    """tanh' <= 1, so with a tanh the gradient through time stays at or below rho^(T - t) ||dL/dh_T||."""
    net = RNN_CONFIG.replace(init_scale=1.5).build(DATA.image_shape, 1)
    norms = time_grad_norms(net, DATA.x_train[:32], DATA.y_train[:32])
    lags = np.arange(len(norms))[::-1]
    assert np.all(norms <= norms[-1] * 1.5**lags * (1 + 1e-5))
    assert norms[0] < 0.5 * norms[-1] * 1.5 ** lags[0], "saturated units make it strictly smaller here"


def test_time_grad_norms_refuses_what_it_cannot_measure():
    with pytest.raises(ValueError, match="model"):
        time_grad_norms(RNN_CONFIG.replace(depth=2).build(DATA.image_shape, 1), DATA.x_train[:4], DATA.y_train[:4])
    with pytest.raises(ValueError, match="model"):
        time_grad_norms(ModelConfig().build((8, 8, 1)), np.zeros((4, 8, 8, 1)), np.zeros(4, int))


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_recurrent_networks_learn_the_adding_problem_with_the_engine(kind):
    """The regression path end to end: float targets, mean squared error, evaluate reports it; well below the 1/6
    of always answering 1, on every seed tried."""
    for seed in (0, 1):
        net = RNN_CONFIG.replace(kind=kind, seed=seed).build(DATA.image_shape, DATA.num_classes)
        history = train(net, DATA, TrainConfig(lr=0.05, clip_norm=1.0, steps=300, seed=seed))
        assert history.diverged_at is None and history.layer_names == [f"{kind}0", "head"]
        assert evaluate(net, DATA.x_test, DATA.y_test) < 0.12, f"{kind}, seed {seed}: test MSE should beat 1/6"
    assert activation_stats(net, DATA.x_train[:32]).std.shape == (1,)
    assert np.all(np.isfinite(layer_grad_norms(net, DATA.x_train[:32], DATA.y_train[:32])))


def test_a_new_spectral_radius_or_lr_compiles_nothing():
    config = TrainConfig(lr=0.05, steps=20, chunk_steps=10)
    train(RNN_CONFIG.build(DATA.image_shape, 1), DATA, config)
    with CompileCounter() as compiles:
        train(RNN_CONFIG.replace(init_scale=1.3).build(DATA.image_shape, 1), DATA, config.replace(lr=0.01))
    assert compiles.count == 0, "init_scale and lr are values, not structure"


def test_targets_must_fit_the_model():
    digits = load_digits()
    with pytest.raises(ValueError, match="data"):  # float targets, 10 outputs
        train(RNN_CONFIG.build(DATA.image_shape, 10), DATA, TrainConfig(steps=2))
    with pytest.raises(ValueError, match="data"):  # integer labels 0-9, 1 output
        train(ModelConfig().build(digits.image_shape, 1), digits, TrainConfig(steps=2))
    with pytest.raises(ValueError, match="data"):  # images into a recurrent network
        train(RNN_CONFIG.build((8, 2), 10), digits, TrainConfig(steps=2))
    with pytest.raises(ValueError, match="batchnorm"):
        RNN_CONFIG.replace(batchnorm=True).build(DATA.image_shape, 1)


def test_config_round_trip_and_classes():
    for kind, cls in [("rnn", RNN), ("lstm", LSTM)]:
        config = RNN_CONFIG.replace(kind=kind, init_scale=0.9)
        assert ModelConfig.parse(str(config)) == config and isinstance(config.build((10, 2), 1), cls)
    assert "init_scale" in str(RNN_CONFIG) and "kind=rnn" in str(RNN_CONFIG)


def test_diagnose_judges_a_regression_against_the_targets_variance():
    from helpers.diagnose import diagnose

    net = RNN_CONFIG.build(DATA.image_shape, 1)
    history = train(net, DATA, TrainConfig(lr=0.05, clip_norm=1.0, steps=300))
    assert diagnose(history, net, DATA).cause == "none", "a run that learned the adding problem is healthy"
    for seed in (0, 1, 2):
        net = RNN_CONFIG.replace(seed=seed).build(DATA.image_shape, 1)
        history = train(net, DATA, TrainConfig(lr=1.0, steps=100))  # unclipped at lr 1: every seed diverges
        assert history.diverged_at is not None, "the case this test is for"
        assert diagnose(history, net, DATA).cause == "learning_rate"
