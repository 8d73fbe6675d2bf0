"""Hidden-test checks for chapter 1, `01_rnn_limits` (an RNN in NumPy, and how far its memory reaches).

Every check builds fresh float64 inputs from fixed seeds and compares the learner's answer with an independent
reference computed here, in the grader: `torch.nn.RNNCell` / `torch.nn.RNN` for the recurrence, `torch.func.jacfwd`
(forward-mode automatic differentiation) for the Jacobians, `torch.matmul` for the pairwise scores.

The chapter is NumPy only: any call into torch (or JAX, autograd, scipy) from a learner's function earns nothing,
so `torch.nn.RNN`, `torch.rnn_tanh_cell` or `torch.autograd` cannot stand in for the learner's own code.
Where an exercise naturally calls an earlier one (`rnn_forward` calls `rnn_step`; `influence_curve` may call
`jacobian_first_to_last`), its checks substitute the NumPy references below for the earlier functions, so one
mistake costs one exercise. `jacobian_first_to_last` and `influence_curve` take the hidden states `H` (computed
here by `torch.nn.RNN`), so they never depend on the learner's forward pass.

Tolerances: values from a few dozen float64 operations agree to `atol 1e-10 + rtol 1e-8`; the influence curve is
compared relatively (`rtol 1e-6`, no absolute slack), because its values fall to 1e-40 and below and a plot on a
log scale needs every one of them.
"""
from __future__ import annotations

import numpy as np

from .sources import solution
from .references import torch as _torch
from . import env, expect, expect_cases, expect_close, expect_shape, expect_type, rng

FORBID = ["torch*", "functorch*", "jax*", "autograd*", "scipy*", "tensorflow*"]
ATOL, RTOL = 1e-10, 1e-8


# ---------------------------------------------------------------------------------------------------------------
# torch references (independent of the learner's code and of the notebook's)
# ---------------------------------------------------------------------------------------------------------------
def _params(seed, d_in, d_h, gain=1.0):
    g = rng(seed)
    W_xh = g.normal(size=(d_in, d_h)) / np.sqrt(d_in)
    W_hh = g.normal(size=(d_h, d_h)) * gain / np.sqrt(d_h)
    b_h = g.normal(size=(d_h,)) * 0.1
    return W_xh, W_hh, b_h


def _inputs(seed, lead, n, d_in, d_h, gain):
    """(X, h_init, W_xh, W_hh, b_h): one sequence (n, d_in), or a batch of them (`lead`), and weights of that gain."""
    W_xh, W_hh, b_h = _params(seed, d_in, d_h, gain)
    g = rng(seed + 100)
    return g.normal(size=(*lead, n, d_in)), g.uniform(-1, 1, size=(*lead, d_h)), W_xh, W_hh, b_h


def _torch_rnn(W_xh, W_hh, b_h, cell=False):
    torch = _torch()
    d_in, d_h = W_xh.shape
    module = (torch.nn.RNNCell if cell else torch.nn.RNN)(d_in, d_h, nonlinearity="tanh", dtype=torch.float64)
    suffix = "" if cell else "_l0"
    with torch.no_grad():
        # torch computes x W_ih^T + b_ih + h W_hh^T + b_hh: our row-vector weights are its transposes.
        getattr(module, "weight_ih" + suffix).copy_(torch.from_numpy(W_xh.T.copy()))
        getattr(module, "weight_hh" + suffix).copy_(torch.from_numpy(W_hh.T.copy()))
        getattr(module, "bias_ih" + suffix).copy_(torch.from_numpy(b_h))
        getattr(module, "bias_hh" + suffix).zero_()
    return module


def _torch_step(x_t, h_prev, W_xh, W_hh, b_h):
    torch = _torch()
    cell = _torch_rnn(W_xh, W_hh, b_h, cell=True)
    d_in, d_h = W_xh.shape
    x = torch.from_numpy(x_t.reshape(-1, d_in))
    h = torch.from_numpy(h_prev.reshape(-1, d_h))
    with torch.no_grad():
        out = cell(x, h)
    return out.numpy().reshape(x_t.shape[:-1] + (d_h,))


def _torch_forward(X, h_init, W_xh, W_hh, b_h):
    """nn.RNN on (n, d_in) (unbatched) or (batch, n, d_in) with batch_first."""
    torch = _torch()
    rnn = _torch_rnn(W_xh, W_hh, b_h)
    rnn.batch_first = X.ndim == 3
    with torch.no_grad():  # h0: (layers=1, d_h), or (1, batch, d_h) for a batch
        out, _ = rnn(torch.from_numpy(X), torch.from_numpy(h_init)[None])
    return out.numpy()


