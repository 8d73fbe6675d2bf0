"""Hidden checks for chapter 6, `06_transformer_block` (PyTorch), one per test cell of the solution notebook.

Each check builds the learner's module in the learner's kernel (`env().run`), loads a state_dict drawn here from a
fixed seed (or reads gradients out), and compares with a float64 reference computed here from torch primitives
(`F.layer_norm`, `F.linear`, `F.gelu`, `F.scaled_dot_product_attention`) with the same weights. The interfaces
(parameter names, the pre-norm block, `GPTLike`'s attributes) are the ones the notebook states.

Exercise 2 (FeedForward) is an ungraded warm-up: no check of its own, and the notebook's solution stands in for it.
Tolerances: float32 modules against float64 references, `atol=1e-5, rtol=1e-4` for LayerNorm,
`atol=1e-4, rtol=1e-4` for a block and the model (more float32 operations in a row); the residual identity to `1e-6`;
causality to `1e-5`. A module built from earlier exercises' modules gets the notebook's own solutions in their place
(`sources`), so one wrong answer costs only its own exercise.
"""
from __future__ import annotations

import math

import numpy as np

from .references import causal_mask, generator, tensor, torch as _torch
from .sources import load, provided, solution
from . import CheckFailed, env, expect, expect_close, expect_shape

# Calling a library's version of the thing being built earns nothing.
FORBID_LN = [
    "torch*layer_norm*", "torch*group_norm*", "torch*instance_norm*", "torch*batch_norm*", "torch*rms_norm*",
    "torch.nn.modules.normalization.*", "torch.nn.modules.batchnorm.*", "torch.nn.modules.instancenorm.*",
    "torch._ops.*",
]
FORBID_TRANSFORMER = [
    "torch.nn.modules.transformer.*", "torch*_transformer_encoder_layer_fwd*", "torch*multi_head_attention_forward*",
    "torch.nn.modules.activation.MultiheadAttention*", "torch._ops.*",
]

# ---------------------------------------------------------------- substitutes sent into the learner's kernel

PROVIDED_ATTENTION = provided("06", "provided_attention")
REF_LAYERNORM = solution("06", "LayerNorm")
REF_FEEDFORWARD = solution("06", "FeedForward")

# The notebook's block, with `_ALWAYS_CAUSAL` deciding whether it uses the mask it is given or always the causal one
# (so that GPTLike's causality test sees the learner's own mask).
_REF_BLOCK = PROVIDED_ATTENTION + REF_LAYERNORM + REF_FEEDFORWARD + solution("06", "TransformerBlock").replace(
    "    def forward(self, x, mask=None):\n",
    "    def forward(self, x, mask=None):\n"
    "        if _ALWAYS_CAUSAL:\n"
    "            mask = torch.ones(x.shape[-2], x.shape[-2], dtype=torch.bool, device=x.device).tril()\n")
SUB_BLOCK = {"LayerNorm": REF_LAYERNORM, "FeedForward": REF_FEEDFORWARD, "MultiHeadAttention": PROVIDED_ATTENTION}
SUB_GPT = {"TransformerBlock": "_ALWAYS_CAUSAL = True\n" + _REF_BLOCK, "LayerNorm": REF_LAYERNORM}
SUB_GPT_MASKED = {"TransformerBlock": "_ALWAYS_CAUSAL = False\n" + _REF_BLOCK, "LayerNorm": REF_LAYERNORM}


# ---------------------------------------------------------------- random weights (drawn here, loaded there)

def _ln_sd(g, d, prefix="", random=True):
    if not random:
        return {prefix + "weight": _torch().ones(d), prefix + "bias": _torch().zeros(d)}
    return {prefix + "weight": 1 + 0.3 * _torch().randn(d, generator=g), prefix + "bias": 0.2 * _torch().randn(d, generator=g)}


def _linear_sd(g, d_in, d_out, prefix, bias=True):
    sd = {prefix + "weight": _torch().randn(d_out, d_in, generator=g) / math.sqrt(d_in)}
    if bias:
        sd[prefix + "bias"] = 0.1 * _torch().randn(d_out, generator=g)
    return sd


def _ffn_sd(g, d, d_ff, prefix=""):
    return {**_linear_sd(g, d, d_ff, prefix + "fc1."), **_linear_sd(g, d_ff, d, prefix + "fc2.")}


def _block_sd(g, d, d_ff, prefix="", random_ln=True):
    sd = _ln_sd(g, d, prefix + "ln1.", random_ln)
    for name in ("W_q", "W_k", "W_v", "W_o"):
        sd.update(_linear_sd(g, d, d, f"{prefix}attn.{name}."))
    return {**sd, **_ln_sd(g, d, prefix + "ln2.", random_ln), **_ffn_sd(g, d, d_ff, prefix + "ffn.")}


