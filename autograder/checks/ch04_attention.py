"""Hidden checks for chapter 4, `04_attention` (NumPy).

Inputs are float64 arrays from fixed seeds, in shapes the visible tests do not use. References are the float64 NumPy
`references.softmax` (log-sum-exp) and `references.attention` (einsum), written apart from the notebook's solutions
and pinned to PyTorch's by `tests/test_check_references.py`: grading this NumPy chapter never imports torch.
Values are compared at `atol=1e-6, rtol=1e-5`; masked weights must be exactly 0.

Where an exercise calls an earlier one (sdpa calls `softmax` and `attention_scores`, `self_attention` calls
`scaled_dot_product_attention`), the notebook's own solutions stand in for the learner's, so one wrong answer costs
only its own exercise's points.
"""
from __future__ import annotations

import numpy as np

from .references import attention as _reference_attention, causal_mask, expect_pair, masked_weights_are_zero
from .references import random_mask as _random_mask, rows_sum_to_one, softmax as _reference_softmax
from .sources import solution
from . import expect, expect_cases, expect_close, expect_shape, expect_type, env, held_as, rng

ATOL, RTOL = 1e-6, 1e-5
SDPA = "scaled_dot_product_attention"

# Calling a library's softmax / attention earns nothing in the exercise that builds it.
FORBID_SOFTMAX = ["scipy.special*softmax", "torch*softmax", "torch.nn.functional.*", "torch._C._nn.*"]
FORBID_ATTENTION = FORBID_SOFTMAX + ["torch*scaled_dot_product_attention*",
                                     "torch.nn.modules.activation.MultiheadAttention*",
                                     "torch*multi_head_attention_forward*"]
FORBID_MASK = ["torch.nn.modules.transformer*", "torch*generate_square_subsequent_mask*"]

SUB_SDPA = {"softmax": solution("04", "softmax"), "attention_scores": solution("04", "attention_scores")}
SUB_SELF = {**SUB_SDPA, SDPA: solution("04", "softmax", "attention_scores", SDPA)}


def _qkv(seed, lead, n_q, n_k, d_k, d_v, scale=1.0):
    r = rng(seed)
    return tuple(r.normal(size=(*lead, n, d)) * s for n, d, s in [(n_q, d_k, scale), (n_k, d_k, scale), (n_k, d_v, 1)])


def _call_pair(exercise, case, *args, weights_shape=None, hint="", **kwargs):
    """Call an attention exercise; demand (output, weights), the weights an ndarray of `weights_shape` if given."""
    got = env().call(exercise, *args, case=case, forbid=FORBID_ATTENTION,
                     substitute=SUB_SELF if exercise == "self_attention" else SUB_SDPA, **kwargs)
    output, weights = expect_pair(got, exercise, case, hint="Return the pair (output, weights), in that order.")
    if weights_shape is not None:
        expect_type(exercise, weights, "ndarray", case, hint)
        expect_shape(exercise, weights, weights_shape, case, hint)
    return output, weights


# ---------------------------------------------------------------- softmax

def test_softmax():
    """Values along several axes and batch shapes, and the default axis, against the reference."""
    cases = [(f"x of shape {shape}, axis={axis}", (rng(seed).normal(size=shape) * 3,), {"axis": axis})
             for seed, shape, axis in [(11, (3, 7), -1), (12, (2, 4, 5), 1), (13, (6,), 0), (14, (2, 3, 4, 5), 0),
                                       (15, (5, 3), 0)]]
    cases.append(("x of shape (4, 6), default axis", (rng(16).normal(size=(4, 6)),)))
    expect_cases("softmax", cases, lambda x, axis=-1: _reference_softmax(x, axis), atol=ATOL, rtol=RTOL,
                 forbid=FORBID_SOFTMAX, hint="Each slice along `axis` must be positive and sum to 1 on its own "
                                             "(the default axis is the last).")


