"""Hidden checks for chapter 5, `05_multihead` (PyTorch).

One function per hidden-test call in `solutions/05_multihead.ipynb`. Inputs are torch tensors from fixed seeds, in
shapes the visible tests do not use. The reference for the module is `torch.nn.MultiheadAttention` itself, built here
in the grader: the learner's module is built and run in the learner's kernel (`env().run`), with weights the check
chose, and its outputs and gradients come back as data; the reverse direction (the learner's own initial weights loaded
into `nn.MultiheadAttention`) is checked too.

Mask conventions: the course's masks are boolean with True = may attend. `nn.MultiheadAttention`'s boolean
`attn_mask` / `key_padding_mask` mean the opposite (True = blocked), so the references here pass `~mask`.

Tolerances:
- float64 inputs: values `atol=1e-10, rtol=1e-8`, gradients `atol=1e-9, rtol=1e-7`;
- float32 inputs (the mask and gradient checks of `sdpa_torch`): `atol=1e-5, rtol=1e-4`;
- head splitting / merging and parameter counts are exact; masked weights must be exactly 0.

Forbidden everywhere in this chapter: PyTorch's scaled-dot-product attention (any entry point), `nn.MultiheadAttention`
and `F.multi_head_attention_forward`, and raw `torch.ops` calls (a back door to the same kernels). `torch.softmax` is
allowed: the learner built softmax in chapter 4.

The module's tests substitute references for `sdpa_torch`, `split_heads` and `merge_heads` (in case the learner's
module calls them), so a mistake in an earlier exercise is charged only there.
"""
from __future__ import annotations

import numpy as np

from .references import causal_mask, expect_pair, masked_weights_are_zero, randn, tensor, torch_attention
from .sources import solution
from . import CheckFailed, env, expect, expect_cases, expect_close, expect_equal, expect_shape, expect_type, rng

FORBID = [
    "torch*scaled_dot_product*",
    "torch*ultihead*",
    "torch*multi_head_attention*",
    "torch._ops.*",
]

ATOL64, RTOL64 = 1e-10, 1e-8
GATOL64, GRTOL64 = 1e-9, 1e-7
ATOL32, RTOL32 = 1e-5, 1e-4


# The earlier exercises are swapped for the notebook's own solutions while MultiHeadAttention is judged.
SUB_MODULE = {name: solution("05", name) for name in ("sdpa_torch", "split_heads", "merge_heads")}


def _mask_desc(mask):
    return "no mask" if mask is None else f"a boolean mask of shape {tuple(mask.shape)}"


# ================================================================= sdpa_torch

_SDPA_HINT = "Use K.transpose(-2, -1) so any leading batch dimensions work, and keep the inputs' dtype."


def test_sdpa_torch():
    """Values and dtype on float64 inputs of several ranks (2-D, 3-D, 4-D), no mask."""

    cases = [(11, (5, 4), (7, 4), (7, 3)), (12, (2, 3, 6), (2, 5, 6), (2, 5, 2)),
             (13, (2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)), (14, (1, 1, 1), (1, 1, 1), (1, 1, 1))]
    for seed, sq, sk, sv in cases:
        Q, K, V = randn(seed, sq), randn(seed + 100, sk), randn(seed + 200, sv)
        case = f"float64 Q {sq}, K {sk}, V {sv}"
        got = env().call("sdpa_torch", Q, K, V, case=case, forbid=FORBID)
        expect_pair(got, "sdpa_torch", case, what="(out, weights)")
        want_out, want_w = torch_attention(Q, K, V)
        for name, g, w in (("out", got[0], want_out), ("weights", got[1], want_w)):
            expect_type("sdpa_torch", g, "tensor", case, "Return torch tensors, not NumPy arrays.")
            expect_equal("sdpa_torch", str(g.dtype).replace("torch.", ""), "float64", case,
                         "Keep the inputs' dtype: torch.float64 in, torch.float64 out (no .float()).",
                         what=f"{name} dtype")
            expect_close("sdpa_torch", g, w, atol=ATOL64, rtol=RTOL64, case=case, hint=_SDPA_HINT, what=name)


