"""The book builds (warnings are errors), holds every chapter, re-executes nothing the second time, and leaves the
checkout as it was. `make book-record` (a dependency of `make test`) built it before pytest started; these tests read
its record and `_build/html` (see tests/book_build.py)."""
from __future__ import annotations

import re

import pytest
import yaml

from autograder.course import REPO
from book_build import HTML, recorded

pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def record():
    return recorded()


@pytest.fixture(scope="module")
def built(record):
    assert record.ok, record.failure()
    return record


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


def test_book_builds_without_warnings(record):
    log = re.sub(r"\x1b\[[0-9;]*m", "", record.log("first"))  # Sphinx colours its log
    warnings = re.findall(r"^.*\b(?:WARNING|ERROR|CRITICAL): .*$", log, re.M)  # Sphinx's (not a kernel's "WARNING |")
    assert not warnings, f"{len(warnings)} warnings (errors under -W):\n" + "\n".join(warnings[:40])
    assert record.ok, record.failure()


def test_every_page_is_built(built):
    assert (HTML / "index.html").exists()
    for page in toc_files():
        assert (HTML / f"{page}.html").exists(), f"{page} was not built"


def test_every_chapter_has_prose_exercises_and_solutions(built):
    files = toc_files()
    for notebook in sorted((REPO / "solutions").glob("[0-9][0-9]_*.ipynb")):
        name = notebook.stem
        assert f"book/{name}" in files, f"chapter {name} has no prose page in the table of contents"
        assert f"notebooks/{name}" in files, f"chapter {name}'s exercises are not in the book"
        assert f"book/_generated/solutions/{name}_solution" in files


def test_second_build_executes_nothing(built):
    executed = re.findall(r"Executing.*", built.log("second"))
    assert not executed, f"the second build executed again: {executed[:3]}"


def test_learner_notebooks_are_not_executed(built):
    page = (HTML / "notebooks" / "04_attention.html").read_text()
    assert "NotImplementedError" in page  # shown as code ...
    assert "Traceback" not in page        # ... never run


def test_math_is_served_offline(built):
    assert (HTML / "_static" / "mathjax" / "tex-chtml.js").exists()
    page = (HTML / "book" / "notation.html").read_text()
    assert "mathjax/tex-chtml.js" in page and "cdn.jsdelivr" not in page


def test_checkout_unchanged(built):
    assert built.after == built.before, f"building the book changed tracked files:\n{built.changed}"
