"""Grade one learner notebook with nbgrader (`grade_one`; a whole class is `autograder.classroom.grade_class`).

Each submission is graded in a course folder of its own (`prepare`: a copy of the chapter's template, nbgrader's
GenerateAssignment output with the gradebook holding the hidden tests), so students run in parallel without sharing a
database, and a submission that breaks everything breaks only its own folder. The template is generated once per
source notebook and nbgrader version and kept in `.grading/templates/` (`course_template`). nbgrader's Autograde
converter does the grading, with `SandboxedExecute` in place of its Execute; `write_feedback` renders nbgrader's
feedback template with one exporter kept per process.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from jupyter_core.paths import jupyter_config_dir
from jinja2 import pass_context
from nbconvert.exporters import HTMLExporter
from nbconvert.filters import clean_html
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.converters import Autograde, GenerateFeedback
from nbgrader.preprocessors import ClearHiddenTests, GetGrades
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput,
                                    SaveAutoGrades)
from nbconvert.preprocessors import ClearMetadataPreprocessor

from . import execute
from .kernel import settings_for
from .course import REPO, Chapter, CourseError, chapters, nbgrader_config
from .release import generate, quiet_logs

MAX_NOTEBOOK_BYTES = 50 * 2**20
STUDENT = "learner"


class SubmissionError(CourseError):
    """The file can't be graded at all; the message is the one line the learner reads."""


@dataclass
class TestResult:
    name: str
    score: float
    max_score: float
    output: str


@dataclass
class Result:
    notebook: str
    chapter: str
    score: float = 0.0
    max_score: float = 0.0
    tests: list[TestResult] = field(default_factory=list)
    error: str | None = None
    sandbox: dict = field(default_factory=dict)
    events: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """Gradescope's results.json form, plus `notebook` (its file name) and `chapter`: names, points and the
        messages a learner reads, nothing else (no paths, no source). `sandbox` says what isolation the grader
        achieved, reduced to known keys and plain values (the file it comes from was written next to the kernel)."""
        data = {
            "notebook": Path(self.notebook).name, "chapter": self.chapter,
            "score": self.score, "max_score": self.max_score,
            "tests": [{"name": t.name, "score": t.score, "max_score": t.max_score, "output": _clip_message(t.output)}
                      for t in self.tests],
        }
        if self.error is not None:
            data["error"] = data["output"] = _clip_message(self.error)
        data["sandbox"] = {k: v for k, v in self.sandbox.items()
                           if k in SANDBOX_KEYS and isinstance(v, SANDBOX_KEYS[k]) and len(str(v)) <= 80}
        data["events"] = [_clip_message(str(e)) for e in self.events[:20]]
        return data


SANDBOX_KEYS = {"sandbox": str, "network": str, "files": str, "memory_limit": bool, "memory_bytes": int,
                "memory_total": bool, "processes_total": bool}


def _clip_message(text: str, limit: int = 1000) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- reading a submission ------------------------------------------------------------------------------------------
def _nbgrader_meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader") if isinstance(cell.get("metadata"), dict) else None
    return meta if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str) else {}


def _exercise_ids(nb) -> set[str]:
    """The ids of graded cells (solutions and tests): what tells one chapter's notebook from another's.
    Locked cells such as `setup` exist in every chapter and say nothing."""
    return {_nbgrader_meta(c)["grade_id"] for c in nb.cells
            if _nbgrader_meta(c).get("grade") or _nbgrader_meta(c).get("solution")}


@functools.lru_cache(maxsize=None)
def _source(chapter: Chapter):
    """The chapter's source notebook, read once per process (every student needs it; nothing here modifies it)."""
    return nbformat.read(chapter.source, as_version=4)


@functools.lru_cache(maxsize=None)
def _source_exercise_ids(chapter: Chapter) -> frozenset[str]:
    return frozenset(_exercise_ids(_source(chapter)))


