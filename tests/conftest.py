"""Shared fixtures: the chapters, and each chapter graded once as a simulated class."""
from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import nbformat
import pytest

from autograder.course import REPO, chapters

warnings.filterwarnings("ignore", module="nbgrader")
CHAPTERS = chapters()


def wrong_answers(chapter) -> list[dict]:
    path = REPO / "tests" / "wrong_answers" / f"ch{chapter.name}.py"
    if not path.exists():
        return []
    spec = importlib.util.spec_from_file_location(f"wrong_{chapter.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WRONG_ANSWERS


def with_cells(chapter, replace: dict[str, str], extra_cells: list[tuple[str, str]] = ()):
    """The solution notebook with some cells' source replaced (by grade_id), and extra code cells inserted
    after given grade_ids ((after_grade_id, source), ...)."""
    nb = nbformat.read(chapter.source, as_version=4)
    ids = {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells}
    missing = set(replace) - ids
    assert not missing, f"{chapter.name}: no cells with grade_id {sorted(missing)}"
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in replace:
            cell.source = replace[grade_id]
    for after, source in extra_cells:
        index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == after)
        nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    return nb


def grade_as_class(chapter, submissions: dict[str, object], tmp: Path, time_limit: int = 30) -> dict[str, dict]:
    """Grade notebooks (student -> NotebookNode or raw bytes) as a class; return student -> results.json."""
    from autograder.classroom import grade_class

    folder = tmp / "submitted"
    for student, nb in submissions.items():
        (folder / student).mkdir(parents=True, exist_ok=True)
        target = folder / student / f"{chapter.name}.ipynb"
        if isinstance(nb, bytes):
            target.write_bytes(nb)
        else:
            nbformat.write(nb, target)
    out = tmp / "out"
    grade_class(chapter, folder, out, jobs=2, progress=False, time_limit=time_limit)
    return {s: json.loads((out / s / "results.json").read_text()) for s in submissions}


def scores(result: dict) -> dict[str, float]:
    return {t["name"]: t["score"] for t in result["tests"]}
