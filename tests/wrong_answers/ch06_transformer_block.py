"""Plausible wrong answers for chapter 6, `06_transformer_block`, and the test cells each must lose.

Each entry replaces solution cells (by grade_id) with a wrong version; `loses` lists exactly the test cells that must
drop to 0. The sources are built from the correct cells below with one targeted edit each, so every entry differs
from the solution in exactly the way its `why` says.
"""

LAYERNORM = '''class LayerNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        mu = x.mean(dim=-1, keepdim=True)
        var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias
'''

FEEDFORWARD = '''class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff, activation="relu"):
        super().__init__()
        self.activation = activation
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x):
        h = self.fc1(x)
        if self.activation == "relu":
            h = torch.clamp(h, min=0)
        else:
            h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2.0)))
        return self.fc2(h)
'''

BLOCK = '''class TransformerBlock(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, activation="gelu"):
        super().__init__()
        self.ln1 = LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ln2 = LayerNorm(d_model)
        self.ffn = FeedForward(d_model, d_ff, activation)

    def forward(self, x, mask=None):
        x = x + self.attn(self.ln1(x), mask)
        x = x + self.ffn(self.ln2(x))
        return x
'''

GPT = '''class GPTLike(nn.Module):
    def __init__(self, vocab_size, d_model, n_heads, d_ff, n_layers, max_len):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layers)])
        self.ln_f = LayerNorm(d_model)
        self.unembed = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, ids):
        n = ids.shape[1]
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(n))
        mask = torch.ones(n, n, dtype=torch.bool).tril()
        for block in self.blocks:
            x = block(x, mask)
        return self.unembed(self.ln_f(x))
'''


def _edit(source, old, new):
    assert old in source, old
    return source.replace(old, new)


LN_TESTS = ["test_LayerNorm", "test_LayerNorm_params", "test_LayerNorm_grad", "test_LayerNorm_eps"]
BLOCK_TESTS = ["test_TransformerBlock", "test_TransformerBlock_residual"]
GPT_TESTS = ["test_GPTLike", "test_GPTLike_shape", "test_GPTLike_causal"]

