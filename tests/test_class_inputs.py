"""What `grade` reads and what it writes, when the submissions folder and the notebooks in it are hostile.

Inputs: every entry under SUBMISSIONS gets exactly one row (graded, or one line saying why not); odd student ids are
graded when they are safe as folder names (`müller`, `jane.doe@uni.edu`) and refused by name otherwise; links are
refused, never followed, so neither `solutions/` nor `/etc/passwd` is read. Outputs: feedback without hidden tests and
without the learner's script; a grades.csv in which no cell is a spreadsheet formula; results.json with names, points
and messages only. And `check` reports, never crashes, on notebooks that break nbgrader or the kernel's restart.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import nbformat
import pytest

from autograder.classroom import grade_class, spreadsheet_safe, student_id_problem
from autograder.course import REPO, chapter
from conftest import with_cells

CH = chapter("04_attention")
# The chapter's total, from the source's test cells (the points of record), not a copy of it.
CH_POINTS = sum(c.metadata.nbgrader.points for c in nbformat.read(CH.source, as_version=4).cells
                if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata.nbgrader.get("solution"))
pytestmark = pytest.mark.xdist_group("class_inputs")

PWNED = "pwned-by-learner"
HOSTILE_CELLS = [
    # Markdown with a script, an inline handler and a javascript: link
    ("markdown", f"<script>document.title = '{PWNED}';</script>\n\n<b onmouseover=\"document.title='{PWNED}'\">hi</b>"
                 f" [click](javascript:document.title='{PWNED}')"),
    # an output whose text/html carries <img onerror>, a JavaScript output, and an image whose metadata would
    # break out of the <img> tag
    ("code", "from IPython.display import HTML, Javascript, display\n"
             f"display(HTML('<img src=x onerror=\"document.title=\\'{PWNED}\\'\"><script>document.title=\\'{PWNED}\\'"
             "</script>'))\n"
             f"display(Javascript(\"document.title='{PWNED}'\"))\n"
             "import base64\n"
             "png = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==')\n"
             f"display({{'image/png': png}}, raw=False, metadata={{'width': '1 onerror=document.title=`{PWNED}`'}})\n"),
    # a raw cell is copied into HTML as it is unless the grader says otherwise
    ("raw", f"<script>document.title='{PWNED}'</script>"),
]


def hostile_solution():
    nb = with_cells(CH, {})
    for kind, source in HOSTILE_CELLS:
        maker = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell,
                 "raw": nbformat.v4.new_raw_cell}[kind]
        nb.cells.insert(3, maker(source))
    return nb


def build_class(folder):
    """Each entry and the exact row it must get: (score or None if not graded, words its reason must contain)."""
    released = nbformat.read(CH.release, as_version=4)
    full = None  # filled in below from the solution's max score
    entries = {
        "ann": (hostile_solution(), "full", []),
        "müller": (released, 0, []),
        "jane.doe@uni.edu": (released, 0, []),
        "jane doe": (released, None, ["student id", "a space"]),
        "-dash": (released, None, ["student id", "starts with '-'"]),
        "=HYPERLINK(\"x\")": (released, None, ["student id", "starts with '='"]),
        "eve": ({"=1+2*3.ipynb": b"{ not json"}, None, ["=1+2*3.ipynb", "not a readable notebook"]),
        "two": ({"a.ipynb": b"{}", "b.ipynb": b"{}"}, None, ["several notebooks", "a.ipynb, b.ipynb"]),
        "empty": ({}, None, ["empty folder"]),
        "notes": ({"notes.txt": b"hello"}, None, ["no notebook", "notes.txt"]),
        "stray.txt": (b"a stray file", None, ["a file, not a student folder"]),
        "linked": (REPO / "solutions", None, ["symbolic link", "refused"]),
        "passwd": ({"04_attention.ipynb": "/etc/passwd"}, None, ["04_attention.ipynb is a symbolic link"]),
        "nested": ({"04_attention": REPO / "solutions"}, None, ["04_attention is a symbolic link"]),
    }
    folder.mkdir(parents=True)
    for name, (content, _, _) in entries.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, os.PathLike):
            path.symlink_to(content)
        elif isinstance(content, dict) and not isinstance(content, nbformat.NotebookNode):
            path.mkdir()
            for file, data in content.items():
                if isinstance(data, bytes):
                    (path / file).write_bytes(data)
                else:
                    (path / file).symlink_to(data)
        else:
            path.mkdir()
            nbformat.write(content, path / f"{CH.name}.ipynb")
    return {name: (score, words) for name, (_, score, words) in entries.items()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("class-inputs")
    expected = build_class(tmp / "submitted")
    summary = grade_class(CH, tmp / "submitted", tmp / "out", jobs=2, progress=False, time_limit=15)
    return tmp / "out", expected, summary


def rows_of(out):
    with open(out / "grades.csv", newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.mark.timeout(600)
def test_every_entry_gets_its_exact_row(graded):
    out, expected, summary = graded
    header, *rows = rows_of(out)
    by_id = {}
    for row in rows:
        record = dict(zip(header, row))
        by_id[record["student_id"]] = record
    assert len(rows) == len(by_id) == len(expected), "one row per entry under SUBMISSIONS"
    assert set(by_id) == {spreadsheet_safe(name) for name in expected}
    ann_max = float(by_id["ann"]["max_score"])
    for name, (score, words) in expected.items():
        record = by_id[spreadsheet_safe(name)]
        assert float(record["max_score"]) == ann_max > 0, name
        if score is None:
            assert float(record["score"]) == 0 and record["error"], f"{name}: should be refused with a reason"
            for word in words:
                assert word in record["error"], f"{name}: {record['error']!r} should say {word!r}"
        else:
            want = ann_max if score == "full" else score
            assert record["error"] == "" and float(record["score"]) == want, f"{name}: {record}"
    assert f"{len(expected)} students, 3 graded" in summary


def test_nothing_outside_submissions_was_read(graded):
    out, expected, _ = graded
    passwd = open("/etc/passwd").readline().strip()
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert passwd not in text, f"{path} holds a line of /etc/passwd"
            assert "BEGIN HIDDEN TESTS" not in text, path
            if path.parent.name != "ann":  # ann submitted the solution notebook itself: its markers are hers
                assert "### BEGIN SOLUTION" not in text, f"{path} shows the solutions"
    # output folders only for safe ids; none for refused names, links or stray files
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == sorted(["ann", "müller", "jane.doe@uni.edu", "eve", "two", "empty", "notes", "passwd",
                              "nested"])
    assert not any(p.is_symlink() for p in out.rglob("*"))


def test_csv_has_no_formula(graded):
    out, _, _ = graded
    for row in rows_of(out):
        for cell in row:
            assert not cell.lstrip(" ").startswith(("=", "+", "-", "@", "\t", "\r")), f"formula cell {cell!r}"
    assert "'=1+2*3.ipynb is not a readable notebook" in (out / "grades.csv").read_text(encoding="utf-8")


def test_results_json_holds_names_points_and_messages(graded):
    out, _, _ = graded
    for results in out.glob("*/results.json"):
        data = json.loads(results.read_text())
        assert set(data) <= {"notebook", "chapter", "score", "max_score", "tests", "error", "output", "sandbox",
                             "events"}, results
        assert "/" not in data["notebook"]
        for test in data["tests"]:
            assert set(test) == {"name", "score", "max_score", "output"}
        text = json.dumps(data)
        assert "/tmp/" not in text and str(REPO) not in text and "HIDDEN TESTS" not in text, results
        assert all(isinstance(v, (str, bool, int)) for v in data["sandbox"].values())


class Elements(HTMLParser):
    """Every element of a page as (tag, attributes), and the text inside each <script>."""

    def __init__(self, page):
        super().__init__(convert_charrefs=True)
        self.elements, self.scripts, self._in_script = [], [], False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append(json.dumps(dict(attrs), sort_keys=True))

    def handle_endtag(self, tag):
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def test_feedback_has_no_hidden_tests_and_no_learner_script(graded):
    out, _, _ = graded
    page = (out / "ann" / "feedback.html").read_text()
    clean = (out / "müller" / "feedback.html").read_text()
    assert "test_softmax" in page and "### BEGIN HIDDEN TESTS" not in page
    assert "autograder.checks" not in page and "checks.test_softmax" not in page
    hostile, plain = Elements(page), Elements(clean)
    assert sorted(hostile.scripts) == sorted(plain.scripts), "only the template's own scripts"
    for tag, attrs in hostile.elements:
        handlers = [name for name in attrs if name.lower().startswith("on")]
        assert not handlers, f"<{tag}> has event handlers {handlers}"
        for name in ("href", "src", "action", "formaction"):
            assert not (attrs.get(name) or "").strip().lower().startswith("javascript:"), f"<{tag} {name}=...>"
    assert PWNED in page, "the learner's text is shown (as text), not dropped silently"


@pytest.mark.browser
def test_feedback_runs_no_learner_script_in_a_browser(graded, tmp_path):
    from test_browser import CHROMIUM, CHROMIUM_ARGS, chromium_or_skip

    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    out, _, _ = graded
    page_file = out / "ann" / "feedback.html"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                       else route.abort())
            page.goto(page_file.as_uri(), wait_until="load")
            page.wait_for_timeout(500)
            title = page.title()
            shown = page.inner_text("body")
        finally:
            browser.close()
    assert PWNED not in title, "a learner's script ran in the feedback page"
    # the hostile cells were loaded and are on the page, as inert text: the test isn't passing on an empty page
    assert f"document.title='{PWNED}'" in shown and "onerror" in shown


@pytest.mark.unit
@pytest.mark.parametrize("name, problem", [
    ("ann", None), ("müller", None), ("jane.doe@uni.edu", None), ("김철수", None), ("s123", None),
    ("jane doe", "a space"), ("-dash", "starts with '-'"), (".hidden", "starts with '.'"),
    ("a/b", "'/'"), ("x*", "'*'"), ("tab\there", "a tab"), ("a" * 65, "65 characters"),
])
def test_student_id_rule(name, problem):
    got = student_id_problem(name)
    if problem is None:
        assert got is None, got
    else:
        assert got and problem in got, got


@pytest.mark.unit
def test_spreadsheet_safe():
    for text in ["=1+2", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "  =1"]:
        assert spreadsheet_safe(text).startswith("'")
    assert spreadsheet_safe("ann") == "ann" and spreadsheet_safe("1.5") == "1.5"


# --- `check` never crashes on a submission -------------------------------------------------------------------------
def check_json(notebook, *extra):
    proc = subprocess.run([sys.executable, "-m", "autograder", "check", str(notebook), "--json", *extra],
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.timeout(300)
def test_check_test_cell_marked_solution(tmp_path):
    """A test cell whose metadata says `solution: true` used to stop nbgrader; the source's metadata wins."""
    nb = with_cells(CH, {})
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "test_softmax":
            cell.metadata.nbgrader["solution"] = True
            cell.metadata.nbgrader["points"] = 50
    nbformat.write(nb, tmp_path / "04_attention.ipynb")
    result = check_json(tmp_path / "04_attention.ipynb")
    assert "error" not in result
    assert result["score"] == result["max_score"] == CH_POINTS


