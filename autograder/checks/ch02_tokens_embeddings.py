"""Checks for chapter 2, `02_tokens_embeddings`: tokenizers, embeddings, similarity, unembedding, temperature.

Inputs come from fixed seeds; references are PyTorch's own functions where one exists (`F.cosine_similarity`,
`F.linear`, `torch.softmax`). The BPE reference is written apart from the notebook's solution, in the style of
Sennrich et al.'s original code (symbols joined by spaces, merges applied by a regular expression). Tolerances:
float64 values to `atol=1e-10, rtol=1e-8`. The warm-ups (build_vocab, encode, decode, one_hot, embed) have no checks.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

from .sources import solution
from .references import tensor, torch as _torch
from . import CheckFailed, env, expect, expect_cases, expect_close, expect_shape, expect_type, held_as, rng

FORBID_TOKENIZERS = ["tokenizers*", "sentencepiece*", "tiktoken*", "transformers*", "nltk*", "torchtext*"]
FORBID_COSINE = ["torch*cosine_similarity*", "sklearn*", "scipy.spatial*", "scipy.special*"]
FORBID_LINEAR = ["torch*linear*", "tensorflow*", "keras*"]
FORBID_SOFTMAX = ["scipy.special*softmax*", "torch*softmax*", "torch.nn.functional.*", "tensorflow*", "keras*",
                  "jax*"]
TOL = {"atol": 1e-10, "rtol": 1e-8}

HANGUL = "가나다라마바사아자차카타파하철수영희"


def _F():
    import torch.nn.functional as F

    return F


def _first_difference(exercise, got, want, case, what, hint):
    """Two sequences of ids, tokens or merges must be equal: name the first place they differ."""
    if got == want:
        return
    i = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
    shown = [repr(s[i]) if i < len(s) else "nothing" for s in (want, got)]
    raise CheckFailed(f"{exercise}: expected {len(want)} {what}s for {case}; got {len(got)}; first difference at "
                      f"{what} {i} (the first {i} agree): expected {shown[0]}, got {shown[1]}. {hint}")


# ---- character tokenizer: build_vocab, encode and decode are ungraded warm-ups; BPE reuses the random texts
def _random_text(seed: int, n_words: int, alphabet: str, max_len: int = 6) -> str:
    g = rng(seed)
    lengths = (int(g.integers(1, max_len + 1)) for _ in range(n_words))
    return " ".join("".join(alphabet[int(i)] for i in g.integers(0, len(alphabet), size=n)) for n in lengths)


# ---- BPE: an independent reference in the style of Sennrich et al. (2016)
def _merge(word, pair):
    """Every non-overlapping occurrence of `pair`, left to right, in a word of space-separated symbols."""
    return re.sub(r"(?<!\S)" + re.escape(pair[0] + " " + pair[1]) + r"(?!\S)", pair[0] + pair[1], word)


def _reference_bpe(text, num_merges):
    """(merges, tie_seen, stopped_early). A step counts adjacent symbol pairs over all word occurrences, takes the
    largest count, breaks ties by the smallest pair in Python's tuple order, stops if that count is below 2."""
    freq = Counter(" ".join(w) for w in text.split())
    merges, tie_seen = [], False
    for _ in range(num_merges):
        pairs = Counter()
        for word, f in freq.items():
            symbols = word.split(" ")
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += f
        top = max(pairs.values(), default=0)
        if top < 2:
            return merges, tie_seen, True
        best = sorted(p for p, c in pairs.items() if c == top)
        tie_seen |= len(best) > 1
        merges.append(best[0])
        new = Counter()
        for word, f in freq.items():
            new[_merge(word, best[0])] += f
        freq = new
    return merges, tie_seen, False


def _reference_bpe_encode(text, merges):
    out = []
    for word in text.split():
        joined = " ".join(word)
        for pair in merges:
            joined = _merge(joined, pair)
        out.extend(joined.split(" "))
    return out


def _structured_text(seed, n_words, stems, suffixes):
    """Words made of a stem and a suffix, drawn with uneven probabilities, like nouns with particles."""
    g = rng(seed)
    p_stem = g.dirichlet(np.ones(len(stems)) * 0.7)
    p_suffix = g.dirichlet(np.ones(len(suffixes)) * 0.7)
    return " ".join(stems[g.choice(len(stems), p=p_stem)] + suffixes[g.choice(len(suffixes), p=p_suffix)]
                    for _ in range(n_words))


