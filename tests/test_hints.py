"""The hint rules (autograder/hints.py) on the exceptions NumPy and torch really raise for the common bugs: each bug
gets its hint, and an error whose cause can't be told gets none (the line then states what failed, plainly)."""
from __future__ import annotations

import inspect
import linecache
import warnings

import numpy as np
import pytest
import torch

from autograder import hints
from autograder.hints import Frame

pytestmark = pytest.mark.unit


def frames_of(call, exercises: dict[str, str]) -> tuple[str, str, list[Frame]]:
    """Run a buggy call; return (ename, evalue, frames) as the grader builds them: this file's frames, outermost
    first, with the failing line and the shapes of their locals (what the kernel probe reports)."""
    try:
        call()
    except Exception as error:
        frames, tb = [], error.__traceback__.tb_next  # not the frame of this helper
        while tb is not None:
            code = tb.tb_frame.f_code
            if code.co_filename == __file__:
                shapes = {k: tuple(v.shape) for k, v in tb.tb_frame.f_locals.items() if hasattr(v, "shape")}
                frames.append(Frame(None, code.co_name, tb.tb_lineno,
                                    linecache.getline(code.co_filename, tb.tb_lineno).strip(), shapes,
                                    exercises.get(code.co_name)))
            tb = tb.tb_next
        return type(error).__name__, str(error), frames
    raise AssertionError("the buggy code did not raise")


# --- the bugs, as a learner writes them ---------------------------------------------------------------------------
def attention_scores_K_T(Q, K):
    return Q @ K.T / np.sqrt(Q.shape[-1])


def attention_scores_K_T_torch(Q, K):
    return Q @ K.T / Q.shape[-1] ** 0.5


def softmax_no_keepdims(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis)


def softmax_no_keepdim_torch(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim)


def sdpa_bool_index(Q, K, V, mask=None):
    scores = Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])
    scores[~mask] = -np.inf
    return scores


def sdpa_bool_index_torch(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1)
    scores[~mask] = float("-inf")
    return scores


def rnn_step(x_t, h_prev, W_xh, W_hh, b_h):
    return np.tanh(x_t @ W_xh + h_prev @ W_hh + b_h)


def rnn_forward_loop(X, h_init, W_xh, W_hh, b_h):
    h, states = h_init, []
    for x_t in X:
        h = rnn_step(x_t, h, W_xh, W_hh, b_h)
        states.append(h)
    return np.stack(states, axis=-2)


def influence_curve(H, W_xh, W_hh):
    """How strongly the first token still moves each hidden state.

    H: (n, d_h) hidden states h_0 .. h_{n-1} of one sequence; W_xh: (d_in, d_h), W_hh: (d_h, d_h)
    returns (n,): entry t is the Frobenius norm of d h_t / d x_0
    """
    J = (1.0 - H[0] ** 2)[:, None] * W_xh.T
    return np.linalg.norm(J)


rng = np.random.default_rng(0)


def test_K_T_on_a_batch_numpy():
    ename, evalue, frames = frames_of(lambda: attention_scores_K_T(rng.normal(size=(2, 3, 4, 8)),
                                                                   rng.normal(size=(2, 3, 5, 8))), {})
    assert "core dimension" in evalue
    line = hints.describe("attention_scores", ename, evalue, frames)
    assert line.startswith("attention_scores: the visible test raised ValueError in attention_scores_K_T, at "
                           "`return Q @ K.T / np.sqrt(Q.shape[-1])` with Q (2, 3, 4, 8), K (2, 3, 5, 8): matmul")
    assert line.endswith("K.T reverses every axis of K (2, 3, 5, 8), batch axes too; only the last two should "
                         "trade places (NumPy and torch each have a function that swaps two chosen axes).")


def test_K_T_on_a_batch_torch():
    with pytest.warns(UserWarning):  # torch still allows .T on 3-d tensors, with a warning, and then fails to multiply
        ename, evalue, frames = frames_of(lambda: attention_scores_K_T_torch(torch.ones(2, 5, 4), torch.ones(2, 3, 4)),
                                          {})
    assert ename == "RuntimeError"
    assert "K.T reverses every axis of K (2, 3, 4)" in hints.describe("sdpa_torch", ename, evalue, frames)


def test_K_T_on_a_single_matrix_is_not_blamed():
    ename, evalue, frames = frames_of(lambda: attention_scores_K_T(np.ones((4, 8)), np.ones((5, 7))), {})
    assert hints.hint_for(ename, evalue, frames) is None