def read_submission(path: Path, chapter: Chapter, data: bytes | None = None):
    """Parse and check a submitted notebook; return it without outputs, or raise SubmissionError with one line.

    `data`: the file's bytes when the caller has already read them (the class command reads each notebook itself,
    refusing links); `path` then only names the file in messages."""
    path = Path(path)
    if data is None:
        if not path.exists():
            raise SubmissionError(f"{path}: no such file. Give the path of your notebook, e.g. notebooks/{chapter.name}.ipynb")
        if path.is_dir():
            raise SubmissionError(f"{path} is a folder; give the path of a notebook file (.ipynb)")
        check_size(path, path.stat().st_size)
        data = path.read_bytes()
    check_size(path, len(data))
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    except UnicodeDecodeError:
        raise SubmissionError(f"{path} is not a text file; a notebook is a .ipynb JSON file") from None
    except Exception as error:  # nbformat raises several kinds for broken JSON
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise SubmissionError(f"{path} is not a readable notebook ({reason}); re-download it or restore a saved "
                              "copy") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise SubmissionError(f"{path} is not a Jupyter notebook (no cells)")
    nb.cells = [c for c in nb.cells if isinstance(c, dict)]
    for cell in nb.cells:
        if not isinstance(cell.get("metadata"), dict):
            cell["metadata"] = nbformat.NotebookNode()
    ids = _exercise_ids(nb)
    mine = len(ids & _source_exercise_ids(chapter))
    for other in chapters() if len(ids) > mine else []:
        theirs = len(ids & _source_exercise_ids(other)) if other != chapter else 0
        if theirs > mine:
            raise SubmissionError(f"{path} is the notebook of chapter {other.name}, not {chapter.name}; "
                                  f"grade it with: python -m autograder check {path} --chapter {other.name}")
    if not mine:
        raise SubmissionError(f"{path} is not a notebook of this course (none of its cells are exercises of "
                              f"{chapter.name}); start from notebooks/{chapter.name}.ipynb")
    return _normalise(nb, chapter)


def check_size(path: Path, size: int) -> None:
    if size > MAX_NOTEBOOK_BYTES:
        raise SubmissionError(
            f"{path} is {size / 2**20:.0f} MiB, over the {MAX_NOTEBOOK_BYTES // 2**20} MiB limit; clear the outputs "
            "(Kernel > Restart Kernel and Clear Outputs), save, and try again")


def _normalise(nb, chapter: Chapter):
    """Outputs cleared; nbgrader metadata kept only on cells the source knows (once each); deleted cells put back.

    A deleted solution cell comes back as the learner's empty stub, a deleted locked or test cell as the source's."""
    release = nbformat.read(chapter.release, as_version=4) if chapter.release.exists() else None
    template = release or _source(chapter)
    known = {c.metadata["nbgrader"]["grade_id"]: c for c in template.cells
             if "nbgrader" in c.get("metadata", {}) and "grade_id" in c.metadata["nbgrader"]}
    seen, cells = set(), []
    for cell in nb.cells:
        if cell.get("cell_type") not in ("code", "markdown", "raw"):
            continue
        cell.setdefault("metadata", {})
        meta = cell.metadata.get("nbgrader")
        if meta is not None:
            grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
            grade_id = grade_id if isinstance(grade_id, str) else None
            if grade_id not in known or grade_id in seen or known[grade_id].cell_type != cell.cell_type:
                del cell.metadata["nbgrader"]
            else:
                # The source decides what a cell is (solution, test, points): a submission that marks a test cell
                # `solution: true` or changes its points gets the source's metadata back.
                cell.metadata["nbgrader"] = nbformat.from_dict(json.loads(json.dumps(known[grade_id].metadata.nbgrader)))
                seen.add(grade_id)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    order = list(known)
    cells = _in_source_order(cells, order)
    for position, grade_id in enumerate(order):
        if grade_id in seen:
            continue
        before = {g for g in order[:position]}
        index = 0
        for i, cell in enumerate(cells):
            if cell.metadata.get("nbgrader", {}).get("grade_id") in before:
                index = i + 1
        cells.insert(index, nbformat.from_dict(json.loads(json.dumps(known[grade_id]))))
        seen.add(grade_id)
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _in_source_order(cells, order):
    """Graded cells in the source notebook's order, each keeping the learner's own cells that followed it.

    The submission must not choose when tests run: a test moved ahead of the exercises it lends references to would
    let the learner's code keep them for those exercises' tests. Cells before the first graded cell stay first."""
    rank = {grade_id: i for i, grade_id in enumerate(order)}
    groups, head = [], []
    for cell in cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in rank:
            groups.append((rank[grade_id], [cell]))
        elif groups:
            groups[-1][1].append(cell)
        else:
            head.append(cell)
    groups.sort(key=lambda group: group[0])  # stable: equal ranks can't happen (one cell per grade_id)
    return head + [cell for _, group in groups for cell in group]


