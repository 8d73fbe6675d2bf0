"""Hidden-test checks for chapter 9, `09_llama` (from GPT-2 to Llama).

The references are Hugging Face `transformers`' own Llama modules (`LlamaRMSNorm`, `LlamaMLP`, `LlamaAttention`,
`LlamaDecoderLayer`, `LlamaForCausalLM`), built from small `LlamaConfig`s with seeded random weights: nothing is
downloaded. They run here, in the grader. The learner's modules get the same weights through their documented
attribute names, with one conversion: the notebook's RoPE (chapter 8's) rotates interleaved pairs (x[2i], x[2i+1]),
Hugging Face's rotates halves (x[i], x[i + d/2]), so the rows of every head of W_Q and W_K are reordered (`_to_interleaved`).

Tolerances follow the dtype of the learner's result: float64 results are compared at 1e-10 where the reference is
computed in float64 throughout, float32 results at 1e-5. `transformers` computes RMSNorm and the RoPE angles in float32
even for a float64 model, so whole-model and whole-block logits are compared at 1e-5 (relative and absolute) in both dtypes.
"""
from __future__ import annotations

from .references import torch as _torch
from .sources import definition, solution
from . import CheckFailed, env, expect_close

FORBID_LIBRARY = ["transformers.*"]
FORBID_RMSNORM = FORBID_LIBRARY + ["torch*rms_norm*", "torch.nn.modules.normalization.RMSNorm*"]
FORBID_ATTENTION = FORBID_LIBRARY + [
    "torch._C._nn.scaled_dot_product_attention",
    "torch.nn.functional.scaled_dot_product_attention",
    "torch*scaled_dot_product*",
    "torch.nn.functional.multi_head_attention_forward",
    "torch.nn.modules.activation.MultiheadAttention*",
]

# The notebook's own apply_rope (its setup cell) and solutions stand in for an earlier exercise (`substitute=`), so that
# each test charges only its own exercise; each name is executed from this text in a scope of its own.
REFERENCE_SOURCE = (definition("09", "setup", "apply_rope")
                    + solution("09", "RMSNorm", "SwiGLU", "GroupedQueryAttention", "LlamaBlock", "Llama"))


def _substitutes(*names):
    return {name: REFERENCE_SOURCE for name in names}


def _randn(seed, *shape, dtype="float64", scale=1.0, shift=0.0):
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(getattr(torch, dtype))


def _tolerance(got, exact=True):
    """float64 results: 1e-10 where the reference is float64 throughout; float32 (or inexact references): 1e-5."""
    torch = _torch()
    if exact and isinstance(got, torch.Tensor) and got.dtype == torch.float64:
        return dict(atol=1e-10, rtol=1e-10)
    return dict(atol=1e-5, rtol=1e-5)


def _to_interleaved(weight, n_heads):
    """Rows of W_Q or W_K from Hugging Face's RoPE order (pairs i, i + d/2 in each head) to chapter 8's (2i, 2i+1)."""
    out_features, d_in = weight.shape
    d_head = out_features // n_heads
    return weight.reshape(n_heads, 2, d_head // 2, d_in).transpose(1, 2).reshape(out_features, d_in).contiguous()


def _llama_config(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, eps=1e-6, rope_base=10000.0):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=d_model, intermediate_size=d_ff, num_hidden_layers=n_layers,
                       num_attention_heads=n_heads, num_key_value_heads=n_kv_heads, rms_norm_eps=eps,
                       max_position_embeddings=256, rope_parameters={"rope_type": "default", "rope_theta": rope_base},
                       tie_word_embeddings=False, attention_bias=False, mlp_bias=False, hidden_act="silu")


def _randomize(module, seed):
    """Seeded random weights of useful size: norms' gains near 1, matrices scaled by 1/sqrt(fan-in), embeddings N(0, 1)."""
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if p.dim() == 1:
                p.copy_(1.0 + 0.3 * noise)
            elif "embed" in name:
                p.copy_(noise)
            else:
                p.copy_(noise / p.shape[1] ** 0.5)
    return module


