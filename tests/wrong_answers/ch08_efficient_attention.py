"""Plausible wrong answers for chapter 8, `08_efficient_attention`, and exactly the test cells each must lose."""

WRONG_ANSWERS = [
    # ---------------------------------------------------------------- fit_loglog_slope
    {
        "why": "fits a line to the raw numbers instead of their logarithms",
        "replace": {"fit_loglog_slope": (
            "def fit_loglog_slope(ns, costs):\n"
            "    return float(np.polyfit(np.asarray(ns, dtype=float), np.asarray(costs, dtype=float), 1)[0])\n"
        )},
        "loses": [],  # a warm-up: ungraded, so a wrong one costs nothing
    },
    {
        "why": "mixes logarithms: log10 for n, natural log for the cost",
        "replace": {"fit_loglog_slope": (
            "def fit_loglog_slope(ns, costs):\n"
            "    x = np.log10(np.asarray(ns, dtype=float))\n"
            "    y = np.log(np.asarray(costs, dtype=float))\n"
            "    return float(np.polyfit(x, y, 1)[0])\n"
        )},
        "loses": [],  # a warm-up: ungraded, so a wrong one costs nothing
    },
    # ---------------------------------------------------------------- attention_memory_bytes
    {
        "why": "assumes 4 bytes per element whatever the dtype",
        "replace": {"attention_memory_bytes": (
            "def attention_memory_bytes(n, d, heads, dtype):\n"
            "    return int(heads * (n * n + 4 * n * d) * 4)\n"
        )},
        "loses": [],  # a warm-up: ungraded, so a wrong one costs nothing
    },
    {
        "why": "counts one n x n matrix for all heads together",
        "replace": {"attention_memory_bytes": (
            "def attention_memory_bytes(n, d, heads, dtype):\n"
            "    if isinstance(dtype, str):\n"
            "        dtype = getattr(torch, dtype)\n"
            "    return int((n * n + 4 * heads * n * d) * dtype.itemsize)\n"
        )},
        "loses": [],  # a warm-up: ungraded, so a wrong one costs nothing
    },
    # ---------------------------------------------------------------- KVCache
    {
        "why": "concatenates along the last dimension (d_head) instead of the sequence axis",
        "replace": {"KVCache": (
            "class KVCache:\n"
            "    def __init__(self):\n"
            "        self.k = None\n"
            "        self.v = None\n"
            "\n"
            "    @property\n"
            "    def length(self):\n"
            "        return 0 if self.k is None else self.k.shape[2]\n"
            "\n"
            "    def append(self, k_new, v_new):\n"
            "        if self.k is None:\n"
            "            self.k, self.v = k_new, v_new\n"
            "        else:\n"
            "            self.k = torch.cat([self.k, k_new], dim=-1)\n"
            "            self.v = torch.cat([self.v, v_new], dim=-1)\n"
            "        return self.k, self.v\n"
            "\n"
            "    def get(self):\n"
            "        return self.k, self.v\n"
        )},
        "loses": [],  # a warm-up: ungraded, so a wrong one costs nothing
    },
    {
        "why": "keeps the chunks in class-level lists, so every cache shares them",
        "replace": {"KVCache": (
            "class KVCache:\n"
            "    ks = []\n"
            "    vs = []\n"
            "\n"
            "    @property\n"
            "    def length(self):\n"
            "        return sum(k.shape[2] for k in self.ks)\n"
            "\n"
            "    def append(self, k_new, v_new):\n"
            "        self.ks.append(k_new)\n"
            "        self.vs.append(v_new)\n"
            "        return self.get()\n"
            "\n"
            "    def get(self):\n"
            "        if not self.ks:\n"
            "            return None, None\n"
            "        return torch.cat(self.ks, dim=2), torch.cat(self.vs, dim=2)\n"
        )},
        "loses": [],  # a warm-up: ungraded, so a wrong one costs nothing
    },
    {
        "why": "the KVCache warm-up left unwritten: the cache's visible uses are skipped, hidden tests use a reference",
        "replace": {"KVCache": (
            "class KVCache:\n"
            "    def __init__(self):\n"
            "        raise NotImplementedError()\n"
            "\n"
            "    @property\n"
            "    def length(self):\n"
            "        raise NotImplementedError()\n"
            "\n"
            "    def append(self, k_new, v_new):\n"
            "        raise NotImplementedError()\n"
            "\n"
            "    def get(self):\n"
            "        raise NotImplementedError()\n"
        )},
        "loses": [],  # a warm-up: ungraded, and no later exercise is charged for it
    },
    # ---------------------------------------------------------------- attend_with_cache
    {
        "why": "no causal mask: right for one new token, wrong for a prefill of several",
        "replace": {"attend_with_cache": (
            "def attend_with_cache(q, k_new, v_new, cache):\n"
            "    k, v = cache.append(k_new, v_new)\n"
            "    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
            "    return torch.softmax(scores, dim=-1) @ v\n"
        )},
        "says": "a 4-token prefill into an empty cache differs from causal attention",
        "loses": ["test_attend_with_cache_prefill"],
    },
    {
        "why": "a one-token fast path that attends only to the new token, forgetting the cached past",
        "replace": {"attend_with_cache": (
            "def attend_with_cache(q, k_new, v_new, cache):\n"
            "    k, v = cache.append(k_new, v_new)\n"
            "    if q.shape[-2] == 1:\n"
            "        k, v = k_new, v_new\n"
            "    t_new, total = q.shape[-2], k.shape[-2]\n"
            "    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
            "    allowed = torch.ones(t_new, total, dtype=torch.bool).tril(diagonal=total - t_new)\n"
            "    scores = scores.masked_fill(~allowed, float('-inf'))\n"
            "    return torch.softmax(scores, dim=-1) @ v\n"
        )},
        "says": "attend to every cached key",
        "loses": ["test_attend_with_cache"],
    },
    {
        "why": "square causal mask anchored at the top left: wrong once the cache holds earlier positions",
        "replace": {"attend_with_cache": (
            "def attend_with_cache(q, k_new, v_new, cache):\n"
            "    k, v = cache.append(k_new, v_new)\n"
            "    t_new, total = q.shape[-2], k.shape[-2]\n"
            "    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
            "    allowed = torch.ones(t_new, total, dtype=torch.bool).tril()\n"
            "    scores = scores.masked_fill(~allowed, float('-inf'))\n"
            "    return torch.softmax(scores, dim=-1) @ v\n"
        )},
        "says": "query i sits at position",  # the visible hint, or the hidden one where a wrong KVCache skips it
        "loses": ["test_attend_with_cache", "test_attend_with_cache_prefill"],
    },
    {
        "why": "shortcut: PyTorch's scaled_dot_product_attention does the attention",
        "replace": {"attend_with_cache": (
            "import torch.nn.functional as F\n"
            "\n"
            "def attend_with_cache(q, k_new, v_new, cache):\n"
            "    k, v = cache.append(k_new, v_new)\n"
            "    t_new, total = q.shape[-2], k.shape[-2]\n"
            "    allowed = torch.ones(t_new, total, dtype=torch.bool).tril(diagonal=total - t_new)\n"
            "    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)\n"
        )},
        "says": "calls torch.nn.functional.scaled_dot_product_attention",
        "loses": ["test_attend_with_cache", "test_attend_with_cache_prefill"],
    },
    # ---------------------------------------------------------------- generate_greedy
    {
        "why": "feeds the newest token at position 0 (forgets start_pos)",
        "replace": {"generate_greedy": (
            "def generate_greedy(model, idx, n_new, use_cache=True):\n"
            "    with torch.no_grad():\n"
            "        if not use_cache:\n"
            "            for _ in range(n_new):\n"
            "                idx = torch.cat([idx, model(idx)[:, -1].argmax(-1, keepdim=True)], dim=1)\n"
            "            return idx\n"
            "        caches = [KVCache() for _ in model.blocks]\n"
            "        logits = model(idx, caches=caches)\n"
            "        for step in range(n_new):\n"
            "            next_token = logits[:, -1].argmax(-1, keepdim=True)\n"
            "            idx = torch.cat([idx, next_token], dim=1)\n"
            "            if step < n_new - 1:\n"
            "                logits = model(next_token, caches=caches)\n"
            "        return idx\n"
        )},
        "says": "feed only the newest token, at start_pos = number of tokens already cached",
        "loses": ["test_generate_greedy_tokens"],
    },
    {
        "why": "one cache shared by every block instead of one per block",
        "replace": {"generate_greedy": (
            "def generate_greedy(model, idx, n_new, use_cache=True):\n"
            "    with torch.no_grad():\n"
            "        if not use_cache:\n"
            "            for _ in range(n_new):\n"
            "                idx = torch.cat([idx, model(idx)[:, -1].argmax(-1, keepdim=True)], dim=1)\n"
            "            return idx\n"
            "        cache = KVCache()\n"
            "        caches = [cache] * len(model.blocks)\n"
            "        logits = model(idx, caches=caches)\n"
            "        for step in range(n_new):\n"
            "            next_token = logits[:, -1].argmax(-1, keepdim=True)\n"
            "            idx = torch.cat([idx, next_token], dim=1)\n"
            "            if step < n_new - 1:\n"
            "                logits = model(next_token, caches=caches, start_pos=idx.shape[1] - 1)\n"
            "        return idx\n"
        )},
        "says": "with one KVCache per block",
        "loses": ["test_generate_greedy_tokens"],
    },
    {
        "why": "ignores use_cache and reruns the whole prefix every step (right tokens, no saving)",
        "replace": {"generate_greedy": (
            "def generate_greedy(model, idx, n_new, use_cache=True):\n"
            "    with torch.no_grad():\n"
            "        for _ in range(n_new):\n"
            "            idx = torch.cat([idx, model(idx)[:, -1].argmax(-1, keepdim=True)], dim=1)\n"
            "    return idx\n"
        )},
        "says": "a cached generation needs at most 70",
        "loses": ["test_generate_greedy_uses_cache"],
    },
    {
        "why": "reruns the whole prefix through type(model).forward (which a counter on the instance misses), with "
               "one-token decoy calls on the cache for whoever counts calls",
        "replace": {"generate_greedy": (
            "def generate_greedy(model, idx, n_new, use_cache=True):\n"
            "    with torch.no_grad():\n"
            "        caches = [KVCache() for _ in model.blocks]\n"
            "        if use_cache:\n"
            "            model(idx, caches=caches, start_pos=0)\n"
            "        for step in range(n_new):\n"
            "            logits = type(model).forward(model, idx)\n"
            "            next_token = logits[:, -1].argmax(dim=-1, keepdim=True)\n"
            "            if use_cache and step < n_new - 1:\n"
            "                model(next_token, caches=caches, start_pos=idx.shape[1])\n"
            "            idx = torch.cat([idx, next_token], dim=1)\n"
            "    return idx\n"
        )},
        "says": "a cached generation needs at most 70",
        "loses": ["test_generate_greedy_uses_cache"],
    },
    {
        "why": "reruns the whole prefix on a twin model built from the notebook's own GPT class (weights copied), "
               "with the cached calls on the real model as decoys",
        "replace": {"generate_greedy": (
            "def generate_greedy(model, idx, n_new, use_cache=True):\n"
            "    attn = model.blocks[0].attn\n"
            "    twin = GPT(model.tok_emb.num_embeddings, model.tok_emb.embedding_dim, attn.n_heads,\n"
            "               len(model.blocks), model.max_len).to(model.unembed.weight.dtype).eval()\n"
            "    twin.load_state_dict(model.state_dict())\n"
            "    with torch.no_grad():\n"
            "        caches = [KVCache() for _ in model.blocks]\n"
            "        if use_cache:\n"
            "            model(idx, caches=caches, start_pos=0)\n"
            "        for step in range(n_new):\n"
            "            next_token = twin(idx)[:, -1].argmax(dim=-1, keepdim=True)\n"
            "            if use_cache and step < n_new - 1:\n"
            "                model(next_token, caches=caches, start_pos=idx.shape[1])\n"
            "            idx = torch.cat([idx, next_token], dim=1)\n"
            "    return idx\n"
        )},
        "says": "the matrix-multiply work of a cached generation",
        "loses": ["test_generate_greedy_uses_cache"],
    },
    # ---------------------------------------------------------------- grouped_query_attention
    {
        "why": "k.repeat instead of repeat_interleave: query heads paired with the wrong K/V heads",
        "replace": {"grouped_query_attention": (
            "def grouped_query_attention(q, k, v, mask=None):\n"
            "    g = q.shape[1] // k.shape[1]\n"
            "    k, v = k.repeat(1, g, 1, 1), v.repeat(1, g, 1, 1)\n"
            "    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
            "    if mask is not None:\n"
            "        scores = scores.masked_fill(~mask, float('-inf'))\n"
            "    return torch.softmax(scores, dim=-1) @ v\n"
        )},
        "says": "Consecutive query heads share a K/V head",
        "loses": ["test_grouped_query_attention"],
    },
    {
        "why": "ignores the mask",
        "replace": {"grouped_query_attention": (
            "def grouped_query_attention(q, k, v, mask=None):\n"
            "    g = q.shape[1] // k.shape[1]\n"
            "    k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)\n"
            "    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
            "    return torch.softmax(scores, dim=-1) @ v\n"
        )},
        "says": "A key the mask forbids must get weight exactly 0",
        "loses": ["test_grouped_query_attention_mask"],
    },
    {
        "why": "shortcut: PyTorch's scaled_dot_product_attention with enable_gqa",
        "replace": {"grouped_query_attention": (
            "import torch.nn.functional as F\n"
            "\n"
            "def grouped_query_attention(q, k, v, mask=None):\n"
            "    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)\n"
        )},
        "says": "calls torch.nn.functional.scaled_dot_product_attention",
        "loses": ["test_grouped_query_attention", "test_grouped_query_attention_mask"],
    },
    # ---------------------------------------------------------------- kv_cache_bytes
    {
        "why": "counts the keys but forgets the values (no factor 2)",
        "replace": {"kv_cache_bytes": (
            "def kv_cache_bytes(n_layers, n_kv_heads, d_head, seq_len, batch=1, dtype='float16'):\n"
            "    if isinstance(dtype, str):\n"
            "        dtype = getattr(torch, dtype)\n"
            "    return int(n_layers * batch * n_kv_heads * seq_len * d_head * dtype.itemsize)\n"
        )},
        "loses": [],  # a warm-up: ungraded, so a wrong one costs nothing
    },
    # ---------------------------------------------------------------- apply_rope
    {
        "why": "indexes x[:, 0::2], which only works for 2-D x",
        "replace": {"apply_rope": (
            "def apply_rope(x, positions, base=10000.0):\n"
            "    d = x.shape[-1]\n"
            "    theta = base ** (-torch.arange(0, d, 2, dtype=x.dtype) / d)\n"
            "    angles = positions.to(x.dtype)[:, None] * theta[None, :]\n"
            "    cos, sin = torch.cos(angles), torch.sin(angles)\n"
            "    even, odd = x[:, 0::2], x[:, 1::2]\n"
            "    out = torch.empty_like(x)\n"
            "    out[:, 0::2] = even * cos - odd * sin\n"
            "    out[:, 1::2] = even * sin + odd * cos\n"
            "    return out\n"
        )},
        "says": "The size of tensor a (8) must match the size of tensor b (4)",
        "loses": ["test_apply_rope"],
    },
    {
        "why": "ignores the positions argument and uses 0..n-1",
        "replace": {"apply_rope": (
            "def apply_rope(x, positions, base=10000.0):\n"
            "    d, n = x.shape[-1], x.shape[-2]\n"
            "    theta = base ** (-torch.arange(0, d, 2, dtype=x.dtype) / d)\n"
            "    angles = torch.arange(n, dtype=x.dtype)[:, None] * theta[None, :]\n"
            "    cos, sin = torch.cos(angles), torch.sin(angles)\n"
            "    even, odd = x[..., 0::2], x[..., 1::2]\n"
            "    out = torch.empty_like(x)\n"
            "    out[..., 0::2] = even * cos - odd * sin\n"
            "    out[..., 1::2] = even * sin + odd * cos\n"
            "    return out\n"
        )},
        "says": "is the angle using the position?",
        "loses": ["test_apply_rope_positions"],
    },
    {
        "why": "pairs dimension i with i + d/2 (the GPT-NeoX halves) instead of the interleaved pairs asked for",
        "replace": {"apply_rope": (
            "def apply_rope(x, positions, base=10000.0):\n"
            "    d = x.shape[-1]\n"
            "    theta = base ** (-torch.arange(0, d, 2, dtype=x.dtype) / d)\n"
            "    angles = positions.to(x.dtype)[:, None] * theta[None, :]\n"
            "    cos, sin = torch.cos(angles), torch.sin(angles)\n"
            "    first, second = x[..., : d // 2], x[..., d // 2:]\n"
            "    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)\n"
        )},
        "says": "Pairs are (x[2i], x[2i+1])",
        "loses": ["test_apply_rope", "test_apply_rope_positions"],
    },
    {
        "why": "keeps float32 rotation matrices and applies them with einsum: float64 x (the check's) raises a dtype "
               "error, answered with the dtype policy (cos and sin must follow x's dtype)",
        "replace": {"apply_rope": (
            "def apply_rope(x, positions, base=10000.0):\n"
            "    d = x.shape[-1]\n"
            "    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)\n"
            "    angles = positions.float()[:, None] * theta[None, :]\n"
            "    c, s = torch.cos(angles), torch.sin(angles)\n"
            "    R = torch.zeros(len(positions), d, d)\n"
            "    i = torch.arange(0, d, 2)\n"
            "    R[:, i, i] = c\n"
            "    R[:, i + 1, i + 1] = c\n"
            "    R[:, i + 1, i] = -s\n"
            "    R[:, i, i + 1] = s\n"
            "    return torch.einsum('...nd,nde->...ne', x, R)\n"
        )},
        "says": "two operands have different dtypes",
        "loses": ["test_apply_rope", "test_apply_rope_positions"],
    },
    # ---------------------------------------------------------------- online_softmax_attention
    {
        "why": "transposes the key block with .T, which reverses every dimension of a batched tensor",
        "replace": {"online_softmax_attention": (
            "def online_softmax_attention(q, k, v, block_size):\n"
            "    n_k = k.shape[-2]\n"
            "    m = torch.full(q.shape[:-1], float('-inf'), dtype=q.dtype)\n"
            "    total = torch.zeros(q.shape[:-1], dtype=q.dtype)\n"
            "    acc = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)\n"
            "    for start in range(0, n_k, block_size):\n"
            "        s = q @ k[..., start:start + block_size, :].T / math.sqrt(q.shape[-1])\n"
            "        m_new = torch.maximum(m, s.amax(dim=-1))\n"
            "        c = torch.exp(m - m_new)\n"
            "        p = torch.exp(s - m_new[..., None])\n"
            "        total = total * c + p.sum(dim=-1)\n"
            "        acc = acc * c[..., None] + p @ v[..., start:start + block_size, :]\n"
            "        m = m_new\n"
            "    return acc / total[..., None]\n"
        )},
        "says": "k.T reverses every axis of k (2, 3, 8, 4)",
        "loses": ["test_online_softmax_attention"],
    },
    {
        "why": "drops the last, shorter block when block_size does not divide n_k",
        "replace": {"online_softmax_attention": (
            "def online_softmax_attention(q, k, v, block_size):\n"
            "    n_k = k.shape[-2]\n"
            "    m = torch.full(q.shape[:-1], float('-inf'), dtype=q.dtype)\n"
            "    total = torch.zeros(q.shape[:-1], dtype=q.dtype)\n"
            "    acc = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)\n"
            "    for start in range(0, n_k - block_size + 1, block_size):\n"
            "        s = q @ k[..., start:start + block_size, :].transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
            "        m_new = torch.maximum(m, s.amax(dim=-1))\n"
            "        c = torch.exp(m - m_new)\n"
            "        p = torch.exp(s - m_new[..., None])\n"
            "        total = total * c + p.sum(dim=-1)\n"
            "        acc = acc * c[..., None] + p @ v[..., start:start + block_size, :]\n"
            "        m = m_new\n"
            "    return acc / total[..., None]\n"
        )},
        "says": "Is the last, shorter block included?",
        "loses": ["test_online_softmax_attention_blocks"],
    },
    {
        "why": "refuses a block_size larger than n_k, which is one block holding every key",
        "replace": {"online_softmax_attention": (
            "def online_softmax_attention(q, k, v, block_size):\n"
            "    n_k = k.shape[-2]\n"
            "    m = torch.full(q.shape[:-1], float('-inf'), dtype=q.dtype)\n"
            "    total = torch.zeros(q.shape[:-1], dtype=q.dtype)\n"
            "    acc = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)\n"
            "    if block_size > n_k:\n"
            "        raise ValueError('block_size is larger than the sequence')\n"
            "    for start in range(0, n_k, block_size):\n"
            "        s = q @ k[..., start:start + block_size, :].transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
            "        m_new = torch.maximum(m, s.amax(dim=-1))\n"
            "        c = torch.exp(m - m_new)\n"
            "        p = torch.exp(s - m_new[..., None])\n"
            "        total = total * c + p.sum(dim=-1)\n"
            "        acc = acc * c[..., None] + p @ v[..., start:start + block_size, :]\n"
            "        m = m_new\n"
            "    return acc / total[..., None]\n"
        )},
        "says": "raised ValueError in online_softmax_attention",
        "loses": ["test_online_softmax_attention_blocks"],
    },
    {
        "why": "no running max: plain exp of the scores overflows when they are large",
        "replace": {"online_softmax_attention": (
            "def online_softmax_attention(q, k, v, block_size):\n"
            "    n_k = k.shape[-2]\n"
            "    total = torch.zeros(q.shape[:-1], dtype=q.dtype)\n"
            "    acc = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)\n"
            "    for start in range(0, n_k, block_size):\n"
            "        s = q @ k[..., start:start + block_size, :].transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
            "        p = torch.exp(s)\n"
            "        total = total + p.sum(dim=-1)\n"
            "        acc = acc + p @ v[..., start:start + block_size, :]\n"
            "    return acc / total[..., None]\n"
        )},
        "says": "Subtract the running max before exp",
        "loses": ["test_online_softmax_attention_stability"],
    },
    {
        "why": "computes the full score matrix first and only then walks over it in blocks",
        "replace": {"online_softmax_attention": (
            "def online_softmax_attention(q, k, v, block_size):\n"
            "    n_k = k.shape[-2]\n"
            "    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
            "    m = torch.full(q.shape[:-1], float('-inf'), dtype=q.dtype)\n"
            "    total = torch.zeros(q.shape[:-1], dtype=q.dtype)\n"
            "    acc = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)\n"
            "    for start in range(0, n_k, block_size):\n"
            "        s = scores[..., start:start + block_size]\n"
            "        m_new = torch.maximum(m, s.amax(dim=-1))\n"
            "        c = torch.exp(m - m_new)\n"
            "        p = torch.exp(s - m_new[..., None])\n"
            "        total = total * c + p.sum(dim=-1)\n"
            "        acc = acc * c[..., None] + p @ v[..., start:start + block_size, :]\n"
            "        m = m_new\n"
            "    return acc / total[..., None]\n"
        )},
        "says": "Do not compute all scores at once",
        "loses": ["test_online_softmax_attention_memory"],
    },
    {
        "why": "builds the full score matrix in NumPy (which a torch-only probe never sees), then walks it in blocks",
        "replace": {"online_softmax_attention": (
            "def online_softmax_attention(q, k, v, block_size):\n"
            "    n_k = k.shape[-2]\n"
            "    scores = np.matmul(q.numpy(), np.swapaxes(k.numpy(), -1, -2)) / math.sqrt(q.shape[-1])\n"
            "    m = torch.full(q.shape[:-1], float('-inf'), dtype=q.dtype)\n"
            "    total = torch.zeros(q.shape[:-1], dtype=q.dtype)\n"
            "    acc = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)\n"
            "    for start in range(0, n_k, block_size):\n"
            "        s = torch.from_numpy(np.ascontiguousarray(scores[..., start:start + block_size]))\n"
            "        m_new = torch.maximum(m, s.amax(dim=-1))\n"
            "        c = torch.exp(m - m_new)\n"
            "        p = torch.exp(s - m_new[..., None])\n"
            "        total = total * c + p.sum(dim=-1)\n"
            "        acc = acc * c[..., None] + p @ v[..., start:start + block_size, :]\n"
            "        m = m_new\n"
            "    return acc / total[..., None]\n"
        )},
        "says": "in any library, NumPy included",
        "loses": ["test_online_softmax_attention_memory"],
    },
    {
        "why": "rescales the running sum but not the running output when the max grows",
        "replace": {"online_softmax_attention": (
            "def online_softmax_attention(q, k, v, block_size):\n"
            "    n_k = k.shape[-2]\n"
            "    m = torch.full(q.shape[:-1], float('-inf'), dtype=q.dtype)\n"
            "    total = torch.zeros(q.shape[:-1], dtype=q.dtype)\n"
            "    acc = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)\n"
            "    for start in range(0, n_k, block_size):\n"
            "        s = q @ k[..., start:start + block_size, :].transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
            "        m_new = torch.maximum(m, s.amax(dim=-1))\n"
            "        p = torch.exp(s - m_new[..., None])\n"
            "        total = total * torch.exp(m - m_new) + p.sum(dim=-1)\n"
            "        acc = acc + p @ v[..., start:start + block_size, :]\n"
            "        m = m_new\n"
            "    return acc / total[..., None]\n"
        )},
        "says": "Rescale the running sum and output by exp(m_old - m_new)",
        "loses": ["test_online_softmax_attention", "test_online_softmax_attention_blocks",
                  "test_online_softmax_attention_stability", "test_online_softmax_attention_memory"],
    },
    {
        "why": "shortcut: PyTorch's scaled_dot_product_attention",
        "replace": {"online_softmax_attention": (
            "import torch.nn.functional as F\n"
            "\n"
            "def online_softmax_attention(q, k, v, block_size):\n"
            "    return F.scaled_dot_product_attention(q, k, v)\n"
        )},
        "says": "calls torch.nn.functional.scaled_dot_product_attention",
        "loses": ["test_online_softmax_attention", "test_online_softmax_attention_blocks",
                  "test_online_softmax_attention_stability", "test_online_softmax_attention_memory"],
    },
]
