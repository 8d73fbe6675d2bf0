"""Plausible wrong answers for chapter 9, `09_llama`, and exactly the test cells each must lose.

Each wrong answer is the solution cell with one mistake edited in, so it stays a realistic, otherwise-correct
answer; `_variant` fails loudly if the solution changes and an edit no longer applies.
"""
from pathlib import Path

import nbformat

_SOURCE = Path(__file__).resolve().parents[2] / "solutions" / "09_llama.ipynb"
_CELLS = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nbformat.read(_SOURCE, as_version=4).cells}


def _variant(grade_id, *edits):
    source = "\n".join(line for line in _CELLS[grade_id].splitlines() if "### BEGIN SOLUTION" not in line
                       and "### END SOLUTION" not in line) + "\n"
    for old, new in edits:
        assert old in source, f"{grade_id}: {old!r} is no longer in the solution"
        source = source.replace(old, new)
    return source


WRONG_ANSWERS = [
    # ---------------------------------------------------------------- RMSNorm
    {"why": "normalises over dim=1 (right for (n, d) inputs, wrong with a batch dimension)",
     "replace": {"RMSNorm": _variant("RMSNorm", ("x.pow(2).mean(dim=-1, keepdim=True)", "x.pow(2).mean(dim=1, keepdim=True)"))},
     "says": "the mean of x² is over the last dimension",
     "loses": ["test_RMSNorm"]},
    {"why": "LayerNorm without a bias: subtracts the mean first",
     "replace": {"RMSNorm": _variant("RMSNorm", ("        rms = torch.sqrt(",
                                                 "        x = x - x.mean(dim=-1, keepdim=True)\n        rms = torch.sqrt("))},
     "says": "not subtract the mean",
     "loses": ["test_RMSNorm", "test_RMSNorm_eps"]},
    {"why": "forgets the learned gain",
     "replace": {"RMSNorm": _variant("RMSNorm", ("return self.weight * (x / rms)", "return x / rms"))},
     "says": "The learned gain scales every feature",
     "loses": ["test_RMSNorm", "test_RMSNorm_eps"]},
    {"why": "ignores the eps argument (always 1e-6)",
     "replace": {"RMSNorm": _variant("RMSNorm", ("self.eps = eps", "self.eps = 1e-6"))},
     "says": "Use the eps passed to the constructor, inside the square root",
     "loses": ["test_RMSNorm_eps"]},
    {"why": "adds eps outside the square root",
     "replace": {"RMSNorm": _variant("RMSNorm", ("rms = torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)",
                                                 "rms = torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True)) + self.eps"))},
     "says": "inside the square root",
     "loses": ["test_RMSNorm", "test_RMSNorm_eps"]},
    {"why": "calls torch's own RMSNorm",
     "replace": {"RMSNorm": _variant("RMSNorm", ("rms = torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)\n"
                                                 "        return self.weight * (x / rms)",
                                                 "return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)"))},
     "says": "calls torch.nn.functional.rms_norm",
     "loses": ["test_RMSNorm", "test_RMSNorm_eps"]},
    # ---------------------------------------------------------------- SwiGLU
    {"why": "GELU instead of SiLU on the gate",
     "replace": {"SwiGLU": _variant("SwiGLU", ("F.silu(self.W_gate(x))", "F.gelu(self.W_gate(x))"))},
     "says": "SiLU goes on the gate branch only",
     "loses": ["test_SwiGLU"]},
    {"why": "SiLU on the up branch instead of the gate",
     "replace": {"SwiGLU": _variant("SwiGLU", ("F.silu(self.W_gate(x)) * self.W_up(x)", "self.W_gate(x) * F.silu(self.W_up(x))"))},
     "says": "SiLU goes on the gate branch only",
     "loses": ["test_SwiGLU"]},
    # ---------------------------------------------------------------- GroupedQueryAttention
    {"why": "splits the heads with a view straight to (batch, heads, n, d_head), no transpose",
     "replace": {"GroupedQueryAttention": _variant(
         "GroupedQueryAttention",
         ("q = self.W_q(x).view(b, n, self.n_heads, self.d_head).transpose(1, 2)", "q = self.W_q(x).view(b, self.n_heads, n, self.d_head)"),
         ("k = self.W_k(x).view(b, n, self.n_kv_heads, self.d_head).transpose(1, 2)", "k = self.W_k(x).view(b, self.n_kv_heads, n, self.d_head)"),
         ("v = self.W_v(x).view(b, n, self.n_kv_heads, self.d_head).transpose(1, 2)", "v = self.W_v(x).view(b, self.n_kv_heads, n, self.d_head)"))},
     "says": "each head takes its d_head columns from every token",
     "loses": ["test_GroupedQueryAttention"]},
    {"why": "repeat instead of repeat_interleave: query heads paired with K/V heads 0, 1, 0, 1, ...",
     "replace": {"GroupedQueryAttention": _variant(
         "GroupedQueryAttention",
         ("k = k.repeat_interleave(group, dim=1)", "k = k.repeat(1, group, 1, 1)"),
         ("v = v.repeat_interleave(group, dim=1)", "v = v.repeat(1, group, 1, 1)"))},
     "says": "rather than cycling through the K/V heads",
     "loses": ["test_GroupedQueryAttention"]},
    {"why": "scales the scores by sqrt(d_model) instead of sqrt(d_head)",
     "replace": {"GroupedQueryAttention": _variant(
         "GroupedQueryAttention", ("/ math.sqrt(self.d_head)", "/ math.sqrt(self.n_heads * self.d_head)"))},
     "says": "divided by sqrt(d_model) = sqrt(32)",
     "loses": ["test_GroupedQueryAttention"]},
    {"why": "ignores the rope_base argument",
     "replace": {"GroupedQueryAttention": _variant(
         "GroupedQueryAttention",
         ("q = apply_rope(q, positions, self.rope_base)", "q = apply_rope(q, positions)"),
         ("k = apply_rope(k, positions, self.rope_base)", "k = apply_rope(k, positions)"))},
     "says": "the rope_base given to the constructor must reach the rotation",
     "loses": ["test_GroupedQueryAttention_positions"]},
    {"why": "ignores the positions argument (always 0..n-1)",
     "replace": {"GroupedQueryAttention": _variant(
         "GroupedQueryAttention", ("        if positions is None:\n", "        if True:\n"))},
     "says": "use the positions passed to forward",
     "loses": ["test_GroupedQueryAttention", "test_GroupedQueryAttention_positions"]},
    {"why": "no causal mask",
     "replace": {"GroupedQueryAttention": _variant(
         "GroupedQueryAttention", ("scores.masked_fill(~allowed, float(\"-inf\"))", "scores"))},
     "says": "causal mask",
     "loses": ["test_GroupedQueryAttention", "test_GroupedQueryAttention_positions"]},
    {"why": "calls F.scaled_dot_product_attention",
     "replace": {"GroupedQueryAttention": _variant(
         "GroupedQueryAttention",
         ("        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)\n", ""),
         ("        allowed = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()\n", ""),
         ("        weights = torch.softmax(scores.masked_fill(~allowed, float(\"-inf\")), dim=-1)\n", ""),
         ("(weights @ v)", "F.scaled_dot_product_attention(q, k, v, is_causal=True)"))},
     "says": "calls torch.nn.functional.scaled_dot_product_attention",
     "loses": ["test_GroupedQueryAttention", "test_GroupedQueryAttention_positions"]},
    # ---------------------------------------------------------------- LlamaBlock
    {"why": "post-norm: normalises after each residual addition",
     "replace": {"LlamaBlock": _variant(
         "LlamaBlock",
         ("h = x + self.attn(self.attn_norm(x), positions)\n        return h + self.ffn(self.ffn_norm(h))",
          "h = self.attn_norm(x + self.attn(x, positions))\n        return self.ffn_norm(h + self.ffn(h))"))},
     "says": "Pre-norm with two residual additions",
     "loses": ["test_LlamaBlock"]},
    {"why": "one RMSNorm for both sub-layers",
     "replace": {"LlamaBlock": _variant("LlamaBlock", ("self.ffn(self.ffn_norm(h))", "self.ffn(self.attn_norm(h))"))},
     "says": "two separate RMSNorms",
     "loses": ["test_LlamaBlock"]},
    # ---------------------------------------------------------------- Llama
    {"why": "no final RMSNorm",
     "replace": {"Llama": _variant("Llama", ("return self.lm_head(self.norm(x))", "return self.lm_head(x)"))},
     "says": "apply the final RMSNorm",
     "loses": ["test_Llama"]},
    {"why": "ties lm_head to the embedding (chapter 7's GPT did; Llama 2 does not)",
     "replace": {"Llama": _variant("Llama", ("        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)\n",
                                             "        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)\n"
                                             "        self.lm_head.weight = self.embed.weight\n"))},
     "says": "its own weight, not tied to the embedding",
     "loses": ["test_Llama"]},
    # ---------------------------------------------------------------- load_llama_weights
    {"why": "copies every layer's weights from layer 0",
     "replace": {"load_llama_weights": _variant("load_llama_weights", ('prefix = f"model.layers.{i}."', 'prefix = "model.layers.0."'))},
     "says": "blocks.1.attn_norm.weight differs",
     "loses": ["test_load_llama_weights"]},
    {"why": "reorders W_k's rows with n_heads instead of n_kv_heads",
     "replace": {"load_llama_weights": _variant("load_llama_weights", (
         'interleave(state_dict[prefix + "self_attn.k_proj.weight"], attn.n_kv_heads)',
         'interleave(state_dict[prefix + "self_attn.k_proj.weight"], attn.n_heads)'))},
     "says": "W_K has n_kv_heads heads",
     "loses": ["test_load_llama_weights_gqa"]},
    {"why": "copies W_q and W_k as Hugging Face stores them (half-split RoPE order)",
     "replace": {"load_llama_weights": _variant("load_llama_weights", (
         "        return weight.reshape(heads, 2, rows // heads // 2, cols).transpose(1, 2).reshape(rows, cols)",
         "        return weight"))},
     "says": "in its half-split RoPE order",
     "loses": ["test_load_llama_weights", "test_load_llama_weights_gqa"]},
    {"why": "swaps the gate and up projections",
     "replace": {"load_llama_weights": _variant(
         "load_llama_weights",
         ('block.ffn.W_gate.weight.copy_(state_dict[prefix + "mlp.gate_proj.weight"])',
          'block.ffn.W_gate.weight.copy_(state_dict[prefix + "mlp.up_proj.weight"])'),
         ('block.ffn.W_up.weight.copy_(state_dict[prefix + "mlp.up_proj.weight"])',
          'block.ffn.W_up.weight.copy_(state_dict[prefix + "mlp.gate_proj.weight"])'))},
     "says": "blocks.0.ffn.W_gate.weight differs",
     "loses": ["test_load_llama_weights", "test_load_llama_weights_gqa"]},
]
