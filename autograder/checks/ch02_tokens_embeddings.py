"""Checks for chapter 2, `02_tokens_embeddings`: tokenizers, embeddings, similarity, unembedding, temperature.

Every check builds its own inputs from fixed seeds and compares the learner's answer with a reference written here
(PyTorch's own function where one exists: `F.one_hot`, `F.embedding`, `F.cosine_similarity`, `F.linear`,
`torch.softmax`). The BPE reference below is written independently of the notebook's solution, in the style of
Sennrich et al.'s original code (symbols joined by spaces, merges applied with a regular expression).

Tolerances: float64 throughout; values must agree to `atol=1e-10, rtol=1e-8` (embedding lookups and one-hot
vectors exactly).
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

from .sources import solution
from . import CheckFailed, env, expect, expect_cases, expect_close, held_as, rng

FORBID_TOKENIZERS = ["tokenizers*", "sentencepiece*", "tiktoken*", "transformers*", "nltk*", "torchtext*"]
FORBID_ONE_HOT = ["torch*one_hot*", "sklearn*", "tensorflow*", "keras*"]
FORBID_EMBED = ["torch*embedding*", "tensorflow*", "keras*"]
FORBID_COSINE = ["torch*cosine_similarity*", "sklearn*", "scipy.spatial*", "scipy.special*"]
FORBID_LINEAR = ["torch*linear*", "tensorflow*", "keras*"]
FORBID_SOFTMAX = ["scipy.special*softmax*", "torch*softmax*", "torch.nn.functional.*", "tensorflow*", "keras*",
                  "jax*"]

HANGUL = "가나다라마바사아자차카타파하철수영희"
LATIN = "abcdefgh"


# --------------------------------------------------------------------------------------------------------------
# character tokenizer
# --------------------------------------------------------------------------------------------------------------

def _random_text(seed: int, n_words: int, alphabet: str, max_len: int = 6) -> str:
    g = rng(seed)
    words = []
    for _ in range(n_words):
        length = int(g.integers(1, max_len + 1))
        words.append("".join(alphabet[int(i)] for i in g.integers(0, len(alphabet), size=length)))
    return " ".join(words)


def _texts():
    return [
        ("an English sentence", "the cat sat on the mat, and the cats sat too."),
        ("a Korean sentence", "철수가 사과를 맛있게 먹었다."),
        ("mixed Hangul, Latin, digits and punctuation", "GPT-3는 2020년에 나왔다! (V = 50257)"),
        ("random Latin text", _random_text(21, 12, LATIN + "XYZ.,")),
        ("random Hangul text", _random_text(22, 9, HANGUL)),
    ]


def _reference_vocab(text):
    return {ch: i for i, ch in enumerate(sorted(set(text)))}


def test_build_vocab():
    for name, text in _texts() + [("a single repeated character", "ㅋㅋㅋㅋ"), ("the empty string", "")]:
        case = f"{name} ({len(text)} characters)"
        got = env().call("build_vocab", text, case=case, forbid=FORBID_TOKENIZERS)
        expect(isinstance(got, dict),
               f"build_vocab: expected a dict {{character: id}} for {case}; got {type(got).__name__}. "
               "Return a plain dict.")
        want = _reference_vocab(text)
        expect(set(got) == set(want),
               f"build_vocab: the keys should be the {len(want)} distinct characters of the text for {case}; "
               f"got {len(got)} keys ({sorted(set(got) ^ set(want))[:5]!r} differ). Include spaces and punctuation.")
        wrong = [ch for ch in want if got[ch] != want[ch]]
        if wrong:
            raise CheckFailed(
                f"build_vocab: ids should follow sorted character order (sorted(set(text))) for {case}; "
                f"{wrong[0]!r} got id {got[wrong[0]]!r}, expected {want[wrong[0]]}. "
                "Did you number characters in order of first appearance?")


def _vocab_for(text, seed):
    """A vocabulary whose ids are a random permutation, so only a real lookup gives the right ids."""
    chars = sorted(set(text))
    ids = rng(seed).permutation(len(chars)) + 3
    return {ch: int(i) for ch, i in zip(chars, ids)}


def test_encode():
    for k, (name, text) in enumerate(_texts()):
        vocab = _vocab_for(text + "#", 100 + k)
        case = f"{name}, a vocabulary of {len(vocab)} characters with shuffled ids"
        got = env().call("encode", text, vocab, case=case, forbid=FORBID_TOKENIZERS)
        want = [vocab[ch] for ch in text]
        try:
            got_list = [int(i) for i in np.asarray(got).ravel()] if not isinstance(got, dict) else None
        except (TypeError, ValueError):
            got_list = None
        expect(got_list is not None and np.asarray(got).ndim == 1,
               f"encode: expected a list of {len(want)} ints for {case}; got {type(got).__name__}.")
        expect(len(got_list) == len(want),
               f"encode: expected {len(want)} ids (one per character, spaces included) for {case}; "
               f"got {len(got_list)}.")
        bad = [i for i, (g, w) in enumerate(zip(got_list, want)) if g != w]
        if bad:
            raise CheckFailed(
                f"encode: wrong id at position {bad[0]} (character {text[bad[0]]!r}) for {case}: expected "
                f"{want[bad[0]]}, got {got_list[bad[0]]}. Look each character up in the vocabulary you are given.")


def test_decode():
    for k, (name, text) in enumerate(_texts()):
        vocab = _vocab_for(text + "#", 200 + k)
        ids = [vocab[ch] for ch in text]
        for as_array in (False, True):
            given = np.array(ids, dtype=np.int64) if as_array else ids
            case = f"{name}, ids as a {'NumPy array' if as_array else 'list'}"
            got = env().call("decode", given, vocab, case=case, forbid=FORBID_TOKENIZERS)
            expect(isinstance(got, str), f"decode: expected a str for {case}; got {type(got).__name__}.")
            expect(got == text,
                   f"decode: expected {text[:30]!r}{'...' if len(text) > 30 else ''} for {case}; "
                   f"got {got[:30]!r}{'...' if len(got) > 30 else ''}. Invert the vocabulary (id -> character) "
                   "and join with ''.")


# --------------------------------------------------------------------------------------------------------------
# BPE: an independent reference in the style of Sennrich et al. (2016)
# --------------------------------------------------------------------------------------------------------------

def _reference_bpe(text, num_merges):
    """Returns (merges, tie_seen, stopped_early).

    Words are whitespace-separated; each is a string of symbols joined by single spaces (symbols never contain
    whitespace). A step counts adjacent symbol pairs over all word occurrences, picks the largest count, breaks
    ties by the smallest pair in Python's tuple order, stops if that count is below 2, and merges every
    non-overlapping occurrence, left to right, with a regular expression."""
    freq = Counter(" ".join(w) for w in text.split())
    merges, tie_seen, stopped = [], False, False
    for _ in range(num_merges):
        pairs = Counter()
        for word, f in freq.items():
            symbols = word.split(" ")
            for left, right in zip(symbols, symbols[1:]):
                pairs[left, right] += f
        if not pairs:
            stopped = True
            break
        top = max(pairs.values())
        if top < 2:
            stopped = True
            break
        best = sorted(p for p, c in pairs.items() if c == top)
        tie_seen |= len(best) > 1
        pair = best[0]
        merges.append(pair)
        pattern = re.compile(r"(?<!\S)" + re.escape(pair[0] + " " + pair[1]) + r"(?!\S)")
        new = Counter()
        for word, f in freq.items():
            new[pattern.sub(pair[0] + pair[1], word)] += f
        freq = new
    return merges, tie_seen, stopped


def _reference_bpe_encode(text, merges):
    out = []
    for word in text.split():
        joined = " ".join(word)
        for left, right in merges:
            pattern = re.compile(r"(?<!\S)" + re.escape(left + " " + right) + r"(?!\S)")
            joined = pattern.sub(left + right, joined)
        out.extend(joined.split(" "))
    return out


def _structured_text(seed, n_words, stems, suffixes):
    """Words made of a stem and a suffix, drawn with uneven probabilities, like nouns with particles."""
    g = rng(seed)
    p_stem = g.dirichlet(np.ones(len(stems)) * 0.7)
    p_suffix = g.dirichlet(np.ones(len(suffixes)) * 0.7)
    words = [stems[g.choice(len(stems), p=p_stem)] + suffixes[g.choice(len(suffixes), p=p_suffix)]
             for _ in range(n_words)]
    return " ".join(words)


_STEM_SETS = [
    (["철수", "영희", "사과", "학교", "친구", "먹었", "읽었"], ["가", "는", "를", "에게", "의", "도", "다", ""]),
    (["low", "new", "wid", "old", "high"], ["est", "er", "", "s", "ly"]),
    (["abc", "bcd", "cab", "dd", "a"], ["", "e", "ee", "fa"]),
]


def _distinct_words(text):
    return " ".join(dict.fromkeys(text.split()))


def _cases(kind):
    """Deterministic cases picked by running the reference: `kind` is 'plain' (no tie, no early stop),
    'tie' (a tie decided at least one merge, no early stop) or 'stop' (no tie, stops early).

    'tie' and 'stop' texts hold every word once, so they test only their own rule: counting word frequencies is
    the plain cases' business."""
    found = []
    for seed in range(500):
        stems, suffixes = _STEM_SETS[seed % len(_STEM_SETS)]
        if seed % 4 == 3:
            text = _random_text(seed, 14 + seed % 9, "가나다라" if seed % 8 == 3 else "abcd", max_len=5)
        else:
            text = _structured_text(seed, 10 + (seed * 7) % 40, stems, suffixes)
        if kind != "plain":
            text = _distinct_words(text)
        num_merges = 500 if kind == "stop" else 3 + seed % 10
        merges, tie, stopped = _reference_bpe(text, num_merges)
        if kind == "plain" and not tie and not stopped and len(merges) == num_merges:
            found.append((seed, text, num_merges, merges))
        elif kind == "tie" and tie and not stopped:
            found.append((seed, text, num_merges, merges))
        elif kind == "stop" and stopped and not tie:
            found.append((seed, text, num_merges, merges))
        if len(found) == 5:
            break
    return found


