"""The book builds (warnings are errors), holds every chapter, re-executes nothing the second time, and leaves the
checkout as it was."""
from __future__ import annotations

import re

import pytest
import yaml

from autograder.course import REPO
from book_build import built, tracked_changes  # noqa: F401  (the shared build fixture)

pytestmark = [pytest.mark.book, pytest.mark.xdist_group("book")]


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
