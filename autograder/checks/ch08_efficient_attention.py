"""Hidden-test checks for chapter 8, `08_efficient_attention`.

Every reference here is independent of the learner's code: least squares from `np.polyfit`, attention from
PyTorch's own `F.scaled_dot_product_attention` (with `enable_gqa` for grouped-query attention), RoPE as complex
multiplication, greedy generation from the uncached forward pass of the reference GPT below. Inputs come from fixed
seeds, float64 wherever values are compared, so the tolerances can be tight.
"""
from __future__ import annotations

import re

import numpy as np

from .references import causal_mask, randn, sdpa, torch as _torch
from .sources import load, provided, solution
from . import CheckFailed, env, expect, expect_cases, expect_close, expect_equal, rng

# Calling the library's attention earns nothing in an exercise that asks you to build attention.
FORBID_ATTENTION = [
    "torch._C._nn.scaled_dot_product_attention",
    "torch.nn.functional.scaled_dot_product_attention",
    "torch*scaled_dot_product*",
    "torch.nn.functional.multi_head_attention_forward",
    "torch.nn.modules.activation.MultiheadAttention*",
]

# The reference GPT: the notebook's locked cell `reference_gpt`, read from it. The generation checks define the model
# from this text, never from the learner's kernel. In cache mode its attention calls `attend_with_cache`, which the
# checks replace with the reference below so that generate_greedy is graded on its own.
MODEL_SOURCE = provided("08", "reference_gpt")


# ---------------------------------------------------------------- the notebook's own cache (substituted, and run here)

_CACHE_SOURCE = solution("08", "KVCache", "attend_with_cache")
SUBSTITUTE_CACHE = {"KVCache": _CACHE_SOURCE, "attend_with_cache": _CACHE_SOURCE}
_CACHE = load(_CACHE_SOURCE)
_RefKVCache, _ref_attend_with_cache = _CACHE["KVCache"], _CACHE["attend_with_cache"]


def _causal_rows(q_rows, k, v, first_position):
    """Queries at positions first_position.. attending keys 0..position (PyTorch's attention as the reference)."""
    t, total = q_rows.shape[-2], k.shape[-2]
    allowed = _torch().ones(t, total, dtype=_torch().bool).tril(diagonal=first_position)
    return sdpa(q_rows, k, v, allowed)


def _as_float(exercise, value, case):
    try:
        return float(value)
    except (TypeError, ValueError):
        name = value.get("__opaque__") if isinstance(value, dict) else type(value).__name__
        raise CheckFailed(f"{exercise}: expected one number for {case}; got {name}.") from None


# ---------------------------------------------------------------- 1. the cost curve

def test_fit_loglog_slope():
    for seed, power, k, as_list in [(11, 2.0, 7, False), (12, 1.0, 5, True), (13, 2.7, 9, False), (14, 0.5, 4, True)]:
        r = rng(seed)
        ns = np.unique(np.round(np.geomspace(r.integers(8, 64), r.integers(2000, 9000), k))).astype(float)
        costs = r.uniform(1e-6, 1e-3) * ns ** power * np.exp(r.normal(scale=0.1, size=ns.size))
        want = float(np.polyfit(np.log(ns), np.log(costs), 1)[0])
        args = (ns.tolist(), costs.tolist()) if as_list else (ns, costs)
        case = f"{ns.size} points with cost ∝ n^{power:g} (plus noise), given as {'lists' if as_list else 'arrays'}"
        got = _as_float("fit_loglog_slope", env().call("fit_loglog_slope", *args, case=case), case)
        expect(abs(got - want) <= 1e-8 * max(1.0, abs(want)),
               f"fit_loglog_slope: expected slope {want:.4f} for {case}; got {got:.4f}. Fit a straight line to "
               "(log n, log cost), with the same logarithm on both axes, and return its slope.")


