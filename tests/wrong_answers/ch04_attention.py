"""Plausible wrong answers for chapter 4 (`04_attention`), each with exactly the test cells it must lose.

Every test cell appears alone in `loses` of at least one entry; every exercise with a library version has a
"shortcut" entry that calls it and must lose all of that exercise's tests.
"""

WRONG_ANSWERS = [
    # ------------------------------------------------------------------ softmax
    {
        "why": "ignores `axis` and always normalises along the last axis",
        "replace": {"softmax": (
            "def softmax(x, axis=-1):\n"
            "    e = np.exp(x - np.max(x, axis=-1, keepdims=True))\n"
            "    return e / np.sum(e, axis=-1, keepdims=True)\n"
        )},
        "says": "Normalise along `axis`",
        "loses": ["test_softmax"],
    },
    {
        "why": "does not subtract the maximum: exp(1000) overflows to inf and the result is nan",
        "replace": {"softmax": (
            "def softmax(x, axis=-1):\n"
            "    e = np.exp(x)\n"
            "    return e / np.sum(e, axis=axis, keepdims=True)\n"
        )},
        "says": "exp overflowed: shift each slice along `axis`",
        "loses": ["test_softmax_stability"],
    },
    {
        "why": "subtracts the global maximum x.max() instead of the maximum along `axis`: a row 1000 below another "
               "underflows to 0/0",
        "replace": {"softmax": (
            "def softmax(x, axis=-1):\n"
            "    e = np.exp(x - x.max())\n"
            "    return e / np.sum(e, axis=axis, keepdims=True)\n"
        )},
        "says": "Each row needs its own shift along `axis`",
        "loses": ["test_softmax_stability"],
    },
    {
        "why": "shortcut: calls torch.softmax",
        "replace": {"softmax": (
            "def softmax(x, axis=-1):\n"
            "    import torch\n"
            "    return torch.softmax(torch.from_numpy(np.asarray(x, dtype=float)), dim=axis).numpy()\n"
        )},
        "says": "calls torch.softmax",
        "loses": ["test_softmax", "test_softmax_stability"],
    },
    # ------------------------------------------------------------------ attention_scores
    {
        "why": "forgets the 1/sqrt(d_k) scaling",
        "replace": {"attention_scores": (
            "def attention_scores(Q, K):\n"
            "    return Q @ np.swapaxes(K, -1, -2)\n"
        )},
        "says": "divided by sqrt(4) = 2); got [[ 2.",
        "loses": ["test_attention_scores"],
    },
    {
        "why": "divides by d_k instead of sqrt(d_k)",
        "replace": {"attention_scores": (
            "def attention_scores(Q, K):\n"
            "    return Q @ np.swapaxes(K, -1, -2) / Q.shape[-1]\n"
        )},
        "says": "got [[ 0.5",
        "loses": ["test_attention_scores"],
    },
    {
        "why": "takes d_k from K.shape[1], which is d_k only for 2-D K",
        "replace": {"attention_scores": (
            "def attention_scores(Q, K):\n"
            "    return Q @ np.swapaxes(K, -1, -2) / np.sqrt(K.shape[1])\n"
        )},
        "says": "Keep the batch axes apart",
        "loses": ["test_attention_scores_batch"],
    },
    {
        # the crash also reaches the visible batch test of scaled_dot_product_attention, which calls attention_scores:
        # not charged there (attention_scores already failed its own test)
        "why": "uses K.T, which reverses all axes of a batched K",
        "replace": {"attention_scores": (
            "def attention_scores(Q, K):\n"
            "    return Q @ K.T / np.sqrt(Q.shape[-1])\n"
        )},
        "says": "K.T reverses every axis of K",
        "loses": ["test_attention_scores_batch"],
    },
    {
        # a placeholder of the right shape must earn nothing; the visible sdpa batch test calls it too, and is not
        # charged for it
        "why": "right for 2-D input, zeros of the right shape for batched input",
        "replace": {"attention_scores": (
            "def attention_scores(Q, K):\n"
            "    if Q.ndim == 2:\n"
            "        return Q @ K.T / np.sqrt(Q.shape[-1])\n"
            "    return np.zeros(Q.shape[:-1] + K.shape[-2:-1])\n"
        )},
        "says": "Keep the batch axes apart",
        "loses": ["test_attention_scores_batch"],
    },
    # ------------------------------------------------------------------ causal_mask
    {
        "why": "upper triangle: lets each query see the future instead of the past",
        "replace": {"causal_mask": (
            "def causal_mask(n):\n"
            "    return np.triu(np.ones((n, n), dtype=bool))\n"
        )},
        "says": "(query i sees keys j <= i)",
        "loses": ["test_causal_mask", "test_causal_mask_dtype"],
    },
    {
        "why": "strictly lower triangle: a token may not attend to itself",
        "replace": {"causal_mask": (
            "def causal_mask(n):\n"
            "    return np.tril(np.ones((n, n), dtype=bool), k=-1)\n"
        )},
        "says": "got [[False, False, False], [True, False, False]",
        "loses": ["test_causal_mask", "test_causal_mask_dtype"],
    },
    {
        "why": "all True, boolean and of the right shape: blocks nothing",
        "replace": {"causal_mask": (
            "def causal_mask(n):\n"
            "    return np.ones((n, n), dtype=bool)\n"
        )},
        "says": "got [[True, True, True], [True, True, True]",
        "loses": ["test_causal_mask", "test_causal_mask_dtype"],
    },
    {
        "why": "slices a precomputed (8, 8) mask, as nanoGPT slices its block_size buffer: too small for n = 9",
        "replace": {"causal_mask": (
            "_MASK = np.tril(np.ones((8, 8), dtype=bool))\n"
            "def causal_mask(n):\n"
            "    return _MASK[:n, :n]\n"
        )},
        "says": "expected shape (9, 9) for n=9; got (8, 8)",
        "loses": ["test_causal_mask"],
    },
    {
        "why": "right pattern, float dtype instead of bool",
        "replace": {"causal_mask": (
            "def causal_mask(n):\n"
            "    return np.tril(np.ones((n, n)))\n"
        )},
        "says": "expected a boolean NumPy array",
        "loses": ["test_causal_mask_dtype"],
    },
    {
        "why": "shortcut: torch.nn.Transformer.generate_square_subsequent_mask",
        "replace": {"causal_mask": (
            "def causal_mask(n):\n"
            "    import torch\n"
            "    return torch.nn.Transformer.generate_square_subsequent_mask(n).numpy() == 0\n"
        )},
        "says": "calls torch.nn.Transformer.generate_square_subsequent_mask",
        "loses": ["test_causal_mask", "test_causal_mask_dtype"],
    },
    # ------------------------------------------------------------------ scaled_dot_product_attention
    {
        "why": "inlines a softmax without subtracting the maximum: nan when the scores are large",
        "replace": {"scaled_dot_product_attention": (
            "def scaled_dot_product_attention(Q, K, V, mask=None):\n"
            "    scores = attention_scores(Q, K)\n"
            "    if mask is not None:\n"
            "        scores = np.where(mask, scores, -np.inf)\n"
            "    e = np.exp(scores)\n"
            "    weights = e / e.sum(axis=-1, keepdims=True)\n"
            "    return weights @ V, weights\n"
        )},
        "says": "nan or inf",
        "loses": ["test_scaled_dot_product_attention"],
    },
    {
        "why": "normalises late: the output is right, but the returned weights are exp(scores - max), not divided by "
               "their sum",
        "replace": {"scaled_dot_product_attention": (
            "def scaled_dot_product_attention(Q, K, V, mask=None):\n"
            "    scores = attention_scores(Q, K)\n"
            "    if mask is not None:\n"
            "        scores = np.where(mask, scores, -np.inf)\n"
            "    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))\n"
            "    output = (weights @ V) / weights.sum(axis=-1, keepdims=True)\n"
            "    return output, weights\n"
        )},
        "says": "sum to 1",
        "loses": ["test_scaled_dot_product_attention_weights"],
    },
    {
        "why": "a finite penalty (-100) instead of -inf: masked weights are tiny (1e-44) but not exactly 0",
        "replace": {"scaled_dot_product_attention": (
            "def scaled_dot_product_attention(Q, K, V, mask=None):\n"
            "    scores = attention_scores(Q, K)\n"
            "    if mask is not None:\n"
            "        scores = np.where(mask, scores, scores - 100.0)\n"
            "    weights = softmax(scores, axis=-1)\n"
            "    return weights @ V, weights\n"
        )},
        "says": "must be exactly 0",
        "loses": ["test_scaled_dot_product_attention_mask"],
    },
    {
        "why": "ignores the mask",
        "replace": {"scaled_dot_product_attention": (
            "def scaled_dot_product_attention(Q, K, V, mask=None):\n"
            "    weights = softmax(attention_scores(Q, K), axis=-1)\n"
            "    return weights @ V, weights\n"
        )},
        "says": "must be exactly 0",
        "loses": ["test_scaled_dot_product_attention_mask", "test_scaled_dot_product_attention_batch"],
    },
    {
        "why": "zeroes masked weights after the softmax without renormalising",
        "replace": {"scaled_dot_product_attention": (
            "def scaled_dot_product_attention(Q, K, V, mask=None):\n"
            "    weights = softmax(attention_scores(Q, K), axis=-1)\n"
            "    if mask is not None:\n"
            "        weights = np.where(mask, weights, 0.0)\n"
            "    return weights @ V, weights\n"
        )},
        "loses": ["test_scaled_dot_product_attention_mask", "test_scaled_dot_product_attention_batch"],
    },
    {
        "why": "reads the mask the other way round (True = blocked, as nn.MultiheadAttention does)",
        "replace": {"scaled_dot_product_attention": (
            "def scaled_dot_product_attention(Q, K, V, mask=None):\n"
            "    scores = attention_scores(Q, K)\n"
            "    if mask is not None:\n"
            "        scores = np.where(mask, -np.inf, scores)\n"
            "    weights = softmax(scores, axis=-1)\n"
            "    return weights @ V, weights\n"
        )},
        "says": "True = may attend",
        "loses": ["test_scaled_dot_product_attention_mask", "test_scaled_dot_product_attention_batch"],
    },
    {
        "why": "masks with boolean indexing, which fails when a (n_q, n_k) mask must broadcast over batch axes",
        "replace": {"scaled_dot_product_attention": (
            "def scaled_dot_product_attention(Q, K, V, mask=None):\n"
            "    scores = attention_scores(Q, K)\n"
            "    if mask is not None:\n"
            "        scores = scores.copy()\n"
            "        scores[~mask] = -np.inf\n"
            "    weights = softmax(scores, axis=-1)\n"
            "    return weights @ V, weights\n"
        )},
        "says": "the scores must keep their shape, with -inf where the mask is False",
        "loses": ["test_scaled_dot_product_attention_batch"],
    },
    {
        "why": "uses np.dot, which mixes batch axes instead of batching",
        "replace": {"scaled_dot_product_attention": (
            "def scaled_dot_product_attention(Q, K, V, mask=None):\n"
            "    scores = attention_scores(Q, K)\n"
            "    if mask is not None:\n"
            "        scores = np.where(mask, scores, -np.inf)\n"
            "    weights = softmax(scores, axis=-1)\n"
            "    return np.dot(weights, V), weights\n"
        )},
        "says": "np.dot",
        "loses": ["test_scaled_dot_product_attention_batch"],
    },
    {
        "why": "shortcut: torch.nn.functional.scaled_dot_product_attention for the output",
        "replace": {"scaled_dot_product_attention": (
            "def scaled_dot_product_attention(Q, K, V, mask=None):\n"
            "    import torch\n"
            "    import torch.nn.functional as F\n"
            "    scores = attention_scores(Q, K)\n"
            "    if mask is not None:\n"
            "        scores = np.where(mask, scores, -np.inf)\n"
            "    weights = softmax(scores, axis=-1)\n"
            "    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=float))\n"
            "    m = None if mask is None else torch.from_numpy(np.asarray(mask, dtype=bool))\n"
            "    return F.scaled_dot_product_attention(t(Q), t(K), t(V), attn_mask=m).numpy(), weights\n"
        )},
        "says": "calls torch.nn.functional.scaled_dot_product_attention",
        "loses": ["test_scaled_dot_product_attention", "test_scaled_dot_product_attention_weights",
                  "test_scaled_dot_product_attention_mask", "test_scaled_dot_product_attention_batch"],
    },
    # ------------------------------------------------------------------ self_attention
    {
        "why": "reuses W_q for the keys",
        "replace": {"self_attention": (
            "def self_attention(X, W_q, W_k, W_v, mask=None):\n"
            "    return scaled_dot_product_attention(X @ W_q, X @ W_q, X @ W_v, mask=mask)\n"
        )},
        "says": "which side of X",
        "loses": ["test_self_attention"],
    },
    {
        "why": "drops the mask instead of passing it on",
        "replace": {"self_attention": (
            "def self_attention(X, W_q, W_k, W_v, mask=None):\n"
            "    return scaled_dot_product_attention(X @ W_q, X @ W_k, X @ W_v)\n"
        )},
        "says": "Pass `mask` on",
        "loses": ["test_self_attention_mask"],
    },
    {
        "why": "shortcut: torch.nn.functional.scaled_dot_product_attention",
        "replace": {"self_attention": (
            "def self_attention(X, W_q, W_k, W_v, mask=None):\n"
            "    import torch\n"
            "    import torch.nn.functional as F\n"
            "    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=float))\n"
            "    q, k, v = t(X @ W_q), t(X @ W_k), t(X @ W_v)\n"
            "    m = None if mask is None else torch.from_numpy(np.asarray(mask, dtype=bool))\n"
            "    s = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5\n"
            "    if m is not None:\n"
            "        s = s.masked_fill(~m, float('-inf'))\n"
            "    w = torch.softmax(s, dim=-1)\n"
            "    return F.scaled_dot_product_attention(q, k, v, attn_mask=m).numpy(), w.numpy()\n"
        )},
        "says": "calls torch.nn.functional.scaled_dot_product_attention",
        "loses": ["test_self_attention", "test_self_attention_mask"],
    },
]