STALL = ("import os\nstartup = get_ipython().profile_dir.startup_dir\nos.makedirs(startup, exist_ok=True)\n"
         "open(os.path.join(startup, '00-stall.py'), 'w').write('import time\\ntime.sleep(10**6)\\n')\n"
         "os._exit(1)\n")


@pytest.mark.timeout(300)
def test_check_kernel_that_will_not_restart(tmp_path):
    """A learner's IPython startup file that stalls every new kernel, then a crash: the kernel can't come back.
    The tests before the crash keep their points; each later test says why it was not run (or, where the sandbox
    keeps the startup file away from the new kernel, is graded normally)."""
    nb = with_cells(CH, {}, [("causal_mask", STALL)])
    nbformat.write(nb, tmp_path / "04_attention.ipynb")
    result = check_json(tmp_path / "04_attention.ipynb", "--time-limit", "10")
    assert "error" not in result and result["max_score"] == CH_POINTS
    before = {"test_softmax", "test_softmax_stability", "test_attention_scores", "test_attention_scores_batch"}
    for test in result["tests"]:
        if test["name"] in before:
            assert test["score"] == test["max_score"], test
        elif test["score"] < test["max_score"]:
            assert test["score"] == 0 and "could not be restarted" in test["output"], test
            assert "\n" not in test["output"]
    lost = [t["name"] for t in result["tests"] if t["score"] < t["max_score"]]
    assert lost == [] or set(lost) == {t["name"] for t in result["tests"]} - before, lost
