"""Hidden checks for chapter 4, `04_attention` (NumPy).

One function per hidden-test call in `solutions/04_attention.ipynb`. Inputs are float64 arrays from fixed seeds, in
shapes the visible tests do not use. References (`references.softmax`, `references.attention`) are computed here in
the grader, never in the learner's kernel, in float64 NumPy written apart from the substitutes below (softmax through
log-sum-exp, attention through einsum), and pinned to PyTorch's own (`torch.softmax`,
`torch.nn.functional.scaled_dot_product_attention`) by `tests/test_check_references.py`: grading this NumPy chapter
never imports torch, a CPU-second per check.

Tolerances: values are compared with `atol=1e-6, rtol=1e-5` (a float32 implementation passes, a wrong formula does
not); masked weights must be exactly 0.

Where a function naturally calls an earlier exercise's function (sdpa calls `softmax` and `attention_scores`,
`self_attention` calls `scaled_dot_product_attention`), the call substitutes the pure-NumPy references below, so one
wrong answer costs only its own exercise's points.
"""
from __future__ import annotations

import numpy as np

from .references import attention as _reference_attention, causal_mask, expect_pair, masked_weights_are_zero
from .references import random_mask as _random_mask, rows_sum_to_one, softmax as _reference_softmax
from .sources import solution
from . import expect, expect_cases, expect_close, expect_shape, expect_type, env, held_as, rng

ATOL, RTOL = 1e-6, 1e-5

# Calling a library's softmax / attention earns nothing in the exercise that builds it.
FORBID_SOFTMAX = ["scipy.special*softmax", "torch*softmax", "torch.nn.functional.*", "torch._C._nn.*"]
FORBID_ATTENTION = FORBID_SOFTMAX + [
    "torch*scaled_dot_product_attention*",
    "torch.nn.modules.activation.MultiheadAttention*",
    "torch*multi_head_attention_forward*",
]
FORBID_MASK = ["torch.nn.modules.transformer*", "torch*generate_square_subsequent_mask*"]


# The learner's earlier functions are swapped for the notebook's own solutions while a later exercise is judged.
SUB_SDPA = {"softmax": solution("04", "softmax"), "attention_scores": solution("04", "attention_scores")}
SUB_SELF = {**SUB_SDPA, "scaled_dot_product_attention":
            solution("04", "softmax", "attention_scores", "scaled_dot_product_attention")}


def _qkv(seed, lead, n_q, n_k, d_k, d_v):
    r = rng(seed)
    return (r.normal(size=(*lead, n_q, d_k)), r.normal(size=(*lead, n_k, d_k)), r.normal(size=(*lead, n_k, d_v)))


def _pair(got, exercise, case):
    return expect_pair(got, exercise, case, hint="Return both: `return output, weights`.")


# ---------------------------------------------------------------- softmax

def test_softmax():
    """Values along several axes and batch shapes, against the reference."""
    expect_cases("softmax", [(f"x of shape {shape}, axis={axis}", (rng(seed).normal(size=shape) * 3,), {"axis": axis})
                             for seed, shape, axis in [(11, (3, 7), -1), (12, (2, 4, 5), 1), (13, (6,), 0),
                                                       (14, (2, 3, 4, 5), 0), (15, (5, 3), 0)]],
                 _reference_softmax, atol=ATOL, rtol=RTOL, forbid=FORBID_SOFTMAX,
                 hint="Subtract the max, exponentiate, and divide by the sum along `axis` (keepdims=True).")
    # the default axis is the last one
    x = rng(16).normal(size=(4, 6))
    got = env().call("softmax", x, case="x of shape (4, 6), default axis", forbid=FORBID_SOFTMAX)
    expect_close("softmax", got, _reference_softmax(x, -1), atol=ATOL, rtol=RTOL,
                 case="x of shape (4, 6), default axis", hint="The default is axis=-1.")


def _rows_depend_on_each_other(x, axis, case):
    """True when the learner's softmax, wrong on the whole of x, is right on each slice x[i:i+1] passed alone: then
    a slice's answer depends on its neighbours, which only a maximum taken over more than `axis` (x.max()) does."""
    slices = np.split(x, x.shape[0], axis=0) if x.ndim > 1 and axis % x.ndim != 0 else None
    if slices is None:
        return False
    for part in slices:
        got = env().call("softmax", part, axis=axis, case=f"{case}, one slice alone", forbid=FORBID_SOFTMAX)
        if (not isinstance(got, np.ndarray) or got.shape != part.shape
                or not np.allclose(np.asarray(got, dtype=float), _reference_softmax(part, axis), atol=ATOL, rtol=RTOL)):
            return False
    return True