WRONG_ANSWERS = [
    # ---------------------------------------------------------------- LayerNorm
    {"why": "unbiased variance (torch.var's default divides by d - 1)",
     "replace": {"LayerNorm": _edit(LAYERNORM, "var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)",
                                    "var = x.var(dim=-1, keepdim=True)")},
     "says": "the unbiased variance (divided by d - 1",
     "loses": LN_TESTS},
    {"why": "normalises over dim=1 (right for (n, d) inputs, wrong with a batch dimension)",
     "replace": {"LayerNorm": _edit(_edit(LAYERNORM, "mu = x.mean(dim=-1, keepdim=True)", "mu = x.mean(dim=1, keepdim=True)"),
                                    "var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)",
                                    "var = ((x - mu) ** 2).mean(dim=1, keepdim=True)")},
     "says": "Subtract each row's own mean, over its d features",
     "loses": ["test_LayerNorm"]},
    {"why": "shifts before scaling: (x_hat + bias) * weight",
     "replace": {"LayerNorm": _edit(LAYERNORM, "return (x - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias",
                                    "return ((x - mu) / torch.sqrt(var + self.eps) + self.bias) * self.weight")},
     "says": "Scale by weight, then add bias",
     "loses": ["test_LayerNorm_params"]},
    {"why": "treats the mean and variance as constants (detached), so the gradient w.r.t. x is wrong",
     "replace": {"LayerNorm": _edit(_edit(LAYERNORM, "mu = x.mean(dim=-1, keepdim=True)",
                                          "mu = x.mean(dim=-1, keepdim=True).detach()"),
                                    "var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)",
                                    "var = ((x - mu) ** 2).mean(dim=-1, keepdim=True).detach()")},
     "says": "Keep the mean and variance inside autograd",
     "loses": ["test_LayerNorm_grad"]},
    {"why": "eps outside the square root: / (sqrt(var) + eps)",
     "replace": {"LayerNorm": _edit(LAYERNORM, "torch.sqrt(var + self.eps)", "(torch.sqrt(var) + self.eps)")},
     "says": "Use the eps you were given, inside the sqrt",
     "loses": ["test_LayerNorm_eps"]},
    {"why": "ignores the eps argument (always 1e-5)",
     "replace": {"LayerNorm": _edit(LAYERNORM, "self.eps = eps", "self.eps = 1e-5")},
     "says": "Use the eps you were given",
     "loses": ["test_LayerNorm_eps"]},
    {"why": "shortcut: calls F.layer_norm",
     "replace": {"LayerNorm": _edit(LAYERNORM,
                                    "return (x - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias",
                                    "return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)")},
     "says": "calls torch.nn.functional.layer_norm",
     "loses": LN_TESTS},
    {"why": "shortcut: wraps torch.nn.LayerNorm's functional core (torch.layer_norm)",
     "replace": {"LayerNorm": _edit(LAYERNORM,
                                    "return (x - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias",
                                    "return torch.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)")},
     "says": "calls torch.layer_norm",
     "loses": LN_TESTS},
    # ---------------------------------------------------------------- FeedForward (a warm-up: it costs nothing)
    {"why": "FeedForward left unwritten (the warm-up's NotImplementedError)",
     "replace": {"FeedForward": _edit(FEEDFORWARD, """        h = self.fc1(x)
        if self.activation == "relu":
            h = torch.clamp(h, min=0)
        else:
            h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2.0)))
        return self.fc2(h)""", "        raise NotImplementedError()")},
     "loses": []},
    {"why": "ReLU written as clamp(max=0): keeps the negative part",
     "replace": {"FeedForward": _edit(FEEDFORWARD, "torch.clamp(h, min=0)", "torch.clamp(h, max=0)")},
     "loses": []},
    {"why": "GELU written as x * sigmoid(x) (that is SiLU)",
     "replace": {"FeedForward": _edit(FEEDFORWARD, "h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2.0)))",
                                      "h = h * torch.sigmoid(h)")},
     "loses": []},
    # ---------------------------------------------------------------- TransformerBlock
    {"why": "parallel block: the FFN reads the block's input instead of the stream after attention",
     "replace": {"TransformerBlock": _edit(BLOCK, """        x = x + self.attn(self.ln1(x), mask)
        x = x + self.ffn(self.ln2(x))
        return x""", """        return x + self.attn(self.ln1(x), mask) + self.ffn(self.ln2(x))""")},
     "says": "Compare your forward with the two equations, term by term",
     "loses": ["test_TransformerBlock"]},
    {"why": "reuses ln1 in front of the FFN (ln2 never used)",
     "replace": {"TransformerBlock": _edit(BLOCK, "self.ffn(self.ln2(x))", "self.ffn(self.ln1(x))")},
     "says": "Compare your forward with the two equations, term by term",
     "loses": ["test_TransformerBlock"]},
    {"why": "adds in place (x += ...): overwrites the caller's tensor and fails when x requires grad",
     "replace": {"TransformerBlock": _edit(BLOCK, """        x = x + self.attn(self.ln1(x), mask)
        x = x + self.ffn(self.ln2(x))""", """        x += self.attn(self.ln1(x), mask)
        x += self.ffn(self.ln2(x))""")},
     "says": "Did you add in place (x += ...)?",
     "loses": ["test_TransformerBlock_residual"]},
    {"why": "no residual connections",
     "replace": {"TransformerBlock": _edit(BLOCK, """        x = x + self.attn(self.ln1(x), mask)
        x = x + self.ffn(self.ln2(x))""", """        x = self.attn(self.ln1(x), mask)
        x = self.ffn(self.ln2(x))""")},
     "says": "a block with residual connections returns its input unchanged",
     "loses": BLOCK_TESTS},
    {"why": "post-norm block: LayerNorm after each residual add",
     "replace": {"TransformerBlock": _edit(BLOCK, """        x = x + self.attn(self.ln1(x), mask)
        x = x + self.ffn(self.ln2(x))""", """        x = self.ln1(x + self.attn(x, mask))
        x = self.ln2(x + self.ffn(x))""")},
     "says": "That is the post-norm block",
     "loses": BLOCK_TESTS},
    {"why": "shortcut: torch's nn.TransformerEncoderLayer(norm_first=True) under the block's name",
     "replace": {"TransformerBlock": '''class TransformerBlock(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, activation="gelu"):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0, activation=activation,
                                                batch_first=True, norm_first=True)
        self.ln1, self.ln2 = self.layer.norm1, self.layer.norm2
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ffn = FeedForward(d_model, d_ff, activation)

    def forward(self, x, mask=None):
        return self.layer(x, src_mask=None if mask is None else ~mask)
'''},
     "says": "expected sub-modules ln1, attn, ln2, ffn",
     "loses": BLOCK_TESTS},
    # ---------------------------------------------------------------- GPTLike
    {"why": "forgets the final LayerNorm before the unembedding",
     "replace": {"GPTLike": _edit(GPT, "return self.unembed(self.ln_f(x))", "return self.unembed(x)")},
     "says": "Apply the final LayerNorm ln_f before the unembedding",
     "loses": ["test_GPTLike"]},
    {"why": "forgets the position embeddings",
     "replace": {"GPTLike": _edit(GPT, "x = self.tok_emb(ids) + self.pos_emb(torch.arange(n))", "x = self.tok_emb(ids)")},
     "says": "Add a position embedding to each token embedding",
     "loses": ["test_GPTLike"]},
    {"why": "adds the whole position table (works only when n == max_len)",
     "replace": {"GPTLike": _edit(GPT, "self.pos_emb(torch.arange(n))", "self.pos_emb.weight")},
     "says": "The size of tensor a (4) must match the size of tensor b (10)",
     "loses": ["test_GPTLike_shape"]},
    {"why": "never passes the causal mask to the blocks",
     "replace": {"GPTLike": _edit(GPT, "x = block(x, mask)", "x = block(x)")},
     "says": "Build the causal mask (True on and below the diagonal) and pass it to every block",
     "loses": ["test_GPTLike_causal"]},
    {"why": "causal mask the wrong way round (triu: attends to the future)",
     "replace": {"GPTLike": _edit(GPT, ".tril()", ".triu()")},
     "says": "causal mask",
     "loses": ["test_GPTLike", "test_GPTLike_causal"]},
    {"why": "a bigram model: no blocks at all, logits from each token alone (right shapes, trivially causal)",
     "replace": {"GPTLike": '''class GPTLike(nn.Module):
    def __init__(self, vocab_size, d_model, n_heads, d_ff, n_layers, max_len):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.ln_f = LayerNorm(d_model)
        self.unembed = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, ids):
        n = ids.shape[1]
        return self.unembed(self.ln_f(self.tok_emb(ids) + self.pos_emb(torch.arange(n))))
'''},
     "says": "Unexpected key(s) in state_dict",
     "loses": GPT_TESTS},
    {"why": "builds the blocks but never calls them (a bigram model with the right parameter names)",
     "replace": {"GPTLike": _edit(GPT, """        for block in self.blocks:
            x = block(x, mask)
""", "")},
     "says": "each position sees only its own token (a bigram model)",
     "loses": GPT_TESTS},
    {"why": "shortcut: torch's nn.TransformerEncoder stack",
     "replace": {"GPTLike": '''class GPTLike(nn.Module):
    def __init__(self, vocab_size, d_model, n_heads, d_ff, n_layers, max_len):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.ln_f = LayerNorm(d_model)
        self.unembed = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, ids):
        n = ids.shape[1]
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(n))
        mask = torch.ones(n, n, dtype=torch.bool).triu(1)
        return self.unembed(self.ln_f(self.blocks(x, mask=mask)))
'''},
     "says": "Missing key(s) in state_dict: \"blocks.layers.0.self_attn.in_proj_weight\"",
     "loses": GPT_TESTS},
]

