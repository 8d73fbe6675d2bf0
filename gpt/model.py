"""The GPT: token and position embeddings, a stack of pre-norm transformer blocks, and the unembedding to logits.

Attention has two paths that compute the same thing: `plain` (the chapters 4-5 formula written out: scores, causal
mask, softmax, weighted sum) and `flash` (`F.scaled_dot_product_attention`, which on a GPU runs a fused kernel that
never stores the n x n weights). `GPTConfig.flash` picks one; `python -m gpt.train --bench-attention` times both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 64      # the longest context the model sees
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False        # biases in Linear and LayerNorm (nanoGPT: False is a little better and faster)
    flash: bool = True        # F.scaled_dot_product_attention instead of the written-out attention


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.n_head, self.flash, self.dropout = cfg.n_head, cfg.flash, cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)   # W_Q, W_K, W_V side by side
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)      # W_O
        self.resid_drop = nn.Dropout(cfg.dropout)
        mask = torch.tril(torch.ones(cfg.block_size, cfg.block_size, dtype=torch.bool))
        self.register_buffer("mask", mask, persistent=False)              # True = may attend

    def forward(self, x):                                  # x: (batch, n, d_model)
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, h, n, d_k)
        p = self.dropout if self.training else 0.0
        if self.flash:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(k.size(-1))
            scores = scores.masked_fill(~self.mask[:T, :T], float("-inf"))
            y = F.dropout(scores.softmax(dim=-1), p) @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)   # merge the heads
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)   # W_E
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)   # learned positions
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.unembed = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)  # W_U
        self.unembed.weight = self.tok_emb.weight                      # weight tying: W_U = W_E, both (V, d_model)
        self.apply(self._init)
        for name, p in self.named_parameters():                        # GPT-2: scale residual projections
            if name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        """Parameters, not counting the position embeddings (nanoGPT's convention)."""
        return sum(p.numel() for p in self.parameters()) - self.pos_emb.weight.numel()

    def forward(self, idx, targets=None):
        """idx: (batch, n) token ids -> logits (batch, n, vocab); with targets (batch, n), also the mean loss."""
        T = idx.size(1)
        assert T <= self.cfg.block_size, f"sequence of {T} tokens, block_size is {self.cfg.block_size}"
        x = self.drop(self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        logits = self.unembed(self.ln_f(x))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    def optimizer(self, lr, weight_decay=0.1, betas=(0.9, 0.99), device_type="cpu"):
        """AdamW with weight decay on matrices only (not on biases, LayerNorm gains)."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device_type in ("cuda", "cpu"))

    def flops_per_token(self) -> float:
        """Training FLOPs per token (PaLM appendix B): 6N + 12 L n_head d_head T."""
        c = self.cfg
        return 6 * self.num_params() + 12 * c.n_layer * c.n_embd * c.block_size

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
        """Append `max_new_tokens` sampled tokens to idx (batch, n), one at a time."""
        from .sample import sample_next

        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.cfg.block_size:])
            idx = torch.cat([idx, sample_next(logits[:, -1, :].float(), temperature, top_k, generator)], dim=1)
        return idx
