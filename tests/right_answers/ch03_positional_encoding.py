"""Correct answers for chapter 3 (`03_positional_encoding`) written apart from the solution, in other idioms: each
set replaces every exercise. "a": loops and PyTorch's exp/log frequencies (as in the PyTorch tutorial), float32 where
the exercise allows it; "b": interleaving with np.stack, Kronecker-style block assembly, einsum. Each set must get
full marks (tests/test_chapters.py)."""

RIGHT_ANSWERS = {
    "a": {
        "positional_encoding": (
            "def positional_encoding(n, d, base=10000):\n"
            "    import math\n"
            "    if d % 2:\n"
            "        raise ValueError('d must be even')\n"
            "    pe = np.zeros((n, d))\n"
            "    for p in range(n):\n"
            "        for i in range(d // 2):\n"
            "            angle = p * math.exp(-(2 * i) * math.log(base) / d)\n"
            "            pe[p, 2 * i] = math.sin(angle)\n"
            "            pe[p, 2 * i + 1] = math.cos(angle)\n"
            "    return pe\n"
        ),
        "rotation_matrix": (
            "def rotation_matrix(k, d, base=10000):\n"
            "    if d % 2:\n"
            "        raise ValueError('d must be even')\n"
            "    R = np.zeros((d, d))\n"
            "    for i in range(d // 2):\n"
            "        w = base ** (-2 * i / d)\n"
            "        c, s = np.cos(k * w), np.sin(k * w)\n"
            "        R[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[c, -s], [s, c]]\n"
            "    return R\n"
        ),
        "add_positional_encoding": (
            "def add_positional_encoding(X, base=10000):\n"
            "    X = np.asarray(X, dtype=np.float32)\n"
            "    pe = positional_encoding(X.shape[-2], X.shape[-1], base).astype(np.float32)\n"
            "    return X + pe\n"
        ),
        "pe_similarity": (
            "def pe_similarity(n, d, base=10000):\n"
            "    pe = positional_encoding(n, d, base)\n"
            "    S = np.empty((n, n))\n"
            "    for p in range(n):\n"
            "        for q in range(n):\n"
            "            S[p, q] = float(np.dot(pe[p], pe[q]))\n"
            "    return S\n"
        ),
        "learned_position_lookup": (
            "def learned_position_lookup(table, positions):\n"
            "    positions = np.asarray(positions)\n"
            "    if positions.size and (positions.min() < 0 or positions.max() >= len(table)):\n"
            "        raise ValueError(f'positions must lie in 0..{len(table) - 1}')\n"
            "    flat = [np.asarray(table)[p] for p in positions.reshape(-1)]\n"
            "    return np.array(flat).reshape(positions.shape + (np.shape(table)[1],))\n"
        ),
    },
    "b": {
        "positional_encoding": (
            "def positional_encoding(n, d, base=10000):\n"
            "    if d % 2 == 1:\n"
            "        raise ValueError(f'positional_encoding needs an even d, got {d}')\n"
            "    angles = np.outer(np.arange(n), 1.0 / np.power(float(base), np.arange(d // 2) * 2.0 / d))\n"
            "    return np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(n, d)\n"
        ),
        "rotation_matrix": (
            "def rotation_matrix(k, d, base=10000):\n"
            "    if d % 2 == 1:\n"
            "        raise ValueError(f'rotation_matrix needs an even d, got {d}')\n"
            "    theta = k / np.power(float(base), np.arange(d // 2) * 2.0 / d)\n"
            "    blocks = np.stack([np.stack([np.cos(theta), -np.sin(theta)], -1),\n"
            "                       np.stack([np.sin(theta), np.cos(theta)], -1)], -2)   # (d/2, 2, 2)\n"
            "    eye = np.eye(d // 2)\n"
            "    return np.einsum('ij,iab->iajb', eye, blocks).reshape(d, d)\n"
        ),
        "add_positional_encoding": (
            "def add_positional_encoding(X, base=10000):\n"
            "    *lead, n, d = np.shape(X)\n"
            "    return np.add(X, positional_encoding(n, d, base)[(None,) * len(lead)])\n"
        ),
        "pe_similarity": (
            "def pe_similarity(n, d, base=10000):\n"
            "    pe = positional_encoding(n, d, base)\n"
            "    return np.einsum('pd,qd->pq', pe, pe)\n"
        ),
        "learned_position_lookup": (
            "def learned_position_lookup(table, positions):\n"
            "    idx = np.asarray(positions, dtype=np.int64)\n"
            "    n = np.shape(table)[0]\n"
            "    if ((idx < 0) | (idx >= n)).any():\n"
            "        raise ValueError(f'position out of range for a table of {n} rows')\n"
            "    return np.take(table, idx, axis=0, mode='raise')\n"
        ),
    },
}