def _normalise_merges(got, exercise, case):
    expect(isinstance(got, (list, tuple)),
           f"{exercise}: expected a list of merges (pairs of strings) for {case}; got {type(got).__name__}.")
    out = []
    for item in got:
        ok = isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(s, str) for s in item)
        expect(ok, f"{exercise}: every merge should be a pair (left, right) of strings for {case}; "
                   f"got {str(item)[:40]}.")
        out.append((item[0], item[1]))
    return out


def _compare_merges(got, want, case, hint):
    if got == want:
        return
    first = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
    if first < min(len(got), len(want)):
        raise CheckFailed(f"bpe_train: merge {first} should be {want[first]!r} for {case}; got {got[first]!r} "
                          f"(the first {first} merges agree). {hint}")
    raise CheckFailed(f"bpe_train: expected {len(want)} merges for {case}; got {len(got)} "
                      f"(the first {first} agree). {hint}")


def _describe_text(text):
    words = text.split()
    return f"a text of {len(words)} words ({len(set(words))} distinct)"


def _expect_merges(cases, describe, hint):
    """bpe_train on each (seed, text, num_merges) against the reference's merges."""
    for seed, text, num_merges in cases:
        want, _, _ = _reference_bpe(text, num_merges)
        case = describe(text, num_merges)
        got = env().call("bpe_train", text, num_merges, case=case, forbid=FORBID_TOKENIZERS)
        _compare_merges(_normalise_merges(got, "bpe_train", case), want, case, hint)


