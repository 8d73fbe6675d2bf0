"""Plausible wrong answers for chapter 5 (`05_multihead`), each with exactly the test cells it must lose.

Every test cell appears alone in the `loses` of at least one entry; each exercise with a library version also has a
"shortcut" entry (calling PyTorch's attention) that must lose all of that exercise's tests.
"""

# ------------------------------------------------------------------ sdpa_torch

_SDPA = '''def sdpa_torch(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ V, weights
'''


def _variant(base, old, new):
    assert old in base, old
    return base.replace(old, new)


SDPA_TRANSPOSE_12 = _variant(_SDPA, "K.transpose(-2, -1)", "K.transpose(1, 2)")
SDPA_FLOAT = _variant(_SDPA, "    scores = Q @", "    Q, K, V = Q.float(), K.float(), V.float()\n    scores = Q @")
SDPA_NO_MASK = _variant(_SDPA, "        scores = scores.masked_fill(~mask, float(\"-inf\"))\n", "        pass\n")
SDPA_NUMPY = '''def sdpa_torch(Q, K, V, mask=None):
    # "reuse chapter 4": the softmax in NumPy, then back to torch
    scores = (Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])).detach().numpy()
    if mask is not None:
        scores = np.where(mask.numpy(), scores, -np.inf)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights = torch.from_numpy(e / e.sum(axis=-1, keepdims=True))
    return weights @ V, weights
'''
SDPA_SHORTCUT = '''def sdpa_torch(Q, K, V, mask=None):
    out = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return out, torch.softmax(scores, dim=-1)
'''

# ------------------------------------------------------------------ split / merge

SPLIT_NO_PERMUTE = '''def split_heads(x, n_heads):
    b, n, d_model = x.shape
    return x.reshape(b, n_heads, n, d_model // n_heads)
'''
MERGE_NO_PERMUTE = '''def merge_heads(x):
    b, h, n, d_head = x.shape
    return x.reshape(b, n, h * d_head)
'''

# ------------------------------------------------------------------ MultiHeadAttention

_MHA = '''class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.W_qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.W_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x_q, x_kv=None, mask=None):
        d, h, dh = self.d_model, self.n_heads, self.d_head
        if x_kv is None:
            q, k, v = self.W_qkv(x_q).split(d, dim=-1)
        else:
            weight, bias = self.W_qkv.weight, self.W_qkv.bias
            q = F.linear(x_q, weight[:d], None if bias is None else bias[:d])
            k, v = F.linear(x_kv, weight[d:], None if bias is None else bias[d:]).split(d, dim=-1)
        b, n_q, n_k = x_q.shape[0], q.shape[1], k.shape[1]
        q = q.reshape(b, n_q, h, dh).transpose(1, 2)
        k = k.reshape(b, n_k, h, dh).transpose(1, 2)
        v = v.reshape(b, n_k, h, dh).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(dh)
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(-3), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        heads = (weights @ v).transpose(1, 2).reshape(b, n_q, d)
        return self.W_o(heads), weights
'''

MHA_IGNORES_BIAS = _variant(_variant(_MHA, "nn.Linear(d_model, 3 * d_model, bias=bias)", "nn.Linear(d_model, 3 * d_model)"),
                            "nn.Linear(d_model, d_model, bias=bias)", "nn.Linear(d_model, d_model)")
MHA_AVERAGED_WEIGHTS = _variant(_MHA, "return self.W_o(heads), weights", "return self.W_o(heads), weights.mean(dim=1)")
MHA_INVERTED_MASK = _variant(_MHA, "masked_fill(~mask.unsqueeze(-3)", "masked_fill(mask.unsqueeze(-3)")
MHA_MASK_NO_HEAD_AXIS = _variant(_MHA, "masked_fill(~mask.unsqueeze(-3)", "masked_fill(~mask")
MHA_IGNORES_X_KV = _variant(_MHA, "        if x_kv is None:\n", "        x_kv = None  # keys and values from x_q, always\n        if x_kv is None:\n")
MHA_NUMPY_SOFTMAX = _variant(
    _MHA, "        weights = torch.softmax(scores, dim=-1)\n",
    "        s = scores.detach().numpy()\n"
    "        e = np.exp(s - s.max(axis=-1, keepdims=True))\n"
    "        weights = torch.from_numpy(e / e.sum(axis=-1, keepdims=True)).to(scores.dtype)\n")
