"""The one-line messages of the checks' expectations (autograder.checks: expect_close, expect_equal, expect_shape,
expect_type) on the values answers come back as: NumPy arrays of any dtype, 0-d arrays and NumPy scalars, tensors
(float32, bfloat16), opaque objects. Exact messages: they are what a learner reads."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from autograder.checks import CheckFailed, expect_close, expect_equal, expect_shape, expect_type

pytestmark = pytest.mark.unit


def message(check, *args, **kwargs) -> str | None:
    """The learner's line, or None when the check passes."""
    try:
        check(*args, **kwargs)
    except CheckFailed as failed:
        return str(failed)
    return None


@pytest.mark.parametrize("got, want", [
    (np.array(1.5, dtype=np.float32), np.array(1.5)),                 # float32 0-d against a float64 reference
    (np.float32(0.1), np.array(0.1)),                                  # a NumPy scalar is an answer too
    (np.arange(6, dtype=np.float32).reshape(2, 3) + 1e-7, np.arange(6.0).reshape(2, 3)),
    (np.array([1.0, np.inf, -np.inf]), np.array([1.0, np.inf, -np.inf])),
    (torch.tensor([1.0, 2.0], dtype=torch.bfloat16), torch.tensor([1.0, 2.0], dtype=torch.float64)),
    (torch.tensor(2.0), torch.tensor(2.0, dtype=torch.float64)),
])
def test_expect_close_accepts_answers_within_tolerance(got, want):
    assert message(expect_close, "softmax", got, want, atol=1e-6) is None


@pytest.mark.parametrize("got, want, kwargs, line", [
    # 0-d: no index to name
    (np.array(1.0), np.array(1.5), {"case": "x=0"},
     "softmax: values differ from the reference for x=0: expected 1.5, got 1 (max |error| 0.5, "
     "tolerance 1e-06 + 0·|expected|)."),
    (np.float32(1.0), np.array(1.5), {},
     "softmax: values differ from the reference: expected 1.5, got 1 (max |error| 0.5, tolerance 1.79e-05 + "
     "1.19e-05·|expected| for a float32 answer)."),
    (torch.tensor(2.0), torch.tensor(1.0, dtype=torch.float64), {"what": "loss"},
     "softmax: loss differ from the reference: expected 1, got 2 (max |error| 1, tolerance 1.19e-05 + "
     "1.19e-05·|expected| for a float32 answer)."),
    (torch.tensor(2.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64), {"what": "loss"},
     "softmax: loss differ from the reference: expected 1, got 2 (max |error| 1, tolerance 1e-06 + 0·|expected|)."),
    # values that agree to 4 digits are printed with the digits that tell them apart
    (np.array([-0.57161]), np.array([-0.57164]), {},
     "softmax: values differ from the reference: at index [0] expected -0.57164, got -0.57161 (max |error| 3e-05, "
     "tolerance 1e-06 + 0·|expected|)."),
    # the worst element, by how far past its tolerance it is, with its index
    (np.array([[1, 2, 3], [4, 5, 6.5]], dtype=np.float32), np.array([[1, 2, 3], [4, 5, 6.0]]),
     {"rtol": 1e-2, "hint": "Did you normalise along the right axis?"},
     "softmax: values differ from the reference: at index [1, 2] expected 6, got 6.5 (max |error| 0.5, "
     "tolerance 7.15e-05 + 0.01·|expected| for a float32 answer). Did you normalise along the right axis?"),
    (np.array([1.0, -np.inf]), np.array([1.0, np.inf]), {},
     "softmax: values differ from the reference: at index [1] expected inf, got -inf (max |error| inf, "
     "tolerance 1e-06 + 0·|expected|)."),
    # nan or inf where the reference is finite: counted, never compared
    (np.array([1.0, np.nan, np.inf, 2.0], dtype=np.float32), np.array([1.0, 2.0, 3.0, 2.0]), {},
     "softmax: 2 of 4 values are nan or inf; expected finite numbers."),
    (np.array(np.nan), np.array(0.5), {"case": "x=0"},
     "softmax: 1 of 1 values are nan or inf for x=0; expected finite numbers."),
    # the type, then the shape, before any value
    ([1.0, 2.0], np.array([1.0, 2.0]), {}, "softmax: expected a NumPy array; got list."),
    ({"__opaque__": "MyTensor"}, np.array([1.0]), {}, "softmax: expected a NumPy array; got MyTensor."),
    (np.zeros(3), torch.zeros(3), {}, "softmax: expected a torch.Tensor; got ndarray."),
    (np.zeros((2, 3)), np.zeros((3, 2)), {"case": "x of shape (3, 2)"},
     "softmax: expected shape (3, 2) for x of shape (3, 2); got (2, 3)."),
    (np.zeros(1), np.array(0.0), {}, "softmax: expected shape (); got (1,)."),
])
def test_expect_close_names_what_is_wrong(got, want, kwargs, line):
    assert message(expect_close, "softmax", got, want, atol=1e-6, **kwargs) == line