def test_softmax_stability():
    """Large logits (|x| ~ 1000) must neither overflow nor underflow to nan, including rows whose scales differ by
    1000 (a softmax that subtracts the global x.max() instead of the maximum along `axis` gives 0/0 there)."""
    r = rng(21)
    cases = [
        ("x ~ 1000 + N(0, 5), shape (4, 9)", 1000.0 + r.normal(size=(4, 9)) * 5),
        ("x ~ -1000 + N(0, 5), shape (3, 6)", -1000.0 + r.normal(size=(3, 6)) * 5),
        ("rows [1000, 1001, 1002] and [-1000, 0, 1000], shape (2, 3)",
         np.array([[1000.0, 1001.0, 1002.0], [-1000.0, 0.0, 1000.0]])),
        ("rows near 0, near 1000 and near -1000, shape (3, 5)",
         np.array([0.0, 1000.0, -1000.0])[:, None] + r.normal(size=(3, 5))),
        ("x of shape (2, 3, 4), slices x[0] near 0 and x[1] near 2000",
         np.array([0.0, 2000.0])[:, None, None] + r.normal(size=(2, 3, 4))),
    ]
    for case, x in cases:
        got = env().call("softmax", x, axis=-1, case=case, forbid=FORBID_SOFTMAX)
        # dtype policy: float32 holds x ~ 2000 only to ~1e-4, an error of the input, not of the learner's softmax
        want = _reference_softmax(held_as(got, x), -1)
        hint = "exp(1000) overflows: subtract the maximum along `axis` before exponentiating."
        if (isinstance(got, np.ndarray) and got.shape == want.shape
                and not np.allclose(np.asarray(got, dtype=float), want, atol=ATOL, rtol=RTOL)
                and _rows_depend_on_each_other(x, -1, case)):
            hint = ("Each row is right alone but not next to a row 1000 larger: you subtract one maximum for the "
                    "whole array, so exp underflows to 0 in the smaller rows. Subtract the maximum along `axis` "
                    "(keepdims=True).")
        expect_close("softmax", got, want, atol=ATOL, rtol=RTOL, case=case, hint=hint)


# ---------------------------------------------------------------- attention_scores

def test_attention_scores():
    """2-D Q, K of several sizes (n_q != n_k, several d_k): values including the 1/sqrt(d_k) scale."""
    cases = []
    for seed, n_q, n_k, d_k in [(31, 3, 5, 4), (32, 6, 6, 16), (33, 1, 7, 64), (34, 5, 2, 1)]:
        r = rng(seed)
        Q, K = r.normal(size=(n_q, d_k)), r.normal(size=(n_k, d_k))
        cases.append((f"Q {Q.shape}, K {K.shape}", (Q, K)))
    expect_cases("attention_scores", cases, lambda Q, K: (Q @ K.T) / np.sqrt(Q.shape[-1]), atol=ATOL, rtol=RTOL,
                 forbid=FORBID_ATTENTION,
                 hint="scores = Q K^T / sqrt(d_k), with d_k = Q.shape[-1] (the square root, not d_k itself).")


def _proportional_to(got, dots):
    """The c > 0 with got = c * dots (least squares), or None when got is no positive multiple of dots."""
    got = np.asarray(got, dtype=float)
    c = float(np.sum(got * dots) / np.sum(dots * dots))
    if not np.isfinite(c) or c <= 0 or not np.allclose(got, c * dots, atol=ATOL, rtol=RTOL):
        return None
    return c


