"""Correct answers for chapter 7 (`07_training`) written apart from the solution, in other idioms: each set replaces
every exercise. "a": stacked slices, F.log_softmax (a piece, not the forbidden cross_entropy), the rate set after
backward, a sort-and-scatter top-k, f-strings; "b": Tensor.unfold windows, a one-hot loss with a hand-written
log-sum-exp, clipping written out, per-row loops in Python, "".join. Each set must get full marks (tests/test_chapters.py)."""

RIGHT_ANSWERS = {
    "a": {
        "get_batch": (
            "def get_batch(data, block_size, batch_size, generator=None):\n"
            "    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)\n"
            "    x = torch.stack([data[i:i + block_size] for i in ix])\n"
            "    y = torch.stack([data[i + 1:i + 1 + block_size] for i in ix])\n"
            "    return x, y\n"
        ),
        "next_token_loss": (
            "def next_token_loss(logits, targets):\n"
            "    logp = F.log_softmax(logits, dim=-1)\n"
            "    return -logp.gather(-1, targets[..., None]).mean()\n"
        ),
        "lr_at": (
            "def lr_at(it, max_lr, warmup, max_iters, min_lr):\n"
            "    if it < warmup:\n"
            "        return max_lr * (it + 1) / warmup\n"
            "    if it > max_iters:\n"
            "        return min_lr\n"
            "    ratio = (it - warmup) / (max_iters - warmup)\n"
            "    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))\n"
            "    return min_lr + coeff * (max_lr - min_lr)\n"
        ),
        "train_step": (
            "def train_step(model, optimizer, x, y, lr, loss_fn, max_norm=1.0):\n"
            "    optimizer.zero_grad()\n"
            "    loss = loss_fn(model(x), y)\n"
            "    loss.backward()\n"
            "    nn.utils.clip_grad_norm_(model.parameters(), max_norm)\n"
            "    for g in optimizer.param_groups:\n"
            "        g['lr'] = lr\n"
            "    optimizer.step()\n"
            "    return float(loss.detach())\n"
        ),
        "sample_next": (
            "def sample_next(logits, temperature=1.0, top_k=None, generator=None):\n"
            "    logits = logits / temperature\n"
            "    if top_k is not None and top_k < logits.shape[-1]:\n"
            "        v, _ = torch.topk(logits, top_k)\n"
            "        logits = logits.clone()\n"
            "        logits[logits < v[:, [-1]]] = -float('Inf')   # nanoGPT's line\n"
            "    probs = F.softmax(logits, dim=-1)\n"
            "    return torch.multinomial(probs, num_samples=1, generator=generator)\n"
        ),
        "top_p_probs": (
            "def top_p_probs(logits, p):\n"
            "    probs = logits.softmax(-1)\n"
            "    sorted_p, _ = probs.sort(-1, descending=True)\n"
            "    before = sorted_p.cumsum(-1) - sorted_p\n"
            "    inf = torch.full_like(sorted_p, float('inf'))\n"
            "    threshold = torch.where(before < p, sorted_p, inf).amin(-1, keepdim=True)\n"
            "    kept = probs * (probs >= threshold)\n"
            "    return kept / kept.sum(-1, keepdim=True)\n"
        ),
        "chat_prompt": (
            "SYSTEM_KO = '아래는 사용자와 유능하고 매우 지능적인 AI 조수의 대화이다.'\n"
            "\n"
            "\n"
            "def chat_prompt(messages, system=SYSTEM_KO, user='사용자', assistant='AI'):\n"
            "    prompt = f'{system.strip()}\\n\\n'\n"
            "    for m in messages:\n"
            "        if m['role'] == 'user':\n"
            "            who = user\n"
            "        elif m['role'] == 'assistant':\n"
            "            who = assistant\n"
            "        else:\n"
            "            raise ValueError('role must be user or assistant')\n"
            "        prompt += f\"{who}:\\n{m['content'].strip()}\\n\\n\"\n"
            "    return prompt + f'{assistant}:\\n'\n"
        ),
    },
    "b": {
        "get_batch": (
            "def get_batch(data, block_size, batch_size, generator=None):\n"
            "    starts = torch.randint(0, data.numel() - block_size, (batch_size,), generator=generator)\n"
            "    windows = data.unfold(0, block_size + 1, 1)[starts]    # (batch, block + 1)\n"
            "    return windows[:, :block_size].contiguous(), windows[:, 1:].contiguous()\n"
        ),
        "next_token_loss": (
            "def next_token_loss(logits, targets):\n"
            "    m = logits.max(dim=-1, keepdim=True).values.detach()\n"
            "    lse = (logits - m).exp().sum(-1).log() + m.squeeze(-1)\n"
            "    true_logit = (logits * F.one_hot(targets, logits.shape[-1]).to(logits.dtype)).sum(-1)\n"
            "    return torch.mean(lse - true_logit)\n"
        ),
        "lr_at": (
            "def lr_at(it, max_lr, warmup, max_iters, min_lr):\n"
            "    import numpy as np\n"
            "    warm = max_lr * min(1.0, (it + 1) / warmup) if warmup > 0 else max_lr\n"
            "    if it < warmup:\n"
            "        return float(warm)\n"
            "    t = min(1.0, (it - warmup) / max(1, max_iters - warmup))\n"
            "    return float(min_lr + (max_lr - min_lr) * (np.cos(np.pi * t) + 1) / 2)\n"
        ),
        "train_step": (
            "def train_step(model, optimizer, x, y, lr, loss_fn, max_norm=1.0):\n"
            "    # the clipping written out: one norm over all gradients, scaled down only when above max_norm\n"
            "    params = [p for p in model.parameters() if p.requires_grad]\n"
            "    for p in params:\n"
            "        p.grad = None\n"
            "    loss = loss_fn(model(x), y)\n"
            "    loss.backward()\n"
            "    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params if p.grad is not None))\n"
            "    scale = min(1.0, max_norm / (float(norm) + 1e-6))\n"
            "    for p in params:\n"
            "        if p.grad is not None:\n"
            "            p.grad.mul_(scale)\n"
            "    optimizer.param_groups[0]['lr'] = lr\n"
            "    for group in optimizer.param_groups[1:]:\n"
            "        group['lr'] = lr\n"
            "    optimizer.step()\n"
            "    return loss.item()\n"
        ),
        "sample_next": (
            "def sample_next(logits, temperature=1.0, top_k=None, generator=None):\n"
            "    z = logits / temperature\n"
            "    if top_k is not None:\n"
            "        k = min(top_k, z.shape[-1])\n"
            "        vals, idx = z.topk(k, dim=-1)\n"
            "        z = torch.full_like(z, float('-inf')).scatter(-1, idx, vals)\n"
            "        # ties with the k-th value stay in, as with a threshold\n"
            "        z = torch.where(logits / temperature >= vals[:, -1:], logits / temperature, z)\n"
            "    probs = torch.exp(z - z.max(-1, keepdim=True).values)\n"
            "    probs = probs / probs.sum(-1, keepdim=True)\n"
            "    return torch.multinomial(probs, 1, generator=generator)\n"
        ),
        "top_p_probs": (
            "def top_p_probs(logits, p):\n"
            "    shape = logits.shape\n"
            "    flat = torch.softmax(logits.reshape(-1, shape[-1]), dim=-1)\n"
            "    out = torch.zeros_like(flat)\n"
            "    for r in range(flat.shape[0]):\n"
            "        pr = flat[r]\n"
            "        order = torch.argsort(pr, descending=True)\n"
            "        mass, last = 0.0, None\n"
            "        for i in order:\n"
            "            if last is not None and mass >= p:\n"
            "                break\n"
            "            last = pr[i]\n"
            "            mass = mass + pr[i]\n"
            "        keep = pr >= last\n"
            "        out[r] = torch.where(keep, pr, torch.zeros_like(pr))\n"
            "        out[r] = out[r] / out[r].sum()\n"
            "    return out.reshape(shape)\n"
        ),
        "chat_prompt": (
            "SYSTEM_KO = '아래는 사용자와 유능하고 매우 지능적인 AI 조수의 대화이다.'\n"
            "\n"
            "\n"
            "def chat_prompt(messages, system=SYSTEM_KO, user='사용자', assistant='AI'):\n"
            "    speaker = {'user': user, 'assistant': assistant}\n"
            "    turns = []\n"
            "    for m in messages:\n"
            "        if m['role'] not in speaker:\n"
            "            raise ValueError(f\"unknown role {m['role']}\")\n"
            "        turns.append(speaker[m['role']] + ':\\n' + m['content'].strip())\n"
            "    return '\\n\\n'.join([system.strip()] + turns + [assistant + ':\\n'])\n"
        ),
    },
}