def _torch_states_of_x0(X, h_init, W_xh, W_hh, b_h):
    """A function x0 -> all hidden states (n, d_h) of one sequence, written with torch, for jacfwd."""
    torch = _torch()
    Wx, Wh, b = (torch.from_numpy(a) for a in (W_xh, W_hh, b_h))
    rest = torch.from_numpy(X[1:])
    h_start = torch.from_numpy(h_init)

    def states(x0):
        h = torch.tanh(x0 @ Wx + h_start @ Wh + b)
        out = [h]
        for x_t in rest:
            h = torch.tanh(x_t @ Wx + h @ Wh + b)
            out.append(h)
        return torch.stack(out)

    return states


def _torch_jacobians(X, h_init, W_xh, W_hh, b_h):
    """d h_t / d x_0 for every t of one sequence: (n, d_h, d_in), by forward-mode autodiff."""
    torch = _torch()
    f = _torch_states_of_x0(X, h_init, W_xh, W_hh, b_h)
    return torch.func.jacfwd(f)(torch.from_numpy(X[0])).numpy()


def _spectral_init(seed, d_in, d_h, rho):
    """W_hh = rho * (a random orthogonal matrix): every singular value is rho."""
    g = rng(seed)
    Q, R = np.linalg.qr(g.normal(size=(d_h, d_h)))
    Q = Q * np.sign(np.diag(R))
    W_xh = g.normal(size=(d_in, d_h)) / np.sqrt(d_in)
    return W_xh, rho * Q


# ---------------------------------------------------------------------------------------------------------------
# Exercise 1: rnn_step
# ---------------------------------------------------------------------------------------------------------------
def test_rnn_step():
    """A batch of row vectors (batch, d_in) against torch.nn.RNNCell."""
    for seed, batch, d_in, d_h, gain in [(11, 5, 3, 4, 1.0), (12, 1, 7, 6, 2.0), (13, 9, 2, 10, 0.5)]:
        W_xh, W_hh, b_h = _params(seed, d_in, d_h, gain)
        g = rng(seed + 100)
        x_t, h_prev = g.normal(size=(batch, d_in)) * 2, g.uniform(-1, 1, size=(batch, d_h))
        case = f"x_t of shape {x_t.shape}, h_prev of shape {h_prev.shape}, W_hh of shape {W_hh.shape}"
        got = env().call("rnn_step", x_t, h_prev, W_xh, W_hh, b_h, case=case, forbid=FORBID)
        want = _torch_step(x_t, h_prev, W_xh, W_hh, b_h)
        expect_close("rnn_step", got, want, atol=ATOL, rtol=RTOL, case=case,
                     hint="Check tanh(x_t W_xh + h_prev W_hh + b_h): row vectors multiply on the left, no transposes.")


def test_rnn_step_shapes():
    """A single vector (d_in,) and leading dimensions (2, 3, d_in): shapes, then values against torch (a shape alone
    earns nothing)."""
    W_xh, W_hh, b_h = _params(21, 4, 6)
    g = rng(22)
    for lead in [(), (2, 3), (4,)]:
        x_t, h_prev = g.normal(size=lead + (4,)), g.uniform(-1, 1, size=lead + (6,))
        case = f"x_t of shape {x_t.shape}, h_prev of shape {h_prev.shape}"
        got = env().call("rnn_step", x_t, h_prev, W_xh, W_hh, b_h, case=case, forbid=FORBID)
        expect_shape("rnn_step", got, lead + (6,), case=case,
                     hint="Write x_t @ W_xh so that any leading dimensions pass through.")
        expect_close("rnn_step", got, _torch_step(x_t, h_prev, W_xh, W_hh, b_h), atol=ATOL, rtol=RTOL, case=case,
                     hint="Each row must be tanh(x_t W_xh + h_prev W_hh + b_h), with or without leading dimensions.")


# ---------------------------------------------------------------------------------------------------------------
# Exercise 2: rnn_forward
# ---------------------------------------------------------------------------------------------------------------
# Earlier exercises are swapped for the notebook's own solutions, so that one mistake costs one exercise.
SUB_STEP = {"rnn_step": solution("01", "rnn_step")}