def _rope_cos_sin(positions, d_head, base, dtype):
    """Hugging Face's position embeddings (cos, sin), each (1, n, d_head), computed in float64 for exact references."""
    torch = _torch()
    inv_freq = base ** (-torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)
    angles = positions.double()[:, None] * inv_freq[None, :]
    emb = torch.cat([angles, angles], dim=-1)[None]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _hf_to_course(state, n_heads, n_kv_heads, n_layers):
    """A LlamaForCausalLM state dict under the notebook's names (the expected result of load_llama_weights)."""
    out = {"embed.weight": state["model.embed_tokens.weight"], "norm.weight": state["model.norm.weight"],
           "lm_head.weight": state["lm_head.weight"]}
    for i in range(n_layers):
        hf, ours = f"model.layers.{i}.", f"blocks.{i}."
        out[ours + "attn_norm.weight"] = state[hf + "input_layernorm.weight"]
        out[ours + "ffn_norm.weight"] = state[hf + "post_attention_layernorm.weight"]
        out[ours + "attn.W_q.weight"] = _to_interleaved(state[hf + "self_attn.q_proj.weight"], n_heads)
        out[ours + "attn.W_k.weight"] = _to_interleaved(state[hf + "self_attn.k_proj.weight"], n_kv_heads)
        out[ours + "attn.W_v.weight"] = state[hf + "self_attn.v_proj.weight"]
        out[ours + "attn.W_o.weight"] = state[hf + "self_attn.o_proj.weight"]
        for name in ("gate", "up", "down"):
            out[ours + f"ffn.W_{name}.weight"] = state[hf + f"mlp.{name}_proj.weight"]
    return out


def _as_tensor(exercise, got, case):
    torch = _torch()
    if not isinstance(got, torch.Tensor):
        name = got.get("__opaque__") if isinstance(got, dict) and "__opaque__" in got else type(got).__name__
        raise CheckFailed(f"{exercise}: expected a tensor for {case}; got {name}.")
    return got


# ---------------------------------------------------------------- 1. RMSNorm

RMSNORM_SNIPPET = """
import torch
norm = RMSNorm(d_model, eps=eps).to(getattr(torch, dtype))
with torch.no_grad():
    norm.weight.copy_(weight)
    out = norm(x)
"""


def _rms_norm_case(seed, shape, dtype, eps, scale, shift, case, hint):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    torch = _torch()
    x = _randn(seed, *shape, dtype=dtype, scale=scale, shift=shift)
    weight = _randn(seed + 1, shape[-1], dtype=dtype, scale=0.3, shift=1.0)
    got = env().run("RMSNorm", RMSNORM_SNIPPET,
                    inputs={"x": x, "weight": weight, "d_model": shape[-1], "eps": eps, "dtype": dtype},
                    outputs=["out"], case=case, forbid=FORBID_RMSNORM)
    out = _as_tensor("RMSNorm", got["out"], case)
    if out.dtype == torch.float64:
        x64, w64 = x.double(), weight.double()
        want = w64 * x64 / torch.sqrt((x64 * x64).sum(-1, keepdim=True) / shape[-1] + eps)
    else:
        reference = LlamaRMSNorm(shape[-1], eps=eps).to(x.dtype)
        with torch.no_grad():
            reference.weight.copy_(weight)
            want = reference(x)
    expect_close("RMSNorm", out, want, case=case, hint=hint, **_tolerance(out))


def test_RMSNorm():
    for seed, shape, dtype in [(11, (2, 5, 16), "float32"), (12, (3, 8), "float64"), (13, (1, 4, 7, 32), "float32"),
                               (14, (6, 24), "float64"), (15, (2, 3, 12), "float64")]:
        case = f"x of shape {shape} ({dtype}, mean 0.5), random weight, eps=1e-6"
        _rms_norm_case(seed, shape, dtype, 1e-6, 1.0, 0.5, case,
                       "Divide x by sqrt(mean(x²) over the last dimension + eps), then multiply by the weight; "
                       "no mean is subtracted and there is no bias.")


def test_RMSNorm_eps():
    for seed, shape, dtype, eps in [(21, (4, 16), "float64", 0.01), (22, (3, 8), "float32", 0.1),
                                    (23, (5, 6), "float64", 1e-3)]:
        case = f"x of shape {shape} ({dtype}) with entries near 0.05, eps={eps:g}"
        _rms_norm_case(seed, shape, dtype, eps, 0.05, 0.0, case,
                       "Use the eps given to the constructor, inside the square root: sqrt(mean(x²) + eps).")