@pytest.mark.parametrize("dtype", [np.float32, torch.float32])
def test_expect_close_dtype_policy_float32_within_its_precision(dtype):
    """The dtype policy: a float32 answer is held to float32's precision (FLOAT32_TOL), a float64 one to the
    check's own tolerance; a float32 answer off by a formula's mistake still fails."""
    want = np.random.default_rng(0).normal(size=(4, 5)) * 3
    rounded = want.astype(np.float32) * np.float32(1 + 3e-7)  # a few float32 roundings off
    wrong = (want * 1.001).astype(np.float32)
    if dtype is torch.float32:
        want, rounded, wrong = (torch.from_numpy(np.asarray(a)) for a in (want, rounded, wrong))
    assert message(expect_close, "softmax", rounded, want, atol=1e-10, rtol=1e-8) is None
    as64 = rounded.double() if dtype is torch.float32 else rounded.astype(np.float64)
    assert message(expect_close, "softmax", as64, want, atol=1e-10, rtol=1e-8).startswith(
        "softmax: values differ from the reference")
    assert "for a float32 answer" in message(expect_close, "softmax", wrong, want, atol=1e-10, rtol=1e-8)


def test_expect_close_does_not_warn_on_matching_infinities():
    with np.errstate(all="raise"):
        assert message(expect_close, "softmax", np.array([np.inf, 1.0]), np.array([np.inf, 1.0]), atol=1e-6) is None


@pytest.mark.parametrize("got, want, kwargs, line", [
    (np.array([[True, False]]), np.array([[True, True]]), {"case": "T=2", "what": "mask"},
     "causal_mask: expected mask [1. 1.] for T=2; got [1. 0.]."),
    (3, 4, {}, "causal_mask: expected value 4; got 3."),
    (np.array(2), np.array(3), {}, "causal_mask: expected value 3; got 2."),
    ("abc", "abd", {"hint": "Read the docstring."}, "causal_mask: expected value 'abd'; got 'abc'. Read the docstring."),
    (np.arange(10), np.arange(1, 11), {}, "causal_mask: expected value [1. 2. 3. 4. 5. 6. ...]; "
                                          "got [0. 1. 2. 3. 4. 5. ...]."),
])
def test_expect_equal_messages(got, want, kwargs, line):
    assert message(expect_equal, "causal_mask", got, want, **kwargs) == line


@pytest.mark.parametrize("got, want", [(np.array(3), np.array(3)), (np.float32(0.5), 0.5), ((1, 2), (1, 2)),
                                       (np.array([1, 2], dtype=np.int32), np.array([1, 2], dtype=np.int64))])
def test_expect_equal_accepts_equal_values(got, want):
    assert message(expect_equal, "causal_mask", got, want) is None


@pytest.mark.parametrize("got, shape, line", [
    (np.zeros(2), (2, 1), "n: expected shape (2, 1) for c; got (2,). h"),
    ([1, 2], (2,), "n: expected shape (2,) for c; got list. h"),
    (np.array(1.0), (1,), "n: expected shape (1,) for c; got (). h"),
    (torch.zeros(2, 3, dtype=torch.bfloat16), (2, 4), "n: expected shape (2, 4) for c; got (2, 3). h"),
])
def test_expect_shape_messages(got, shape, line):
    assert message(expect_shape, "n", got, shape, case="c", hint="h") == line


@pytest.mark.parametrize("got, shape", [(np.array(1.0), ()), (np.float32(1.0), ()), (torch.zeros(2, 3), [2, 3])])
def test_expect_shape_accepts(got, shape):
    assert message(expect_shape, "n", got, shape) is None


@pytest.mark.parametrize("got, kind, line", [
    ({"__opaque__": "Foo"}, "tensor", "n: expected a torch.Tensor; got Foo."),
    (True, float, "n: expected float; got bool."),
    (np.zeros(2), "tensor", "n: expected a torch.Tensor; got ndarray."),
    (None, "ndarray", "n: expected a NumPy array; got NoneType."),
])
def test_expect_type_messages(got, kind, line):
    assert message(expect_type, "n", got, kind) == line
