"""What several chapters' checks share: seeded inputs, attention references, and the properties of attention weights.

Seeded inputs: `randn(seed, shape)` (NumPy's generator, so a check's inputs do not depend on torch's RNG), `tensor`,
`generator`, `causal_mask` / `random_mask`. References, computed here in the grader and never in the learner's kernel:
`softmax` and `attention` in float64 NumPy (chapter 4 grades NumPy without importing torch; pinned to PyTorch's by
`tests/test_check_references.py`), `torch_attention` (weights by masked_fill + torch.softmax, output by PyTorch's
fused attention). Each is written apart from the notebook's solutions, so a check never grades a solution against
itself. Property checks: `expect_pair`, `masked_weights_are_zero`, `rows_sum_to_one`.

torch is imported on first use: chapter 4's checks never pay for it.
"""
from __future__ import annotations

import numpy as np

from . import CheckFailed, rng


def torch():
    import torch

    return torch


def tensor(array, dtype: str = "float64"):
    """A NumPy array as a torch tensor of `dtype` (a name: 'float32', 'float64')."""
    t = torch()
    return t.from_numpy(np.ascontiguousarray(array)).to(getattr(t, dtype))


def randn(seed: int, *shape, dtype: str = "float64", scale: float = 1.0):
    """N(0, scale²) entries from NumPy's generator with `seed`, as a tensor of `dtype`; the shape given as sizes or
    as one tuple, as torch.randn takes it."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tensor(rng(seed).normal(size=shape) * scale, dtype)


def generator(seed: int):
    """torch's own generator, for checks that draw weights with torch.randn."""
    return torch().Generator().manual_seed(int(seed))


def causal_mask(n: int, numpy: bool = False):
    """(n, n) booleans, True on and below the diagonal (query i may attend key j <= i)."""
    if numpy:
        return np.tril(np.ones((n, n), dtype=bool))
    t = torch()
    return t.ones(n, n, dtype=t.bool).tril()


def random_mask(r: np.random.Generator, n_q: int, n_k: int, lead=()) -> np.ndarray:
    """Boolean mask, True = may attend, with at least one True in every row."""
    mask = r.random(size=(*lead, n_q, n_k)) < 0.5
    pick = r.integers(0, n_k, size=(*lead, n_q))
    np.put_along_axis(mask, pick[..., None], True, axis=-1)
    return mask


# ---------------------------------------------------------------- references

def softmax(x, axis):
    """exp(x - logsumexp(x)): another route than the subtract-the-max-and-divide a learner (and the notebook) takes."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(x - np.logaddexp.reduce(x, axis=axis, keepdims=True))


def attention(Q, K, V, mask=None):
    """(output, weights) in float64 NumPy, masked pairs at -inf before the softmax; batch axes and masks broadcast."""
    Q, K, V = (np.asarray(a, dtype=np.float64) for a in (Q, K, V))
    scores = np.einsum("...qd,...kd->...qk", Q, K) / np.sqrt(Q.shape[-1])
    if mask is not None:
        scores = np.where(np.asarray(mask, dtype=bool), scores, -np.inf)
    weights = softmax(scores, -1)
    return np.einsum("...qk,...kv->...qv", weights, V), weights


def sdpa(Q, K, V, mask=None, enable_gqa=False):
    """PyTorch's fused attention (boolean mask True = may attend; `enable_gqa` for grouped-query attention)."""
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(Q, K, V, attn_mask=mask, enable_gqa=enable_gqa)


def torch_attention(Q, K, V, mask=None):
    """(output, weights) of torch tensors: weights by masked_fill + torch.softmax, output by `sdpa`."""
    scores = Q @ K.transpose(-2, -1) / np.sqrt(Q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return sdpa(Q, K, V, mask), torch().softmax(scores, dim=-1)


# ---------------------------------------------------------------- properties of attention weights

def _floats(x) -> np.ndarray:
    return np.asarray(x.detach().double() if hasattr(x, "detach") else x, dtype=float)


def expect_pair(got, exercise: str, case: str, what: str = "(output, weights)", hint: str = ""):
    """An attention function returns two things; say so when it does not."""
    if not (isinstance(got, (tuple, list)) and len(got) == 2):
        count = type(got).__name__ if not isinstance(got, (tuple, list)) else f"{len(got)} values"
        raise CheckFailed(f"{exercise}: expected a pair {what}{' for ' + case if case else ''}; got {count}."
                          + (f" {hint}" if hint else ""))
    return got


def masked_weights_are_zero(exercise: str, weights, mask, case: str, advice: str, layout: str = "") -> None:
    """Masked pairs (mask False, broadcast to the weights' shape) have weight exactly 0: -inf before the softmax,
    not a large negative number and not zeroed afterwards."""
    w, m = _floats(weights), _floats(mask).astype(bool)
    try:
        leak = np.abs(w[np.broadcast_to(~m, w.shape)])
    except ValueError:
        raise CheckFailed(f"{exercise}: weights of shape {tuple(w.shape)} do not match the mask {tuple(m.shape)} "
                          f"for {case}; expected {layout or tuple(m.shape)}.") from None
    if leak.any():
        raise CheckFailed(f"{exercise}: weights of masked pairs must be exactly 0 for {case}; "
                          f"{int(np.count_nonzero(leak))} of {leak.size} are not (largest {leak.max():.3g}). {advice}")


def rows_sum_to_one(exercise: str, weights, case: str, advice: str, atol: float = 1e-6) -> None:
    """Each row of attention weights (the last axis) sums to 1."""
    sums = _floats(weights).sum(-1)
    if not np.allclose(sums, 1.0, atol=atol):
        raise CheckFailed(f"{exercise}: each row of the weights must sum to 1 for {case}; got sums "
                          f"{np.array2string(sums.ravel()[:4], precision=3)}. {advice}")
