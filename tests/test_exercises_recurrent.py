"""Each checker of notebook 09 accepts a correct answer and rejects wrong ones with a helpful message."""

from helpers.exercises import recurrent


def test_unanswered_exercises_say_so(capsys):
    assert not recurrent.check_lag_below_one_percent(...)
    assert not recurrent.check_clip_factor(...)
    assert capsys.readouterr().out.count("Not answered yet") == 2


def test_lag_below_one_percent(capsys):
    assert recurrent.check_lag_below_one_percent(44) and "Correct" in capsys.readouterr().out
    for wrong, hint in [(43, "just above"), (43.71, "between two steps"), (10, "logarithms"), ("x", "one number")]:
        assert not recurrent.check_lag_below_one_percent(wrong)
        assert hint in capsys.readouterr().out, wrong


def test_clip_factor(capsys):
    assert recurrent.check_clip_factor(7) and "Correct" in capsys.readouterr().out
    for wrong, hint in [(0.1, "step length"), (0.7, "step length"), (1 / 7, "other way round"), (3, "Compare")]:
        assert not recurrent.check_clip_factor(wrong)
        assert hint in capsys.readouterr().out, wrong
