"""What every checker shares: how an answer is judged and reported."""

from __future__ import annotations

import math

NOT_ANSWERED = "Not answered yet: replace the `...` with your answer and run the cell again."


def unanswered(answer) -> bool:
    """True for the placeholders a notebook leaves in an exercise cell (`...` or None)."""
    return answer is ... or answer is None


def not_answered() -> bool:
    """The exercise cell still holds its placeholder: say so, and nothing else."""
    print(NOT_ANSWERED)
    return False


def correct(why: str) -> bool:
    """The answer is right: say so, and why it is."""
    print(f"Correct. {why}")
    return True


def not_yet(hint: str) -> bool:
    """The answer is wrong: what is wrong, and a hint towards the reasoning (never the answer itself)."""
    print(f"Not yet. {hint}")
    return False


def close(value, target: float, rel: float) -> bool:
    """`value` is a finite number within relative tolerance `rel` of `target`."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and math.isclose(value, target, rel_tol=rel)


def number(answer) -> float | None:
    """`answer` as a finite float, or None when it is not one number."""
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def whole_number(answer) -> int | None:
    """`answer` as an int when it is one finite whole number (7, 7.0, "7"), else None."""
    value = number(answer)
    return int(value) if value is not None and value == int(value) else None