@pytest.mark.parametrize("softmax, x", [(softmax_no_keepdims, np.ones((3, 7))),
                                        (softmax_no_keepdim_torch, torch.ones(3, 7))])
def test_missing_keepdims(softmax, x):
    ename, evalue, frames = frames_of(lambda: softmax(x), {})
    hint = hints.hint_for(ename, evalue, frames)
    assert hint and hint.startswith("a reduction along an axis drops that axis") and "keepdims=True" in hint
    if isinstance(x, np.ndarray):
        assert "(3, 7) and (3,) don't line up" in hint


def test_a_broadcast_error_without_a_reduction_gets_no_keepdims_hint():
    ename, evalue, frames = frames_of(lambda: rnn_step(np.ones((5, 4)), np.ones((2, 3)), np.ones((4, 3)),
                                                       np.ones((3, 3)), np.ones(3)), {})
    assert "could not be broadcast" in evalue
    assert hints.hint_for(ename, evalue, frames) is None
    line = hints.describe("rnn_step", ename, evalue, frames)
    assert line == ("rnn_step: the visible test raised ValueError in rnn_step, at "
                    "`return np.tanh(x_t @ W_xh + h_prev @ W_hh + b_h)` with x_t (5, 4), W_xh (4, 3), h_prev (2, 3), "
                    "W_hh (3, 3): operands could not be broadcast together with shapes (5,3) (2,3)")


@pytest.mark.parametrize("sdpa, array, mask", [
    (sdpa_bool_index, lambda *shape: np.ones(shape), np.tril(np.ones((5, 5), dtype=bool))),
    (sdpa_bool_index_torch, torch.ones, torch.tril(torch.ones(5, 5, dtype=torch.bool))),
])
def test_boolean_index_with_a_mask(sdpa, array, mask):
    ename, evalue, frames = frames_of(lambda: sdpa(array(2, 4, 5, 3), array(2, 4, 5, 3), array(2, 4, 5, 3), mask), {})
    assert ename == "IndexError"
    hint = hints.hint_for(ename, evalue, frames)
    assert hint and "flattened to 1-D" in hint and "with -inf where the mask is False" in hint


def mha_mask_without_heads_axis(scores, mask):
    return scores.masked_fill(~mask, float("-inf"))


def test_a_batch_mask_without_a_heads_axis():
    pad = torch.ones(2, 1, 5, dtype=torch.bool)
    ename, evalue, frames = frames_of(lambda: mha_mask_without_heads_axis(torch.zeros(2, 4, 5, 5), pad), {})
    assert "must match the size of tensor" in evalue
    assert hints.hint_for(ename, evalue, frames) == (
        "mask (2, 1, 5) lines up with the last axes of scores (2, 4, 5, 5), so its batch axis meets the heads axis: "
        "add a heads axis (mask.unsqueeze(-3), or mask[..., None, :, :] in NumPy).")
    # a mask whose batch size is wrong is not blamed on a missing heads axis
    ename, evalue, frames = frames_of(lambda: mha_mask_without_heads_axis(torch.zeros(2, 4, 5, 5),
                                                                          torch.ones(3, 5, 5, dtype=torch.bool)), {})
    assert hints.hint_for(ename, evalue, frames) is None


def jacobian_np_diag(H, W_xh):
    J = np.diag(1.0 - H[..., 0, :] ** 2) @ W_xh.T
    return J


def test_np_diag_on_a_batch():
    ename, evalue, frames = frames_of(lambda: jacobian_np_diag(np.ones((2, 5, 4)), np.ones((3, 4))), {})
    hint = hints.hint_for(ename, evalue, frames)
    assert hint and hint.startswith("np.diag makes a diagonal matrix only from a 1-D vector; with H (2, 5, 4)")
    # one sequence works, and a shape error elsewhere with one sequence is not blamed on np.diag
    assert jacobian_np_diag(np.ones((5, 4)), np.ones((3, 4))).shape == (4, 3)
    ename, evalue, frames = frames_of(lambda: jacobian_np_diag(np.ones((5, 4)), np.ones((3, 5))), {})
    assert hints.hint_for(ename, evalue, frames) is None


