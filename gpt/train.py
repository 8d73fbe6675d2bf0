"""Train the chapter's GPT on the Shakespeare corpus.

    python -m gpt.train                         # the default recipe, cpu-fast (or: make train)
    python -m gpt.train --config cpu            # nanoGPT's CPU recipe (or: make train CONFIG=cpu)
    python -m gpt.train --config gpu            # CUDA: bf16 autocast, torch.compile, flash attention
    python -m gpt.train --config tiny --device cpu --max-iters 50 --out /tmp/run
    torchrun --standalone --nproc_per_node=8 -m gpt.train --config gpu   # or: make train CONFIG=gpu NPROC=8

Writes runs/<config>/: ckpt.pt, loss.png, sample.txt and metrics.json (config, device, world_size, params, iters,
tokens_per_s, wall_s, best_val_loss, final_val_loss, and mfu on CUDA).

Under torchrun every process trains a replica of the model on its own rows of each batch, and
DistributedDataParallel averages the gradients across processes (an all-reduce: NCCL on CUDA, gloo on the CPU) before
every optimizer step, so the replicas stay identical. The config's `batch_size` is the global batch whatever the
number of processes: each of N processes takes batch_size / N rows (in micro-batches of at most `micro_batch` rows,
their gradients accumulated). Only rank 0 evaluates, logs, samples and writes runs/<config>/.
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
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .configs import DEFAULT_CONFIG, CONFIGS, TrainConfig, get_config
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


def cpu_has_bf16() -> bool:
    """Native bfloat16 dot products (AVX512-BF16 or AMX): there bf16 matrix products beat float32 ones."""
    return any(getattr(torch.cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def use_bf16(cfg: TrainConfig, device: str) -> bool:
    """cfg.bf16, or by default: on CUDA when the GPU supports it, on the CPU when it has native bf16 units."""
    kind = torch.device(device).type
    if cfg.bf16 is not None:
        return cfg.bf16 and kind in ("cuda", "cpu")
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    return kind == "cpu" and cpu_has_bf16()


def autocast_for(device: str, bf16: bool = True):
    """bf16 autocast (no loss scaling needed: bf16 keeps float32's exponent range) or plain float32."""
    if bf16:
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Parallel:
    """Where this process stands under torchrun: rank, world size and local rank (0, 1, 0 without torchrun)."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, local_world_size: int = 1):
        self.rank, self.world_size, self.local_rank, self.local_world_size = rank, world_size, local_rank, \
            local_world_size

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def init_parallel(device: str) -> tuple[Parallel, str]:
    """Join torchrun's process group when launched by it (RANK in the environment); else one process.

    NCCL between GPUs (one GPU per process: cuda:LOCAL_RANK), gloo between CPU processes."""
    if "RANK" not in os.environ:
        return Parallel(), device
    par = Parallel(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)),
                   int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])))
    if torch.device(device).type == "cuda":
        device = f"cuda:{par.local_rank}"
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=torch.device(device))
    else:
        dist.init_process_group("gloo")
    return par, device


def batch_plan(batch_size: int, world_size: int, micro_batch: int | None = None) -> tuple[int, int, str]:
    """(rows per process, micro-batches per process and step, a note when the batch does not divide).

    The global batch stays `batch_size` when world_size divides it; otherwise each process takes the nearest whole
    number of rows and the note says what the global batch became."""
    per_rank = batch_size // world_size
    note = ""
    if per_rank * world_size != batch_size:
        per_rank = max(1, round(batch_size / world_size))
        note = (f"batch {batch_size} does not divide among {world_size} processes: {per_rank} rows each, "
                f"global batch {per_rank * world_size}")
    accum = math.ceil(per_rank / micro_batch) if micro_batch else 1
    return per_rank, accum, note


def rank_batch(data, block_size: int, per_rank: int, par: Parallel, generator: torch.Generator):
    """This process's rows of the step's global batch.

    Every process draws the whole global batch from the same seeded generator and keeps its own slice: the
    processes see different rows, and the run trains on the same windows for any number of processes."""
    x, y = get_batch(data, block_size, per_rank * par.world_size, generator)
    rows = slice(par.rank * per_rank, (par.rank + 1) * per_rank)
    return x[rows], y[rows]


def wrap_ddp(model, device: str, par: Parallel) -> DistributedDataParallel:
    """DistributedDataParallel: copies rank 0's weights to every process now, and all-reduces the gradients in
    buckets during backward, overlapping communication with the rest of the backward pass."""
    # The causal mask is the only buffer and never changes: no need to synchronise it before every forward.
    return DistributedDataParallel(model, device_ids=[par.local_rank] if torch.device(device).type == "cuda" else None,
                                   forward_sync_buffers=False)


def forward_backward(step_model, x, y, accum: int, device: str, bf16: bool):
    """Mean loss over the rows of x, its gradient accumulated in each parameter's .grad.

    The rows go through in `accum` micro-batches, each loss weighted by its share of the rows, so the gradient is
    that of the mean over all rows. Under DDP the gradients are averaged across processes during the last
    backward only (`no_sync` skips the all-reduce for the others)."""
    chunks = list(zip(x.tensor_split(accum), y.tensor_split(accum)))
    total = torch.zeros((), device=x.device)
    for i, (xc, yc) in enumerate(chunks):
        skip_sync = isinstance(step_model, DistributedDataParallel) and i < len(chunks) - 1
        with step_model.no_sync() if skip_sync else contextlib.nullcontext():
            with autocast_for(device, bf16):
                _, loss = step_model(xc, yc)
            loss = loss * (len(xc) / len(x))
            loss.backward()
        total += loss.detach()
    return total


def optimizer_step(model, optimizer, grad_clip: float) -> None:
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def mean_over_processes(value: torch.Tensor, par: Parallel) -> float:
    if par.distributed:
        value = value.clone()
        dist.all_reduce(value)                      # SUM: gloo has no AVG
        value /= par.world_size
    return value.item()


@torch.no_grad()
def estimate_loss(model, splits, cfg: TrainConfig, device: str, bf16: bool = False) -> dict:
    """Mean loss over the same `eval_iters` batches of each split every time (a fixed generator: less noise)."""
    model.eval()
    out = {}
    for name, data in splits.items():
        g = torch.Generator().manual_seed(cfg.seed + 1)
        losses = torch.zeros(cfg.eval_iters)
        for i in range(cfg.eval_iters):
            x, y = to_device(get_batch(data, cfg.block_size, cfg.eval_batch or cfg.batch_size, g), device)
            with autocast_for(device, bf16):
                _, loss = model(x, y)
            losses[i] = loss.item()
        out[name] = losses.mean().item()
    model.train()
    return out


def time_attention(model_cfg: GPTConfig, batch_size: int, device: str, steps: int = 10, bf16: bool = True) -> dict:
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
            with autocast_for(device, bf16):
                _, loss = model(x, x)
            loss.backward()
        sync(device)
        result["flash_ms" if flash else "plain_ms"] = 1000 * (time.perf_counter() - start) / steps
        del model
    result["speedup"] = result["plain_ms"] / result["flash_ms"]
    return result


def to_device(batch, device: str):
    """CPU batch -> device; on CUDA through pinned memory, so the copy overlaps the previous step."""
    if torch.device(device).type == "cuda":
        return tuple(t.pin_memory().to(device, non_blocking=True) for t in batch)
    return tuple(t.to(device) for t in batch)


def sync(device: str) -> None:
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize()
    elif kind == "mps":
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


def cpu_threads(cfg: TrainConfig, par: Parallel) -> int:
    """cfg.threads, or this process's share of the cores (all of them for one process)."""
    return cfg.threads or max(1, usable_cores() // par.local_world_size)


def threads_text(n: int) -> str:
    return f"{n} thread{'s' if n != 1 else ''}"


def train(cfg: TrainConfig, device: str, out_dir: Path, bench_attention: bool | None = None, progress=True) -> dict:
    """Train `cfg` on `device`; under torchrun, one process of a data-parallel run. Returns the metrics (rank 0)."""
    par, device = init_parallel(device)
    try:
        return _train(cfg, device, out_dir, par, bench_attention, progress)
    finally:
        if par.distributed:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, device: str, out_dir: Path, par: Parallel, bench_attention, progress) -> dict:
    kind = torch.device(device).type
    torch.manual_seed(cfg.seed)
    if kind == "cpu":
        torch.set_num_threads(cpu_threads(cfg, par))
    if kind == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    bf16 = use_bf16(cfg, device)
    per_rank, accum, note = batch_plan(cfg.batch_size, par.world_size, cfg.micro_batch)
    global_batch = per_rank * par.world_size
    tok, train_ids, val_ids = load_splits()
    splits = {"train": train_ids, "val": val_ids}          # stay on the CPU; each batch is moved to the device
    model_cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer,
                          n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout, flash=cfg.flash)
    attention = None
    if par.main and (bench_attention if bench_attention is not None else kind == "cuda"):
        attention = time_attention(model_cfg, per_rank, device, bf16=bf16)
        print(f"attention: plain {attention['plain_ms']:.2f} ms/step, flash {attention['flash_ms']:.2f} ms/step "
              f"({attention['speedup']:.2f}x)")
    model = GPT(model_cfg).to(device)
    optimizer = model.optimizer(cfg.lr, cfg.weight_decay, (0.9, cfg.beta2), kind)
    use_compile = cfg.compile if cfg.compile is not None else kind == "cuda"
    step_model = torch.compile(model) if use_compile else model
    if par.distributed:
        step_model = wrap_ddp(step_model, device, par)
    torch.manual_seed(cfg.seed + par.rank)                  # dropout: different masks on different processes
    if par.main:
        speed = [s for s, on in (("compiled", use_compile), ("bf16", bf16)) if on]
        print(f"{cfg.name}: {model.num_params() / 1e6:.2f} M parameters on {device}"
              f"{' (' + ', '.join(speed) + ')' if speed else ''}"
              f"{f', {threads_text(torch.get_num_threads())}' if kind == 'cpu' else ''}, {cfg.max_iters} iterations")
        if par.world_size > 1 or accum > 1:
            print(f"{par.world_size} processes x {per_rank} rows"
                  f"{f' in {accum} micro-batches' if accum > 1 else ''} = global batch {global_batch}")
        if note:
            print(f"note: {note}")

    g = torch.Generator().manual_seed(cfg.seed)
    history = {"train_iter": [], "train_loss": [], "eval_iter": [], "val_loss": [], "eval_train_loss": []}
    best_val, first_step = float("inf"), 0.0
    sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(range(cfg.max_iters + 1), disable=not (progress and par.main), mininterval=0.5, desc=cfg.name)
    for it in bar:
        if par.main and (it % cfg.eval_interval == 0 or it == cfg.max_iters):
            losses = estimate_loss(model, splits, cfg, device, bf16)   # eager: no second compilation for eval mode
            history["eval_iter"].append(it)
            history["val_loss"].append(losses["val"])
            history["eval_train_loss"].append(losses["train"])
            best_val = min(best_val, losses["val"])
            bar.set_postfix(train=f"{losses['train']:.3f}", val=f"{losses['val']:.3f}")
        if it == cfg.max_iters:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it, cfg.lr, cfg.warmup_iters, cfg.max_iters, cfg.min_lr)
        x, y = to_device(rank_batch(splits["train"], cfg.block_size, per_rank, par, g), device)
        loss = forward_backward(step_model, x, y, accum, device, bf16)
        optimizer_step(model, optimizer, cfg.grad_clip)
        if it == 0:                                          # on CUDA the first step includes torch.compile
            sync(device)
            first_step = time.perf_counter() - start
        if it % cfg.log_interval == 0:
            loss = mean_over_processes(loss, par)            # every process takes part in the all-reduce
            if par.main:
                history["train_iter"].append(it)
                history["train_loss"].append(loss)
    sync(device)
    wall = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    bar.close()
    if not par.main:
        return {}

    tokens_per_s = cfg.max_iters * global_batch * cfg.block_size / wall
    metrics = {
        "config": asdict(cfg), "device": kind,
        "device_name": torch.cuda.get_device_name() if kind == "cuda" else kind,
        "world_size": par.world_size, "batch_per_process": per_rank, "micro_batches": accum,
        "global_batch": global_batch,
        "params": model.num_params(), "iters": cfg.max_iters, "tokens_per_s": tokens_per_s, "wall_s": wall,
        "cpu_s": cpu_s, "best_val_loss": best_val, "final_val_loss": history["val_loss"][-1],
        "final_train_loss": history["eval_train_loss"][-1], "torch": torch.__version__,
        "threads": torch.get_num_threads(), "bf16": bf16, "compiled": use_compile, "first_step_s": first_step,
        "history": history,
    }
    if kind == "cuda":
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), 312e12)
        metrics["mfu"] = model.flops_per_token() * tokens_per_s / (peak * par.world_size)
    if attention:
        metrics["attention"] = attention

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "model_cfg": asdict(model_cfg), "chars": tok.chars}, out_dir / "ckpt.pt")
    plot_losses(history, out_dir / "loss.png", f"GPT '{cfg.name}' on Shakespeare ({kind}"
                f"{f' x {par.world_size}' if par.world_size > 1 else ''}, {wall:.0f} s)")
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
          f"{tokens_per_s:,.0f} tokens/s" + (f" ({par.world_size} processes)" if par.world_size > 1 else "")
          + (f", MFU {metrics['mfu']:.1%}" if "mfu" in metrics else ""))
    print(f"wrote {out_dir}/ckpt.pt, loss.png, sample.txt, metrics.json")
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"{', '.join(CONFIGS)} (gpt/configs.py; "
                        f"default {DEFAULT_CONFIG})")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the fastest available)")
    parser.add_argument("--max-iters", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="global batch (all processes together)")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/<config>")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast (default: on CUDA, and on CPUs with native bf16 where the config says)")
    parser.add_argument("--flash", action=argparse.BooleanOptionalAction, default=None,
                        help="fused scaled_dot_product_attention (default) or the written-out attention")
    parser.add_argument("--bench-attention", action=argparse.BooleanOptionalAction, default=None,
                        help="time plain vs flash attention first (default: on CUDA only)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per process (default: the config's, else the cores / processes)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    overrides = {"max_iters": args.max_iters, "compile": args.compile, "flash": args.flash, "threads": args.threads,
                 "bf16": args.bf16, "batch_size": args.batch_size}
    cfg = get_config(args.config, **overrides)
    if args.max_iters is not None:
        cfg.eval_interval = min(cfg.eval_interval, max(1, args.max_iters))
    device = pick_device(args.device)
    train(cfg, device, args.out or ROOT / "runs" / cfg.name, args.bench_attention, progress=not args.no_progress)


if __name__ == "__main__":
    main()