def _rows_depend_on_each_other(x, axis, case):
    """The learner's softmax is right on each slice x[i:i+1] alone: its answer depends on the neighbours (x.max())."""
    if x.ndim < 2 or axis % x.ndim == 0:
        return False
    for part in np.split(x, x.shape[0], axis=0):
        got = env().call("softmax", part, axis=axis, case=f"{case}, one slice alone", forbid=FORBID_SOFTMAX)
        if (not isinstance(got, np.ndarray) or got.shape != part.shape
                or not np.allclose(np.asarray(got, dtype=float), _reference_softmax(part, axis), atol=ATOL, rtol=RTOL)):
            return False
    return True


def test_softmax_stability():
    """Large logits (|x| ~ 1000) must neither overflow nor underflow to nan, including rows whose scales differ by
    1000 (a softmax that subtracts the global x.max() instead of the maximum along `axis` gives 0/0 there)."""
    r = rng(21)
    cases = [("x ~ 1000 + N(0, 5), shape (4, 9)", 1000.0 + r.normal(size=(4, 9)) * 5),
             ("x ~ -1000 + N(0, 5), shape (3, 6)", -1000.0 + r.normal(size=(3, 6)) * 5),
             ("rows [1000, 1001, 1002] and [-1000, 0, 1000], shape (2, 3)", np.array([[1e3, 1001, 1002],
                                                                                      [-1e3, 0, 1e3]])),
             ("rows near 0, near 1000 and near -1000, shape (3, 5)", [[0], [1e3], [-1e3]] + r.normal(size=(3, 5))),
             ("x of shape (2, 3, 4), slices x[0] near 0 and x[1] near 2000",
              np.array([0.0, 2000.0])[:, None, None] + r.normal(size=(2, 3, 4)))]
    for case, x in cases:
        got = env().call("softmax", x, axis=-1, case=case, forbid=FORBID_SOFTMAX)
        # dtype policy: float32 holds x ~ 2000 only to ~1e-4, an error of the input, not of the learner's softmax
        want = _reference_softmax(held_as(got, x), -1)
        hint = ("exp(1000) overflows and exp(-1000) underflows: which number can you subtract from a slice without "
                "changing its softmax, so that the largest exponent is 0?")
        if (isinstance(got, np.ndarray) and got.shape == want.shape
                and not np.allclose(np.asarray(got, dtype=float), want, atol=ATOL, rtol=RTOL)
                and _rows_depend_on_each_other(x, -1, case)):
            hint = ("Each row is right alone but not next to a row 1000 larger: you subtract one maximum for the "
                    "whole array, so exp underflows to 0 in the smaller rows. Each slice along `axis` needs its own.")
        expect_close("softmax", got, want, atol=ATOL, rtol=RTOL, case=case, hint=hint)


# ---------------------------------------------------------------- attention_scores

def test_attention_scores():
    """2-D Q, K of several sizes (n_q != n_k, several d_k): values including the 1/sqrt(d_k) scale."""
    cases = [(f"Q ({n_q}, {d_k}), K ({n_k}, {d_k})", _qkv(seed, (), n_q, n_k, d_k, 1)[:2])
             for seed, n_q, n_k, d_k in [(31, 3, 5, 4), (32, 6, 6, 16), (33, 1, 7, 64), (34, 5, 2, 1)]]
    expect_cases("attention_scores", cases, lambda Q, K: (Q @ K.T) / np.sqrt(Q.shape[-1]), atol=ATOL, rtol=RTOL,
                 forbid=FORBID_ATTENTION,
                 hint="scores = Q K^T / sqrt(d_k), with d_k the width of the queries (the square root, not d_k).")


