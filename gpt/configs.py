"""Named training configurations: `python -m gpt.train --config cpu-fast|cpu|gpu|tiny`."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass
class TrainConfig:
    name: str
    # model (see gpt.model.GPTConfig)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    # optimisation: AdamW, linear warm-up then cosine decay from lr to min_lr
    batch_size: int = 12          # the global batch: all processes together under torchrun
    micro_batch: int | None = None  # most rows one forward pass takes (memory); more are accumulated. None: no limit
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    weight_decay: float = 0.1
    beta2: float = 0.99
    grad_clip: float = 1.0
    # evaluation and logging: a few fixed batches, not too often (evaluation is not training)
    eval_interval: int = 500
    eval_iters: int = 20
    eval_batch: int | None = None  # rows per evaluation batch; None: batch_size
    log_interval: int = 10
    sample_chars: int = 500
    seed: int = 1337
    # speed knobs; None = decide from the device (compile on CUDA; bf16 on CUDA and on CPUs with native bf16)
    compile: bool | None = None
    bf16: bool | None = None
    flash: bool = True
    threads: int | None = None   # CPU threads per process; None = the cores this process may use / processes


CONFIGS = {
    # The course's CPU recipe (`make train`): nanoGPT's model with 2 heads of 64 instead of 4 of 32, twice the batch at
    # twice the learning rate, bf16 where the CPU has it; 1400 steps. Lower validation loss than `cpu` in less time
    # (`make bench-train`); evaluated on the same validation windows as `cpu` (eval_batch 12, block 64, same seed).
    "cpu-fast": TrainConfig("cpu-fast", n_head=2, batch_size=24, max_iters=1400, lr=2e-3, min_lr=2e-4, eval_batch=12),
    # nanoGPT's CPU recipe for Shakespeare-char (README, "I only have a macbook"): about 0.8 M parameters, float32.
    "cpu": TrainConfig("cpu", bf16=False),
    # nanoGPT's config/train_shakespeare_char.py: about 10.65 M parameters; minutes on one modern GPU.
    "gpu": TrainConfig("gpu", n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, batch_size=64,
                       max_iters=5000, eval_interval=500, eval_iters=50, log_interval=50),
    # seconds on a laptop: for the unit tests and the book page (float32: the same numbers on every CPU).
    "tiny": TrainConfig("tiny", n_layer=2, n_head=2, n_embd=64, block_size=32, batch_size=16, max_iters=300,
                        warmup_iters=20, eval_interval=50, eval_iters=10, sample_chars=200, threads=1, bf16=False),
}
DEFAULT_CONFIG = "cpu-fast"


def get_config(name: str, **overrides) -> TrainConfig:
    if name not in CONFIGS:
        raise SystemExit(f"unknown config {name!r}; choose one of {', '.join(CONFIGS)}")
    return replace(CONFIGS[name], **{k: v for k, v in overrides.items() if v is not None})