def test_attention_memory_bytes():
    sizes = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}
    for n, d, heads, dtype in [(1000, 64, 1, "float32"), (2048, 128, 96, "float16"), (37, 5, 3, "float64"),
                               (4096, 64, 12, "bfloat16"), (1, 8, 2, "float32")]:
        want = heads * (n * n + 4 * n * d) * sizes[dtype]
        case = f"n={n}, d={d}, heads={heads}, dtype='{dtype}'"
        got = env().call("attention_memory_bytes", n, d, heads, dtype, case=case)
        got_n = _as_float("attention_memory_bytes", got, case)
        expect(got_n == want,
               f"attention_memory_bytes: expected {want:,} bytes for {case}; got {got_n:,.0f}. Count heads × "
               "(n·n for the weights + 4·n·d for Q, K, V and the output) elements, times the bytes per element "
               "of the dtype.")


# ---------------------------------------------------------------- 2. KV cache and generation

def test_KVCache():
    torch = _torch()
    for seed, (b, h, d), chunks in [(21, (2, 3, 4), [5, 1, 1, 3]), (22, (1, 2, 8), [1, 1]), (23, (3, 1, 2), [4])]:
        ks = [randn(seed * 10 + i, b, h, t, d) for i, t in enumerate(chunks)]
        vs = [randn(seed * 10 + 5 + i, b, h, t, d) for i, t in enumerate(chunks)]
        case = f"chunks of {chunks} positions with batch={b}, heads={h}, d_head={d}"
        got = env().run(
            "KVCache",
            """
            cache = KVCache()
            other = KVCache()
            empty_length = cache.length
            lengths, returned = [], []
            for k_chunk, v_chunk in zip(ks, vs):
                returned.append(cache.append(k_chunk, v_chunk))
                lengths.append(cache.length)
            k_all, v_all = cache.get()
            other_length = other.length
            """,
            inputs={"ks": ks, "vs": vs},
            outputs=["empty_length", "lengths", "returned", "k_all", "v_all", "other_length"],
            case=case,
        )
        expect_equal("KVCache", got["empty_length"], 0, case="a new cache", what="length",
                     hint="A cache holds nothing until the first append.")
        want_lengths = list(np.cumsum(chunks))
        got_lengths = [int(x) if isinstance(x, (int, float)) else x for x in got["lengths"]]
        expect_equal("KVCache", got_lengths, want_lengths, case=case + " (length after each append)",
                     what="lengths", hint="length counts cached positions: the size of dimension 2.")
        k_want, v_want = torch.cat(ks, dim=2), torch.cat(vs, dim=2)
        expect_close("KVCache", got["k_all"], k_want, atol=0.0, case=case + ", keys from get()",
                     hint="Concatenate along dim 2 (the sequence axis) of (batch, heads, length, d_head), in order.")
        expect_close("KVCache", got["v_all"], v_want, atol=0.0, case=case + ", values from get()",
                     hint="Concatenate along dim 2 (the sequence axis) of (batch, heads, length, d_head), in order.")
        last = got["returned"][-1]
        expect(isinstance(last, tuple) and len(last) == 2,
               f"KVCache: append should return the pair (k, v) of everything cached for {case}; got {type(last).__name__}.")
        expect_close("KVCache", last[0], k_want, atol=0.0, case=case + ", keys returned by the last append")
        expect_close("KVCache", last[1], v_want, atol=0.0, case=case + ", values returned by the last append")
        expect_equal("KVCache", got["other_length"], 0, case="a second cache after appending to the first",
                     what="length", hint="Keep the tensors on the instance (self.k in __init__), not on the class.")


