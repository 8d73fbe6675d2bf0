"""Plausible wrong answers for chapter 1 (`01_rnn_limits`), each with exactly the test cells it must lose."""

STEP_NO_TANH = '''def rnn_step(x_t, h_prev, W_xh, W_hh, b_h):
    return x_t @ W_xh + h_prev @ W_hh + b_h
'''

STEP_TRANSPOSED_W_HH = '''def rnn_step(x_t, h_prev, W_xh, W_hh, b_h):
    return np.tanh(x_t @ W_xh + h_prev @ W_hh.T + b_h)
'''

STEP_UNWRITTEN = '''def rnn_step(x_t, h_prev, W_xh, W_hh, b_h):
    raise NotImplementedError()
'''

FORWARD_STACK_AXIS_1 = '''def rnn_forward(X, h_init, W_xh, W_hh, b_h):
    h, states = h_init, []
    for t in range(X.shape[-2]):
        h = rnn_step(X[..., t, :], h, W_xh, W_hh, b_h)
        states.append(h)
    return np.stack(states, axis=1)
'''

FORWARD_ITERATES_AXIS_0 = '''def rnn_forward(X, h_init, W_xh, W_hh, b_h):
    h, states = h_init, []
    for x_t in X:
        h = rnn_step(x_t, h, W_xh, W_hh, b_h)
        states.append(h)
    return np.stack(states, axis=-2)
'''

FORWARD_INCLUDES_H_INIT = '''def rnn_forward(X, h_init, W_xh, W_hh, b_h):
    h, states = h_init, []
    for t in range(X.shape[-2]):
        states.append(h)
        h = rnn_step(X[..., t, :], h, W_xh, W_hh, b_h)
    return np.stack(states, axis=-2)
'''

FORWARD_IGNORES_H_INIT = '''def rnn_forward(X, h_init, W_xh, W_hh, b_h):
    h, states = np.zeros_like(h_init), []
    for t in range(X.shape[-2]):
        h = rnn_step(X[..., t, :], h, W_xh, W_hh, b_h)
        states.append(h)
    return np.stack(states, axis=-2)
'''

FORWARD_TORCH = '''def rnn_forward(X, h_init, W_xh, W_hh, b_h):
    import torch
    rnn = torch.nn.RNN(W_xh.shape[0], W_xh.shape[1], batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(W_xh.T.copy()))
        rnn.weight_hh_l0.copy_(torch.from_numpy(W_hh.T.copy()))
        rnn.bias_ih_l0.copy_(torch.from_numpy(b_h))
        rnn.bias_hh_l0.zero_()
        out, _ = rnn(torch.from_numpy(X), torch.from_numpy(h_init)[None])
    return out.numpy()
'''

JAC_W_HH_NOT_TRANSPOSED = '''def jacobian_first_to_last(H, W_xh, W_hh):
    J = (1.0 - H[..., 0, :] ** 2)[..., :, None] * W_xh.T
    for t in range(1, H.shape[-2]):
        J = (1.0 - H[..., t, :] ** 2)[..., :, None] * (W_hh @ J)
    return J
'''

JAC_WRONG_ORDER = '''def jacobian_first_to_last(H, W_xh, W_hh):
    J = (1.0 - H[..., 0, :] ** 2)[..., :, None] * W_xh.T
    for t in range(1, H.shape[-2]):
        J = W_hh.T @ ((1.0 - H[..., t - 1, :] ** 2)[..., :, None] * J)
    return J
'''

JAC_NP_DIAG = '''def jacobian_first_to_last(H, W_xh, W_hh):
    J = np.diag(1.0 - H[..., 0, :] ** 2) @ W_xh.T
    for t in range(1, H.shape[-2]):
        J = np.diag(1.0 - H[..., t, :] ** 2) @ W_hh.T @ J
    return J
'''

JAC_KEEPS_BATCH_AXIS = '''def jacobian_first_to_last(H, W_xh, W_hh):
    # always work on a batch (adds one for a single sequence, and forgets to remove it)
    if H.ndim == 2:
        H = H[None]
    J = (1.0 - H[:, 0, :] ** 2)[:, :, None] * W_xh.T
    for t in range(1, H.shape[1]):
        J = (1.0 - H[:, t, :] ** 2)[:, :, None] * (W_hh.T @ J)
    return J
'''