# ---------------------------------------------------------------- 2. SwiGLU

SWIGLU_SNIPPET = """
import torch
ffn = SwiGLU(d_model, d_ff).to(getattr(torch, dtype))
with torch.no_grad():
    ffn.W_gate.weight.copy_(w_gate)
    ffn.W_up.weight.copy_(w_up)
    ffn.W_down.weight.copy_(w_down)
    out = ffn(x)
"""


def test_SwiGLU():
    from transformers.models.llama.modeling_llama import LlamaMLP

    torch = _torch()
    for seed, (shape, d_ff), dtype in [(31, ((2, 5, 16), 40), "float64"), (32, ((3, 8), 24), "float32"),
                                       (33, ((1, 6, 32), 86), "float64"), (34, ((2, 2, 4, 8), 16), "float32")]:
        d_model = shape[-1]
        reference = _randomize(LlamaMLP(_llama_config(d_model=d_model, d_ff=d_ff)), seed).to(getattr(torch, dtype))
        x = _randn(seed + 1, *shape, dtype=dtype, scale=1.5)
        with torch.no_grad():
            want = reference(x)
        case = f"x of shape {shape} ({dtype}), d_ff={d_ff}, random W_gate, W_up, W_down"
        got = env().run("SwiGLU", SWIGLU_SNIPPET,
                        inputs={"x": x, "d_model": d_model, "d_ff": d_ff, "dtype": dtype,
                                "w_gate": reference.gate_proj.weight.detach().clone(),
                                "w_up": reference.up_proj.weight.detach().clone(),
                                "w_down": reference.down_proj.weight.detach().clone()},
                        outputs=["out"], case=case, forbid=FORBID_LIBRARY)
        out = _as_tensor("SwiGLU", got["out"], case)
        expect_close("SwiGLU", out, want, case=case, **_tolerance(out),
                     hint="W_down(silu(x W_gate) * (x W_up)): SiLU (x·sigmoid(x)) on the gate branch only, "
                          "an elementwise product, no biases.")


# ---------------------------------------------------------------- 3. grouped-query attention

ATTENTION_SNIPPET = """
import torch
attn = GroupedQueryAttention(d_model, n_heads, n_kv_heads, rope_base=rope_base).to(getattr(torch, dtype))
with torch.no_grad():
    attn.W_q.weight.copy_(w_q)
    attn.W_k.weight.copy_(w_k)
    attn.W_v.weight.copy_(w_v)
    attn.W_o.weight.copy_(w_o)
    out = attn(x) if positions is None else attn(x, positions)
"""


def _attention_case(seed, b, n, n_heads, n_kv_heads, d_head, dtype, positions, rope_base, hint):
    from transformers.models.llama.modeling_llama import LlamaAttention

    torch = _torch()
    d_model = n_heads * d_head
    config = _llama_config(d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads, rope_base=rope_base)
    config._attn_implementation = "sdpa"   # float64 stays float64 (the eager path takes its softmax in float32)
    reference = _randomize(LlamaAttention(config, layer_idx=0), seed).to(getattr(torch, dtype)).eval()
    x = _randn(seed + 1, b, n, d_model, dtype=dtype)
    pos = torch.arange(n) if positions is None else torch.tensor(positions)
    with torch.no_grad():
        want, _ = reference(x, position_embeddings=_rope_cos_sin(pos, d_head, rope_base, x.dtype), attention_mask=None)
    where = "" if positions is None else f", positions {positions}"
    case = (f"x of shape {(b, n, d_model)} ({dtype}), n_heads={n_heads}, n_kv_heads={n_kv_heads}, "
            f"rope_base={rope_base:g}{where}")
    got = env().run(
        "GroupedQueryAttention", ATTENTION_SNIPPET,
        inputs={"x": x, "d_model": d_model, "n_heads": n_heads, "n_kv_heads": n_kv_heads, "rope_base": rope_base,
                "dtype": dtype, "positions": None if positions is None else pos,
                "w_q": _to_interleaved(reference.q_proj.weight.detach(), n_heads),
                "w_k": _to_interleaved(reference.k_proj.weight.detach(), n_kv_heads),
                "w_v": reference.v_proj.weight.detach().clone(), "w_o": reference.o_proj.weight.detach().clone()},
        outputs=["out"], case=case, forbid=FORBID_ATTENTION, substitute=_substitutes("apply_rope"))
    out = _as_tensor("GroupedQueryAttention", got["out"], case)
    expect_close("GroupedQueryAttention", out, want, case=case, hint=hint, **_tolerance(out))


