"""Hidden tests for chapter 7, `07_training`: batches, the next-token loss, the learning-rate schedule, one training
step, and sampling (the chat prompt is an ungraded warm-up). Nothing here trains a model beyond a few steps.

A function that takes a `torch.Generator` is called through `env().run`: a generator is not plain data, so the snippet
builds it from a seed on the learner's side.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# The course's own training code is the reference where a check asks for the same thing (the schedule, the optimizer
# step); the loss and the samplers keep references of their own (torch's cross-entropy, exact softmax probabilities,
# a nucleus pinned to transformers' top-p), independent of the notebook's solutions.
from gpt.train import lr_at, optimizer_step

from .references import randn
from . import CheckFailed, env, expect, expect_close, expect_shape, expect_type, rng

# The loss exercise builds cross-entropy from logits: the library's cross-entropy / NLL earn nothing.
FORBID_LOSS = [
    "torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss", "torch._C._nn.cross_entropy_loss",
    "torch._C._nn.nll_loss*", "torch.nn.modules.loss.*",
]
FORBID_LR = ["torch.optim.lr_scheduler.*"]
FORBID_TOP_P = ["transformers.generation.logits_process.TopPLogitsWarper*"]


def _name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _draw(exercise, call, inputs, seed, case):
    """`out = call` in the learner's kernel, with `_g` a generator seeded `seed`."""
    code = f"import torch\n_g = torch.Generator().manual_seed(seed)\nout = {call}\n"
    return env().run(exercise, code, inputs={**inputs, "seed": seed}, outputs=["out"], case=case)["out"]


def _expect_ids(exercise, ids, shape, case, hint):
    expect_type(exercise, ids, "tensor", case)
    expect_shape(exercise, ids, shape, case, hint=hint)
    expect(ids.dtype == torch.int64, f"{exercise}: expected token ids (torch.int64) for {case}; got {ids.dtype}.")


def _generator_decides(exercise, draw, case, advice):
    """The same seed gives the same draw, another seed another one: the generator, not the global RNG, decides."""
    a, b, c = draw(11, f"{case}, generator seed 11"), draw(12, f"{case}, generator seed 12"), \
        draw(11, f"{case}, generator seed 11 again")
    expect(torch.equal(a, c), f"{exercise}: the same generator seed must give the same draw for {case}.")
    expect(not torch.equal(a, b), f"{exercise}: generators seeded 11 and 12 gave the same draw for {case}. {advice}")


# ----------------------------------------------------------------------------------------------------- get_batch
def _batch(data, block_size, batch_size, seed, case, check_y=False):
    got = _draw("get_batch", "get_batch(data, block_size, batch_size, _g)",
                {"data": data, "block_size": block_size, "batch_size": batch_size}, seed, case)
    expect(isinstance(got, (tuple, list)) and len(got) == 2,
           f"get_batch: expected a pair (x, y) for {case}; got {type(got).__name__}. Return `x, y`.")
    for name, t in (("x", got[0]), ("y", got[1]))[:2 if check_y else 1]:
        _expect_ids("get_batch", t, (batch_size, block_size), f"{name}, {case}",
                    "Both x and y are (batch_size, block_size).")
    return got


def _case(n, block, batch):
    return f"data of length {n}, block_size={block}, batch_size={batch}"


def test_get_batch_shapes():
    """Shapes, dtype, and the shift by one: y[:, t] is the token after x[:, t]."""
    for seed, n, block, batch in [(1, 500, 8, 4), (2, 97, 16, 3), (3, 2000, 32, 7)]:
        data = torch.from_numpy(rng(seed).permutation(n))     # distinct tokens: a shift can't match by chance
        x, y = _batch(data, block, batch, seed, _case(n, block, batch), check_y=True)
        expect(torch.equal(x[:, 1:], y[:, :-1]),
               f"get_batch: y must be x shifted left by one for {_case(n, block, batch)} (y[:, :-1] == x[:, 1:]); "
               "it is not. The target at position t is the token at t + 1.")


