"""Hidden-test checks for chapter 8, `08_efficient_attention`.

The warm-ups (fit_loglog_slope, attention_memory_bytes, KVCache, kv_cache_bytes) have no checks: the notebook checks
them with plain asserts, and the checks below substitute the notebook's own KVCache where they need one.
References are independent of the learner's code: attention from PyTorch's own
`F.scaled_dot_product_attention` (`enable_gqa` for grouped-query attention), RoPE as complex multiplication, greedy
generation from the uncached forward pass of the notebook's reference GPT. Inputs are seeded float64, so the
tolerances can be tight.
"""
from __future__ import annotations

import functools
import re

from .references import causal_mask, random_mask, randn, sdpa, tensor, torch as _torch
from .sources import definition, load, provided, solution
from . import CheckFailed, env, expect, expect_cases, expect_close, expect_equal, expect_shape, expect_type, rng

# Calling the library's attention earns nothing in an exercise that asks you to build attention.
FORBID_ATTENTION = ["torch._C._nn.scaled_dot_product_attention", "torch.nn.functional.scaled_dot_product_attention",
                    "torch*scaled_dot_product*", "torch.nn.functional.multi_head_attention_forward",
                    "torch.nn.modules.activation.MultiheadAttention*"]

# The reference GPT is the notebook's locked cell `reference_gpt`; the generation checks build the model from this
# text, never from the learner's kernel. Its cached attention calls `attend_with_cache`, for which the checks send
# the notebook's own KVCache and attend_with_cache, so that generate_greedy is graded on its own.
MODEL_SOURCE = provided("08", "reference_gpt")
_CACHE_SOURCE = solution("08", "KVCache", "attend_with_cache")
SUBSTITUTE_CACHE = {"KVCache": _CACHE_SOURCE, "attend_with_cache": _CACHE_SOURCE}
_CACHE = load(_CACHE_SOURCE)


# ---------------------------------------------------------------- attention over a KV cache, and generation

def _expect_attend(seed, b, h, d, past, chunks, case, hint):
    """A cache holding `past` positions (appended directly), then `chunks` of new positions through the learner's
    attend_with_cache, each compared with PyTorch's attention of its queries over keys 0..own position."""
    total = past + sum(chunks)
    q, k, v = (randn(seed * 10 + i, b, h, total, d) for i in range(3))
    got = env().run(
        "attend_with_cache",
        """
        cache = KVCache()
        if past:
            cache.append(k[:, :, :past], v[:, :, :past])
        outs, start = [], past
        for size in chunks:
            end = start + size
            outs.append(attend_with_cache(q[:, :, start:end], k[:, :, start:end], v[:, :, start:end], cache))
            start = end
        final_length = cache.length
        """,
        inputs={"q": q, "k": k, "v": v, "past": past, "chunks": list(chunks)}, outputs=["outs", "final_length"],
        case=case, forbid=FORBID_ATTENTION, substitute={"KVCache": _CACHE_SOURCE},
    )
    start = past
    for j, (size, out) in enumerate(zip(chunks, got["outs"])):
        end = start + size
        allowed = _torch().ones(size, end, dtype=_torch().bool).tril(diagonal=start)  # query i sits at start + i
        where = f"position {start}" if size == 1 else f"positions {start}..{end - 1}"
        expect_close("attend_with_cache", out, sdpa(q[:, :, start:end], k[:, :, :end], v[:, :, :end], allowed),
                     atol=1e-10, rtol=1e-8, case=f"{case}, call {j} ({where})", hint=hint)
        start = end
    expect_equal("attend_with_cache", got["final_length"], total, case=case, what="cache length afterwards",
                 hint="Each call must append its k_new and v_new to the cache.")


