"""Every chapter, by COURSE.md's definition of done: structure, release, and grading that can fail.

Each chapter is graded once as a simulated class (conftest.py's `graded_class`): the solution (full marks), the
released notebook (zero), every wrong answer in tests/wrong_answers/ (exactly the listed test cells lose their
points, nothing else does), and every set of right answers in tests/right_answers/ (full marks).
"""
from __future__ import annotations

import re

import nbformat
import pytest

from autograder.execute import exercise_of, split_hidden
from autograder.release import release_notebook
from conftest import CHAPTERS, grade_as_class, right_answers, with_cells, wrong_answers

pytestmark = pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.name for c in CHAPTERS])


def cells_of(chapter):
    nb = nbformat.read(chapter.source, as_version=4)
    solutions = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    tests = [c for c in nb.cells
             if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")]
    return nb, solutions, tests


def warm_ups(chapter) -> list[str]:
    """Exercises without a test cell of their own: ungraded warm-ups (CONTRIBUTING.md), followed by a plain code cell
    that checks them with asserts, and listed with 0 points in the title table (tests/test_exercise_tables.py)."""
    _, solutions, tests = cells_of(chapter)
    graded = {exercise_of(t.metadata.nbgrader.grade_id, [c.metadata.nbgrader.grade_id for c in solutions])
              for t in tests}
    return [c.metadata.nbgrader.grade_id for c in solutions if c.metadata.nbgrader.grade_id not in graded]


def test_structure(chapter):
    nb, solutions, tests = cells_of(chapter)
    warm = warm_ups(chapter)
    exercises = [c.metadata.nbgrader.grade_id for c in solutions if c.metadata.nbgrader.grade_id not in warm]
    assert len(exercises) >= 4, f"{chapter.name}: {len(exercises)} graded exercises, want at least 4"
    for name in warm:
        at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == name)
        after = next((c for c in nb.cells[at + 1:] if c.cell_type == "code"), None)
        assert after is not None and not after.metadata.get("nbgrader", {}).get("grade") and "assert" in after.source \
            and name in after.source, f"{chapter.name}: warm-up {name} should be followed by a code cell that checks it"
    points = sum(c.metadata.nbgrader.points for c in tests)
    assert points >= 10, f"{chapter.name}: {points} points, want at least 10"
    assert nb.metadata.kernelspec.name == "python3" and "jupytext" not in nb.metadata
    for cell in nb.cells:
        assert not cell.get("outputs"), f"{chapter.name}: solutions are committed without outputs"
    title = nb.cells[0].source
    for exercise in exercises:
        assert exercise in title, f"{chapter.name}: the title cell should list exercise {exercise}"
        assert "### BEGIN SOLUTION" in next(c.source for c in solutions if c.metadata.nbgrader.grade_id == exercise)
    for test in tests:
        grade_id = test.metadata.nbgrader.grade_id
        assert re.match(r"^test_", grade_id), grade_id
        assert any(grade_id == f"test_{e}" or grade_id.startswith(f"test_{e}_") for e in exercises), (
            f"{chapter.name}: {grade_id} does not name an exercise ({exercises})")
        visible, hidden = split_hidden(test.source)
        assert hidden.strip(), f"{chapter.name}: {grade_id} has no hidden tests"
        assert f"ch{chapter.name}" in hidden, f"{chapter.name}: {grade_id}'s hidden tests should call its checks"
    for exercise in exercises:
        own = [t for t in tests if re.match(rf"^test_{re.escape(exercise)}($|_)", t.metadata.nbgrader.grade_id)]
        assert own, f"{chapter.name}: exercise {exercise} has no test cell"
        assert any(split_hidden(t.source)[0].strip() for t in own), f"{chapter.name}: {exercise} has no visible test"


def test_release_is_current(chapter, tmp_path):
    fresh = release_notebook(chapter, tmp_path / f"{chapter.name}.ipynb")
    assert chapter.release.exists(), f"notebooks/{chapter.name}.ipynb is missing: run `make release`"
    assert fresh.read_bytes() == chapter.release.read_bytes(), (
        f"notebooks/{chapter.name}.ipynb differs from a fresh release of solutions/: run `make release`")
    released = nbformat.read(chapter.release, as_version=4)
    text = nbformat.writes(released)
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    assert all(not c.get("outputs") for c in released.cells)


def test_wrong_answers_cover_every_test(chapter):
    _, _, tests = cells_of(chapter)
    wrong = wrong_answers(chapter)
    alone = {w["loses"][0] for w in wrong if len(w["loses"]) == 1}
    for test in tests:
        grade_id = test.metadata.nbgrader.grade_id
        assert grade_id in alone, f"{chapter.name}: no wrong answer loses exactly {grade_id} (and nothing else)"


