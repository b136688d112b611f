"""Checkers for notebook 09 (recurrent networks). Each prints what is wrong and a hint, never the answer."""

from __future__ import annotations

import math

from helpers.exercises._check import correct, not_answered, not_yet, number, unanswered, whole_number

__all__ = ["check_clip_factor", "check_lag_below_one_percent"]

#: Exercise 1: a linear RNN's spectral radius, and the share of the gradient asked about.
RHO, SHARE = 0.9, 0.01
#: Exercise 2: the learning rate, the gradient's norm and the clipping threshold.
LR, GRAD_NORM, CLIP = 0.1, 7.0, 1.0


def check_lag_below_one_percent(answer) -> bool:
    """Exercise 1: the smallest whole k with RHO^k < SHARE: ceil(log(0.01) / log(0.9)) = 44."""
    if unanswered(answer):
        return not_answered()
    value = number(answer)
    if value is None:
        return not_yet(f"Answer with one number of steps, e.g. 10; got {answer!r}.")
    exact = math.log(SHARE) / math.log(RHO)
    target = math.ceil(exact)
    k = whole_number(answer)
    if k is None:
        if abs(value - exact) < 0.05:
            return not_yet(f"That is where {RHO}^k crosses 1 %, between two steps. Which whole k is the first below?")
        return not_yet("A number of steps is a whole number.")
    if k == target:
        return correct(f"{RHO}^{k} = {RHO**k:.4f} < 0.01, while {RHO}^{k - 1} = {RHO ** (k - 1):.4f} is not yet.")
    if k == target - 1:
        return not_yet(f"{RHO}^{k} = {RHO**k:.4f}: still just above 1 %.")
    return not_yet(f"The gradient at lag k is {RHO}^k times the last one. Solve {RHO}^k = 0.01 for k with logarithms.")


def check_clip_factor(answer) -> bool:
    """Exercise 2: the SGD step is LR * 7 = 0.7 long, the clipped one LR * 1 = 0.1: 7 times shorter."""
    if unanswered(answer):
        return not_answered()
    value = number(answer)
    if value is None:
        return not_yet(f"Answer with one number, the factor; got {answer!r}.")
    target = GRAD_NORM / CLIP
    if math.isclose(value, target, rel_tol=1e-6):
        return correct(
            f"SGD steps lr ||g|| = {LR * GRAD_NORM:g}; clipped, ||g|| is replaced by c: lr c = {LR * CLIP:g}, "
            f"{target:g} times shorter. The learning rate cancels: the factor is ||g|| / c."
        )
    if math.isclose(value, LR * CLIP, rel_tol=1e-6) or math.isclose(value, LR * GRAD_NORM, rel_tol=1e-6):
        return not_yet("That is a step length. The question asks how many times shorter the clipped step is.")
    if math.isclose(value, 1 / target, rel_tol=0.02):  # 0.14 or 0.143 too
        return not_yet("That is the clipped length over the SGD length; the question asks the other way round.")
    return not_yet("Clipping replaces ||g|| by c when ||g|| > c. Compare lr ||g|| with lr c.")
