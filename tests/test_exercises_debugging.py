"""Each checker of notebook 08 accepts a correct answer and rejects wrong ones with a helpful message."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from helpers.exercises import debugging


def test_unanswered_exercises_say_so(capsys):
    assert not debugging.check_overflow_layer(...)
    assert not debugging.check_largest_loss_scale(...)
    assert not debugging.check_survives_bfloat16(...)
    assert not debugging.check_survives_bfloat16(lambda w, u: None)  # the notebook's `def survives(w, u): ...`
    assert capsys.readouterr().out.count("Not answered yet") == 4


def test_overflow_layer(capsys):
    assert debugging.check_overflow_layer(11)
    assert debugging.check_overflow_layer(11.0)
    assert "Correct" in capsys.readouterr().out
    crossing = math.log(65504 / 6.0) / math.log(2.5)
    for wrong, hint in [
        (10, "still below 65504"),
        (crossing, "between two layers"),
        (12, "One layer too far"),
        (13, "started the line from 1"),
        (95, "not float32's"),
        (3, "Solve 6.0 * 2.5**l = 65504"),
        (10.5, "whole number"),
        ("dense11", "one layer index"),
    ]:
        assert not debugging.check_overflow_layer(wrong)
        assert hint in capsys.readouterr().out


def test_largest_loss_scale(capsys):
    assert debugging.check_largest_loss_scale(2**16)
    assert debugging.check_largest_loss_scale(65536.0)
    assert "Correct" in capsys.readouterr().out
    for wrong, hint in [
        (2**17, "> 65504"),
        (2**15, "twice it still fits"),
        (16, "not its exponent"),
        (65504 / 0.8, "powers of two"),
        (50_000, "power of two"),
        (-4, "power of two"),
        ("big", "one number"),
    ]:
        assert not debugging.check_largest_loss_scale(wrong)
        assert hint in capsys.readouterr().out


def by_the_rule(w, u):
    return abs(u) >= 2.0 ** (np.floor(np.log2(abs(w))) - 8)


def by_bfloat16(w, u):
    w16 = jnp.asarray(w, jnp.bfloat16)
    return bool((w16.astype(jnp.float32) + u).astype(jnp.bfloat16) != w16)


@pytest.mark.parametrize("fn", [by_the_rule, by_bfloat16])
def test_survives_bfloat16_accepts_the_rule_and_bfloat16_itself(fn, capsys):
    assert debugging.check_survives_bfloat16(fn)
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (lambda w, u: abs(u / w) >= 2.0**-8, "rule of thumb"),
        (lambda w, u: abs(u) >= 2.0 ** (np.floor(np.log2(abs(w))) - 7), "not a whole gap"),
        (lambda w, u: True, "every update survives"),
        (lambda w, u: False, "no update survives"),
        (lambda w, u: abs(u) >= 2.0 ** (np.floor(np.log2(abs(w))) - 9), "cases are wrong"),
        (lambda w, u: 1 / 0, "ZeroDivisionError"),
        (lambda w, u: [1, 2], "True or False"),
        (42, "function itself"),
    ],
)
def test_survives_bfloat16_rejects_wrong_answers_with_a_hint(fn, hint, capsys):
    assert not debugging.check_survives_bfloat16(fn)
    assert hint in capsys.readouterr().out


def test_survives_cases_have_no_near_ties():
    for w, u in debugging._cases():
        half_gap = 2.0 ** (math.floor(math.log2(abs(w))) - 8)
        assert not 0.8 < abs(u) / half_gap < 1.25, (w, u)
        assert by_bfloat16(w, u) == by_the_rule(w, u), (w, u)


def test_gallery_causes(capsys):
    right = dict(debugging.GALLERY_CAUSES)
    assert not debugging.check_gallery_causes({k: ... for k in right})
    assert "Not answered yet" in capsys.readouterr().out
    assert debugging.check_gallery_causes(right) and "Correct" in capsys.readouterr().out
    swapped = right | {"A": "dead_units", "F": "learning_rate"}
    assert not debugging.check_gallery_causes(swapped)
    out = capsys.readouterr().out
    assert "2 of 6" in out and "A: " in out and "F: " in out and "learning_rate" not in out.split("2 of 6")[1]
    assert not debugging.check_gallery_causes({"A": "learning_rate"})
    assert "missing: B, C, D, E, F" in capsys.readouterr().out
    assert not debugging.check_gallery_causes(right | {"B": "init"})
    assert "exactly" in capsys.readouterr().out