JAC_TORCH = '''def jacobian_first_to_last(H, W_xh, W_hh):
    import torch
    H, Wx, Wh = (torch.from_numpy(a) for a in (H, W_xh, W_hh))
    D = 1.0 - H ** 2
    J = torch.diag_embed(D[..., 0, :]) @ Wx.T
    for t in range(1, H.shape[-2]):
        J = torch.diag_embed(D[..., t, :]) @ Wh.T @ J
    return J.numpy()
'''

CURVE_NO_TANH_DERIVATIVE = '''def influence_curve(H, W_xh, W_hh):
    # the Jacobian of a linear RNN: forgets diag(1 - h_t^2)
    J = W_xh.T
    norms = [np.linalg.norm(J)]
    for t in range(1, H.shape[0]):
        J = W_hh.T @ J
        norms.append(np.linalg.norm(J))
    return np.array(norms)
'''

CURVE_SPECTRAL_NORM = '''def influence_curve(H, W_xh, W_hh):
    J = (1.0 - H[0] ** 2)[:, None] * W_xh.T
    norms = [np.linalg.norm(J, 2)]
    for t in range(1, H.shape[0]):
        J = (1.0 - H[t] ** 2)[:, None] * (W_hh.T @ J)
        norms.append(np.linalg.norm(J, 2))
    return np.array(norms)
'''

CURVE_STOPS_EARLY = '''def influence_curve(H, W_xh, W_hh):
    # "negligible" influence is left at 0 to save work
    norms = np.zeros(H.shape[0])
    J = (1.0 - H[0] ** 2)[:, None] * W_xh.T
    norms[0] = np.linalg.norm(J)
    for t in range(1, H.shape[0]):
        J = (1.0 - H[t] ** 2)[:, None] * (W_hh.T @ J)
        norms[t] = np.linalg.norm(J)
        if norms[t] < 1e-12:
            break
    return norms
'''

CURVE_TORCH = '''def influence_curve(H, W_xh, W_hh):
    import torch
    H, Wx, Wh = (torch.from_numpy(a) for a in (H, W_xh, W_hh))
    J = (1.0 - H[0] ** 2)[:, None] * Wx.T
    norms = [torch.linalg.matrix_norm(J)]
    for t in range(1, H.shape[0]):
        J = (1.0 - H[t] ** 2)[:, None] * (Wh.T @ J)
        norms.append(torch.linalg.matrix_norm(J))
    return torch.stack(norms).numpy()
'''

SCORES_NO_SCALE = '''def pairwise_scores(X):
    return X @ np.swapaxes(X, -1, -2)
'''

SCORES_DIVIDE_BY_D = '''def pairwise_scores(X):
    return X @ np.swapaxes(X, -1, -2) / X.shape[-1]
'''

SCORES_DOT_T = '''def pairwise_scores(X):
    return X @ X.T / np.sqrt(X.shape[-1])
'''

SCORES_KEEPS_BATCH_AXIS = '''def pairwise_scores(X):
    # always work on a batch (adds one for a single sequence, and forgets to remove it)
    if X.ndim == 2:
        X = X[None]
    return X @ np.swapaxes(X, -1, -2) / np.sqrt(X.shape[-1])
'''

SCORES_TORCH = '''def pairwise_scores(X):
    import torch
    x = torch.from_numpy(X)
    return (torch.matmul(x, x.transpose(-2, -1)) / X.shape[-1] ** 0.5).numpy()
'''