_STEM_SETS = [
    (["철수", "영희", "사과", "학교", "친구", "먹었", "읽었"], ["가", "는", "를", "에게", "의", "도", "다", ""]),
    (["low", "new", "wid", "old", "high"], ["est", "er", "", "s", "ly"]),
    (["abc", "bcd", "cab", "dd", "a"], ["", "e", "ee", "fa"]),
]


def _cases(kind):
    """Five (text, num_merges) picked by running the reference: `kind` is 'plain' (no tie, no early stop), 'tie' (a
    tie decided a merge, no early stop) or 'stop' (no tie, stops early). 'tie' and 'stop' texts hold every word
    once, so they test only their own rule: counting word frequencies is the plain cases' business."""
    found = []
    for seed in range(500):
        stems, suffixes = _STEM_SETS[seed % len(_STEM_SETS)]
        if seed % 4 == 3:
            text = _random_text(seed, 14 + seed % 9, "가나다라" if seed % 8 == 3 else "abcd", max_len=5)
        else:
            text = _structured_text(seed, 10 + (seed * 7) % 40, stems, suffixes)
        if kind != "plain":
            text = " ".join(dict.fromkeys(text.split()))
        num_merges = 500 if kind == "stop" else 3 + seed % 10
        merges, tie, stopped = _reference_bpe(text, num_merges)
        if (tie, stopped) == {"plain": (False, False), "tie": (True, False), "stop": (False, True)}[kind]:
            found.append((text, num_merges))
        if len(found) == 5:
            return found
    return found


def _describe_text(text):
    words = text.split()
    return f"a text of {len(words)} words ({len(set(words))} distinct)" if words else "the empty text"


def _expect_merges(cases, tied, hint):
    """bpe_train on each (text, num_merges) against the reference's merges."""
    for text, num_merges in cases:
        case = f"{_describe_text(text)}, num_merges={num_merges}{', with tied counts' if tied else ''}"
        got = env().call("bpe_train", text, num_merges, case=case, forbid=FORBID_TOKENIZERS)
        expect(isinstance(got, (list, tuple)) and all(
            isinstance(m, (list, tuple)) and len(m) == 2 and all(isinstance(s, str) for s in m) for m in got),
            f"bpe_train: expected a list of merges, each a pair (left, right) of strings, for {case}; "
            f"got {str(got)[:60]}.")
        _first_difference("bpe_train", [tuple(m) for m in got], _reference_bpe(text, num_merges)[0], case, "merge",
                          hint)


def test_bpe_train():
    hug = " ".join(["hug"] * 10 + ["pug"] * 5 + ["pun"] * 12 + ["bun"] * 4 + ["hugs"] * 5)  # no ties in 3 merges
    _expect_merges(_cases("plain") + [(hug, 3)], False,
                   "Count pairs over all word occurrences (weighted by frequency), inside words only, and re-count "
                   "after every merge.")


def test_bpe_train_ties():
    _expect_merges([("ba ab xba xab", 2), ("ba ab cba cab cd ecd", 3), ("나다 가나 나다라 가나라 xy xyz", 2)]
                   + _cases("tie"), True,
                   "Among pairs with the same count, take the smallest pair (left, right): left first, then right, "
                   "as strings by code point.")


def test_bpe_train_stops():
    _expect_merges([("abc def", 5), ("a b c", 4), ("", 3), ("aaaa", 10), ("xaaaa aaab", 10)] + _cases("stop"), False,
                   "Stop early when the most frequent pair occurs fewer than 2 times (or no pair is left).")


def test_bpe_encode():
    cases = []
    for k, (stems, suffixes) in enumerate(_STEM_SETS):
        train = _structured_text(300 + k, 40, stems, suffixes)
        merges, _, _ = _reference_bpe(train, 12 + 4 * k)
        test = _structured_text(400 + k, 8, stems + ["zz"], suffixes + ["q"])
        cases.append((f"merges from {_describe_text(train)}, {len(merges)} merges", test, merges))
    cases += [("merges that overlap (a,a) then (aa,a)", "aaaaa aaa a", [("a", "a"), ("aa", "a")]),
              ("merges that chain (b,c) then (a,bc)", "abcbc abc bca", [("b", "c"), ("a", "bc"), ("bc", "bc")]),
              ("no merges", "철수가 왔다", [])]
    for name, text, merges in cases:
        case = f"{name}, encoding {len(text.split())} words"
        got = env().call("bpe_encode", text, merges, case=case, forbid=FORBID_TOKENIZERS)
        expect(isinstance(got, (list, tuple)) and all(isinstance(t, str) for t in got),
               f"bpe_encode: expected a list of token strings for {case}; got {type(got).__name__}.")
        _first_difference("bpe_encode", list(got), _reference_bpe_encode(text, merges), case, "token",
                          "Apply the merges in the order they were learned, each to every word, left to right.")


