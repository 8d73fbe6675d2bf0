"""From `solutions/` to what learners and readers get, with nbgrader's own converter and preprocessors.

- `release_notebook`: the learner notebook (`notebooks/NN_name.ipynb`), by `nbgrader generate_assignment`.
- `book_solution`: the executed-solution page for self-study readers: solutions kept, hidden tests removed.
- `instructor_course`: a ready nbgrader course folder for instructors who run their own nbgrader or JupyterHub.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import nbformat
from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import ClearHiddenTests, ClearOutput

from .course import REPO, Chapter, nbgrader_config, stage_course

BOOK_SOLUTIONS = REPO / "book" / "_generated" / "solutions"


@contextlib.contextmanager
def quiet_logs():
    """nbgrader logs every step at INFO; a release prints only what went wrong."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def generate(root: Path, chapter: Chapter) -> Path:
    """Run nbgrader's GenerateAssignment for one chapter in the course folder `root`; return the released notebook.

    The gradebook it writes there records the hidden tests, which autograding restores from it."""
    stage_course(root, chapter)
    config = nbgrader_config(root)
    config.CourseDirectory.assignment_id = chapter.name
    converter = GenerateAssignment(coursedir=CourseDirectory(config=config), config=config)
    with quiet_logs():
        converter.start()
    released = root / "release" / chapter.name / f"{chapter.name}.ipynb"
    if not released.exists():
        raise RuntimeError(f"nbgrader produced no release for {chapter.name}")
    return released


def release_notebook(chapter: Chapter, destination: Path | None = None) -> Path:
    """Regenerate the learner notebook. Byte-for-byte stable: same source, same file."""
    destination = destination or chapter.release
    with tempfile.TemporaryDirectory(prefix="release-") as tmp:
        released = generate(Path(tmp), chapter)
        nb = nbformat.read(released, as_version=4)
    destination.parent.mkdir(parents=True, exist_ok=True)
    write_notebook(nb, destination)
    return destination


def write_notebook(nb, path: Path) -> None:
    text = nbformat.writes(nb) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def book_solution(chapter: Chapter) -> Path:
    """The solution as the book shows it: hidden tests cleared (nbgrader's preprocessor), outputs cleared for execution."""
    nb = nbformat.read(chapter.source, as_version=4)
    resources: dict = {}
    nb, resources = ClearHiddenTests().preprocess(nb, resources)
    nb, resources = ClearOutput().preprocess(nb, resources)
    nb.metadata["title"] = f"Solutions: {chapter.name}"
    target = BOOK_SOLUTIONS / f"{chapter.name}_solution.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_notebook(nb, target)
    return target


def instructor_course(chapters: list[Chapter], out: Path) -> Path:
    """A complete nbgrader course folder: source/, release/, a gradebook that knows the assignments, nbgrader_config.py."""
    out.mkdir(parents=True, exist_ok=True)
    for chapter in chapters:
        generate(out, chapter)
    (out / "nbgrader_config.py").write_text(
        "# Written by `python -m autograder release`: a course folder in nbgrader's default layout.\n"
        "c = get_config()  # noqa\n"
        f"c.CourseDirectory.course_id = {nbgrader_config(out).CourseDirectory.course_id!r}\n"
        "c.CourseDirectory.root = __import__('os').path.dirname(__file__)\n"
        "c.ClearSolutions.code_stub = {'python': '# YOUR CODE HERE\\nraise NotImplementedError()'}\n"
        "c.Execute.timeout = 30\n"
        "c.OverwriteCells.add_missing_cells = True\n"
    )
    return out
