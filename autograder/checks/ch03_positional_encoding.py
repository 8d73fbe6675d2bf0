"""Hidden checks for chapter 3, `03_positional_encoding` (NumPy).

Conventions the checks hold the learner to (stated in the notebook):
- `positional_encoding(n, d, base=10000)` returns the float64 table PE of shape (n, d) with
  PE[p, 2i] = sin(p / base^(2i/d)) and PE[p, 2i+1] = cos(p / base^(2i/d)); an odd d raises ValueError.
- `rotation_matrix(k, d, base=10000)` returns the (d, d) matrix R_k with PE[p + k] = PE[p] @ R_k for every p
  (row vectors, multiplied on the right as everywhere in this course): 2x2 blocks [[cos kw, -sin kw], [sin kw, cos kw]]
  on the diagonal, w = base^(-2i/d). In column-vector writing, PE_{p+k} = R_k^T PE_p.
- `add_positional_encoding(X, base=10000)` adds PE[:n] to X of shape (n, d) or (batch, n, d).
- `pe_similarity(n, d, base=10000)` returns the (n, n) matrix of dot products PE[p] . PE[q].
- `learned_position_lookup(table, positions)` returns table[positions] and raises ValueError for any position outside
  0 .. len(table) - 1 (NumPy would wrap -1 around silently and raise IndexError past the end).

References are computed here, independently: the PE table with PyTorch (the construction of the PyTorch tutorial,
exp(-log(base) * 2i / d)), the rotation blocks and the dot products from closed forms (cos/sin of k*w, and
sum_i cos((p - q) w_i)). Tolerances are stated at each comparison.
"""
from __future__ import annotations

import math

import numpy as np

from .sources import solution
from . import CheckFailed, env, expect, expect_cases, expect_close, expect_shape, rng

# Calling a library's version of the thing being built earns nothing.
FORBID_EMBEDDING = [
    "torch.nn.functional.embedding",
    "torch._VariableFunctionsClass.embedding",
    "torch.embedding",
    "torch.nn.modules.sparse.Embedding*",
]

# Substituted for the learner's positional_encoding when a later exercise is tested, so one mistake costs one exercise.
REFERENCE_PE = solution("03", "positional_encoding")
SUBSTITUTE = {"positional_encoding": REFERENCE_PE}