def test_GroupedQueryAttention():
    """Any head counts against LlamaAttention, then grouped K/V heads (several query heads to one)."""
    for seed, (b, n, h, kv, d_head), dtype in [(41, (2, 6, 4, 4, 8), "float64"), (42, (1, 5, 2, 2, 4), "float32"),
                                              (43, (2, 7, 4, 1, 6), "float64"), (44, (3, 4, 3, 3, 8), "float64"),
                                              (45, (1, 9, 6, 1, 4), "float32")]:
        _attention_case(seed, b, n, h, kv, d_head, dtype, None, 10000.0,
                        "Project, split into heads (batch, heads, n, d_head) with a transpose, rotate q and k (not v) "
                        "with apply_rope, attend causally with scores / sqrt(d_head), merge the heads, then W_o.")
    for seed, (b, n, h, kv, d_head), dtype in [(51, (2, 5, 4, 2, 4), "float64"), (52, (1, 6, 6, 3, 4), "float64"),
                                              (53, (2, 4, 6, 2, 8), "float32"), (54, (1, 3, 8, 4, 2), "float64")]:
        _attention_case(seed, b, n, h, kv, d_head, dtype, None, 10000.0,
                        f"With {h} query heads and {kv} K/V heads, query heads 0..{h // kv - 1} share K/V head 0: "
                        "repeat_interleave the K/V heads along the head axis (repeat pairs them 0, 1, 0, 1, ...).")


def test_GroupedQueryAttention_positions():
    for seed, (b, n, d_head), dtype, positions, base in [
            (61, (2, 5, 8), "float64", [3, 4, 5, 6, 7], 10000.0),
            (62, (1, 6, 16), "float64", [0, 9, 2, 40, 41, 7], 10000.0),
            (63, (2, 4, 8), "float32", [100, 101, 102, 103], 500.0),
            (64, (1, 5, 4), "float64", [0, 1, 2, 3, 4], 50.0)]:
        _attention_case(seed, b, n, 1, 1, d_head, dtype, positions, base,
                        "Rotate q and k by the positions given to forward (positions=None means 0..n-1), "
                        "with the rope_base given to the constructor.")


# ---------------------------------------------------------------- 4. the block

BLOCK_SNIPPET = """
import torch
block = LlamaBlock(d_model, n_heads, n_kv_heads, d_ff, eps=eps).to(getattr(torch, dtype))
with torch.no_grad():
    block.attn_norm.weight.copy_(attn_norm)
    block.ffn_norm.weight.copy_(ffn_norm)
    for name, w in attn.items():
        getattr(block.attn, name).weight.copy_(w)
    for name, w in ffn.items():
        getattr(block.ffn, name).weight.copy_(w)
    out = block(x)
"""


