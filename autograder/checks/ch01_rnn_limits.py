"""Hidden-test checks for chapter 1, `01_rnn_limits` (an RNN in NumPy, and how far its memory reaches).

Fresh float64 inputs from fixed seeds, compared with independent references computed here: `torch.nn.RNN` for the
recurrence, `torch.func.jacfwd` (forward-mode autodiff) for the Jacobians, `torch.matmul` for the pairwise scores.
The chapter is NumPy only: a learner's function that calls torch (JAX, autograd, scipy) earns nothing. Earlier
exercises are swapped for the notebook's solutions where a later one calls them (one mistake costs one exercise);
the Jacobian exercises take H computed here, never the learner's forward pass.

Tolerances: `atol 1e-10 + rtol 1e-8`; the influence curve relatively only, since its values fall to 1e-40 and below
and a log-scale plot needs every one of them.
"""
from __future__ import annotations

import numpy as np

from .sources import solution
from .references import torch as _torch
from . import env, expect, expect_cases, expect_close, expect_shape, expect_type, rng

FORBID = ["torch*", "functorch*", "jax*", "autograd*", "scipy*", "tensorflow*"]
ATOL, RTOL = 1e-10, 1e-8


# ---- torch references (independent of the learner's code and of the notebook's)
def _inputs(seed, lead, n, d_in, d_h, gain):
    """(X, h_init, W_xh, W_hh, b_h): one sequence (n, d_in), or a batch of them (`lead`), and weights of that gain."""
    g = rng(seed)
    W_xh = g.normal(size=(d_in, d_h)) / np.sqrt(d_in)
    W_hh = g.normal(size=(d_h, d_h)) * gain / np.sqrt(d_h)
    b_h = g.normal(size=(d_h,)) * 0.1
    g = rng(seed + 100)
    return g.normal(size=(*lead, n, d_in)), g.uniform(-1, 1, size=(*lead, d_h)), W_xh, W_hh, b_h


def _torch_forward(X, h_init, W_xh, W_hh, b_h):
    """nn.RNN on (n, d_in) (unbatched) or (batch, n, d_in) with batch_first."""
    torch = _torch()
    rnn = torch.nn.RNN(*W_xh.shape, nonlinearity="tanh", batch_first=X.ndim == 3, dtype=torch.float64)
    with torch.no_grad():
        # torch computes x W_ih^T + b_ih + h W_hh^T + b_hh: our row-vector weights are its transposes.
        for name, value in [("weight_ih_l0", W_xh.T), ("weight_hh_l0", W_hh.T), ("bias_ih_l0", b_h)]:
            getattr(rnn, name).copy_(torch.from_numpy(value.copy()))
        rnn.bias_hh_l0.zero_()
        out, _ = rnn(torch.from_numpy(X), torch.from_numpy(h_init)[None])  # h0: (1, d_h) or (1, batch, d_h)
    return out.numpy()


def _torch_jacobians(X, h_init, W_xh, W_hh, b_h):
    """d h_t / d x_0 for every t: (..., n, d_h, d_in), by forward-mode autodiff through the recurrence in torch."""
    if X.ndim == 3:
        return np.stack([_torch_jacobians(X[b], h_init[b], W_xh, W_hh, b_h) for b in range(len(X))])
    torch = _torch()
    Wx, Wh, b, rest, h_start = (torch.from_numpy(a) for a in (W_xh, W_hh, b_h, X[1:], h_init))

    def states(x0):
        out = [torch.tanh(x0 @ Wx + h_start @ Wh + b)]
        for x_t in rest:
            out.append(torch.tanh(x_t @ Wx + out[-1] @ Wh + b))
        return torch.stack(out)

    return torch.func.jacfwd(states)(torch.from_numpy(X[0])).numpy()


def _expect_from_states(exercise, specs, want_of, tol, hint, substitute=None):
    """For each (seed, lead, n, d_in, d_h, gain): the learner's answer on (H, W_xh, W_hh), H from torch, against
    want_of(every Jacobian d h_t / d x_0)."""
    for spec in specs:
        X, h_init, W_xh, W_hh, b_h = _inputs(*spec)
        H = _torch_forward(X, h_init, W_xh, W_hh, b_h)
        case = f"H of shape {H.shape}, W_xh of shape {W_xh.shape} (gain {spec[-1]})"
        got = env().call(exercise, H, W_xh, W_hh, case=case, forbid=FORBID, substitute=substitute)
        want = want_of(_torch_jacobians(X, h_init, W_xh, W_hh, b_h))
        expect_close(exercise, got, want, case=case, hint=hint, **tol)


# ---- Exercise 2: rnn_forward (exercise 1, rnn_step, is an ungraded warm-up: the notebook's own step stands in)
SUB_STEP = {"rnn_step": solution("01", "rnn_step")}


def _forward_cases(specs):
    for seed, lead, n, d_in, d_h in specs:
        args = _inputs(seed, lead, n, d_in, d_h, 1.3)
        yield f"X of shape {args[0].shape}, h_init of shape {args[1].shape}", args


def test_rnn_forward():
    """One sequence (n, d_in) against torch.nn.RNN (unbatched input)."""
    expect_cases("rnn_forward", _forward_cases([(31, (), 6, 3, 5), (32, (), 1, 4, 3), (33, (), 17, 2, 8)]),
                 _torch_forward, atol=ATOL, rtol=RTOL, forbid=FORBID, substitute=SUB_STEP,
                 hint="Row t is h_t, the state after reading x_t (h_init is not part of the output).")


