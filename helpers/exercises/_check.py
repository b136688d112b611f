"""What every checker shares: how an answer is judged and reported."""

from __future__ import annotations

import math

NOT_ANSWERED = "Not answered yet: replace the `...` with your answer and run the cell again."


def unanswered(answer) -> bool:
    """True for the placeholders a notebook leaves in an exercise cell (`...` or None)."""
    return answer is ... or answer is None


def report(ok: bool, success: str, hint: str) -> bool:
    """Print the verdict: the success message, or what is wrong plus a hint (never the answer)."""
    print(f"Correct. {success}" if ok else f"Not yet. {hint}")
    return ok


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