def test_attention_scores_batch():
    """Leading batch dimensions, (batch, heads, n, d_k): the right shape, every batch element equal to the answer for
    that element alone, and the whole a positive multiple of the dot products Q K^T computed here (so the right shape
    filled with anything else earns nothing; the exact 1/sqrt(d_k) is `test_attention_scores`'s business)."""
    for seed, lead, n_q, n_k, d_k in [(41, (2,), 3, 4, 5), (42, (2, 3), 4, 4, 8), (43, (1, 2, 2), 2, 5, 3)]:
        Q, K, _ = _qkv(seed, lead, n_q, n_k, d_k, 1)
        case = f"Q {Q.shape}, K {K.shape}"
        hint = "K^T transposes each key matrix: the batch axes stay where they are (what does K.T do to them?)."
        got = env().call("attention_scores", Q, K, case=case, forbid=FORBID_ATTENTION)
        expect_type("attention_scores", got, "ndarray", case, hint)
        expect_shape("attention_scores", got, (*lead, n_q, n_k), case, hint)
        got, dots = np.asarray(got, dtype=float), np.einsum("...qd,...kd->...qk", Q, K)
        c = float(np.sum(got * dots) / np.sum(dots * dots))   # the one positive scale, by least squares
        first = (0,) * len(lead) + (0,)                       # the first query of the first batch element
        expect(np.isfinite(c) and c > 0 and np.allclose(got, c * dots, atol=ATOL, rtol=RTOL),
               f"attention_scores: for {case}, the scores are not the dot products of each query with each key of "
               f"the same batch element (times one positive scale): the first query's row is "
               f"{np.array2string(got[first], precision=4)}, expected a multiple of "
               f"{np.array2string(dots[first], precision=4)}. Score query i against key j of the same batch "
               "element: Q[..., i, :] · K[..., j, :].")
        index = tuple(int(i) for i in rng(seed + 100).integers(0, lead))
        alone = env().call("attention_scores", Q[index], K[index], case=f"Q {Q[index].shape}, K {K[index].shape}",
                           forbid=FORBID_ATTENTION)
        expect_close("attention_scores", got[index], np.asarray(alone), atol=ATOL, rtol=RTOL,
                     case=f"{case}, batch element {list(index)} against the same Q, K passed alone",
                     hint="Keep the batch axes apart: " + hint)


# ---------------------------------------------------------------- causal_mask

def _expect_causal(n, got):
    case, want = f"n={n}", causal_mask(n, numpy=True)
    expect_type("causal_mask", got, "ndarray", case)
    expect_shape("causal_mask", got, (n, n), case)
    wrong = np.argwhere(np.asarray(got).astype(bool) != want)
    if len(wrong):
        i, j = (int(v) for v in wrong[0])
        expect(False, f"causal_mask: for {case}, entry [{i}, {j}] (query {i}, key {j}) should be {bool(want[i, j])}, "
                      f"got {bool(np.asarray(got)[i, j])}; {len(wrong)} of {n * n} entries are wrong. "
                      "Query i may attend to keys j <= i: True on and below the diagonal.")


def test_causal_mask():
    for n in (1, 2, 5, 9):
        _expect_causal(n, env().call("causal_mask", n, case=f"n={n}", forbid=FORBID_MASK))


def test_causal_mask_dtype():
    """dtype bool, as np.where and ~mask need; paid only for the right pattern (a wrong pattern of the right dtype
    earns nothing here either; a right pattern as floats earns `test_causal_mask` only)."""
    for n in (3, 6):
        got = env().call("causal_mask", n, case=f"n={n}", forbid=FORBID_MASK)
        _expect_causal(n, got)
        expect(got.dtype == np.bool_, f"causal_mask: expected dtype bool for n={n}; got {got.dtype}. "
                                      "Masks are boolean (True = may attend), so that ~mask means what it says.")


# ---------------------------------------------------------------- scaled_dot_product_attention

