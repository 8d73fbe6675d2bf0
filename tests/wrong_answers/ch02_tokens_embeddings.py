"""Plausible wrong answers for chapter 2 (`02_tokens_embeddings`), each with exactly the test cells it must lose.

Every test cell appears alone in `loses` of at least one entry; every graded exercise with a library version in the
course environment has a "shortcut" entry that calls it and must lose all of that exercise's tests. The warm-ups
(build_vocab, encode, decode, one_hot, embed) have no test cell: their entries lose nothing. (No tokenizer library
is installed, so the tokenizer exercises have no shortcut entry; their checks still forbid `tokenizers`,
`sentencepiece`, `tiktoken`, `transformers`.)
"""

_BPE_MERGE = (
    "def _merge(symbols, left, right):\n"
    "    out, i = [], 0\n"
    "    while i < len(symbols):\n"
    "        if i + 1 < len(symbols) and symbols[i] == left and symbols[i + 1] == right:\n"
    "            out.append(left + right)\n"
    "            i += 2\n"
    "        else:\n"
    "            out.append(symbols[i])\n"
    "            i += 1\n"
    "    return out\n\n"
)


def _bpe_train(count_line="pair_counts[pair] = pair_counts.get(pair, 0) + count",
               pick="best = min(p for p, c in pair_counts.items() if c == top)",
               stop=True):
    return (
        _BPE_MERGE
        + "def bpe_train(text, num_merges):\n"
        "    word_counts = Counter(text.split())\n"
        "    splits = {w: list(w) for w in word_counts}\n"
        "    merges = []\n"
        "    for _ in range(num_merges):\n"
        "        pair_counts = {}\n"
        "        for word, count in word_counts.items():\n"
        "            s = splits[word]\n"
        "            for pair in zip(s[:-1], s[1:]):\n"
        f"                {count_line}\n"
        "        if not pair_counts:\n"
        "            break\n"
        "        top = max(pair_counts.values())\n"
        + ("        if top < 2:\n            break\n" if stop else "")
        + f"        {pick}\n"
        "        merges.append(best)\n"
        "        for word in splits:\n"
        "            splits[word] = _merge(splits[word], *best)\n"
        "    return merges\n"
    )


_UNWRITTEN = {name: f"def {name}({args}):\n    raise NotImplementedError()\n" for name, args in
              [("build_vocab", "text"), ("encode", "text, vocab"), ("decode", "ids, vocab"),
               ("one_hot", "ids, vocab_size"), ("embed", "ids, W_E")]}