# ---------------------------------------------------------------- convert_gpt2
CONVERT = '''def convert_gpt2(hf_state_dict, n_layers):
    sd = {"tok_emb.weight": hf_state_dict["transformer.wte.weight"],
          "pos_emb.weight": hf_state_dict["transformer.wpe.weight"]}
    d = sd["tok_emb.weight"].shape[1]
    for i in range(n_layers):
        hf, ours = f"transformer.h.{i}.", f"blocks.{i}."
        for theirs, mine in (("ln_1", "ln1"), ("ln_2", "ln2")):
            sd[f"{ours}{mine}.weight"] = hf_state_dict[f"{hf}{theirs}.weight"]
            sd[f"{ours}{mine}.bias"] = hf_state_dict[f"{hf}{theirs}.bias"]
        weights = hf_state_dict[hf + "attn.c_attn.weight"].split(d, dim=1)
        biases = hf_state_dict[hf + "attn.c_attn.bias"].split(d)
        for name, w, b in zip(("W_q", "W_k", "W_v"), weights, biases):
            sd[f"{ours}attn.{name}.weight"] = w.t()
            sd[f"{ours}attn.{name}.bias"] = b
        for theirs, mine in (("attn.c_proj", "attn.W_o"), ("mlp.c_fc", "ffn.fc1"), ("mlp.c_proj", "ffn.fc2")):
            sd[f"{ours}{mine}.weight"] = hf_state_dict[f"{hf}{theirs}.weight"].t()
            sd[f"{ours}{mine}.bias"] = hf_state_dict[f"{hf}{theirs}.bias"]
    sd["ln_f.weight"] = hf_state_dict["transformer.ln_f.weight"]
    sd["ln_f.bias"] = hf_state_dict["transformer.ln_f.bias"]
    sd["unembed.weight"] = hf_state_dict["lm_head.weight"]
    return sd
'''

