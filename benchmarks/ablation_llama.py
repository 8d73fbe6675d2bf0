"""make ablation: chapter 9's measured comparison of a GPT-2 block and a Llama block on chapter 7's corpus.

Both models get chapter 7's CPU budget (`gpt/configs.py`, config "cpu": 4 layers, 4 heads, width 128, context 64,
batch 12, 2000 AdamW iterations with warm-up and cosine decay) and the same number of parameters:

- "GPT-2 block": chapter 7's `gpt.model.GPT` (LayerNorm, GELU MLP of width 4d, learned positions), unchanged;
- "Llama block": RMSNorm, SwiGLU of width 344 (3 · 344 ≈ 8 · 128, so the feed-forward keeps its 8d² weights), RoPE,
  no learned positions, no biases;
- "Llama block, GQA" (optional, `--models gpt2 llama llama_gqa`): the same with 2 key/value heads for the 4 query heads; the weights saved in W_K and W_V go to a
  wider SwiGLU (384), so the parameter count still matches.

Training runs one model after the other (validation loss every 250 iterations on fixed batches). Speed is measured
separately, because a shared machine's load changes during a long run: the models take turns, a few training steps
each, several rounds, and the median tokens/s per model is reported. Writes book/data/ablation_llama.json, which the
chapter's page plots; the book build never trains.

    python benchmarks/ablation_llama.py [--iters 2000] [--seeds 1337] [--jobs 2] [--out book/data/ablation_llama.json]
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpt.configs import get_config  # noqa: E402  (read-only use of chapter 7's package)
from gpt.data import get_batch, load_splits  # noqa: E402
from gpt.model import GPT, GPTConfig  # noqa: E402


# ---------------------------------------------------------------- a Llama-style GPT of chapter 7's size

class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def rope_tables(block_size, d_head, base=10000.0):
    """cos, sin of shape (block_size, d_head) for RoPE with the halves pairing (i, i + d/2), as Hugging Face's Llama."""
    inv_freq = base ** (-torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)
    angles = torch.arange(block_size, dtype=torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, d, n_head, n_kv_head, block_size):
        super().__init__()
        self.n_head, self.n_kv_head, self.d_head = n_head, n_kv_head, d // n_head
        self.q = nn.Linear(d, d, bias=False)
        self.kv = nn.Linear(d, 2 * n_kv_head * self.d_head, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        cos, sin = rope_tables(block_size, self.d_head)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        q = self.q(x).view(B, T, self.n_head, self.d_head).transpose(1, 2)
        k, v = self.kv(x).view(B, T, 2 * self.n_kv_head, self.d_head).transpose(1, 2).chunk(2, dim=1)
        cos, sin = self.cos[:T], self.sin[:T]
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if self.n_kv_head != self.n_head:
            g = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)   # the GPT-2 side uses it too (flash=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    def __init__(self, d, d_ff):
        super().__init__()
        self.gate = nn.Linear(d, d_ff, bias=False)
        self.up = nn.Linear(d, d_ff, bias=False)
        self.proj = nn.Linear(d_ff, d, bias=False)

    def forward(self, x):
        return self.proj(F.silu(self.gate(x)) * self.up(x))


class LlamaBlock(nn.Module):
    def __init__(self, d, n_head, n_kv_head, d_ff, block_size):
        super().__init__()
        self.attn_norm, self.attn = RMSNorm(d), Attention(d, n_head, n_kv_head, block_size)
        self.ffn_norm, self.ffn = RMSNorm(d), SwiGLU(d, d_ff)

    def forward(self, x):
        x = x + self.attn(self.attn_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class LlamaGPT(nn.Module):
    """Chapter 7's GPT with Llama blocks: no position embeddings (RoPE inside attention), tied unembedding."""

    def __init__(self, vocab_size, block_size, n_layer, n_head, n_kv_head, n_embd, d_ff):
        super().__init__()
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.blocks = nn.ModuleList(LlamaBlock(n_embd, n_head, n_kv_head, d_ff, block_size) for _ in range(n_layer))
        self.norm = RMSNorm(n_embd)
        self.unembed = nn.Linear(n_embd, vocab_size, bias=False)
        self.unembed.weight = self.tok_emb.weight
        for module in self.modules():      # chapter 7's initialisation, residual projections scaled down
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, 0.02)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, targets=None):
        x = self.tok_emb(idx)
        for block in self.blocks:
            x = block(x)
        logits = self.unembed(self.norm(x))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def optimizer(self, lr, weight_decay, betas):
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=betas)


# ---------------------------------------------------------------- the comparison

