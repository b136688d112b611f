"""Checkers for notebook 08 (when a run blows up; low precision). Each prints what is wrong and a hint, never the
answer."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from helpers.exercises._check import close, correct, not_answered, not_yet, number, unanswered, whole_number

__all__ = ["check_gallery_causes", "check_largest_loss_scale", "check_overflow_layer", "check_survives_bfloat16"]

#: float16's largest finite number.
FLOAT16_MAX = 65504.0

#: Exercise 1: a ReLU MLP at this init_scale whose first hidden layer's largest absolute activation on a batch is this.
OVERFLOW_INIT_SCALE, OVERFLOW_FIRST_MAX = 2.5, 6.0

#: Exercise 2: the largest absolute entry that the unscaled gradient reaches anywhere in the backward pass.
LARGEST_GRADIENT = 0.8


def check_overflow_layer(answer) -> bool:
    """Exercise 1: the first layer (dense index) whose predicted largest activation 6.0 * 2.5**l exceeds 65504."""
    if unanswered(answer):
        return not_answered()
    crossing = math.log(FLOAT16_MAX / OVERFLOW_FIRST_MAX) / math.log(OVERFLOW_INIT_SCALE)  # between two layers
    target = math.floor(crossing) + 1
    value = number(answer)
    if value is None:
        return not_yet(f"Answer with one layer index, an integer such as 7 for dense7; got {answer!r}.")
    layer = whole_number(answer)
    if layer is None:
        if abs(value - crossing) < 0.05:
            return not_yet(
                "That is where the line crosses 65504, between two layers. Which is the first layer (an integer) "
                "whose largest |h| is above it?"
            )
        return not_yet("A layer index is a whole number: dense0, dense1, ...")
    if layer == target:
        return correct(
            f"6.0 * 2.5**l passes 65504 at l = log(65504 / 6.0) / log(2.5) = {crossing:.2f}, so dense{target} is "
            f"the first layer above it, where float16 holds inf (give or take a couple of layers for one network)."
        )
    if layer == target - 1:
        return not_yet("At that layer the predicted largest |h| is still below 65504: check 6.0 * 2.5**l there.")
    if layer == target + 1:
        return not_yet("One layer too far: the line passes 65504 before that layer. Is dense0 your l = 0?")
    from_one = math.log(FLOAT16_MAX) / math.log(OVERFLOW_INIT_SCALE)
    if layer in (math.floor(from_one), math.floor(from_one) + 1):
        return not_yet("You started the line from 1. It starts from dense0's largest |h|, which is 6.0 here.")
    if layer > 30:
        return not_yet("float16's largest finite number is 65504, not float32's 3.4e38.")
    return not_yet(
        "The largest |h| of layer l is about 6.0 * 2.5**l (dense0 is l = 0). Solve 6.0 * 2.5**l = 65504 for l, "
        "then take the first whole layer beyond it."
    )


def check_largest_loss_scale(answer) -> bool:
    """Exercise 2: the largest power of two S with S * 0.8 <= 65504: 2**16."""
    if unanswered(answer):
        return not_answered()
    value = number(answer)
    if value is None:
        return not_yet(f"Answer with one number, the loss scale S itself (e.g. 2**10); got {answer!r}.")
    exponent = math.log2(value) if value > 0 else None
    if exponent is None or not close(exponent, round(exponent), 1e-9):
        if close(value, FLOAT16_MAX / LARGEST_GRADIENT, 1e-3):
            return not_yet(
                "That S makes the largest entry exactly 65504. Loss scales are powers of two: multiplying by one "
                "changes only the exponent, so scaling and unscaling round nothing. Which power of two fits?"
            )
        return not_yet("A loss scale is a power of two (2**k): multiplying by it is exact in floating point.")
    k = round(exponent)
    if value * LARGEST_GRADIENT > FLOAT16_MAX:
        return not_yet(f"With S = 2**{k} the largest entry becomes {value * LARGEST_GRADIENT:.0f} > 65504: inf.")
    if value * LARGEST_GRADIENT * 2 <= FLOAT16_MAX:
        if 10 <= value <= 20:
            return not_yet("Give S itself, not its exponent: S = 2**k.")
        return not_yet(f"S = 2**{k} is safe, but twice it still fits below 65504: the larger, the less underflow.")
    return correct(
        f"2**{k} * 0.8 = {value * LARGEST_GRADIENT:.0f} <= 65504, and twice that would overflow. Dynamic loss "
        "scaling finds this power of two by trial: double until a step overflows, then halve."
    )


def _bfloat16_sum_changes(w: float, u: float) -> bool:
    """Does w + u, rounded to bfloat16, differ from w (a bfloat16 number)? Computed by bfloat16 itself."""
    w16 = jnp.asarray(w, jnp.bfloat16)
    return bool((w16.astype(jnp.float32) + jnp.float32(u)).astype(jnp.bfloat16) != w16)


def _cases(n: int = 60, seed: int = 0) -> list[tuple[float, float]]:
    """(w, u): w a bfloat16 number of either sign, not a power of two (there the gap below is half the gap above);
    u of either sign, 0.2 to 0.8 or 1.25 to 4 times half w's gap (no near-ties)."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < n:
        e = int(rng.integers(-12, 12))
        mantissa = 1 + int(rng.integers(1, 128)) / 128  # 1 < m < 2, exactly 8 significant bits
        w = float(rng.choice([-1, 1]) * mantissa * 2.0**e)
        factor = rng.uniform(0.2, 0.8) if len(cases) % 2 else rng.uniform(1.25, 4)
        u = float(rng.choice([-1, 1]) * factor * 2.0 ** (e - 8))
        cases.append((w, u))
    return cases