def test_sdpa_torch_mask():
    """Causal, padding and random masks (True = may attend) on float32 (batch, n, d) inputs."""
    import torch

    cases = []
    # causal (n, n)
    cases.append((21, 2, 6, 6, 4, causal_mask(6)))
    # padding (batch, 1, n_k): sequence lengths 5, 2, 4
    lengths = torch.tensor([5, 2, 4])
    cases.append((22, 3, 4, 5, 8, (torch.arange(5)[None, :] < lengths[:, None])[:, None, :]))
    # random per-example mask (batch, n_q, n_k), at least one True per row
    m = torch.from_numpy(rng(23).random((2, 5, 7)) < 0.5)
    m[..., 0] = True
    cases.append((23, 2, 5, 7, 3, m))
    for seed, b, nq, nk, d, mask in cases:
        Q, K, V = (randn(seed, (b, nq, d), dtype="float32"), randn(seed + 100, (b, nk, d), dtype="float32"),
                   randn(seed + 200, (b, nk, d), dtype="float32"))
        case = f"Q {tuple(Q.shape)}, K {tuple(K.shape)} and {_mask_desc(mask)}"
        got = env().call("sdpa_torch", Q, K, V, mask=mask, case=case, forbid=FORBID)
        expect_pair(got, "sdpa_torch", case, what="(out, weights)")
        want_out, want_w = torch_attention(Q, K, V, mask)
        expect_type("sdpa_torch", got[1], "tensor", case)
        expect_shape("sdpa_torch", got[1], want_w.shape, case)
        masked_weights_are_zero("sdpa_torch", got[1], mask, case, "True means 'may attend': set the scores where mask "
                                                                 "is False to -inf before the softmax.")
        expect_close("sdpa_torch", got[1], want_w, atol=ATOL32, rtol=RTOL32, case=case, what="weights",
                     hint="True means 'may attend'; the masked scores become -inf before the softmax.")
        expect_close("sdpa_torch", got[0], want_out, atol=ATOL32, rtol=RTOL32, case=case, what="out")


_GRAD_SNIPPET = """
Q = Q.clone().requires_grad_(True)
K = K.clone().requires_grad_(True)
V = V.clone().requires_grad_(True)
_out, _w = sdpa_torch(Q, K, V)
_loss = (_out * g_out).sum() + (_w * g_w).sum()
loss_requires_grad = bool(_loss.requires_grad)
if loss_requires_grad:
    _loss.backward()
dQ, dK, dV = Q.grad, K.grad, V.grad
"""


def test_sdpa_torch_grad():
    """Autograd gradients of a random linear function of (out, weights) w.r.t. Q, K, V, against PyTorch's."""

    for seed, b, nq, nk, d, dv in [(31, 2, 4, 6, 8, 3), (32, 1, 5, 5, 4, 4), (33, 3, 1, 3, 2, 5)]:
        Q, K, V = (randn(seed, (b, nq, d), dtype="float32"), randn(seed + 1, (b, nk, d), dtype="float32"),
                   randn(seed + 2, (b, nk, dv), dtype="float32"))
        g_out, g_w = randn(seed + 3, (b, nq, dv), dtype="float32"), randn(seed + 4, (b, nq, nk), dtype="float32")
        case = f"Q {tuple(Q.shape)}, K {tuple(K.shape)}, V {tuple(V.shape)}"
        got = env().run("sdpa_torch", _GRAD_SNIPPET, inputs={"Q": Q, "K": K, "V": V, "g_out": g_out, "g_w": g_w},
                        outputs=["loss_requires_grad", "dQ", "dK", "dV"], case=case, forbid=FORBID)
        expect(got["loss_requires_grad"],
               f"sdpa_torch: the result is cut off from autograd for {case} (it does not require grad). "
               "Stay in torch: no .numpy(), torch.tensor(...), .detach() or NumPy functions on the way.")
        q, k, v = (t.clone().requires_grad_(True) for t in (Q, K, V))
        out, w = torch_attention(q, k, v)
        ((out * g_out).sum() + (w * g_w).sum()).backward()
        for name, want in (("dQ", q.grad), ("dK", k.grad), ("dV", v.grad)):
            expect_type("sdpa_torch", got[name], "tensor", case,
                        f"{name} is missing: the computation left autograd somewhere.")
            expect_close("sdpa_torch", got[name], want, atol=ATOL32, rtol=RTOL32, case=case,
                         what=f"gradients {name}",
                         hint="The gradient differs although autograd ran: is part of the computation detached?")