def _forward_cases(specs):
    inputs = [_inputs(seed, lead, n, d_in, d_h, 1.3) for seed, lead, n, d_in, d_h in specs]
    return [(f"X of shape {args[0].shape}, h_init of shape {args[1].shape}", args) for args in inputs]


def test_rnn_forward():
    """One sequence (n, d_in) against torch.nn.RNN (unbatched input)."""
    expect_cases("rnn_forward", _forward_cases([(31, (), 6, 3, 5), (32, (), 1, 4, 3), (33, (), 17, 2, 8)]),
                 _torch_forward, atol=ATOL, rtol=RTOL, forbid=FORBID, substitute=SUB_STEP,
                 hint="Row t is h_t, the state after reading x_t (h_init is not part of the output).")


def test_rnn_forward_batch():
    """A batch of sequences (batch, n, d_in) against torch.nn.RNN(batch_first=True)."""
    expect_cases("rnn_forward", _forward_cases([(41, (3,), 5, 4, 6), (42, (7,), 2, 3, 3), (43, (1,), 9, 2, 4)]),
                 _torch_forward, atol=ATOL, rtol=RTOL, forbid=FORBID, substitute=SUB_STEP,
                 hint="Time is axis -2: take X[..., t, :], and stack the states along axis -2.")


# ---------------------------------------------------------------------------------------------------------------
# Exercise 3: jacobian_first_to_last
# ---------------------------------------------------------------------------------------------------------------
def test_jacobian_first_to_last():
    """One sequence: H from torch.nn.RNN in, d h_{n-1} / d x_0 (d_h, d_in) out, against torch.func.jacfwd."""
    for seed, n, d_in, d_h, gain in [(51, 5, 3, 4, 1.0), (52, 1, 2, 5, 1.0), (53, 12, 4, 6, 2.0), (54, 2, 5, 3, 0.7)]:
        X, h_init, W_xh, W_hh, b_h = _inputs(seed, (), n, d_in, d_h, gain)
        H = _torch_forward(X, h_init, W_xh, W_hh, b_h)
        case = f"H of shape {H.shape}, W_xh of shape {W_xh.shape}"
        got = env().call("jacobian_first_to_last", H, W_xh, W_hh, case=case, forbid=FORBID)
        want = _torch_jacobians(X, h_init, W_xh, W_hh, b_h)[-1]
        expect_close("jacobian_first_to_last", got, want, atol=ATOL, rtol=RTOL, case=case,
                     hint="J = diag(1-h_{n-1}^2) W_hh^T ... diag(1-h_1^2) W_hh^T diag(1-h_0^2) W_xh^T; "
                          "entry [i, j] is d h_{n-1}[i] / d x_0[j].")


def test_jacobian_first_to_last_batch():
    """A batch of state sequences H (batch, n, d_h) -> (batch, d_h, d_in), one Jacobian per sequence."""
    for seed, batch, n, d_in, d_h in [(61, 3, 4, 2, 5), (62, 2, 7, 3, 3), (63, 4, 1, 4, 2)]:
        X, h_init, W_xh, W_hh, b_h = _inputs(seed, (batch,), n, d_in, d_h, 1.5)
        H = _torch_forward(X, h_init, W_xh, W_hh, b_h)
        case = f"H of shape {H.shape}, W_xh of shape {W_xh.shape}"
        got = env().call("jacobian_first_to_last", H, W_xh, W_hh, case=case, forbid=FORBID)
        want = np.stack([_torch_jacobians(X[b], h_init[b], W_xh, W_hh, b_h)[-1] for b in range(batch)])
        expect_close("jacobian_first_to_last", got, want, atol=ATOL, rtol=RTOL, case=case,
                     hint="Each sequence has its own diag(1 - h_t^2): scale rows with (1 - h**2)[..., :, None] "
                          "rather than np.diag, and multiply with @ so batch dimensions pass through.")


# ---------------------------------------------------------------------------------------------------------------
# Exercise 4: influence_curve
# ---------------------------------------------------------------------------------------------------------------
SUB_JACOBIAN = {"jacobian_first_to_last": solution("01", "jacobian_first_to_last")}