def _gpt_sd(g, vocab, d, d_ff, n_layers, max_len):
    sd = {"tok_emb.weight": _torch().randn(vocab, d, generator=g),
          "pos_emb.weight": 0.5 * _torch().randn(max_len, d, generator=g)}
    for i in range(n_layers):
        sd.update(_block_sd(g, d, d_ff, f"blocks.{i}."))
    return {**sd, **_ln_sd(g, d, "ln_f."), **_linear_sd(g, d, vocab, "unembed.", bias=False)}


# ---------------------------------------------------------------- references computed here (float64)

def _f64(sd):
    return {k: v.double() for k, v in sd.items()}


def _ref_ln(x, sd, prefix, eps=1e-5):
    import torch.nn.functional as F

    return F.layer_norm(x, (x.shape[-1],), sd[prefix + "weight"], sd[prefix + "bias"], eps)


def _ref_ffn(x, sd, prefix, activation):
    """activation: "relu", "gelu" (exact) or "tanh" (GELU's tanh approximation, GPT-2's)."""
    import torch.nn.functional as F

    h = F.linear(x, sd[prefix + "fc1.weight"], sd[prefix + "fc1.bias"])
    h = F.relu(h) if activation == "relu" else F.gelu(h, approximate="tanh" if activation == "tanh" else "none")
    return F.linear(h, sd[prefix + "fc2.weight"], sd[prefix + "fc2.bias"])