def test_bpe_train():
    hug = " ".join(["hug"] * 10 + ["pug"] * 5 + ["pun"] * 12 + ["bun"] * 4 + ["hugs"] * 5)  # no ties in 3 merges
    _expect_merges([(s, t, n) for s, t, n, _ in _cases("plain")] + [(-1, hug, 3)],
                   lambda text, n: f"{_describe_text(text)}, num_merges={n}",
                   "Count pairs over all word occurrences (weighted by frequency), inside words only, and re-count "
                   "after every merge.")


def test_bpe_train_ties():
    handmade = [(-1, "ba ab xba xab", 2), (-2, "ba ab cba cab cd ecd", 3), (-3, "나다 가나 나다라 가나라 xy xyz", 2)]
    _expect_merges(handmade + [(s, t, n) for s, t, n, _ in _cases("tie")],
                   lambda text, n: f"{_describe_text(text)}, num_merges={n}, with tied counts",
                   "Among pairs with the same count, take the smallest pair (left, right) in Python's tuple order, "
                   "e.g. min(tied_pairs).")


def test_bpe_train_stops():
    handmade = [(-1, "abc def", 5), (-2, "a b c", 4), (-3, "", 3), (-4, "aaaa", 10), (-5, "xaaaa aaab", 10)]
    _expect_merges(handmade + [(s, t, n) for s, t, n, _ in _cases("stop")],
                   lambda text, n: f"{_describe_text(text) if text else 'the empty text'}, num_merges={n}",
                   "Stop early when the most frequent pair occurs fewer than 2 times (or no pair is left).")


