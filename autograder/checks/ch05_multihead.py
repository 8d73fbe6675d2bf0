"""Hidden checks for chapter 5, `05_multihead` (PyTorch).

Inputs are torch tensors from fixed seeds, in shapes the visible tests do not use. The module's reference is
`torch.nn.MultiheadAttention` itself, built here in the grader with the weights the check chose; the learner's module
runs in the learner's kernel (`env().run`) with the same weights, and its outputs and gradients come back as data.
The reverse direction (the learner's own initial weights loaded into `nn.MultiheadAttention`) is checked too.
The course's masks are boolean with True = may attend; `nn.MultiheadAttention`'s booleans mean True = blocked, so
its references get `~mask`.

Tolerances: float64 values 1e-10 absolute + 1e-8 relative, gradients 1e-9 + 1e-7; float32 inputs (the mask and
gradient checks of `sdpa_torch`) 1e-5 + 1e-4; head splitting and parameter counts exact; masked weights exactly 0.
PyTorch's own attention (any entry point) and raw `torch.ops` calls are forbidden everywhere; `torch.softmax` is
allowed (the learner built softmax in chapter 4). The module's tests substitute the notebook's `sdpa_torch`,
`split_heads` and `merge_heads`, so a mistake in an earlier exercise is charged only there.
"""
from __future__ import annotations

import numpy as np

from .references import (causal_mask, expect_pair, masked_weights_are_zero, randn, random_mask, tensor,
                         torch_attention)
from .sources import solution
from . import env, expect, expect_cases, expect_close, expect_equal, expect_type, rng

FORBID = ["torch*scaled_dot_product*", "torch*ultihead*", "torch*multi_head_attention*", "torch._ops.*"]

ATOL64, RTOL64 = 1e-10, 1e-8
GATOL64, GRTOL64 = 1e-9, 1e-7
ATOL32, RTOL32 = 1e-5, 1e-4

SUB_MODULE = {name: solution("05", name) for name in ("sdpa_torch", "split_heads", "merge_heads")}


def _mask_desc(mask):
    return "no mask" if mask is None else f"a boolean mask of shape {tuple(mask.shape)}"


def _padding(lengths, n):
    """(batch, 1, n): key j of example b may be attended to iff j < lengths[b]."""
    import torch

    return (torch.arange(n)[None, :] < torch.tensor(lengths)[:, None])[:, None, :]


# ================================================================= sdpa_torch

_SDPA_HINT = ("Leading batch axes pass through unchanged (each Q matrix meets the K and V of its own batch entry), "
              "and the inputs' dtype is kept.")


def test_sdpa_torch():
    """Values and dtype on float64 inputs of several ranks (2-D, 3-D, 4-D), no mask."""
    cases = [(11, (5, 4), (7, 4), (7, 3)), (12, (2, 3, 6), (2, 5, 6), (2, 5, 2)),
             (13, (2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)), (14, (1, 1, 1), (1, 1, 1), (1, 1, 1))]
    for seed, sq, sk, sv in cases:
        Q, K, V = randn(seed, sq), randn(seed + 100, sk), randn(seed + 200, sv)
        case = f"float64 Q {sq}, K {sk}, V {sv}"
        got = expect_pair(env().call("sdpa_torch", Q, K, V, case=case, forbid=FORBID), "sdpa_torch", case,
                          what="(out, weights)")
        want_out, want_w = torch_attention(Q, K, V)
        for name, g, w in (("out", got[0], want_out), ("weights", got[1], want_w)):
            expect_type("sdpa_torch", g, "tensor", case, "Return torch tensors, not NumPy arrays.")
            expect_equal("sdpa_torch", str(g.dtype).replace("torch.", ""), "float64", case,
                         "Keep the inputs' dtype: torch.float64 in, torch.float64 out. Don't cast: every step stays in the inputs' dtype.",
                         what=f"{name} dtype")
            expect_close("sdpa_torch", g, w, atol=ATOL64, rtol=RTOL64, case=case, hint=_SDPA_HINT, what=name)


