"""One assignment's life through nbgrader's own exchange, as on an instructor's JupyterHub: the instructor releases,
two students fetch and submit (one right, one partly wrong), the instructor collects, grades with
`python -m autograder grade`, releases the feedback, and each student's `fetch_feedback` brings back their scores.

Every step but the grading is the real `nbgrader` command line, each person with a HOME and a Jupyter config of their
own; the exchange is a folder in the test's temporary directory."""
from __future__ import annotations

import concurrent.futures as futures
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.__main__ import main
from autograder.course import COURSE_ID, chapter
from autograder.grading import trusted_tests
from conftest import wrong_answers

CH = chapter("04_attention")
# The chapter's own plausible mistake that loses exactly one test cell, with the cell it loses.
MISTAKE = next(w for w in wrong_answers(CH) if len(w["loses"]) == 1 and len(w["replace"]) == 1)


def nbgrader(home: Path, cwd: Path, *args) -> str:
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
           "JUPYTER_DATA_DIR": str(home / ".local" / "share" / "jupyter"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


def answer(notebook: Path, replace: dict[str, str]) -> None:
    """What a student does in the fetched notebook: fill in every solution cell (the source's answer, or `replace`)."""
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbformat.read(CH.source, as_version=4).cells
                 if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in solutions:
            cell.source = replace.get(grade_id, solutions[grade_id])
    nbformat.write(nb, notebook)


def feedback_scores(page: str) -> tuple[float, dict[str, float]]:
    """The total and each test cell's score, as nbgrader's feedback page shows them."""
    total = re.search(rf"<h4>{CH.name} \(Score: ([\d.]+) / [\d.]+\)</h4>", page)
    cells = re.findall(r'<a href="#(test_\w+)">Test cell</a> \(Score: ([\d.]+) / [\d.]+\)', page)
    assert total and cells, "not nbgrader's feedback page"
    return float(total[1]), {name: float(score) for name, score in cells}


@pytest.mark.timeout(600)
def test_an_assignment_through_nbgraders_exchange(tmp_path, capsys):
    exchange, course = tmp_path / "exchange", tmp_path / "course"
    teacher = tmp_path / "home" / "teacher"
    students = {"alice": {}, "bob": MISTAKE["replace"]}
    exchange.mkdir()
    teacher.mkdir(parents=True)
    assert main(["release", CH.name, "--out", str(course)]) == 0
    with (course / "nbgrader_config.py").open("a") as config:
        config.write(f"c.Exchange.root = {str(exchange)!r}\n")
    nbgrader(teacher, course, "release_assignment", CH.name)

    def student(name, *steps):
        home, work = tmp_path / "home" / name, tmp_path / "work" / name
        (home / ".jupyter").mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        (home / ".jupyter" / "nbgrader_config.py").write_text(
            f"c.Exchange.root = {str(exchange)!r}\nc.CourseDirectory.course_id = {COURSE_ID!r}\n"
            f"c.CourseDirectory.student_id = {name!r}\n")
        for step in steps:
            step(home, work)

    def fetch_answer_submit(home, work, name):
        nbgrader(home, work, "fetch_assignment", CH.name)
        answer(work / CH.name / f"{CH.name}.ipynb", students[name])
        nbgrader(home, work, "submit", CH.name)

    with futures.ThreadPoolExecutor(2) as pool:  # the two students work at the same time
        list(pool.map(lambda name: student(name, lambda h, w: fetch_answer_submit(h, w, name)), students))

    nbgrader(teacher, course, "collect", CH.name)
    for name in students:
        assert (course / "submitted" / name / CH.name / f"{CH.name}.ipynb").is_file()
    assert main(["grade", CH.name, str(course / "submitted"), "--out", str(tmp_path / "grades"), "--no-progress",
                 "--nbgrader-feedback", str(course / "feedback")]) == 0
    said = capsys.readouterr().out
    assert "feedback for 2 students" in said and "note:" not in said, said
    for name in students:
        assert (course / "feedback" / name / CH.name / f"{CH.name}.html").is_file()
    nbgrader(teacher, course, "release_feedback", CH.name)

    fetched = {}
    with futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda name: student(name, lambda h, w: nbgrader(h, w, "fetch_feedback", CH.name)), students))
    for name in students:
        pages = list((tmp_path / "work" / name / CH.name / "feedback").glob(f"*/{CH.name}.html"))
        assert len(pages) == 1, f"{name} fetched {pages}"
        fetched[name] = feedback_scores(pages[0].read_text())

    points = {}
    for test_id in trusted_tests(CH):
        cell = next(c for c in nbformat.read(CH.source, as_version=4).cells
                    if c.metadata.get("nbgrader", {}).get("grade_id") == test_id)
        points[test_id] = float(cell.metadata["nbgrader"]["points"])
    assert fetched["alice"] == (sum(points.values()), points)
    bob = {**points, **{lost: 0.0 for lost in MISTAKE["loses"]}}
    assert fetched["bob"] == (sum(bob.values()), bob), MISTAKE["why"]
