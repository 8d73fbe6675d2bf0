"""Hidden-test checks for chapter 9, `09_llama` (from GPT-2 to Llama).

The references are Hugging Face `transformers`' own Llama modules (`LlamaRMSNorm`, `LlamaMLP`, `LlamaAttention`,
`LlamaDecoderLayer`, `LlamaForCausalLM`), built here in the grader from small `LlamaConfig`s with seeded random
weights: nothing is downloaded. The learner's module gets the same weights under the notebook's parameter names
(`_course_weights`), with one conversion: the notebook's RoPE (chapter 8's) rotates interleaved pairs (x[2i], x[2i+1]),
Hugging Face's rotates halves (x[i], x[i + d/2]), so the rows of every head of W_Q and W_K are reordered.

Tolerances follow the dtype of the learner's result: 1e-10 for float64 where the reference is float64 throughout,
else 1e-5. `transformers` computes RMSNorm and the RoPE angles in float32 even in a float64 model, so whole blocks
and models are compared at 1e-5 in both dtypes.
"""
from __future__ import annotations

from .references import randn, torch as _torch
from .sources import definition, solution
from . import CheckFailed, env, expect_close, expect_type

FORBID_LIBRARY = ["transformers.*"]
# the references, imported by the grader while the learner's cells run (grading._preload_checks)
PRELOAD = ["transformers.models.llama.modeling_llama"]
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

# Hugging Face's parameter names -> the notebook's, applied in order to every name.
_RENAMES = [("model.embed_tokens", "embed"), ("model.layers.", "blocks."), ("model.norm", "norm"),
            ("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm"), ("self_attn.", "attn."),
            ("mlp.", "ffn."), ("q_proj", "W_q"), ("k_proj", "W_k"), ("v_proj", "W_v"), ("o_proj", "W_o"),
            ("gate_proj", "W_gate"), ("up_proj", "W_up"), ("down_proj", "W_down")]


def _tolerance(got, exact=True):
    """float64 results: 1e-10 where the reference is float64 throughout; float32 (or inexact references): 1e-5."""
    if exact and got.dtype == _torch().float64:
        return dict(atol=1e-10, rtol=1e-10)
    return dict(atol=1e-5, rtol=1e-5)


def _to_interleaved(weight, n_heads):
    """Rows of W_Q or W_K from Hugging Face's RoPE order (pairs i, i + d/2 in each head) to chapter 8's (2i, 2i+1)."""
    out_features, d_in = weight.shape
    d_head = out_features // n_heads
    return weight.reshape(n_heads, 2, d_head // 2, d_in).transpose(1, 2).reshape(out_features, d_in).contiguous()


def _course_weights(module, n_heads=None, n_kv_heads=None):
    """A Hugging Face module's parameters under the notebook's names, W_Q and W_K in the interleaved RoPE order
    (for a whole model: the expected result of load_llama_weights)."""
    out = {}
    for name, p in module.named_parameters():
        for theirs, ours in _RENAMES:
            name = name.replace(theirs, ours)
        w = p.detach().clone()
        out[name] = _to_interleaved(w, n_heads if name.endswith("W_q.weight") else n_kv_heads) \
            if name.endswith(("W_q.weight", "W_k.weight")) else w
    return out


def _llama_config(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, eps=1e-6, rope_base=10000.0):
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=d_model, intermediate_size=d_ff, num_hidden_layers=n_layers,
                         num_attention_heads=n_heads, num_key_value_heads=n_kv_heads, rms_norm_eps=eps,
                         max_position_embeddings=256, rope_parameters={"rope_type": "default", "rope_theta": rope_base},
                         tie_word_embeddings=False, attention_bias=False, mlp_bias=False, hidden_act="silu")
    config._attn_implementation = "sdpa"   # float64 stays float64 (the eager path takes its softmax in float32)
    return config


def _randomize(module, seed, dtype):
    """Seeded random weights of useful size: norms' gains near 1, matrices scaled by 1/sqrt(fan-in), embeddings N(0, 1);
    then `dtype`, in eval mode."""
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
            p.copy_(1.0 + 0.3 * noise if p.dim() == 1 else noise if "embed" in name else noise / p.shape[1] ** 0.5)
    return module.to(getattr(torch, dtype)).eval()


def _rope_cos_sin(positions, d_head, base, dtype):
    """Hugging Face's position embeddings (cos, sin), each (1, n, d_head), computed in float64 for exact references."""
    torch = _torch()
    inv_freq = base ** (-torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)
    angles = positions.double()[:, None] * inv_freq[None, :]
    emb = torch.cat([angles, angles], dim=-1)[None]
    return emb.cos().to(dtype), emb.sin().to(dtype)