def build(kind, vocab_size, cfg, seed):
    torch.manual_seed(seed)
    if kind == "gpt2":
        model = GPT(GPTConfig(vocab_size=vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer,
                              n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=0.0, flash=True))
        params = sum(p.numel() for p in model.parameters())   # learned positions included: they are weights too
    else:
        n_kv, d_ff = (cfg.n_head, 344) if kind == "llama" else (cfg.n_head // 2, 384)
        model = LlamaGPT(vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, n_kv, cfg.n_embd, d_ff)
        params = model.num_params()
    return model, params


MODELS = {"gpt2": "GPT-2 block", "llama": "Llama block", "llama_gqa": "Llama block, GQA (2 K/V heads)"}


def lr_at(it, cfg):
    """Chapter 7's schedule: linear warm-up, then cosine decay from lr to min_lr."""
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / cfg.warmup_iters
    progress = min(1.0, (it - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters))
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


@torch.no_grad()
def val_loss(model, data, cfg):
    model.eval()
    g = torch.Generator().manual_seed(cfg.seed + 1)     # the same batches at every evaluation, for every model
    losses = [model(*get_batch(data, cfg.block_size, cfg.batch_size, g))[1].item() for _ in range(cfg.eval_iters)]
    model.train()
    return sum(losses) / len(losses)


def step(model, optimizer, batch, cfg, it):
    for group in optimizer.param_groups:
        group["lr"] = lr_at(it, cfg)
    _, loss = model(*batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def train(kind, vocab_size, train_ids, val_ids, cfg, seed, eval_every):
    model, params = build(kind, vocab_size, cfg, seed)
    if kind == "gpt2":
        optimizer = model.optimizer(cfg.lr, cfg.weight_decay, (0.9, cfg.beta2), "cpu")
    else:
        optimizer = model.optimizer(cfg.lr, cfg.weight_decay, (0.9, cfg.beta2))
    g = torch.Generator().manual_seed(seed)
    curve = {"iter": [], "val_loss": []}
    start = time.perf_counter()
    for it in range(cfg.max_iters + 1):
        if it % eval_every == 0 or it == cfg.max_iters:
            curve["iter"].append(it)
            curve["val_loss"].append(round(val_loss(model, val_ids, cfg), 4))
            print(f"  {MODELS[kind]} seed {seed} iter {it}: val {curve['val_loss'][-1]:.4f}", flush=True)
        if it < cfg.max_iters:
            step(model, optimizer, get_batch(train_ids, cfg.block_size, cfg.batch_size, g), cfg, it)
    return params, curve, time.perf_counter() - start


def _train_job(job):
    kind, seed, vocab_size, train_ids, val_ids, cfg, eval_every, threads = job
    torch.set_num_threads(threads)
    return train(kind, vocab_size, train_ids, val_ids, cfg, seed, eval_every)


def throughput(kinds, vocab_size, train_ids, cfg, rounds, steps):
    """Training tokens/s per model, the models taking turns (`steps` steps each, `rounds` times); the median."""
    runs = {}
    for kind in kinds:
        model, _ = build(kind, vocab_size, cfg, cfg.seed)
        opt = (model.optimizer(cfg.lr, cfg.weight_decay, (0.9, cfg.beta2), "cpu") if kind == "gpt2"
               else model.optimizer(cfg.lr, cfg.weight_decay, (0.9, cfg.beta2)))
        runs[kind] = (model, opt, [])
    g = torch.Generator().manual_seed(0)
    batches = [get_batch(train_ids, cfg.block_size, cfg.batch_size, g) for _ in range(steps)]
    for r in range(rounds + 1):                       # round 0 warms up
        for kind, (model, opt, rates) in runs.items():
            start = time.perf_counter()
            for i, batch in enumerate(batches):
                step(model, opt, batch, cfg, cfg.warmup_iters + i)
            if r:
                rates.append(steps * cfg.batch_size * cfg.block_size / (time.perf_counter() - start))
    return {kind: statistics.median(rates) for kind, (_, _, rates) in runs.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=None, help="default: chapter 7's cpu config (2000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337])
    parser.add_argument("--models", nargs="+", default=["gpt2", "llama"], choices=list(MODELS))
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=7, help="speed: rounds of turns")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: small models on a shared machine run faster and steadier)")
    parser.add_argument("--jobs", type=int, default=1, help="training runs in parallel processes")
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "data" / "ablation_llama.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = get_config("cpu", max_iters=args.iters)
    tok, train_ids, val_ids = load_splits()
    print(f"config 'cpu': {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, context {cfg.block_size}, "
          f"batch {cfg.batch_size}, {cfg.max_iters} iterations; {args.threads} thread(s)", flush=True)
    jobs = [(kind, seed) for kind in args.models for seed in args.seeds]
    work = (tok.vocab_size, train_ids, val_ids, cfg, args.eval_every, args.threads)
    if args.jobs > 1:   # training runs are independent: one process each (speed is measured afterwards, in turns)
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            trained = list(pool.map(_train_job, [(kind, seed, *work) for kind, seed in jobs]))
    else:
        trained = [_train_job((kind, seed, *work)) for kind, seed in jobs]
    results = {}
    for kind in args.models:
        runs = []
        for (k, seed), (n_params, curve, wall) in zip(jobs, trained):
            if k != kind:
                continue
            params = n_params
            runs.append({"seed": seed, "curve": curve, "final_val_loss": curve["val_loss"][-1],
                         "best_val_loss": min(curve["val_loss"]), "train_wall_s": round(wall, 1)})
        finals = [r["final_val_loss"] for r in runs]
        results[kind] = {"label": MODELS[kind], "params": params, "runs": runs,
                         "final_val_loss_mean": round(statistics.mean(finals), 4)}
    speed = throughput(args.models, tok.vocab_size, train_ids, cfg, args.rounds, steps=20)
    for kind in args.models:
        results[kind]["tokens_per_s"] = round(speed[kind])
    out = {
        "what": "GPT-2 block vs Llama block, chapter 7's cpu budget, same parameter count (benchmarks/ablation_llama.py)",
        "config": {k: getattr(cfg, k) for k in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters",
                                                 "lr", "min_lr", "warmup_iters", "weight_decay", "eval_iters")},
        "threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
        "models": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for kind, r in results.items():
        print(f"{r['label']:32s} {r['params']:>9,} parameters  final val loss {r['final_val_loss_mean']:.4f} "
              f"(seeds {', '.join(str(x['final_val_loss']) for x in r['runs'])})  {r['tokens_per_s']:>7,} tokens/s")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