def test_attention_scores_batch():
    """Leading batch dimensions, (batch, heads, n, d_k): the right shape, every batch element equal to the answer for
    that element alone, and the whole a positive multiple of the dot products Q K^T computed here (so the right shape
    filled with anything else earns nothing; the exact 1/sqrt(d_k) is `test_attention_scores`'s
    business, so a wrong scale is charged there only)."""
    for seed, lead, n_q, n_k, d_k in [(41, (2,), 3, 4, 5), (42, (2, 3), 4, 4, 8), (43, (1, 2, 2), 2, 5, 3)]:
        r = rng(seed)
        Q, K = r.normal(size=(*lead, n_q, d_k)), r.normal(size=(*lead, n_k, d_k))
        case = f"Q {Q.shape}, K {K.shape}"
        hint = "K.T reverses *all* axes; transpose only the last two (np.swapaxes(K, -1, -2)) and use @."
        got = env().call("attention_scores", Q, K, case=case, forbid=FORBID_ATTENTION)
        expect_type("attention_scores", got, "ndarray", case, hint)
        expect_shape("attention_scores", got, (*lead, n_q, n_k), case, hint)
        dots = np.einsum("...qd,...kd->...qk", Q, K)
        first = (0,) * len(lead) + (0,)                   # the first query of the first batch element
        expect(_proportional_to(got, dots) is not None,
               f"attention_scores: for {case}, the scores are not the dot products of each query with each key of "
               f"the same batch element (times one positive scale): the first query's row is "
               f"{np.array2string(np.asarray(got, dtype=float)[first], precision=4)}, expected a multiple of "
               f"{np.array2string(dots[first], precision=4)}. Score query i against key j of the same batch "
               "element: Q[..., i, :] · K[..., j, :].")
        index = tuple(int(i) for i in r.integers(0, lead))
        alone = env().call("attention_scores", Q[index], K[index], case=f"Q {Q[index].shape}, K {K[index].shape}",
                           forbid=FORBID_ATTENTION)
        expect_close("attention_scores", got[index], np.asarray(alone), atol=ATOL, rtol=RTOL,
                     case=f"{case}, batch element {list(index)} against the same Q, K passed alone",
                     hint="Keep the batch axes apart: " + hint)


# ---------------------------------------------------------------- causal_mask

def test_causal_mask():
    for n in (1, 2, 5, 9):
        case = f"n={n}"
        got = env().call("causal_mask", n, case=case, forbid=FORBID_MASK)
        expect_type("causal_mask", got, "ndarray", case)
        expect_shape("causal_mask", got, (n, n), case)
        want = causal_mask(n, numpy=True)
        wrong = np.argwhere(np.asarray(got).astype(bool) != want)
        if len(wrong):
            i, j = (int(v) for v in wrong[0])
            raise_msg = (f"causal_mask: for {case}, entry [{i}, {j}] (query {i}, key {j}) should be {bool(want[i, j])}, "
                         f"got {bool(np.asarray(got)[i, j])}; {len(wrong)} of {n * n} entries are wrong. "
                         "Query i may attend to keys j <= i: True on and below the diagonal.")
            expect(False, raise_msg)


def test_causal_mask_dtype():
    """The mask as NumPy wants it for np.where and ~mask: dtype bool. It pays only for the right mask in the right
    dtype (a wrong pattern of the right dtype earns nothing here either; a right pattern as floats earns
    `test_causal_mask` only)."""
    for n in (3, 6):
        case = f"n={n}"
        got = env().call("causal_mask", n, case=case, forbid=FORBID_MASK)
        expect_type("causal_mask", got, "ndarray", case)
        expect_shape("causal_mask", got, (n, n), case)
        want = causal_mask(n, numpy=True)
        expect(np.array_equal(np.asarray(got).astype(bool), want),
               f"causal_mask: for {case}, {int(np.sum(np.asarray(got).astype(bool) != want))} of {n * n} entries "
               "differ from the causal pattern (True where key j <= query i), so its dtype earns nothing yet.")
        expect(got.dtype == np.bool_,
               f"causal_mask: expected dtype bool for {case}; got {got.dtype}. "
               "Masks are boolean (True = may attend), so that ~mask and np.where(mask, ...) mean what they say.")


# ---------------------------------------------------------------- scaled_dot_product_attention

def test_scaled_dot_product_attention():
    """Unmasked 2-D attention: the output against the reference (n_q != n_k, d_v != d_k), including
    one case with scores in the hundreds (an inline softmax without the max subtracted gives nan there)."""
    for seed, n_q, n_k, d_k, d_v, size in [(51, 3, 5, 4, 6, 1.0), (52, 6, 6, 8, 8, 1.0), (53, 1, 4, 16, 2, 1.0),
                                           (54, 7, 3, 2, 5, 1.0), (55, 4, 6, 16, 3, 30.0)]:
        Q, K, V = _qkv(seed, (), n_q, n_k, d_k, d_v)
        Q, K = Q * size, K * size
        case = f"Q {Q.shape}, K {K.shape}, V {V.shape}, no mask" + (f", entries ~ N(0, {size:g}^2)" if size > 1 else "")
        got = env().call("scaled_dot_product_attention", Q, K, V, case=case, forbid=FORBID_ATTENTION,
                         substitute=SUB_SDPA)
        output, _ = _pair(got, "scaled_dot_product_attention", case)
        want, _ = _reference_attention(Q, K, V)
        expect_close("scaled_dot_product_attention", output, want, atol=ATOL, rtol=RTOL, case=case, what="outputs",
                     hint="output = softmax(Q K^T / sqrt(d_k)) @ V, shape (n_q, d_v); with large scores, a softmax "
                          "without the max subtracted overflows (use your `softmax`).")