WRONG_ANSWERS = [
    # rnn_step: an ungraded warm-up, so a wrong or missing step costs nothing (the later tests use a known-good one)
    {"why": "rnn_step left unwritten", "replace": {"rnn_step": STEP_UNWRITTEN}, "loses": []},
    {"why": "rnn_step forgets the tanh", "replace": {"rnn_step": STEP_NO_TANH}, "loses": []},
    {"why": "rnn_step uses W_hh transposed", "replace": {"rnn_step": STEP_TRANSPOSED_W_HH}, "loses": []},
    # rnn_forward
    {"why": "stacks along axis 1, so one sequence comes out transposed", "replace": {"rnn_forward": FORWARD_STACK_AXIS_1},
     "says": "got (3, 4). Stack one state per token along axis -2",
     "loses": ["test_rnn_forward"]},
    {"why": "iterates over axis 0 (the batch, for a batch of sequences)",
     "replace": {"rnn_forward": FORWARD_ITERATES_AXIS_0},
     "says": "operands could not be broadcast together with shapes", "loses": ["test_rnn_forward_batch"]},
    {"why": "returns h_init, h_0, ..., h_{n-2} (off by one)", "replace": {"rnn_forward": FORWARD_INCLUDES_H_INIT},
     "says": "do not include h_init itself in the output",
     "loses": ["test_rnn_forward", "test_rnn_forward_batch"]},
    {"why": "starts from zeros instead of h_init", "replace": {"rnn_forward": FORWARD_IGNORES_H_INIT},
     "says": "row 0 must be h_0 = step(x_0, h_init)",
     "loses": ["test_rnn_forward", "test_rnn_forward_batch"]},
    {"why": "shortcut: torch.nn.RNN", "replace": {"rnn_forward": FORWARD_TORCH},
     "says": "torch.nn.RNN",
     "loses": ["test_rnn_forward", "test_rnn_forward_batch"]},
    # jacobian_first_to_last
    {"why": "multiplies by W_hh instead of W_hh^T", "replace": {"jacobian_first_to_last": JAC_W_HH_NOT_TRANSPOSED},
     "says": "This is the product with W_hh itself; for row vectors the chain rule has it with W_hh transposed",
     "loses": ["test_jacobian_first_to_last", "test_jacobian_first_to_last_batch"]},
    {"why": "pairs each W_hh^T with the previous step's tanh derivative",
     "replace": {"jacobian_first_to_last": JAC_WRONG_ORDER},
     "says": "Multiply each new factor diag(1 - h_t^2) W_hh^T on the left",
     "loses": ["test_jacobian_first_to_last", "test_jacobian_first_to_last_batch"]},
    {"why": "np.diag for the tanh derivative (only works for one sequence)",
     "replace": {"jacobian_first_to_last": JAC_NP_DIAG},
     "says": "np.diag makes a diagonal matrix only from a 1-D vector", "loses": ["test_jacobian_first_to_last_batch"]},
    {"why": "adds a batch axis for one sequence and never removes it",
     "replace": {"jacobian_first_to_last": JAC_KEEPS_BATCH_AXIS},
     "says": "got (1, 4, 3)", "loses": ["test_jacobian_first_to_last"]},
    {"why": "shortcut: computes it with torch", "replace": {"jacobian_first_to_last": JAC_TORCH},
     "says": "torch.diag_embed",
     "loses": ["test_jacobian_first_to_last", "test_jacobian_first_to_last_batch"]},
    # influence_curve
    {"why": "forgets the tanh derivative (a linear RNN's Jacobian)",
     "replace": {"influence_curve": CURVE_NO_TANH_DERIVATIVE},
     "says": "These norms leave out the tanh derivative", "loses": ["test_influence_curve"]},
    {"why": "spectral norm instead of the Frobenius norm", "replace": {"influence_curve": CURVE_SPECTRAL_NORM},
     "says": "These are spectral norms (largest singular values); the curve uses the Frobenius norm",
     "loses": ["test_influence_curve", "test_influence_curve_tiny"]},
    {"why": "stops when the influence drops below 1e-12 and leaves zeros",
     "replace": {"influence_curve": CURVE_STOPS_EARLY},
     "says": "every norm is tiny but positive", "loses": ["test_influence_curve_tiny"]},
    {"why": "shortcut: computes it with torch", "replace": {"influence_curve": CURVE_TORCH},
     "says": "torch.linalg.matrix_norm",
     "loses": ["test_influence_curve", "test_influence_curve_tiny"]},
    # pairwise_scores
    {"why": "forgets the 1/sqrt(d) scale", "replace": {"pairwise_scores": SCORES_NO_SCALE},
     "says": "These are the plain dot products: the scores are scaled by 1/sqrt(d) = 1/2",
     "loses": ["test_pairwise_scores", "test_pairwise_scores_batch"]},
    {"why": "divides by d instead of sqrt(d)", "replace": {"pairwise_scores": SCORES_DIVIDE_BY_D},
     "says": "got [0.25 0.5  1.  ]. This is scaled by 1/d = 1/4",
     "loses": ["test_pairwise_scores", "test_pairwise_scores_batch"]},
    {"why": "X.T reverses every axis of a batch", "replace": {"pairwise_scores": SCORES_DOT_T},
     "says": "X.T reverses every axis of X (2, 5, 3)",
     "loses": ["test_pairwise_scores_batch"]},
    {"why": "adds a batch axis for one sequence and never removes it",
     "replace": {"pairwise_scores": SCORES_KEEPS_BATCH_AXIS},
     "says": "got (1, 3, 3)",
     "loses": ["test_pairwise_scores"]},
    {"why": "shortcut: torch.matmul", "replace": {"pairwise_scores": SCORES_TORCH},
     "says": "torch.matmul",
     "loses": ["test_pairwise_scores", "test_pairwise_scores_batch"]},
]
