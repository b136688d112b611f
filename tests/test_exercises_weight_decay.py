"""Each checker of notebook 05 accepts a correct answer and rejects wrong ones with a helpful message."""

import optax
import pytest

from helpers.exercises import weight_decay as wd_ex


def test_remaining_fraction(capsys):
    args = dict(lr=0.1, l2=0.01, steps=1000)
    right = (1 - 0.1 * 0.01) ** 1000
    assert wd_ex.check_remaining_fraction(right, **args)
    assert capsys.readouterr().out.startswith("Correct.")
    cases = [
        (0.0, "factor"),
        (0.999, "one step"),
        (0.99**1000, "learning rate"),
        (1 - right, "remains"),
        (0.5, "repeat"),
    ]
    for wrong, words in cases:
        assert not wd_ex.check_remaining_fraction(wrong, **args)
        out = capsys.readouterr().out
        assert out.startswith("Not yet.") and words in out and f"{right:.3f}" not in out
    assert not wd_ex.check_remaining_fraction(..., **args)
    assert "Not answered yet" in capsys.readouterr().out


def test_adamw_chain_accepts_correct(capsys):
    def mine(lr, weight_decay):
        return optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(weight_decay), optax.scale(-lr))

    assert wd_ex.check_adamw_chain(mine)
    assert capsys.readouterr().out.startswith("Correct.")
    assert wd_ex.check_adamw_chain(lambda lr, weight_decay: optax.adamw(lr, weight_decay=weight_decay))
    capsys.readouterr()


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.scale_by_adam(), optax.scale(-lr)), "coupled"),
        (
            lambda lr, wd: optax.chain(optax.scale_by_adam(), optax.scale(-lr), optax.add_decayed_weights(-wd)),
            "learning rate",
        ),
        (lambda lr, wd: optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(wd), optax.scale(lr)), "sign"),
        (lambda lr, wd: optax.adam(lr), "plain Adam"),
        (lambda lr, wd: optax.sgd(lr), "Three pieces"),
        (lambda lr, wd: None, "Not answered yet"),
        (lambda lr, wd: 3, "GradientTransformation"),
        (lambda lr, wd: 1 / 0, "ZeroDivisionError"),
    ],
)
def test_adamw_chain_rejects_wrong(make, words, capsys):
    assert not wd_ex.check_adamw_chain(make)
    out = capsys.readouterr().out
    assert words in out
    assert "scale_by_adam(), optax.add_decayed_weights" not in out  # never the answer


def test_first_adam_l2_step(capsys):
    assert wd_ex.check_first_adam_l2_step(0.01, lr=0.01, l2=0.1)
    assert capsys.readouterr().out.startswith("Correct.")
    assert wd_ex.check_first_adam_l2_step(-0.01, lr=0.01, l2=0.1)
    capsys.readouterr()
    for wrong, words in [(0.001, "SGD"), (0.1, "one more number"), (0.5, "m_hat")]:
        assert not wd_ex.check_first_adam_l2_step(wrong, lr=0.01, l2=0.1)
        out = capsys.readouterr().out
        assert out.startswith("Not yet.") and words in out and "0.01" not in out
    assert not wd_ex.check_first_adam_l2_step(None, lr=0.01, l2=0.1)
    assert "Not answered yet" in capsys.readouterr().out
