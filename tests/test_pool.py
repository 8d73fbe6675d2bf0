"""The class pool (autograder/classroom.py): long-lived workers grade one student after another, each student in a
fresh sandboxed kernel and course folder of its own; a student past the time limit costs only its own row."""
from __future__ import annotations

import json

import nbformat
import pytest

from autograder import sandbox
from autograder.classroom import grade_class
from autograder.course import chapter

pytestmark = pytest.mark.skipif(sandbox.available() is not None, reason=f"no sandbox here: {sandbox.available()}")

CH = chapter("04_attention")
MARKS = ("~/left-by-a-classmate", "/tmp/left-by-a-classmate")
# Everything a student could try to leave for the next one graded by the same worker: files in its home and /tmp,
# interpreter and environment state, and a detached process that keeps putting the files back.
LEAVE = f"""
import builtins, os, subprocess
for _mark in {MARKS!r}:
    open(os.path.expanduser(_mark), "w").write("x")
builtins.left_by_a_classmate = True
os.environ["LEFT_BY_A_CLASSMATE"] = "1"
subprocess.Popen(["sh", "-c", "while true; do touch ~/left-by-a-classmate /tmp/left-by-a-classmate; sleep 0.2; done"],
                 start_new_session=True)
"""
# A student who meets any of it breaks their own softmax, and loses its tests.
MEET = f"""
import builtins, os
if (any(os.path.exists(os.path.expanduser(m)) for m in {MARKS!r}) or hasattr(builtins, "left_by_a_classmate")
        or os.environ.get("LEFT_BY_A_CLASSMATE")):
    def softmax(x, axis=-1):
        return x
"""


def _with_cells(sources):
    nb = nbformat.read(CH.source, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "softmax") + 1
    nb.cells[at:at] = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


@pytest.mark.timeout(600)
def test_one_worker_grades_students_in_turn_and_nothing_passes_between_them(tmp_path):
    slow = nbformat.read(CH.source, as_version=4)
    # every cell under the per-cell limit, the whole notebook over the per-student one
    slow.cells[1:1] = [nbformat.v4.new_code_cell("import time\ntime.sleep(9)") for _ in range(10)]
    students = {
        "a_leaves": _with_cells([LEAVE]),
        "b_meets": _with_cells([MEET]),  # graded next, by the same worker (jobs=1)
        "c_control": _with_cells([LEAVE, MEET]),  # the same cells in one notebook: the trap does spring
        "d_slow": slow,  # its worker is killed at the time limit
        "e_after": _with_cells([MEET]),  # graded by the worker that replaced it
    }
    for student, nb in students.items():
        (tmp_path / "subs" / student).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "subs" / student / f"{CH.name}.ipynb")
    grade_class(CH, tmp_path / "subs", tmp_path / "out", jobs=1, progress=False, student_time_limit=60)
    results = {s: json.loads((tmp_path / "out" / s / "results.json").read_text()) for s in students}
    for student in ("a_leaves", "b_meets", "e_after"):
        assert results[student]["score"] == results[student]["max_score"] > 0, (student, results[student])
    control = {t["name"]: t["score"] for t in results["c_control"]["tests"]}
    assert control["test_softmax"] == 0 and results["c_control"]["score"] < results["c_control"]["max_score"]
    late = results["d_slow"]
    assert late["score"] == 0 and late["error"] == "grading stopped after 60 s, the time limit per student"
    rows = (tmp_path / "out" / "grades.csv").read_text().splitlines()
    assert len(rows) == 6 and any(r.startswith("d_slow,") and "time limit" in r for r in rows)
