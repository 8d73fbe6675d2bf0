"""Hidden checks for chapter 6, `06_transformer_block` (PyTorch).

One function per hidden-test call in `solutions/06_transformer_block.ipynb`. Every check builds the learner's module
inside the learner's kernel (`env().run`), loads a state_dict made here from a fixed seed (or reads gradients out),
and compares with a reference computed here, in float64, from torch primitives (`torch.nn.LayerNorm`,
`F.linear`, `F.gelu`, `F.scaled_dot_product_attention`) with the same weights.

The interfaces the checks rely on (the notebook states them):

- `LayerNorm(d, eps=1e-5)`: parameters `weight` (ones), `bias` (zeros); normalises the last dimension.
- `FeedForward(d_model, d_ff, activation="relu"|"gelu")`: `fc1 = nn.Linear(d_model, d_ff)`,
  `fc2 = nn.Linear(d_ff, d_model)`; GELU is the exact (erf) one.
- `MultiHeadAttention(d_model, n_heads)` (provided): `W_q, W_k, W_v, W_o` linear layers; `forward(x, mask=None)` with a
  boolean `(n, n)` mask, `True` = may attend.
- `TransformerBlock(d_model, n_heads, d_ff, activation="gelu")`: `ln1, attn, ln2, ffn`, pre-norm,
  `forward(x, mask=None)`: `x = x + attn(ln1(x), mask); x = x + ffn(ln2(x))`.
- `GPTLike(vocab_size, d_model, n_heads, d_ff, n_layers, max_len)`: `tok_emb`, `pos_emb` (learned, `nn.Embedding`),
  `blocks` (`nn.ModuleList`), `ln_f`, `unembed` (`nn.Linear(d_model, vocab_size, bias=False)`);
  `forward(ids)` with ids `(batch, n)`, `n <= max_len`, returns logits `(batch, n, vocab_size)` and passes a causal
  mask to every block.

Tolerances: float32 modules against float64 references, `atol=1e-5, rtol=1e-4` for LayerNorm and the FFN,
`atol=1e-4, rtol=1e-4` for a block and the full model (more float32 operations in a row); the residual check wants the
identity to `1e-6`; the causality check wants logits at positions `<= t` unchanged to `1e-5`.

Where a module is built from an earlier exercise's module (a block from LayerNorm and FeedForward, the model from
blocks), the check substitutes the notebook's own solutions (`sources`), so one wrong answer costs only its own exercise's points.
"""
from __future__ import annotations

import math

import numpy as np

from .references import causal_mask, generator, tensor
from .sources import provided, solution
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

# ---------------------------------------------------------------- substitutes that travel into the learner's kernel
# (source text read from the notebook: its provided attention cell and its solutions of the earlier exercises)

PROVIDED_ATTENTION = provided("06", "provided_attention")
REF_LAYERNORM = solution("06", "LayerNorm")
REF_FEEDFORWARD = solution("06", "FeedForward")

# A reference block; `_ALWAYS_CAUSAL` decides whether it uses the mask it is given or always the causal one.
_REF_BLOCK_TEMPLATE = PROVIDED_ATTENTION + REF_LAYERNORM + REF_FEEDFORWARD + '''

class TransformerBlock(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, activation="gelu"):
        super().__init__()
        self.ln1 = LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ln2 = LayerNorm(d_model)
        self.ffn = FeedForward(d_model, d_ff, activation)

    def forward(self, x, mask=None):
        if _ALWAYS_CAUSAL:
            n = x.shape[-2]
            mask = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        x = x + self.attn(self.ln1(x), mask)
        return x + self.ffn(self.ln2(x))
'''
REF_BLOCK_CAUSAL = "_ALWAYS_CAUSAL = True\n" + _REF_BLOCK_TEMPLATE
REF_BLOCK_MASKED = "_ALWAYS_CAUSAL = False\n" + _REF_BLOCK_TEMPLATE

SUB_BLOCK = {"LayerNorm": REF_LAYERNORM, "FeedForward": REF_FEEDFORWARD, "MultiHeadAttention": PROVIDED_ATTENTION}


# ---------------------------------------------------------------- random weights (made here, loaded there)

def _ln_sd(g, d, prefix="", random=True):
    import torch

    if not random:
        return {prefix + "weight": torch.ones(d), prefix + "bias": torch.zeros(d)}
    return {prefix + "weight": 1 + 0.3 * torch.randn(d, generator=g), prefix + "bias": 0.2 * torch.randn(d, generator=g)}


def _linear_sd(g, d_in, d_out, prefix, bias=True):
    import torch

    sd = {prefix + "weight": torch.randn(d_out, d_in, generator=g) / math.sqrt(d_in)}
    if bias:
        sd[prefix + "bias"] = 0.1 * torch.randn(d_out, generator=g)
    return sd


def _ffn_sd(g, d, d_ff, prefix=""):
    return {**_linear_sd(g, d, d_ff, prefix + "fc1."), **_linear_sd(g, d_ff, d, prefix + "fc2.")}


def _attn_sd(g, d, prefix=""):
    sd = {}
    for name in ("W_q", "W_k", "W_v", "W_o"):
        sd.update(_linear_sd(g, d, d, f"{prefix}{name}."))
    return sd


def _block_sd(g, d, d_ff, prefix="", random_ln=True):
    return {**_ln_sd(g, d, prefix + "ln1.", random_ln), **_attn_sd(g, d, prefix + "attn."),
            **_ln_sd(g, d, prefix + "ln2.", random_ln), **_ffn_sd(g, d, d_ff, prefix + "ffn.")}