# --- grading -------------------------------------------------------------------------------------------------------
def trusted_tests(chapter: Chapter) -> dict[str, str]:
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in _source(chapter).cells
            if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")}


def max_score(chapter: Chapter) -> float:
    """Points of the chapter's test cells, from the source notebook."""
    return float(sum(c.metadata["nbgrader"].get("points", 0) for c in _source(chapter).cells
                     if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")))


@functools.lru_cache(maxsize=None)
def provided_sources(chapter: Chapter) -> tuple[str, ...]:
    """The released notebook's code cells: text the course gives every learner, never charged to one."""
    template = nbformat.read(chapter.release, as_version=4) if chapter.release.exists() else _source(chapter)
    return tuple(c.source for c in template.cells if c.cell_type == "code" and c.source.strip()
                 and not c.metadata.get("nbgrader", {}).get("solution"))


# Bump when what `generate` writes into a course folder changes in a way the key below can't see.
TEMPLATE_FORMAT = 1


def template_cache() -> Path:
    """Where prepared course folders are kept (AUTOGRADER_CACHE overrides; `make clean` empties the default)."""
    return Path(os.environ.get("AUTOGRADER_CACHE") or REPO / ".grading" / "templates")


@functools.lru_cache(maxsize=None)
def _template_key(chapter: Chapter) -> str:
    import nbgrader

    digest = hashlib.sha256(chapter.source.read_bytes())
    digest.update(f"nbgrader {nbgrader.__version__}, format {TEMPLATE_FORMAT}".encode())
    return digest.hexdigest()[:16]


def course_template(chapter: Chapter) -> Path | None:
    """The chapter's course folder as nbgrader's GenerateAssignment writes it (release, gradebook with the hidden
    tests), generated once per source notebook and nbgrader version and reused: generating it (a gradebook created,
    `alembic` run) costs more than grading a notebook. None where the cache can't be written."""
    cache = template_cache()
    target = cache / f"{chapter.name}-{_template_key(chapter)}"
    if (target / "gradebook.db").is_file():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".building-{chapter.name}-", dir=cache))
    except OSError:
        return None
    try:
        generate(building, chapter)
        building.rename(target)  # atomic: a check never sees half a template
    except OSError:
        if not (target / "gradebook.db").is_file():  # not a lost race with another check: a real failure
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    for old in cache.glob(f"{chapter.name}-*"):  # templates of earlier versions of this chapter
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def prepare(chapter: Chapter, folder: Path) -> Path:
    """A course folder with the chapter generated and its gradebook written: the template every submission copies."""
    template = course_template(chapter)
    if template is None:
        generate(folder, chapter)
    else:
        shutil.copytree(template, folder, dirs_exist_ok=True)
    return folder


def _preload_checks(chapter: Chapter) -> None:
    """Import the chapter's checks (and what they need: torch from chapter 5 on, and the modules named in its
    `PRELOAD`) on a thread while the kernel starts and the learner's cells run, when this process would otherwise
    wait; the first hidden test finds them loaded."""
    import importlib
    import threading

    def load():
        try:
            module = importlib.import_module(chapter.checks_module)
            for name in getattr(module, "PRELOAD", ()):  # what its checks import when first called (transformers)
                importlib.import_module(name)
        except Exception:  # the hidden test's own import reports it, where it can be charged to that test
            pass

    threading.Thread(target=load, name="preload-checks", daemon=True).start()


def _preloading_at_first_code_cell(chapter: Chapter, on_cell):
    """`on_cell`, which first starts `_preload_checks` when the kernel is given its first code cell: the kernel is
    then busy with the notebook's imports while this process waits. Earlier, the imports (seconds of CPU from chapter
    5 on) would compete for the interpreter with nbgrader's setup of the grading."""
    started = False

    def hook(index, count, cell):
        nonlocal started
        if not started and cell.cell_type == "code":
            started = True
            _preload_checks(chapter)
        if on_cell is not None:
            on_cell(index, count, cell)

    return hook