def _truth(value) -> bool | None:
    """`value` as a bool when it is one truth value (a bool, numpy or JAX scalar, or 0 / 1), else None."""
    try:
        array = np.asarray(value)
    except Exception:
        return None
    if array.shape != () or not (array.dtype == bool or (np.issubdtype(array.dtype, np.integer) and array in (0, 1))):
        return None
    return bool(array)


def check_survives_bfloat16(fn) -> bool:
    """Exercise 3: `fn(w, u)` says whether w + u, rounded to bfloat16, differs from the bfloat16 number w."""
    if unanswered(fn):
        return not_answered()
    if not callable(fn):
        return not_yet("Pass your function itself: `check_survives_bfloat16(survives)`.")
    cases = _cases()
    try:
        got = [fn(w, u) for w, u in cases]
    except Exception as error:
        return not_yet(f"Your function raised {type(error).__name__}: {error}. Try it on survives(1.5, 0.01).")
    if all(g is None for g in got):
        return not_answered()
    got = [_truth(g) for g in got]
    if None in got:
        return not_yet("Return True or False for each (w, u), one answer per call.")
    want = [_bfloat16_sum_changes(w, u) for w, u in cases]
    if got == want:
        return correct(
            "A bfloat16 number w = m * 2**e (1 <= m < 2) has neighbours 2**(e-7) apart, so w + u rounds back to w "
            "when |u| < 2**(e-8): the threshold depends on w's exponent only, and relative to w it is between "
            "2**-9 and 2**-8."
        )
    ratio_rule = [abs(u / w) >= 2.0**-8 for w, u in cases]
    full_gap = [abs(u) >= 2.0 ** (math.floor(math.log2(abs(w))) - 7) for w, u in cases]
    wrong = sum(g != t for g, t in zip(got, want, strict=True))
    if all(got):
        return not_yet("Your function says every update survives. Try w = 1.5 and u = 0.001: is 1.501 a bfloat16?")
    if not any(got):
        return not_yet("Your function says no update survives. Try w = 1.5 and u = 0.1.")
    if got == ratio_rule:
        return not_yet(
            "|u / w| >= 2**-8 is the rule of thumb, right only when w is a power of two. The gap between "
            "neighbours depends on w's exponent, not on w itself: for w = 1.9 it is the same as for w = 1.0."
        )
    if got == full_gap:
        return not_yet(
            "Rounding goes to the nearest bfloat16 number: u survives once it is more than half the gap between w "
            "and its neighbour, not a whole gap."
        )
    return not_yet(
        f"{wrong} of {len(cases)} cases are wrong. Write |w| = m * 2**e with 1 <= m < 2 (e = floor(log2|w|)); "
        "bfloat16 keeps 8 significant bits, so its neighbours around w are 2**(e-7) apart."
    )


#: Exercise 4: the cause each run of section 6's gallery was built with.
GALLERY_CAUSES = {
    "A": "learning_rate",
    "B": "init_scale",
    "C": "input_scale",
    "D": "batchnorm_mode",
    "E": "low_precision",
    "F": "dead_units",
}
_GALLERY_HINTS = {
    "A": "It died within a few steps at lr 2. Compare lr with notebook 03's limit 2 / lambda_max (about 0.1 here).",
    "B": "12 layers at init_scale 0.3: what does each ReLU layer do to the size of the signal (notebook 01)?",
    "C": "The network and the training are the healthy ones; look at the data instead.",
    "D": "BatchNorm normalizes each unit with the mean and variance of the batch. How many rows does it get here?",
    "E": "float16's largest number is 65504. What does a loss scale of 2^20 do to every value of the backward pass?",
    "F": "Adam moves every weight by about lr each step. Next to weights of about 0.2, what does lr 0.1 do to a "
    "ReLU whose input it pushes below 0, where the gradient is 0?",
}


def check_gallery_causes(guesses) -> bool:
    """Exercise 4: `guesses` maps each gallery run ("A" to "F") to its cause, a `helpers.diagnose.CAUSES` word."""
    if unanswered(guesses) or not isinstance(guesses, dict) or all(unanswered(g) for g in guesses.values()):
        return not_answered()
    missing = sorted(set(GALLERY_CAUSES) - set(guesses))
    if missing:
        return not_yet(f"Give a cause for every run; missing: {', '.join(missing)}.")
    causes = sorted(set(GALLERY_CAUSES.values()))
    unknown = {k: v for k, v in guesses.items() if k in GALLERY_CAUSES and v not in causes}
    if unknown:
        return not_yet(f"Use the cause words exactly: {', '.join(causes)}; not {unknown}.")
    wrong = [name for name in sorted(GALLERY_CAUSES) if guesses[name] != GALLERY_CAUSES[name]]
    if wrong:
        hints = " ".join(f"{name}: {_GALLERY_HINTS[name]}" for name in wrong)
        return not_yet(f"{len(wrong)} of 6 not right yet. {hints}")
    return correct("Each run was built with exactly that cause, and diagnose names the same six (run the next cell).")