# The learner's module, built from `args`/`kwargs`, given the check's weights by parameter name, run on `forward`.
_SNIPPET = """
import torch
_module = {cls}(*args, **kwargs).to(getattr(torch, dtype))
with torch.no_grad():
    for _name, _w in weights.items():
        _module.get_parameter(_name).copy_(_w)
    out = _module(*forward)
"""


def _run(exercise, reference, args, forward, dtype, case, kwargs=None, heads=(None, None), forbid=FORBID_LIBRARY,
         uses=()):
    got = env().run(exercise, _SNIPPET.format(cls=exercise),
                    inputs={"args": tuple(args), "kwargs": kwargs or {}, "dtype": dtype, "forward": tuple(forward),
                            "weights": _course_weights(reference, *heads)},
                    outputs=["out"], case=case, forbid=forbid, substitute={name: REFERENCE_SOURCE for name in uses})
    expect_type(exercise, got["out"], "tensor", case)
    return got["out"]


# ---------------------------------------------------------------- 1. RMSNorm

def _rms_norm_case(seed, shape, dtype, eps, scale, shift, case, hint):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    torch = _torch()
    x = randn(seed, shape, dtype=dtype, scale=scale) + shift
    reference = LlamaRMSNorm(shape[-1], eps=eps).to(x.dtype)
    with torch.no_grad():
        reference.weight.copy_(randn(seed + 1, shape[-1], dtype=dtype, scale=0.3) + 1.0)
        out = _run("RMSNorm", reference, (shape[-1],), (x,), dtype, case, kwargs={"eps": eps}, forbid=FORBID_RMSNORM)
        # float64: an exact reference (LlamaRMSNorm works in float32)
        want = (reference.weight * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) if out.dtype == torch.float64
                else reference(x))
    expect_close("RMSNorm", out, want, case=case, hint=hint, **_tolerance(out))


def test_RMSNorm():
    for seed, shape, dtype in [(11, (2, 5, 16), "float32"), (12, (3, 8), "float64"), (13, (1, 4, 7, 32), "float32"),
                               (14, (6, 24), "float64"), (15, (2, 3, 12), "float64")]:
        case = f"x of shape {shape} ({dtype}, mean 0.5), random weight, eps=1e-6"
        _rms_norm_case(seed, shape, dtype, 1e-6, 1.0, 0.5, case,
                       "Each row is divided by its root mean square over the last dimension (eps inside the square root) "
                       "and scaled by the learned gain; no mean is subtracted and there is no bias.")


def test_RMSNorm_eps():
    for seed, shape, dtype, eps in [(21, (4, 16), "float64", 0.01), (22, (3, 8), "float32", 0.1),
                                    (23, (5, 6), "float64", 1e-3)]:
        case = f"x of shape {shape} ({dtype}) with entries near 0.05, eps={eps:g}"
        _rms_norm_case(seed, shape, dtype, eps, 0.05, 0.0, case,
                       "Use the eps given to the constructor, inside the square root: sqrt(mean(x²) + eps).")


# ---------------------------------------------------------------- 2. SwiGLU

def test_SwiGLU():
    from transformers.models.llama.modeling_llama import LlamaMLP

    torch = _torch()
    for seed, (shape, d_ff), dtype in [(31, ((2, 5, 16), 40), "float64"), (32, ((3, 8), 24), "float32"),
                                       (33, ((1, 6, 32), 86), "float64"), (34, ((2, 2, 4, 8), 16), "float32")]:
        reference = _randomize(LlamaMLP(_llama_config(d_model=shape[-1], d_ff=d_ff)), seed, dtype)
        x = randn(seed + 1, shape, dtype=dtype, scale=1.5)
        case = f"x of shape {shape} ({dtype}), d_ff={d_ff}, random W_gate, W_up, W_down"
        out = _run("SwiGLU", reference, (shape[-1], d_ff), (x,), dtype, case)
        with torch.no_grad():
            want = reference(x)
        expect_close("SwiGLU", out, want, case=case, **_tolerance(out),
                     hint="SiLU (x·sigmoid(x)) on the gate branch only, the two branches multiplied elementwise, "
                          "W_down last; no biases.")


# ---------------------------------------------------------------- 3. grouped-query attention