def _ref_attn(x, sd, prefix, n_heads, mask):
    import torch.nn.functional as F

    b, n, d = x.shape
    q, k, v = (F.linear(x, sd[f"{prefix}{w}.weight"], sd[f"{prefix}{w}.bias"]).view(b, n, n_heads, d // n_heads)
               .transpose(1, 2) for w in ("W_q", "W_k", "W_v"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return F.linear(out.transpose(1, 2).reshape(b, n, d), sd[prefix + "W_o.weight"], sd[prefix + "W_o.bias"])


def _ref_block(x, sd, prefix, n_heads, mask, activation="gelu", variant="pre"):
    """The pre-norm block, or one of the wrong arrangements the block check recognises (to name it)."""
    attn = lambda h: _ref_attn(h, sd, prefix + "attn.", n_heads, mask)  # noqa: E731
    ffn = lambda h: _ref_ffn(h, sd, prefix + "ffn.", activation)  # noqa: E731
    ln1, ln2 = (lambda h, p=p: _ref_ln(h, sd, prefix + p) for p in ("ln1.", "ln2."))
    if variant == "post":
        x = ln1(x + attn(x))
        return ln2(x + ffn(x))
    if variant == "parallel":
        return x + attn(ln1(x)) + ffn(ln2(x))
    if variant == "no_residual":
        return ffn(ln2(attn(ln1(x))))
    x = x + attn(ln1(x))
    return x + ffn((ln1 if variant == "same_ln" else ln2)(x))


def _ref_gpt(ids, sd, n_heads, n_layers, final_ln=True, positions=True):
    import torch.nn.functional as F

    n = ids.shape[1]
    x = F.embedding(ids, sd["tok_emb.weight"]) + (sd["pos_emb.weight"][:n] if positions else 0)
    for i in range(n_layers):
        x = _ref_block(x, sd, f"blocks.{i}.", n_heads, causal_mask(n))
    return (_ref_ln(x, sd, "ln_f.") if final_ln else x) @ sd["unembed.weight"].T


def _close(got, want, atol=1e-7, rtol=1e-6):
    import torch

    return (isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(want.shape)
            and bool(torch.allclose(got.double(), want.double(), atol=atol, rtol=rtol)))


def _hint_of(got, variants, default):
    """The hint of the first recognised wrong variant `(reference, hint)` the answer matches, else `default`."""
    return next((hint for want, hint in variants if _close(got, want, 1e-4, 1e-4)), default)


# ---------------------------------------------------------------- LayerNorm

_LN = """
import torch
m = LayerNorm(d) if eps is None else LayerNorm(d, eps=eps)
names = sorted(name for name, _ in m.named_parameters())
init = {name: p.detach().clone() for name, p in m.named_parameters()}
if sd is not None:
    m.load_state_dict(sd)
with torch.no_grad():
    y = m(x)
"""


def _ln(x, case, eps=None, sd=None, outputs=("y",)):
    out = env().run("LayerNorm", _LN, inputs={"x": x, "d": x.shape[-1], "eps": eps, "sd": sd}, outputs=list(outputs),
                    case=case, forbid=FORBID_LN)
    return out if len(outputs) > 1 else out["y"]


def test_LayerNorm():
    """Forward with the initial parameters, inputs with leading batch dimensions, against F.layer_norm."""
    import torch.nn.functional as F

    for seed, shape in [(61, (4, 16)), (62, (2, 5, 12)), (63, (2, 3, 4, 10)), (64, (1, 7, 24))]:
        r = np.random.default_rng(seed)
        rows = r.normal(size=shape)  # then a spread and a shift per row, drawn in this order
        x = tensor(rows * r.uniform(2, 5, size=shape[:-1] + (1,)) + r.normal(size=shape[:-1] + (1,)) * 3, "float32")
        case = f"x of shape {shape}, LayerNorm({shape[-1]})"
        expect_close("LayerNorm", _ln(x, case), F.layer_norm(x.double(), shape[-1:]), atol=1e-5, rtol=1e-4,
                     case=case, hint="Each token is normalised on its own, over its d features only (the last axis), "
                                     "with the variance that divides by d, not d-1.")


def test_LayerNorm_params():
    """Parameters named weight and bias, initialised to ones and zeros, applied as x_hat * weight + bias."""
    import torch

    for seed, (n, d) in [(65, (6, 16)), (66, (3, 9))]:
        x = tensor(np.random.default_rng(seed).normal(size=(n, d)) * 3 + 1, "float32")
        sd = _ln_sd(generator(seed), d)
        case = f"LayerNorm({d}) with weight and bias loaded from a state_dict, x of shape {(n, d)}"
        out = _ln(x, case, sd=sd, outputs=("names", "init", "y"))
        expect(out["names"] == ["bias", "weight"],
               f"LayerNorm: expected exactly the parameters ['bias', 'weight'] for LayerNorm({d}); got {out['names']}. "
               "Register them with nn.Parameter under the names weight and bias.")
        for name, value in (("weight", 1.0), ("bias", 0.0)):
            p = out["init"][name]
            expect(isinstance(p, torch.Tensor) and tuple(p.shape) == (d,) and bool(torch.all(p == value)),
                   f"LayerNorm: `{name}` should start as {'ones' if value else 'zeros'} of shape ({d},) for "
                   f"LayerNorm({d}); got {getattr(p, 'shape', p)}. Initialise it so that a fresh LayerNorm only normalises.")
        expect_close("LayerNorm", out["y"], _ref_ln(x.double(), _f64(sd), ""), atol=1e-5, rtol=1e-4, case=case,
                     hint="The output is x_hat * weight + bias: scale first, then shift.")


_LN_GRAD = """
import torch
m = LayerNorm(d)
xg = x.clone().requires_grad_(True)
(m(xg) * g).sum().backward()
grads = [xg.grad, m.weight.grad, m.bias.grad]
"""


def test_LayerNorm_grad():
    """Backward pass: gradients with respect to the input and both parameters, against torch.nn.LayerNorm."""
    import torch

    for seed, (n, d) in [(67, (5, 12)), (68, (2, 20))]:
        r = np.random.default_rng(seed)
        x, g = tensor(r.normal(size=(n, d)) * 2 - 1, "float32"), tensor(r.normal(size=(n, d)), "float32")
        case = f"LayerNorm({d}), x of shape {(n, d)}, loss (y * g).sum()"
        got = env().run("LayerNorm", _LN_GRAD, inputs={"x": x, "d": d, "g": g}, outputs=["grads"], case=case,
                        forbid=FORBID_LN)["grads"]
        ref = torch.nn.LayerNorm(d).double()
        xr = x.double().requires_grad_(True)
        (ref(xr) * g.double()).sum().backward()
        for got_grad, want, what in zip(got, (xr.grad, ref.weight.grad, ref.bias.grad),
                                        ("gradient w.r.t. x", "gradient w.r.t. weight", "gradient w.r.t. bias")):
            expect(got_grad is not None,
                   f"LayerNorm: the {what} is None for {case}. Make weight and bias nn.Parameters and keep the "
                   "computation inside autograd.")
            expect_close("LayerNorm", got_grad, want, atol=1e-5, rtol=1e-4, case=case, what=what,
                         hint="The mean and the variance depend on x too: don't detach them or compute them under "
                              "torch.no_grad().")


def test_LayerNorm_eps():
    """Rows with a tiny or zero spread: eps goes inside the square root, and the eps argument is used."""
    import torch.nn.functional as F

    r = np.random.default_rng(69)
    tiny = r.normal(size=(4, 16)) * 1e-3 + 0.5
    tiny[1] = 2.5  # a constant row: variance exactly 0
    for values, eps, case in [(tiny, None, "rows with spread 1e-3 and one constant row, eps=1e-5"),
                              (r.normal(size=(3, 8)) * 0.03, 1e-3, "rows with spread 0.03, LayerNorm(8, eps=1e-3)")]:
        x = tensor(values, "float32")
        want = F.layer_norm(x.double(), x.shape[-1:], eps=1e-5 if eps is None else eps)
        expect_close("LayerNorm", _ln(x, case, eps=eps), want, atol=1e-4, rtol=1e-3, case=case,
                     hint="Divide by sqrt(var + eps), with eps inside the square root, and use the eps the "
                          "constructor was given.")


# ---------------------------------------------------------------- TransformerBlock

_BLOCK_FORWARD = """
import torch
blk = TransformerBlock(d_model, n_heads, d_ff)
blk.load_state_dict(sd)
blk.eval()
with torch.no_grad():
    y = blk(x, mask)
"""

# The visible test ends its message with _EQUATIONS too, so a wrong answer says it whichever test decides the cell.
_EQUATIONS = "Compare your forward with the two equations, term by term."
_BLOCK_VARIANTS = [
    ("post", "That is the post-norm block (LayerNorm after the residual add). This chapter's block is pre-norm: the "
             "LayerNorms belong on the sub-layers' inputs, not on the stream."),
    ("parallel", "Attention and FFN both read the block's input (a parallel block); the FFN reads h, the stream after "
                 "the attention update. " + _EQUATIONS),
    ("no_residual", "The residual connections are missing: add each sub-layer's output to the stream."),
    ("same_ln", "The FFN must read LN_2(h), its own LayerNorm, not LN_1. " + _EQUATIONS),
]


def test_TransformerBlock():
    """Pre-norm block with random weights (LayerNorms included) against a float64 reference, several shapes and masks."""
    torch = _torch()
    for seed, b, n, d, h, d_ff, kind in [(81, 2, 5, 16, 4, 32, "causal"), (82, 1, 7, 12, 3, 48, "causal"),
                                         (83, 3, 4, 8, 2, 16, "none"), (84, 2, 6, 12, 2, 24, "random")]:
        r = np.random.default_rng(seed)
        x = tensor(r.normal(size=(b, n, d)), "float32")
        mask, mask_text = {"causal": (causal_mask(n), "causal mask"), "none": (None, "mask=None"),
                           "random": (torch.from_numpy(r.random((n, n)) < 0.5) | torch.eye(n, dtype=torch.bool),
                                      "a random boolean mask (True = may attend)")}[kind]
        sd = _block_sd(generator(seed), d, d_ff)
        case = f"TransformerBlock({d}, {h}, {d_ff}), x of shape {(b, n, d)}, {mask_text}"
        got = env().run("TransformerBlock", _BLOCK_FORWARD,
                        inputs={"x": x, "mask": mask, "sd": sd, "d_model": d, "n_heads": h, "d_ff": d_ff},
                        outputs=["y"], case=case, forbid=FORBID_TRANSFORMER, substitute=SUB_BLOCK)["y"]
        ref = lambda variant: _ref_block(x.double(), _f64(sd), "", h, mask, variant=variant)  # noqa: E731
        hint = _hint_of(got, [(ref(v), text) for v, text in _BLOCK_VARIANTS], "Pre-norm. " + _EQUATIONS)
        expect_close("TransformerBlock", got, ref("pre"), atol=1e-4, rtol=1e-4, case=case, hint=hint)


_BLOCK_RESIDUAL = """
import torch
blk = TransformerBlock(d_model, n_heads, d_ff)
blk.load_state_dict(sd)
x_in = x.clone().requires_grad_(True)
error = None
try:
    y = blk(x_in, mask)
    (y * g).sum().backward()
    y = y.detach()
    gx = x_in.grad
    grads = {name: p.grad for name, p in blk.named_parameters() if name in wanted}
except RuntimeError as e:
    error = f"RuntimeError: {str(e)[:160]}"
    y = gx = grads = None
unchanged = bool(torch.equal(x_in.detach(), x))
"""


def test_TransformerBlock_residual():
    """With the attention and FFN output projections zeroed, the block is the identity, and the gradient reaches x
    through the residual path; the caller's tensor is left alone."""
    import torch

    wanted = ["attn.W_o.weight", "attn.W_o.bias", "ffn.fc2.weight", "ffn.fc2.bias"]
    for seed, b, n, d, h, d_ff in [(85, 2, 5, 16, 4, 32), (86, 1, 6, 12, 3, 24)]:
        r = np.random.default_rng(seed)
        x, g = tensor(r.normal(size=(b, n, d)) * 2, "float32"), tensor(r.normal(size=(b, n, d)), "float32")
        sd = _block_sd(generator(seed), d, d_ff, random_ln=False)
        sd.update({key: torch.zeros_like(sd[key]) for key in wanted})
        mask = causal_mask(n)
        case = f"TransformerBlock({d}, {h}, {d_ff}) with attn.W_o and ffn.fc2 set to zero, x of shape {(b, n, d)}"
        out = env().run("TransformerBlock", _BLOCK_RESIDUAL,
                        inputs={"x": x, "g": g, "mask": mask, "sd": sd, "d_model": d, "n_heads": h, "d_ff": d_ff,
                                "wanted": wanted},
                        outputs=["y", "gx", "grads", "unchanged", "error"], case=case, forbid=FORBID_TRANSFORMER,
                        substitute=SUB_BLOCK)
        expect(out["error"] is None,
               f"TransformerBlock: raised {out['error']} for {case}, with x requiring grad. Did you add in place "
               "(x += ...)? Compute the new stream out of place, so the caller's tensor and autograd's record stay intact.")
        expect(out["unchanged"],
               f"TransformerBlock: the input tensor was modified for {case}. Write x = x + ..., not x += ...")
        expect_close("TransformerBlock", out["y"], x, atol=1e-6, case=case,
                     hint="When both sub-layers output zero, a block with residual connections returns its input "
                          "unchanged: each sub-layer's output is added to the stream, and nothing normalises the "
                          "stream itself.")
        expect_close("TransformerBlock", out["gx"], g, atol=1e-6, case=case, what="gradient w.r.t. x",
                     hint="The residual path carries the gradient straight through: d(x + f(x))/dx = I + df/dx.")
        params = {k: v.clone().requires_grad_(True) for k, v in _f64(sd).items()}
        (_ref_block(x.double(), params, "", h, mask) * g.double()).sum().backward()
        for key in wanted:
            got = out["grads"].get(key) if isinstance(out["grads"], dict) else None
            expect(got is not None, f"TransformerBlock: no gradient for {key} for {case}. Keep the sub-layers in the "
                                    "computation (no detach, no torch.no_grad()).")
            expect_close("TransformerBlock", got, params[key].grad, atol=1e-4, rtol=1e-4, case=case,
                         what=f"gradient w.r.t. {key}",
                         hint="The attention reads LN_1(x) and the FFN reads LN_2(h), h the stream after attention.")


# ---------------------------------------------------------------- GPTLike

# Weights load as strictly as load_state_dict(strict=True), except that a buffer the learner registered (nanoGPT's
# persistent causal mask) is not a weight the check must supply. The learner's logits for each variant of the input,
# then for the first variant again with other blocks' weights (a model that skips its blocks does not notice).
_GPT_PROBE = """
import torch

def _load(module, weights):
    missing, unexpected = module.load_state_dict(weights, strict=False)
    buffers = dict(module.named_buffers())
    if unexpected or any(key not in buffers for key in missing):
        module.load_state_dict(weights)  # strict: torch's own message names the keys

model = GPTLike(vocab_size, d_model, n_heads, d_ff, n_layers, max_len)
_load(model, sd)
model.eval()
with torch.no_grad():
    outs = [model(v) for v in variants]
    _load(model, other_blocks)
    with_other_blocks = model(variants[0])
"""


def _ids(r, vocab, b, n):
    return _torch().from_numpy(r.integers(0, vocab, size=(b, n))).long()


def _probe_gpt(seed, V, d, h, d_ff, L, T, variants, substitute=SUB_GPT):
    """(case, the learner's logits for each variant, logits of variant 0 with other block weights), seeded weights."""
    torch = _torch()
    sd = _gpt_sd(generator(seed), V, d, d_ff, L, T)
    other = {**sd, **{k: v for k, v in _gpt_sd(generator(seed + 1000), V, d, d_ff, L, T).items()
                      if k.startswith("blocks.")}}
    b, n = variants[0].shape
    case = f"GPTLike({V}, {d}, {h}, {d_ff}, {L}, max_len={T}) with seeded weights loaded, ids of shape {(b, n)}"
    got = env().run("GPTLike", _GPT_PROBE,
                    inputs={"variants": variants, "sd": sd, "other_blocks": other, "vocab_size": V, "d_model": d,
                            "n_heads": h, "d_ff": d_ff, "n_layers": L, "max_len": T},
                    outputs=["outs", "with_other_blocks"], case=case, forbid=FORBID_TRANSFORMER, substitute=substitute)
    outs = got["outs"]
    expect(isinstance(outs, list) and all(isinstance(o, torch.Tensor) for o in outs)
           and isinstance(got["with_other_blocks"], torch.Tensor),
           f"GPTLike: expected a torch.Tensor of logits for {case}; got "
           f"{type(outs[0] if isinstance(outs, list) and outs else outs).__name__}.")
    for out in outs:
        expect_shape("GPTLike", out, (b, n, V), case=case,
                     hint="One row of vocab_size logits per position; take positions 0..n-1, not the whole table.")
    return case, outs, got["with_other_blocks"], sd


def _expect_blocks_used(case, logits, with_other_blocks):
    change = float((logits.double() - with_other_blocks.double()).abs().max()) if logits.shape == with_other_blocks.shape else 1.0
    expect(change > 1e-6,
           f"GPTLike: the logits did not change when the blocks' weights changed, for {case}. The model must send "
           "the embeddings through every block in self.blocks, one after the other, before ln_f and the unembedding.")


def _expect_reads_context(case, base, changed_first, position_hint):
    change = float((changed_first[:, 1:].double() - base[:, 1:].double()).abs().max())
    expect(change > 1e-6,
           f"GPTLike: the logits at positions 1.. did not change when only token 0 changed, for {case}: each "
           f"position sees only its own token (a bigram model). {position_hint}")


def _first_changed(ids, V):
    changed = ids.clone()
    changed[:, 0] = (changed[:, 0] + 1) % V
    return changed


def test_GPTLike():
    """Logits for full-length inputs with loaded random weights against a float64 reference."""
    # (seed, vocab, d_model, n_heads, d_ff, n_layers, max_len, batch); here n = max_len
    for seed, V, d, h, d_ff, L, T, b in [(91, 11, 16, 4, 32, 2, 6, 2), (92, 23, 12, 3, 24, 3, 9, 3),
                                         (93, 7, 8, 2, 16, 1, 5, 2)]:
        ids = _ids(np.random.default_rng(seed), V, b, T)
        case, (got,), _, sd = _probe_gpt(seed, V, d, h, d_ff, L, T, [ids])
        ref = lambda **kw: _ref_gpt(ids, _f64(sd), h, L, **kw)  # noqa: E731
        hint = _hint_of(got, [(ref(final_ln=False), "Apply the final LayerNorm ln_f before the unembedding."),
                              (ref(positions=False), "Add a position embedding to each token embedding: row t of "
                                                     "the position table for the token at position t.")],
                        "Follow the three steps in order: token plus position embeddings, every block with the "
                        "causal mask, then the final LayerNorm and the unembedding.")
        expect_close("GPTLike", got, ref(), atol=1e-4, rtol=1e-4, case=case, what="logits", hint=hint)


def test_GPTLike_shape():
    """Logits of shape (batch, n, vocab_size) for prompts shorter than max_len, one token, and a batch of one, from a
    model that uses its blocks and (for n > 1) the earlier tokens."""
    torch = _torch()
    for seed, V, d, h, d_ff, L, T, b, n in [(94, 13, 8, 2, 16, 2, 10, 3, 4), (95, 9, 12, 4, 24, 1, 8, 1, 1),
                                            (96, 30, 8, 2, 16, 2, 16, 2, 16), (97, 5, 8, 1, 8, 3, 12, 1, 7)]:
        ids = _ids(np.random.default_rng(seed), V, b, n)
        case, (got, got_first), other, _ = _probe_gpt(seed, V, d, h, d_ff, L, T, [ids, _first_changed(ids, V)])
        expect(got.dtype.is_floating_point and bool(torch.isfinite(got).all()),
               f"GPTLike: logits must be finite floating-point numbers for {case}; got dtype {got.dtype}.")
        _expect_blocks_used(case, got, other)
        if n > 1:
            _expect_reads_context(case, got, got_first, "Send the embeddings through the blocks, whose attention "
                                                        "mixes the positions.")


def test_GPTLike_causal():
    """Changing the tokens after position t leaves the logits at positions 0..t unchanged, and changing token 0
    changes the logits after it (the model reads its context, through its blocks)."""
    torch = _torch()
    for seed, V, d, h, d_ff, L, T, b in [(98, 17, 16, 4, 32, 2, 8, 2), (99, 10, 12, 3, 24, 3, 6, 1)]:
        r = np.random.default_rng(seed)
        ids = _ids(r, V, b, T)
        ts = [0, T // 2, T - 2]
        variants = [ids]
        for t in ts:
            changed = ids.clone()
            changed[:, t + 1:] = (changed[:, t + 1:] + torch.from_numpy(r.integers(1, V, size=(b, T - t - 1)))) % V
            variants.append(changed)
        case, outs, other, _ = _probe_gpt(seed, V, d, h, d_ff, L, T, variants + [_first_changed(ids, V)],
                                          SUB_GPT_MASKED)
        for t, out in zip(ts, outs[1:-1]):
            diff = float((out[:, : t + 1] - outs[0][:, : t + 1]).abs().max())
            expect(diff <= 1e-5,
                   f"GPTLike: the logits at positions 0..{t} changed by up to {diff:.3g} when only tokens after "
                   f"position {t} changed, for {case}. Build the causal mask (True on and below the diagonal) and "
                   "pass it to every block: block(x, mask).")
        _expect_reads_context(case, outs[0], outs[-1], "Causal means each position sees itself and the positions "
                                                       "before it, through the blocks' attention.")
        _expect_blocks_used(case, outs[0], other)


# ---------------------------------------------------------------- convert_gpt2 (Hugging Face GPT-2 -> GPTLike)
#
# The reference is Hugging Face's own GPT2LMHeadModel, built from a tiny GPT2Config with every parameter drawn here
# from a fixed seed (nothing is downloaded). The learner's answer is a state_dict, plain data: the check runs it
# through a float64 GPTLike written here with GPT-2's GELU (the tanh approximation), so a slip in exercises 1-4 cannot
# cost this exercise, and compares the activations with GPT-2's (also float64) stage by stage: the first stage that
# differs names the layer to look at.

GPT2_TOL = 1e-5          # on the logits, float64 on both sides (a right mapping agrees to about 1e-12)


def _tiny_gpt2(*args):
    """The notebook's provided `tiny_gpt2`: every parameter random (biases and LayerNorms too, so no swap can hide)."""
    return load(provided("06", "provided_gpt2"))["tiny_gpt2"](*args)


def _gpt2_expected(hf_sd, n_layers):
    """GPTLike's name -> the tensor GPT-2 holds for it (the mapping, written independently of the learner's)."""
    d = hf_sd["transformer.wte.weight"].shape[1]
    want = {"tok_emb.weight": hf_sd["transformer.wte.weight"], "pos_emb.weight": hf_sd["transformer.wpe.weight"]}
    for i in range(n_layers):                       # in the order the forward pass uses them
        h, b = f"transformer.h.{i}.", f"blocks.{i}."
        want[b + "ln1.weight"], want[b + "ln1.bias"] = hf_sd[h + "ln_1.weight"], hf_sd[h + "ln_1.bias"]
        w_attn, b_attn = hf_sd[h + "attn.c_attn.weight"], hf_sd[h + "attn.c_attn.bias"]
        for j, name in enumerate(("W_q", "W_k", "W_v")):
            want[f"{b}attn.{name}.weight"] = w_attn[:, j * d:(j + 1) * d].t()
            want[f"{b}attn.{name}.bias"] = b_attn[j * d:(j + 1) * d]
        for ours, theirs in (("attn.W_o", "attn.c_proj"), ("ln2", "ln_2"), ("ffn.fc1", "mlp.c_fc"),
                             ("ffn.fc2", "mlp.c_proj")):
            weight = hf_sd[f"{h}{theirs}.weight"]
            want[f"{b}{ours}.weight"] = weight if ours == "ln2" else weight.t()
            want[f"{b}{ours}.bias"] = hf_sd[f"{h}{theirs}.bias"]
    want.update({"ln_f.weight": hf_sd["transformer.ln_f.weight"], "ln_f.bias": hf_sd["transformer.ln_f.bias"],
                 "unembed.weight": hf_sd["lm_head.weight"]})
    return {k: v.detach().clone() for k, v in want.items()}


def _gpt2_stages(ids, sd, n_heads, n_layers):
    """GPTLike with GPT-2's GELU, float64: [(stage name, activation)] in the order the forward pass meets them."""
    import torch.nn.functional as F

    n = ids.shape[1]
    x = F.embedding(ids, sd["tok_emb.weight"]) + sd["pos_emb.weight"][:n]
    stages = [("the embeddings (tok_emb(ids) + pos_emb(positions))", x)]
    for i in range(n_layers):
        b = f"blocks.{i}."
        x = x + _ref_attn(_ref_ln(x, sd, b + "ln1."), sd, b + "attn.", n_heads, causal_mask(n))
        stages.append((f"block {i} after attention (x + attn(ln1(x)))", x))
        x = x + _ref_ffn(_ref_ln(x, sd, b + "ln2."), sd, b + "ffn.", "tanh")
        stages.append((f"block {i} after the FFN (x + ffn(ln2(x)))", x))
    x = _ref_ln(x, sd, "ln_f.")
    return stages + [("the final LayerNorm (ln_f)", x), ("the logits (unembed)", x @ sd["unembed.weight"].T)]


def _hf_stages(model, ids, n_layers):
    """The same stages read out of Hugging Face's model with forward hooks."""
    import torch

    seen = {}
    hooks = []
    for i, block in enumerate(model.transformer.h):
        hooks.append(block.ln_1.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(("in", i), a[0])))
        hooks.append(block.ln_2.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(("mid", i), a[0])))
    hooks.append(model.transformer.ln_f.register_forward_pre_hook(lambda m, a: seen.__setitem__(("in", n_layers), a[0])))
    hooks.append(model.transformer.ln_f.register_forward_hook(lambda m, a, out: seen.__setitem__("ln_f", out)))
    try:
        with torch.no_grad():
            logits = model(ids).logits
    finally:
        for hook in hooks:
            hook.remove()
    return ([seen[("in", 0)]] + [s for i in range(n_layers) for s in (seen[("mid", i)], seen[("in", i + 1)])]
            + [seen["ln_f"], logits])


def _convert(seed, V, T, d, h, L, n_inner=None):
    """GPT-2 built from the seed, (the learner's state dict for it, what each GPTLike name should hold), the case."""
    import torch

    model = _tiny_gpt2(seed, V, T, d, h, L, n_inner)
    hf_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    case = (f"a tiny random GPT-2 (vocab_size={V}, n_positions={T}, n_embd={d}, n_head={h}, n_layer={L}"
            + (f", n_inner={n_inner}" if n_inner else "") + ")")
    got = env().call("convert_gpt2", hf_sd, L, case=case)
    expect(isinstance(got, dict) and "__opaque__" not in got,
           f"convert_gpt2: expected a dict from names to tensors (a state_dict) for {case}; got "
           f"{got.get('__opaque__') if isinstance(got, dict) else type(got).__name__}.")
    bad = [k for k, v in got.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckFailed(f"convert_gpt2: the values must be tensors for {case}; {bad[0]!r} holds "
                          f"{type(got[bad[0]]).__name__}.")
    return model, got, _gpt2_expected(hf_sd, L), case


def _expect_shapes(got, want, case, hint):
    for key in (k for k in want if k in got):  # in forward order: the first one named is the first one met
        expect(tuple(got[key].shape) == tuple(want[key].shape),
               f"convert_gpt2: {key} has shape {tuple(got[key].shape)} for {case}; GPTLike's is "
               f"{tuple(want[key].shape)}. A Conv1D weight is (in, out), an nn.Linear weight (out, in){hint}")


def _gpt2_hint(got, want):
    """Where the check can tell the cause of a difference, say it; else name the first entry that differs."""
    missing = [k for k in want if k not in got]
    if missing:
        return (f"Your state dict has no {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}: every "
                "parameter of GPTLike needs an entry (GPT-2's lm_head.weight is its wte.weight: tied).")
    wrong = [k for k in want if tuple(got[k].shape) == tuple(want[k].shape) and not _close(got[k], want[k])]
    if not wrong:
        return "Every entry matches GPT-2's; check the names against GPTLike's state_dict()."
    key = wrong[0]
    if want[key].dim() == 2 and want[key].shape[0] == want[key].shape[1] and _close(got[key], want[key].t()):
        return (f"{key} is GPT-2's weight untransposed. A Hugging Face Conv1D stores W as (in, out) and computes "
                "x @ W + b; nn.Linear stores (out, in): transpose every Conv1D weight, square ones included.")
    for x, y in (("W_q", "W_k"), ("W_k", "W_q"), ("W_k", "W_v"), ("W_v", "W_k"), ("W_q", "W_v"), ("W_v", "W_q")):
        other = key.replace(f".attn.{x}.", f".attn.{y}.")
        if f".attn.{x}." in key and _close(got[key], want[other]):
            return (f"{key} holds what GPT-2 keeps for {other}: c_attn's output columns are "
                    "[queries | keys | values], n_embd each, in that order.")
    return f"{key} is not what GPT-2 holds for it (the first entry, in forward order, that differs)."


def test_convert_gpt2():
    """Tiny random GPT-2s: with the learner's state dict, GPTLike (GPT-2's GELU) gives Hugging Face's logits to 1e-5,
    batch > 1, causal; a difference is reported at the first stage (embeddings, block i's attention or FFN, ln_f,
    logits) where the activations part."""
    import torch

    for seed, V, T, d, h, L, n_inner, b, n in [(301, 37, 12, 16, 4, 2, None, 3, 9), (302, 50, 10, 24, 3, 3, 40, 2, 10),
                                               (303, 19, 8, 8, 2, 1, None, 4, 5)]:
        model, got, want, case = _convert(seed, V, T, d, h, L, n_inner)
        _expect_shapes(got, want, case, ": transpose.")
        # a missing entry holds what a fresh GPTLike would (LayerNorm weights ones, the rest zeros)
        fresh = {k: torch.ones_like(w) if k.split(".")[-2] in ("ln1", "ln2", "ln_f") and k.endswith("weight")
                 else torch.zeros_like(w) for k, w in want.items()}
        shaped = {k: got.get(k, fresh[k]).double() for k in want}
        ids = torch.from_numpy(np.random.default_rng(seed).integers(0, V, size=(b, n))).long()
        ours = _gpt2_stages(ids, shaped, h, L)
        theirs = _hf_stages(model.double(), ids, L)
        for index, ((stage, a), ref) in enumerate(zip(ours, theirs)):
            error = float((a - ref).abs().max())
            if error > GPT2_TOL:
                before = "" if index == 0 else f" (everything before it matches: {ours[index - 1][0]})"
                raise CheckFailed(
                    f"convert_gpt2: with your state dict the activations first differ from GPT-2's at {stage}, by "
                    f"up to {error:.3g}, for {case}, ids of shape {(b, n)}{before}. " + _gpt2_hint(got, want))
        expect_close("convert_gpt2", ours[-1][1], theirs[-1], atol=GPT2_TOL, case=f"{case}, ids of shape {(b, n)}",
                     what="logits")


def test_convert_gpt2_names():
    """Every entry of the result is a GPTLike parameter with GPTLike's shape and GPT-2's values for it:
    load_state_dict(strict=True) would accept it (missing entries are the logits test's business: it names them)."""
    for seed, V, T, d, h, L, n_inner in [(311, 23, 9, 12, 3, 2, None), (312, 31, 6, 20, 5, 3, 28)]:
        _, got, want, case = _convert(seed, V, T, d, h, L, n_inner)
        extra = [k for k in got if k not in want]
        expect(not extra,
               f"convert_gpt2: the state dict has {len(extra)} entries GPTLike does not have for {case}, e.g. "
               f"{', '.join(repr(k) for k in extra[:3])}; load_state_dict(strict=True) refuses them. Return only "
               "GPTLike's names (tok_emb.weight, blocks.0.attn.W_q.weight, ...).")
        _expect_shapes(got, want, case, ".")
        # a name with the right shape earns nothing unless it holds the tensor GPT-2 keeps under it
        wrong = [k for k, v in got.items() if not _close(v, want[k])]
        expect(not wrong,
               f"convert_gpt2: {wrong[0] if wrong else ''} has GPTLike's name and shape but not the values GPT-2 "
               f"holds for it, for {case} ({len(wrong)} of {len(got)} entries differ). "
               + (_gpt2_hint(got, want) if all(k in got for k in want) else
                  "Each entry must be GPT-2's tensor for that parameter (transposed where GPT-2 uses Conv1D)."))
