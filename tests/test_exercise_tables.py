"""What a learner is told about points and time agrees with what is graded.

The points of record are the test cells' nbgrader metadata; the notebook's first cell (a table: exercise, points,
time, difficulty), each exercise's heading ("(3 points · about 20 minutes · medium)") and the chapter's book page
("18 points, about 1 h 10 min") restate them for the reader. These tests read all four, so a change of points in
the metadata fails here until the prose follows.
"""
from __future__ import annotations

import re

import nbformat
import pytest

from autograder.course import REPO
from conftest import CHAPTERS

pytestmark = [pytest.mark.unit, pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.name for c in CHAPTERS])]

DIFFICULTIES = ("easy", "medium", "hard")
ROW = re.compile(r"^\|\s*(\d+)\s*\|(.*)\|\s*(\d+)\s*\|\s*(\d+) min\s*\|\s*(\w+)\s*\|\s*$")
TOTAL = re.compile(r"^\|\s*\|\s*\*\*total\*\*\s*\|\s*\*\*(\d+)\*\*\s*\|\s*about ([^|]+?)\s*\|\s*\|\s*$")
# a warm-up (no test cell: 0 points) says so instead of its points
HEADING = re.compile(r"\((?:([\d +]+) points?|warm-up, not graded) · about (\d+) minutes · (easy|medium|hard)\)")


def duration(minutes):
    """90 -> '1 h 30 min', 120 -> '2 h', 45 -> '45 min': how the table's total and the book page write a time."""
    hours, rest = divmod(minutes, 60)
    return " ".join(part for part in (f"{hours} h" if hours else "", f"{rest} min" if rest else "") if part)


def exercise_points(nb):
    """{exercise grade_id: points of its test cells}, exercises in notebook order."""
    exercises = [c.metadata.nbgrader.grade_id for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    points = dict.fromkeys(exercises, 0)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            owner = max((e for e in exercises if re.match(rf"^test_{re.escape(e)}($|_)", meta["grade_id"])), key=len)
            points[owner] += meta["points"]
    return points


def title_table(nb):
    """{exercise: (points, minutes, difficulty)} and (total points, total time) from the first cell's table."""
    rows, total = {}, None
    for line in nb.cells[0].source.splitlines():
        if match := ROW.match(line):
            name = re.search(r"`(\w+)", match[2])[1]
            rows[name] = (int(match[3]), int(match[4]), match[5])
        elif match := TOTAL.match(line):
            total = (int(match[1]), match[2])
    return rows, total


def test_title_table_matches_the_metadata(chapter):
    nb = nbformat.read(chapter.source, as_version=4)
    points = exercise_points(nb)
    rows, total = title_table(nb)
    assert list(rows) == list(points), f"{chapter.name}: the title table lists {list(rows)}, the notebook has {list(points)}"
    for exercise, (pts, _, difficulty) in rows.items():
        assert pts == points[exercise], f"{chapter.name}: the table gives {exercise} {pts} points, its tests {points[exercise]}"
        assert difficulty in DIFFICULTIES, f"{chapter.name}: {exercise}'s difficulty {difficulty!r}"
    minutes = sum(m for _, m, _ in rows.values())
    assert total == (sum(points.values()), duration(minutes)), (
        f"{chapter.name}: the total row says {total}; the tests give {sum(points.values())} points and the rows "
        f"{duration(minutes)}")


def test_exercise_headings_state_points_time_and_difficulty(chapter):
    """Each exercise's heading (the last one before its solution cell) agrees with the title table."""
    nb = nbformat.read(chapter.source, as_version=4)
    rows, _ = title_table(nb)
    heading, covers = None, {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    heading = line
        elif cell.metadata.get("nbgrader", {}).get("solution"):
            covers.setdefault(heading, []).append(cell.metadata.nbgrader.grade_id)
    for line, exercises in covers.items():
        match = HEADING.search(line or "")
        assert match, f"{chapter.name}: the heading of {exercises} gives no '(N points · about M minutes · level)': {line!r}"
        stated = sum(int(n) for n in (match[1] or "0").replace("+", " ").split())
        assert stated == sum(rows[e][0] for e in exercises), f"{chapter.name}: {line!r} vs the table's points"
        assert int(match[2]) == sum(rows[e][1] for e in exercises), f"{chapter.name}: {line!r} vs the table's minutes"
        if len(exercises) == 1:
            assert match[3] == rows[exercises[0]][2], f"{chapter.name}: {line!r} vs the table's difficulty"


def test_book_page_states_the_total(chapter):
    nb = nbformat.read(chapter.source, as_version=4)
    _, (points, time) = title_table(nb)
    page = " ".join((REPO / "book" / f"{chapter.name}.md").read_text(encoding="utf-8").split())
    stated = f"{points} points, about {time}" in page
    assert stated, (
        f"book/{chapter.name}.md should say '{points} points, about {time}' (from the notebook)")