def test_get_batch_windows():
    """Every row of x is a real window of data; all valid starts are reachable; the generator decides the draw.
    (y is the shapes test's business.)"""
    for seed, n, block, batch in [(4, 300, 10, 6), (5, 1000, 64, 12)]:
        data = torch.arange(n) * 7 + 3
        x, _ = _batch(data, block, batch, seed, _case(n, block, batch))
        starts = (x[:, 0] - 3) // 7
        expect(bool(torch.all((starts >= 0) & (starts + block < n)))
               and torch.equal(x, data[starts[:, None] + torch.arange(block)]),
               f"get_batch: each row of x must be data[i : i + block_size] for a start i with i + block_size < "
               f"len(data), for {_case(n, block, batch)}. Index a contiguous slice of data.")
    # A corpus only 3 tokens longer than the block: starts 0, 1 and 2 are valid, and all must come up.
    x, _ = _batch(torch.arange(19) * 7 + 3, 16, 300, 6, _case(19, 16, 300))
    seen = sorted(set(((x[:, 0] - 3) // 7).tolist()))
    expect(seen == [0, 1, 2],
           f"get_batch: with {_case(19, 16, 300)}, the valid starts are [0, 1, 2] and each should be drawn; got "
           f"starts {seen}. Each window needs block_size + 1 tokens (its inputs and the target after them): which "
           "starts does your draw allow, given that a random integer draw excludes its upper bound?")
    _generator_decides("get_batch", lambda seed, case: _batch(torch.arange(5000), 8, 16, seed, case)[0],
                       _case(5000, 8, 16), "Draw the starts with the generator passed in, not torch's global one.")


# ------------------------------------------------------------------------------------------------- next_token_loss
def _loss_inputs(seed, shape, scale=1.0):
    """float32 logits, int64 targets, and the case's description."""
    targets = torch.from_numpy(rng(seed + 100).integers(0, shape[-1], size=shape[:2]))
    return randn(seed, shape, dtype="float32", scale=scale), targets, f"logits of shape {shape}"


def _loss(logits, targets, case):
    got = env().call("next_token_loss", logits, targets, case=case, forbid=FORBID_LOSS)
    expect_type("next_token_loss", got, "tensor", case)
    # (a 0-dim tensor may arrive as shape (1,) from the kernel: numpy.save writes at least one dimension)
    expect(got.numel() == 1, f"next_token_loss: expected one number (a 0-dim tensor) for {case}; got shape "
                             f"{tuple(got.shape)}. Return the mean over batch and positions.")
    return got.double().reshape(1)


def test_next_token_loss_value():
    """The mean cross-entropy over every position, against F.cross_entropy."""
    for seed, shape in [(21, (2, 5, 11)), (22, (3, 7, 65)), (23, (1, 1, 4)), (24, (4, 16, 30))]:
        logits, targets, case = _loss_inputs(seed, shape, scale=2.0)
        want = F.cross_entropy(logits.double().flatten(0, 1), targets.flatten()).reshape(1)
        expect_close("next_token_loss", _loss(logits, targets, case), want, atol=1e-4, rtol=1e-5, case=case,
                     what="loss", hint="Average −log p(target) over all batch × position entries (not the sum).")


def test_next_token_loss_stability():
    """Large logits stay finite, and adding a constant to every logit changes nothing (softmax is shift-invariant)."""
    for seed, shape, shift in [(31, (2, 6, 9), 1000.0), (32, (3, 4, 20), -800.0)]:
        logits, targets, case = _loss_inputs(seed, shape, scale=3.0)
        base = _loss(logits, targets, case)
        shifted = _loss(logits + shift, targets, f"{case} plus {shift:g}")
        expect(bool(torch.isfinite(shifted).all()),
               f"next_token_loss: got {float(shifted[0]):g} for {case} plus {shift:g}; expected a finite loss. "
               "Subtract the row maximum before exp (or use logsumexp).")
        expect_close("next_token_loss", shifted, base, atol=1e-3, rtol=1e-4, what="loss",
                     case=f"{case}: loss(logits + {shift:g}) vs loss(logits)",
                     hint="Adding a constant to every logit must not change the loss.")


def test_next_token_loss_grad():
    """autograd can differentiate it: the gradient points along softmax(logits) − one_hot(targets)."""
    code = "logits = logits.clone().requires_grad_(True)\nnext_token_loss(logits, targets).backward()\n" \
        "grad = logits.grad\n"
    for seed, shape in [(41, (2, 3, 7)), (42, (3, 5, 13))]:
        logits, targets, case = _loss_inputs(seed, shape)
        grad = env().run("next_token_loss", code, inputs={"logits": logits, "targets": targets}, outputs=["grad"],
                         case=case, forbid=FORBID_LOSS)["grad"]
        expect(grad is not None and not isinstance(grad, dict),
               f"next_token_loss: loss.backward() left no gradient on the logits for {case}. "
               "Stay in torch operations (no .item(), .numpy(), .detach() or torch.tensor(...) of a result).")
        expect_type("next_token_loss", grad, "tensor", case)
        want, got = torch.softmax(logits.double(), -1) - F.one_hot(targets, shape[-1]).double(), grad.double()
        cosine = float((got * want).sum() / (got.norm() * want.norm() + 1e-30))
        expect(cosine > 0.999,
               f"next_token_loss: the gradient with respect to the logits has the wrong direction for {case} "
               f"(cosine {cosine:.3f} with softmax − one_hot). Check which logit each target picks.")


# ----------------------------------------------------------------------------------------------------------- lr_at
def _expect_schedule(configs, steps, hint):
    """lr_at at each of `steps(warmup, max_iters)` against `gpt.train.lr_at`, to 1e-6 relative; a straight-line decay
    is named."""
    for max_lr, warmup, max_iters, min_lr in configs:
        for it in steps(warmup, max_iters):
            case = f"it={it}, max_lr={max_lr:g}, warmup={warmup}, max_iters={max_iters}, min_lr={min_lr:g}"
            got = env().call("lr_at", it, max_lr, warmup, max_iters, min_lr, case=case, forbid=FORBID_LR)
            try:
                got = float(got)
            except (TypeError, ValueError):
                raise CheckFailed(f"lr_at: expected a number for {case}; got {type(got).__name__}.") from None
            want = lr_at(it, max_lr, warmup, max_iters, min_lr)
            line = max_lr - (it - warmup) / max(max_iters - warmup, 1) * (max_lr - min_lr)
            straight = warmup <= it < max_iters and abs(got - line) <= 1e-9 + 1e-6 * line < abs(line - want)
            expect(abs(got - want) <= 1e-9 + 1e-6 * want, f"lr_at: expected {want:.6g} for {case}; got {got:.6g}. " + (
                "That is a straight line from max_lr to min_lr; the decay follows half a period of a cosine."
                if straight else hint))


def test_lr_at_warmup():
    """Linear warm-up: max_lr · (it + 1) / warmup for it < warmup."""
    _expect_schedule([(1e-3, 100, 2000, 1e-4), (6e-4, 10, 50, 0.0), (3e-3, 7, 100, 3e-4)],
                     lambda w, T: sorted({0, 1, w // 2, w - 1}),
                     "The warm-up is linear in it, already positive at it = 0, and reaches max_lr at it = warmup − 1.")


def test_lr_at_cosine():
    """Cosine decay from max_lr at it = warmup to min_lr at it = max_iters, then min_lr."""
    _expect_schedule([(1e-3, 100, 2000, 1e-4), (6e-4, 10, 50, 0.0), (2e-3, 0, 300, 2e-4)],
                     lambda w, T: [w + (T - w) * q // 4 for q in range(4)] + [T - 1, T, T + 17],
                     "The decay runs from max_lr at it = warmup through (max_lr + min_lr)/2 half-way to min_lr at "
                     "it = max_iters, along half a cosine; min_lr from max_iters on.")


# ------------------------------------------------------------------------------------------------------ train_step
# The learner's step runs on a small embedding + linear model built from the same weights on both sides, with torch's
# cross-entropy as the loss (so that a slip in next_token_loss costs nothing here); the reference sets the rate, takes
# the gradient and calls gpt's `optimizer_step` (clip, step, clear). Variants that leave one of those out name the
# learner's mistake when its weights match one of them.
MODEL = """
import torch
model = torch.nn.Sequential(torch.nn.Embedding(*weights[0].shape), torch.nn.Linear(*weights[1].shape[::-1]))
with torch.no_grad():
    for p, w in zip(model.parameters(), weights):
        p.copy_(w)
"""
BUILD = MODEL + """optimizer = (torch.optim.SGD if sgd else torch.optim.AdamW)(model.parameters(), lr=initial_lr)
"""
STEP = BUILD + """loss_fn = lambda z, t: torch.nn.functional.cross_entropy(z.flatten(0, 1), t.flatten())
losses = [train_step(model, optimizer, x, y, lr, loss_fn, max_norm) for x, y, lr in zip(xs, ys, lrs)]
floats = all(isinstance(loss, float) for loss in losses)
losses = torch.tensor([float(loss) for loss in losses], dtype=torch.float64)
weights = torch.cat([p.detach().flatten() for p in model.parameters()])
"""


def _step_case(seed, lrs, sgd, max_norm, vocab=7, d=4, batch=3, n=6):
    r = rng(seed)
    weights = [randn(seed, vocab, d, dtype="float32"), randn(seed + 1, vocab, d, dtype="float32", scale=0.5),
               randn(seed + 2, vocab, dtype="float32", scale=0.1)]
    xs, ys = (torch.from_numpy(r.integers(0, vocab, size=(len(lrs), batch, n))) for _ in range(2))
    case = (f"{len(lrs)} step(s) of {'SGD' if sgd else 'AdamW'} on an embedding + linear model, lr={list(lrs)}, "
            f"max_norm={max_norm:g}, the optimizer created with lr=0.25")
    return dict(weights=weights, xs=xs, ys=ys, lrs=list(lrs), sgd=sgd, initial_lr=0.25, max_norm=max_norm), case


class _FunctionalOptimizer:
    """torch.optim's SGD or AdamW with their default settings (as BUILD makes them), stepped through torch's functional
    updates: the same arithmetic without constructing a torch.optim class, which imports torch._dynamo (0.6 CPU-s,
    a sixth of the learner's whole check). gpt's optimizer_step drives it as it drives a torch optimizer; pinned to
    the classes by tests/test_check_references.py."""

    def __init__(self, params, lr, sgd):
        self.params, self.sgd = list(params), sgd
        self.param_groups = [{"lr": lr}]
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p), torch.tensor(0.0)) for p in self.params]

    @torch.no_grad()
    def step(self):
        from torch.optim.adamw import adamw
        from torch.optim.sgd import sgd

        live = [(p, m) for p, m in zip(self.params, self.moments) if p.grad is not None]
        params, grads, lr = [p for p, _ in live], [p.grad for p, _ in live], self.param_groups[0]["lr"]
        if self.sgd:
            sgd(params, grads, [None] * len(params), weight_decay=0.0, momentum=0.0, lr=lr, dampening=0.0,
                nesterov=False, maximize=False)
        else:
            adamw(params, grads, [m[0] for _, m in live], [m[1] for _, m in live], [], [m[2] for _, m in live],
                  amsgrad=False, beta1=0.9, beta2=0.999, lr=lr, weight_decay=0.01, eps=1e-8, maximize=False)

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None


def _reference_step(inputs, leave_out=""):
    """(losses, weights) after the steps; `leave_out`: 'rate', 'clearing' or 'clipping', to reproduce a mistake."""
    built = dict(inputs)
    exec(MODEL, built)      # the same model as the learner's side, from the same source
    model = built["model"]
    optimizer = _FunctionalOptimizer(model.parameters(), inputs["initial_lr"], inputs["sgd"])
    losses = []
    for x, y, lr in zip(inputs["xs"], inputs["ys"], inputs["lrs"]):
        for group in optimizer.param_groups:
            group["lr"] = inputs["initial_lr"] if leave_out == "rate" else lr
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        losses.append(loss.item())
        if leave_out == "clearing":
            torch.nn.utils.clip_grad_norm_(model.parameters(), inputs["max_norm"])
            optimizer.step()
        else:
            optimizer_step(model, optimizer, 0 if leave_out == "clipping" else inputs["max_norm"])
    return torch.tensor(losses, dtype=torch.float64), torch.cat([p.detach().flatten() for p in model.parameters()])


def _train_step(inputs, case):
    return env().run("train_step", STEP, inputs=inputs, outputs=["floats", "losses", "weights"], case=case)


def test_train_step_loss():
    """The step returns the loss of its batch before the update, as a Python float (one step from known weights)."""
    for seed, lr, sgd in [(101, 0.5, True), (102, 0.05, False), (103, 2.0, True)]:
        inputs, case = _step_case(seed, [lr], sgd, max_norm=1.0)
        got = _train_step(inputs, case)
        expect(got["floats"] is True, f"train_step: expected the loss as a Python float for {case}; got another "
                                      "type. The training history keeps plain numbers, not tensors.")
        expect_close("train_step", got["losses"], _reference_step(inputs)[0], atol=1e-5, rtol=1e-5, case=case,
                     what="returned loss", hint="Return the loss of the batch before the update, the one the "
                                                "gradient was computed from.")


def test_train_step_update():
    """After a few steps (SGD and AdamW, a clipping max_norm, a rate unlike the optimizer's own), the weights are the
    reference's."""
    for seed, lrs, sgd, max_norm in [(111, (0.5, 0.3, 0.1), True, 0.5), (112, (0.02, 0.01, 0.005), False, 0.05),
                                     (113, (1.0, 0.5), True, 100.0)]:
        inputs, case = _step_case(seed, lrs, sgd, max_norm)
        got = _train_step(inputs, case)["weights"]
        hint = "Each step: this batch's gradient alone, clipped to max_norm, applied at lr."
        for leave_out, diagnosis in [
                ("clearing", "They moved as if the gradients of earlier batches were still in .grad: backward() adds "
                             "to what is there."),
                ("rate", "They moved at the optimizer's own rate: every parameter group must get lr before the step."),
                ("clipping", "They moved by the unclipped gradient: clip it once it is computed, before the optimizer "
                             "uses it.")]:
            other = _reference_step(inputs, leave_out)[1]
            if got.shape == other.shape and torch.allclose(got.double(), other.double(), atol=1e-5, rtol=1e-5):
                hint = diagnosis
                break
        expect_close("train_step", got, _reference_step(inputs)[1], atol=1e-6, rtol=1e-5, case=case,
                     what="weights after the steps", hint=hint)


# ------------------------------------------------------------------------------------------------------ sample_next
def _sample(logits, temperature, top_k, seed, case):
    got = _draw("sample_next", "sample_next(logits, temperature, top_k, _g)",
                {"logits": logits, "temperature": temperature, "top_k": top_k}, seed, case)
    _expect_ids("sample_next", got, (logits.shape[0], 1), case, "One token id per row: shape (batch, 1).")
    ids = got[:, 0]
    expect(bool(((ids >= 0) & (ids < logits.shape[1])).all()),
           f"sample_next: got ids outside [0, {logits.shape[1]}) for {case}.")
    return ids


def _expect_frequencies(ids, probs, case, hint):
    """Empirical frequencies within 5 standard errors (+0.002) of the exact probabilities."""
    n = ids.numel()
    freq = torch.bincount(ids, minlength=probs.numel()).double() / n
    allowed = 5 * torch.sqrt(probs * (1 - probs) / n) + 2e-3
    if ((freq - probs).abs() > allowed).any():
        j = int(torch.argmax((freq - probs).abs() - allowed))
        raise CheckFailed(
            f"sample_next: token {j} was drawn with frequency {float(freq[j]):.4f} over {n} draws for {case}; "
            f"expected {float(probs[j]):.4f} ± {float(allowed[j]):.4f}. {hint}")


def _spaced_logits(seed, v, spread=4.0):
    """A shuffled ramp: neighbouring logits differ by spread / (v − 1), so top-k and argmax are unambiguous."""
    ramp = torch.linspace(-spread / 2, spread / 2, v, dtype=torch.float64)
    return ramp[torch.from_numpy(rng(seed).permutation(v))].float()


def _expect_sampling(row, temperature, top_k, seed, n, hint):
    """n draws from n copies of one row, against softmax(row / temperature)."""
    case = f"{n} rows of the same {row.numel()} logits, temperature={temperature:g}, top_k={top_k}"
    ids = _sample(row.repeat(n, 1), temperature, top_k, seed, case)
    _expect_frequencies(ids, torch.softmax(row.double() / temperature, -1), case, hint)


def test_sample_next_frequencies():
    """temperature 1, no top-k: draws follow softmax(logits); the generator decides them."""
    for seed, v in [(51, 6), (52, 12)]:
        _expect_sampling(randn(seed, (v,), dtype="float32"), 1.0, None, seed, 20000,
                         "Sample from softmax(logits) with torch.multinomial (not argmax).")
    logits = randn(53, (200, 10), dtype="float32")
    _generator_decides("sample_next", lambda seed, case: _sample(logits, 1.0, None, seed, case),
                       "logits of shape (200, 10)", "Draw with the generator passed in, not torch's global one.")


def test_sample_next_temperature():
    """temperature divides the logits: near 0 it is argmax, above 1 it flattens the distribution."""
    for seed, v in [(61, 8), (62, 30)]:
        row = _spaced_logits(seed, v, spread=1.5 * (v - 1))       # neighbours 1.5 apart: 30 T apart at T = 0.05
        for temperature in (0.01, 0.05):
            case = f"500 rows of {v} logits, temperature={temperature}, top_k=None"
            ids = _sample(row.repeat(500, 1), temperature, None, seed, case)
            expect(bool((ids == int(row.argmax())).all()),
                   f"sample_next: with {case} every draw should be the argmax {int(row.argmax())}; "
                   f"{int((ids != row.argmax()).sum())} of 500 were not. Divide the logits by the temperature.")
        for temperature in (0.5, 2.0):
            _expect_sampling(_spaced_logits(seed, v), temperature, None, seed, 20000,
                             "The probabilities are softmax(logits / temperature).")


def test_sample_next_top_k():
    """Only the k largest logits of each row can be drawn, in proportion to their softmax probabilities."""
    n = 20000
    for seed, v, k in [(71, 10, 3), (72, 20, 5), (73, 7, 1)]:
        rows = torch.stack([_spaced_logits(seed, v), _spaced_logits(seed + 50, v)])
        case = f"{n} rows alternating two sets of {v} logits, temperature=1, top_k={k}"
        ids = _sample(rows.repeat(n // 2, 1), 1.0, k, seed, case)     # two different rows: top-k is per row
        for r in range(2):
            allowed = torch.topk(rows[r], k).indices
            outside = ~torch.isin(ids[r::2], allowed)
            expect(not bool(outside.any()),
                   f"sample_next: {int(outside.sum())} draws fell outside the top {k} logits of their row for {case}. "
                   "A token outside its row's k largest logits must get probability exactly 0 (the cut is per row).")
            probs = torch.softmax(rows[r].double().masked_fill(~torch.isin(torch.arange(v), allowed), -np.inf), -1)
            _expect_frequencies(ids[r::2], probs, f"{case}, row {r}",
                                "Inside the top k, draw in proportion to softmax(logits / temperature).")
    _expect_sampling(_spaced_logits(74, 5), 1.0, 50, 74, n, "top_k larger than the vocabulary keeps all.")


# ----------------------------------------------------------------------------------------------------- top_p_probs
# top_p_probs returns a distribution, compared exactly (no sampling), in two cells so that each mistake costs one:
# which tokens survive (`_nucleus`, pinned to transformers' TopPLogitsWarper on these cases by
# tests/test_check_references.py: importing transformers here would cost more CPU than the learner's check), and the
# probabilities of those kept.
TOP_P_CASES = [(81, (6, 12), 0.9, torch.float32, 2.0), (82, (3, 4, 30), 0.5, torch.float32, 1.5),
               (83, (65,), 0.95, torch.float64, 2.0), (84, (8, 7), 0.3, torch.float64, 3.0),
               (85, (5, 9), 1.0, torch.float32, 2.0), (86, (4, 11), 1e-9, torch.float64, 2.0)]


def _nucleus(probs, p, rule="before"):
    """Reference and diagnoses, float64. rule: 'before' (the nucleus; ties with its last token kept), 'after' (stops
    before the token that crosses p), 'ascending' (sorted the wrong way)."""
    sorted_probs = torch.sort(probs, dim=-1, descending=rule != "ascending").values
    cum = sorted_probs.cumsum(-1)
    inside = (cum <= p) if rule == "after" else (cum - sorted_probs < p)
    threshold = sorted_probs.gather(-1, inside.sum(-1, keepdim=True).clamp(min=1) - 1)
    return probs <= threshold if rule == "ascending" else probs >= threshold


def _random_logits(seed, shape, scale, p, dtype):
    """Random logits whose nucleus is not decided by rounding: the mass before each token is at least 1e-4 from p."""
    for attempt in range(50):
        z = torch.from_numpy(rng(seed + 1000 * attempt).normal(size=shape) * scale)
        sorted_probs = torch.sort(torch.softmax(z, -1), -1, descending=True).values
        before = (sorted_probs.cumsum(-1) - sorted_probs)[..., 1:]     # the top token is always in
        if p == 1 or float((before - p).abs().min()) > 1e-4:
            return z.to(dtype)
    raise RuntimeError("no well-separated logits for this case")     # fixed seeds: never happens


def _top_p(logits, p, case):
    got = env().call("top_p_probs", logits, p, case=case, forbid=FORBID_TOP_P)
    expect_type("top_p_probs", got, "tensor", case)
    expect_shape("top_p_probs", got, tuple(logits.shape), case, hint="One probability per logit: the input's shape.")
    expect(bool(torch.isfinite(got.double()).all()),
           f"top_p_probs: got nan or inf for {case}. Keep at least the most likely token, so no row is all zeros.")
    return got


def _tied_rows(seed):
    """Probabilities with ties exactly at the nucleus' edge (and at the top), shuffled, as logits log(q) + c."""
    r = rng(seed)
    q = np.array([[0.4, 0.2, 0.2, 0.2, 0.0], [0.3, 0.3, 0.2, 0.1, 0.1], [0.4, 0.3, 0.15, 0.15, 0.0]]) + 1e-9
    return torch.tensor(np.array([np.log(row[r.permutation(5)]) + r.normal() for row in q]))  # (tiny tail: finite)


def test_top_p_probs():
    """Which tokens survive: the smallest set of most likely tokens with mass >= p, including the token that crosses
    p; p = 1 keeps all, a tiny p only the argmax; tokens tied with the nucleus' least likely token are kept."""
    for seed, shape, p, dtype, scale in TOP_P_CASES:
        logits = _random_logits(seed, shape, scale, p, dtype)
        case = f"{_name(dtype)} logits of shape {shape}, p={p:g}"
        _compare_nucleus(_top_p(logits, p, case), logits, _nucleus(torch.softmax(logits.double(), -1), p), p, case)
    for seed, p in [(87, 0.5), (88, 0.1), (89, 0.8)]:
        logits = _tied_rows(seed)
        case = f"logits of shape (3, 5) with equal probabilities at the edge of the nucleus, p={p:g}"
        _compare_nucleus(_top_p(logits, p, case), logits, _nucleus(torch.softmax(logits.double(), -1), p), p, case,
                         ties=True)


def _compare_nucleus(got, logits, want, p, case, ties=False):
    kept = got.double() > 0
    if torch.equal(kept, want):
        return
    probs = torch.softmax(logits.double(), -1)
    flat_got, flat_want = kept.reshape(-1, kept.shape[-1]), want.reshape(-1, want.shape[-1])
    row = int((flat_got != flat_want).any(-1).nonzero()[0])
    mass = float(probs.reshape(-1, probs.shape[-1])[row][flat_want[row]].sum())
    hint = "The nucleus is the most likely tokens, taken in order until their probabilities add up to p or more."
    if torch.equal(kept, _nucleus(probs, p, "after")):
        hint = ("You stop before the token that takes the sum past p; that token belongs to the nucleus (the kept "
                "mass must reach p).")
    elif torch.equal(kept, _nucleus(probs, p, "ascending")):
        hint = "You take the least likely tokens first: sort by probability in descending order."
    elif not bool(flat_got[row].any()):
        hint = "Keep at least the most likely token."
    elif ties:
        hint += " Tokens exactly as likely as the last one in the nucleus are kept too."
    raise CheckFailed(
        f"top_p_probs: for {case}, row {row} (flattened), expected {int(flat_want[row].sum())} tokens to survive "
        f"(their probabilities add up to {mass:.4f}), got {int(flat_got[row].sum())} with nonzero probability. {hint}")


def test_top_p_probs_renormalised():
    """Inside the nucleus the learner keeps, the probabilities are the softmax's, divided by the kept mass (rows sum
    to 1), zero outside, in the input's dtype (float32 and float64)."""
    for seed, shape, p, dtype in [(91, (5, 16), 0.9, torch.float32), (92, (2, 3, 20), 0.75, torch.float64),
                                  (93, (40,), 0.6, torch.float32), (94, (3, 9), 1.0, torch.float64)]:
        logits = torch.from_numpy(rng(seed).normal(size=shape) * 1.5).to(dtype)
        case = f"{_name(dtype)} logits of shape {shape}, p={p:g}"
        got = _top_p(logits, p, case)
        expect(got.dtype == dtype, f"top_p_probs: expected {_name(dtype)} probabilities for {case}; got "
                                   f"{_name(got.dtype)}. Keep the input's dtype.")
        kept = got.double() > 0
        expect(bool(kept.any(-1).all()), f"top_p_probs: a row has no token left for {case}. Keep at least the most "
                                         "likely token.")
        want = torch.softmax(logits.double(), -1) * kept
        sums = got.double().sum(-1)
        hint = "Inside the nucleus, the probabilities keep their ratios: softmax, zero the rest, divide by the kept mass."
        if float((sums - 1).abs().max()) > 1e-5:
            hint = (f"Rows must sum to 1; yours sum to as little as {float(sums.min()):.4f}. Divide by the kept mass "
                    "(renormalise).")
        tol = dict(atol=1e-6, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-10)
        expect_close("top_p_probs", got.double(), want / want.sum(-1, keepdim=True), case=case, what="probabilities",
                     hint=hint, **tol)
