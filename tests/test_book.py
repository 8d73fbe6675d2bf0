"""The book builds (warnings are errors), holds every chapter, re-executes nothing the second time, and leaves the
checkout as it was."""
from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from autograder.course import REPO

pytestmark = [pytest.mark.book, pytest.mark.xdist_group("book")]


def make(target):
    env = dict(os.environ, MAKEFLAGS="")
    return subprocess.run(["make", "--no-print-directory", target], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=1800)


def tracked_changes():
    proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                          text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


@pytest.fixture(scope="module")
def built():
    before = tracked_changes()
    first = make("book")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = make("book")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return first, second, before


def toc_files():
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))
            walk(entry.get("chapters", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    return files


def test_every_page_is_built(built):
    html = REPO / "_build" / "html"
    assert (html / "index.html").exists()
    for page in toc_files():
        assert (html / f"{page}.html").exists(), f"{page} was not built"


def test_every_chapter_has_prose_exercises_and_solutions(built):
    files = toc_files()
    for notebook in sorted((REPO / "solutions").glob("[0-9][0-9]_*.ipynb")):
        name = notebook.stem
        assert f"book/{name}" in files, f"chapter {name} has no prose page in the table of contents"
        assert f"notebooks/{name}" in files, f"chapter {name}'s exercises are not in the book"
        assert f"book/_generated/solutions/{name}_solution" in files


def test_second_build_executes_nothing(built):
    _, second, _ = built
    executed = re.findall(r"Executing.*", second.stdout + second.stderr)
    assert not executed, f"the second build executed again: {executed[:3]}"


def test_learner_notebooks_are_not_executed(built):
    page = (REPO / "_build" / "html" / "notebooks" / "04_attention.html").read_text()
    assert "NotImplementedError" in page  # shown as code ...
    assert "Traceback" not in page        # ... never run


def test_math_is_served_offline(built):
    html = REPO / "_build" / "html"
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    page = (html / "book" / "notation.html").read_text()
    assert "mathjax/tex-chtml.js" in page and "cdn.jsdelivr" not in page


def test_checkout_unchanged(built):
    _, _, before = built
    assert tracked_changes() == before, "building the book changed tracked files"