@contextlib.contextmanager
def _scratch_gradebooks():
    """The gradebooks graded in are throwaway copies: SQLite need not wait for the disk on each of nbgrader's many
    commits (a crash loses nothing that matters: the folder is discarded with it)."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def no_sync(connection, _record):
        if isinstance(connection, sqlite3.Connection):
            connection.execute("PRAGMA synchronous = OFF")
            connection.execute("PRAGMA journal_mode = MEMORY")

    event.listen(Engine, "connect", no_sync)
    try:
        yield
    finally:
        event.remove(Engine, "connect", no_sync)


def grading_config(root: Path, chapter: Chapter, student: str, *, time_limit: int, memory: int, sandbox: bool,
                   scratch_root: Path | None = None, on_cell=None):
    config = nbgrader_config(root, time_limit=time_limit)
    config.CourseDirectory.assignment_id = chapter.name
    config.CourseDirectory.student_id = student
    config.Autograde.autograde_preprocessors = [
        execute.SandboxedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
        AssignLatePenalties, CheckCellMetadata,
    ]
    config.SandboxedExecute.timeout = time_limit
    # Nothing is wanted from the kernel after its last cell: killing it (its whole process group) saves the second
    # or more a graceful shutdown waits for ipykernel to wind down.
    config.SandboxedExecute.shutdown_kernel = "immediate"
    settings = settings_for(chapter, memory=memory, sandboxed=sandbox)  # what kernel.prestart is given too
    config.SandboxedExecute.memory_limit = settings.memory
    config.SandboxedExecute.sandbox = settings.sandboxed
    config.SandboxedExecute.data = settings.data
    config.SandboxedExecute.kernel_preamble = settings.preamble
    config.SandboxedExecute.scratch_root = str(scratch_root or "")
    config.SandboxedExecute.trusted_tests = trusted_tests(chapter)
    config.SandboxedExecute.report_file = str(root / "sandbox-report.json")
    config.SandboxedExecute.restart_timeout = max(20, 2 * time_limit)
    config.SandboxedExecute.provided = list(provided_sources(chapter))
    config.SandboxedExecute.on_cell = on_cell
    return config


def grade_one(chapter: Chapter, notebook: Path, *, template: Path | None = None, workdir: Path | None = None,
              student: str = STUDENT, time_limit: int = 30, memory: int = 2 * 2**30, sandbox: bool = True,
              feedback: bool = False, data: bytes | None = None, scratch_root: Path | None = None,
              on_cell=None, kernel=None) -> tuple[Result, Path]:
    """Grade one submission; return its result and the folder it was graded in (feedback under `feedback/`).

    `data`: the notebook's bytes, already read by the caller (then `notebook` only names it);
    `on_cell(index, number of cells, cell)` is called before each cell runs; `kernel`: a kernel.Prestarted for this
    grading, adopted by the executor (its caller discards it if it never was)."""
    result = Result(notebook=str(notebook), chapter=chapter.name, max_score=max_score(chapter))
    nb = read_submission(notebook, chapter, data)  # SubmissionError goes to the caller
    workdir = Path(workdir or tempfile.mkdtemp(prefix="grading-"))
    root = workdir / "course"
    if template is None:
        prepare(chapter, root)
    else:
        shutil.copytree(template, root, dirs_exist_ok=True)
    submitted = root / "submitted" / student / chapter.name
    submitted.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, submitted / f"{chapter.name}.ipynb")
    config = grading_config(root, chapter, student, time_limit=time_limit, memory=memory, sandbox=sandbox,
                            scratch_root=scratch_root, on_cell=_preloading_at_first_code_cell(chapter, on_cell))
    config.SandboxedExecute.prestarted = kernel
    coursedir = CourseDirectory(config=config)
    try:
        with quiet_logs(), _scratch_gradebooks():
            Autograde(coursedir=coursedir, config=config).start()
    except Exception as error:  # nbgrader gave up on this notebook: say so, keep whatever it recorded
        failure = f"grading stopped early ({type(error).__name__}: {_one_line(error)})"
    else:
        failure = None
    try:
        _collect(result, root, chapter, student)
    except Exception as error:
        result.error = f"grading failed: the gradebook could not be read ({type(error).__name__}: {_one_line(error)})"
    if failure and result.error is None and not result.tests:
        result.error = failure
    elif failure:
        result.events.append(failure)
    if feedback and result.error is None:
        write_feedback(root, chapter, student)
    return result, root


def _one_line(error: BaseException, limit: int = 200) -> str:
    text = (str(error).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SafeFeedbackExporter(HTMLExporter):
    """HTMLExporter whose Markdown goes through nbconvert's `clean_html` (bleach) as `sanitize_html` intends:
    nbgrader's feedback template renders Markdown cells with its own block, which skips that filter."""

    @pass_context
    def markdown2html(self, context, source):
        return clean_html(super().markdown2html(context, source))


