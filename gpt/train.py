"""Train the chapter's GPT on the Shakespeare corpus.

    python -m gpt.train --config cpu            # or: make train CONFIG=cpu
    python -m gpt.train --config gpu            # CUDA: bf16 autocast, torch.compile, flash attention
    python -m gpt.train --config tiny --device cpu --max-iters 50 --out /tmp/run

Writes runs/<config>/: ckpt.pt, loss.png, sample.txt and metrics.json (config, device, params, iters, tokens_per_s,
wall_s, best_val_loss, final_val_loss, and mfu on CUDA).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .configs import TrainConfig, get_config
from .data import ROOT, get_batch, load_splits
from .model import GPT, GPTConfig
from .sample import chat_prompt

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def lr_at(it, max_lr, warmup, max_iters, min_lr):
    """Linear warm-up over `warmup` steps, then cosine decay from max_lr to min_lr at max_iters; min_lr after."""
    if it < warmup:
        return max_lr * (it + 1) / warmup
    if it >= max_iters:
        return min_lr
    progress = (it - warmup) / (max_iters - warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def pick_device(requested: str | None = None) -> str:
    """CUDA if present, else Apple's MPS, else the CPU; `requested` forces one."""
    if requested:
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def autocast_for(device: str):
    """bf16 autocast on CUDA (the matrix units' fast format; no loss scaling needed), float32 elsewhere."""
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def estimate_loss(model, splits, cfg: TrainConfig, device: str) -> dict:
    """Mean loss over the same `eval_iters` batches of each split every time (a fixed generator: less noise)."""
    model.eval()
    out = {}
    for name, data in splits.items():
        g = torch.Generator().manual_seed(cfg.seed + 1)
        losses = torch.zeros(cfg.eval_iters)
        for i in range(cfg.eval_iters):
            x, y = to_device(get_batch(data, cfg.block_size, cfg.batch_size, g), device)
            with autocast_for(device):
                _, loss = model(x, y)
            losses[i] = loss.item()
        out[name] = losses.mean().item()
    model.train()
    return out


def time_attention(model_cfg: GPTConfig, batch_size: int, device: str, steps: int = 10) -> dict:
    """Milliseconds per forward+backward step with the written-out attention and with the fused one."""
    result = {}
    for flash in (False, True):
        torch.manual_seed(0)
        model = GPT(GPTConfig(**{**asdict(model_cfg), "flash": flash})).to(device)
        x = torch.randint(model_cfg.vocab_size, (batch_size, model_cfg.block_size), device=device)
        for i in range(steps + 3):                       # three warm-up steps
            if i == 3:
                sync(device)
                start = time.perf_counter()
            with autocast_for(device):
                _, loss = model(x, x)
            loss.backward()
        sync(device)
        result["flash_ms" if flash else "plain_ms"] = 1000 * (time.perf_counter() - start) / steps
        del model
    result["speedup"] = result["plain_ms"] / result["flash_ms"]
    return result