def test_scaled_dot_product_attention_weights():
    """The weights: softmax of the scaled scores, rows summing to 1, shape (n_q, n_k)."""
    for seed, n_q, n_k, d_k, d_v in [(61, 4, 6, 3, 5), (62, 5, 5, 8, 8), (63, 2, 9, 4, 1)]:
        Q, K, V = _qkv(seed, (), n_q, n_k, d_k, d_v)
        Q = Q * 2.0
        case = f"Q {Q.shape}, K {K.shape}, V {V.shape}, no mask"
        got = env().call("scaled_dot_product_attention", Q, K, V, case=case, forbid=FORBID_ATTENTION,
                         substitute=SUB_SDPA)
        _, weights = _pair(got, "scaled_dot_product_attention", case)
        expect_type("scaled_dot_product_attention", weights, "ndarray", case)
        expect_shape("scaled_dot_product_attention", weights, (n_q, n_k), case,
                     hint="The weights have one row per query and one column per key.")
        rows_sum_to_one("scaled_dot_product_attention", weights, case,
                        "Return the normalised weights (after the softmax), not the scores or exp(scores).")
        _, want = _reference_attention(Q, K, V)
        expect_close("scaled_dot_product_attention", weights, want, atol=ATOL, rtol=RTOL, case=case, what="weights",
                     hint="weights = softmax(Q K^T / sqrt(d_k)) along the keys (the last axis).")


def test_scaled_dot_product_attention_mask():
    """Boolean masks (True = may attend), causal and random: masked weights exactly 0, output equal to the reference."""
    cases = []
    for seed, n_q, n_k, d_k, d_v, kind in [(71, 5, 5, 4, 3, "causal"), (72, 4, 7, 8, 6, "random"),
                                           (73, 6, 6, 2, 5, "random"), (74, 3, 3, 16, 4, "causal")]:
        Q, K, V = _qkv(seed, (), n_q, n_k, d_k, d_v)
        if kind == "causal":
            mask = causal_mask(n_q, numpy=True)
        else:
            mask = _random_mask(rng(seed + 100), n_q, n_k)
        cases.append((f"Q {Q.shape}, K {K.shape}, V {V.shape}, {kind} mask {mask.shape}", Q, K, V, mask))
    for case, Q, K, V, mask in cases:
        got = env().call("scaled_dot_product_attention", Q, K, V, mask=mask, case=case, forbid=FORBID_ATTENTION,
                         substitute=SUB_SDPA)
        output, weights = _pair(got, "scaled_dot_product_attention", case)
        expect_type("scaled_dot_product_attention", weights, "ndarray", case)
        expect_shape("scaled_dot_product_attention", weights, mask.shape, case)
        masked_weights_are_zero("scaled_dot_product_attention", weights, mask, case,
                                "True = may attend: set the scores where mask is False to -inf before the softmax.")
        want_out, _ = _reference_attention(Q, K, V, mask)
        expect_close("scaled_dot_product_attention", output, want_out, atol=ATOL, rtol=RTOL, case=case,
                     what="outputs", hint="Mask the scores (-inf where mask is False) before the softmax, so each "
                                          "row of weights still sums to 1; then output = weights @ V.")