def test_attend_with_cache():
    for seed, (b, h, d), past, steps in [(31, (2, 3, 4), 6, 4), (32, (1, 1, 8), 1, 3), (33, (3, 2, 5), 11, 2)]:
        total = past + steps
        q, k, v = (randn(seed * 10 + i, b, h, total, d) for i in range(3))
        case = f"a cache holding {past} positions, then {steps} one-token steps (batch={b}, heads={h}, d_head={d})"
        got = env().run(
            "attend_with_cache",
            """
            cache = KVCache()
            cache.append(k[:, :, :past], v[:, :, :past])
            outs = [attend_with_cache(q[:, :, i:i + 1], k[:, :, i:i + 1], v[:, :, i:i + 1], cache)
                    for i in range(past, past + steps)]
            final_length = cache.length
            """,
            inputs={"q": q, "k": k, "v": v, "past": past, "steps": steps},
            outputs=["outs", "final_length"],
            case=case, forbid=FORBID_ATTENTION, substitute={"KVCache": _CACHE_SOURCE},
        )
        for step, out in enumerate(got["outs"]):
            i = past + step
            want = _causal_rows(q[:, :, i:i + 1], k[:, :, :i + 1], v[:, :, :i + 1], i)
            expect_close("attend_with_cache", out, want, atol=1e-10, rtol=1e-8,
                         case=f"{case}, step {step} (position {i})",
                         hint="Append the new key and value first, then let the query attend to every cached key.")
        expect_equal("attend_with_cache", got["final_length"], total, case=case, what="cache length afterwards",
                     hint="Each call must append its k_new and v_new to the cache.")


def test_attend_with_cache_prefill():
    for seed, (b, h, d), chunks in [(41, (2, 2, 4), [5, 3]), (42, (1, 3, 6), [7]), (43, (2, 1, 3), [2, 4, 3])]:
        total = sum(chunks)
        q, k, v = (randn(seed * 10 + i, b, h, total, d) for i in range(3))
        case = f"an empty cache fed chunks of {chunks} tokens (batch={b}, heads={h}, d_head={d})"
        got = env().run(
            "attend_with_cache",
            """
            cache = KVCache()
            outs, start = [], 0
            for size in chunks:
                outs.append(attend_with_cache(q[:, :, start:start + size], k[:, :, start:start + size],
                                              v[:, :, start:start + size], cache))
                start += size
            """,
            inputs={"q": q, "k": k, "v": v, "chunks": list(chunks)},
            outputs=["outs"],
            case=case, forbid=FORBID_ATTENTION, substitute={"KVCache": _CACHE_SOURCE},
        )
        start = 0
        for j, (size, out) in enumerate(zip(chunks, got["outs"])):
            want = _causal_rows(q[:, :, start:start + size], k[:, :, :start + size], v[:, :, :start + size], start)
            expect_close("attend_with_cache", out, want, atol=1e-10, rtol=1e-8,
                         case=f"{case}, chunk {j} (positions {start}..{start + size - 1})",
                         hint="Within a chunk, query i sits at position past + i and may see keys 0..past + i: "
                              "a causal mask shifted right by the number of cached positions.")
            start += size


def _reference_model(config, seed):
    torch = _torch()
    scope = {"__name__": "ch08_reference_model"}
    exec(compile(MODEL_SOURCE, "<ch08 reference model>", "exec"), scope)
    scope["attend_with_cache"] = _ref_attend_with_cache
    torch.manual_seed(seed)
    model = scope["GPT"](**config).double().eval()
    return model