def to_device(batch, device: str):
    """CPU batch -> device; on CUDA through pinned memory, so the copy overlaps the previous step."""
    if device == "cuda":
        return tuple(t.pin_memory().to(device, non_blocking=True) for t in batch)
    return tuple(t.to(device) for t in batch)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def plot_losses(history: dict, path: Path, title: str) -> None:
    from matplotlib.figure import Figure      # no pyplot: leaves the caller's backend (a notebook's inline) alone

    fig = Figure(figsize=(7, 4), facecolor="white")
    ax = fig.subplots()
    ax.plot(history["train_iter"], history["train_loss"], lw=0.8, alpha=0.7, label="train (one batch)")
    ax.plot(history["eval_iter"], history["val_loss"], "o-", label="validation (mean of fixed batches)")
    ax.set(xlabel="iteration", ylabel="cross-entropy (nats per character)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def train(cfg: TrainConfig, device: str, out_dir: Path, bench_attention: bool | None = None, progress=True) -> dict:
    torch.manual_seed(cfg.seed)
    if device == "cpu":   # one thread per core; a small model on a shared machine does better with cfg.threads = 1
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(cfg.threads or cores)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    tok, train_ids, val_ids = load_splits()
    splits = {"train": train_ids, "val": val_ids}          # stay on the CPU; each batch is moved to the device
    model_cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer,
                          n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout, flash=cfg.flash)
    attention = None
    if bench_attention if bench_attention is not None else device == "cuda":
        attention = time_attention(model_cfg, cfg.batch_size, device)
        print(f"attention: plain {attention['plain_ms']:.2f} ms/step, flash {attention['flash_ms']:.2f} ms/step "
              f"({attention['speedup']:.2f}x)")
    model = GPT(model_cfg).to(device)
    optimizer = model.optimizer(cfg.lr, cfg.weight_decay, (0.9, cfg.beta2), device)
    use_compile = cfg.compile if cfg.compile is not None else device == "cuda"
    step_model = torch.compile(model) if use_compile else model
    print(f"{cfg.name}: {model.num_params() / 1e6:.2f} M parameters on {device}"
          f"{' (compiled, bf16)' if use_compile else ''}, {cfg.max_iters} iterations")

    g = torch.Generator().manual_seed(cfg.seed)
    history = {"train_iter": [], "train_loss": [], "eval_iter": [], "val_loss": [], "eval_train_loss": []}
    best_val, first_step = float("inf"), 0.0
    sync(device)
    start = time.perf_counter()
    bar = tqdm(range(cfg.max_iters + 1), disable=not progress, mininterval=0.5, desc=cfg.name)
    for it in bar:
        if it % cfg.eval_interval == 0 or it == cfg.max_iters:
            losses = estimate_loss(model, splits, cfg, device)   # eager: no second compilation for eval mode
            history["eval_iter"].append(it)
            history["val_loss"].append(losses["val"])
            history["eval_train_loss"].append(losses["train"])
            best_val = min(best_val, losses["val"])
            bar.set_postfix(train=f"{losses['train']:.3f}", val=f"{losses['val']:.3f}")
            if it == cfg.max_iters:
                break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it, cfg.lr, cfg.warmup_iters, cfg.max_iters, cfg.min_lr)
        x, y = to_device(get_batch(splits["train"], cfg.block_size, cfg.batch_size, g), device)
        with autocast_for(device):
            _, loss = step_model(x, y)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if it == 0:                                          # on CUDA the first step includes torch.compile
            sync(device)
            first_step = time.perf_counter() - start
        if it % cfg.log_interval == 0:
            history["train_iter"].append(it)
            history["train_loss"].append(loss.item())
    sync(device)
    wall = time.perf_counter() - start
    bar.close()

    tokens_per_s = cfg.max_iters * cfg.batch_size * cfg.block_size / wall
    metrics = {
        "config": asdict(cfg), "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else device,
        "params": model.num_params(), "iters": cfg.max_iters, "tokens_per_s": tokens_per_s, "wall_s": wall,
        "best_val_loss": best_val, "final_val_loss": history["val_loss"][-1],
        "final_train_loss": history["eval_train_loss"][-1], "torch": torch.__version__,
        "threads": torch.get_num_threads(), "compiled": use_compile, "first_step_s": first_step, "history": history,
    }
    if device == "cuda":
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), 312e12)
        metrics["mfu"] = model.flops_per_token() * tokens_per_s / peak
    if attention:
        metrics["attention"] = attention

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "model_cfg": asdict(model_cfg), "chars": tok.chars}, out_dir / "ckpt.pt")
    plot_losses(history, out_dir / "loss.png", f"GPT '{cfg.name}' on Shakespeare ({device}, {wall:.0f} s)")
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    prompt = chat_prompt([{"role": "user", "content": "What news from Rome?"}],
                         system="A conversation between a USER and a wise COUNSELLOR.",
                         user="USER", assistant="COUNSELLOR")
    for start_text, label in (("\n", "unconditional"), (prompt, "chat-style prompt")):
        ids = tok.encode(start_text)[None].to(device)
        model.eval()
        text = tok.decode(model.generate(ids, cfg.sample_chars, temperature=0.8, top_k=20, generator=gen)[0])
        with open(out_dir / "sample.txt", "a" if label != "unconditional" else "w") as f:
            f.write(f"===== {label}, temperature 0.8, top-k 20 =====\n{text}\n\n")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"best val loss {best_val:.4f}, final {metrics['final_val_loss']:.4f}; {wall:.1f} s, "
          f"{tokens_per_s:,.0f} tokens/s" + (f", MFU {metrics['mfu']:.1%}" if "mfu" in metrics else ""))
    print(f"wrote {out_dir}/ckpt.pt, loss.png, sample.txt, metrics.json")
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cpu", help="cpu, gpu or tiny (gpt/configs.py)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the fastest available)")
    parser.add_argument("--max-iters", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="default: runs/<config>")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--flash", action=argparse.BooleanOptionalAction, default=None,
                        help="fused scaled_dot_product_attention (default) or the written-out attention")
    parser.add_argument("--bench-attention", action=argparse.BooleanOptionalAction, default=None,
                        help="time plain vs flash attention first (default: on CUDA only)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    overrides = {"max_iters": args.max_iters, "compile": args.compile, "flash": args.flash, "threads": args.threads}
    cfg = get_config(args.config, **overrides)
    if args.max_iters is not None:
        cfg.eval_interval = min(cfg.eval_interval, max(1, args.max_iters))
    device = pick_device(args.device)
    train(cfg, device, args.out or ROOT / "runs" / cfg.name, args.bench_attention, progress=not args.no_progress)


if __name__ == "__main__":
    main()