def test_LlamaBlock():
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    torch = _torch()
    for seed, (b, n, h, kv, d_head, d_ff), dtype, eps in [(71, (2, 6, 4, 2, 8, 40), "float64", 1e-6),
                                                          (72, (1, 5, 2, 2, 8, 24), "float32", 1e-5),
                                                          (73, (3, 4, 4, 1, 4, 16), "float64", 1e-6)]:
        d_model = h * d_head
        config = _llama_config(d_model=d_model, n_heads=h, n_kv_heads=kv, d_ff=d_ff, eps=eps)
        config._attn_implementation = "sdpa"
        layer = _randomize(LlamaDecoderLayer(config, layer_idx=0), seed).to(getattr(torch, dtype)).eval()
        x = _randn(seed + 1, b, n, d_model, dtype=dtype)
        with torch.no_grad():
            want = layer(x, position_embeddings=_rope_cos_sin(torch.arange(n), d_head, 10000.0, x.dtype),
                         attention_mask=None)
        want = want[0] if isinstance(want, tuple) else want
        a, m = layer.self_attn, layer.mlp
        case = f"x of shape {(b, n, d_model)} ({dtype}), n_heads={h}, n_kv_heads={kv}, d_ff={d_ff}, eps={eps:g}"
        got = env().run(
            "LlamaBlock", BLOCK_SNIPPET,
            inputs={"x": x, "d_model": d_model, "n_heads": h, "n_kv_heads": kv, "d_ff": d_ff, "eps": eps,
                    "dtype": dtype,
                    "attn_norm": layer.input_layernorm.weight.detach().clone(),
                    "ffn_norm": layer.post_attention_layernorm.weight.detach().clone(),
                    "attn": {"W_q": _to_interleaved(a.q_proj.weight.detach(), h),
                             "W_k": _to_interleaved(a.k_proj.weight.detach(), kv),
                             "W_v": a.v_proj.weight.detach().clone(), "W_o": a.o_proj.weight.detach().clone()},
                    "ffn": {"W_gate": m.gate_proj.weight.detach().clone(), "W_up": m.up_proj.weight.detach().clone(),
                            "W_down": m.down_proj.weight.detach().clone()}},
            outputs=["out"], case=case, forbid=FORBID_LIBRARY,
            substitute=_substitutes("apply_rope", "RMSNorm", "SwiGLU", "GroupedQueryAttention"))
        out = _as_tensor("LlamaBlock", got["out"], case)
        expect_close("LlamaBlock", out, want, case=case, atol=1e-5, rtol=1e-5,
                     hint="Pre-norm with two residual additions: x + attn(attn_norm(x)), then that + "
                          "ffn(ffn_norm(that)); two separate RMSNorms, and eps passed on to both.")


# ---------------------------------------------------------------- 5. the model and its weights

MODEL_CASES = {
    # test name: [(seed, config, batch, n, dtype)]
    "model": [(81, dict(vocab_size=61, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48), 2, 7, "float64"),
              (82, dict(vocab_size=40, d_model=16, n_layers=3, n_heads=2, n_kv_heads=2, d_ff=40), 1, 9, "float32")],
    "load": [(91, dict(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=4, d_ff=64), 2, 8, "float64"),
             (92, dict(vocab_size=33, d_model=24, n_layers=1, n_heads=3, n_kv_heads=3, d_ff=40), 3, 5, "float32")],
    "load_gqa": [(93, dict(vocab_size=45, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=48), 2, 6, "float64"),
                 (94, dict(vocab_size=30, d_model=48, n_layers=1, n_heads=6, n_kv_heads=2, d_ff=64), 1, 7, "float32")],
}

MODEL_SNIPPET = """
import torch
model = Llama(**config).to(getattr(torch, dtype))
with torch.no_grad():
    for name, w in weights.items():
        model.get_parameter(name).copy_(w)
    logits = model(ids)
"""

LOAD_SNIPPET = """
import torch
model = Llama(**config).to(getattr(torch, dtype))
with torch.no_grad():
    returned = load_llama_weights(model, state)
    if isinstance(returned, torch.nn.Module):
        model = returned
    logits = model(ids)
loaded = {name: p.detach().clone() for name, p in model.named_parameters()}
"""


def _hf_model(seed, config, dtype):
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM(_llama_config(**config))
    return _randomize(hf, seed).to(getattr(_torch(), dtype)).eval()


def _ids(seed, vocab_size, batch, n):
    torch = _torch()
    return torch.randint(0, vocab_size, (batch, n), generator=torch.Generator().manual_seed(seed))


def _describe_model(config, batch, n, dtype):
    return (f"a random {config['n_layers']}-layer Llama ({dtype}, d_model={config['d_model']}, "
            f"n_heads={config['n_heads']}, n_kv_heads={config['n_kv_heads']}), token ids of shape {(batch, n)}")


