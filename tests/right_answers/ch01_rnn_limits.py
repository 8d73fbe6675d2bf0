"""Correct answers for chapter 1 (`01_rnn_limits`) written apart from the solution, in other idioms: each set
replaces every exercise. "a": explicit loops and float32 where float32 is enough; "b": einsum and matrix powers.
Each set must get full marks (tests/test_chapters.py)."""

RIGHT_ANSWERS = {
    "a": {
        "rnn_step": (
            "def rnn_step(x_t, h_prev, W_xh, W_hh, b_h):\n"
            "    # float32 all the way: the dtype policy accepts it\n"
            "    f = np.float32\n"
            "    pre = np.asarray(x_t, f) @ W_xh.astype(f) + np.asarray(h_prev, f) @ W_hh.astype(f)\n"
            "    return np.tanh(pre + b_h.astype(f))\n"
        ),
        "rnn_forward": (
            "def rnn_forward(X, h_init, W_xh, W_hh, b_h):\n"
            "    X = np.asarray(X, dtype=float)\n"
            "    n = X.shape[-2]\n"
            "    H = np.zeros(X.shape[:-1] + (W_hh.shape[0],))\n"
            "    h = np.broadcast_to(h_init, H.shape[:-2] + H.shape[-1:])\n"
            "    for t in range(n):\n"
            "        h = np.tanh(X[..., t, :] @ W_xh + h @ W_hh + b_h)\n"
            "        H[..., t, :] = h\n"
            "    return H\n"
        ),
        "jacobian_first_to_last": (
            "def jacobian_first_to_last(H, W_xh, W_hh):\n"
            "    # one sequence at a time, full Jacobians multiplied by the chain rule\n"
            "    def one(Hs):\n"
            "        J = np.diag(1 - Hs[0] ** 2) @ W_xh.T\n"
            "        for t in range(1, len(Hs)):\n"
            "            J = np.diag(1 - Hs[t] ** 2) @ W_hh.T @ J\n"
            "        return J\n"
            "    if H.ndim == 2:\n"
            "        return one(H)\n"
            "    return np.stack([one(Hs) for Hs in H])\n"
        ),
        "influence_curve": (
            "def influence_curve(H, W_xh, W_hh):\n"
            "    out = []\n"
            "    J = None\n"
            "    for t in range(H.shape[0]):\n"
            "        D = np.diag(1.0 - H[t] * H[t])\n"
            "        J = D @ W_xh.T if J is None else D @ (W_hh.T @ J)\n"
            "        out.append(np.sqrt((J ** 2).sum()))\n"
            "    return np.asarray(out)\n"
        ),
        "pairwise_scores": (
            "def pairwise_scores(X):\n"
            "    X = np.asarray(X, dtype=np.float32)\n"
            "    n, d = X.shape[-2:]\n"
            "    S = np.empty(X.shape[:-1] + (n,), dtype=np.float32)\n"
            "    for i in range(n):\n"
            "        for j in range(n):\n"
            "            S[..., i, j] = (X[..., i, :] * X[..., j, :]).sum(-1) / np.sqrt(d)\n"
            "    return S\n"
        ),
    },
    "b": {
        "rnn_step": (
            "def rnn_step(x_t, h_prev, W_xh, W_hh, b_h):\n"
            "    z = np.einsum('...i,ih->...h', x_t, W_xh) + np.einsum('...g,gh->...h', h_prev, W_hh)\n"
            "    return (np.exp(2 * (z + b_h)) - 1) / (np.exp(2 * (z + b_h)) + 1)\n"
        ),
        "rnn_forward": (
            "def rnn_forward(X, h_init, W_xh, W_hh, b_h):\n"
            "    steps = np.moveaxis(X, -2, 0)  # time first, then iterate\n"
            "    h, out = h_init, []\n"
            "    for x in steps:\n"
            "        h = np.tanh(np.einsum('...i,ih->...h', x, W_xh) + np.einsum('...g,gh->...h', h, W_hh) + b_h)\n"
            "        out.append(h)\n"
            "    return np.moveaxis(np.array(out), 0, -2)\n"
        ),
        "jacobian_first_to_last": (
            "def jacobian_first_to_last(H, W_xh, W_hh):\n"
            "    D = 1.0 - H ** 2\n"
            "    J = np.einsum('...h,ih->...hi', D[..., 0, :], W_xh)\n"
            "    for t in range(1, H.shape[-2]):\n"
            "        J = np.einsum('...h,gh,...gi->...hi', D[..., t, :], W_hh, J)\n"
            "    return J\n"
        ),
        "influence_curve": (
            "def influence_curve(H, W_xh, W_hh):\n"
            "    D = 1.0 - H ** 2\n"
            "    J = np.einsum('h,ih->hi', D[0], W_xh)\n"
            "    norms = np.zeros(len(H))\n"
            "    norms[0] = np.linalg.norm(J, 'fro')\n"
            "    for t in range(1, len(H)):\n"
            "        J = np.einsum('h,gh,gi->hi', D[t], W_hh, J)\n"
            "        norms[t] = np.linalg.norm(J, 'fro')\n"
            "    return norms\n"
        ),
        "pairwise_scores": (
            "def pairwise_scores(X):\n"
            "    return np.einsum('...id,...jd->...ij', X, X) / np.sqrt(X.shape[-1])\n"
        ),
    },
}