def test_attend_with_cache():
    for seed, (b, h, d), past, steps in [(31, (2, 3, 4), 6, 4), (32, (1, 1, 8), 1, 3), (33, (3, 2, 5), 11, 2)]:
        _expect_attend(seed, b, h, d, past, [1] * steps,
                       f"a cache holding {past} positions, then {steps} one-token steps (batch={b}, heads={h}, "
                       f"d_head={d})", "Append the new key and value first, then let the query attend to every "
                       "cached key.")


def test_attend_with_cache_prefill():
    for seed, (b, h, d), chunks in [(41, (2, 2, 4), [5, 3]), (42, (1, 3, 6), [7]), (43, (2, 1, 3), [2, 4, 3])]:
        _expect_attend(seed, b, h, d, 0, chunks,
                       f"an empty cache fed chunks of {chunks} tokens (batch={b}, heads={h}, d_head={d})",
                       "Within a chunk, query i sits at position past + i and may see keys 0..past + i: "
                       "a causal mask shifted right by the number of cached positions.")


def _reference_greedy(model, idx, n_new):
    """Uncached greedy tokens, and the smallest gap between the top two logits (a near tie would make them fragile)."""
    torch = _torch()
    gaps = []
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(idx)[:, -1]
            top = logits.topk(2, dim=-1).values
            gaps.append(float((top[:, 0] - top[:, 1]).min()))
            idx = torch.cat([idx, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return idx, min(gaps)


def _reference_cached_flops(model, prompt, n_new):
    """Matrix-multiply work of a cached generation (prefill, then one token per step), measured here."""
    torch = _torch()
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        caches = [_CACHE["KVCache"]() for _ in model.blocks]
        logits = model(prompt, caches=caches, start_pos=0)
        for step in range(n_new - 1):
            logits = model(logits[:, -1].argmax(dim=-1, keepdim=True), caches=caches,
                           start_pos=prompt.shape[1] + step)
    return int(counter.get_total_flops())


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
from contextlib import nullcontext
from torch.utils.flop_counter import FlopCounterMode
_counter = FlopCounterMode(display=False) if measure else nullcontext()
with torch.no_grad(), _counter:
    tokens = generate_greedy(model, prompt.clone(), n_new, use_cache=use_cache)
flops = int(_counter.get_total_flops()) if measure else None
"""


def _generate(seed, config, batch, t0, n_new, use_cache, case, measure=False):
    """The reference model (the notebook's GPT built here, its cached attention the notebook's attend_with_cache),
    its prompt, and what the learner's generate_greedy made of them in the learner's kernel."""
    scope = {"__name__": "ch08_reference_model"}
    exec(compile(MODEL_SOURCE, "<ch08 reference model>", "exec"), scope)
    scope["attend_with_cache"] = _CACHE["attend_with_cache"]
    _torch().manual_seed(seed)
    model = scope["GPT"](**config).double().eval()
    prompt = _torch().from_numpy(rng(seed).integers(0, config["vocab_size"], size=(batch, t0)))
    got = env().run(
        "generate_greedy", MODEL_SOURCE + GENERATE_SNIPPET,
        inputs={"config": config, "state": {k: v.clone() for k, v in model.state_dict().items()},
                "prompt": prompt, "n_new": n_new, "use_cache": use_cache, "measure": measure},
        outputs=["tokens", "positions", "flops"], case=case, substitute=SUBSTITUTE_CACHE,
    )
    return model, prompt, got


def test_generate_greedy_tokens():
    torch = _torch()
    for seed, config, batch, t0, n_new in GENERATION_CASES:
        for use_cache in (True, False):
            case = (f"a {config['n_layers']}-layer GPT (float64), batch={batch}, prompt of {t0} tokens, "
                    f"{n_new} new tokens, use_cache={use_cache}")
            model, prompt, got = _generate(seed, config, batch, t0, n_new, use_cache, case)
            want, gap = _reference_greedy(model, prompt, n_new)
            assert gap > 1e-9, "reference generation has a near tie; pick another seed"
            tokens = got["tokens"]
            expect_type("generate_greedy", tokens, "tensor", case=case + " (token ids)")
            expect_shape("generate_greedy", tokens, want.shape, case=case,
                         hint="Return the prompt followed by the n_new generated tokens: (batch, t + n_new).")
            expect(bool(torch.equal(tokens[:, :t0].long(), prompt)),
                   f"generate_greedy: the first {t0} tokens should be the prompt for {case}.")
            differs = (tokens.long() != want).any(dim=0).nonzero()
            if len(differs):
                first = int(differs[0, 0])
                raise CheckFailed(
                    f"generate_greedy: tokens differ from uncached greedy generation for {case}: first at position "
                    f"{first} (new token {first - t0}). " + (
                        "With a cache, feed only the newest token, at start_pos = number of tokens already "
                        "cached, with one KVCache per block." if use_cache else
                        "Take the argmax of the logits at the last position and append it."))


def test_generate_greedy_uses_cache():
    for seed, config, batch, t0, n_new in GENERATION_CASES:
        layers = config["n_layers"]
        case = f"batch={batch}, prompt of {t0} tokens, {n_new} new tokens, use_cache=True ({layers} blocks)"
        model, prompt, got = _generate(seed, config, batch, t0, n_new, True, case, measure=True)
        positions, flops = got["positions"], got["flops"]
        expect(isinstance(positions, list) and all(isinstance(p, int) for p in positions)
               and isinstance(flops, int), f"generate_greedy: the grader could not count the model's work for {case}.")
        total, least, most = sum(positions), layers * (t0 + n_new - 1), layers * (t0 + n_new)
        hint = "Run the prompt once to fill the caches, then feed only the newest token."
        expect(total >= least,
               f"generate_greedy: with use_cache=True the model's attention layers saw only {total} token positions "
               f"for {case}; generating {n_new} tokens needs each of the {t0 + n_new - 1} positions once in each "
               f"block ({least}). Call the model: the prompt first, then each new token.")
        expect(total <= most,
               f"generate_greedy: with use_cache=True the model's attention layers processed {total} token positions "
               f"over {len(positions)} calls for {case}; a cached generation needs at most {most} (each position "
               f"once per block). {hint}")
        want = _reference_cached_flops(model, prompt, n_new)
        expect(flops <= 2 * want,
               f"generate_greedy: with use_cache=True it did {flops / max(want, 1):.1f}x the matrix-multiply work "
               f"of a cached generation for {case}. {hint}")


# ---------------------------------------------------------------- grouped-query attention

def _gqa_cases(table):
    """(case, (q, k, v), kwargs) for each (seed, (batch, heads_q, heads_kv, n_q, n_k, d), mask kind or None)."""
    cases = []
    for seed, (b, hq, hkv, n_q, n_k, d), kind in table:
        q, k, v = randn(seed, b, hq, n_q, d), randn(seed + 1, b, hkv, n_k, d), randn(seed + 2, b, hkv, n_k, d)
        case = f"q {tuple(q.shape)}, k and v {tuple(k.shape)} ({hq // hkv} query heads per K/V head)"
        if kind is None:
            cases.append((case, (q, k, v)))
        else:
            mask = causal_mask(n_q) if kind == "causal" else tensor(random_mask(rng(seed + 9), n_q, n_k), "bool")
            cases.append((f"{case}, a {kind} boolean mask (True = may attend)", (q, k, v), {"mask": mask}))
    return cases


def test_grouped_query_attention():
    expect_cases("grouped_query_attention",
                 _gqa_cases([(61, (2, 8, 2, 5, 5, 4), None), (62, (1, 6, 3, 4, 7, 8), None),
                             (63, (2, 4, 4, 6, 6, 3), None), (64, (3, 6, 1, 3, 5, 2), None),
                             (65, (1, 12, 4, 2, 9, 5), None)]),
                 functools.partial(sdpa, enable_gqa=True), atol=1e-10, rtol=1e-8, forbid=FORBID_ATTENTION,
                 hint="Query head i uses K/V head i // (heads_q // heads_kv): consecutive query heads share one K/V "
                      "head, rather than cycling through the K/V heads.")


def test_grouped_query_attention_mask():
    expect_cases("grouped_query_attention",
                 _gqa_cases([(71, (2, 4, 4, 6, 6, 3), "causal"), (72, (1, 6, 1, 5, 5, 4), "causal"),
                             (73, (2, 3, 3, 7, 7, 2), "random")]),
                 functools.partial(sdpa, enable_gqa=True), atol=1e-10, rtol=1e-8, forbid=FORBID_ATTENTION,
                 hint="A key the mask forbids (False) must get weight exactly 0.")


# ---------------------------------------------------------------- RoPE

def _ref_rope(x, positions, base):
    """Interleaved pairs (2i, 2i+1) as complex numbers x_2i + i·x_2i+1, multiplied by exp(i·p·base^(-2i/d))."""
    torch = _torch()
    d = x.shape[-1]
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    angles = positions.double()[:, None] * base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    return torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles)).reshape(x.shape)


_DTYPE_CLASH = re.compile(r"dtype|scalar type|Double|Float|can't be cast")


def _expect_rope(x, positions, case, hint, **kwargs):
    """The learner's apply_rope on float64 x against the reference; a dtype clash (float32 cos/sin tables kept from
    an earlier call, say) is answered with the dtype policy, not only torch's words."""
    try:
        got = env().call("apply_rope", x, positions, case=case, **kwargs)
    except CheckFailed as failed:
        if _DTYPE_CLASH.search(str(failed)):
            raise CheckFailed(f"{failed} x is float64 here: float32 and float64 are both accepted, but cos and sin "
                              "must follow x's dtype (build them with dtype=x.dtype, or .to(x.dtype)).") from None
        raise
    expect_close("apply_rope", got, _ref_rope(x, positions, kwargs.get("base", 10000.0)), atol=1e-4, rtol=1e-4,
                 case=case, hint=hint)


def test_apply_rope():
    for seed, shape in [(81, (2, 3, 10, 8)), (82, (1, 4, 7, 16)), (83, (3, 2, 5, 2)), (84, (2, 12, 6))]:
        _expect_rope(randn(seed, *shape), _torch().arange(shape[-2]),
                     f"x of shape {shape}, positions 0..{shape[-2] - 1}, base=10000",
                     "Rotate each interleaved pair (x[..., 2i], x[..., 2i+1]) by the angle p·base^(-2i/d); "
                     "index the last dimension so leading batch dimensions work.")


def test_apply_rope_positions():
    for seed, (n, d), base, positions in [(91, (6, 8), 10000.0, [3, 17, 0, 42, 5, 9]),
                                          (92, (5, 4), 100.0, [100, 101, 102, 103, 104]),
                                          (93, (4, 12), 500.0, [7, 7, 2, 64])]:
        _expect_rope(randn(seed, n, d), _torch().tensor(positions), f"x of shape {(n, d)}, positions {positions}, "
                     f"base={base:g}", "Use the positions you are given (not 0..n-1) and the base argument.", base=base)
    # the score of a rotated query and key depends only on their offset: rows q, k, q, k at m, n, m + 13, n + 13
    for seed, d, pairs in [(95, 8, [(3, 1), (10, 0), (0, 7)]), (96, 16, [(5, 5), (40, 2)])]:
        q, k = randn(seed, d), randn(seed + 1, d)
        positions = [p for m, n in pairs for p in (m, n, m + 13, n + 13)]
        case = f"q and k (d={d}) at positions {pairs}, and at each shifted by 13"
        rotated = env().call("apply_rope", _torch().stack([q, k] * 2 * len(pairs)), _torch().tensor(positions),
                             case=case)
        expect_type("apply_rope", rotated, "tensor", case=case)
        expect_shape("apply_rope", rotated, (len(positions), d), case=case)
        scores = (rotated[0::2] * rotated[1::2]).sum(-1).double()
        for (m, n), score, shifted in zip(pairs, scores[0::2].tolist(), scores[1::2].tolist()):
            expect(abs(score - shifted) <= 1e-4 * (1 + abs(score)),
                   f"apply_rope: the score should depend only on the offset m - n for q at position {m}, k at {n} "
                   f"and both shifted by 13 (d={d}); got {score:.5f} and {shifted:.5f}. Rotate query and key by "
                   "their own positions.")


# ---------------------------------------------------------------- online softmax

def _expect_online(table, hint, note=""):
    """Each (seed, (n_q, n_k, d, d_v), lead, block, scale) of `table` against PyTorch's exact attention."""
    cases = []
    for seed, (n_q, n_k, d, d_v), lead, block, scale in table:
        q, k = randn(seed, *lead, n_q, d, scale=scale), randn(seed + 1, *lead, n_k, d, scale=scale)
        v = randn(seed + 2, *lead, n_k, d_v)
        cases.append((f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}{note}, block_size={block}",
                      (q, k, v, block)))
    expect_cases("online_softmax_attention", cases, lambda q, k, v, block: sdpa(q, k, v), atol=1e-9, rtol=1e-9,
                 forbid=FORBID_ATTENTION, hint=hint)