def test_bpe_encode():
    cases = []
    for k, (stems, suffixes) in enumerate(_STEM_SETS):
        train = _structured_text(300 + k, 40, stems, suffixes)
        merges, _, _ = _reference_bpe(train, 12 + 4 * k)
        test = _structured_text(400 + k, 8, stems + ["zz"], suffixes + ["q"])
        cases.append((f"merges from {_describe_text(train)}, {len(merges)} merges", test, merges))
    cases.append(("merges that overlap (a,a) then (aa,a)", "aaaaa aaa a", [("a", "a"), ("aa", "a")]))
    cases.append(("merges that chain (b,c) then (a,bc)", "abcbc abc bca", [("b", "c"), ("a", "bc"), ("bc", "bc")]))
    cases.append(("no merges", "철수가 왔다", []))
    for name, text, merges in cases:
        want = _reference_bpe_encode(text, merges)
        case = f"{name}, encoding {len(text.split())} words"
        got = env().call("bpe_encode", text, merges, case=case, forbid=FORBID_TOKENIZERS)
        expect(isinstance(got, (list, tuple)) and all(isinstance(t, str) for t in got),
               f"bpe_encode: expected a list of token strings for {case}; got {type(got).__name__}.")
        got = list(got)
        if got != want:
            first = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
            raise CheckFailed(
                f"bpe_encode: expected {len(want)} tokens for {case}; got {len(got)}; first difference at token "
                f"{first}: expected {want[first] if first < len(want) else 'nothing'!r}, got "
                f"{got[first] if first < len(got) else 'nothing'!r}. Apply the merges in the order they were "
                "learned, each to every word, left to right.")


# --------------------------------------------------------------------------------------------------------------
# one-hot, embedding lookup
# --------------------------------------------------------------------------------------------------------------

def test_one_hot():
    import torch
    import torch.nn.functional as F

    for seed, shape, vocab_size in [(31, (7,), 10), (32, (2, 5), 13), (33, (3, 1, 4), 6), (34, (), 9)]:
        ids = rng(seed).integers(0, vocab_size, size=shape)
        case = f"ids of shape {shape}, vocab_size={vocab_size}"
        if shape == ():
            ids, case = int(ids), f"a single id (a Python int), vocab_size={vocab_size}"
        got = env().call("one_hot", ids, vocab_size, case=case, forbid=FORBID_ONE_HOT)
        want = F.one_hot(torch.from_numpy(np.asarray(ids, dtype=np.int64)), vocab_size).double().numpy()
        expect_close("one_hot", got, want, atol=0, case=case,
                     hint="The result has shape ids.shape + (vocab_size,), with a single 1.0 per row.")


