"""The course as nbgrader sees it: which chapters exist, where their notebooks live, and nbgrader's configuration.

The repository keeps one flat folder per role (`solutions/NN_name.ipynb`, `notebooks/NN_name.ipynb`). nbgrader wants
`<root>/<step>/<assignment>/<notebook>.ipynb`; every nbgrader run therefore happens in a course folder laid out the
way nbgrader expects (`stage_course`), with the chapter as both the assignment and the notebook name.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
NOTEBOOKS = REPO / "notebooks"
COURSE_ID = "transformers-from-scratch"
CHAPTER_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+$")
# Files a chapter's notebook reads, as (path under the learner's home, path in this repository): the sandboxed kernel
# sees these and nothing else of the repository. Chapter 7 finds `data/corpus.txt` in a parent of its working folder.
DATA = {"07_training": {"data/corpus.txt": "data/corpus.txt"}}

# nbgrader runs the `alembic` executable from PATH when it opens a gradebook, and runs notebooks with the `python3`
# kernel: both must be this environment's, wherever the command was started from.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")


class CourseError(Exception):
    """Something a user asked for does not exist or cannot be done; the message is the one line they read."""


@dataclass(frozen=True)
class Chapter:
    name: str  # e.g. "04_attention": nbgrader's assignment id and notebook id

    @property
    def number(self) -> int:
        return int(self.name[:2])

    @property
    def source(self) -> Path:
        return SOLUTIONS / f"{self.name}.ipynb"

    @property
    def release(self) -> Path:
        return NOTEBOOKS / f"{self.name}.ipynb"

    @property
    def data(self) -> dict[str, str]:
        """The chapter's declared data files: path under the learner's home -> absolute path here."""
        return {inside: str(REPO / here) for inside, here in DATA.get(self.name, {}).items()}

    @property
    def checks_module(self) -> str:
        return f"autograder.checks.ch{self.name}"


def chapters() -> list[Chapter]:
    return [Chapter(p.stem) for p in sorted(SOLUTIONS.glob("*.ipynb")) if CHAPTER_NAME.match(p.stem)]


def chapter(name_or_number: str) -> Chapter:
    """Accepts '04_attention', '04', '4' or a notebook path."""
    text = Path(str(name_or_number)).stem
    for ch in chapters():
        if text == ch.name or (text.isdigit() and int(text) == ch.number):
            return ch
    known = ", ".join(c.name for c in chapters())
    raise CourseError(f"unknown chapter '{name_or_number}'; the chapters are: {known}")


def nbgrader_config(root: Path, time_limit: int = 30) -> Config:
    """nbgrader's settings for this course, for a course folder at `root` with nbgrader's default layout."""
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = COURSE_ID
    c.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.ClearSolutions.enforce_metadata = True
    c.Execute.timeout = time_limit
    c.Execute.interrupt_on_timeout = True
    c.OverwriteCells.add_missing_cells = True
    c.Autograde.create_student = True
    c.Exchange.assignment_dir = str(root)
    return c


def stage_course(root: Path, chapter: Chapter) -> Path:
    """Lay out `root` as an nbgrader course with this chapter's source notebook; return the notebook's new path."""
    folder = root / "source" / chapter.name
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{chapter.name}.ipynb"
    shutil.copyfile(chapter.source, target)
    return target