WRONG_ANSWERS += [
    {"why": "convert_gpt2 reads c_attn's columns as [Q | V | K]: keys and values swapped",
     "replace": {"convert_gpt2": _edit(CONVERT, '("W_q", "W_k", "W_v")', '("W_q", "W_v", "W_k")')},
     "says": "blocks.0.attn.W_k.weight holds what GPT-2 keeps for blocks.0.attn.W_v.weight",
     "loses": ["test_convert_gpt2", "test_convert_gpt2_names"]},
    {"why": "convert_gpt2 transposes only the weights whose shape complains (the FFN's), not the square attention ones",
     "replace": {"convert_gpt2": _edit(_edit(CONVERT, 'sd[f"{ours}attn.{name}.weight"] = w.t()',
                                             'sd[f"{ours}attn.{name}.weight"] = w'),
                                       'sd[f"{ours}{mine}.weight"] = hf_state_dict[f"{hf}{theirs}.weight"].t()',
                                       'sd[f"{ours}{mine}.weight"] = hf_state_dict[f"{hf}{theirs}.weight"]'
                                       '\n            if mine != "attn.W_o":\n'
                                       '                sd[f"{ours}{mine}.weight"] = sd[f"{ours}{mine}.weight"].t()')},
     "says": "transpose every Conv1D weight, square ones included",
     "loses": ["test_convert_gpt2", "test_convert_gpt2_names"]},
    {"why": "convert_gpt2 returns GPTLike's names and shapes with freshly initialised values (names and shapes alone "
            "earn nothing)",
     "replace": {"convert_gpt2": _edit(CONVERT, "return sd", "return {k: torch.randn_like(v) for k, v in sd.items()}")},
     "says": "tok_emb.weight has GPTLike's name and shape but not the values GPT-2 holds for it",
     "loses": ["test_convert_gpt2", "test_convert_gpt2_names"]},
    {"why": "convert_gpt2 leaves out the final LayerNorm (ln_f keeps its initial ones and zeros)",
     "replace": {"convert_gpt2": _edit(CONVERT, '''    sd["ln_f.weight"] = hf_state_dict["transformer.ln_f.weight"]
    sd["ln_f.bias"] = hf_state_dict["transformer.ln_f.bias"]
''', "")},
     "says": "no ln_f.weight in the result",
     "loses": ["test_convert_gpt2"]},
    {"why": "convert_gpt2 adds GPTLike's names to a copy of GPT-2's dict: GPT-2's own keys stay in it",
     "replace": {"convert_gpt2": _edit(CONVERT, '''    sd = {"tok_emb.weight": hf_state_dict["transformer.wte.weight"],
          "pos_emb.weight": hf_state_dict["transformer.wpe.weight"]}''', '''    sd = dict(hf_state_dict)
    sd["tok_emb.weight"] = hf_state_dict["transformer.wte.weight"]
    sd["pos_emb.weight"] = hf_state_dict["transformer.wpe.weight"]''')},
     "says": "17 entries GPTLike does not have",
     "loses": ["test_convert_gpt2_names"]},
    {"why": "convert_gpt2 never transposes: Conv1D's (in, out) weights go straight into nn.Linear's (out, in) slots",
     "replace": {"convert_gpt2": CONVERT.replace("w.t()", "w").replace('weight"].t()', 'weight"]')},
     "says": "blocks.0.ffn.fc1.weight has shape (12, 48); GPTLike's is (48, 12)",
     "loses": ["test_convert_gpt2", "test_convert_gpt2_names"]},
]