def test_online_softmax_attention():
    _expect_online([(101, (8, 8, 4, 4), (2, 3), 2, 1.0), (102, (12, 12, 6, 5), (1, 2), 4, 1.0),
                    (103, (6, 6, 3, 3), (2, 1), 1, 1.0), (104, (5, 10, 4, 2), (1, 4), 5, 1.0),
                    (105, (9, 9, 8, 8), (2, 2), 9, 1.0)],
                   "Keep a running max m, sum l and output acc per query; when m grows, rescale l and acc by "
                   "exp(m_old - m_new).")


def test_online_softmax_attention_blocks():
    _expect_online([(111, (7, 13, 4, 3), (), block, 1.0) for block in [2, 3, 4, 5, 6, 8, 12, 14, 100]],
                   "The last block may be shorter than block_size: every key must land in exactly one block, "
                   "the last ones included.", note=" (n_k=13 is not a multiple of the block)")


def test_online_softmax_attention_stability():
    _expect_online([(121, (5, 12, 4, 3), (), 3, 30.0), (122, (3, 8, 2, 3), (), 2, 50.0),
                    (123, (4, 6, 3, 3), (), 1, 40.0)],
                   "exp(1000) overflows: subtract the running max before exponentiating, and rescale the "
                   "running sum and output by exp(m_old - m_new) when it grows.", note=" with scores in the thousands")


# the notebook's own probe of the largest tensor made (its setup cell's LargestTensor), sent with the snippet
MEMORY_SNIPPET = definition("08", "setup", "LargestTensor") + """
import gc
import tracemalloc

def _status_kib(field):  # a field of /proc/self/status ("VmRSS:   1234 kB"), in KiB
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":"))

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
    with LargestTensor() as _mode:
        out = online_softmax_attention(q, k, v, block_size)
    traced_peak = tracemalloc.get_traced_memory()[1]
finally:
    tracemalloc.stop()
rss_peak_growth = None if rss_before is None else (_status_kib("VmHWM") - rss_before) * 1024
largest, largest_shape = _mode.numel, _mode.shape
"""


def test_online_softmax_attention_memory():
    """No full n_q x n_k score matrix at any time, in any library: the largest torch tensor, the peak of Python's and
    NumPy's allocations (tracemalloc) and the growth of the process's peak resident memory (torch included) all stay
    under half of the full matrix: 32 and 22.5 MiB, far above the few MiB resident memory jitters by. n_k is a
    multiple of the block: a dropped last block is test_online_softmax_attention_blocks's."""
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