def _reference_pe(n: int, d: int, base: float = 10000) -> np.ndarray:
    """PyTorch's construction (float64), independent of the learner's and of the notebook's (the substitute above)."""
    import torch

    position = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(base) / d))
    pe = torch.zeros(n, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe.numpy()


def _frequencies(d: int, base: float) -> np.ndarray:
    return np.array([base ** (-(2 * i) / d) for i in range(d // 2)], dtype=np.float64)


def _reference_rotation(k: int, d: int, base: float = 10000) -> np.ndarray:
    R = np.zeros((d, d))
    for i, w in enumerate(_frequencies(d, base)):
        c, s = math.cos(k * w), math.sin(k * w)
        R[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = [[c, -s], [s, c]]
    return R


def _raises_value_error(exercise: str, call: str, case: str, hint: str) -> None:
    """Run `call` in (a copy of) the learner's namespace and demand a ValueError."""
    code = f"""
try:
    {call}
    _ag_outcome = "returned normally"
except __import__("builtins").ValueError:
    _ag_outcome = "ValueError"
except BaseException as _ag_error:
    _ag_outcome = "raised " + type(_ag_error).__name__ + ": " + str(_ag_error)[:120]
"""
    outcome = env().run(exercise, code, outputs=["_ag_outcome"], case=case)["_ag_outcome"]
    expect(outcome == "ValueError",
           f"{exercise}: expected a ValueError for {case}; the call {outcome}. {hint}")


# --------------------------------------------------------------------------------------------- positional_encoding

def test_positional_encoding():
    """Default base 10000, several shapes, positions up to 1999: atol 1e-9 (float64 arithmetic needed)."""
    # answers stay well under the grader's 1 MiB of output per cell
    expect_cases("positional_encoding", [(f"n={n}, d={d}", (n, d)) for n, d in [(1, 2), (7, 6), (33, 10), (2000, 16),
                                                                                 (64, 512)]],
                 _reference_pe, atol=1e-9, hint="Even columns sin, odd columns cos, both with the frequency "
                                                "base^(-2i/d) of pair i; compute in float64 (float32 loses the phase "
                                                "at large p).")


def test_positional_encoding_base():
    """The `base` argument is used: small tables, bases 100, 10.0, 1e6; atol 1e-6."""
    expect_cases("positional_encoding", [(f"n={n}, d={d}, base={base}", (n, d), {"base": base})
                                         for n, d, base in [(12, 8, 100), (9, 6, 10.0), (5, 4, 1_000_000)]],
                 _reference_pe, atol=1e-6, hint="Use the base you were given, not a hard-coded 10000.")


def test_positional_encoding_odd_d():
    for n, d in [(4, 7), (3, 1)]:
        _raises_value_error("positional_encoding", f"positional_encoding({n}, {d})", f"n={n}, d={d} (odd d)",
                            "Check `d % 2` first and raise ValueError: sin/cos come in pairs.")


# --------------------------------------------------------------------------------------------- rotation_matrix

def test_rotation_matrix_shift():
    """Default base; R_k must satisfy PE[p + k] = PE[p] @ R_k (row vectors). atol 1e-9 on the entries."""
    for k, d in [(1, 8), (3, 16), (-2, 6), (0, 4), (25, 64), (1000, 10)]:
        case = f"k={k}, d={d}"
        got = env().call("rotation_matrix", k, d, case=case, substitute=SUBSTITUTE)
        want = _reference_rotation(k, d)
        expect_shape("rotation_matrix", got, (d, d), case=case)
        expect_close("rotation_matrix", got, want, atol=1e-9, case=case,
                     hint="PE[p + k] must equal PE[p] @ R_k (row vector on the left); "
                          "if you built the column-vector matrix, transpose it.")
        # The property itself, on the reference table (states the same thing in the learner's terms).
        pe = _reference_pe(abs(k) + 20, d)
        lo = max(0, -k)
        shifted = np.asarray(got, dtype=float)
        expect_close("rotation_matrix", pe[lo:lo + 20] @ shifted, pe[lo + k:lo + k + 20], atol=1e-8, case=case,
                     what="rows of PE[p] @ R_k", hint="They must equal PE[p + k].")


def test_rotation_matrix_blocks():
    """Custom bases; transpose-free properties: 2x2 blocks on the diagonal, zeros elsewhere, block i turns by k*w_i.

    Also: odd d raises ValueError."""
    for k, d, base in [(2, 8, 100), (5, 6, 1000.0), (-1, 10, 50), (7, 4, 1_000_000)]:
        case = f"k={k}, d={d}, base={base}"
        got = env().call("rotation_matrix", k, d, base=base, case=case, substitute=SUBSTITUTE)
        expect_shape("rotation_matrix", got, (d, d), case=case)
        R = np.asarray(got, dtype=float)
        block = np.kron(np.eye(d // 2), np.ones((2, 2))).astype(bool)
        off = np.abs(np.where(block, 0.0, R)).max()
        expect(off <= 1e-12, f"rotation_matrix: entries outside the 2x2 diagonal blocks must be 0 for {case}; "
                             f"found |value| up to {off:.3g}. Each sin/cos pair turns on its own.")
        w = _frequencies(d, base)
        want_diag = np.repeat(np.cos(k * w), 2)
        expect_close("rotation_matrix", np.diag(R).copy(), want_diag, atol=1e-9, case=case,
                     what="diagonal entries (cos of k*w_i)",
                     hint="Block i turns by the angle k * base**(-2i/d); use the base you were given.")
        upper, lower = R[0::2, 1::2].diagonal(), R[1::2, 0::2].diagonal()
        expect_close("rotation_matrix", np.abs(upper), np.abs(np.sin(k * w)), atol=1e-9, case=case,
                     what="off-diagonal block entries (±sin of k*w_i)",
                     hint="Block i turns by the angle k * base**(-2i/d); use the base you were given.")
        expect_close("rotation_matrix", upper, -lower, atol=1e-9, case=case,
                     what="block entries R[2i, 2i+1] vs -R[2i+1, 2i]",
                     hint="A rotation block is [[cos, -sin], [sin, cos]]: its off-diagonal entries have opposite signs.")
    _raises_value_error("rotation_matrix", "rotation_matrix(1, 5)", "k=1, d=5 (odd d)",
                        "Raise ValueError for odd d, as positional_encoding does.")


# --------------------------------------------------------------------------------------------- add_positional_encoding

def _expect_pe_added(seeds_and_shapes, hint):
    expect_cases("add_positional_encoding", [(f"X of shape {shape}", (rng(seed).normal(size=shape),))
                                             for seed, shape in seeds_and_shapes],
                 lambda X: X + _reference_pe(*X.shape[-2:]), atol=1e-9, hint=hint, substitute=SUBSTITUTE)


def test_add_positional_encoding():
    """X of shape (n, d): X + PE[:n]; atol 1e-9."""
    _expect_pe_added([(31, (5, 8)), (32, (12, 6)), (33, (1, 4))], "n and d are the last two axes of X: X.shape[-2:].")


def test_add_positional_encoding_batch():
    """X of shape (batch, n, d): the same PE[:n] added to every sequence; atol 1e-9."""
    _expect_pe_added([(41, (3, 5, 8)), (42, (2, 9, 4)), (43, (1, 3, 6))],
                     "Build PE for n = X.shape[-2], d = X.shape[-1] and let broadcasting add it to every sequence.")


# --------------------------------------------------------------------------------------------- pe_similarity

def test_pe_similarity():
    """S[p, q] = PE[p] . PE[q] = sum_i cos((p - q) w_i) (closed form); atol 1e-9 + rtol 1e-9."""
    for n, d, base in [(6, 4, 10000), (20, 16, 10000), (50, 128, 10000), (15, 8, 100)]:
        case = f"n={n}, d={d}, base={base}"
        kwargs = {} if base == 10000 else {"base": base}
        got = env().call("pe_similarity", n, d, case=case, substitute=SUBSTITUTE, **kwargs)
        dist = np.arange(n)[:, None] - np.arange(n)[None, :]
        want = np.cos(dist[..., None] * _frequencies(d, base)).sum(-1)
        expect_close("pe_similarity", got, want, atol=1e-9, rtol=1e-9, case=case,
                     hint="S = PE @ PE.T for PE of shape (n, d): an (n, n) matrix, S[p, q] = PE[p] · PE[q].")


# --------------------------------------------------------------------------------------------- learned_position_lookup

def test_learned_position_lookup():
    """table[positions] for position arrays of shapes (n,), (batch, n) and a scalar; exact."""
    table = rng(51).normal(size=(16, 6))
    for seed, shape in [(52, (5,)), (53, (3, 4)), (54, ())]:
        positions = rng(seed).integers(0, 16, size=shape)
        if shape == ():
            positions = int(positions)  # a plain int: one position, result of shape (d,)
        case = f"table of shape (16, 6), positions of shape {shape}" if shape else "table of shape (16, 6), one int position"
        got = env().call("learned_position_lookup", table, positions, case=case, forbid=FORBID_EMBEDDING)
        expect_close("learned_position_lookup", got, table[positions], atol=0, case=case,
                     hint="Row p of the table is the vector of position p; the result has shape positions.shape + (d,).")


def _lookup_rejects(cases, hint):
    """learned_position_lookup on an (8, 4) table raises ValueError for each list of positions in `cases`."""
    for positions in cases:
        _raises_value_error(
            "learned_position_lookup",
            f"learned_position_lookup(__import__('numpy').zeros((8, 4)), __import__('numpy').array({positions}))",
            f"a table of 8 positions and positions {positions}", hint)


def test_learned_position_lookup_too_long():
    """Positions at or past the table's length: ValueError (not NumPy's IndexError)."""
    _lookup_rejects(([0, 3, 8], [2, 11, 1], list(range(9))),
                    "A learned table has no row for a position >= its length (max_len); say so with a ValueError.")


def test_learned_position_lookup_negative():
    """Negative positions: ValueError (NumPy would silently wrap -1 to the last row)."""
    _lookup_rejects(([0, -1, 2], [[1, 2], [3, -8]]),
                    "table[-1] silently returns the last row; reject negative positions with a ValueError.")


__all__ = [
    "test_positional_encoding", "test_positional_encoding_base", "test_positional_encoding_odd_d",
    "test_rotation_matrix_shift", "test_rotation_matrix_blocks",
    "test_add_positional_encoding", "test_add_positional_encoding_batch",
    "test_pe_similarity",
    "test_learned_position_lookup", "test_learned_position_lookup_too_long", "test_learned_position_lookup_negative",
    "CheckFailed",
]