def _attention_case(seed, b, n, n_heads, n_kv_heads, d_head, dtype, positions, rope_base, hint):
    from transformers.models.llama.modeling_llama import LlamaAttention

    torch = _torch()
    d_model = n_heads * d_head
    config = _llama_config(d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads, rope_base=rope_base)
    reference = _randomize(LlamaAttention(config, layer_idx=0), seed, dtype)
    x = randn(seed + 1, (b, n, d_model), dtype=dtype)
    pos = torch.arange(n) if positions is None else torch.tensor(positions)
    with torch.no_grad():
        want, _ = reference(x, position_embeddings=_rope_cos_sin(pos, d_head, rope_base, x.dtype), attention_mask=None)
    where = "" if positions is None else f", positions {positions}"
    case = (f"x of shape {(b, n, d_model)} ({dtype}), n_heads={n_heads}, n_kv_heads={n_kv_heads}, "
            f"rope_base={rope_base:g}{where}")
    out = _run("GroupedQueryAttention", reference, (d_model, n_heads, n_kv_heads), (x,) if positions is None else (x, pos),
               dtype, case, kwargs={"rope_base": rope_base}, heads=(n_heads, n_kv_heads), forbid=FORBID_ATTENTION,
               uses=("apply_rope",))
    expect_close("GroupedQueryAttention", out, want, case=case, hint=hint, **_tolerance(out))


def test_GroupedQueryAttention():
    """Any head counts against LlamaAttention, then grouped K/V heads (several query heads to one)."""
    for seed, (b, n, h, kv, d_head), dtype in [(41, (2, 6, 4, 4, 8), "float64"), (42, (1, 5, 2, 2, 4), "float32"),
                                              (43, (2, 7, 4, 1, 6), "float64"), (44, (3, 4, 3, 3, 8), "float64"),
                                              (45, (1, 9, 6, 1, 4), "float32")]:
        _attention_case(seed, b, n, h, kv, d_head, dtype, None, 10000.0,
                        "Each head takes its d_head columns from every token; q and k are rotated (not v), attention is "
                        "causal with scores / sqrt(d_head), and W_o comes after the heads merge.")
    for seed, (b, n, h, kv, d_head), dtype in [(51, (2, 5, 4, 2, 4), "float64"), (52, (1, 6, 6, 3, 4), "float64"),
                                              (53, (2, 4, 6, 2, 8), "float32"), (54, (1, 3, 8, 4, 2), "float64")]:
        _attention_case(seed, b, n, h, kv, d_head, dtype, None, 10000.0,
                        f"With {h} query heads and {kv} K/V heads, query heads 0..{h // kv - 1} share K/V head 0: "
                        "consecutive query heads share one K/V head (a repeat that cycles pairs them 0, 1, 0, 1, ...).")


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

def test_LlamaBlock():
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    torch = _torch()
    for seed, (b, n, h, kv, d_head, d_ff), dtype, eps in [(71, (2, 6, 4, 2, 8, 40), "float64", 1e-6),
                                                          (72, (1, 5, 2, 2, 8, 24), "float32", 1e-5),
                                                          (73, (3, 4, 4, 1, 4, 16), "float64", 1e-6)]:
        d_model = h * d_head
        config = _llama_config(d_model=d_model, n_heads=h, n_kv_heads=kv, d_ff=d_ff, eps=eps)
        layer = _randomize(LlamaDecoderLayer(config, layer_idx=0), seed, dtype)
        x = randn(seed + 1, (b, n, d_model), dtype=dtype)
        with torch.no_grad():
            want = layer(x, position_embeddings=_rope_cos_sin(torch.arange(n), d_head, 10000.0, x.dtype),
                         attention_mask=None)
        want = want[0] if isinstance(want, tuple) else want
        case = f"x of shape {(b, n, d_model)} ({dtype}), n_heads={h}, n_kv_heads={kv}, d_ff={d_ff}, eps={eps:g}"
        out = _run("LlamaBlock", layer, (d_model, h, kv, d_ff), (x,), dtype, case, kwargs={"eps": eps}, heads=(h, kv),
                   uses=("apply_rope", "RMSNorm", "SwiGLU", "GroupedQueryAttention"))
        expect_close("LlamaBlock", out, want, case=case, atol=1e-5, rtol=1e-5,
                     hint="Pre-norm with two residual additions: each sub-layer reads its own RMSNorm's copy of the "
                          "stream and adds its output back; two separate RMSNorms, and eps passed on to both.")


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