def test_for_loop_over_a_batch():
    exercises = {"rnn_forward_loop": "rnn_forward", "rnn_step": "rnn_step"}
    ename, evalue, frames = frames_of(lambda: rnn_forward_loop(np.ones((2, 5, 4)), np.zeros((2, 3)), np.ones((4, 3)),
                                                               np.ones((3, 3)), np.zeros(3)), exercises)
    sources = {"rnn_forward": inspect.getsource(rnn_forward_loop)}
    line = hints.describe("rnn_forward", ename, evalue, frames, sources=sources)
    assert "raised ValueError in rnn_step" in line  # where it broke...
    assert line.endswith("`for x_t in X` walks the first axis of X (2, 5, 4), which for a batch is the batch, not "
                         "the positions: loop over t and take X[..., t, :].")  # ...and why
    assert hints.hint_for(ename, evalue, frames, exercise="rnn_forward") is None  # without the source: not told


def test_a_batch_where_one_sequence_was_expected():
    ename, evalue, frames = frames_of(lambda: influence_curve(np.ones((2, 5, 3)), np.ones((4, 3)), np.ones((3, 3))),
                                      {"influence_curve": "influence_curve"})
    hint = hints.hint_for(ename, evalue, frames, exercise="influence_curve",
                          sources={"influence_curve": inspect.getsource(influence_curve)})
    assert hint == ("influence_curve takes H of shape (n, d_h), one sequence, but got (2, 5, 3): a batch. Call it "
                    "once per sequence, or pass it one.")
    # the right input raises nothing to explain; a documented batch shape is not blamed
    assert hints.documented_shapes(inspect.getsource(rnn_step), "rnn_step") == {}


def unembed_untransposed(h, W_U):
    return np.asarray(h) @ np.asarray(W_U)


def test_a_weight_used_untransposed():
    ename, evalue, frames = frames_of(lambda: unembed_untransposed(np.ones(2), np.ones((3, 2))), {})
    hint = hints.hint_for(ename, evalue, frames)
    assert hint and hint.startswith("h (2,) has its last axis of size 2 where W_U (3, 2) has it last, not first")
    assert hint.endswith("the product with W_U needs its transpose.")
    # a shape error that a transpose would not fix is not blamed on one
    ename, evalue, frames = frames_of(lambda: unembed_untransposed(np.ones(4), np.ones((3, 2))), {})
    assert hints.hint_for(ename, evalue, frames) is None


def loss_detached(logits):
    return logits.detach().logsumexp(-1).mean()


def test_a_result_cut_off_from_autograd():
    ename, evalue, frames = frames_of(lambda: loss_detached(torch.zeros(2, 3, requires_grad=True)).backward(), {})
    assert hints.hint_for(ename, evalue, frames).startswith("the result is not connected to its inputs in autograd")


def scores_of_a_block(q, k, start):
    return q @ k[..., start:start + 2, :].T


def rope_float32_table(x):
    R = torch.eye(x.shape[-1], dtype=torch.float32)
    return torch.einsum("...d,de->...e", x, R)


def test_a_slice_transposed_with_T_and_a_dtype_mismatch():
    with warnings.catch_warnings():  # torch warns about .T on 3-d tensors (once per process)
        warnings.simplefilter("ignore")
        ename, evalue, frames = frames_of(lambda: scores_of_a_block(torch.ones(2, 3, 6, 4), torch.ones(2, 3, 8, 4), 0),
                                          {})
    assert hints.hint_for(ename, evalue, frames).startswith("k.T reverses every axis of k (2, 3, 8, 4)")
    ename, evalue, frames = frames_of(lambda: rope_float32_table(torch.ones(2, 4, dtype=torch.float64)), {})
    assert hints.hint_for(ename, evalue, frames).startswith("two operands have different dtypes")


def test_other_errors_get_no_hint_and_keep_their_text():
    ename, evalue, frames = frames_of(lambda: {}["missing"], {})
    assert hints.hint_for(ename, evalue, frames) is None
    assert hints.describe("build_vocab", ename, evalue, frames).startswith(
        "build_vocab: the visible test raised KeyError in <lambda>")


