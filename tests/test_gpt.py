"""Fast unit tests for chapter 7's reference GPT (gpt/): batches, model shapes, causality, a tiny training run."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from gpt import data as gdata
from gpt import train as gtrain
from gpt.configs import CONFIGS, DEFAULT_CONFIG, get_config
from gpt.model import GPT, GPTConfig
from gpt.sample import chat_prompt, sample_next, top_p_probs

pytestmark = pytest.mark.unit


def test_get_batch_shapes_and_offsets():
    d = torch.arange(1000) * 3
    x, y = gdata.get_batch(d, 16, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == torch.int64
    assert torch.equal(y, x + 3)                                  # y is x shifted by one token
    assert torch.equal(x - x[:, :1], torch.arange(16).expand(8, 16) * 3)
    starts = {int(gdata.get_batch(torch.arange(12), 10, 1, torch.Generator().manual_seed(s))[0][0, 0])
              for s in range(60)}
    assert starts == {0, 1}                                       # every valid start, nothing past the end


def test_markdown_to_play():
    md = ("# Play\n\n## ACT I\n\n### SCENE I. A room.\n\n_Enter HAMLET_\n\n**HAMLET**  \n_\\[Aside]_ To be,  \n"
          "or not.\n\n_Exit_\n\nStill Hamlet.\n\n**Ghost**  \nRemember me.\n")
    assert gdata.markdown_to_play(md) == ["HAMLET:\nTo be,\nor not.\nStill Hamlet.", "Ghost:\nRemember me."]


def test_tokenizer_round_trip():
    tok = gdata.CharTokenizer("hello, world\n")
    assert tok.decode(tok.encode("hello\nworld")) == "hello\nworld"


@pytest.mark.parametrize("name, params", [("cpu", 0.80e6), ("cpu-fast", 0.80e6), ("gpu", 10.65e6)])
def test_parameter_counts(name, params):
    cfg = CONFIGS[name]
    model = GPT(GPTConfig(vocab_size=65, block_size=cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                          n_embd=cfg.n_embd))
    assert abs(model.num_params() - params) / params < 0.01


@pytest.mark.parametrize("flash", [True, False])
def test_model_shapes_and_causality(flash):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=16, flash=flash)).eval()
    idx = torch.randint(11, (3, 12))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 12, 11) and loss.dim() == 0
    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 11                     # change token 7: positions 0..6 must not notice
    after, _ = model(changed)
    assert torch.allclose(logits[:, :7], after[:, :7], atol=1e-6)
    assert not torch.allclose(logits[:, 7:], after[:, 7:], atol=1e-6)


def test_flash_and_plain_attention_agree():
    torch.manual_seed(0)
    a = GPT(GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=16, flash=True)).eval()
    b = GPT(GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=16, flash=False)).eval()
    b.load_state_dict(a.state_dict())
    idx = torch.randint(11, (2, 12))
    assert torch.allclose(a(idx)[0], b(idx)[0], atol=1e-5)


def test_lr_schedule():
    assert gtrain.lr_at(0, 1e-3, 100, 2000, 1e-4) == pytest.approx(1e-5)
    assert gtrain.lr_at(100, 1e-3, 100, 2000, 1e-4) == pytest.approx(1e-3)
    assert gtrain.lr_at(1050, 1e-3, 100, 2000, 1e-4) == pytest.approx(5.5e-4)
    assert gtrain.lr_at(5000, 1e-3, 100, 2000, 1e-4) == pytest.approx(1e-4)


def test_sampling_and_chat_prompt():
    logits = torch.tensor([[0.0, 1.0, 5.0, 4.0]]).repeat(2000, 1)
    ids = sample_next(logits, 1.0, 2, torch.Generator().manual_seed(0))
    assert ids.shape == (2000, 1) and set(ids[:, 0].tolist()) == {2, 3}
    assert set(sample_next(logits, 0.01, None, torch.Generator().manual_seed(0))[:, 0].tolist()) == {2}
    prompt = chat_prompt([{"role": "user", "content": " 배가 아파요 "}])
    assert prompt == "아래는 사용자와 유능하고 매우 지능적인 AI 조수의 대화이다.\n\n사용자:\n배가 아파요\n\nAI:\n"


def test_top_p_matches_transformers():
    """The nucleus of gpt.sample against transformers' TopPLogitsWarper (random logits, no ties), plus the edges."""
    from transformers.generation.logits_process import TopPLogitsWarper

    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    for p in (0.3, 0.9, 1.0):
        want = torch.softmax(TopPLogitsWarper(top_p=p)(None, logits), dim=-1)
        assert torch.allclose(top_p_probs(logits, p), want, atol=1e-12)
    assert torch.equal(top_p_probs(logits, 1e-9) > 0, torch.nn.functional.one_hot(logits.argmax(-1), 50).bool())
    tied = torch.log(torch.tensor([[0.4, 0.2, 0.2, 0.2]]))
    assert bool((top_p_probs(tied, 0.5) > 0).all())          # ties at the edge of the nucleus are all kept
    ids = sample_next(logits.float(), 1.0, None, torch.Generator().manual_seed(0), top_p=1e-9)
    assert torch.equal(ids[:, 0], logits.argmax(-1))