@pytest.mark.unit
def test_wrong_answers_lose_only_their_own_exercise(chapter):
    """Each test cell charges only its own exercise: every cell a wrong answer loses belongs to an exercise the wrong
    answer replaced (test_wrong_answers_lose_exactly_their_tests checks that nothing else is lost). A test cell's
    exercise is read from its grade_id, as the grader reads it."""
    _, solutions, _ = cells_of(chapter)
    exercises = [c.metadata.nbgrader.grade_id for c in solutions]
    problems = [f"wrong answer {i} ({w['why']}) loses {t}, a test of {exercise_of(t, exercises)}, but replaces only "
                f"{sorted(w['replace'])}"
                for i, w in enumerate(wrong_answers(chapter)) for t in w["loses"]
                if exercise_of(t, exercises) not in w["replace"]]
    assert not problems, "\n".join(problems)


def test_solution_gets_full_marks(chapter, graded_class):
    solution = graded_class(chapter).results["solution"]
    assert solution["score"] == solution["max_score"] > 0, (
        "solution lost points: " + "; ".join(t["output"] for t in solution["tests"] if t["score"] < t["max_score"]))


def test_released_notebook_gets_zero_with_a_reason_on_every_test(chapter, graded_class):
    released = graded_class(chapter).results["released"]
    assert released["score"] == 0 and released["tests"]
    assert all(t["output"] for t in released["tests"]), "every failed test must say why"


def test_wrong_answers_lose_exactly_their_tests(chapter, graded_class, tmp_path):
    graded = graded_class(chapter)
    wrong, solution = graded.wrong, graded.results["solution"]
    assert solution["score"] == solution["max_score"], "the solution lost points (test_solution_gets_full_marks)"
    suspects = []
    for g, group in enumerate(graded.groups):
        expected = sorted({t for i in group for t in wrong[i]["loses"]})
        if graded.losses(graded.results[f"group{g:02d}"]) != expected:
            suspects += group
    problems = []
    result_of = {i: graded.results[f"group{g:02d}"] for g, group in enumerate(graded.groups) for i in group}
    if suspects:
        alone = grade_as_class(chapter, {f"wrong{i:02d}": with_cells(chapter, wrong[i]["replace"]) for i in suspects},
                               tmp_path / "alone")
        for i in suspects:
            result_of[i] = alone[f"wrong{i:02d}"]
            lost = graded.losses(alone[f"wrong{i:02d}"])
            if lost != sorted(wrong[i]["loses"]):
                detail = "; ".join(t["output"] for t in alone[f"wrong{i:02d}"]["tests"] if t["score"] == 0)[:600]
                problems.append(f"wrong answer {i} ({wrong[i]['why']}): lost {lost}, expected "
                                f"{sorted(wrong[i]['loses'])} [{detail}]")
    # the message a wrong answer must produce (`says`): in one of the cells it loses
    for i, answer in enumerate(wrong):
        outputs = [t["output"] or "" for t in result_of[i]["tests"] if t["name"] in answer["loses"]]
        if "says" in answer and not any(answer["says"] in out for out in outputs):
            problems.append(f"wrong answer {i} ({answer['why']}) should say {answer['says']!r}; it said "
                            + " | ".join(outputs)[:600])
    assert not problems, "\n".join(problems)


def test_every_lost_point_has_a_reason(chapter, graded_class):
    for result in graded_class(chapter).results.values():
        for test in result["tests"]:
            assert test["score"] == test["max_score"] or test["output"], f"a lost test without a reason: {test}"


def test_right_answers_cover_every_exercise(chapter):
    _, solutions, _ = cells_of(chapter)
    sets = right_answers(chapter)
    for exercise in (c.metadata.nbgrader.grade_id for c in solutions):
        variants = {sets[name][exercise] for name in sets if exercise in sets[name]}
        assert len(variants) >= 2, f"{chapter.name}: {exercise} has {len(variants)} right-answer variants, want 2"


def test_right_answers_get_full_marks(chapter, graded_class):
    graded = graded_class(chapter)
    problems = []
    for name in graded.right:
        for test in graded.results[f"right_{name}"]["tests"]:
            if test["score"] < test["max_score"]:
                problems.append(f"right answers {name!r}: {test['name']} scored {test['score']}/{test['max_score']}: "
                                f"{test['output'][:400]}")
    assert not problems, "\n".join(problems)


def test_dtype_policy_stated(chapter):
    """Every notebook states the same dtype policy, right after its setup cell (CONTRIBUTING.md)."""
    nb = nbformat.read(chapter.source, as_version=4)
    policy = [c for c in nb.cells if c.get("id") == "dtype-policy"]
    assert len(policy) == 1 and policy[0].cell_type == "markdown", f"{chapter.name}: no dtype-policy cell"
    first = nbformat.read(CHAPTERS[0].source, as_version=4)
    assert policy[0].source == next(c.source for c in first.cells if c.get("id") == "dtype-policy"), (
        f"{chapter.name}: the dtype-policy cell differs from chapter 1's")
    index = nb.cells.index(policy[0])
    assert nb.cells[index - 1].metadata.get("nbgrader", {}).get("grade_id") == "setup"