# A traceback exactly as IPython 9 sends it in a notebook's error output (colours and all).
IPYTHON_TRACEBACK = [
    "\u001b[31m---------------------------------------------------------------------------\u001b[39m",
    "\u001b[31mValueError\u001b[39m                                Traceback (most recent call last)",
    "\u001b[36mCell\u001b[39m\u001b[36m \u001b[39m\u001b[32mIn[3]\u001b[39m\u001b[32m, line 2\u001b[39m\n"
    "\u001b[32m      1\u001b[39m _Q = np.ones((\u001b[32m2\u001b[39m,\u001b[32m3\u001b[39m,\u001b[32m4\u001b[39m))\n"
    "\u001b[32m----> \u001b[39m\u001b[32m2\u001b[39m g(_Q)\n",
    "\u001b[36mCell\u001b[39m\u001b[36m \u001b[39m\u001b[32mIn[2]\u001b[39m\u001b[32m, line 2\u001b[39m, in "
    "\u001b[36mg\u001b[39m\u001b[34m(X)\u001b[39m\n\u001b[32m      1\u001b[39m "
    "\u001b[38;5;28;01mdef\u001b[39;00m g(X):\n\u001b[32m----> \u001b[39m\u001b[32m2\u001b[39m     "
    "\u001b[38;5;28;01mreturn\u001b[39;00m f(X, X)\n",
    "\u001b[36mCell\u001b[39m\u001b[36m \u001b[39m\u001b[32mIn[1]\u001b[39m\u001b[32m, line 3\u001b[39m, in "
    "\u001b[36mf\u001b[39m\u001b[34m(Q, K)\u001b[39m\n\u001b[32m      2\u001b[39m "
    "\u001b[38;5;28;01mdef\u001b[39;00m f(Q, K):\n\u001b[32m----> \u001b[39m\u001b[32m3\u001b[39m     s = Q @ K.T\n"
    "\u001b[32m      4\u001b[39m     \u001b[38;5;28;01mreturn\u001b[39;00m s\n",
    "\u001b[31mValueError\u001b[39m: matmul: Input operand 1 has a mismatch in its core dimension 0, with gufunc "
    "signature (n?,k),(k,m?)->(n?,m?) (size 3 is different from 4)",
]


def test_frames_from_an_ipython_traceback():
    frames = hints.frames_from_traceback(IPYTHON_TRACEBACK)
    assert [(f.cell, f.function, f.line, f.code) for f in frames] == [
        (3, None, 2, "g(_Q)"), (2, "g", 2, "return f(X, X)"), (1, "f", 3, "s = Q @ K.T")]
    frames[-1].shapes = {"Q": (2, 3, 4), "K": (2, 3, 4)}
    assert "K.T reverses every axis of K (2, 3, 4)" in hints.describe(
        "f", "ValueError", IPYTHON_TRACEBACK[-1].split(": ", 1)[1], frames)


# --- a hidden check's call that raises gets the same hints -------------------------------------------------------
def _learner_namespace(source: str, filename: str = "<cell-7>") -> dict:
    """Learner code as a notebook cell holds it: compiled under a cell's file name, its lines known to linecache."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"np": np}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def test_a_hidden_call_that_raises_gets_the_hint():
    from autograder.env import LocalEnv
    from autograder.messages import CheckFailed

    namespace = _learner_namespace("def attention_scores(Q, K):\n    return Q @ K.T / np.sqrt(Q.shape[-1])\n")
    with pytest.raises(CheckFailed) as raised:
        LocalEnv(namespace).call("attention_scores", np.ones((2, 4, 8)), np.ones((2, 5, 8)), case="Q (2, 4, 8)")
    message = str(raised.value)
    assert message.startswith("attention_scores: raised ValueError: matmul")
    assert "(line 2 of your cell) for Q (2, 4, 8)." in message
    assert message.endswith("K.T reverses every axis of K (2, 5, 8), batch axes too; only the last two should "
                            "trade places (NumPy and torch each have a function that swaps two chosen axes).")
    # an error no rule recognises keeps its plain line
    namespace = _learner_namespace("def attention_scores(Q, K):\n    return {}['x']\n", "<cell-8>")
    with pytest.raises(CheckFailed) as raised:
        LocalEnv(namespace).call("attention_scores", np.ones((2, 4, 8)), np.ones((2, 5, 8)))
    assert str(raised.value) == "attention_scores: raised KeyError: 'x' (line 2 of your cell)."


def test_a_malformed_frame_report_gives_no_hint():
    from autograder.env import Env

    answer = {"ename": "ValueError", "evalue": "operands could not be broadcast", "frames": [{"shapes": {"K": 5}}]}
    assert Env()._hint("f", answer) is None