def test_tiny_training_run(tmp_path, monkeypatch):
    """20 iterations on a small repetitive text: the loss drops and metrics.json has the promised keys."""
    text = "FIRST CITIZEN:\nBefore we proceed any further, hear me speak.\n\nALL:\nSpeak, speak.\n\n" * 60
    tok = gdata.CharTokenizer(text)
    ids = tok.encode(text)
    monkeypatch.setattr(gtrain, "load_splits", lambda: (tok, ids[:4000], ids[4000:]))
    cfg = get_config("tiny", max_iters=20, eval_interval=10, eval_iters=2, sample_chars=20, lr=3e-3, warmup_iters=2)
    metrics = gtrain.train(cfg, "cpu", tmp_path, progress=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("config", "device", "params", "iters", "tokens_per_s", "wall_s", "best_val_loss", "final_val_loss"):
        assert key in saved
    assert saved["device"] == "cpu" and saved["iters"] == 20 and saved["world_size"] == 1
    val = metrics["history"]["val_loss"]
    assert val[0] == pytest.approx(math.log(tok.vocab_size), abs=0.3) and val[-1] < val[0] - 0.5
    assert (tmp_path / "ckpt.pt").exists() and (tmp_path / "loss.png").exists() and (tmp_path / "sample.txt").exists()


def test_default_recipe_is_judged_on_the_same_validation_windows_as_nanogpts():
    """make bench-train compares best validation losses: both recipes must evaluate the very same windows."""
    fast, base = CONFIGS[DEFAULT_CONFIG], CONFIGS["cpu"]
    assert DEFAULT_CONFIG != "cpu"
    assert (fast.block_size, fast.eval_iters, fast.seed) == (base.block_size, base.eval_iters, base.seed)
    assert (fast.eval_batch or fast.batch_size) == (base.eval_batch or base.batch_size)


@pytest.mark.parametrize("preset, first, expected", [
    ({}, "gpt", "PASSIVE"),                                      # gpt before torch: threads sleep when they wait
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "gpt", "ACTIVE"),            # the user's choice stands
    ({"GOMP_SPINCOUNT": "300000"}, "gpt", None),
    ({}, "torch", None),                                         # too late once torch has loaded libgomp: untouched
])
def test_openmp_wait_policy_default(preset, first, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | preset
    code = f"import os, {first}, gpt; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(expected)


def test_corpus_checksum_is_pinned():
    assert len(gdata.CORPUS_SHA256) == 64 and int(gdata.CORPUS_SHA256, 16)
    if gdata.CORPUS.exists():                                    # built by `make data`: must be the pinned bytes
        assert gdata.sha256(gdata.CORPUS) == gdata.CORPUS_SHA256