_feedback_exporter = None


def feedback_exporter(root: Path) -> SafeFeedbackExporter:
    """The process's feedback exporter, configured as GenerateFeedback configures it for the course at `root` (the
    first caller's: nothing of the course folder is used to render)."""
    global _feedback_exporter
    if _feedback_exporter is None:
        config = GenerateFeedback(coursedir=CourseDirectory(config=nbgrader_config(root)),
                                  config=nbgrader_config(root)).config
        config.HTMLExporter.sanitize_html = True
        _feedback_exporter = SafeFeedbackExporter(config=config)
    return _feedback_exporter


def write_feedback(root: Path, chapter: Chapter, student: str) -> Path:
    """nbgrader's feedback page (its GetGrades preprocessor and 'feedback' template, configured as GenerateFeedback
    configures them), with one exporter kept per process: building it is most of GenerateFeedback's cost.

    Two steps GenerateFeedback leaves out: the hidden tests are cleared (nbgrader's ClearHiddenTests, as when a
    notebook is released), and the learner's HTML and Markdown are sanitised (nbconvert's `sanitize_html`, which
    runs bleach over Markdown cells and HTML outputs and drops JavaScript outputs), so the page an instructor
    opens runs none of the learner's script."""
    exporter = feedback_exporter(root)
    graded = root / "autograded" / student / chapter.name / f"{chapter.name}.ipynb"
    nb = nbformat.read(graded, as_version=4)
    resources = {"nbgrader": {"notebook": chapter.name, "assignment": chapter.name, "student": student,
                              "db_url": f"sqlite:///{root / 'gradebook.db'}"},
                 "config_dir": jupyter_config_dir()}
    nb, resources = GetGrades().preprocess(nb, resources)
    nb, resources = ClearHiddenTests(enforce_metadata=False).preprocess(nb, resources)
    nb.metadata = nbformat.from_dict({"kernelspec": nb.metadata.get("kernelspec", {}),
                                      "language_info": {"name": "python"}})
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.metadata.items() if k == "nbgrader"})
        if cell.cell_type == "raw":  # raw cells pass into HTML untouched: show them as text
            cell.cell_type, cell.source = "markdown", "```\n" + cell.source.replace("```", "` ` `") + "\n```"
        cell.pop("attachments", None)
        for output in cell.get("outputs", []):
            # The templates write an image's width/height metadata into the tag unquoted: learner text never
            # gets there (nor file names, nor the `isolated` switch)
            output["metadata"] = {}
    nb, resources = CSSHTMLHeaderPreprocessor().preprocess(nb, resources)
    body, _ = exporter.from_notebook_node(nb, resources)
    page = root / "feedback" / student / chapter.name / f"{chapter.name}.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(body)
    return page


def _collect(result: Result, root: Path, chapter: Chapter, student: str) -> None:
    graded = root / "autograded" / student / chapter.name / f"{chapter.name}.ipynb"
    if not graded.exists():
        result.error = "grading did not finish (nbgrader wrote no graded notebook)"
        return
    nb = nbformat.read(graded, as_version=4)
    messages = {}
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "code" and grade_id:
            errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
            messages[grade_id] = errors[-1].get("evalue", "") if errors else ""
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        submission = gb.find_submission_notebook(chapter.name, chapter.name, student)
        for grade in sorted(submission.grades, key=lambda g: _position(nb, g.name)):
            if grade.cell.cell_type != "code" or grade.name not in messages and grade.auto_score is None:
                continue
            if not _is_test(nb, grade.name):
                continue
            score = float(grade.score or 0.0)
            result.tests.append(TestResult(grade.name, score, float(grade.max_score), messages.get(grade.name, "")))
        result.score = sum(t.score for t in result.tests)
        result.max_score = sum(t.max_score for t in result.tests)
    report = root / "sandbox-report.json"
    if report.exists():
        data = json.loads(report.read_text())
        result.sandbox, result.events = data.get("sandbox", {}), data.get("events", [])


def _position(nb, grade_id):
    for i, cell in enumerate(nb.cells):
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return i
    return len(nb.cells)


def _is_test(nb, grade_id):
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") == grade_id:
            return bool(meta.get("grade")) and not meta.get("solution")
    return True


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
