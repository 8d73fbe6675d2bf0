"""`python -m autograder` as users meet it: from any folder, with good and bad input, with the contract's JSON."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import nbformat
import pytest

from autograder.course import REPO, chapter

CH = chapter("04_attention")


def run(*args, cwd="/"):
    return subprocess.run([sys.executable, "-m", "autograder", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def one_line_error(proc, *words):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("make_input, words", [
    (lambda tmp: tmp / "missing.ipynb", ["no such"]),
    (lambda tmp: tmp, ["no such notebook"]),
    (lambda tmp: _write(tmp / "04_attention.ipynb", "not json at all"), ["not a readable notebook"]),
    (lambda tmp: _write(tmp / "04_attention.ipynb", (REPO / "notebooks/04_attention.ipynb").read_text()[:500]),
     ["not a readable notebook"]),
    (lambda tmp: _write_bytes(tmp / "04_attention.ipynb", b"\x89PNG\r\n\x1a\n\x00\x00"), ["not a text file"]),
    (lambda tmp: _write(tmp / "04_attention.ipynb", json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                                "nbformat_minor": 5})), ["not a notebook of this course"]),
    (lambda tmp: _huge(tmp / "04_attention.ipynb"), ["MiB", "clear the outputs"]),
])
def test_check_rejects_bad_input_in_one_line(tmp_path, make_input, words):
    one_line_error(run("check", make_input(tmp_path), "--chapter", "04_attention"), *words)


def test_check_names_the_right_chapter(tmp_path):
    other = sorted(p for p in (REPO / "notebooks").glob("*.ipynb") if p.stem != CH.name)
    if not other:
        pytest.skip("only one chapter released")
    target = tmp_path / "04_attention.ipynb"
    target.write_bytes(other[0].read_bytes())
    one_line_error(run("check", target), "not 04_attention", other[0].stem)


def test_check_unknown_chapter(tmp_path):
    one_line_error(run("check", REPO / "notebooks/04_attention.ipynb", "--chapter", "42"), "unknown chapter")


def test_check_json_is_the_contract(tmp_path):
    proc = run("check", REPO / "notebooks/04_attention.ipynb", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) >= {"score", "max_score", "tests", "notebook", "chapter"}
    assert result["chapter"] == CH.name and result["score"] == 0 and result["max_score"] >= 10
    for test in result["tests"]:
        assert set(test) >= {"name", "score", "max_score", "output"} and test["name"].startswith("test_")
        assert test["output"] and "\n" not in test["output"]


def test_check_table_for_a_learner(tmp_path):
    proc = run("check", REPO / "solutions/04_attention.ipynb", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cells = nbformat.read(CH.source, as_version=4).cells
    points = sum(c.metadata.nbgrader.points for c in cells
                 if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata.nbgrader.get("solution"))
    assert f"score: {points:g} / {points:g}" in proc.stdout.splitlines(), proc.stdout
    assert "FAIL" not in proc.stdout, proc.stdout
    assert "sandbox: bubblewrap, no network" in proc.stdout


def test_grade_a_class_with_broken_files(tmp_path):
    subs = tmp_path / "subs"
    for student, content in {"ann": (REPO / "solutions/04_attention.ipynb").read_text(),
                             "ben": "{ truncated", "cid": None}.items():
        (subs / student).mkdir(parents=True)
        if content is not None:
            (subs / student / "04_attention.ipynb").write_text(content)
    proc = run("grade", "04_attention", subs, "--out", tmp_path / "out", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["student_id"]: r for r in csv.DictReader(open(tmp_path / "out" / "grades.csv"))}
    assert set(rows) == {"ann", "ben", "cid"}
    assert float(rows["ann"]["score"]) == float(rows["ann"]["max_score"]) > 0
    assert float(rows["ben"]["score"]) == 0 and "not a readable notebook" in rows["ben"]["error"]
    assert "no notebook" in rows["cid"]["error"]
    assert float(rows["ben"]["max_score"]) == float(rows["ann"]["max_score"])
    for student in rows:
        assert (tmp_path / "out" / student / "results.json").exists()
        assert (tmp_path / "out" / student / "feedback.html").read_text().strip()
    assert "3 students" in proc.stdout and "mean" in proc.stdout


def test_release_an_nbgrader_course(tmp_path):
    proc = run("release", "04_attention", "--out", tmp_path / "course", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    course = tmp_path / "course"
    assert (course / "nbgrader_config.py").exists() and (course / "gradebook.db").exists()
    released = course / "release" / CH.name / f"{CH.name}.ipynb"
    assert released.read_bytes() == CH.release.read_bytes()


def _write(path, text):
    path.write_text(text)
    return path


def _write_bytes(path, data):
    path.write_bytes(data)
    return path


def _huge(path):
    with open(path, "wb") as handle:
        handle.truncate(60 * 2**20)  # a sparse 60 MiB file: a notebook whose outputs ran away
    return path


@pytest.mark.unit
def test_grade_refuses_an_out_that_is_a_file(tmp_path):
    (tmp_path / "subs" / "ann").mkdir(parents=True)
    (tmp_path / "out").write_text("not a folder")
    proc = run("grade", "04_attention", tmp_path / "subs", "--out", tmp_path / "out", "--no-progress", cwd=tmp_path)
    one_line_error(proc, "is a file", "--out")
    assert (tmp_path / "out").read_text() == "not a folder"
