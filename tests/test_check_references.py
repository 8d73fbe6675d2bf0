"""The hidden checks' own references agree with the libraries', where a check computes its reference without them.

Chapter 4 grades a NumPy chapter and keeps torch out of the grader (importing it costs more CPU than the whole check);
the NumPy references it uses (`autograder/checks/references.py`) are pinned to `torch.softmax` and
`F.scaled_dot_product_attention` here instead, on inputs like the checks' own: several batch shapes, masks that
broadcast, logits in the thousands.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autograder.checks import references

CASES = [  # (lead, n_q, n_k, d_k, d_v, scale, mask kind)
    ((), 3, 5, 4, 6, 1.0, None), ((), 4, 6, 16, 3, 30.0, None), ((2,), 4, 5, 3, 6, 1.0, "random"),
    ((2, 3), 5, 5, 4, 4, 1.0, "causal"), ((2, 2), 3, 6, 8, 2, 300.0, "broadcast"), ((3,), 4, 4, 2, 5, 1.0, "random"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shape, axis, scale", [((3, 7), -1, 3), ((2, 4, 5), 1, 3), ((6,), 0, 3),
                                                ((2, 3, 4, 5), 0, 3), ((4, 9), -1, 1000), ((3, 6), 0, 1e4)])
def test_ch04_softmax_reference_is_torchs(shape, axis, scale):
    x = np.random.default_rng(len(shape)).normal(size=shape) * scale + scale
    want = torch.softmax(torch.from_numpy(x), dim=axis).numpy()
    np.testing.assert_allclose(references.softmax(x, axis), want, rtol=1e-12, atol=1e-15)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("lead, n_q, n_k, d_k, d_v, scale, kind", CASES)
def test_ch04_attention_reference_is_torchs(lead, n_q, n_k, d_k, d_v, scale, kind):
    r = np.random.default_rng(n_q * 100 + n_k)
    Q = r.normal(size=(*lead, n_q, d_k)) * scale
    K, V = r.normal(size=(*lead, n_k, d_k)), r.normal(size=(*lead, n_k, d_v))
    mask = {None: None, "causal": references.causal_mask(n_q, numpy=True),
            "random": references.random_mask(r, n_q, n_k, lead=lead),
            "broadcast": references.random_mask(r, n_q, n_k, lead=lead[:1] + (1,))}[kind]
    q, k, v = (torch.from_numpy(a) for a in (Q, K, V))
    m = None if mask is None else torch.from_numpy(mask)
    scores = q @ k.transpose(-1, -2) / np.sqrt(d_k)
    weights = torch.softmax(scores if m is None else scores.masked_fill(~m, float("-inf")), dim=-1)
    output = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    got_output, got_weights = references.attention(Q, K, V, mask)
    np.testing.assert_allclose(got_weights, weights.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got_output, output.numpy(), rtol=1e-10, atol=1e-12)
    if mask is not None:
        assert np.all(got_weights[np.broadcast_to(~mask, got_weights.shape)] == 0.0)


def test_ch07_nucleus_reference_is_transformers():
    """Chapter 7's top-p check judges by its own `_nucleus` (transformers would be the larger part of the grader's
    CPU); here it must keep exactly the tokens transformers' TopPLogitsWarper keeps, on the check's own cases."""
    from transformers.generation.logits_process import TopPLogitsWarper

    from autograder.checks import ch07_training as checks

    for seed, shape, p, dtype, scale in checks.TOP_P_CASES:
        logits = checks._random_logits(seed, shape, scale, p, dtype)
        flat = logits.double().reshape(-1, logits.shape[-1])
        want = torch.isfinite(TopPLogitsWarper(top_p=p)(None, flat)).reshape(logits.shape)
        assert torch.equal(checks._nucleus(torch.softmax(logits.double(), -1), p), want), (seed, shape, p)


@pytest.mark.parametrize("sgd", [True, False], ids=["SGD", "AdamW"])
def test_ch07_functional_optimizer_is_torch_optims(sgd):
    """Chapter 7's train_step reference steps torch's functional SGD/AdamW (a torch.optim class would import
    torch._dynamo in the grader); it must move the weights exactly as the class the learner's side makes does."""
    from autograder.checks import ch07_training as checks
    from gpt.train import optimizer_step

    inputs, _ = checks._step_case(121, (0.5, 0.3, 0.1), sgd, max_norm=0.5)
    ours, theirs = dict(inputs), dict(inputs)
    exec(checks.MODEL, ours)
    exec(checks.BUILD, theirs)
    optimizers = (checks._FunctionalOptimizer(ours["model"].parameters(), inputs["initial_lr"], sgd),
                  theirs["optimizer"])
    for x, y, lr in zip(inputs["xs"], inputs["ys"], inputs["lrs"]):
        for built, optimizer in zip((ours, theirs), optimizers):
            optimizer.param_groups[0]["lr"] = lr
            F.cross_entropy(built["model"](x).flatten(0, 1), y.flatten()).backward()
            optimizer_step(built["model"], optimizer, inputs["max_norm"])
    for a, b in zip(ours["model"].parameters(), theirs["model"].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
