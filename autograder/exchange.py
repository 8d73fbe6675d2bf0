"""Grades back through nbgrader's exchange: each student's feedback page where `nbgrader release_feedback` looks.

nbgrader releases `feedback/<student>/<assignment>/<notebook>.html` under the name the student's own
`fetch_feedback` will look for: a hash of the notebook's name and the secret written at submission. `collect` left
that secret (`submission_secret.txt`) and `timestamp.txt` beside each submitted notebook; they go beside the page.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from . import shards
from .classroom import find_submissions
from .course import Chapter

SUBMISSION_FILES = ("timestamp.txt", "submission_secret.txt")


def place_feedback(chapter: Chapter, submissions: Path, out: Path, feedback: Path,
                   shard: tuple[int, int] | None = None) -> tuple[int, int]:
    """Copy each student's `out/<student>/feedback.html` (this shard's students) to nbgrader's feedback folder
    `feedback/`; return how many, and how many of those lack the files release_feedback needs."""
    root = submissions.resolve()
    found = find_submissions(chapter, root)
    placed = unreleasable = 0
    for student, entry in sorted((shards.select(found, shard) if shard else found).items()):
        page = out / student / "feedback.html"
        if not entry.notebook or not page.is_file():
            continue  # nothing was submitted: there is no submission for nbgrader to attach feedback to
        notebook = root.joinpath(*entry.notebook)
        target = feedback / student / chapter.name
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(page, target / f"{notebook.stem}.html")
        complete = True
        for name in SUBMISSION_FILES:
            source = notebook.parent / name
            if source.is_file() and not source.is_symlink():  # a link could point anywhere the grader can read
                shutil.copyfile(source, target / name)
            else:
                complete = False
        placed += 1
        unreleasable += not complete
    return placed, unreleasable