def test_rnn_forward_batch():
    """A batch of sequences (batch, n, d_in) against torch.nn.RNN(batch_first=True)."""
    expect_cases("rnn_forward", _forward_cases([(41, (3,), 5, 4, 6), (42, (7,), 2, 3, 3), (43, (1,), 9, 2, 4)]),
                 _torch_forward, atol=ATOL, rtol=RTOL, forbid=FORBID, substitute=SUB_STEP,
                 hint="In a batch, time is axis -2, not the first axis: step through the tokens of every sequence at "
                      "once, and stack the states back along the time axis.")


# ---- Exercises 3 and 4: jacobian_first_to_last, influence_curve (H from torch.nn.RNN, truth from jacfwd)
TIGHT = {"atol": ATOL, "rtol": RTOL}
CHAIN = "J = diag(1-h_{n-1}^2) W_hh^T ... diag(1-h_1^2) W_hh^T diag(1-h_0^2) W_xh^T"


def _frobenius(J):
    return np.sqrt((J**2).sum(axis=(-2, -1)))


def test_jacobian_first_to_last():
    """One sequence: d h_{n-1} / d x_0, shape (d_h, d_in)."""
    _expect_from_states("jacobian_first_to_last",
                        [(51, (), 5, 3, 4, 1.0), (52, (), 1, 2, 5, 1.0), (53, (), 12, 4, 6, 2.0),
                         (54, (), 2, 5, 3, 0.7)],
                        lambda J: J[..., -1, :, :], TIGHT, f"{CHAIN}; entry [i, j] is d h_{{n-1}}[i] / d x_0[j].")


def test_jacobian_first_to_last_batch():
    """A batch of state sequences H (batch, n, d_h) -> (batch, d_h, d_in), one Jacobian per sequence."""
    _expect_from_states("jacobian_first_to_last",
                        [(61, (3,), 4, 2, 5, 1.5), (62, (2,), 7, 3, 3, 1.5), (63, (4,), 1, 4, 2, 1.5)],
                        lambda J: J[..., -1, :, :], TIGHT,
                        "Each sequence has its own diag(1 - h_t^2): scale row i of each sequence's matrix by that "
                        "sequence's own (1 - h_t^2)[i], and use products that keep the batch dimensions in front.")


SUB_JACOBIAN = {"jacobian_first_to_last": solution("01", "jacobian_first_to_last")}
CURVE = "Entry t is the Frobenius norm of d h_t / d x_0 (entry 0 is diag(1-h_0^2) W_xh^T)."


def test_influence_curve():
    """||d h_t / d x_0||_F for t = 0..n-1, for a few gains of W_hh."""
    _expect_from_states("influence_curve",
                        [(71, (), 8, 3, 5, 1.0), (72, (), 20, 2, 6, 0.6), (73, (), 15, 4, 4, 2.5),
                         (74, (), 1, 3, 2, 1.0)],
                        _frobenius, {"atol": 1e-12, "rtol": 1e-8}, CURVE, substitute=SUB_JACOBIAN)


def _tiny_case(seed, n, d_in, d_h, rho):
    """W_hh = rho * (a random orthogonal matrix), zero bias and start, small inputs: the influence decays as rho^t."""
    g = rng(seed)
    Q, R = np.linalg.qr(g.normal(size=(d_h, d_h)))
    W_xh, W_hh = g.normal(size=(d_in, d_h)) / np.sqrt(d_in), rho * Q * np.sign(np.diag(R))
    X, zeros = rng(seed + 100).normal(size=(n, d_in)) * 1e-4, np.zeros(d_h)
    H = _torch_forward(X, zeros, W_xh, W_hh, zeros)
    return f"H of shape {H.shape}, W_hh = {rho} x orthogonal", (H, W_xh, W_hh), \
        _frobenius(_torch_jacobians(X, zeros, W_xh, W_hh, zeros))


def test_influence_curve_tiny():
    """150 steps of W_hh = 0.5 * orthogonal: the influence falls to about 1e-45, and every value must survive."""
    for case, args, want in (_tiny_case(81, 150, 3, 6, 0.5), _tiny_case(82, 120, 2, 4, 0.3)):
        expect(float(want[-1]) < 1e-30, "influence_curve: internal check failed (the reference did not decay).")
        got = env().call("influence_curve", *args, case=case, forbid=FORBID, substitute=SUB_JACOBIAN)
        expect_type("influence_curve", got, "ndarray", case=case)
        expect_shape("influence_curve", got, want.shape, case=case, hint="One norm per token: shape (n,).")
        large = want > 1e-12
        expect_close("influence_curve", got[large], want[large], atol=0.0, rtol=1e-4, case=case,
                     what="influence norms above 1e-12", hint=CURVE)
        expect_close("influence_curve", got, want, atol=0.0, rtol=1e-4, case=case, what="influence norms",
                     hint="Keep every value in float64, however small: do not stop early, round or clip to 0; "
                          "the log-scale plot needs them all.")


# ---- Exercise 5: pairwise_scores
def _torch_scores(X):
    x = _torch().from_numpy(X)
    return (x @ x.transpose(-2, -1) / np.sqrt(X.shape[-1])).numpy()


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
                 hint="Entry [..., i, j] is x_i . x_j / sqrt(d) within one sequence: sequences are never mixed, and "
                      "the batch dimensions stay in front.")
