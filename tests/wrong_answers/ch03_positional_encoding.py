"""Plausible wrong answers for chapter 3 (`03_positional_encoding`) and exactly the test cells each must lose."""

PE_FLOAT32 = '''def positional_encoding(n, d, base=10000):
    if d % 2 != 0:
        raise ValueError("d must be even")
    p = np.arange(n, dtype=np.float32)[:, None]
    omega = (float(base) ** (-np.arange(0, d, 2) / d)).astype(np.float32)
    pe = np.zeros((n, d), dtype=np.float32)
    pe[:, 0::2] = np.sin(p * omega)
    pe[:, 1::2] = np.cos(p * omega)
    return pe
'''

PE_FIXED_BASE = '''def positional_encoding(n, d, base=10000):
    if d % 2 != 0:
        raise ValueError("d must be even")
    p = np.arange(n)[:, None]
    omega = 1.0 / 10000 ** (np.arange(0, d, 2) / d)
    pe = np.zeros((n, d))
    pe[:, 0::2] = np.sin(p * omega)
    pe[:, 1::2] = np.cos(p * omega)
    return pe
'''

PE_NO_ODD_CHECK = '''def positional_encoding(n, d, base=10000):
    pe = np.zeros((n, d))
    for p in range(n):
        for j in range(d):
            angle = p / base ** (2 * (j // 2) / d)
            pe[p, j] = np.sin(angle) if j % 2 == 0 else np.cos(angle)
    return pe
'''

PE_HALVES = '''def positional_encoding(n, d, base=10000):
    if d % 2 != 0:
        raise ValueError("d must be even")
    p = np.arange(n)[:, None]
    omega = float(base) ** (-np.arange(0, d, 2) / d)
    return np.concatenate([np.sin(p * omega), np.cos(p * omega)], axis=1)
'''

PE_COLUMN_INDEX = '''def positional_encoding(n, d, base=10000):
    if d % 2 != 0:
        raise ValueError("d must be even")
    pe = np.zeros((n, d))
    p = np.arange(n)[:, None]
    j = np.arange(d)
    angles = p / float(base) ** (2 * j / d)
    pe[:, 0::2] = np.sin(angles[:, 0::2])
    pe[:, 1::2] = np.cos(angles[:, 1::2])
    return pe
'''

ROT_TRANSPOSED = '''def rotation_matrix(k, d, base=10000):
    if d % 2 != 0:
        raise ValueError("d must be even")
    R = np.zeros((d, d))
    for i in range(d // 2):
        a = k * float(base) ** (-2 * i / d)
        R[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]
    return R
'''

ROT_FIXED_BASE = '''def rotation_matrix(k, d, base=10000):
    if d % 2 != 0:
        raise ValueError("d must be even")
    R = np.zeros((d, d))
    for i in range(d // 2):
        a = k / 10000 ** (2 * i / d)
        R[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return R
'''

ROT_ANGLE_K_TIMES_I = '''def rotation_matrix(k, d, base=10000):
    if d % 2 != 0:
        raise ValueError("d must be even")
    R = np.zeros((d, d))
    for i in range(d // 2):
        a = k * i
        R[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return R
'''

ADD_ASSUMES_BATCH = '''def add_positional_encoding(X, base=10000):
    n, d = X.shape[1], X.shape[2]
    return X + positional_encoding(n, d, base)
'''

ADD_NO_BATCH = '''def add_positional_encoding(X, base=10000):
    n, d = X.shape
    return X + positional_encoding(n, d, base)
'''

SIM_COLUMNS = '''def pe_similarity(n, d, base=10000):
    pe = positional_encoding(n, d, base)
    return pe.T @ pe
'''

SIM_COSINE = '''def pe_similarity(n, d, base=10000):
    pe = positional_encoding(n, d, base)
    return pe @ pe.T / (d / 2)
'''

LOOKUP_FLATTENS = '''def learned_position_lookup(table, positions):
    positions = np.asarray(positions)
    if np.any(positions < 0) or np.any(positions >= len(table)):
        raise ValueError(f"positions must be in 0..{len(table) - 1} (max_len={len(table)})")
    return np.array([table[p] for p in positions.ravel()])
'''

LOOKUP_OFF_BY_ONE = '''def learned_position_lookup(table, positions):
    positions = np.asarray(positions)
    if np.any(positions < 0) or np.any(positions > len(table)):
        raise ValueError(f"positions must be in 0..{len(table)} (max_len={len(table)})")
    return table[positions]
'''

LOOKUP_NEGATIVE_WRAPS = '''def learned_position_lookup(table, positions):
    positions = np.asarray(positions)
    if np.max(positions) >= len(table):
        raise ValueError(f"position past the table's length max_len={len(table)}")
    return table[positions]
'''

LOOKUP_PLAIN = '''def learned_position_lookup(table, positions):
    return table[positions]
'''

