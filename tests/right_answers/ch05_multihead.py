"""Correct answers for chapter 5 (`05_multihead`) written apart from the solution, in other idioms: each set replaces
every exercise. "a": einsum, a -1e9 additive mask, separate q/k/v Linears sliced from one fused weight through
`torch.nn.functional` pieces that are not shortcuts (F.linear, F.softmax is forbidden only where attention is the
exercise), view/permute; "b": float64-safe loops over heads, torch.where with -inf, unflatten/flatten, a counted
parameter total. Each set must get full marks (tests/test_chapters.py)."""

RIGHT_ANSWERS = {
    "a": {
        "sdpa_torch": (
            "def sdpa_torch(Q, K, V, mask=None):\n"
            "    scores = torch.einsum('...qd,...kd->...qk', Q, K) * Q.shape[-1] ** -0.5\n"
            "    if mask is not None:\n"
            "        scores = scores + (~mask).to(scores.dtype) * -1e9   # additive mask, as in BERT\n"
            "    scores = scores - scores.amax(-1, keepdim=True)\n"
            "    e = scores.exp()\n"
            "    weights = e / e.sum(-1, keepdim=True)\n"
            "    return torch.einsum('...qk,...kd->...qd', weights, V), weights\n"
        ),
        "split_heads": (
            "def split_heads(x, n_heads):\n"
            "    b, n, d = x.shape\n"
            "    return x.view(b, n, n_heads, d // n_heads).permute(0, 2, 1, 3)\n"
        ),
        "merge_heads": (
            "def merge_heads(x):\n"
            "    b, h, n, dh = x.shape\n"
            "    return x.permute(0, 2, 1, 3).contiguous().view(b, n, h * dh)\n"
        ),
        "MultiHeadAttention": (
            "class MultiHeadAttention(nn.Module):\n"
            "    def __init__(self, d_model, n_heads, bias=True):\n"
            "        super().__init__()\n"
            "        self.h = n_heads\n"
            "        self.W_qkv = nn.Linear(d_model, 3 * d_model, bias=bias)\n"
            "        self.W_o = nn.Linear(d_model, d_model, bias=bias)\n"
            "\n"
            "    def forward(self, x_q, x_kv=None, mask=None):\n"
            "        d = self.W_o.in_features\n"
            "        Wq, Wk, Wv = self.W_qkv.weight.chunk(3, dim=0)\n"
            "        bq = bk = bv = None\n"
            "        if self.W_qkv.bias is not None:\n"
            "            bq, bk, bv = self.W_qkv.bias.chunk(3)\n"
            "        src = x_q if x_kv is None else x_kv\n"
            "        q = F.linear(x_q, Wq, bq)\n"
            "        k = F.linear(src, Wk, bk)\n"
            "        v = F.linear(src, Wv, bv)\n"
            "        q, k, v = (t.unflatten(-1, (self.h, d // self.h)).transpose(1, 2) for t in (q, k, v))\n"
            "        scores = torch.einsum('bhqd,bhkd->bhqk', q, k) / math.sqrt(d // self.h)\n"
            "        if mask is not None:\n"
            "            scores = scores.masked_fill(~mask[:, None] if mask.dim() == 3 else ~mask, -1e9)\n"
            "        w = scores.softmax(-1)\n"
            "        out = torch.einsum('bhqk,bhkd->bqhd', w, v).flatten(-2)\n"
            "        return self.W_o(out), w\n"
        ),
        "attention_params": (
            "def attention_params(n_layers, n_heads, d_model, d_head, bias=False):\n"
            "    per_head = 3 * (d_model * d_head + (d_head if bias else 0))   # its Q, K, V columns\n"
            "    out_proj = n_heads * d_head * d_model + (d_model if bias else 0)\n"
            "    return int(n_layers * (n_heads * per_head + out_proj))\n"
        ),
    },
    "b": {
        "sdpa_torch": (
            "def sdpa_torch(Q, K, V, mask=None):\n"
            "    d_k = Q.size(-1)\n"
            "    scores = torch.matmul(Q, K.mT) / torch.tensor(d_k, dtype=Q.dtype).sqrt()\n"
            "    if mask is not None:\n"
            "        scores = torch.where(mask, scores, torch.tensor(float('-inf'), dtype=scores.dtype))\n"
            "    m = scores.max(dim=-1, keepdim=True).values\n"
            "    w = torch.exp(scores - m)\n"
            "    w = w / w.sum(dim=-1, keepdim=True)\n"
            "    return torch.matmul(w, V), w\n"
        ),
        "split_heads": (
            "def split_heads(x, n_heads):\n"
            "    return torch.stack(x.chunk(n_heads, dim=-1), dim=1)\n"
        ),
        "merge_heads": (
            "def merge_heads(x):\n"
            "    return torch.cat(x.unbind(dim=1), dim=-1)\n"
        ),
        "MultiHeadAttention": (
            "class MultiHeadAttention(nn.Module):\n"
            "    def __init__(self, d_model, n_heads, bias=True):\n"
            "        super().__init__()\n"
            "        if d_model % n_heads:\n"
            "            raise ValueError('d_model must be a multiple of n_heads')\n"
            "        self.n_heads = n_heads\n"
            "        self.W_qkv = nn.Linear(d_model, 3 * d_model, bias=bias)\n"
            "        self.W_o = nn.Linear(d_model, d_model, bias=bias)\n"
            "\n"
            "    def forward(self, x_q, x_kv=None, mask=None):\n"
            "        d = x_q.shape[-1]\n"
            "        dh = d // self.n_heads\n"
            "        if x_kv is None:\n"
            "            q, k, v = self.W_qkv(x_q).chunk(3, dim=-1)\n"
            "        else:\n"
            "            q = self.W_qkv(x_q)[..., :d]           # wasteful but correct: project, keep q's columns\n"
            "            k, v = self.W_qkv(x_kv)[..., d:].chunk(2, dim=-1)\n"
            "        outs, weights = [], []\n"
            "        for h in range(self.n_heads):               # one head at a time\n"
            "            cols = slice(h * dh, (h + 1) * dh)\n"
            "            s = q[..., cols] @ k[..., cols].transpose(-1, -2) / math.sqrt(dh)\n"
            "            if mask is not None:\n"
            "                s = torch.where(mask, s, torch.full_like(s, float('-inf')))\n"
            "            w = torch.softmax(s, dim=-1)\n"
            "            outs.append(w @ v[..., cols])\n"
            "            weights.append(w)\n"
            "        return self.W_o(torch.cat(outs, dim=-1)), torch.stack(weights, dim=1)\n"
        ),
        "attention_params": (
            "def attention_params(n_layers, n_heads, d_model, d_head, bias=False):\n"
            "    total = 0\n"
            "    for _ in range(n_layers):\n"
            "        for shape in [(d_model, n_heads * d_head)] * 3 + [(n_heads * d_head, d_model)]:\n"
            "            total += shape[0] * shape[1] + (shape[1] if bias else 0)\n"
            "    return total\n"
        ),
    },
}
