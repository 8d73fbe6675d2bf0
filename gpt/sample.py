"""Turning logits into text: temperature, top-k and top-p (nucleus) sampling, and a chat-style prompt.

The chat template follows the oldest trick for making a language model into a chatbot (seed 003): write the start of
a transcript, "아래는 사용자와 유능하고 매우 지능적인 AI 조수의 대화이다." ("Below is a conversation between a user and a
capable, very intelligent AI assistant."), then the turns, and end with the assistant's name, so the model's most
likely continuation is the assistant's reply. Our corpus is a play, so a turn is written as the corpus writes a speech:
`NAME:` on its own line, the words below it, a blank line after.
"""
from __future__ import annotations

import torch

SYSTEM_KO = "아래는 사용자와 유능하고 매우 지능적인 AI 조수의 대화이다."


def top_p_probs(logits, p):
    """logits (..., vocab) -> the nucleus distribution (..., vocab): the softmax kept on the smallest set of most likely
    tokens whose probabilities sum to >= p (and on tokens tied with its least likely one), renormalised; 0 elsewhere."""
    probs = torch.softmax(logits, dim=-1)
    ranked = torch.sort(probs, dim=-1, descending=True).values
    above = ranked.cumsum(dim=-1) - ranked                   # the mass ranked above each token
    smallest = ranked.gather(-1, (above < p).sum(dim=-1, keepdim=True) - 1)
    kept = torch.where(probs >= smallest, probs, torch.zeros_like(probs))
    return kept / kept.sum(dim=-1, keepdim=True)


def sample_next(logits, temperature=1.0, top_k=None, generator=None, top_p=None):
    """logits (batch, vocab) -> one sampled token id per row, (batch, 1).

    Divide by the temperature (eq. 2.9), keep the top_k largest logits (the rest get probability 0), keep the nucleus
    of mass top_p (Holtzman et al., 2020), draw."""
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1) if top_p is None else top_p_probs(logits, top_p)
    return torch.multinomial(probs, 1, generator=generator)


def chat_prompt(messages, system=SYSTEM_KO, user="사용자", assistant="AI"):
    """messages: [{"role": "user"|"assistant", "content": str}, ...] -> the prompt text, ending with `assistant:`."""
    names = {"user": user, "assistant": assistant}
    parts = [system.strip() + "\n\n"]
    for message in messages:
        if message["role"] not in names:
            raise ValueError(f"unknown role {message['role']!r}; use 'user' or 'assistant'")
        parts.append(f"{names[message['role']]}:\n{message['content'].strip()}\n\n")
    parts.append(f"{assistant}:\n")
    return "".join(parts)