def test_scaled_dot_product_attention():
    """Unmasked 2-D attention: the output against the reference (n_q != n_k, d_v != d_k), including
    one case with scores in the hundreds (an inline softmax without the max subtracted gives nan there)."""
    for seed, n_q, n_k, d_k, d_v, size in [(51, 3, 5, 4, 6, 1.0), (52, 6, 6, 8, 8, 1.0), (53, 1, 4, 16, 2, 1.0),
                                           (54, 7, 3, 2, 5, 1.0), (55, 4, 6, 16, 3, 30.0)]:
        Q, K, V = _qkv(seed, (), n_q, n_k, d_k, d_v, size)
        case = f"Q {Q.shape}, K {K.shape}, V {V.shape}, no mask" + (f", entries ~ N(0, {size:g}^2)" if size > 1 else "")
        output, _ = _call_pair(SDPA, case, Q, K, V)
        expect_close(SDPA, output, _reference_attention(Q, K, V)[0], atol=ATOL, rtol=RTOL, case=case, what="outputs",
                     hint="output = softmax(Q K^T / sqrt(d_k)) V, shape (n_q, d_v); with large scores, a softmax "
                          "without the max subtracted overflows (use your `softmax`).")


def test_scaled_dot_product_attention_weights():
    """The weights: softmax of the scaled scores, rows summing to 1, shape (n_q, n_k)."""
    for seed, n_q, n_k, d_k, d_v in [(61, 4, 6, 3, 5), (62, 5, 5, 8, 8), (63, 2, 9, 4, 1)]:
        Q, K, V = _qkv(seed, (), n_q, n_k, d_k, d_v)
        Q *= 2.0
        case = f"Q {Q.shape}, K {K.shape}, V {V.shape}, no mask"
        _, weights = _call_pair(SDPA, case, Q, K, V, weights_shape=(n_q, n_k),
                                hint="The weights have one row per query and one column per key.")
        rows_sum_to_one(SDPA, weights, case, "Return the normalised weights (after the softmax), not the scores or "
                                             "exp(scores).")
        expect_close(SDPA, weights, _reference_attention(Q, K, V)[1], atol=ATOL, rtol=RTOL, case=case, what="weights",
                     hint="weights = softmax(Q K^T / sqrt(d_k)) along the keys (the last axis).")


def test_scaled_dot_product_attention_mask():
    """Boolean masks (True = may attend), causal and random: masked weights exactly 0, output equal to the reference."""
    for seed, n_q, n_k, d_k, d_v, kind in [(71, 5, 5, 4, 3, "causal"), (72, 4, 7, 8, 6, "random"),
                                           (73, 6, 6, 2, 5, "random"), (74, 3, 3, 16, 4, "causal")]:
        Q, K, V = _qkv(seed, (), n_q, n_k, d_k, d_v)
        mask = causal_mask(n_q, numpy=True) if kind == "causal" else _random_mask(rng(seed + 100), n_q, n_k)
        case = f"Q {Q.shape}, K {K.shape}, V {V.shape}, {kind} mask {mask.shape}"
        output, weights = _call_pair(SDPA, case, Q, K, V, mask=mask, weights_shape=mask.shape)
        masked_weights_are_zero(SDPA, weights, mask, case, "True = may attend; a weight is exactly 0 only if its "
                                                           "score is -inf when the softmax sees it.")
        expect_close(SDPA, output, _reference_attention(Q, K, V, mask)[0], atol=ATOL, rtol=RTOL, case=case,
                     what="outputs", hint="Each row of weights must still sum to 1 over the keys it may see; "
                                          "the mask acts on the scores, before the softmax.")


