"""How a failed check speaks to a learner: one line naming the exercise, the case, what was expected and what came back."""
from __future__ import annotations

import numpy as np


class CheckFailed(AssertionError):
    """A hidden test found a wrong answer. `str(error)` is the one line the learner reads."""


def describe_shape(value) -> str:
    shape = getattr(value, "shape", None)
    return str(tuple(shape)) if shape is not None else type(value).__name__


def brief(value, limit: int = 6) -> str:
    """A short, readable rendering of a value: never a 200-line array."""
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    if array.ndim == 0:
        return f"{float(array):.4g}"
    flat = array.ravel()
    shown = np.array2string(flat[:limit], precision=3, separator=" ", suppress_small=True)
    if flat.size > limit:
        shown = shown[:-1] + " ...]"
    return shown


def brief_pair(want: float, got: float) -> tuple[str, str]:
    """Two numbers with as many significant digits as it takes to tell them apart (4 at least, 17 at most): a
    message never says "expected -0.5716, got -0.5716"."""
    for digits in range(4, 18):
        shown = f"{float(want):.{digits}g}", f"{float(got):.{digits}g}"
        if shown[0] != shown[1]:
            return shown
    return shown