def _gpt_sd(g, vocab, d, d_ff, n_layers, max_len):
    import torch

    sd = {"tok_emb.weight": torch.randn(vocab, d, generator=g), "pos_emb.weight": 0.5 * torch.randn(max_len, d, generator=g)}
    for i in range(n_layers):
        sd.update(_block_sd(g, d, d_ff, f"blocks.{i}."))
    sd.update(_ln_sd(g, d, "ln_f."))
    sd.update(_linear_sd(g, d, vocab, "unembed.", bias=False))
    return sd


# ---------------------------------------------------------------- references computed here (float64)

def _f64(sd):
    return {k: v.double() for k, v in sd.items()}


def _ref_ln(x, sd, prefix, eps=1e-5):
    import torch.nn.functional as F

    return F.layer_norm(x, (x.shape[-1],), sd[prefix + "weight"], sd[prefix + "bias"], eps)


def _ref_ffn(x, sd, prefix, activation):
    import torch.nn.functional as F

    h = F.linear(x, sd[prefix + "fc1.weight"], sd[prefix + "fc1.bias"])
    h = F.relu(h) if activation == "relu" else F.gelu(h)
    return F.linear(h, sd[prefix + "fc2.weight"], sd[prefix + "fc2.bias"])


def _ref_attn(x, sd, prefix, n_heads, mask):
    import torch.nn.functional as F

    b, n, d = x.shape
    q, k, v = (F.linear(x, sd[f"{prefix}{w}.weight"], sd[f"{prefix}{w}.bias"]).view(b, n, n_heads, d // n_heads)
               .transpose(1, 2) for w in ("W_q", "W_k", "W_v"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return F.linear(out.transpose(1, 2).reshape(b, n, d), sd[prefix + "W_o.weight"], sd[prefix + "W_o.bias"])


def _ref_block(x, sd, prefix, n_heads, mask, activation="gelu", variant="pre"):
    attn = lambda h: _ref_attn(h, sd, prefix + "attn.", n_heads, mask)  # noqa: E731
    ffn = lambda h: _ref_ffn(h, sd, prefix + "ffn.", activation)  # noqa: E731
    ln1 = lambda h: _ref_ln(h, sd, prefix + "ln1.")  # noqa: E731
    ln2 = lambda h: _ref_ln(h, sd, prefix + "ln2.")  # noqa: E731
    if variant == "pre":
        x = x + attn(ln1(x))
        return x + ffn(ln2(x))
    if variant == "post":
        x = ln1(x + attn(x))
        return ln2(x + ffn(x))
    if variant == "parallel":
        return x + attn(ln1(x)) + ffn(ln2(x))
    if variant == "no_residual":
        return ffn(ln2(attn(ln1(x))))
    if variant == "same_ln":
        x = x + attn(ln1(x))
        return x + ffn(ln1(x))
    raise ValueError(variant)


def _ref_gpt(ids, sd, n_heads, n_layers, final_ln=True, positions=True):
    import torch.nn.functional as F

    n = ids.shape[1]
    x = F.embedding(ids, sd["tok_emb.weight"])
    if positions:
        x = x + sd["pos_emb.weight"][:n]
    for i in range(n_layers):
        x = _ref_block(x, sd, f"blocks.{i}.", n_heads, causal_mask(n))
    if final_ln:
        x = _ref_ln(x, sd, "ln_f.")
    return x @ sd["unembed.weight"].T


def _close(got, want, atol, rtol):
    import torch

    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
        return False
    return bool(torch.allclose(got.double(), want.double(), atol=atol, rtol=rtol))


# ---------------------------------------------------------------- LayerNorm

_LN_FORWARD = """
import torch
m = LayerNorm(d)
with torch.no_grad():
    y = m(x)
"""


def test_LayerNorm():
    """Forward with the initial parameters, inputs with leading batch dimensions, against torch.nn.LayerNorm."""
    import torch

    for seed, shape in [(61, (4, 16)), (62, (2, 5, 12)), (63, (2, 3, 4, 10)), (64, (1, 7, 24))]:
        r = np.random.default_rng(seed)
        rows = r.normal(size=shape)  # then a spread and a shift per row, drawn in this order
        x = tensor(rows * r.uniform(2, 5, size=shape[:-1] + (1,)) + r.normal(size=shape[:-1] + (1,)) * 3, "float32")
        case = f"x of shape {shape}, LayerNorm({shape[-1]})"
        got = env().run("LayerNorm", _LN_FORWARD, inputs={"x": x, "d": shape[-1]}, outputs=["y"], case=case,
                        forbid=FORBID_LN)["y"]
        want = torch.nn.LayerNorm(shape[-1]).double()(x.double()).detach()
        expect_close("LayerNorm", got, want, atol=1e-5, rtol=1e-4, case=case,
                     hint="Normalise over the last dimension only (dim=-1, keepdim=True), with the biased variance "
                          "(divide by d, not d-1).")


_LN_PARAMS = """
import torch
m = LayerNorm(d)
names = sorted(name for name, _ in m.named_parameters())
init = {name: p.detach().clone() for name, p in m.named_parameters()}
m.load_state_dict(sd)
with torch.no_grad():
    y = m(x)
"""


def test_LayerNorm_params():
    """Parameters named weight and bias, initialised to ones and zeros, applied as x_hat * weight + bias."""
    import torch

    for seed, (n, d) in [(65, (6, 16)), (66, (3, 9))]:
        r = np.random.default_rng(seed)
        x = tensor(r.normal(size=(n, d)) * 3 + 1, "float32")
        sd = _ln_sd(generator(seed), d)
        case = f"LayerNorm({d}) with weight and bias loaded from a state_dict, x of shape {(n, d)}"
        out = env().run("LayerNorm", _LN_PARAMS, inputs={"x": x, "d": d, "sd": sd}, outputs=["names", "init", "y"],
                        case=case, forbid=FORBID_LN)
        expect(out["names"] == ["bias", "weight"],
               f"LayerNorm: expected exactly the parameters ['bias', 'weight'] for LayerNorm({d}); got {out['names']}. "
               "Register them with nn.Parameter under the names weight and bias.")
        for name, value in (("weight", 1.0), ("bias", 0.0)):
            p = out["init"][name]
            expect(isinstance(p, torch.Tensor) and tuple(p.shape) == (d,) and bool(torch.all(p == value)),
                   f"LayerNorm: `{name}` should start as {'ones' if value else 'zeros'} of shape ({d},) for "
                   f"LayerNorm({d}); got {getattr(p, 'shape', p)}. Initialise it so that a fresh LayerNorm only normalises.")
        want = torch.nn.functional.layer_norm(x.double(), (d,), sd["weight"].double(), sd["bias"].double(), 1e-5)
        expect_close("LayerNorm", out["y"], want, atol=1e-5, rtol=1e-4, case=case,
                     hint="The output is x_hat * weight + bias: scale first, then shift.")


_LN_GRAD = """
import torch
m = LayerNorm(d)
xg = x.clone().requires_grad_(True)
y = m(xg)
(y * g).sum().backward()
gx = xg.grad
gw = m.weight.grad
gb = m.bias.grad
"""


def test_LayerNorm_grad():
    """Backward pass: gradients with respect to the input and both parameters, against torch.nn.LayerNorm."""
    import torch

    for seed, (n, d) in [(67, (5, 12)), (68, (2, 20))]:
        r = np.random.default_rng(seed)
        x = tensor(r.normal(size=(n, d)) * 2 - 1, "float32")
        g = tensor(r.normal(size=(n, d)), "float32")
        case = f"LayerNorm({d}), x of shape {(n, d)}, loss (y * g).sum()"
        out = env().run("LayerNorm", _LN_GRAD, inputs={"x": x, "d": d, "g": g}, outputs=["gx", "gw", "gb"],
                        case=case, forbid=FORBID_LN)
        ref = torch.nn.LayerNorm(d).double()
        xr = x.double().requires_grad_(True)
        (ref(xr) * g.double()).sum().backward()
        for key, want, what in (("gx", xr.grad, "gradient w.r.t. x"), ("gw", ref.weight.grad, "gradient w.r.t. weight"),
                                ("gb", ref.bias.grad, "gradient w.r.t. bias")):
            expect(out[key] is not None,
                   f"LayerNorm: the {what} is None for {case}. Make weight and bias nn.Parameters and keep the "
                   "computation inside autograd.")
            expect_close("LayerNorm", out[key], want, atol=1e-5, rtol=1e-4, case=case, what=what,
                         hint="The mean and the variance depend on x too: don't detach them or compute them under "
                              "torch.no_grad().")


_LN_EPS = """
import torch
m = LayerNorm(d) if eps is None else LayerNorm(d, eps=eps)
with torch.no_grad():
    y = m(x)
"""


def test_LayerNorm_eps():
    """Rows with a tiny or zero spread: eps goes inside the square root, and the eps argument is used."""
    import torch

    r = np.random.default_rng(69)
    tiny = r.normal(size=(4, 16)) * 1e-3 + 0.5
    tiny[1] = 2.5  # a constant row: variance exactly 0
    cases = [(tiny, None, "rows with spread 1e-3 and one constant row, eps=1e-5"),
             (r.normal(size=(3, 8)) * 0.03, 1e-3, "rows with spread 0.03, LayerNorm(8, eps=1e-3)")]
    for values, eps, case in cases:
        x = tensor(values, "float32")
        d = x.shape[-1]
        got = env().run("LayerNorm", _LN_EPS, inputs={"x": x, "d": d, "eps": eps}, outputs=["y"], case=case,
                        forbid=FORBID_LN)["y"]
        want = torch.nn.functional.layer_norm(x.double(), (d,), eps=1e-5 if eps is None else eps)
        expect_close("LayerNorm", got, want, atol=1e-4, rtol=1e-3, case=case,
                     hint="Divide by sqrt(var + eps), with eps inside the square root, and use the eps the "
                          "constructor was given.")


# ---------------------------------------------------------------- FeedForward

_FFN = """
import torch
m = FeedForward(d_model, d_ff) if activation is None else FeedForward(d_model, d_ff, activation=activation)
m.load_state_dict(sd)
with torch.no_grad():
    y = m(x)
"""


def _ffn_cases(activation, cases):
    import torch.nn.functional as F

    for seed, shape, d_ff in cases:
        d = shape[-1]
        r = np.random.default_rng(seed)
        x = tensor(r.normal(size=shape), "float32")
        sd = _ffn_sd(generator(seed), d, d_ff)
        label = "" if activation is None else f', activation="{activation}"'
        case = f"FeedForward({d}, {d_ff}{label}), x of shape {shape}"
        got = env().run("FeedForward", _FFN, inputs={"x": x, "d_model": d, "d_ff": d_ff, "sd": sd, "activation": activation},
                        outputs=["y"], case=case, forbid=FORBID_TRANSFORMER)["y"]
        act = activation or "relu"
        want = _ref_ffn(x.double(), _f64(sd), "", act)
        hint = "FFN(x) = act(x W1 + b1) W2 + b2: fc1, the activation, then fc2 (no activation after fc2)."
        if act == "gelu":
            h = F.linear(x.double(), sd["fc1.weight"].double(), sd["fc1.bias"].double())
            tanh = F.linear(F.gelu(h, approximate="tanh"), sd["fc2.weight"].double(), sd["fc2.bias"].double())
            relu = _ref_ffn(x.double(), _f64(sd), "", "relu")
            if _close(got, tanh, 1e-5, 1e-4):
                hint = "That is the tanh approximation; use the exact GELU, x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))."
            elif _close(got, relu, 1e-5, 1e-4):
                hint = 'That is ReLU: with activation="gelu" use GELU(x) = 0.5 x (1 + erf(x / sqrt(2))).'
        expect_close("FeedForward", got, want, atol=1e-5, rtol=1e-4, case=case, hint=hint)


def test_FeedForward():
    """The default (ReLU) FFN with loaded weights, on inputs of several shapes."""
    _ffn_cases(None, [(71, (2, 5, 8), 32), (72, (7, 12), 20), (73, (2, 3, 4, 6), 24)])


def test_FeedForward_gelu():
    """activation="gelu": the exact GELU."""
    _ffn_cases("gelu", [(74, (3, 4, 10), 40), (75, (5, 6), 16)])


# ---------------------------------------------------------------- TransformerBlock

_BLOCK_FORWARD = """
import torch
blk = TransformerBlock(d_model, n_heads, d_ff)
blk.load_state_dict(sd)
blk.eval()
with torch.no_grad():
    y = blk(x, mask)
"""


def _mask_case(r, kind, n):
    import torch

    if kind == "causal":
        return causal_mask(n), "causal mask"
    if kind == "none":
        return None, "mask=None"
    m = torch.from_numpy(r.random((n, n)) < 0.5)
    m |= torch.eye(n, dtype=torch.bool)
    return m, "a random boolean mask (True = may attend)"


def test_TransformerBlock():
    """Pre-norm block with random weights (LayerNorms included) against a float64 reference, several shapes and masks."""
    cases = [(81, 2, 5, 16, 4, 32, "causal"), (82, 1, 7, 12, 3, 48, "causal"), (83, 3, 4, 8, 2, 16, "none"),
             (84, 2, 6, 12, 2, 24, "random")]
    for seed, b, n, d, h, d_ff, kind in cases:
        r = np.random.default_rng(seed)
        x = tensor(r.normal(size=(b, n, d)), "float32")
        mask, mask_text = _mask_case(r, kind, n)
        sd = _block_sd(generator(seed), d, d_ff)
        case = f"TransformerBlock({d}, {h}, {d_ff}), x of shape {(b, n, d)}, {mask_text}"
        got = env().run("TransformerBlock", _BLOCK_FORWARD,
                        inputs={"x": x, "mask": mask, "sd": sd, "d_model": d, "n_heads": h, "d_ff": d_ff},
                        outputs=["y"], case=case, forbid=FORBID_TRANSFORMER, substitute=SUB_BLOCK)["y"]
        sd64, x64 = _f64(sd), x.double()
        want = _ref_block(x64, sd64, "", h, mask)
        hint = "Pre-norm: x = x + attn(ln1(x), mask), then x = x + ffn(ln2(x))."
        for variant, text in (("post", "That is the post-norm block (LayerNorm after the residual add). This chapter's "
                                        "block is pre-norm: x = x + attn(ln1(x), mask); x = x + ffn(ln2(x))."),
                              ("parallel", "Attention and FFN both read the block's input (a parallel block); here the "
                                           "FFN reads the stream after the attention update: x = x + ffn(ln2(x))."),
                              ("no_residual", "The residual connections are missing: add each sub-layer's output to x."),
                              ("same_ln", "The FFN must read ln2(x), its own LayerNorm, not ln1(x).")):
            if _close(got, _ref_block(x64, sd64, "", h, mask, variant=variant), 1e-4, 1e-4):
                hint = text
                break
        expect_close("TransformerBlock", got, want, atol=1e-4, rtol=1e-4, case=case, hint=hint)


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
        x = tensor(r.normal(size=(b, n, d)) * 2, "float32")
        g = tensor(r.normal(size=(b, n, d)), "float32")
        sd = _block_sd(generator(seed), d, d_ff, random_ln=False)
        for key in wanted:
            sd[key] = torch.zeros_like(sd[key])
        mask = causal_mask(n)
        case = f"TransformerBlock({d}, {h}, {d_ff}) with attn.W_o and ffn.fc2 set to zero, x of shape {(b, n, d)}"
        out = env().run("TransformerBlock", _BLOCK_RESIDUAL,
                        inputs={"x": x, "g": g, "mask": mask, "sd": sd, "d_model": d, "n_heads": h, "d_ff": d_ff,
                                "wanted": wanted},
                        outputs=["y", "gx", "grads", "unchanged", "error"], case=case, forbid=FORBID_TRANSFORMER,
                        substitute=SUB_BLOCK)
        expect(out["error"] is None,
               f"TransformerBlock: raised {out['error']} for {case}, with x requiring grad. Did you add in place "
               "(x += ...)? Write x = x + ..., so the caller's tensor and autograd's record stay intact.")
        expect(out["unchanged"],
               f"TransformerBlock: the input tensor was modified for {case}. Write x = x + ..., not x += ...")
        expect_close("TransformerBlock", out["y"], x, atol=1e-6, case=case,
                     hint="When both sub-layers output zero, a block with residual connections returns its input "
                          "unchanged: x = x + sublayer(...), and no LayerNorm on the stream itself.")
        expect_close("TransformerBlock", out["gx"], g, atol=1e-6, case=case, what="gradient w.r.t. x",
                     hint="The residual path carries the gradient straight through: d(x + f(x))/dx = I + df/dx.")
        sd64 = _f64(sd)
        params = {k: v.clone().requires_grad_(True) for k, v in sd64.items()}
        (_ref_block(x.double(), params, "", h, mask) * g.double()).sum().backward()
        for key in wanted:
            got = out["grads"].get(key) if isinstance(out["grads"], dict) else None
            expect(got is not None, f"TransformerBlock: no gradient for {key} for {case}. Keep the sub-layers in the "
                                    "computation (no detach, no torch.no_grad()).")
            expect_close("TransformerBlock", got, params[key].grad, atol=1e-4, rtol=1e-4, case=case,
                         what=f"gradient w.r.t. {key}",
                         hint="The attention reads ln1(x) and the FFN reads ln2(x + attn(...)).")


# ---------------------------------------------------------------- GPTLike

# Weights load as strictly as load_state_dict(strict=True), except that a buffer the learner registered (nanoGPT's
# persistent causal mask) is not a weight the check must supply.
_LOAD_WEIGHTS = """
def _load(module, weights):
    missing, unexpected = module.load_state_dict(weights, strict=False)
    buffers = dict(module.named_buffers())
    if unexpected or any(key not in buffers for key in missing):
        module.load_state_dict(weights)  # strict: torch's own message names the keys
"""

_GPT_FORWARD = _LOAD_WEIGHTS + """
import torch
model = GPTLike(vocab_size, d_model, n_heads, d_ff, n_layers, max_len)
if sd is not None:
    _load(model, sd)
model.eval()
with torch.no_grad():
    logits = model(ids)
"""

SUB_GPT = {"TransformerBlock": REF_BLOCK_CAUSAL, "LayerNorm": REF_LAYERNORM}
SUB_GPT_MASKED = {"TransformerBlock": REF_BLOCK_MASKED, "LayerNorm": REF_LAYERNORM}


def _ids(r, vocab, b, n):
    import torch

    return torch.from_numpy(r.integers(0, vocab, size=(b, n))).long()


def test_GPTLike():
    """Logits for full-length inputs with loaded random weights against a float64 reference."""
    # (seed, vocab, d_model, n_heads, d_ff, n_layers, max_len, batch); here n = max_len
    for seed, V, d, h, d_ff, L, T, b in [(91, 11, 16, 4, 32, 2, 6, 2), (92, 23, 12, 3, 24, 3, 9, 3),
                                         (93, 7, 8, 2, 16, 1, 5, 2)]:
        r = np.random.default_rng(seed)
        ids = _ids(r, V, b, T)
        sd = _gpt_sd(generator(seed), V, d, d_ff, L, T)
        case = f"GPTLike({V}, {d}, {h}, {d_ff}, {L}, max_len={T}), ids of shape {(b, T)}"
        got = env().run("GPTLike", _GPT_FORWARD,
                        inputs={"ids": ids, "sd": sd, "vocab_size": V, "d_model": d, "n_heads": h, "d_ff": d_ff,
                                "n_layers": L, "max_len": T},
                        outputs=["logits"], case=case, forbid=FORBID_TRANSFORMER, substitute=SUB_GPT)["logits"]
        sd64 = _f64(sd)
        want = _ref_gpt(ids, sd64, h, L)
        hint = "logits = unembed(ln_f(blocks(tok_emb(ids) + pos_emb(positions))))."
        if _close(got, _ref_gpt(ids, sd64, h, L, final_ln=False), 1e-4, 1e-4):
            hint = "Apply the final LayerNorm ln_f before the unembedding."
        elif _close(got, _ref_gpt(ids, sd64, h, L, positions=False), 1e-4, 1e-4):
            hint = "Add the position embeddings pos_emb(arange(n)) to the token embeddings."
        expect_close("GPTLike", got, want, atol=1e-4, rtol=1e-4, case=case, what="logits", hint=hint)


_GPT_PROBE = _LOAD_WEIGHTS + """
import torch
model = GPTLike(vocab_size, d_model, n_heads, d_ff, n_layers, max_len)
_load(model, sd)
model.eval()
with torch.no_grad():
    outs = [model(v) for v in variants]
    _load(model, other_blocks)
    with_other_blocks = model(variants[0])
"""


def _probe_gpt(seed, V, d, h, d_ff, L, T, variants, substitute):
    """The learner's GPTLike with seeded weights loaded (then with different block weights): its logits for each
    variant of the input, and for the first variant once more with the other blocks."""
    sd = _gpt_sd(generator(seed), V, d, d_ff, L, T)
    other = dict(sd)
    other.update({k: v for k, v in _gpt_sd(generator(seed + 1000), V, d, d_ff, L, T).items()
                  if k.startswith("blocks.")})
    b, n = variants[0].shape
    case = f"GPTLike({V}, {d}, {h}, {d_ff}, {L}, max_len={T}) with seeded weights loaded, ids of shape {(b, n)}"
    got = env().run("GPTLike", _GPT_PROBE,
                    inputs={"variants": variants, "sd": sd, "other_blocks": other, "vocab_size": V, "d_model": d,
                            "n_heads": h, "d_ff": d_ff, "n_layers": L, "max_len": T},
                    outputs=["outs", "with_other_blocks"], case=case, forbid=FORBID_TRANSFORMER, substitute=substitute)
    import torch

    outs = got["outs"]
    expect(isinstance(outs, list) and all(isinstance(o, torch.Tensor) for o in outs)
           and isinstance(got["with_other_blocks"], torch.Tensor),
           f"GPTLike: expected a torch.Tensor of logits for {case}; got "
           f"{type(outs[0] if isinstance(outs, list) and outs else outs).__name__}.")
    return case, outs, got["with_other_blocks"]


def _expect_blocks_used(case, logits, with_other_blocks):
    change = float((logits.double() - with_other_blocks.double()).abs().max()) if logits.shape == with_other_blocks.shape else 1.0
    expect(change > 1e-6,
           f"GPTLike: the logits did not change when the blocks' weights changed, for {case}. The model must send "
           "the embeddings through every block in self.blocks (x = block(x, mask)) before ln_f and the unembedding.")


def _expect_reads_context(case, base, changed_first, position_hint):
    change = float((changed_first[:, 1:].double() - base[:, 1:].double()).abs().max())
    expect(change > 1e-6,
           f"GPTLike: the logits at positions 1.. did not change when only token 0 changed, for {case}: each "
           f"position sees only its own token (a bigram model). {position_hint}")


def test_GPTLike_shape():
    """Logits of shape (batch, n, vocab_size) for prompts shorter than max_len, one token, and a batch of one, from a
    model that uses its blocks and (for n > 1) the earlier tokens."""
    import torch

    for seed, V, d, h, d_ff, L, T, b, n in [(94, 13, 8, 2, 16, 2, 10, 3, 4), (95, 9, 12, 4, 24, 1, 8, 1, 1),
                                            (96, 30, 8, 2, 16, 2, 16, 2, 16), (97, 5, 8, 1, 8, 3, 12, 1, 7)]:
        r = np.random.default_rng(seed)
        ids = _ids(r, V, b, n)
        first = ids.clone()
        first[:, 0] = (first[:, 0] + 1) % V
        case, (got, got_first), other = _probe_gpt(seed, V, d, h, d_ff, L, T, [ids, first], SUB_GPT)
        expect_shape("GPTLike", got, (b, n, V), case=case,
                     hint="One row of vocab_size logits per position; take positions 0..n-1, not the whole table.")
        expect(got.dtype.is_floating_point and bool(torch.isfinite(got).all()),
               f"GPTLike: logits must be finite floating-point numbers for {case}; got dtype {got.dtype}.")
        _expect_blocks_used(case, got, other)
        if n > 1:
            _expect_reads_context(case, got, got_first, "Send the embeddings through the blocks, whose attention "
                                                        "mixes the positions.")


def test_GPTLike_causal():
    """Changing the tokens after position t leaves the logits at positions 0..t unchanged, and changing token 0
    changes the logits after it (the model reads its context, through its blocks)."""
    import torch

    for seed, V, d, h, d_ff, L, T, b in [(98, 17, 16, 4, 32, 2, 8, 2), (99, 10, 12, 3, 24, 3, 6, 1)]:
        r = np.random.default_rng(seed)
        ids = _ids(r, V, b, T)
        ts = [0, T // 2, T - 2]
        variants = [ids]
        for t in ts:
            changed = ids.clone()
            changed[:, t + 1:] = (changed[:, t + 1:] + torch.from_numpy(r.integers(1, V, size=(b, T - t - 1)))) % V
            variants.append(changed)
        first = ids.clone()
        first[:, 0] = (first[:, 0] + 1) % V
        variants.append(first)
        case, outs, other = _probe_gpt(seed, V, d, h, d_ff, L, T, variants, SUB_GPT_MASKED)
        base = outs[0]
        for t, out in zip(ts, outs[1:-1]):
            expect_shape("GPTLike", out, (b, T, V), case=case)
            diff = float((out[:, : t + 1] - base[:, : t + 1]).abs().max())
            expect(diff <= 1e-5,
                   f"GPTLike: the logits at positions 0..{t} changed by up to {diff:.3g} when only tokens after "
                   f"position {t} changed, for {case}. Build the causal mask (True on and below the diagonal) and "
                   "pass it to every block: block(x, mask).")
        expect_shape("GPTLike", outs[-1], (b, T, V), case=case)
        _expect_reads_context(case, base, outs[-1], "Causal means each position sees itself and the positions "
                                                    "before it, through the blocks' attention.")
        _expect_blocks_used(case, base, other)


# ---------------------------------------------------------------- convert_gpt2 (Hugging Face GPT-2 -> GPTLike)
#
# The reference is Hugging Face's own GPT2LMHeadModel, built from a tiny GPT2Config with every parameter drawn here
# from a fixed seed (nothing is downloaded). The learner's function only renames, splits and transposes tensors, so
# its answer is a state_dict, plain data: the check runs that state_dict through a float64 GPTLike written here with
# GPT-2's GELU (the tanh approximation), so a slip in exercises 1-4 cannot cost this exercise, and compares the
# activations with GPT-2's (also float64) stage by stage: the first stage that differs names the layer to look at.

GPT2_TOL = 1e-5          # on the logits, float64 on both sides (a right mapping agrees to about 1e-12)


def _tiny_gpt2(seed, vocab, n_pos, d, n_heads, n_layers, n_inner=None):
    """A GPT2LMHeadModel with every parameter random (biases and LayerNorms too, so no swap can hide)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()   # a vocabulary this small has no room for GPT-2's special token ids
    config = GPT2Config(vocab_size=vocab, n_positions=n_pos, n_embd=d, n_layer=n_layers, n_head=n_heads,
                        n_inner=n_inner, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=0, eos_token_id=0)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    g = generator(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():    # lm_head.weight is wte.weight (tied): listed once
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "wte" in name or "wpe" in name:
                p.copy_(0.7 * torch.randn(p.shape, generator=g))
            else:                                      # Conv1D weights are (in, out)
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[0]))
    return model


def _gpt2_case(seed, vocab, n_pos, d, n_heads, n_layers, n_inner=None):
    return (f"a tiny random GPT-2 (vocab_size={vocab}, n_positions={n_pos}, n_embd={d}, n_head={n_heads}, "
            f"n_layer={n_layers}" + (f", n_inner={n_inner}" if n_inner else "") + ")")


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
        want[b + "attn.W_o.weight"], want[b + "attn.W_o.bias"] = hf_sd[h + "attn.c_proj.weight"].t(), hf_sd[h + "attn.c_proj.bias"]
        want[b + "ln2.weight"], want[b + "ln2.bias"] = hf_sd[h + "ln_2.weight"], hf_sd[h + "ln_2.bias"]
        want[b + "ffn.fc1.weight"], want[b + "ffn.fc1.bias"] = hf_sd[h + "mlp.c_fc.weight"].t(), hf_sd[h + "mlp.c_fc.bias"]
        want[b + "ffn.fc2.weight"], want[b + "ffn.fc2.bias"] = hf_sd[h + "mlp.c_proj.weight"].t(), hf_sd[h + "mlp.c_proj.bias"]
    want.update({"ln_f.weight": hf_sd["transformer.ln_f.weight"], "ln_f.bias": hf_sd["transformer.ln_f.bias"],
                 "unembed.weight": hf_sd["lm_head.weight"]})
    return {k: v.detach().clone() for k, v in want.items()}


def _gpt2_stages(ids, sd, n_heads, n_layers):
    """GPTLike with GPT-2's GELU, float64: [(stage name, activation)] in the order the forward pass meets them."""
    import torch.nn.functional as F

    n = ids.shape[1]
    stages = []
    x = F.embedding(ids, sd["tok_emb.weight"]) + sd["pos_emb.weight"][:n]
    stages.append(("the embeddings (tok_emb(ids) + pos_emb(positions))", x))
    for i in range(n_layers):
        b = f"blocks.{i}."
        x = x + _ref_attn(_ref_ln(x, sd, b + "ln1."), sd, b + "attn.", n_heads, causal_mask(n))
        stages.append((f"block {i} after attention (x + attn(ln1(x)))", x))
        h = F.gelu(F.linear(_ref_ln(x, sd, b + "ln2."), sd[b + "ffn.fc1.weight"], sd[b + "ffn.fc1.bias"]),
                   approximate="tanh")
        x = x + F.linear(h, sd[b + "ffn.fc2.weight"], sd[b + "ffn.fc2.bias"])
        stages.append((f"block {i} after the FFN (x + ffn(ln2(x)))", x))
    x = _ref_ln(x, sd, "ln_f.")
    stages.append(("the final LayerNorm (ln_f)", x))
    stages.append(("the logits (unembed)", x @ sd["unembed.weight"].T))
    return stages


def _hf_stages(model, ids, n_layers):
    """The same stages read out of Hugging Face's model with forward hooks."""
    import torch

    seen = {}
    hooks = []
    blocks = model.transformer.h
    for i in range(n_layers):
        hooks.append(blocks[i].ln_1.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(("in", i), a[0])))
        hooks.append(blocks[i].ln_2.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(("mid", i), a[0])))
    hooks.append(model.transformer.ln_f.register_forward_pre_hook(lambda m, a: seen.__setitem__("last", a[0])))
    hooks.append(model.transformer.ln_f.register_forward_hook(lambda m, a, out: seen.__setitem__("ln_f", out)))
    try:
        with torch.no_grad():
            logits = model(ids).logits
    finally:
        for hook in hooks:
            hook.remove()
    out = [seen[("in", 0)]]
    for i in range(n_layers):
        out += [seen[("mid", i)], seen[("in", i + 1)] if i + 1 < n_layers else seen["last"]]
    return out + [seen["ln_f"], logits]


def _as_state_dict(got, case):
    import torch

    expect(isinstance(got, dict) and "__opaque__" not in got,
           f"convert_gpt2: expected a dict from names to tensors (a state_dict) for {case}; got "
           f"{got.get('__opaque__') if isinstance(got, dict) else type(got).__name__}.")
    bad = [k for k, v in got.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckFailed(f"convert_gpt2: the values must be tensors for {case}; {bad[0]!r} holds "
                          f"{type(got[bad[0]]).__name__}.")
    return got


def _gpt2_hint(got, want, stage_index, n_layers):
    """Where the check can tell the cause of a difference, say it; else point at the entries of the stage."""
    missing = [k for k in want if k not in got]
    if missing:
        return (f"Your state dict has no {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}: every "
                "parameter of GPTLike needs an entry (GPT-2's lm_head.weight is its wte.weight: tied).")
    wrong = [k for k in want if tuple(got[k].shape) == tuple(want[k].shape)
             and not _same(got[k], want[k])]
    if not wrong:
        return "Every entry matches GPT-2's; check the names against GPTLike's state_dict()."
    key = wrong[0]
    g, w = got[key].double(), want[key].double()
    if w.dim() == 2 and w.shape[0] == w.shape[1] and _same(g, w.t()):
        return (f"{key} is GPT-2's weight untransposed. A Hugging Face Conv1D stores W as (in, out) and computes "
                "x @ W + b; nn.Linear stores (out, in): transpose every Conv1D weight, square ones included.")
    for a, b in (("W_q", "W_k"), ("W_k", "W_v"), ("W_q", "W_v")):
        for x, y in ((a, b), (b, a)):
            if f".attn.{x}." in key:
                other = key.replace(f".attn.{x}.", f".attn.{y}.")
                if _same(g, want[other].double()):
                    return (f"{key} holds what GPT-2 keeps for {other}: c_attn's output columns are "
                            "[queries | keys | values], n_embd each, in that order.")
    return f"{key} is not what GPT-2 holds for it (the first entry, in forward order, that differs)."


def _same(a, b):
    import torch

    return tuple(a.shape) == tuple(b.shape) and bool(torch.allclose(a.double(), b.double(), atol=1e-7, rtol=1e-6))


GPT2_CASES = [  # (seed, vocab, n_positions, d, heads, layers, n_inner, batch, n)
    (301, 37, 12, 16, 4, 2, None, 3, 9),
    (302, 50, 10, 24, 3, 3, 40, 2, 10),
    (303, 19, 8, 8, 2, 1, None, 4, 5),
]


def test_convert_gpt2():
    """Tiny random GPT-2s: with the learner's state dict, GPTLike (GPT-2's GELU) gives Hugging Face's logits to 1e-5,
    batch > 1, causal; a difference is reported at the first stage (embeddings, block i's attention or FFN, ln_f,
    logits) where the activations part."""
    import torch

    for seed, V, T, d, h, L, n_inner, b, n in GPT2_CASES:
        model = _tiny_gpt2(seed, V, T, d, h, L, n_inner)
        hf_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        case = _gpt2_case(seed, V, T, d, h, L, n_inner)
        got = _as_state_dict(env().call("convert_gpt2", hf_sd, L, case=case), case)
        want = _gpt2_expected(hf_sd, L)
        shaped = {}
        for key, w in want.items():
            if key in got:
                expect(tuple(got[key].shape) == tuple(w.shape),
                       f"convert_gpt2: {key} has shape {tuple(got[key].shape)} for {case}; GPTLike's is "
                       f"{tuple(w.shape)}. A Conv1D weight is (in, out), an nn.Linear weight (out, in): transpose.")
                shaped[key] = got[key].double()
            elif key.split(".")[-2] in ("ln1", "ln2", "ln_f") and key.endswith("weight"):
                shaped[key] = torch.ones(w.shape, dtype=torch.float64)       # what a fresh LayerNorm holds
            else:
                shaped[key] = torch.zeros(w.shape, dtype=torch.float64)
        ids = torch.from_numpy(np.random.default_rng(seed).integers(0, V, size=(b, n))).long()
        ours = _gpt2_stages(ids, shaped, h, L)
        theirs = _hf_stages(model.double(), ids, L)
        for index, ((stage, a), ref) in enumerate(zip(ours, theirs)):
            error = float((a - ref).abs().max())
            if error > GPT2_TOL:
                before = "" if index == 0 else f" (everything before it matches: {ours[index - 1][0]})"
                raise CheckFailed(
                    f"convert_gpt2: with your state dict the activations first differ from GPT-2's at {stage}, by "
                    f"up to {error:.3g}, for {case}, ids of shape {(b, n)}{before}. "
                    + _gpt2_hint(got, want, index, L))
        expect_close("convert_gpt2", ours[-1][1], theirs[-1], atol=GPT2_TOL, case=f"{case}, ids of shape {(b, n)}",
                     what="logits")


def test_convert_gpt2_names():
    """Every entry of the result is a GPTLike parameter with GPTLike's shape and GPT-2's values for it:
    load_state_dict(strict=True) would accept it (missing entries are the logits test's business: it names them)."""
    for seed, V, T, d, h, L, n_inner in [(311, 23, 9, 12, 3, 2, None), (312, 31, 6, 20, 5, 3, 28)]:
        model = _tiny_gpt2(seed, V, T, d, h, L, n_inner)
        hf_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        case = _gpt2_case(seed, V, T, d, h, L, n_inner)
        got = _as_state_dict(env().call("convert_gpt2", hf_sd, L, case=case), case)
        want = _gpt2_expected(hf_sd, L)
        extra = [k for k in got if k not in want]
        expect(not extra,
               f"convert_gpt2: the state dict has {len(extra)} entries GPTLike does not have for {case}, e.g. "
               f"{', '.join(repr(k) for k in extra[:3])}; load_state_dict(strict=True) refuses them. Return only "
               "GPTLike's names (tok_emb.weight, blocks.0.attn.W_q.weight, ...).")
        for key, value in got.items():
            expect(tuple(value.shape) == tuple(want[key].shape),
                   f"convert_gpt2: {key} has shape {tuple(value.shape)} for {case}; GPTLike's is "
                   f"{tuple(want[key].shape)}. A Conv1D weight is (in, out), an nn.Linear weight (out, in).")
        # a name with the right shape earns nothing unless it holds the tensor GPT-2 keeps under it
        wrong = [k for k, v in got.items() if not _same(v, want[k])]
        expect(not wrong,
               f"convert_gpt2: {wrong[0] if wrong else ''} has GPTLike's name and shape but not the values GPT-2 "
               f"holds for it, for {case} ({len(wrong)} of {len(got)} entries differ). "
               + (_gpt2_hint(got, want, 0, L) if all(k in got for k in want) else
                  "Each entry must be GPT-2's tensor for that parameter (transposed where GPT-2 uses Conv1D)."))