def _reference_greedy(model, idx, n_new):
    torch = _torch()
    gaps = []
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(idx)[:, -1]
            top = logits.topk(2, dim=-1).values
            gaps.append(float((top[:, 0] - top[:, 1]).min()))
            idx = torch.cat([idx, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return idx, min(gaps)


GENERATION_CASES = [
    # seed, config, batch, prompt length, new tokens
    (51, dict(vocab_size=40, d_model=32, n_heads=4, n_layers=2, max_len=64), 2, 5, 30),
    (52, dict(vocab_size=23, d_model=24, n_heads=2, n_layers=3, max_len=64), 1, 1, 20),
    (53, dict(vocab_size=50, d_model=16, n_heads=4, n_layers=1, max_len=64), 3, 9, 12),
]

GENERATE_SNIPPET = """
import torch
model = GPT(**config).double().eval()
model.load_state_dict(state)
# Work is counted where every path to the model's computation passes: the attention class itself (so
# type(model).forward, model.blocks[i] and copy.deepcopy(model) are all counted, and decoy calls add to the count),
# and, when asked, every matrix multiply torch dispatches (so a second model built from another class counts too).
positions = []
_attend = CausalSelfAttention.forward
def _counting_attend(self, x, cache=None):
    positions.append(int(x.shape[-2]))
    return _attend(self, x, cache)
CausalSelfAttention.forward = _counting_attend
flops = None
with torch.no_grad():
    if measure:
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as _counter:
            tokens = generate_greedy(model, prompt.clone(), n_new, use_cache=use_cache)
        flops = int(_counter.get_total_flops())
    else:
        tokens = generate_greedy(model, prompt.clone(), n_new, use_cache=use_cache)
"""


def _generate(seed, config, batch, t0, n_new, use_cache, case, measure=False):
    torch = _torch()
    model = _reference_model(config, seed)
    prompt = torch.from_numpy(rng(seed).integers(0, config["vocab_size"], size=(batch, t0)))
    got = env().run(
        "generate_greedy",
        MODEL_SOURCE + GENERATE_SNIPPET,
        inputs={"config": config, "state": {k: v.clone() for k, v in model.state_dict().items()},
                "prompt": prompt, "n_new": n_new, "use_cache": use_cache, "measure": measure},
        outputs=["tokens", "positions", "flops"],
        case=case, substitute=SUBSTITUTE_CACHE,
    )
    return model, prompt, got


def test_generate_greedy_tokens():
    torch = _torch()
    for seed, config, batch, t0, n_new in GENERATION_CASES:
        want = None
        for use_cache in (True, False):
            case = (f"a {config['n_layers']}-layer GPT (float64), batch={batch}, prompt of {t0} tokens, "
                    f"{n_new} new tokens, use_cache={use_cache}")
            model, prompt, got = _generate(seed, config, batch, t0, n_new, use_cache, case)
            if want is None:
                want, gap = _reference_greedy(model, prompt, n_new)
                assert gap > 1e-9, "reference generation has a near tie; pick another seed"
            tokens = got["tokens"]
            expect(isinstance(tokens, torch.Tensor),
                   f"generate_greedy: expected a tensor of token ids for {case}; got {type(tokens).__name__}.")
            expect_equal("generate_greedy", tuple(tokens.shape), tuple(want.shape), case=case, what="shape",
                         hint="Return the prompt followed by the n_new generated tokens: (batch, t + n_new).")
            expect(bool(torch.equal(tokens[:, :t0].long(), prompt)),
                   f"generate_greedy: the first {t0} tokens should be the prompt for {case}.")
            same = (tokens.long() == want)
            if not bool(same.all()):
                first = int((~same).any(dim=0).nonzero()[0, 0])
                raise CheckFailed(
                    f"generate_greedy: tokens differ from uncached greedy generation for {case}: first at position "
                    f"{first} (new token {first - t0}). " + (
                        "With a cache, feed only the newest token, at start_pos = number of tokens already "
                        "cached, with one KVCache per block." if use_cache else
                        "Take the argmax of the logits at the last position and append it."))


def _reference_cached_flops(config, seed, batch, t0, n_new):
    """Matrix-multiply work of a cached generation (prefill, then one token per step), measured here."""
    torch = _torch()
    from torch.utils.flop_counter import FlopCounterMode

    scope = {"__name__": "ch08_reference_cached", "attend_with_cache": _ref_attend_with_cache}
    exec(compile(MODEL_SOURCE, "<reference GPT>", "exec"), scope)
    model = scope["GPT"](**config).double().eval()
    idx = torch.from_numpy(rng(seed).integers(0, config["vocab_size"], size=(batch, t0)))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        caches = [_RefKVCache() for _ in model.blocks]
        logits = model(idx, caches=caches, start_pos=0)
        for step in range(n_new - 1):
            token = logits[:, -1].argmax(dim=-1, keepdim=True)
            logits = model(token, caches=caches, start_pos=t0 + step)
    return int(counter.get_total_flops())


def test_generate_greedy_uses_cache():
    for seed, config, batch, t0, n_new in GENERATION_CASES:
        layers = config["n_layers"]
        case = f"batch={batch}, prompt of {t0} tokens, {n_new} new tokens, use_cache=True ({layers} blocks)"
        _, _, got = _generate(seed, config, batch, t0, n_new, True, case, measure=True)
        positions, flops = got["positions"], got["flops"]
        expect(isinstance(positions, list) and all(isinstance(p, int) for p in positions),
               f"generate_greedy: the grader could not count the model's work for {case}.")
        total = sum(positions)
        least, most = layers * (t0 + n_new - 1), layers * (t0 + n_new)
        hint = "Run the prompt once to fill the caches, then feed only the newest token."
        expect(total >= least,
               f"generate_greedy: with use_cache=True the model's attention layers saw only {total} token positions "
               f"for {case}; generating {n_new} tokens needs each of the {t0 + n_new - 1} positions once in each "
               f"block ({least}). Call the model: the prompt first, then each new token.")
        expect(total <= most,
               f"generate_greedy: with use_cache=True the model's attention layers processed {total} token positions "
               f"over {len(positions)} calls for {case}; a cached generation needs at most {most} (each position "
               f"once per block). {hint}")
        want = _reference_cached_flops(config, seed, batch, t0, n_new)
        expect(isinstance(flops, int) and flops <= 2 * want,
               f"generate_greedy: with use_cache=True it did {flops / max(want, 1):.1f}x the matrix-multiply work "
               f"of a cached generation for {case}. {hint}" if isinstance(flops, int) else
               f"generate_greedy: the grader could not measure the work for {case}.")


# ---------------------------------------------------------------- 3. grouped-query attention

def _gqa_case(seed, b, hq, hkv, n_q, n_k, d):
    return (randn(seed, b, hq, n_q, d), randn(seed + 1, b, hkv, n_k, d), randn(seed + 2, b, hkv, n_k, d))


def _gqa_reference(q, k, v, mask=None):
    return sdpa(q, k, v, mask, enable_gqa=True)


def test_grouped_query_attention():
    cases = []
    for seed, (b, hq, hkv, n_q, n_k, d) in [(61, (2, 8, 2, 5, 5, 4)), (62, (1, 6, 3, 4, 7, 8)),
                                            (63, (2, 4, 4, 6, 6, 3)), (64, (3, 6, 1, 3, 5, 2)),
                                            (65, (1, 12, 4, 2, 9, 5))]:
        q, k, v = _gqa_case(seed, b, hq, hkv, n_q, n_k, d)
        case = f"q {tuple(q.shape)}, k and v {tuple(k.shape)} ({hq // hkv} query heads per K/V head)"
        cases.append((case, (q, k, v)))
    expect_cases("grouped_query_attention", cases, _gqa_reference, atol=1e-10, rtol=1e-8, forbid=FORBID_ATTENTION,
                 hint="Query head i uses K/V head i // (heads_q // heads_kv): consecutive query heads share, "
                      "as repeat_interleave does (not repeat).")


def test_grouped_query_attention_mask():
    torch = _torch()
    cases = []
    for seed, (b, hq, hkv, n, d), kind in [(71, (2, 4, 4, 6, 3), "causal"), (72, (1, 6, 1, 5, 4), "causal"),
                                           (73, (2, 3, 3, 7, 2), "random")]:
        q, k, v = _gqa_case(seed, b, hq, hkv, n, n, d)
        if kind == "causal":
            mask = causal_mask(n)
        else:
            mask = torch.from_numpy(rng(seed + 9).random((n, n)) < 0.5)
            mask[torch.arange(n), torch.from_numpy(rng(seed + 8).integers(0, n, size=n))] = True
        case = f"q {tuple(q.shape)}, k and v {tuple(k.shape)}, a {kind} boolean mask (True = may attend)"
        cases.append((case, (q, k, v), {"mask": mask}))
    expect_cases("grouped_query_attention", cases, _gqa_reference, atol=1e-10, rtol=1e-8, forbid=FORBID_ATTENTION,
                 hint="Set the scores where mask is False to -inf before the softmax.")


def test_kv_cache_bytes():
    sizes = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}
    for layers, kv_heads, d_head, seq_len, batch, dtype in [(96, 96, 128, 2048, 1, "float16"),
                                                             (80, 8, 128, 4096, 1, "bfloat16"),
                                                             (80, 1, 128, 4096, 8, "float16"),
                                                             (2, 4, 16, 256, 3, "float32"),
                                                             (1, 1, 1, 1, 1, "float64")]:
        want = 2 * layers * kv_heads * d_head * seq_len * batch * sizes[dtype]
        case = f"n_layers={layers}, n_kv_heads={kv_heads}, d_head={d_head}, seq_len={seq_len}, batch={batch}, dtype='{dtype}'"
        got = env().call("kv_cache_bytes", layers, kv_heads, d_head, seq_len, batch=batch, dtype=dtype, case=case)
        got_n = _as_float("kv_cache_bytes", got, case)
        expect(got_n == want,
               f"kv_cache_bytes: expected {want:,} bytes for {case}; got {got_n:,.0f}. Every layer caches a key "
               "and a value (2 tensors) of batch × n_kv_heads × seq_len × d_head elements.")


# ---------------------------------------------------------------- 4. RoPE

def _ref_rope(x, positions, base):
    """Interleaved pairs (2i, 2i+1) as complex numbers x_2i + i·x_2i+1, multiplied by exp(i·p·base^(-2i/d))."""
    torch = _torch()
    d = x.shape[-1]
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions.double()[:, None] * theta[None, :]
    rotated = z * torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(rotated).reshape(x.shape)


ROPE_TOL = dict(atol=1e-4, rtol=1e-4)
_DTYPE_CLASH = re.compile(r"dtype|scalar type|Double|Float|can't be cast")


def _call_rope(x, positions, case, **kwargs):
    """The learner's apply_rope on float64 x; a dtype clash (float32 cos/sin tables kept from an earlier call, say)
    is answered with the dtype policy, not only torch's words."""
    try:
        return env().call("apply_rope", x, positions, case=case, **kwargs)
    except CheckFailed as failed:
        if _DTYPE_CLASH.search(str(failed)):
            raise CheckFailed(f"{failed} x is float64 here: float32 and float64 are both accepted, but cos and sin "
                              "must follow x's dtype (build them with dtype=x.dtype, or .to(x.dtype)).") from None
        raise


def test_apply_rope():
    torch = _torch()
    for seed, shape in [(81, (2, 3, 10, 8)), (82, (1, 4, 7, 16)), (83, (3, 2, 5, 2)), (84, (2, 12, 6))]:
        x = randn(seed, *shape)
        positions = torch.arange(shape[-2])
        case = f"x of shape {shape}, positions 0..{shape[-2] - 1}, base=10000"
        got = _call_rope(x, positions, case)
        expect_close("apply_rope", got, _ref_rope(x, positions, 10000.0), case=case, **ROPE_TOL,
                     hint="Rotate each interleaved pair (x[..., 2i], x[..., 2i+1]) by the angle p·base^(-2i/d); "
                          "index the last dimension so leading batch dimensions work.")


def test_apply_rope_positions():
    torch = _torch()
    for seed, (n, d), base, positions in [(91, (6, 8), 10000.0, [3, 17, 0, 42, 5, 9]),
                                          (92, (5, 4), 100.0, [100, 101, 102, 103, 104]),
                                          (93, (4, 12), 500.0, [7, 7, 2, 64])]:
        x = randn(seed, n, d)
        pos = torch.tensor(positions)
        case = f"x of shape {(n, d)}, positions {positions}, base={base:g}"
        got = _call_rope(x, pos, case, base=base)
        expect_close("apply_rope", got, _ref_rope(x, pos, base), case=case, **ROPE_TOL,
                     hint="Use the positions you are given (not 0..n-1) and the base argument.")
    # the score between a rotated query and key depends only on the offset between their positions
    for seed, d, pairs in [(95, 8, [(3, 1), (10, 0), (0, 7)]), (96, 16, [(5, 5), (40, 2)])]:
        q, k = randn(seed, 1, d), randn(seed + 1, 1, d)
        for m, n in pairs:
            shift = 13
            case = f"q at position {m}, k at {n}, and both shifted by {shift} (d={d})"
            got = env().run(
                "apply_rope",
                """
                import torch
                score = float((apply_rope(q, torch.tensor([m]))[0] * apply_rope(k, torch.tensor([n]))[0]).sum())
                shifted = float((apply_rope(q, torch.tensor([m + s]))[0] * apply_rope(k, torch.tensor([n + s]))[0]).sum())
                """,
                inputs={"q": q, "k": k, "m": m, "n": n, "s": shift},
                outputs=["score", "shifted"], case=case,
            )
            expect(abs(got["score"] - got["shifted"]) <= 1e-4 * (1 + abs(got["score"])),
                   f"apply_rope: the score should depend only on the offset m - n for {case}; got "
                   f"{got['score']:.5f} and {got['shifted']:.5f}. Rotate query and key by their own positions.")


# ---------------------------------------------------------------- 5. online softmax

def _online_cases_main():
    return [(101, (2, 3, 8, 8, 4, 4), 2), (102, (1, 2, 12, 12, 6, 5), 4), (103, (2, 1, 6, 6, 3, 3), 1),
            (104, (1, 4, 5, 10, 4, 2), 5), (105, (2, 2, 9, 9, 8, 8), 9)]


def _check_online(seed, q, k, v, block, case, hint):
    got = env().call("online_softmax_attention", q, k, v, block, case=case, forbid=FORBID_ATTENTION)
    expect_close("online_softmax_attention", got, sdpa(q, k, v), atol=1e-9, rtol=1e-9, case=case, hint=hint)


def test_online_softmax_attention():
    for seed, (b, h, n_q, n_k, d, d_v), block in _online_cases_main():
        q, k, v = randn(seed, b, h, n_q, d), randn(seed + 1, b, h, n_k, d), randn(seed + 2, b, h, n_k, d_v)
        case = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, block_size={block}"
        _check_online(seed, q, k, v, block, case,
                      "Keep a running max m, sum l and output acc per query; when m grows, rescale l and acc by "
                      "exp(m_old - m_new).")


def test_online_softmax_attention_blocks():
    n_q, n_k, d, d_v = 7, 13, 4, 3
    q, k, v = randn(111, n_q, d), randn(112, n_k, d), randn(113, n_k, d_v)
    for block in [2, 3, 4, 5, 6, 8, 12, 14, 100]:
        case = f"q {tuple(q.shape)}, k {tuple(k.shape)}, block_size={block} (n_k={n_k} is not a multiple)"
        _check_online(111, q, k, v, block, case,
                      "The last block may be shorter than block_size: loop over start = 0, B, 2B, ... < n_k and "
                      "slice k[start:start + B].")


def test_online_softmax_attention_stability():
    for seed, (n_q, n_k, d), block, scale in [(121, (5, 12, 4), 3, 30.0), (122, (3, 8, 2), 2, 50.0), (123, (4, 6, 3), 1, 40.0)]:
        q, k, v = randn(seed, n_q, d, scale=scale), randn(seed + 1, n_k, d, scale=scale), randn(seed + 2, n_k, 3)
        case = f"q {tuple(q.shape)}, k {tuple(k.shape)} with scores in the thousands, block_size={block}"
        _check_online(seed, q, k, v, block, case,
                      "exp(1000) overflows: subtract the running max before exponentiating, and rescale the "
                      "running sum and output by exp(m_old - m_new) when it grows.")


MEMORY_SNIPPET = """
import gc
import tracemalloc
import torch
from torch.overrides import TorchFunctionMode

class _LargestTensor(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.numel, self.shape = 0, None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(t, torch.Tensor) and t.numel() > self.numel:
                self.numel, self.shape = t.numel(), tuple(t.shape)
        return out

def _status_kib(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None

online_softmax_attention(q, k, v, block_size)  # once first: one-off allocations (thread pools, caches) don't count
gc.collect()
try:  # reset the process's peak resident memory (VmHWM) to its current size (Linux: clear_refs, value 5)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    rss_before = _status_kib("VmRSS")
except OSError:
    rss_before = None
tracemalloc.start()
try:
    with _LargestTensor() as _mode:
        out = online_softmax_attention(q, k, v, block_size)
    traced_peak = tracemalloc.get_traced_memory()[1]
finally:
    tracemalloc.stop()
rss_peak_growth = None if rss_before is None else (_status_kib("VmHWM") - rss_before) * 1024
largest, largest_shape = _mode.numel, _mode.shape
"""


def test_online_softmax_attention_memory():
    """No full n_q x n_k score matrix at any time, in any library: the largest torch tensor made, the peak of
    Python's and NumPy's allocations (tracemalloc), and the growth of the whole process's peak resident memory
    (everything else, torch included) all stay under half of what the full matrix would take."""
    # Full matrices of 32 and 22.5 MiB: a blockwise pass stays far below half of that even when the process's
    # resident memory jitters by a few MiB (allocator arenas, other threads), which an 8 MiB matrix did not leave
    # room for. n_k is a multiple of the block: a dropped last block is test_online_softmax_attention_blocks's.
    for seed, (n_q, n_k, d, d_v), block in [(131, (256, 16384, 8, 4), 64), (132, (192, 15360, 6, 5), 48)]:
        q, k, v = randn(seed, n_q, d), randn(seed + 1, n_k, d), randn(seed + 2, n_k, d_v)
        case = f"q {tuple(q.shape)}, k {tuple(k.shape)} (float64), block_size={block}"
        got = env().run("online_softmax_attention", MEMORY_SNIPPET,
                        inputs={"q": q, "k": k, "v": v, "block_size": block},
                        outputs=["out", "largest", "largest_shape", "traced_peak", "rss_peak_growth"], case=case,
                        forbid=FORBID_ATTENTION)
        expect_close("online_softmax_attention", got["out"], sdpa(q, k, v), atol=1e-9, rtol=1e-9, case=case)
        full_bytes = n_q * n_k * 8
        blockwise = (f"a blockwise pass needs about n_q × block_size = {n_q * block:,} score elements at a time, "
                     f"never the full {n_q} × {n_k} matrix")
        expect(got["largest"] < n_q * n_k // 2,
               f"online_softmax_attention: the largest tensor it made has shape {got['largest_shape']} "
               f"({got['largest']:,} elements) for {case}; {blockwise}.")
        for key, what in (("traced_peak", "Python and NumPy allocations peaked at"),
                          ("rss_peak_growth", "the process's peak memory grew by")):
            used = got[key]
            if used is None:  # the kernel can't reset its peak-memory counter here: the other probes still count
                continue
            expect(isinstance(used, (int, float)) and used < full_bytes // 2,
                   f"online_softmax_attention: {what} {used / 2**20:.1f} MiB for {case}, while the full score "
                   f"matrix takes {full_bytes / 2**20:.0f} MiB; {blockwise} (in any library, NumPy included).")