def _model_cases(kind):
    """For each case: a seeded LlamaForCausalLM, token ids, transformers' logits and the case's description."""
    from transformers import LlamaForCausalLM

    torch = _torch()
    for seed, config, batch, n, dtype in MODEL_CASES[kind]:
        hf = _randomize(LlamaForCausalLM(_llama_config(**config)), seed, dtype)
        ids = torch.randint(0, config["vocab_size"], (batch, n), generator=torch.Generator().manual_seed(seed + 1))
        with torch.no_grad():
            want = hf(ids).logits
        case = (f"a random {config['n_layers']}-layer Llama ({dtype}, d_model={config['d_model']}, "
                f"n_heads={config['n_heads']}, n_kv_heads={config['n_kv_heads']}), token ids of shape {(batch, n)}")
        yield hf, config, dtype, ids, want, case


def test_Llama():
    for hf, config, dtype, ids, want, case in _model_cases("model"):
        case += ", weights set by name"
        out = _run("Llama", hf, (), (ids,), dtype, case, kwargs=config,
                   heads=(config["n_heads"], config["n_kv_heads"]),
                   uses=("apply_rope", "RMSNorm", "SwiGLU", "GroupedQueryAttention", "LlamaBlock"))
        expect_close("Llama", out, want, case=case, atol=1e-5, rtol=1e-5, what="logits",
                     hint="Embed, run every block, apply the final RMSNorm, then lm_head (its own weight, not tied "
                          "to the embedding); no position embeddings: RoPE inside attention does that.")


WRONG_LOADS = [
    # (what the learner probably did, how to make that mistake from the right weights)
    ("copied Hugging Face's W_Q and W_K rows as they are, in its half-split RoPE order",
     lambda name, w, heads: w.reshape(heads, w.shape[0] // heads // 2, 2, -1).transpose(1, 2).reshape(w.shape)
     if name.endswith(("W_q.weight", "W_k.weight")) else None),
    ("transposed a Linear weight (nn.Linear and Hugging Face both store (out_features, in_features))",
     lambda name, w, heads: w.T if w.dim() == 2 and w.shape[0] == w.shape[1] else None),
]


def _first_wrong(loaded, expected, config):
    """The first parameter (in the learner's model order) that is not what it should be, and a hint when a known
    mistake explains it."""
    torch = _torch()
    for name in [k for k in loaded if k in expected] + [k for k in expected if k not in loaded]:
        got, want = loaded.get(name), expected[name].double()
        if not isinstance(got, torch.Tensor):
            return f"{name} is missing from the model (expected a parameter of shape {tuple(want.shape)})", ""
        if got.shape != want.shape:
            return f"{name} has shape {tuple(got.shape)}, expected {tuple(want.shape)}", ""
        if not torch.allclose(got.double(), want, atol=1e-6, rtol=1e-6):
            where = f"{name} differs from the converted weight by up to {(got.double() - want).abs().max():.3g}"
            heads = config["n_kv_heads"] if name.endswith("W_k.weight") else config["n_heads"]
            for why, mistake in WRONG_LOADS:
                wrong = mistake(name, want, heads)
                if wrong is not None and torch.allclose(got.double(), wrong, atol=1e-6):
                    return where, f" It looks as if you {why}."
            if name.endswith("W_k.weight") and config["n_kv_heads"] != config["n_heads"]:
                return where, (" W_K has n_kv_heads heads: reorder its rows per K/V head, "
                               f"{config['n_kv_heads']} of them.")
            return where, ""
    return None, ""


def _load_case(kind):
    for hf, config, dtype, ids, want, case in _model_cases(kind):
        case += ", its state_dict()"
        state = {k: v.detach().clone() for k, v in hf.state_dict().items()}
        got = env().run("load_llama_weights", LOAD_SNIPPET,
                        inputs={"config": config, "dtype": dtype, "state": state, "ids": ids},
                        outputs=["logits", "loaded"], case=case, forbid=FORBID_LIBRARY,
                        substitute={name: REFERENCE_SOURCE for name in ("apply_rope", "RMSNorm", "SwiGLU",
                                                                        "GroupedQueryAttention", "LlamaBlock", "Llama")})
        try:
            expect_close("load_llama_weights", got["logits"], want, case=case, atol=1e-5, rtol=1e-5, what="logits")
        except CheckFailed:
            loaded = got["loaded"] if isinstance(got["loaded"], dict) else {}
            where, hint = _first_wrong(loaded, _course_weights(hf, config["n_heads"], config["n_kv_heads"]), config)
            if where:
                raise CheckFailed(f"load_llama_weights: the logits differ from transformers' for {case}; the first "
                                  f"parameter that is not what it should be: {where}.{hint}") from None
            raise


def test_load_llama_weights():
    _load_case("load")


def test_load_llama_weights_gqa():
    _load_case("load_gqa")