# ---- cosine similarity, analogy
def _torch_cosine(a, b):
    return _F().cosine_similarity(tensor(np.asarray(a, float)), tensor(np.asarray(b, float)), dim=-1,
                                  eps=1e-12).numpy()


def _cosine(a, b, case):
    """The learner's cosine similarity; a plain Python number stands for a 0-d array."""
    got = env().call("cosine_similarity", a, b, case=case, forbid=FORBID_COSINE)
    return np.asarray(got, dtype=float) if isinstance(got, (float, int)) and not isinstance(got, bool) else got


def test_cosine_similarity():
    for seed, sa, sb in [(51, (5,), (5,)), (52, (4, 6), (6,)), (53, (2, 3, 7), (3, 7)), (54, (5, 1, 4), (1, 6, 4))]:
        g = rng(seed)
        a, b = g.normal(size=sa) * g.uniform(0.1, 10), g.normal(size=sb) * g.uniform(0.1, 10)
        case = f"a of shape {sa}, b of shape {sb}"
        expect_close("cosine_similarity", _cosine(a, b, case), _torch_cosine(a, b), case=case, **TOL,
                     hint="Take the dot product and the norms along the last axis only (axis=-1).")
    v = rng(55).normal(size=(3, 8))
    case = "a and b = 7.5 * a (same direction) and b = -a"
    expect_close("cosine_similarity", _cosine(np.concatenate([v, v]), np.concatenate([7.5 * v, -v]), case),
                 np.array([1.0] * 3 + [-1.0] * 3), atol=1e-10, case=case,
                 hint="Cosine similarity ignores length: parallel vectors give 1, opposite ones -1.")


def test_cosine_similarity_zero():
    """Only the pairs with a zero vector are judged here (the other values are test_cosine_similarity's business),
    plus: nothing may be nan or inf."""
    a, b = rng(56).normal(size=(2, 4, 5))
    a[1], b[3] = 0.0, 0.0
    case = "a of shape (4, 5) whose row 1 is zero, b of shape (4, 5) whose row 3 is zero"
    got = _cosine(a, b, case)
    expect_type("cosine_similarity", got, "ndarray", case)
    expect_shape("cosine_similarity", got, (4,), case)
    hint = "When either vector is zero the similarity is defined as 0: don't divide by 0."
    expect(np.isfinite(got).all(), f"cosine_similarity: {int((~np.isfinite(got)).sum())} of 4 values are nan or inf "
                                   f"for {case}. {hint}")
    expect_close("cosine_similarity", got[[1, 3]], np.zeros(2), atol=0, case=case,
                 what="similarities of the pairs with a zero vector (rows 1 and 3)", hint=hint)
    case = "two zero vectors of shape (3,)"
    expect_close("cosine_similarity", _cosine(np.zeros(3), np.zeros(3), case), np.array(0.0), atol=0, case=case,
                 hint="Return 0 when a norm is 0.")


_ANALOGY_SUBSTITUTES = {"cosine_similarity": solution("02", "cosine_similarity"), "embed": solution("02", "embed")}