WRONG_ANSWERS = [
    # ------------------------------------------------------------------ the warm-ups (ungraded): they lose nothing,
    # left unwritten or wrong; the graded tests never depend on them
    {"why": "every warm-up left unwritten", "replace": _UNWRITTEN, "loses": []},
    # ------------------------------------------------------------------ build_vocab
    {
        "why": "numbers characters in order of first appearance instead of sorted order",
        "replace": {"build_vocab": (
            "def build_vocab(text):\n"
            "    return {ch: i for i, ch in enumerate(dict.fromkeys(text))}\n"
        )},
        "loses": [],
    },
    {
        "why": "builds a vocabulary of words (text.split()) instead of characters",
        "replace": {"build_vocab": (
            "def build_vocab(text):\n"
            "    return {w: i for i, w in enumerate(sorted(set(text.split())))}\n"
        )},
        "loses": [],
    },
    # ------------------------------------------------------------------ encode
    {
        "why": "skips spaces when encoding",
        "replace": {"encode": (
            "def encode(text, vocab):\n"
            "    return [vocab[ch] for ch in text if ch != ' ']\n"
        )},
        "loses": [],
    },
    {
        "why": "ignores the given vocabulary and numbers the text's own sorted characters",
        "replace": {"encode": (
            "def encode(text, vocab):\n"
            "    own = {ch: i for i, ch in enumerate(sorted(set(text)))}\n"
            "    return [own[ch] for ch in text]\n"
        )},
        "loses": [],
    },
    # ------------------------------------------------------------------ decode
    {
        "why": "joins the characters with spaces",
        "replace": {"decode": (
            "def decode(ids, vocab):\n"
            "    inverse = {i: ch for ch, i in vocab.items()}\n"
            "    return ' '.join(inverse[int(i)] for i in ids)\n"
        )},
        "loses": [],
    },
    {
        "why": "assumes ids follow the vocabulary's insertion order (list(vocab)[i])",
        "replace": {"decode": (
            "def decode(ids, vocab):\n"
            "    keys = list(vocab)\n"
            "    return ''.join(keys[int(i) % len(keys)] for i in ids)\n"
        )},
        "loses": [],
    },
    # ------------------------------------------------------------------ bpe_train
    {
        "why": "counts each distinct word once, ignoring how often it occurs",
        "replace": {"bpe_train": _bpe_train(count_line="pair_counts[pair] = pair_counts.get(pair, 0) + 1")},
        "says": "Count pairs over all word occurrences",
        "loses": ["test_bpe_train"],
    },
    {
        "why": "breaks ties by first occurrence (max with key=dict.get) instead of the smallest pair",
        "replace": {"bpe_train": _bpe_train(pick="best = max(pair_counts, key=pair_counts.get)")},
        "says": "Among tied pairs take the smallest",
        "loses": ["test_bpe_train_ties"],
    },
    {
        "why": "breaks ties by the largest pair instead of the smallest",
        "replace": {"bpe_train": _bpe_train(pick="best = max(p for p, c in pair_counts.items() if c == top)")},
        "says": "Among tied pairs take the smallest",
        "loses": ["test_bpe_train_ties"],
    },
    {
        "why": "never stops early: keeps merging pairs that occur only once",
        "replace": {"bpe_train": _bpe_train(stop=False)},
        "says": "Stop when the best count is below 2",
        "loses": ["test_bpe_train_stops"],
    },
    # ------------------------------------------------------------------ bpe_encode
    {
        "why": "applies the merges in reverse order",
        "replace": {"bpe_encode": (
            _BPE_MERGE
            + "def bpe_encode(text, merges):\n"
            "    tokens = []\n"
            "    for word in text.split():\n"
            "        s = list(word)\n"
            "        for left, right in reversed(merges):\n"
            "            s = _merge(s, left, right)\n"
            "        tokens.extend(s)\n"
            "    return tokens\n"
        )},
        "says": "Apply the merges in the order they were learned",
        "loses": ["test_bpe_encode"],
    },
    {
        "why": "applies the merges to the whole text at once, so tokens cross word boundaries",
        "replace": {"bpe_encode": (
            _BPE_MERGE
            + "def bpe_encode(text, merges):\n"
            "    s = list(''.join(text.split()))\n"
            "    for left, right in merges:\n"
            "        s = _merge(s, left, right)\n"
            "    return s\n"
        )},
        "says": "each to every word, left to right",
        "loses": ["test_bpe_encode"],
    },
    # ------------------------------------------------------------------ one_hot
    {
        "why": "flattens the ids: returns (n, V) for ids of any shape",
        "replace": {"one_hot": (
            "def one_hot(ids, vocab_size):\n"
            "    ids = np.asarray(ids).ravel()\n"
            "    out = np.zeros((ids.size, vocab_size))\n"
            "    out[np.arange(ids.size), ids] = 1.0\n"
            "    return out\n"
        )},
        "loses": [],
    },
    # ------------------------------------------------------------------ embed
    {
        "why": "takes columns instead of rows (W_E[:, ids].T)",
        "replace": {"embed": (
            "def embed(ids, W_E):\n"
            "    return W_E[:, np.asarray(ids)].T\n"
        )},
        "loses": [],
    },
    # ------------------------------------------------------------------ cosine_similarity
    {
        "why": "divides by the norms of the whole arrays (np.linalg.norm without axis)",
        "replace": {"cosine_similarity": (
            "def cosine_similarity(a, b):\n"
            "    a, b = np.asarray(a, float), np.asarray(b, float)\n"
            "    n = np.linalg.norm(a) * np.linalg.norm(b)\n"
            "    return np.sum(a * b, axis=-1) / n if n > 0 else np.zeros(np.broadcast_shapes(a.shape, b.shape)[:-1])\n"
        )},
        "says": "Divide by the norm of each row, not of the whole array",
        "loses": ["test_cosine_similarity"],
    },
    {
        "why": "returns the raw dot product (forgets to divide by the norms)",
        "replace": {"cosine_similarity": (
            "def cosine_similarity(a, b):\n"
            "    return np.sum(np.asarray(a, float) * np.asarray(b, float), axis=-1)\n"
        )},
        "says": "(45 degrees); got 1.0",
        "loses": ["test_cosine_similarity"],
    },
    {
        "why": "divides by a zero norm: a zero vector gives nan instead of 0",
        "replace": {"cosine_similarity": (
            "def cosine_similarity(a, b):\n"
            "    a, b = np.asarray(a, float), np.asarray(b, float)\n"
            "    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))\n"
        )},
        "says": "Don't divide by a zero norm",
        "loses": ["test_cosine_similarity_zero"],
    },
    {
        "why": "shortcut: calls torch.nn.functional.cosine_similarity",
        "replace": {"cosine_similarity": (
            "def cosine_similarity(a, b):\n"
            "    import torch\n"
            "    return torch.nn.functional.cosine_similarity(torch.as_tensor(np.asarray(a, float)),\n"
            "                                                 torch.as_tensor(np.asarray(b, float)), dim=-1).numpy()\n"
        )},
        "says": "calls torch.nn.functional.cosine_similarity",
        "loses": ["test_cosine_similarity", "test_cosine_similarity_zero"],
    },
    # ------------------------------------------------------------------ analogy
    {
        "why": "ranks by the raw dot product instead of cosine similarity",
        "replace": {"analogy": (
            "def analogy(a, b, c, W_E, vocab):\n"
            "    target = W_E[vocab[b]] - W_E[vocab[a]] + W_E[vocab[c]]\n"
            "    scores = W_E @ target\n"
            "    for w in (a, b, c):\n"
            "        scores[vocab[w]] = -np.inf\n"
            "    best = int(np.argmax(scores))\n"
            "    return next(w for w, i in vocab.items() if i == best)\n"
        )},
        "says": "The target is W_E[b] - W_E[a] + W_E[c]",
        "loses": ["test_analogy"],
    },
    {
        "why": "gets the sign wrong: W_E[a] - W_E[b] + W_E[c]",
        "replace": {"analogy": (
            "def analogy(a, b, c, W_E, vocab):\n"
            "    target = W_E[vocab[a]] - W_E[vocab[b]] + W_E[vocab[c]]\n"
            "    scores = (W_E @ target) / (np.linalg.norm(W_E, axis=1) * np.linalg.norm(target))\n"
            "    for w in (a, b, c):\n"
            "        scores[vocab[w]] = -np.inf\n"
            "    best = int(np.argmax(scores))\n"
            "    return next(w for w, i in vocab.items() if i == best)\n"
        )},
        "says": "The target is W_E[b] - W_E[a] + W_E[c]",
        "loses": ["test_analogy", "test_analogy_excludes_inputs"],
    },
    {
        "why": "does not exclude the input words",
        "replace": {"analogy": (
            "def analogy(a, b, c, W_E, vocab):\n"
            "    target = W_E[vocab[b]] - W_E[vocab[a]] + W_E[vocab[c]]\n"
            "    scores = (W_E @ target) / (np.linalg.norm(W_E, axis=1) * np.linalg.norm(target))\n"
            "    best = int(np.argmax(scores))\n"
            "    return next(w for w, i in vocab.items() if i == best)\n"
        )},
        "says": "Exclude the input words from the candidates",
        "loses": ["test_analogy_excludes_inputs"],
    },
    # ------------------------------------------------------------------ unembed
    {
        "why": "multiplies by W_U without the transpose (works only when V == d)",
        "replace": {"unembed": (
            "def unembed(h, W_U):\n"
            "    return np.asarray(h) @ np.asarray(W_U)\n"
        )},
        "says": "the product with W_U needs its transpose",
        "loses": ["test_unembed"],
    },
    {
        "why": "shortcut: calls torch.nn.functional.linear",
        "replace": {"unembed": (
            "def unembed(h, W_U):\n"
            "    import torch\n"
            "    return torch.nn.functional.linear(torch.as_tensor(np.asarray(h, float)),\n"
            "                                      torch.as_tensor(np.asarray(W_U, float))).numpy()\n"
        )},
        "says": "calls torch.nn.functional.linear",
        "loses": ["test_unembed"],
    },
    # ------------------------------------------------------------------ softmax_with_temperature
    {
        "why": "multiplies the logits by T instead of dividing",
        "replace": {"softmax_with_temperature": (
            "def softmax_with_temperature(logits, T=1.0):\n"
            "    z = np.asarray(logits, float) * T\n"
            "    e = np.exp(z - z.max(axis=-1, keepdims=True))\n"
            "    return e / e.sum(axis=-1, keepdims=True)\n"
        )},
        "says": "That is the softmax of the logits times T; the formula divides by T",
        "loses": ["test_softmax_with_temperature"],
    },
    {
        "why": "normalises over the whole array instead of the last axis",
        "replace": {"softmax_with_temperature": (
            "def softmax_with_temperature(logits, T=1.0):\n"
            "    z = np.asarray(logits, float) / T\n"
            "    e = np.exp(z - z.max())\n"
            "    return e / e.sum()\n"
        )},
        "says": "Normalise along the last axis",
        "loses": ["test_softmax_with_temperature", "test_softmax_with_temperature_stability"],
    },
    {
        "why": "does not subtract the maximum: exp(1000) overflows to inf and the result is nan",
        "replace": {"softmax_with_temperature": (
            "def softmax_with_temperature(logits, T=1.0):\n"
            "    e = np.exp(np.asarray(logits, float) / T)\n"
            "    return e / e.sum(axis=-1, keepdims=True)\n"
        )},
        "says": "exp(1000) overflows: shift each row",
        "loses": ["test_softmax_with_temperature_stability"],
    },
    {
        "why": "shortcut: calls torch.softmax",
        "replace": {"softmax_with_temperature": (
            "def softmax_with_temperature(logits, T=1.0):\n"
            "    import torch\n"
            "    return torch.softmax(torch.as_tensor(np.asarray(logits, float)) / T, dim=-1).numpy()\n"
        )},
        "says": "calls torch.softmax",
        "loses": ["test_softmax_with_temperature", "test_softmax_with_temperature_stability"],
    },
]