def test_scaled_dot_product_attention_batch():
    """Leading batch dimensions, with masks that broadcast against (..., n_q, n_k): outputs against the reference."""
    r = rng(81)
    specs = [((2,), 4, 5, 3, 6, None),
             ((2, 3), 5, 5, 4, 4, causal_mask(5, numpy=True)),             # (n, n) shared by all heads
             ((2, 2), 3, 6, 8, 2, _random_mask(r, 3, 6, lead=(2, 1))),     # (batch, 1, n_q, n_k)
             ((3,), 4, 4, 2, 5, _random_mask(r, 4, 4, lead=(3,)))]         # full shape
    hint = ("Batch axes stay apart only with a product that batches (np.dot does not), and the mask must broadcast "
            "against the scores as arithmetic does (a boolean index needs the exact shape).")
    for i, (lead, n_q, n_k, d_k, d_v, mask) in enumerate(specs):
        Q, K, V = _qkv(90 + i, lead, n_q, n_k, d_k, d_v)
        case = f"Q {Q.shape}, K {K.shape}, V {V.shape}, " + ("no mask" if mask is None else f"mask {mask.shape}")
        output, _ = _call_pair(SDPA, case, Q, K, V, weights_shape=(*lead, n_q, n_k), hint=hint,
                               **({} if mask is None else {"mask": mask}))
        expect_close(SDPA, output, _reference_attention(Q, K, V, mask)[0], atol=ATOL, rtol=RTOL, case=case,
                     what="outputs", hint=hint)


# ---------------------------------------------------------------- self_attention

def _self_inputs(seed, lead, n, d_model, d_k, d_v):
    r = rng(seed)
    X = r.normal(size=(*lead, n, d_model))
    return (X, *(r.normal(size=(d_model, d)) / np.sqrt(d_model) for d in (d_k, d_k, d_v)))


def test_self_attention():
    """Projections Q = X W_q, K = X W_k, V = X W_v (row vectors), with d_k != d_v, 2-D and batched X."""
    for seed, lead, n, d_model, d_k, d_v in [(101, (), 4, 6, 3, 5), (102, (), 7, 8, 8, 2), (103, (2,), 5, 4, 6, 3),
                                             (104, (2, 3), 3, 5, 2, 4)]:
        X, W_q, W_k, W_v = _self_inputs(seed, lead, n, d_model, d_k, d_v)
        case = f"X {X.shape}, W_q {W_q.shape}, W_k {W_k.shape}, W_v {W_v.shape}"
        output, weights = _call_pair("self_attention", case, X, W_q, W_k, W_v)
        want_out, want_w = _reference_attention(X @ W_q, X @ W_k, X @ W_v)
        hint = ("Queries, keys and values each have one row per token, projected by W_q, W_k and W_v respectively; "
                "which side of X must each matrix go for those shapes?")
        expect_close("self_attention", weights, want_w, atol=ATOL, rtol=RTOL, case=case, what="weights", hint=hint)
        expect_close("self_attention", output, want_out, atol=ATOL, rtol=RTOL, case=case, what="outputs", hint=hint)


def test_self_attention_mask():
    """The mask reaches the attention: masked weights exactly 0, rows sum to 1, output = weights @ (X W_v)."""
    r = rng(111)
    for seed, lead, n, d_model, d_k, d_v, mask in [(112, (), 5, 6, 4, 3, causal_mask(5, numpy=True)),
                                                   (113, (2,), 4, 3, 5, 2, _random_mask(r, 4, 4)),
                                                   (114, (3,), 6, 4, 4, 4, _random_mask(r, 6, 6, lead=(3,)))]:
        X, W_q, W_k, W_v = _self_inputs(seed, lead, n, d_model, d_k, d_v)
        case = f"X {X.shape}, mask {mask.shape}"
        output, weights = _call_pair("self_attention", case, X, W_q, W_k, W_v, mask=mask, weights_shape=(*lead, n, n))
        masked_weights_are_zero("self_attention", weights, mask, case, "Pass `mask` on to your attention.")
        rows_sum_to_one("self_attention", weights, case, "Pass `mask` on; don't zero weights after the softmax.")
        expect_close("self_attention", output, np.asarray(weights, dtype=float) @ (X @ W_v), atol=ATOL, rtol=RTOL,
                     case=case, what="outputs", hint="The output mixes the values (X projected by W_v) with the "
                                                     "returned weights.")
