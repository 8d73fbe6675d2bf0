"""What `check` prints for a learner (autograder.report): the per-test table, a long reason wrapped (never cut), and
the sandbox line saying exactly which isolation was in force."""
from __future__ import annotations

import pytest

from autograder.grading import Result
from autograder.grading import TestResult as Row  # (a name pytest would try to collect)
from autograder.report import print_table, sandbox_line

pytestmark = pytest.mark.unit
GiB = 2**30


@pytest.mark.parametrize("sandbox, line", [
    ({"sandbox": "bubblewrap", "network": "off", "memory_bytes": 2 * GiB, "memory_limit": True, "memory_total": True,
      "processes_total": True},
     "sandbox: bubblewrap, no network, sees only Python, its packages and the chapter's data; writes only its own home "
     "and /tmp, memory 2 GiB for the kernel and its children, at most 256 processes"),
    ({"sandbox": "bubblewrap", "memory_bytes": GiB // 2, "memory_limit": True, "memory_total": False,
      "processes_total": False},
     "sandbox: bubblewrap, no network, sees only Python, its packages and the chapter's data; writes only its own home "
     "and /tmp, memory 0.5 GiB per process (no cgroup here), no process limit (no cgroup here)"),
    ({"sandbox": "bubblewrap", "memory_bytes": 2 * GiB},
     "sandbox: bubblewrap, no network, sees only Python, its packages and the chapter's data; writes only its own home "
     "and /tmp, no memory limit, no process limit (no cgroup here)"),
    ({"sandbox": "none", "memory_bytes": 3 * GiB, "memory_limit": True},
     "sandbox: OFF -- the notebook ran with your own permissions (install bubblewrap to sandbox it); "
     "memory 3 GiB per process"),
    ({"sandbox": "none", "memory_bytes": 3 * GiB, "memory_limit": False},
     "sandbox: OFF -- the notebook ran with your own permissions (install bubblewrap to sandbox it)"),
    ({}, "sandbox: OFF -- the notebook ran with your own permissions (install bubblewrap to sandbox it)"),
])
def test_sandbox_line_says_what_was_in_force(sandbox, line):
    assert sandbox_line(sandbox) == line


def result(*tests, **fields):
    return Result(notebook="04_attention.ipynb", chapter="04_attention", tests=list(tests),
                  score=sum(t.score for t in tests), max_score=sum(t.max_score for t in tests), **fields)


def test_table_lists_every_test_and_the_reasons_of_failed_ones(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    print_table(result(Row("test_softmax", 2, 2, "passed output is not shown"),
                       Row("test_softmax_stability", 0, 1.5, "softmax: 1 of 4 values are nan or inf."),
                       events=["cell 7 used more than 2 GiB of memory"], sandbox={"sandbox": "none"}))
    assert capsys.readouterr().out.splitlines() == [
        "04_attention: 04_attention.ipynb",
        "  ok   test_softmax            2/2",
        "  FAIL test_softmax_stability  0/1.5",
        "       softmax: 1 of 4 values are nan or inf.",
        "score: 2 / 3.5",
        "note: cell 7 used more than 2 GiB of memory",
        "sandbox: OFF -- the notebook ran with your own permissions (install bubblewrap to sandbox it)",
    ]


@pytest.mark.parametrize("columns", [40, 100])
def test_a_long_reason_is_wrapped_whole(capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    reason = "softmax: rows must sum to 1 for x of shape (3, 7), axis=-1; got sums [0.31 0.31 0.31]. " * 12 + "rather"
    print_table(result(Row("test_softmax", 0, 2, reason)))
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("       ")]
    assert len(shown) > 3 and all(len(line) <= columns for line in shown)
    assert " ".join(line.strip() for line in shown) == reason.strip()  # every word, the last one too


def test_a_reason_that_fits_is_shown_whole(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    reason = "r" * 30
    print_table(result(Row("test_softmax", 0, 2, reason)))
    assert f"       {reason}" in capsys.readouterr().out.splitlines()


def test_a_notebook_that_was_not_graded_says_why_and_nothing_else(capsys):
    print_table(result(error="not a readable notebook (line 1: Expecting value)"))
    assert capsys.readouterr().out.splitlines() == [
        "04_attention: 04_attention.ipynb", "  not graded: not a readable notebook (line 1: Expecting value)"]
