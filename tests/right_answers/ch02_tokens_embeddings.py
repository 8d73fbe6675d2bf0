"""Correct answers for chapter 2 (`02_tokens_embeddings`) written apart from the solution, in other idioms: each set
replaces every exercise. "a": explicit loops, float32 arithmetic; "b": library pieces that are not shortcuts
(Counter, np.eye, np.einsum, np.linalg.norm, scipy-free log-sum-exp). Each set must get full marks."""

RIGHT_ANSWERS = {
    "a": {
        "build_vocab": (
            "def build_vocab(text):\n"
            "    chars = []\n"
            "    for ch in text:\n"
            "        if ch not in chars:\n"
            "            chars.append(ch)\n"
            "    chars.sort()\n"
            "    vocab = {}\n"
            "    for i in range(len(chars)):\n"
            "        vocab[chars[i]] = i\n"
            "    return vocab\n"
        ),
        "encode": (
            "def encode(text, vocab):\n"
            "    ids = []\n"
            "    for ch in text:\n"
            "        ids.append(int(vocab[ch]))\n"
            "    return ids\n"
        ),
        "decode": (
            "def decode(ids, vocab):\n"
            "    chars = {}\n"
            "    for ch in vocab:\n"
            "        chars[vocab[ch]] = ch\n"
            "    out = ''\n"
            "    for i in ids:\n"
            "        out += chars[int(i)]\n"
            "    return out\n"
        ),
        "bpe_train": (
            "def bpe_train(text, num_merges):\n"
            "    # every word occurrence kept as its own list of symbols (no counting of distinct words)\n"
            "    words = [list(w) for w in text.split()]\n"
            "    merges = []\n"
            "    while len(merges) < num_merges:\n"
            "        counts = {}\n"
            "        for w in words:\n"
            "            for i in range(len(w) - 1):\n"
            "                counts[(w[i], w[i + 1])] = counts.get((w[i], w[i + 1]), 0) + 1\n"
            "        if not counts:\n"
            "            break\n"
            "        best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]\n"
            "        if best[1] < 2:\n"
            "            break\n"
            "        pair = best[0]\n"
            "        merges.append(pair)\n"
            "        new_words = []\n"
            "        for w in words:\n"
            "            out = []\n"
            "            i = 0\n"
            "            while i < len(w):\n"
            "                if i < len(w) - 1 and (w[i], w[i + 1]) == pair:\n"
            "                    out.append(w[i] + w[i + 1]); i += 2\n"
            "                else:\n"
            "                    out.append(w[i]); i += 1\n"
            "            new_words.append(out)\n"
            "        words = new_words\n"
            "    return merges\n"
        ),
        "bpe_encode": (
            "def bpe_encode(text, merges):\n"
            "    result = []\n"
            "    for word in text.split():\n"
            "        syms = list(word)\n"
            "        for pair in merges:\n"
            "            i = 0\n"
            "            while i < len(syms) - 1:\n"
            "                if (syms[i], syms[i + 1]) == tuple(pair):\n"
            "                    syms[i:i + 2] = [syms[i] + syms[i + 1]]\n"
            "                i += 1\n"
            "        result += syms\n"
            "    return result\n"
        ),
        "one_hot": (
            "def one_hot(ids, vocab_size):\n"
            "    ids = np.asarray(ids)\n"
            "    flat = ids.reshape(-1)\n"
            "    out = np.zeros((flat.size, vocab_size), dtype=np.float32)\n"
            "    for row, i in enumerate(flat):\n"
            "        out[row, i] = 1.0\n"
            "    return out.reshape(ids.shape + (vocab_size,))\n"
        ),
        "embed": (
            "def embed(ids, W_E):\n"
            "    ids = np.asarray(ids)\n"
            "    rows = [W_E[i] for i in ids.reshape(-1)]\n"
            "    return np.array(rows).reshape(ids.shape + (W_E.shape[-1],))\n"
        ),
        "cosine_similarity": (
            "def cosine_similarity(a, b):\n"
            "    a = np.asarray(a, dtype=np.float32)\n"
            "    b = np.asarray(b, dtype=np.float32)\n"
            "    na = np.sqrt((a * a).sum(-1))\n"
            "    nb = np.sqrt((b * b).sum(-1))\n"
            "    denom = na * nb\n"
            "    with np.errstate(invalid='ignore', divide='ignore'):\n"
            "        cos = (a * b).sum(-1) / denom\n"
            "    return np.where(denom == 0, np.float32(0), cos).astype(np.float32)\n"
        ),
        "analogy": (
            "def analogy(a, b, c, W_E, vocab):\n"
            "    W = np.asarray(W_E, dtype=np.float32)\n"
            "    target = W[vocab[b]] - W[vocab[a]] + W[vocab[c]]\n"
            "    best_word, best = None, -2.0\n"
            "    for word, i in vocab.items():\n"
            "        if word in (a, b, c):\n"
            "            continue\n"
            "        denom = np.linalg.norm(W[i]) * np.linalg.norm(target)\n"
            "        score = float(W[i] @ target / denom) if denom > 0 else 0.0\n"
            "        if score > best:\n"
            "            best_word, best = word, score\n"
            "    return best_word\n"
        ),
        "unembed": (
            "def unembed(h, W_U):\n"
            "    h = np.asarray(h, dtype=np.float32)\n"
            "    return h @ np.asarray(W_U, dtype=np.float32).T\n"
        ),
        "softmax_with_temperature": (
            "def softmax_with_temperature(logits, T=1.0):\n"
            "    z = np.asarray(logits, dtype=np.float32) / np.float32(T)\n"
            "    e = np.exp(z - z.max(-1, keepdims=True))\n"
            "    return e / e.sum(-1, keepdims=True)\n"
        ),
    },
    "b": {
        "build_vocab": (
            "def build_vocab(text):\n"
            "    return dict(zip(sorted(Counter(text)), range(len(set(text)))))\n"
        ),
        "encode": (
            "def encode(text, vocab):\n"
            "    return list(map(vocab.__getitem__, text))\n"
        ),
        "decode": (
            "def decode(ids, vocab):\n"
            "    by_id = dict(map(reversed, vocab.items()))\n"
            "    return ''.join(map(by_id.__getitem__, np.asarray(ids, dtype=int).tolist()))\n"
        ),
        "bpe_train": (
            "def bpe_train(text, num_merges):\n"
            "    # words as tuples of symbols with their counts; pairs counted with a Counter\n"
            "    vocab = Counter(tuple(w) for w in text.split())\n"
            "    merges = []\n"
            "    for _ in range(num_merges):\n"
            "        pairs = Counter()\n"
            "        for word, n in vocab.items():\n"
            "            pairs.update({p: 0 for p in zip(word, word[1:])})\n"
            "            for p in zip(word, word[1:]):\n"
            "                pairs[p] += n\n"
            "        if not pairs or max(pairs.values()) < 2:\n"
            "            break\n"
            "        top = max(pairs.values())\n"
            "        pair = min(p for p, n in pairs.items() if n == top)\n"
            "        merges.append(pair)\n"
            "        merged = Counter()\n"
            "        for word, n in vocab.items():\n"
            "            out, i = [], 0\n"
            "            while i < len(word):\n"
            "                if word[i:i + 2] == pair:\n"
            "                    out.append(word[i] + word[i + 1]); i += 2\n"
            "                else:\n"
            "                    out.append(word[i]); i += 1\n"
            "            merged[tuple(out)] += n\n"
            "        vocab = merged\n"
            "    return merges\n"
        ),
        "bpe_encode": (
            "def bpe_encode(text, merges):\n"
            "    # GPT-2 style: repeatedly merge the pair of lowest rank present in the word\n"
            "    rank = {tuple(p): r for r, p in enumerate(merges)}\n"
            "    tokens = []\n"
            "    for word in text.split():\n"
            "        syms = list(word)\n"
            "        while len(syms) > 1:\n"
            "            pairs = [(rank.get((x, y), float('inf')), i) for i, (x, y) in enumerate(zip(syms, syms[1:]))]\n"
            "            r, _ = min(pairs)\n"
            "            if r == float('inf'):\n"
            "                break\n"
            "            left, right = merges[r]\n"
            "            out, i = [], 0\n"
            "            while i < len(syms):\n"
            "                if i + 1 < len(syms) and syms[i] == left and syms[i + 1] == right:\n"
            "                    out.append(left + right); i += 2\n"
            "                else:\n"
            "                    out.append(syms[i]); i += 1\n"
            "            syms = out\n"
            "        tokens.extend(syms)\n"
            "    return tokens\n"
        ),
        "one_hot": (
            "def one_hot(ids, vocab_size):\n"
            "    return np.eye(vocab_size)[np.asarray(ids)]\n"
        ),
        "embed": (
            "def embed(ids, W_E):\n"
            "    return np.take(W_E, np.asarray(ids), axis=0)\n"
        ),
        "cosine_similarity": (
            "def cosine_similarity(a, b):\n"
            "    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))\n"
            "    dot = np.einsum('...d,...d->...', a, b)\n"
            "    norm = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)\n"
            "    out = np.zeros_like(dot)\n"
            "    np.divide(dot, norm, out=out, where=norm != 0)\n"
            "    return out\n"
        ),
        "analogy": (
            "def analogy(a, b, c, W_E, vocab):\n"
            "    words = sorted(vocab, key=vocab.get)\n"
            "    E = np.asarray(W_E, dtype=float)\n"
            "    E_unit = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-300)\n"
            "    q = E[vocab[b]] - E[vocab[a]] + E[vocab[c]]\n"
            "    sims = E_unit @ (q / max(np.linalg.norm(q), 1e-300))\n"
            "    for i in np.argsort(-sims, kind='stable'):\n"
            "        if words[i] not in (a, b, c):\n"
            "            return words[i]\n"
        ),
        "unembed": (
            "def unembed(h, W_U):\n"
            "    return np.einsum('...d,vd->...v', h, W_U)\n"
        ),
        "softmax_with_temperature": (
            "def softmax_with_temperature(logits, T=1.0):\n"
            "    z = np.asarray(logits, dtype=float) / T\n"
            "    m = z.max(axis=-1, keepdims=True)\n"
            "    return np.exp(z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))\n"
        ),
    },
}
