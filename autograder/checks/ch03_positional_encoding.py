"""Hidden checks for chapter 3, `03_positional_encoding` (NumPy): the conventions are the notebook's (PE[p, 2i] =
sin(p w_i), PE[p, 2i+1] = cos(p w_i), w_i = base^(-2i/d); PE[p + k] = PE[p] @ R_k with row vectors; ValueError for
odd d and for positions outside a learned table).

References are independent of the learner and of the notebook: the table by PyTorch's construction (the PyTorch
tutorial's exp(-log(base) 2i/d)), rotations and dot products from closed forms. Tolerances are stated at each check.
"""
from __future__ import annotations

import math

import numpy as np

from .sources import solution
from . import env, expect, expect_cases, expect_close, expect_shape, rng

# Calling a library's version of the thing being built earns nothing.
FORBID_EMBEDDING = ["torch.nn.functional.embedding", "torch._VariableFunctionsClass.embedding", "torch.embedding",
                    "torch.nn.modules.sparse.Embedding*"]

# The notebook's positional_encoding stands in for the learner's while later exercises are judged: one mistake, one
# exercise.
SUBSTITUTE = {"positional_encoding": solution("03", "positional_encoding")}


def _reference_pe(n: int, d: int, base: float = 10000) -> np.ndarray:
    import torch

    position = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(base) / d))
    pe = torch.zeros(n, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe.numpy()


def _frequencies(d: int, base: float = 10000) -> np.ndarray:
    return np.array([base ** (-(2 * i) / d) for i in range(d // 2)], dtype=np.float64)


def _reference_rotation(k: int, d: int) -> np.ndarray:
    R = np.zeros((d, d))
    for i, w in enumerate(_frequencies(d)):
        c, s = math.cos(k * w), math.sin(k * w)
        R[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = [[c, -s], [s, c]]
    return R


def _raises_value_error(exercise: str, call: str, case: str, hint: str) -> None:
    """Run `call` in (a copy of) the learner's namespace and demand a ValueError."""
    code = (f"try:\n    {call}\n    _ag_outcome = 'returned normally'\nexcept __import__('builtins').ValueError:\n"
            "    _ag_outcome = 'ValueError'\nexcept BaseException as _ag_error:\n"
            "    _ag_outcome = 'raised ' + type(_ag_error).__name__ + ': ' + str(_ag_error)[:120]\n")
    outcome = env().run(exercise, code, outputs=["_ag_outcome"], case=case)["_ag_outcome"]
    expect(outcome == "ValueError", f"{exercise}: expected a ValueError for {case}; the call {outcome}. {hint}")


# --------------------------------------------------------------------------------------------- positional_encoding

def test_positional_encoding():
    """Default base, positions up to 1999 (float64 needed): atol 1e-9. Answers stay under the 1 MiB per cell."""
    sizes = [(1, 2), (7, 6), (33, 10), (2000, 16), (64, 512)]
    expect_cases("positional_encoding", [(f"n={n}, d={d}", (n, d)) for n, d in sizes], _reference_pe, atol=1e-9,
                 hint="Even columns sin, odd columns cos, both with the frequency base^(-2i/d) of pair i; compute in "
                      "float64 (float32 loses the phase at large p).")


def test_positional_encoding_base():
    """The `base` argument is used: bases 100, 10.0, 1e6; atol 1e-6."""
    expect_cases("positional_encoding", [(f"n={n}, d={d}, base={base}", (n, d), {"base": base})
                                         for n, d, base in [(12, 8, 100), (9, 6, 10.0), (5, 4, 1_000_000)]],
                 _reference_pe, atol=1e-6, hint="Use the base you were given, not a hard-coded 10000.")


def test_positional_encoding_odd_d():
    for n, d in [(4, 7), (3, 1)]:
        _raises_value_error("positional_encoding", f"positional_encoding({n}, {d})", f"n={n}, d={d} (odd d)",
                            "An odd d has to be refused with a ValueError before anything is computed: "
                            "sin/cos come in pairs.")


# --------------------------------------------------------------------------------------------- rotation_matrix

def test_rotation_matrix_shift():
    """Default base: R_k against the closed form (atol 1e-9), and the property PE[p + k] = PE[p] @ R_k itself."""
    for k, d in [(1, 8), (3, 16), (-2, 6), (0, 4), (25, 64), (1000, 10)]:
        case = f"k={k}, d={d}"
        got = env().call("rotation_matrix", k, d, case=case, substitute=SUBSTITUTE)
        expect_close("rotation_matrix", got, _reference_rotation(k, d), atol=1e-9, case=case,
                     hint="PE[p + k] must equal PE[p] @ R_k (row vector on the left); "
                          "if you built the column-vector matrix, transpose it.")
        pe, lo = _reference_pe(abs(k) + 20, d), max(0, -k)
        expect_close("rotation_matrix", pe[lo:lo + 20] @ np.asarray(got, dtype=float), pe[lo + k:lo + k + 20],
                     atol=1e-8, case=case, what="rows of PE[p] @ R_k", hint="They must equal PE[p + k].")


def test_rotation_matrix_blocks():
    """Custom bases, transpose-free: zeros outside the 2x2 diagonal blocks, block i turns by k w_i with opposite signs
    on its off-diagonal; odd d raises ValueError."""
    angle_hint = "Block i turns by the angle k * base**(-2i/d); use the base you were given."
    for k, d, base in [(2, 8, 100), (5, 6, 1000.0), (-1, 10, 50), (7, 4, 1_000_000)]:
        case = f"k={k}, d={d}, base={base}"
        got = env().call("rotation_matrix", k, d, base=base, case=case, substitute=SUBSTITUTE)
        expect_shape("rotation_matrix", got, (d, d), case=case)
        R, w = np.asarray(got, dtype=float), _frequencies(d, base)
        off = np.abs(np.where(np.kron(np.eye(d // 2), np.ones((2, 2))).astype(bool), 0.0, R)).max()
        expect(off <= 1e-12, f"rotation_matrix: entries outside the 2x2 diagonal blocks must be 0 for {case}; "
                             f"found |value| up to {off:.3g}. Each sin/cos pair turns on its own.")
        upper, lower = R[0::2, 1::2].diagonal(), R[1::2, 0::2].diagonal()
        for what, got_part, want, hint in [
                ("diagonal entries (cos of k*w_i)", np.diag(R).copy(), np.repeat(np.cos(k * w), 2), angle_hint),
                ("off-diagonal block entries (±sin of k*w_i)", np.abs(upper), np.abs(np.sin(k * w)), angle_hint),
                ("block entries R[2i, 2i+1] vs -R[2i+1, 2i]", upper, -lower,
                 "A rotation block is [[cos, -sin], [sin, cos]]: its off-diagonal entries have opposite signs.")]:
            expect_close("rotation_matrix", got_part, want, atol=1e-9, case=case, what=what, hint=hint)
    _raises_value_error("rotation_matrix", "rotation_matrix(1, 5)", "k=1, d=5 (odd d)",
                        "Raise ValueError for odd d, as positional_encoding does.")


# --------------------------------------------------------------------------------------------- pe_similarity

def _closed_form_similarity(n, d, base=10000):
    return np.cos(np.subtract.outer(np.arange(n), np.arange(n))[..., None] * _frequencies(d, base)).sum(-1)


def test_pe_similarity():
    """S[p, q] = PE[p] . PE[q] = sum_i cos((p - q) w_i) (closed form); atol 1e-9 + rtol 1e-9."""
    expect_cases("pe_similarity", [(f"n={n}, d={d}, base={base}", (n, d), {} if base == 10000 else {"base": base})
                                   for n, d, base in [(6, 4, 10000), (20, 16, 10000), (50, 128, 10000), (15, 8, 100)]],
                 _closed_form_similarity, atol=1e-9, rtol=1e-9, substitute=SUBSTITUTE,
                 hint="S[p, q] = PE[p] · PE[q] sums over the d columns: an (n, n) matrix (a sum over the positions "
                      "compares frequencies instead).")


# --------------------------------------------------------------------------------------------- learned_position_lookup

def test_learned_position_lookup():
    """table[positions] for position arrays of shapes (n,), (batch, n) and one int; exact."""
    table = rng(51).normal(size=(16, 6))
    cases = [(f"table of shape (16, 6), positions of shape {shape}", (table, rng(seed).integers(0, 16, size=shape)))
             for seed, shape in [(52, (5,)), (53, (3, 4))]]
    cases.append(("table of shape (16, 6), one int position", (table, int(rng(54).integers(0, 16)))))
    expect_cases("learned_position_lookup", cases, lambda table, positions: table[positions], atol=0,
                 forbid=FORBID_EMBEDDING,
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
