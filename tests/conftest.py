"""Shared fixtures (each chapter's class graded once per run: `graded_class`), the `unit` mark, and how the tests are
spread over xdist's workers.

Cost tiers: tests marked `unit` run in seconds without a kernel, a book or a subprocess that grades (`make test-fast`);
`book` and `browser` tests read the book that `make book-record` built before pytest started; everything else grades.

Workers (`make test`: `pytest -n 2 --dist loadscope`): a scope, the unit that one worker runs whole, is a test file,
so that a file's module-scoped fixture (a class graded once for all its tests) is built once; except that tests
parametrized by a chapter (`[04_attention]` in their id) form one scope per chapter, whatever their file, so the
chapters are spread over the workers and `graded_class(chapter)` is graded once, on the worker that runs them.
"""
from __future__ import annotations

import importlib.util
import json
import re
import warnings
from pathlib import Path

import nbformat
import pytest

from autograder.course import REPO, chapters

warnings.filterwarnings("ignore", module="nbgrader")
CHAPTERS = chapters()
UNIT_TIMEOUT = 60  # a `unit` test that needs more is not one (seconds, generous for a loaded machine)


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_ChapterScopes(), "chapter-scopes")


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("unit") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT))


def scope_of(nodeid: str) -> str:
    """The test file, or `chapter:NAME` for a test whose parameters include a chapter name."""
    params = re.search(r"\[(.*)\]$", nodeid)
    names = {c.name for c in CHAPTERS}
    for part in params.group(1).split("-") if params else ():
        if part in names:
            return f"chapter:{part}"
    return nodeid.split("::", 1)[0]


class _ChapterScopes:
    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config, log):
        if config.getvalue("dist") != "loadscope":
            return None
        from xdist.scheduler import LoadScopeScheduling

        class FileOrChapterScheduling(LoadScopeScheduling):
            def _split_scope(self, nodeid):
                return scope_of(nodeid)

        return FileOrChapterScheduling(config, log)


def wrong_answers(chapter) -> list[dict]:
    path = REPO / "tests" / "wrong_answers" / f"ch{chapter.name}.py"
    if not path.exists():
        return []
    spec = importlib.util.spec_from_file_location(f"wrong_{chapter.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WRONG_ANSWERS


def right_answers(chapter) -> dict[str, dict[str, str]]:
    """`tests/right_answers/chNN_name.py`'s RIGHT_ANSWERS: variant set name -> {solution grade_id: source}."""
    path = REPO / "tests" / "right_answers" / f"ch{chapter.name}.py"
    if not path.exists():
        return {}
    spec = importlib.util.spec_from_file_location(f"right_{chapter.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RIGHT_ANSWERS


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


def pack(wrong: list[dict]) -> list[list[int]]:
    """Wrong answers that replace different cells and lose different tests can share one notebook: each still loses
    exactly its own tests (a function's tests use references for the functions it calls), and the class is graded
    in a fraction of the runs. A group that doesn't add up is re-graded one answer at a time (see test_chapters)."""
    groups: list[list[int]] = []
    for i, answer in enumerate(wrong):
        for group in groups:
            cells = {c for j in group for c in wrong[j]["replace"]}
            lost = {t for j in group for t in wrong[j]["loses"]}
            # an answer that must lose nothing (a warm-up's) goes where nothing is expected to be lost: beside
            # another's expected losses, a cell it wrongly cost would go unseen
            if bool(answer["loses"]) != bool(lost):
                continue
            if not cells & set(answer["replace"]) and not lost & set(answer["loses"]):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


class GradedClass:
    """A chapter's simulated class, graded: "solution", "released", "groupNN" for each group of wrong answers, and
    "right_X" for each set X of right answers (every exercise replaced by a correct variant in another idiom)."""

    def __init__(self, chapter, tmp: Path):
        self.chapter = chapter
        self.wrong = wrong_answers(chapter)
        self.groups = pack(self.wrong)
        self.right = right_answers(chapter)
        submissions = {"solution": nbformat.read(chapter.source, as_version=4),
                       "released": nbformat.read(chapter.release, as_version=4)}
        for g, group in enumerate(self.groups):
            replace = {k: v for i in group for k, v in self.wrong[i]["replace"].items()}
            submissions[f"group{g:02d}"] = with_cells(chapter, replace)
        for name, replace in self.right.items():
            submissions[f"right_{name}"] = with_cells(chapter, replace)
        self.results = grade_as_class(chapter, submissions, tmp)

    def losses(self, result: dict) -> list[str]:
        """The tests on which `result` scored less than the solution."""
        full, got = scores(self.results["solution"]), scores(result)
        return sorted(name for name in full if got.get(name, 0) < full[name])


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory):
    """`graded_class(chapter)`: the chapter's GradedClass, graded on first use and shared by every test file after.

    Give a test that uses it a parameter named after the chapter (parametrize by CHAPTERS, ids = their names): the
    scheduler above then runs it on the worker that holds that chapter's class, and the class is graded once per run.
    """
    graded: dict[str, GradedClass | Exception] = {}

    def grade(chapter) -> GradedClass:
        if chapter.name not in graded:
            try:
                graded[chapter.name] = GradedClass(chapter, tmp_path_factory.mktemp(f"class-{chapter.name}"))
            except Exception as error:  # graded once even when grading fails: each test reports the same error
                graded[chapter.name] = error
        if isinstance(graded[chapter.name], Exception):
            raise graded[chapter.name]
        return graded[chapter.name]

    return grade