def test_sdpa_torch_mask():
    """Causal, padding and random masks (True = may attend) on float32 (batch, n, d) inputs."""
    import torch

    for seed, b, nq, nk, d, mask in [(21, 2, 6, 6, 4, causal_mask(6)), (22, 3, 4, 5, 8, _padding([5, 2, 4], 5)),
                                     (23, 2, 5, 7, 3, torch.from_numpy(random_mask(rng(23), 5, 7, lead=(2,))))]:
        Q, K, V = (randn(seed + 100 * i, (b, n, d), dtype="float32") for i, n in enumerate((nq, nk, nk)))
        case = f"Q {tuple(Q.shape)}, K {tuple(K.shape)} and {_mask_desc(mask)}"
        got = expect_pair(env().call("sdpa_torch", Q, K, V, mask=mask, case=case, forbid=FORBID), "sdpa_torch", case,
                          what="(out, weights)")
        want_out, want_w = torch_attention(Q, K, V, mask)
        expect_type("sdpa_torch", got[1], "tensor", case)
        masked_weights_are_zero("sdpa_torch", got[1], mask, case, "True means 'may attend': set the scores where mask "
                                                                 "is False to -inf before the softmax.")
        expect_close("sdpa_torch", got[1], want_w, atol=ATOL32, rtol=RTOL32, case=case, what="weights",
                     hint="True means 'may attend'; the masked scores become -inf before the softmax.")
        expect_close("sdpa_torch", got[0], want_out, atol=ATOL32, rtol=RTOL32, case=case, what="out")


_GRAD_SNIPPET = """
Q, K, V = (t.clone().requires_grad_(True) for t in (Q, K, V))
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
        Q, K, V, g_out, g_w = (randn(seed + i, (b, *shape), dtype="float32")
                               for i, shape in enumerate([(nq, d), (nk, d), (nk, dv), (nq, dv), (nq, nk)]))
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


# ================================================================= split_heads (merge_heads is an ungraded warm-up)

def test_split_heads():
    """Exact equality with reshape + transpose, on inputs whose every entry is distinct (head order shows)."""
    cases = [(f"x of shape {(b, n, d)}, n_heads={h}", (randn(seed, (b, n, d)), h))
             for seed, b, n, d, h in [(41, 2, 5, 12, 3), (42, 1, 4, 8, 8), (43, 3, 2, 6, 1), (44, 2, 7, 16, 4)]]
    # another idiom than the notebook's reshape
    expect_cases("split_heads", cases, lambda x, h: x.unflatten(-1, (h, x.shape[-1] // h)).transpose(1, 2),
                 atol=0.0, what="entries", forbid=FORBID,
                 hint="out[b, h, i] is token i's column block h (columns h*d_head up to (h+1)*d_head), the "
                      "tokens in their order; a shape check cannot tell this from a mix of tokens and heads.")


# ================================================================= MultiHeadAttention

# The learner's module, seeded, given `state` (the check's weights by parameter name; none: keep its own), run on
# x_q / x_kv / mask; with want_grad, the gradients of sum(out * g_out).
_MHA_SNIPPET = """
import torch
torch.manual_seed(seed)
_m = MultiHeadAttention(d_model, n_heads, bias=bias)
n_params = sum(p.numel() for p in _m.parameters())
_m = _m.double()
with torch.no_grad():
    for _name, _w in (state or {}).items():
        _m.get_parameter(_name).copy_(_w)
own = {_name: p.detach().clone() for _name, p in _m.named_parameters()}
_xq = x_q.clone().requires_grad_(want_grad)
_xkv = None if x_kv is None else x_kv.clone().requires_grad_(want_grad)
out, weights = _m(_xq, _xkv, mask)
loss_requires_grad = grads = None
if want_grad:
    _loss = (out * g_out).sum()
    loss_requires_grad = bool(_loss.requires_grad)
    if loss_requires_grad:
        _loss.backward()
    grads = {"x_q": _xq.grad, **{_name: _m.get_parameter(_name).grad for _name in state}}