def test_influence_curve():
    """||d h_t / d x_0||_F for t = 0..n-1 against torch.func.jacfwd, for a few gains of W_hh."""
    for seed, n, d_in, d_h, gain in [(71, 8, 3, 5, 1.0), (72, 20, 2, 6, 0.6), (73, 15, 4, 4, 2.5), (74, 1, 3, 2, 1.0)]:
        X, h_init, W_xh, W_hh, b_h = _inputs(seed, (), n, d_in, d_h, gain)
        H = _torch_forward(X, h_init, W_xh, W_hh, b_h)
        case = f"H of shape {H.shape}, W_xh of shape {W_xh.shape} (gain {gain})"
        got = env().call("influence_curve", H, W_xh, W_hh, case=case, forbid=FORBID, substitute=SUB_JACOBIAN)
        J = _torch_jacobians(X, h_init, W_xh, W_hh, b_h)
        want = np.sqrt((J**2).sum(axis=(-2, -1)))
        expect_close("influence_curve", got, want, atol=1e-12, rtol=1e-8, case=case,
                     hint="Entry t is the Frobenius norm of d h_t / d x_0 (entry 0 is diag(1-h_0^2) W_xh^T).")


def test_influence_curve_tiny():
    """W_hh = 0.5 * orthogonal over 150 steps: the influence falls to about 1e-45, and every value must survive."""
    for seed, n, d_in, d_h, rho in [(81, 150, 3, 6, 0.5), (82, 120, 2, 4, 0.3)]:
        W_xh, W_hh = _spectral_init(seed, d_in, d_h, rho)
        b_h, h_init = np.zeros(d_h), np.zeros(d_h)
        X = rng(seed + 100).normal(size=(n, d_in)) * 1e-4
        H = _torch_forward(X, h_init, W_xh, W_hh, b_h)
        case = f"H of shape {H.shape}, W_hh = {rho} x orthogonal"
        got = env().call("influence_curve", H, W_xh, W_hh, case=case, forbid=FORBID, substitute=SUB_JACOBIAN)
        J = _torch_jacobians(X, h_init, W_xh, W_hh, b_h)
        want = np.sqrt((J**2).sum(axis=(-2, -1)))
        expect(float(want[-1]) < 1e-30, "influence_curve: internal check failed (the reference did not decay).")
        expect_type("influence_curve", got, "ndarray", case=case)
        expect_shape("influence_curve", got, want.shape, case=case, hint="One norm per token: shape (n,).")
        large = want > 1e-12
        expect_close("influence_curve", np.asarray(got)[large], want[large], atol=0.0, rtol=1e-4, case=case,
                     what="influence norms above 1e-12",
                     hint="Entry t is the Frobenius norm of d h_t / d x_0 (entry 0 is diag(1-h_0^2) W_xh^T).")
        expect_close("influence_curve", got, want, atol=0.0, rtol=1e-4, case=case, what="influence norms",
                     hint="Keep every value in float64, however small: do not stop early, round or clip to 0; "
                          "the log-scale plot needs them all.")


# ---------------------------------------------------------------------------------------------------------------
# Exercise 5: pairwise_scores
# ---------------------------------------------------------------------------------------------------------------
def _torch_scores(X):
    torch = _torch()
    x = torch.from_numpy(X)
    return (torch.matmul(x, x.transpose(-2, -1)) / np.sqrt(X.shape[-1])).numpy()


def _score_cases(shapes, seeds):
    return [(f"X of shape {shape}", (rng(seed).normal(size=shape),)) for seed, shape in zip(seeds, shapes)]


def test_pairwise_scores():
    """One sequence (n, d): the (n, n) matrix X X^T / sqrt(d)."""
    expect_cases("pairwise_scores", _score_cases([(5, 4), (1, 3), (12, 7)], (91, 92, 93)), _torch_scores,
                 atol=ATOL, rtol=RTOL, forbid=FORBID, hint="Entry [i, j] is x_i . x_j / sqrt(d), with d = X.shape[-1].")


def test_pairwise_scores_batch():
    """Leading dimensions (batch, n, d) and (2, 3, n, d): one product per sequence, no mixing across the batch."""
    expect_cases("pairwise_scores", _score_cases([(3, 5, 4), (2, 3, 4, 6), (1, 7, 2)], (101, 102, 103)),
                 _torch_scores, atol=ATOL, rtol=RTOL, forbid=FORBID,
                 hint="Entry [..., i, j] is x_i . x_j / sqrt(d). Note that X.T reverses every axis; "
                      "np.swapaxes(X, -1, -2) keeps batch dimensions in front.")
