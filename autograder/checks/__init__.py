"""The checks that hidden tests call, one module per chapter (`ch04_attention`, ...), and the expectations they use.

A hidden test section in `solutions/NN_name.ipynb` calls the check named after its test cell's grade_id, and only
that (`tests/test_check_names.py`); for the test cell `test_softmax`::

    ### BEGIN HIDDEN TESTS
    from autograder.checks import ch04_attention as checks
    checks.test_softmax()
    ### END HIDDEN TESTS

A check gets the learner's code through `env()` (see `autograder.env`), builds its own inputs with a fixed seed,
computes the expected answer with an independent reference, and raises `CheckFailed` with one learner-readable line
when something is wrong. It never trusts anything the learner's code could have changed: references run here,
in the grader, not in the learner's kernel.
"""
from __future__ import annotations

import numpy as np

from ..env import env
from ..messages import CheckFailed, brief, brief_pair, describe_shape

__all__ = ["env", "CheckFailed", "rng", "expect", "expect_close", "expect_cases", "expect_equal", "expect_shape",
           "expect_type", "FLOAT32_TOL", "held_as"]

# The dtype policy (stated in the book's notation page and CONTRIBUTING.md): an answer may be float32 or float64.
# A check states the tolerance a float64 answer meets; `expect_close` widens it for an answer of lower precision
# (float32, and float16/bfloat16 held to float32's standard) to at least FLOAT32_TOL relative and FLOAT32_TOL times
# the reference's largest magnitude absolute: about a hundred float32 roundings, far below any formula's mistake.
FLOAT32_TOL = 100 * float(np.finfo(np.float32).eps)  # 1.19e-05


def rng(seed: int) -> np.random.Generator:
    """Inputs come from fixed seeds, so grading the same notebook twice gives the same score."""
    return np.random.default_rng(seed)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _where(case: str) -> str:
    return f" for {case}" if case else ""


def _hint(hint: str) -> str:
    return f" {hint}" if hint else ""


def expect_type(exercise: str, got, kind, case: str = "", hint: str = "") -> None:
    """`kind`: 'ndarray', 'tensor', or a Python type."""
    if kind == "ndarray":
        ok, wanted = isinstance(got, (np.ndarray, np.generic)), "a NumPy array"
    elif kind == "tensor":
        import torch

        ok, wanted = isinstance(got, torch.Tensor), "a torch.Tensor"
    else:
        ok, wanted = isinstance(got, kind), kind.__name__
    if not ok:
        name = got.get("__opaque__") if isinstance(got, dict) and "__opaque__" in got else type(got).__name__
        raise CheckFailed(f"{exercise}: expected {wanted}{_where(case)}; got {name}.{_hint(hint)}")


def expect_shape(exercise: str, got, shape, case: str = "", hint: str = "") -> None:
    if tuple(getattr(got, "shape", ())) != tuple(shape):
        raise CheckFailed(
            f"{exercise}: expected shape {tuple(shape)}{_where(case)}; got {describe_shape(got)}.{_hint(hint)}"
        )


def expect_equal(exercise: str, got, want, case: str = "", hint: str = "", what: str = "value") -> None:
    if isinstance(want, np.ndarray) or isinstance(got, np.ndarray):
        equal = np.array_equal(np.asarray(got), np.asarray(want))
    else:
        equal = got == want
    if not equal:
        raise CheckFailed(
            f"{exercise}: expected {what} {brief(want)}{_where(case)}; got {brief(got)}.{_hint(hint)}"
        )


def held_as(got, x: np.ndarray) -> np.ndarray:
    """`x` (float64) as an answer of `got`'s dtype holds it: rounded to float32 for a float32 answer, else as is.
    Where inputs are large (logits near 1000), rounding the input moves the exact answer by more than float32's
    precision; the reference of a float32 answer is then computed from the rounded input (the dtype policy)."""
    return x.astype(np.float32).astype(np.float64) if _low_precision(got) else x