"""

# The notebook's parameter names -> nn.MultiheadAttention's.
_TORCH_NAMES = {"W_qkv.weight": "in_proj_weight", "W_o.weight": "out_proj.weight", "W_qkv.bias": "in_proj_bias",
                "W_o.bias": "out_proj.bias"}


def _seeded_state(seed, d_model, bias):
    r, s = rng(seed), 1.0 / np.sqrt(d_model)
    state = {"W_qkv.weight": tensor(r.normal(size=(3 * d_model, d_model)) * s * 1.5),
             "W_o.weight": tensor(r.normal(size=(d_model, d_model)) * s)}
    if bias:
        state.update({"W_qkv.bias": tensor(r.normal(size=3 * d_model) * 0.1), "W_o.bias": tensor(r.normal(size=d_model) * 0.1)})
    return state


def _reference(cfg, state, x_q, x_kv=None, mask=None, g_out=None):
    """nn.MultiheadAttention holding `state`: (out, per-head weights, gradients of sum(out * g_out) or None)."""
    import torch

    d_model, n_heads, bias = cfg
    ref = torch.nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        for ours, w in state.items():
            ref.get_parameter(_TORCH_NAMES[ours]).copy_(w)
    x = x_q.clone().requires_grad_(g_out is not None)
    kv = x if x_kv is None else x_kv
    # one (n_q, n_k) mask per example and head, batch-major, inverted: nn.MultiheadAttention's True = blocked
    attn_mask = None if mask is None else (~mask).expand(x.shape[0], x.shape[1], kv.shape[1]).repeat_interleave(
        n_heads, dim=0)
    out, weights = ref(x, kv, kv, attn_mask=attn_mask, need_weights=True, average_attn_weights=False)
    if g_out is None:
        return out.detach(), weights.detach(), None
    (out * g_out).sum().backward()
    return out.detach(), weights.detach(), {"x_q": x.grad, **{o: ref.get_parameter(t).grad for o, t in
                                                             _TORCH_NAMES.items() if o in state}}


def _module_case(cfg, seed, x_q, x_kv=None, mask=None, g_out=None, own_weights=False):
    """The learner's module and its reference on the same weights (seeded, or the module's own initial ones) and
    inputs: (what came back, (out, weights, grads) of the reference, the case's description)."""
    d_model, n_heads, bias = cfg
    state = None if own_weights else _seeded_state(seed, d_model, bias)
    kv = "" if x_kv is None else f", x_kv {tuple(x_kv.shape)}"
    case = (f"MultiHeadAttention({d_model}, {n_heads}, bias={bias})" + (" with its own initial weights" if own_weights
            else "") + f" on x_q {tuple(x_q.shape)}{kv}" + ("" if mask is None else f" with {_mask_desc(mask)}"))
    got = env().run("MultiHeadAttention", _MHA_SNIPPET,
                    inputs={"seed": seed, "d_model": d_model, "n_heads": n_heads, "bias": bias, "state": state,
                            "x_q": x_q, "x_kv": x_kv, "mask": mask, "want_grad": g_out is not None, "g_out": g_out},
                    outputs=["n_params", "own", "out", "weights", "grads", "loss_requires_grad"],
                    case=case, forbid=FORBID, substitute=SUB_MODULE)
    if own_weights:
        own = got["own"] if isinstance(got["own"], dict) else {}
        state = {name: own.get(name) for name in _TORCH_NAMES if bias or name.endswith("weight")}
        for name, w in state.items():
            expect_type("MultiHeadAttention", w, "tensor", case, f"{name} should be a parameter of an nn.Linear.")
    return got, _reference(cfg, state, x_q, x_kv, mask, g_out), case


_HEAD_HINT = ("Head h works on columns h*d_head:(h+1)*d_head of q, k and v for every token, its output returns "
              "to the same columns when the heads merge, and W_o comes last.")
_AS_TENSORS = "forward must return (out, weights) as tensors."


def _expect_out(got, want, case, hint=_HEAD_HINT):
    expect_type("MultiHeadAttention", got, "tensor", case, _AS_TENSORS)
    expect_close("MultiHeadAttention", got, want, atol=ATOL64, rtol=RTOL64, case=case, what="out",
                 hint="out has shape (batch, n_q, d_model). " + hint if got.shape != want.shape else hint)


def test_MultiHeadAttention():
    """Self-attention, no mask: outputs equal nn.MultiheadAttention's with the same weights, both directions;
    parameter count equal; several head counts (1 to d_model), sequence lengths and batch sizes, with and without bias."""
    configs = [((8, 2, True), 2, 5), ((12, 3, False), 1, 7), ((16, 4, True), 3, 4), ((6, 1, True), 2, 3),
               ((8, 8, False), 2, 6), ((12, 6, True), 1, 1)]
    for i, (cfg, b, n) in enumerate(configs):
        got, (want_out, _, _), case = _module_case(cfg, 60 + i, randn(60 + i + 1000, (b, n, cfg[0])))
        d, bias = cfg[0], cfg[2]
        expect_equal("MultiHeadAttention", got["n_params"], 4 * d * d + (4 * d if bias else 0), case,
                     "The module holds exactly W_qkv = nn.Linear(d_model, 3 * d_model, bias=bias) and "
                     "W_o = nn.Linear(d_model, d_model, bias=bias); pass bias= on to both.",
                     what="number of parameters")
        _expect_out(got["out"], want_out, case)
    # the reverse direction: the learner's own initial weights, loaded into nn.MultiheadAttention
    for seed, cfg, b, n in [(70, (12, 4, True), 2, 5), (71, (8, 2, False), 1, 3)]:
        got, (want_out, _, _), case = _module_case(cfg, seed, randn(seed, (b, n, cfg[0])), own_weights=True)
        _expect_out(got["out"], want_out, case,
                    hint="Use only W_qkv (q, k, v stacked in that order along its output dimension) and W_o.")


def test_MultiHeadAttention_weights():
    """The returned attention weights, per head: (batch, heads, n_q, n_k), equal to nn.MultiheadAttention's
    with average_attn_weights=False."""
    for i, (cfg, b, n) in enumerate([((12, 3, True), 2, 6), ((16, 4, True), 1, 5), ((8, 2, True), 3, 4),
                                      ((6, 6, True), 2, 3)]):
        got, (_, want_w, _), case = _module_case(cfg, 80 + i, randn(80 + i + 1000, (b, n, cfg[0])))
        expect_type("MultiHeadAttention", got["weights"], "tensor", case, _AS_TENSORS)
        expect_close("MultiHeadAttention", got["weights"], want_w, atol=ATOL64, rtol=RTOL64, case=case, what="weights",
                     hint="weights are per head, shape (batch, heads, n_q, n_k), not averaged over heads; head h uses "
                          "columns h*d_head:(h+1)*d_head of q and k.")


def test_MultiHeadAttention_mask():
    """Causal (n, n), padding (batch, 1, n) and per-example (batch, n, n) masks, True = may attend; compared with
    nn.MultiheadAttention given the inverted masks (its booleans mean True = blocked)."""
    import torch

    cases = [((12, 3, True), 2, 6, causal_mask(6)), ((16, 4, True), 3, 5, _padding([5, 3, 1], 5)),
             # causal and padding together, one mask per example: (batch, n, n), batch (3) != heads (2)
             ((8, 2, True), 3, 6, causal_mask(6)[None] & _padding([6, 4, 2], 6)),
             # batch == heads, a random per-example mask
             ((8, 2, True), 2, 4, torch.from_numpy(random_mask(rng(93), 4, 4, lead=(2,))))]
    for i, (cfg, b, n, mask) in enumerate(cases):
        got, (want_out, _, _), case = _module_case(cfg, 90 + i, randn(90 + i + 1000, (b, n, cfg[0])), mask=mask)
        _expect_out(got["out"], want_out, case,
                    hint="mask is True where a query may attend, and it has no heads axis: it must broadcast over "
                         "(batch, heads, n_q, n_k). nn.MultiheadAttention uses the opposite convention.")
        expect_type("MultiHeadAttention", got["weights"], "tensor", case, _AS_TENSORS)
        w = got["weights"]
        masked_weights_are_zero("MultiHeadAttention", w, mask.unsqueeze(-3) if w.dim() == 4 else mask, case,
                                "True means 'may attend'.", layout="(batch, heads, n_q, n_k)")


def test_MultiHeadAttention_cross():
    """Cross-attention: queries from x_q, keys and values from x_kv (n_q != n_k), one stacked in_proj, no mask."""
    for i, (cfg, b, nq, nk) in enumerate([((12, 3, True), 2, 4, 7), ((16, 4, True), 1, 6, 3),
                                          ((8, 2, True), 3, 1, 5)]):
        seed = 100 + i
        got, (want_out, _, _), case = _module_case(cfg, seed, randn(seed + 1000, (b, nq, cfg[0])),
                                                   x_kv=randn(seed + 2000, (b, nk, cfg[0])))
        _expect_out(got["out"], want_out, case,
                    hint="q comes from x_q with the first d_model rows of W_qkv; k and v from x_kv with the next two "
                         "blocks (the same stacked matrix as nn.MultiheadAttention's in_proj_weight).")
        w = got["weights"]
        expect_type("MultiHeadAttention", w, "tensor", case, _AS_TENSORS)
        expect_equal("MultiHeadAttention", tuple(w.shape[-2:]), (nq, nk), case,
                     "In cross-attention the weights end in (n_q, n_k): queries from x_q, keys from x_kv.",
                     what="last two dimensions of weights")


def test_MultiHeadAttention_grad():
    """Gradients of sum(out * g) w.r.t. the input and every parameter, against nn.MultiheadAttention's."""
    for i, (cfg, b, n) in enumerate([((12, 3, True), 2, 5), ((8, 2, True), 1, 4), ((16, 8, True), 2, 3)]):
        seed = 110 + i
        got, (_, _, want), case = _module_case(cfg, seed, randn(seed + 1000, (b, n, cfg[0])),
                                               g_out=randn(seed + 2000, (b, n, cfg[0])))
        expect(bool(got["loss_requires_grad"]),
               f"MultiHeadAttention: the output is cut off from autograd for {case} (it does not require grad). "
               "Stay in torch: no .numpy(), torch.tensor(...) or .detach() inside forward.")
        grads = got["grads"] if isinstance(got["grads"], dict) else {}
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


def _params(cfg, case, **kwargs):
    """The learner's count for `cfg`: an int, or a float or 0-d array holding a whole number."""
    got = env().call("attention_params", *cfg, case=case, forbid=FORBID, **kwargs)
    expect(not isinstance(got, bool) and isinstance(got, (int, float, np.number, np.ndarray)) and np.ndim(got) == 0
           and float(got).is_integer(), f"attention_params: expected an int for {case}; got {got!r}.")
    return int(got)


def test_attention_params():
    """Weights (bias=False and the default): 4 * d_model * (n_heads * d_head) per layer; bias=True adds
    3 * n_heads * d_head + d_model per layer (the bias vectors of W_Q, W_K, W_V and W_O)."""
    for cfg in _PARAM_CONFIGS:
        for kwargs in ({"bias": False}, {}):
            case = f"attention_params{cfg}" + (", bias=False" if kwargs else " (default bias)")
            got, want = _params(cfg, case, **kwargs), _count(*cfg, False)
            expect(got == want,
                   f"attention_params: expected {want:,} parameters for {case}; got {got:,}. Per layer: W_Q, W_K, "
                   "W_V are d_model x (n_heads * d_head), W_O is (n_heads * d_head) x d_model; d_model need not "
                   "equal n_heads * d_head.")
    for cfg in _PARAM_CONFIGS:
        case = f"attention_params{cfg}, bias=True minus bias=False"
        got = _params(cfg, case, bias=True) - _params(cfg, case, bias=False)
        want = _count(*cfg, True) - _count(*cfg, False)
        expect(got == want,
               f"attention_params: expected {want:,} bias parameters for {case}; got {got:,}. Each of "
               "W_Q, W_K, W_V has one bias per output (n_heads * d_head), W_O one per d_model, in every layer.")