def test_embed():
    import torch
    import torch.nn.functional as F

    for seed, shape, (V, d) in [(41, (6,), (11, 4)), (42, (2, 5), (9, 3)), (43, (3, 1, 4), (20, 8)),
                                (44, (1,), (5, 7))]:
        g = rng(seed)
        W_E = g.normal(size=(V, d))
        ids = g.integers(0, V, size=shape)
        case = f"ids of shape {shape}, W_E of shape {(V, d)}"
        got = env().call("embed", ids, W_E, case=case, forbid=FORBID_EMBED)
        want = F.embedding(torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(W_E)).numpy()
        expect_close("embed", got, want, atol=0, case=case,
                     hint="Row i of W_E is token i's vector: the answer has shape ids.shape + (d,).")
    W_E = rng(45).normal(size=(8, 3))
    case = "ids given as a Python list [5, 0, 5]"
    got = env().call("embed", [5, 0, 5], W_E, case=case, forbid=FORBID_EMBED)
    expect_close("embed", got, W_E[[5, 0, 5]], atol=0, case=case, hint="Turn the ids into an array first.")


# --------------------------------------------------------------------------------------------------------------
# cosine similarity, analogy
# --------------------------------------------------------------------------------------------------------------

def _torch_cosine(a, b):
    import torch
    import torch.nn.functional as F

    return F.cosine_similarity(torch.from_numpy(np.asarray(a, float)), torch.from_numpy(np.asarray(b, float)),
                               dim=-1, eps=1e-12).numpy()


def _expect_close_any_rank(exercise, got, want, **kwargs):
    """expect_close, also for a 0-d expected value. 0-d answers travel back from the kernel as shape (1,)
    (kernel_shim uses np.ascontiguousarray, which makes 0-d arrays 1-d), and expect_close cannot index 0-d
    arrays, so a single number is compared as shape (1,)."""
    if isinstance(got, (np.generic, float, int)) and not isinstance(got, bool):
        got = np.asarray(got, dtype=float)
    if np.ndim(want) == 0:
        if isinstance(got, np.ndarray) and got.size == 1:
            got = got.reshape(1)
        want = np.asarray(want, dtype=float).reshape(1)
    expect_close(exercise, got, want, **kwargs)


def test_cosine_similarity():
    for seed, sa, sb in [(51, (5,), (5,)), (52, (4, 6), (6,)), (53, (2, 3, 7), (3, 7)), (54, (5, 1, 4), (1, 6, 4))]:
        g = rng(seed)
        a = g.normal(size=sa) * g.uniform(0.1, 10)
        b = g.normal(size=sb) * g.uniform(0.1, 10)
        case = f"a of shape {sa}, b of shape {sb}"
        got = env().call("cosine_similarity", a, b, case=case, forbid=FORBID_COSINE)
        want = np.asarray(_torch_cosine(a, b))
        _expect_close_any_rank("cosine_similarity", got, want, atol=1e-10, rtol=1e-8, case=case,
                     hint="Take the dot product and the norms along the last axis only (axis=-1).")
    # scale invariance and the two extremes
    v = rng(55).normal(size=(3, 8))
    case = "a and b = 7.5 * a (same direction) and b = -a"
    got = env().call("cosine_similarity", np.concatenate([v, v]), np.concatenate([7.5 * v, -v]), case=case,
                     forbid=FORBID_COSINE)
    expect_close("cosine_similarity", got, np.array([1.0] * 3 + [-1.0] * 3), atol=1e-10, case=case,
                 hint="Cosine similarity ignores length: parallel vectors give 1, opposite ones -1.")