def _table(g, V, d):
    """V made-up words with a shuffled vocabulary and a random embedding table."""
    words = [HANGUL[i % 14] + HANGUL[(i // 14) % 14] + str(i) for i in g.permutation(V)]
    return words, {w: i for i, w in enumerate(words)}, g.normal(size=(V, d))


def _expect_analogy(a, b, c, W_E, vocab, answer, case, hint):
    got = env().call("analogy", a, b, c, W_E, vocab, case=case, substitute=_ANALOGY_SUBSTITUTES)
    expect_type("analogy", got, str, case, "Map the id back to its word.")
    expect(got == answer, f"analogy: expected {answer!r} for {case}; got {got!r}. {hint}")


def test_analogy():
    for seed, V, d in [(61, 30, 8), (62, 50, 16), (63, 12, 5)]:
        g = rng(seed)
        words, vocab, W_E = _table(g, V, d)
        a, b, c, answer, big = g.choice(V, size=5, replace=False)
        target = W_E[b] - W_E[a] + W_E[c]
        W_E[answer] = 0.5 * target + 0.05 * g.normal(size=d)
        # a long decoy: big dot product with the target, smaller cosine than the answer
        W_E[big] = 20.0 * (0.8 * target / np.linalg.norm(target) + 0.6 * g.normal(size=d) / np.sqrt(d))
        case = f"a random table of {V} words, d={d}, analogy({words[a]!r}, {words[b]!r}, {words[c]!r})"
        _expect_analogy(words[a], words[b], words[c], W_E, vocab, words[answer], case,
                        "Rank every word by cosine similarity (not the raw dot product) to W_E[b] - W_E[a] + W_E[c].")


def test_analogy_excludes_inputs():
    for seed, V, d in [(71, 20, 6), (72, 40, 12)]:
        g = rng(seed)
        words, vocab, W_E = _table(g, V, d)
        W_E /= np.linalg.norm(W_E, axis=1, keepdims=True)
        a, b, c, answer = g.choice(V, size=4, replace=False)
        # b - a + c is dominated by c; the best word that is not an input is `answer`
        W_E[b] = W_E[a] + 0.1 * g.normal(size=d)
        W_E[b] /= np.linalg.norm(W_E[b])
        u = W_E[b] - W_E[a] + W_E[c]
        u /= np.linalg.norm(u)
        noise = g.normal(size=d)
        noise -= noise @ u * u
        W_E[answer] = 0.8 * u + 0.6 * noise / np.linalg.norm(noise)
        case = (f"a table of {V} unit vectors, d={d}, analogy({words[a]!r}, {words[b]!r}, {words[c]!r}) where c "
                "itself is nearest")
        _expect_analogy(words[a], words[b], words[c], W_E, vocab, words[answer], case,
                        "Exclude the three input words from the candidates.")


# ---- unembedding and temperature
def test_unembed():
    cases = []
    for seed, hs, (V, d) in [(81, (6,), (10, 6)), (82, (4, 5), (7, 5)), (83, (2, 3, 8), (30, 8))]:
        g = rng(seed)
        h = g.normal(size=hs)
        cases.append((f"h of shape {hs}, W_U of shape {(V, d)}", (h, g.normal(size=(V, d)))))
    expect_cases("unembed", cases, lambda h, W_U: _F().linear(tensor(h), tensor(W_U)).numpy(), **TOL,
                 forbid=FORBID_LINEAR,
                 hint="W_U holds one row per word, (V, d): logit k is h's dot product with row k, and the answer "
                      "has shape h.shape[:-1] + (V,).")


def _torch_softmax_t(logits, T=1.0):
    return _torch().softmax(tensor(np.asarray(logits, float)) / T, dim=-1).numpy()


def test_softmax_with_temperature():
    cases = [(f"logits of shape {shape}, T={T}", (rng(seed).normal(size=shape) * 3, T))
             for seed, shape, T in [(91, (7,), 1.0), (92, (3, 10), 0.5), (93, (2, 4, 6), 2.0), (94, (5,), 0.1),
                                    (95, (2, 9), 7.0)]]
    cases.append(("logits of shape (4,), T passed by keyword (T=3.0)", (rng(96).normal(size=(4,)),), {"T": 3.0}))
    expect_cases("softmax_with_temperature", cases, _torch_softmax_t, **TOL, forbid=FORBID_SOFTMAX,
                 hint="Divide the logits by T (not multiply), then softmax along the last axis; keep the signature "
                      "softmax_with_temperature(logits, T=1.0).")


def test_softmax_with_temperature_stability():
    for seed, shape, shift in [(97, (6,), 1000.0), (98, (3, 5), -800.0), (99, (2, 2, 4), 5000.0)]:
        x = rng(seed).normal(size=shape) * 5 + shift
        case = f"logits of shape {shape} around {shift:g}, T=1.0"
        got = env().call("softmax_with_temperature", x, 1.0, case=case, forbid=FORBID_SOFTMAX)
        expect_close("softmax_with_temperature", got, _torch_softmax_t(held_as(got, x)), case=case, **TOL,
                     hint="exp(1000) overflows: shift each row of logits by a number that cancels in the ratio "
                          "and keeps every exponent of that row <= 0.")