def _low_precision(got) -> bool:
    """A float answer held in fewer than 64 bits (NumPy or torch)."""
    dtype = getattr(got, "dtype", None)
    if dtype is None:
        return False
    if isinstance(dtype, np.dtype):
        return dtype.kind in "fc" and dtype.itemsize < (8 if dtype.kind == "f" else 16)
    return bool(getattr(dtype, "is_floating_point", False)) and getattr(dtype, "itemsize", 8) < 8


def expect_close(exercise: str, got, want, *, atol: float, rtol: float = 0.0, case: str = "", hint: str = "",
                 what: str = "values") -> None:
    """Type, shape, finiteness, then values within `atol + rtol * |want|`, with the worst element named.
    A float32 answer gets the dtype policy's tolerance at least (FLOAT32_TOL above)."""
    torch_kind = type(want).__module__.startswith("torch")
    expect_type(exercise, got, "tensor" if torch_kind else "ndarray", case, hint)
    expect_shape(exercise, got, want.shape, case, hint)
    precision = ""
    if _low_precision(got):
        want_f = np.asarray(want.detach().double() if torch_kind else want, dtype=float)
        finite = np.abs(want_f[np.isfinite(want_f)])
        scale = float(finite.max()) if finite.size else 0.0
        if rtol < FLOAT32_TOL or atol < FLOAT32_TOL * scale:
            rtol, atol = max(rtol, FLOAT32_TOL), max(atol, FLOAT32_TOL * scale)
            precision = f" for a {str(got.dtype).replace('torch.', '')} answer"
    got_a = np.asarray(got.detach().double() if torch_kind else got, dtype=float)
    want_a = np.asarray(want.detach().double() if torch_kind else want, dtype=float)
    bad_nan = np.isnan(got_a) & ~np.isnan(want_a)
    if bad_nan.any() or (np.isinf(got_a) & ~np.isinf(want_a)).any():
        count = int((~np.isfinite(got_a) & np.isfinite(want_a)).sum())
        raise CheckFailed(
            f"{exercise}: {count} of {got_a.size} {what} are nan or inf{_where(case)}; expected finite numbers.{_hint(hint)}"
        )
    at_index = want_a.ndim > 0  # a 0-d answer has no index to name
    with np.errstate(invalid="ignore"):  # inf - inf and 0 * inf: at infinite references, both set right below
        error = np.array(np.abs(got_a - want_a), ndmin=1)  # at least 1-d, so 0-d answers work too
        allowed = np.array(atol + rtol * np.abs(want_a), ndmin=1)
    error[np.array(np.isinf(want_a) & (got_a == want_a), ndmin=1)] = 0.0
    allowed[~np.isfinite(allowed)] = 0.0
    got_a, want_a = np.array(got_a, ndmin=1), np.array(want_a, ndmin=1)
    if (error > allowed).any():
        worst = np.unravel_index(int(np.argmax(error - allowed)), error.shape)
        where = f" at index {[int(i) for i in worst]}" if at_index else ""
        shown_want, shown_got = brief_pair(want_a[worst], got_a[worst])
        raise CheckFailed(
            f"{exercise}: {what} differ from the reference{_where(case)}:{where} expected "
            f"{shown_want}, got {shown_got} (max |error| {float(error.max()):.3g}, "
            f"tolerance {atol:.3g} + {rtol:.3g}·|expected|{precision}).{_hint(hint)}"
        )


def expect_cases(exercise: str, cases, reference, *, atol: float, rtol: float = 0.0, hint: str = "",
                 what: str = "values", forbid=(), substitute=None) -> None:
    """A case table: each case is (description, args) or (description, args, kwargs); the learner's `exercise` is
    called once per case, in order, and its answer compared with `reference(*args, **kwargs)` by `expect_close`."""
    for case, args, *kwargs in cases:
        kwargs = kwargs[0] if kwargs else {}
        got = env().call(exercise, *args, case=case, forbid=forbid, substitute=substitute, **kwargs)
        expect_close(exercise, got, reference(*args, **kwargs), atol=atol, rtol=rtol, case=case, hint=hint,
                     what=what)