def test_cosine_similarity_zero():
    """Only the pairs with a zero vector are judged here (the other values are test_cosine_similarity's
    business), plus: nothing may be nan or inf."""
    g = rng(56)
    a = g.normal(size=(4, 5))
    a[1] = 0.0
    b = g.normal(size=(4, 5))
    b[3] = 0.0
    case = "a of shape (4, 5) whose row 1 is zero, b of shape (4, 5) whose row 3 is zero"
    got = env().call("cosine_similarity", a, b, case=case, forbid=FORBID_COSINE)
    expect(isinstance(got, np.ndarray) and got.shape == (4,),
           f"cosine_similarity: expected an array of shape (4,) for {case}; got "
           f"{getattr(got, 'shape', type(got).__name__)}.")
    got = np.asarray(got, dtype=float)
    expect(np.isfinite(got).all(),
           f"cosine_similarity: {int((~np.isfinite(got)).sum())} of 4 values are nan or inf for {case}. "
           "When either vector is zero the similarity is defined as 0: don't divide by 0.")
    expect(got[1] == 0 and got[3] == 0,
           f"cosine_similarity: expected 0 for the pairs with a zero vector (rows 1 and 3) for {case}; "
           f"got {got[1]:.4g} and {got[3]:.4g}.")
    case = "two zero vectors of shape (3,)"
    got = env().call("cosine_similarity", np.zeros(3), np.zeros(3), case=case, forbid=FORBID_COSINE)
    _expect_close_any_rank("cosine_similarity", got, np.array(0.0), atol=0, case=case,
                           hint="Return 0 when a norm is 0.")


_ANALOGY_SUBSTITUTES = {"cosine_similarity": solution("02", "cosine_similarity"), "embed": solution("02", "embed")}