# ================================================================= split_heads / merge_heads

def test_split_heads():
    """Exact equality with reshape + transpose, on inputs whose every entry is distinct (head order shows)."""
    cases = [(f"x of shape {(b, n, d)}, n_heads={h}", (randn(seed, (b, n, d)), h))
             for seed, b, n, d, h in [(41, 2, 5, 12, 3), (42, 1, 4, 8, 8), (43, 3, 2, 6, 1), (44, 2, 7, 16, 4)]]
    # another idiom than the notebook's reshape
    expect_cases("split_heads", cases, lambda x, h: x.unflatten(-1, (h, x.shape[-1] // h)).transpose(1, 2),
                 atol=0.0, what="entries", forbid=FORBID,
                 hint="Reshape to (batch, n, heads, d_head) first, then swap the n and heads axes; "
                      "reshaping straight to (batch, heads, n, d_head) mixes tokens into heads.")


def test_merge_heads():
    """Exact equality with transpose + reshape (the inverse of split_heads)."""
    cases = [(f"x of shape {(b, h, n, dh)}", (randn(seed, (b, h, n, dh)),))
             for seed, b, h, n, dh in [(51, 2, 3, 5, 4), (52, 1, 8, 4, 1), (53, 3, 1, 2, 6), (54, 2, 4, 7, 4)]]
    expect_cases("merge_heads", cases, lambda x: x.transpose(1, 2).flatten(2),  # another idiom than the notebook's
                 atol=0.0, what="entries", forbid=FORBID,
                 hint="Swap the heads and n axes back first, then reshape to (batch, n, heads * d_head).")


# ================================================================= MultiHeadAttention

_MHA_SNIPPET = """
import torch
torch.manual_seed(0)
_m = MultiHeadAttention(d_model, n_heads, bias=bias)
n_params = sum(p.numel() for p in _m.parameters())
_m = _m.double()
with torch.no_grad():
    _m.W_qkv.weight.copy_(w_qkv)
    _m.W_o.weight.copy_(w_o)
    if bias:
        _m.W_qkv.bias.copy_(b_qkv)
        _m.W_o.bias.copy_(b_o)
_xq = x_q.clone().requires_grad_(want_grad)
_xkv = None if x_kv is None else x_kv.clone().requires_grad_(want_grad)
_res = _m(_xq, _xkv, mask)
out, weights = _res
loss_requires_grad = None
if want_grad:
    _loss = (out * g_out).sum()
    loss_requires_grad = bool(_loss.requires_grad)
    if loss_requires_grad:
        _loss.backward()
    grads = {"x_q": _xq.grad, "W_qkv.weight": _m.W_qkv.weight.grad, "W_o.weight": _m.W_o.weight.grad}
    if bias:
        grads["W_qkv.bias"] = _m.W_qkv.bias.grad
        grads["W_o.bias"] = _m.W_o.bias.grad
else:
    grads = None
"""

_REVERSE_SNIPPET = """
import torch
torch.manual_seed(seed)
_m = MultiHeadAttention(d_model, n_heads, bias=bias).double()
with torch.no_grad():
    out, weights = _m(x_q, None, None)
state = {"W_qkv.weight": _m.W_qkv.weight, "W_o.weight": _m.W_o.weight}
if bias:
    state["W_qkv.bias"] = _m.W_qkv.bias
    state["W_o.bias"] = _m.W_o.bias
"""


def _weights_for(seed, d_model, bias):
    r = rng(seed)
    s = 1.0 / np.sqrt(d_model)
    w = {"w_qkv": tensor(r.normal(size=(3 * d_model, d_model)) * s * 1.5),
         "w_o": tensor(r.normal(size=(d_model, d_model)) * s)}
    w["b_qkv"] = tensor(r.normal(size=(3 * d_model,)) * 0.1) if bias else None
    w["b_o"] = tensor(r.normal(size=(d_model,)) * 0.1) if bias else None
    return w


def _reference_mha(d_model, n_heads, bias, weights):
    import torch

    ref = torch.nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        ref.in_proj_weight.copy_(weights["w_qkv"])
        ref.out_proj.weight.copy_(weights["w_o"])
        if bias:
            ref.in_proj_bias.copy_(weights["b_qkv"])
            ref.out_proj.bias.copy_(weights["b_o"])
    return ref


def _reference_forward(ref, n_heads, x_q, x_kv, mask):
    """nn.MultiheadAttention with the course's mask converted: its boolean masks mean True = blocked."""

    kv = x_q if x_kv is None else x_kv
    attn_mask = key_padding_mask = None
    if mask is not None:
        if mask.dim() == 2:
            attn_mask = ~mask
        elif mask.shape[1] == 1 and x_q.shape[1] != 1:
            key_padding_mask = ~mask[:, 0, :]
        else:
            attn_mask = (~mask).repeat_interleave(n_heads, dim=0)  # (batch * heads, n_q, n_k), batch-major
    out, weights = ref(x_q, kv, kv, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                       need_weights=True, average_attn_weights=False)
    return out, weights


def _run_module(cfg, seed, x_q, x_kv=None, mask=None, want_grad=False, g_out=None, forbid=FORBID):
    d_model, n_heads, bias = cfg
    weights = _weights_for(seed, d_model, bias)
    inputs = {"d_model": d_model, "n_heads": n_heads, "bias": bias, "x_q": x_q, "x_kv": x_kv, "mask": mask,
              "want_grad": want_grad, "g_out": g_out, **weights}
    kv = "" if x_kv is None else f", x_kv {tuple(x_kv.shape)}"
    case = (f"MultiHeadAttention({d_model}, {n_heads}, bias={bias}) on x_q {tuple(x_q.shape)}{kv}"
            + ("" if mask is None else f" with {_mask_desc(mask)}"))
    got = env().run("MultiHeadAttention", _MHA_SNIPPET, inputs=inputs,
                    outputs=["n_params", "out", "weights", "grads", "loss_requires_grad"],
                    case=case, forbid=forbid, substitute=SUB_MODULE)
    return got, weights, case


_HEAD_HINT = ("Split d_model into heads as (batch, n, heads, d_head) -> (batch, heads, n, d_head), "
              "merge back with the inverse permute, and apply W_o last.")


def _expect_out(got, want, case, hint=_HEAD_HINT):
    expect_type("MultiHeadAttention", got, "tensor", case, "forward must return (out, weights) as tensors.")
    expect_shape("MultiHeadAttention", got, want.shape, case, "out has shape (batch, n_q, d_model).")
    expect_close("MultiHeadAttention", got, want, atol=ATOL64, rtol=RTOL64, case=case, hint=hint, what="out")


def _expect_weights(got, want, case, hint=""):
    expect_type("MultiHeadAttention", got, "tensor", case, "forward must return (out, weights) as tensors.")
    expect_shape("MultiHeadAttention", got, want.shape, case,
                 "weights are per head, shape (batch, heads, n_q, n_k), not averaged over heads.")
    expect_close("MultiHeadAttention", got, want, atol=ATOL64, rtol=RTOL64, case=case, what="weights", hint=hint)


def _expect_masked_zero(weights, mask, case):
    """Masked pairs get weight exactly 0 in every head (checked whatever the weights' head layout)."""
    expect_type("MultiHeadAttention", weights, "tensor", case, "forward must return (out, weights) as tensors.")
    masked_weights_are_zero("MultiHeadAttention", weights, mask.unsqueeze(-3) if weights.dim() == 4 else mask, case,
                            "True means 'may attend'.", layout="(batch, heads, n_q, n_k)")


def test_MultiHeadAttention():
    """Self-attention, no mask: outputs equal nn.MultiheadAttention's with the same weights, both directions;
    parameter count equal; several head counts (1 to d_model), sequence lengths and batch sizes, with and without bias."""

    configs = [((8, 2, True), 2, 5), ((12, 3, False), 1, 7), ((16, 4, True), 3, 4), ((6, 1, True), 2, 3),
               ((8, 8, False), 2, 6), ((12, 6, True), 1, 1)]
    for i, (cfg, b, n) in enumerate(configs):
        seed = 60 + i
        x = randn(seed + 1000, (b, n, cfg[0]))
        got, weights, case = _run_module(cfg, seed, x)
        ref = _reference_mha(*cfg, weights)
        n_ref = sum(p.numel() for p in ref.parameters())
        expect_equal("MultiHeadAttention", got["n_params"], n_ref, case,
                     "The module holds exactly W_qkv = nn.Linear(d_model, 3 * d_model, bias=bias) and "
                     "W_o = nn.Linear(d_model, d_model, bias=bias); pass bias= on to both.",
                     what="number of parameters")
        want_out, _ = _reference_forward(ref, cfg[1], x, None, None)
        _expect_out(got["out"], want_out, case)
    # the reverse direction: the learner's own initial weights, loaded into nn.MultiheadAttention
    for seed, (d_model, n_heads, bias), b, n in [(70, (12, 4, True), 2, 5), (71, (8, 2, False), 1, 3)]:
        x = randn(seed, (b, n, d_model))
        case = f"MultiHeadAttention({d_model}, {n_heads}, bias={bias}) with its own initial weights on x {tuple(x.shape)}"
        got = env().run("MultiHeadAttention", _REVERSE_SNIPPET,
                        inputs={"seed": seed, "d_model": d_model, "n_heads": n_heads, "bias": bias, "x_q": x},
                        outputs=["out", "state"], case=case, forbid=FORBID, substitute=SUB_MODULE)
        state = got["state"]
        for key in state:
            expect_type("MultiHeadAttention", state[key], "tensor", case,
                        f"{key} should be a parameter of an nn.Linear.")
        weights = {"w_qkv": state["W_qkv.weight"], "w_o": state["W_o.weight"],
                   "b_qkv": state.get("W_qkv.bias"), "b_o": state.get("W_o.bias")}
        ref = _reference_mha(d_model, n_heads, bias, weights)
        want_out, _ = _reference_forward(ref, n_heads, x, None, None)
        _expect_out(got["out"], want_out, case,
                    hint="Use only W_qkv (q, k, v stacked in that order along its output dimension) and W_o.")


def test_MultiHeadAttention_weights():
    """The returned attention weights, per head: (batch, heads, n_q, n_k), equal to nn.MultiheadAttention's
    with average_attn_weights=False."""
    for i, (cfg, b, n) in enumerate([((12, 3, True), 2, 6), ((16, 4, True), 1, 5), ((8, 2, True), 3, 4),
                                      ((6, 6, True), 2, 3)]):
        seed = 80 + i
        x = randn(seed + 1000, (b, n, cfg[0]))
        got, weights, case = _run_module(cfg, seed, x)
        ref = _reference_mha(*cfg, weights)
        _, want_w = _reference_forward(ref, cfg[1], x, None, None)
        _expect_weights(got["weights"], want_w, case,
                        hint="Head h uses columns h*d_head:(h+1)*d_head of q and k; return the softmax weights.")


def test_MultiHeadAttention_mask():
    """Causal (n, n), padding (batch, 1, n) and per-example (batch, n, n) masks, True = may attend; compared with
    nn.MultiheadAttention given the inverted masks (its booleans mean True = blocked)."""
    import torch

    cases = []
    n = 6
    cases.append(((12, 3, True), 2, n, causal_mask(n)))
    lengths = torch.tensor([5, 3, 1])
    cases.append(((16, 4, True), 3, 5, (torch.arange(5)[None, :] < lengths[:, None])[:, None, :]))
    # causal and padding together, one mask per example: (batch, n, n), batch (3) != heads (2)
    causal = causal_mask(n)
    pad = torch.arange(n)[None, :] < torch.tensor([6, 4, 2])[:, None]
    cases.append(((8, 2, True), 3, n, causal[None] & pad[:, None, :]))
    # batch == heads, a random per-example mask
    m = torch.from_numpy(rng(93).random((2, 4, 4)) < 0.5)
    m[..., 1] = True
    cases.append(((8, 2, True), 2, 4, m))
    for i, (cfg, b, n, mask) in enumerate(cases):
        seed = 90 + i
        x = randn(seed + 1000, (b, n, cfg[0]))
        got, weights, case = _run_module(cfg, seed, x, mask=mask)
        ref = _reference_forward(_reference_mha(*cfg, weights), cfg[1], x, None, mask)
        hint = ("mask is True where a query may attend; add a heads axis (mask.unsqueeze(-3)) so it broadcasts "
                "over (batch, heads, n_q, n_k). nn.MultiheadAttention uses the opposite convention.")
        _expect_out(got["out"], ref[0], case, hint=hint)
        _expect_masked_zero(got["weights"], mask, case)


def test_MultiHeadAttention_cross():
    """Cross-attention: queries from x_q, keys and values from x_kv (n_q != n_k), one stacked in_proj, no mask."""
    for i, (cfg, b, nq, nk) in enumerate([((12, 3, True), 2, 4, 7), ((16, 4, True), 1, 6, 3),
                                          ((8, 2, True), 3, 1, 5)]):
        seed = 100 + i
        xq, xkv = randn(seed + 1000, (b, nq, cfg[0])), randn(seed + 2000, (b, nk, cfg[0]))
        got, weights, case = _run_module(cfg, seed, xq, x_kv=xkv)
        want_out, want_w = _reference_forward(_reference_mha(*cfg, weights), cfg[1], xq, xkv, None)
        hint = ("q comes from x_q with the first d_model rows of W_qkv; k and v from x_kv with the next two blocks "
                "(the same stacked matrix as nn.MultiheadAttention's in_proj_weight).")
        _expect_out(got["out"], want_out, case, hint=hint)
        w = got["weights"]
        expect_type("MultiHeadAttention", w, "tensor", case, "forward must return (out, weights) as tensors.")
        expect_equal("MultiHeadAttention", tuple(w.shape[-2:]), (nq, nk), case,
                     "In cross-attention the weights end in (n_q, n_k): queries from x_q, keys from x_kv.",
                     what="last two dimensions of weights")


def test_MultiHeadAttention_grad():
    """Gradients of sum(out * g) w.r.t. the input and every parameter, against nn.MultiheadAttention's."""

    for i, (cfg, b, n) in enumerate([((12, 3, True), 2, 5), ((8, 2, True), 1, 4), ((16, 8, True), 2, 3)]):
        seed = 110 + i
        x = randn(seed + 1000, (b, n, cfg[0]))
        g = randn(seed + 2000, (b, n, cfg[0]))
        got, weights, case = _run_module(cfg, seed, x, want_grad=True, g_out=g)
        expect(bool(got["loss_requires_grad"]),
               f"MultiHeadAttention: the output is cut off from autograd for {case}. "
               "Stay in torch: no .numpy(), torch.tensor(...) or .detach() inside forward.")
        ref = _reference_mha(*cfg, weights)
        xr = x.clone().requires_grad_(True)
        out, _ = _reference_forward(ref, cfg[1], xr, None, None)
        (out * g).sum().backward()
        want = {"x_q": xr.grad, "W_qkv.weight": ref.in_proj_weight.grad, "W_o.weight": ref.out_proj.weight.grad,
                "W_qkv.bias": ref.in_proj_bias.grad, "W_o.bias": ref.out_proj.bias.grad}
        grads = got["grads"]
        expect(isinstance(grads, dict), f"MultiHeadAttention: no gradients came back for {case}.")
        for key, w in want.items():
            expect_type("MultiHeadAttention", grads.get(key), "tensor", case,
                        f"The gradient of {key} is missing: part of forward left autograd.")
            expect_close("MultiHeadAttention", grads[key], w, atol=GATOL64, rtol=GRTOL64, case=case,
                         what=f"gradients of {key}",
                         hint="The forward pass agrees but the gradients do not: is something detached "
                              "or computed outside torch (NumPy)?")


# ================================================================= attention_params

_PARAM_CONFIGS = [
    # (n_layers, n_heads, d_model, d_head)
    (96, 96, 12288, 128),   # GPT-3 175B
    (12, 12, 768, 64),      # GPT-3 Small / GPT-2 small
    (40, 40, 5140, 128),    # GPT-3 13B as printed in its Table 2.1: heads * d_head = 5120 != d_model
    (24, 128, 1024, 128),   # T5-11B-like: heads * d_head = 16384 != d_model
    (1, 1, 1, 1),
    (6, 8, 512, 64),        # the original Transformer base
    (3, 5, 20, 7),
]


def _count(n_layers, n_heads, d_model, d_head, bias):
    inner = n_heads * d_head
    return n_layers * (4 * d_model * inner + ((3 * inner + d_model) if bias else 0))


def _as_int(exercise, got, case):
    ok = isinstance(got, (int, np.integer)) and not isinstance(got, bool)
    if isinstance(got, (float, np.floating)) and float(got).is_integer():
        ok = True
    if isinstance(got, np.ndarray) and got.shape == () and np.issubdtype(got.dtype, np.number):
        ok = True
    if not ok:
        raise CheckFailed(f"{exercise}: expected an int for {case}; got {type(got).__name__}.")
    return int(got)


def test_attention_params():
    """Weights only (bias=False and the default): 4 * d_model * (n_heads * d_head) per layer."""
    for cfg in _PARAM_CONFIGS:
        for kwargs in ({"bias": False}, {}):
            case = f"attention_params{cfg}" + (", bias=False" if kwargs else " (default bias)")
            got = _as_int("attention_params", env().call("attention_params", *cfg, case=case, forbid=FORBID,
                                                         **kwargs), case)
            want = _count(*cfg, False)
            expect(got == want,
                   f"attention_params: expected {want:,} parameters for {case}; got {got:,}. Per layer: W_Q, W_K, "
                   "W_V are d_model x (n_heads * d_head), W_O is (n_heads * d_head) x d_model; d_model need not "
                   "equal n_heads * d_head.")


def test_attention_params_bias():
    """bias=True adds 3 * n_heads * d_head + d_model per layer (the bias vectors of W_Q, W_K, W_V and W_O)."""
    for cfg in _PARAM_CONFIGS:
        case = f"attention_params{cfg}, bias=True minus bias=False"
        with_b = _as_int("attention_params", env().call("attention_params", *cfg, bias=True, case=case,
                                                        forbid=FORBID), case)
        without = _as_int("attention_params", env().call("attention_params", *cfg, bias=False, case=case,
                                                         forbid=FORBID), case)
        want = _count(*cfg, True) - _count(*cfg, False)
        expect(with_b - without == want,
               f"attention_params: expected {want:,} bias parameters for {case}; got {with_b - without:,}. Each of "
               "W_Q, W_K, W_V has one bias per output (n_heads * d_head), W_O one per d_model, in every layer.")
