"""Correct answers for chapter 4 (`04_attention`) written apart from the solution, in other idioms: each set replaces
every exercise. "a": float32 throughout, explicit loops, a -1e9 mask; "b": einsum, log-sum-exp, masked arrays
filled with -inf then zeroed. Each set must get full marks (tests/test_chapters.py)."""

RIGHT_ANSWERS = {
    "a": {
        "softmax": (
            "def softmax(x, axis=-1):\n"
            "    x = np.asarray(x, dtype=np.float32)\n"
            "    shifted = x - x.max(axis=axis, keepdims=True)\n"
            "    e = np.exp(shifted)\n"
            "    return e / e.sum(axis=axis, keepdims=True)\n"
        ),
        "attention_scores": (
            "def attention_scores(Q, K):\n"
            "    Q = np.asarray(Q, dtype=np.float32)\n"
            "    K = np.asarray(K, dtype=np.float32)\n"
            "    return np.matmul(Q, K.swapaxes(-2, -1)) * np.float32(1.0 / np.sqrt(Q.shape[-1]))\n"
        ),
        "causal_mask": (
            "def causal_mask(n):\n"
            "    mask = np.zeros((n, n), dtype=bool)\n"
            "    for i in range(n):\n"
            "        for j in range(i + 1):\n"
            "            mask[i, j] = True\n"
            "    return mask\n"
        ),
        "scaled_dot_product_attention": (
            "def scaled_dot_product_attention(Q, K, V, mask=None):\n"
            "    scores = attention_scores(Q, K)\n"
            "    if mask is not None:\n"
            "        scores = np.where(mask, scores, np.float32(-1e9))\n"
            "    weights = softmax(scores, axis=-1)\n"
            "    if mask is not None:\n"
            "        weights = np.where(mask, weights, 0).astype(np.float32)  # exp(-1e9 - max) is 0 already\n"
            "    return weights @ np.asarray(V, dtype=np.float32), weights\n"
        ),
        "self_attention": (
            "def self_attention(X, W_q, W_k, W_v, mask=None):\n"
            "    X = np.asarray(X, dtype=np.float32)\n"
            "    Q = X @ W_q.astype(np.float32)\n"
            "    K = X @ W_k.astype(np.float32)\n"
            "    V = X @ W_v.astype(np.float32)\n"
            "    return scaled_dot_product_attention(Q, K, V, mask)\n"
        ),
    },
    "b": {
        "softmax": (
            "def softmax(x, axis=-1):\n"
            "    x = np.asarray(x, dtype=float)\n"
            "    m = np.max(x, axis=axis, keepdims=True)\n"
            "    log_z = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))\n"
            "    return np.exp(x - log_z)\n"
        ),
        "attention_scores": (
            "def attention_scores(Q, K):\n"
            "    return np.einsum('...qd,...kd->...qk', Q, K) / np.sqrt(K.shape[-1])\n"
        ),
        "causal_mask": (
            "def causal_mask(n):\n"
            "    i = np.arange(n)\n"
            "    return i[None, :] <= i[:, None]\n"
        ),
        "scaled_dot_product_attention": (
            "def scaled_dot_product_attention(Q, K, V, mask=None):\n"
            "    scores = np.einsum('...qd,...kd->...qk', Q, K) / np.sqrt(Q.shape[-1])\n"
            "    if mask is not None:\n"
            "        shape = np.broadcast_shapes(scores.shape, np.shape(mask))\n"
            "        scores = np.broadcast_to(scores, shape).copy()\n"
            "        mask = np.broadcast_to(mask, shape)\n"
            "        scores[~mask] = -np.inf\n"
            "    m = scores.max(axis=-1, keepdims=True)\n"
            "    e = np.exp(scores - m)\n"
            "    weights = e / e.sum(axis=-1, keepdims=True)\n"
            "    return np.einsum('...qk,...kv->...qv', weights, V), weights\n"
        ),
        "self_attention": (
            "def self_attention(X, W_q, W_k, W_v, mask=None):\n"
            "    Q = np.einsum('...nd,dk->...nk', X, W_q)\n"
            "    K = np.einsum('...nd,dk->...nk', X, W_k)\n"
            "    V = np.einsum('...nd,dv->...nv', X, W_v)\n"
            "    return scaled_dot_product_attention(Q, K, V, mask=mask)\n"
        ),
    },
}