def _word_list(V):
    syllables = "가나다라마바사아자차카타파하"
    return [syllables[i % 14] + syllables[(i // 14) % 14] + str(i) for i in range(V)]


def test_analogy():
    for seed, V, d in [(61, 30, 8), (62, 50, 16), (63, 12, 5)]:
        g = rng(seed)
        words = _word_list(V)
        perm = [words[i] for i in g.permutation(V)]
        vocab = {w: i for i, w in enumerate(perm)}
        W_E = g.normal(size=(V, d))
        a, b, c, answer, big = (perm[i] for i in g.choice(V, size=5, replace=False))
        target = W_E[vocab[b]] - W_E[vocab[a]] + W_E[vocab[c]]
        W_E[vocab[answer]] = 0.5 * target + 0.05 * g.normal(size=d)
        # a long decoy: big dot product with the target, smaller cosine than the answer
        W_E[vocab[big]] = 20.0 * (0.8 * target / np.linalg.norm(target) + 0.6 * g.normal(size=d) / np.sqrt(d))
        case = f"a random table of {V} words, d={d}, analogy({a!r}, {b!r}, {c!r})"
        got = env().call("analogy", a, b, c, W_E, vocab, case=case, substitute=_ANALOGY_SUBSTITUTES)
        expect(isinstance(got, str), f"analogy: expected the answer word as a str for {case}; "
                                     f"got {type(got).__name__}. Map the id back to its word.")
        expect(got == answer,
               f"analogy: expected {answer!r} for {case}; got {got!r}. Rank every word by cosine similarity "
               "(not the raw dot product) to W_E[b] - W_E[a] + W_E[c].")


def test_analogy_excludes_inputs():
    for seed, V, d in [(71, 20, 6), (72, 40, 12)]:
        g = rng(seed)
        words = _word_list(V)
        vocab = {w: i for i, w in enumerate(words)}
        W_E = g.normal(size=(V, d))
        W_E /= np.linalg.norm(W_E, axis=1, keepdims=True)
        a, b, c, answer = (words[i] for i in g.choice(V, size=4, replace=False))
        # b - a + c is dominated by c; the best word that is not an input is `answer`
        W_E[vocab[b]] = W_E[vocab[a]] + 0.1 * g.normal(size=d)
        W_E[vocab[b]] /= np.linalg.norm(W_E[vocab[b]])
        target = W_E[vocab[b]] - W_E[vocab[a]] + W_E[vocab[c]]
        u = target / np.linalg.norm(target)
        noise = g.normal(size=d)
        noise -= noise @ u * u
        W_E[vocab[answer]] = 0.8 * u + 0.6 * noise / np.linalg.norm(noise)
        case = f"a table of {V} unit vectors, d={d}, analogy({a!r}, {b!r}, {c!r}) where c itself is nearest"
        got = env().call("analogy", a, b, c, W_E, vocab, case=case, substitute=_ANALOGY_SUBSTITUTES)
        expect(got == answer,
               f"analogy: expected {answer!r} for {case}; got {got!r}. Exclude the three input words "
               "from the candidates.")


# --------------------------------------------------------------------------------------------------------------
# unembedding and temperature
# --------------------------------------------------------------------------------------------------------------

def _torch_linear(h, W_U):
    import torch
    import torch.nn.functional as F

    return F.linear(torch.from_numpy(h), torch.from_numpy(W_U)).numpy()


def test_unembed():
    cases = []
    for seed, hs, (V, d) in [(81, (6,), (10, 6)), (82, (4, 5), (7, 5)), (83, (2, 3, 8), (30, 8))]:
        g = rng(seed)
        h = g.normal(size=hs)
        cases.append((f"h of shape {hs}, W_U of shape {(V, d)}", (h, g.normal(size=(V, d)))))
    expect_cases("unembed", cases, _torch_linear, atol=1e-10, rtol=1e-8, forbid=FORBID_LINEAR,
                 hint="logits = h @ W_U.T: one score per vocabulary word, shape h.shape[:-1] + (V,).")


def _torch_softmax_t(logits, T):
    import torch

    return torch.softmax(torch.from_numpy(np.asarray(logits, float)) / T, dim=-1).numpy()


def test_softmax_with_temperature():
    expect_cases("softmax_with_temperature",
                 [(f"logits of shape {shape}, T={T}", (rng(seed).normal(size=shape) * 3, T))
                  for seed, shape, T in [(91, (7,), 1.0), (92, (3, 10), 0.5), (93, (2, 4, 6), 2.0), (94, (5,), 0.1),
                                         (95, (2, 9), 7.0)]],
                 _torch_softmax_t, atol=1e-10, rtol=1e-8, forbid=FORBID_SOFTMAX,
                 hint="Divide the logits by T (not multiply), then softmax along the last axis.")
    x = rng(96).normal(size=(4,))
    case = "logits of shape (4,), T passed by keyword (T=3.0)"
    got = env().call("softmax_with_temperature", x, T=3.0, case=case, forbid=FORBID_SOFTMAX)
    expect_close("softmax_with_temperature", got, _torch_softmax_t(x, 3.0), atol=1e-10, rtol=1e-8, case=case,
                 hint="Keep the signature softmax_with_temperature(logits, T=1.0).")


def test_softmax_with_temperature_stability():
    for seed, shape, shift in [(97, (6,), 1000.0), (98, (3, 5), -800.0), (99, (2, 2, 4), 5000.0)]:
        x = rng(seed).normal(size=shape) * 5 + shift
        case = f"logits of shape {shape} around {shift:g}, T=1.0"
        got = env().call("softmax_with_temperature", x, 1.0, case=case, forbid=FORBID_SOFTMAX)
        expect_close("softmax_with_temperature", got, _torch_softmax_t(held_as(got, x), 1.0), atol=1e-10, rtol=1e-8,
                     case=case, hint="Subtract the maximum along the last axis before exp: exp(1000) overflows.")
