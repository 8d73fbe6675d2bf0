"""Data-parallel training (gpt/train.py under torchrun, gloo on the CPU): two processes on two half-batches take
exactly the step one process takes on the whole batch, and a short 2-process run trains and writes its metrics.

The 2-process cases launch torchrun as a subprocess with a time limit (never fork: a child forked after torch has used
its OpenMP pool deadlocks). Run as a script under torchrun, this file is the worker of the one-step test.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpt import train as gtrain
from gpt.configs import get_config
from gpt.data import get_batch
from gpt.model import GPT, GPTConfig

REPO = Path(__file__).resolve().parent.parent
CFG = get_config("tiny")
VOCAB = 65


def setup():
    """The tiny model, its optimizer and a fixed token stream: the same on every process."""
    torch.manual_seed(CFG.seed)
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=CFG.block_size, n_layer=CFG.n_layer, n_head=CFG.n_head,
                          n_embd=CFG.n_embd))
    data = torch.randint(VOCAB, (5000,), generator=torch.Generator().manual_seed(0))
    return model, model.optimizer(CFG.lr, CFG.weight_decay, (0.9, CFG.beta2), "cpu"), data


def one_step(model, optimizer, x, y, accum=1, step_model=None):
    """The training loop's step: forward/backward (in `accum` micro-batches), clip, AdamW. Gradients, loss, params."""
    for group in optimizer.param_groups:        # the loop's first step: every parameter moves by about 5e-5
        group["lr"] = gtrain.lr_at(0, CFG.lr, CFG.warmup_iters, CFG.max_iters, CFG.min_lr)
    loss = gtrain.forward_backward(step_model or model, x, y, accum, "cpu", bf16=False)
    grads = [p.grad.clone() for p in model.parameters()]
    gtrain.optimizer_step(model, optimizer, CFG.grad_clip)
    return {"loss": loss.item(), "grads": grads, "params": [p.detach().clone() for p in model.parameters()]}


def ddp_worker(out: str) -> None:
    par, device = gtrain.init_parallel("cpu")
    torch.set_num_threads(1)
    try:
        model, optimizer, data = setup()
        per_rank, accum, _ = gtrain.batch_plan(CFG.batch_size, par.world_size)
        x, y = gtrain.rank_batch(data, CFG.block_size, per_rank, par, torch.Generator().manual_seed(CFG.seed))
        result = one_step(model, optimizer, x, y, accum, gtrain.wrap_ddp(model, device, par))
        result["loss"] = gtrain.mean_over_processes(torch.tensor(result["loss"]), par)
        result.update(rows=len(x), world_size=par.world_size)
        if par.main:
            torch.save(result, out)
    finally:
        torch.distributed.destroy_process_group()


def torchrun(args: list[str], tmp_path: Path, timeout: int = 150) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n" \
                                 f"{proc.stderr[-3000:]}"
    return proc


def test_batch_plan():
    assert gtrain.batch_plan(12, 1) == (12, 1, "")
    assert gtrain.batch_plan(12, 2) == (6, 1, "")
    assert gtrain.batch_plan(64, 8, micro_batch=4) == (8, 2, "")
    assert gtrain.batch_plan(12, 1, micro_batch=5) == (12, 3, "")
    per_rank, accum, note = gtrain.batch_plan(12, 5)
    assert (per_rank, accum) == (2, 1) and "global batch 10" in note and "does not divide" in note


def test_micro_batches_give_the_whole_batch_gradient():
    """Gradient accumulation over 3 uneven micro-batches (6, 5, 5 rows) is one step on all 16 rows."""
    model, optimizer, data = setup()
    x, y = get_batch(data, CFG.block_size, CFG.batch_size, torch.Generator().manual_seed(1))
    whole = one_step(model, optimizer, x, y)
    model, optimizer, _ = setup()
    parts = one_step(model, optimizer, x, y, accum=3)
    assert parts["loss"] == pytest.approx(whole["loss"], abs=1e-6)
    for a, b in zip(parts["grads"], whole["grads"]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.timeout(200)
def test_ddp_step_on_half_batches_equals_one_step_on_the_whole_batch(tmp_path):
    torchrun([str(Path(__file__).resolve()), str(tmp_path / "ddp.pt")], tmp_path)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert ddp["world_size"] == 2 and ddp["rows"] == CFG.batch_size // 2

    model, optimizer, data = setup()
    x, y = get_batch(data, CFG.block_size, CFG.batch_size, torch.Generator().manual_seed(CFG.seed))
    before = [p.detach().clone() for p in model.parameters()]
    single = one_step(model, optimizer, x, y)
    assert ddp["loss"] == pytest.approx(single["loss"], abs=1e-6)
    names = [n for n, _ in model.named_parameters()]
    for name, a, b in zip(names, ddp["grads"], single["grads"]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=lambda m: f"gradient of {name}: {m}")
    moved = 0
    for name, a, b, start in zip(names, ddp["params"], single["params"], before):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=lambda m: f"{name} after the step: {m}")
        moved += int(not torch.equal(b, start))
    assert moved == len(names)                   # the step changed every parameter: the comparison means something


@pytest.mark.timeout(200)
def test_two_process_run_writes_falling_metrics(tmp_path):
    """30 steps of the tiny config in 2 processes: rank 0 alone writes the run; it trains on the same windows as one
    process would, so its validation losses match a 1-process run's."""
    out = tmp_path / "run"
    proc = torchrun(["-m", "gpt.train", "--config", "tiny", "--max-iters", "30", "--device", "cpu", "--out",
                     str(out), "--no-progress"], tmp_path)
    assert proc.stdout.count("best val loss") == 1                      # one process reports
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["world_size"] == 2 and saved["batch_per_process"] == 8 and saved["global_batch"] == 16
    val = saved["history"]["val_loss"]
    assert val[-1] < val[0] - 0.5, val
    assert sorted(p.name for p in out.iterdir()) == ["ckpt.pt", "loss.png", "metrics.json", "sample.txt"]

    cfg = get_config("tiny", max_iters=30)
    cfg.eval_interval = 30
    single = gtrain.train(cfg, "cpu", tmp_path / "single", progress=False)
    assert single["world_size"] == 1
    assert val == pytest.approx(single["history"]["val_loss"], abs=1e-4)


if __name__ == "__main__":
    ddp_worker(sys.argv[1])
