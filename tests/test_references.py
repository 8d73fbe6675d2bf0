"""The shared pieces of the checks (autograder/checks/references.py): the property checks' messages, which a learner
reads, and the seeded inputs several chapters draw (the same numbers whichever way a shape is written).
`expect_cases` runs learner code, so the chapters' grading tests cover it (tests/test_chapters.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from autograder.checks import references, rng
from test_expectations import message

pytestmark = pytest.mark.unit


MASK = np.array([[True, False], [True, True]])


@pytest.mark.parametrize("weights, mask, says", [
    (np.array([[1.0, 0.0], [0.4, 0.6]]), MASK, None),
    (torch.tensor([[[1.0, 0.0], [0.4, 0.6]]] * 3), torch.from_numpy(MASK), None),  # a mask that broadcasts
    (np.array([[0.9, 1e-30], [0.4, 0.6]]), MASK,  # tiny but not 0: -1e9 instead of -inf
     "f: weights of masked pairs must be exactly 0 for c; 1 of 1 are not (largest 1e-30). Use -inf."),
    (np.ones((3, 3)) / 3, MASK, "f: weights of shape (3, 3) do not match the mask (2, 2) for c; expected (2, 2)."),
])
def test_masked_weights_are_zero(weights, mask, says):
    assert message(references.masked_weights_are_zero, "f", weights, mask, "c", "Use -inf.") == says


def test_rows_sum_to_one():
    assert message(references.rows_sum_to_one, "f", np.full((2, 4), 0.25), "c", "Normalise.") is None
    assert message(references.rows_sum_to_one, "f", np.full((2, 4), 0.5), "c", "Normalise.") == (
        "f: each row of the weights must sum to 1 for c; got sums [2. 2.]. Normalise.")


def test_expect_pair():
    assert references.expect_pair((1, 2), "f", "c") == (1, 2)
    assert message(references.expect_pair, np.zeros(3), "f", "c", hint="Return both.") == (
        "f: expected a pair (output, weights) for c; got ndarray. Return both.")
    assert message(references.expect_pair, (1, 2, 3), "f", "c", what="(out, weights)") == (
        "f: expected a pair (out, weights) for c; got 3 values.")


def test_randn_takes_a_shape_either_way():
    a = references.randn(7, 2, 3, dtype="float32", scale=2.0)
    b = references.randn(7, (2, 3), dtype="float32", scale=2.0)
    assert a.dtype == torch.float32 and torch.equal(a, b)
    assert torch.equal(references.randn(7, (2, 3)), torch.from_numpy(rng(7).normal(size=(2, 3))))


def test_torch_attention_matches_the_numpy_reference():
    r = rng(3)
    Q, K, V = r.normal(size=(2, 4, 3)), r.normal(size=(2, 5, 3)), r.normal(size=(2, 5, 2))
    mask = references.random_mask(r, 4, 5, lead=(2,))
    out, weights = references.torch_attention(*(torch.from_numpy(a) for a in (Q, K, V)), torch.from_numpy(mask))
    want_out, want_weights = references.attention(Q, K, V, mask)
    np.testing.assert_allclose(out.numpy(), want_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weights.numpy(), want_weights, rtol=1e-10, atol=1e-14)
    assert np.array_equal(references.causal_mask(4, numpy=True), references.causal_mask(4).numpy())