def test_scaled_dot_product_attention_batch():
    """Leading batch dimensions, with masks that broadcast against (..., n_q, n_k): outputs against the reference."""
    r = rng(81)
    specs = [
        ((2,), 4, 5, 3, 6, None),
        ((2, 3), 5, 5, 4, 4, causal_mask(5, numpy=True)),              # (n, n) shared by all heads
        ((2, 2), 3, 6, 8, 2, _random_mask(r, 3, 6, lead=(2, 1))),                 # (batch, 1, n_q, n_k)
        ((3,), 4, 4, 2, 5, _random_mask(r, 4, 4, lead=(3,))),                      # full shape
    ]
    for i, (lead, n_q, n_k, d_k, d_v, mask) in enumerate(specs):
        Q, K, V = _qkv(90 + i, lead, n_q, n_k, d_k, d_v)
        mdesc = "no mask" if mask is None else f"mask {mask.shape}"
        case = f"Q {Q.shape}, K {K.shape}, V {V.shape}, {mdesc}"
        kwargs = {} if mask is None else {"mask": mask}
        got = env().call("scaled_dot_product_attention", Q, K, V, case=case, forbid=FORBID_ATTENTION,
                         substitute=SUB_SDPA, **kwargs)
        output, weights = _pair(got, "scaled_dot_product_attention", case)
        hint = ("Use @ / np.matmul (np.dot mixes batch axes), and mask with np.where(mask, scores, -np.inf) so a "
                "mask of shape (n_q, n_k) broadcasts.")
        expect_type("scaled_dot_product_attention", weights, "ndarray", case, hint)
        expect_shape("scaled_dot_product_attention", weights, (*lead, n_q, n_k), case, hint)
        want_out, _ = _reference_attention(Q, K, V, mask)
        expect_close("scaled_dot_product_attention", output, want_out, atol=ATOL, rtol=RTOL, case=case,
                     what="outputs", hint=hint)


# ---------------------------------------------------------------- self_attention

def _self_inputs(seed, lead, n, d_model, d_k, d_v):
    r = rng(seed)
    X = r.normal(size=(*lead, n, d_model))
    W_q, W_k = r.normal(size=(d_model, d_k)) / np.sqrt(d_model), r.normal(size=(d_model, d_k)) / np.sqrt(d_model)
    W_v = r.normal(size=(d_model, d_v)) / np.sqrt(d_model)
    return X, W_q, W_k, W_v


def test_self_attention():
    """Projections Q = X W_q, K = X W_k, V = X W_v (row vectors), with d_k != d_v, 2-D and batched X."""
    for seed, lead, n, d_model, d_k, d_v in [(101, (), 4, 6, 3, 5), (102, (), 7, 8, 8, 2), (103, (2,), 5, 4, 6, 3),
                                             (104, (2, 3), 3, 5, 2, 4)]:
        X, W_q, W_k, W_v = _self_inputs(seed, lead, n, d_model, d_k, d_v)
        case = f"X {X.shape}, W_q {W_q.shape}, W_k {W_k.shape}, W_v {W_v.shape}"
        got = env().call("self_attention", X, W_q, W_k, W_v, case=case, forbid=FORBID_ATTENTION, substitute=SUB_SELF)
        output, weights = _pair(got, "self_attention", case)
        want_out, want_w = _reference_attention(X @ W_q, X @ W_k, X @ W_v)
        hint = "Row vectors: Q = X @ W_q, K = X @ W_k, V = X @ W_v, then scaled_dot_product_attention(Q, K, V, mask)."
        expect_close("self_attention", weights, want_w, atol=ATOL, rtol=RTOL, case=case, what="weights", hint=hint)
        expect_close("self_attention", output, want_out, atol=ATOL, rtol=RTOL, case=case, what="outputs", hint=hint)


def test_self_attention_mask():
    """The mask reaches the attention: masked weights exactly 0, rows sum to 1, output = weights @ (X W_v)."""
    r = rng(111)
    for seed, lead, n, d_model, d_k, d_v, mask in [
        (112, (), 5, 6, 4, 3, causal_mask(5, numpy=True)),
        (113, (2,), 4, 3, 5, 2, _random_mask(r, 4, 4)),
        (114, (3,), 6, 4, 4, 4, _random_mask(r, 6, 6, lead=(3,))),
    ]:
        X, W_q, W_k, W_v = _self_inputs(seed, lead, n, d_model, d_k, d_v)
        case = f"X {X.shape}, mask {mask.shape}"
        got = env().call("self_attention", X, W_q, W_k, W_v, mask=mask, case=case, forbid=FORBID_ATTENTION,
                         substitute=SUB_SELF)
        output, weights = _pair(got, "self_attention", case)
        expect_type("self_attention", weights, "ndarray", case)
        expect_shape("self_attention", weights, (*lead, n, n), case)
        masked_weights_are_zero("self_attention", weights, mask, case,
                                "Pass `mask` on to scaled_dot_product_attention.")
        rows_sum_to_one("self_attention", weights, case, "Pass `mask` on; don't zero weights after the softmax.")
        expect_close("self_attention", output, np.asarray(weights, dtype=float) @ (X @ W_v), atol=ATOL, rtol=RTOL, case=case, what="outputs",
                     hint="The output is the returned weights times V = X @ W_v.")