def test_Llama():
    torch = _torch()
    for seed, config, batch, n, dtype in MODEL_CASES["model"]:
        hf = _hf_model(seed, config, dtype)
        ids = _ids(seed + 1, config["vocab_size"], batch, n)
        with torch.no_grad():
            want = hf(ids).logits
        weights = _hf_to_course({k: v.detach().clone() for k, v in hf.state_dict().items()},
                               config["n_heads"], config["n_kv_heads"], config["n_layers"])
        case = _describe_model(config, batch, n, dtype) + ", weights set by name"
        got = env().run("Llama", MODEL_SNIPPET, inputs={"config": config, "dtype": dtype, "weights": weights,
                                                        "ids": ids},
                        outputs=["logits"], case=case, forbid=FORBID_LIBRARY,
                        substitute=_substitutes("apply_rope", "RMSNorm", "SwiGLU", "GroupedQueryAttention",
                                                "LlamaBlock"))
        out = _as_tensor("Llama", got["logits"], case)
        expect_close("Llama", out, want, case=case, atol=1e-5, rtol=1e-5, what="logits",
                     hint="Embed, run every block, apply the final RMSNorm, then lm_head (its own weight, not tied "
                          "to the embedding); no position embeddings: RoPE inside attention does that.")


WRONG_LOADS = [
    # (what the learner probably did, how to make that mistake from the right weights)
    ("copied Hugging Face's W_Q and W_K rows as they are, in its half-split RoPE order",
     lambda name, w, cfg: w.reshape(cfg[1], w.shape[0] // cfg[1] // 2, 2, -1).transpose(1, 2).reshape(w.shape)
     if name.endswith(("W_q.weight", "W_k.weight")) else None),
    ("transposed a Linear weight (nn.Linear and Hugging Face both store (out_features, in_features))",
     lambda name, w, cfg: w.T if w.dim() == 2 and w.shape[0] == w.shape[1] else None),
]


def _first_wrong(loaded, expected, config):
    """The first parameter (in model order) that differs, and a hint when a known mistake explains it."""
    torch = _torch()
    for name, want in expected.items():
        got = loaded.get(name)
        if not isinstance(got, torch.Tensor):
            return f"{name} is missing from the model", ""
        if got.shape != want.shape or not torch.allclose(got.double(), want.double(), atol=1e-6, rtol=1e-6):
            heads = config["n_kv_heads"] if name.endswith("W_k.weight") else config["n_heads"]
            for why, mistake in WRONG_LOADS:
                wrong = mistake(name, want.double(), (None, heads))
                if wrong is not None and wrong.shape == got.shape and torch.allclose(got.double(), wrong, atol=1e-6):
                    return f"{name} differs", f" It looks as if you {why}."
            if name.endswith("W_k.weight") and config["n_kv_heads"] != config["n_heads"]:
                return f"{name} differs", (" W_K has n_kv_heads heads: reorder its rows per K/V head, "
                                           f"{config['n_kv_heads']} of them.")
            return f"{name} differs", ""
    return None, ""


def _load_case(kind):
    torch = _torch()
    for seed, config, batch, n, dtype in MODEL_CASES[kind]:
        hf = _hf_model(seed, config, dtype)
        ids = _ids(seed + 1, config["vocab_size"], batch, n)
        with torch.no_grad():
            want = hf(ids).logits
        state = {k: v.detach().clone() for k, v in hf.state_dict().items()}
        case = _describe_model(config, batch, n, dtype) + ", its state_dict()"
        got = env().run("load_llama_weights", LOAD_SNIPPET,
                        inputs={"config": config, "dtype": dtype, "state": state, "ids": ids},
                        outputs=["logits", "loaded"], case=case, forbid=FORBID_LIBRARY,
                        substitute=_substitutes("apply_rope", "RMSNorm", "SwiGLU", "GroupedQueryAttention",
                                                "LlamaBlock", "Llama"))
        out = _as_tensor("load_llama_weights", got["logits"], case)
        ok = (out.shape == want.shape and torch.isfinite(out).all()
              and bool(((out.double() - want.double()).abs() <= 1e-5 + 1e-5 * want.double().abs()).all()))
        if not ok:
            expected = _hf_to_course(state, config["n_heads"], config["n_kv_heads"], config["n_layers"])
            loaded = got["loaded"] if isinstance(got["loaded"], dict) else {}
            where, hint = _first_wrong(loaded, expected, config)
            if where:
                raise CheckFailed(f"load_llama_weights: the logits differ from transformers' for {case}; the first "
                                  f"parameter that is not what it should be: {where}.{hint}")
        expect_close("load_llama_weights", out, want, case=case, atol=1e-5, rtol=1e-5, what="logits")


def test_load_llama_weights():
    _load_case("load")


def test_load_llama_weights_gqa():
    _load_case("load_gqa")