LOOKUP_TORCH = '''def learned_position_lookup(table, positions):
    import torch
    out = torch.nn.functional.embedding(torch.as_tensor(np.asarray(positions)), torch.as_tensor(np.asarray(table)))
    return out.numpy()
'''

WRONG_ANSWERS = [
    {"why": "computes the table in float32: the phase of sin(p w) is lost at p in the thousands",
     "replace": {"positional_encoding": PE_FLOAT32},
     "says": "compute in float64",
     "loses": ["test_positional_encoding"]},
    {"why": "ignores the base argument (hard-coded 10000)",
     "replace": {"positional_encoding": PE_FIXED_BASE},
     "says": "Use the base argument",
     "loses": ["test_positional_encoding_base"]},
    {"why": "a column-by-column loop that silently accepts an odd d",
     "replace": {"positional_encoding": PE_NO_ODD_CHECK},
     "says": "An odd d has to be refused",
     "loses": ["test_positional_encoding_odd_d"]},
    {"why": "puts all sines first and all cosines after (not interleaved)",
     "replace": {"positional_encoding": PE_HALVES},
     "says": "Even columns sin, odd columns cos",
     "loses": ["test_positional_encoding", "test_positional_encoding_base"]},
    {"why": "uses the column index j instead of the pair index i in the exponent (base**(2j/d))",
     "replace": {"positional_encoding": PE_COLUMN_INDEX},
     "says": "is i the pair index (column // 2)?",
     "loses": ["test_positional_encoding", "test_positional_encoding_base"]},
    {"why": "builds the column-vector matrix R_k^T (= R_{-k}): shifts backwards with row vectors",
     "replace": {"rotation_matrix": ROT_TRANSPOSED},
     "says": "It moved backwards, to position 2",
     "loses": ["test_rotation_matrix_shift"]},
    {"why": "ignores the base argument (hard-coded 10000)",
     "replace": {"rotation_matrix": ROT_FIXED_BASE},
     "says": "Use the base argument",
     "loses": ["test_rotation_matrix_blocks"]},
    {"why": "turns block i by k*i instead of k*w_i",
     "replace": {"rotation_matrix": ROT_ANGLE_K_TIMES_I},
     "says": "Pair i turns by k w_i, not k i",
     "loses": ["test_rotation_matrix_shift", "test_rotation_matrix_blocks"]},
    # add_positional_encoding is an ungraded warm-up: a wrong or unwritten one costs nothing
    {"why": "warm-up, wrong: assumes a batch axis (n, d = X.shape[1], X.shape[2])",
     "replace": {"add_positional_encoding": ADD_ASSUMES_BATCH},
     "loses": []},
    {"why": "warm-up, wrong: assumes no batch axis (n, d = X.shape)",
     "replace": {"add_positional_encoding": ADD_NO_BATCH},
     "loses": []},
    {"why": "warm-up left unwritten",
     "replace": {"add_positional_encoding": "def add_positional_encoding(X, base=10000):\n    raise NotImplementedError()\n"},
     "loses": []},
    {"why": "PE.T @ PE: the (d, d) products of columns instead of the (n, n) products of positions",
     "replace": {"pe_similarity": SIM_COLUMNS},
     "says": "compares frequencies",
     "loses": ["test_pe_similarity"]},
    {"why": "returns cosine similarity (divided by d/2) instead of the dot products asked for",
     "replace": {"pe_similarity": SIM_COSINE},
     "says": "at index [0, 0] expected 2, got 1",
     "loses": ["test_pe_similarity"]},
    {"why": "flattens the positions: loses the batch shape (and a single position becomes shape (1, d))",
     "replace": {"learned_position_lookup": LOOKUP_FLATTENS},
     "says": "must give shape (2, 3, 2); got (6, 2)",
     "loses": ["test_learned_position_lookup"]},
    {"why": "off by one: lets position max_len through to NumPy's IndexError",
     "replace": {"learned_position_lookup": LOOKUP_OFF_BY_ONE},
     "says": "The last valid position is max_len - 1",
     "loses": ["test_learned_position_lookup_too_long"]},
    {"why": "checks only the upper end: position -1 silently returns the last row",
     "replace": {"learned_position_lookup": LOOKUP_NEGATIVE_WRAPS},
     "says": "NumPy's table[-1] silently returns the last row",
     "loses": ["test_learned_position_lookup_negative"]},
    {"why": "plain table[positions]: IndexError past the end, silent wrap-around for negatives",
     "replace": {"learned_position_lookup": LOOKUP_PLAIN},
     "says": "the call raised IndexError. The last valid position is max_len - 1",
     "loses": ["test_learned_position_lookup_too_long", "test_learned_position_lookup_negative"]},
    {"why": "shortcut: torch.nn.functional.embedding",
     "replace": {"learned_position_lookup": LOOKUP_TORCH},
     "says": "calls torch.nn.functional.embedding",
     "loses": ["test_learned_position_lookup", "test_learned_position_lookup_too_long",
               "test_learned_position_lookup_negative"]},
]