MHA_NO_SPLIT_PERMUTE = _variant(_variant(_variant(
    _MHA, "q = q.reshape(b, n_q, h, dh).transpose(1, 2)", "q = q.reshape(b, h, n_q, dh)"),
    "k = k.reshape(b, n_k, h, dh).transpose(1, 2)", "k = k.reshape(b, h, n_k, dh)"),
    "v = v.reshape(b, n_k, h, dh).transpose(1, 2)", "v = v.reshape(b, h, n_k, dh)")
MHA_NO_MERGE_PERMUTE = _variant(_MHA, "(weights @ v).transpose(1, 2).reshape(b, n_q, d)", "(weights @ v).reshape(b, n_q, d)")
MHA_SCALE_D_MODEL = _variant(_MHA, "/ math.sqrt(dh)", "/ math.sqrt(d)")
MHA_SHORTCUT = _variant(
    _MHA, "        heads = (weights @ v).transpose(1, 2).reshape(b, n_q, d)\n",
    "        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.unsqueeze(-3))\n"
    "        heads = heads.transpose(1, 2).reshape(b, n_q, d)\n")

# A correct module built from the learner's own helpers, as the chapter invites: with a broken or unwritten helper its
# visible tests fail, and only the helper's own test may lose points (the hidden tests swap in references).
MHA_WITH_HELPERS = _variant(
    _MHA, _MHA[_MHA.index("        b, n_q, n_k = x_q.shape[0]"):],
    "        q, k, v = (split_heads(t, h) for t in (q, k, v))\n"
    "        heads, weights = sdpa_torch(q, k, v, mask=None if mask is None else mask.unsqueeze(-3))\n"
    "        return self.W_o(merge_heads(heads)), weights\n")
SPLIT_UNWRITTEN = '''def split_heads(x, n_heads):
    raise NotImplementedError()
'''
MERGE_UNWRITTEN = '''def merge_heads(x):
    raise NotImplementedError()
'''

# ------------------------------------------------------------------ attention_params

PARAMS_D_MODEL_SQUARED = '''def attention_params(n_layers, n_heads, d_model, d_head, bias=False):
    per_layer = 4 * d_model * d_model
    if bias:
        per_layer += 3 * n_heads * d_head + d_model
    return n_layers * per_layer
'''
PARAMS_BIAS_NO_W_O = '''def attention_params(n_layers, n_heads, d_model, d_head, bias=False):
    inner = n_heads * d_head
    per_layer = 4 * d_model * inner
    if bias:
        per_layer += 3 * inner
    return n_layers * per_layer
'''
PARAMS_SHORTCUT = '''def attention_params(n_layers, n_heads, d_model, d_head, bias=False):
    m = nn.MultiheadAttention(d_model, n_heads, bias=bias, device="meta")
    return n_layers * sum(p.numel() for p in m.parameters())
'''

MHA_TESTS = ["test_MultiHeadAttention", "test_MultiHeadAttention_weights", "test_MultiHeadAttention_mask",
             "test_MultiHeadAttention_cross", "test_MultiHeadAttention_grad"]

WRONG_ANSWERS = [
    # sdpa_torch
    {"why": "transposes K with K.transpose(1, 2): right for 3-D inputs only",
     "replace": {"sdpa_torch": SDPA_TRANSPOSE_12},
     "says": "the visible test raised RuntimeError in sdpa_torch", "loses": ["test_sdpa_torch"]},
    {"why": "casts the inputs to float32, so float64 in gives float32 out",
     "replace": {"sdpa_torch": SDPA_FLOAT},
     "says": "Don't cast: every step stays in the inputs' dtype", "loses": ["test_sdpa_torch"]},
    {"why": "ignores the mask",
     "replace": {"sdpa_torch": SDPA_NO_MASK},
     "says": "a key the mask forbids must get weight exactly 0", "loses": ["test_sdpa_torch_mask"]},
    {"why": "softmax in NumPy (chapter 4's): right numbers, autograd cut off from Q and K",
     "replace": {"sdpa_torch": SDPA_NUMPY},
     "says": "detached or done in NumPy", "loses": ["test_sdpa_torch_grad"]},
    {"why": "shortcut: F.scaled_dot_product_attention",
     "replace": {"sdpa_torch": SDPA_SHORTCUT},
     "says": "calls torch.nn.functional.scaled_dot_product_attention",
     "loses": ["test_sdpa_torch", "test_sdpa_torch_mask", "test_sdpa_torch_grad"]},
    # split / merge
    {"why": "split_heads reshapes straight to (batch, heads, n, d_head): the missing permute",
     "replace": {"split_heads": SPLIT_NO_PERMUTE},
     "says": "A head takes its d_head columns from every token", "loses": ["test_split_heads"]},
    {"why": "split_heads without the permute, used by an otherwise correct MultiHeadAttention: charged to split_heads "
            "alone",
     "replace": {"split_heads": SPLIT_NO_PERMUTE, "MultiHeadAttention": MHA_WITH_HELPERS},
     "says": "A head takes its d_head columns from every token", "loses": ["test_split_heads"]},
    {"why": "split_heads not written yet, used by an otherwise correct MultiHeadAttention: charged to split_heads "
            "alone",
     "replace": {"split_heads": SPLIT_UNWRITTEN, "MultiHeadAttention": MHA_WITH_HELPERS},
     "says": "not attempted yet",
     "loses": ["test_split_heads"]},
    # merge_heads is an ungraded warm-up: a wrong or unwritten one costs nothing, even where a later visible test
    # raises inside it (the hidden tests, with the notebook's merge_heads, decide that cell)
    {"why": "merge_heads (the warm-up) reshapes without transposing back",
     "replace": {"merge_heads": MERGE_NO_PERMUTE}, "loses": []},
    {"why": "merge_heads (the warm-up) not written yet, used by an otherwise correct MultiHeadAttention",
     "replace": {"merge_heads": MERGE_UNWRITTEN, "MultiHeadAttention": MHA_WITH_HELPERS}, "loses": []},
    # MultiHeadAttention
    {"why": "ignores bias=False (always creates biases)",
     "replace": {"MultiHeadAttention": MHA_IGNORES_BIAS},
     "says": "bias=False", "loses": ["test_MultiHeadAttention"]},
    {"why": "returns the weights averaged over heads",
     "replace": {"MultiHeadAttention": MHA_AVERAGED_WEIGHTS},
     "says": "not their average", "loses": ["test_MultiHeadAttention_weights"]},
    {"why": "reads the mask with nn.MultiheadAttention's convention (True = blocked)",
     "replace": {"MultiHeadAttention": MHA_INVERTED_MASK},
     "says": "True means 'may attend'", "loses": ["test_MultiHeadAttention_mask"]},
    {"why": "applies the mask without a heads axis",
     "replace": {"MultiHeadAttention": MHA_MASK_NO_HEAD_AXIS},
     "says": "so its batch axis meets the heads axis", "loses": ["test_MultiHeadAttention_mask"]},
    {"why": "takes keys and values from x_q even when x_kv is given",
     "replace": {"MultiHeadAttention": MHA_IGNORES_X_KV},
     "says": "Keys and values come from x_kv", "loses": ["test_MultiHeadAttention_cross"]},
    {"why": "softmax through NumPy inside forward: right outputs, wrong gradients",
     "replace": {"MultiHeadAttention": MHA_NUMPY_SOFTMAX},
     "says": "detached or computed in NumPy", "loses": ["test_MultiHeadAttention_grad"]},
    {"why": "splits heads with a reshape and no permute",
     "replace": {"MultiHeadAttention": MHA_NO_SPLIT_PERMUTE},
     "says": "differs from nn.MultiheadAttention", "loses": MHA_TESTS},
    {"why": "merges heads with a reshape and no permute (weights stay right)",
     "replace": {"MultiHeadAttention": MHA_NO_MERGE_PERMUTE},
     "says": "differs from nn.MultiheadAttention",
     "loses": ["test_MultiHeadAttention", "test_MultiHeadAttention_mask", "test_MultiHeadAttention_cross",
               "test_MultiHeadAttention_grad"]},
    {"why": "scales by sqrt(d_model) instead of sqrt(d_head)",
     "replace": {"MultiHeadAttention": MHA_SCALE_D_MODEL},
     "says": "differs from nn.MultiheadAttention", "loses": MHA_TESTS},
    {"why": "shortcut: F.scaled_dot_product_attention for the heads",
     "replace": {"MultiHeadAttention": MHA_SHORTCUT},
     "says": "calls torch.nn.functional.scaled_dot_product_attention", "loses": MHA_TESTS},
    # attention_params
    {"why": "counts 4 * d_model**2 per layer (assumes n_heads * d_head == d_model)",
     "replace": {"attention_params": PARAMS_D_MODEL_SQUARED},
     "says": "d_model need not equal n_heads * d_head", "loses": ["test_attention_params"]},
    {"why": "forgets W_O's bias",
     "replace": {"attention_params": PARAMS_BIAS_NO_W_O},
     "says": "32 bias parameters", "loses": ["test_attention_params"]},
    {"why": "shortcut: counts an nn.MultiheadAttention's parameters",
     "replace": {"attention_params": PARAMS_SHORTCUT},
     "says": "calls torch.nn.MultiheadAttention",
     "loses": ["test_attention_params"]},
]
