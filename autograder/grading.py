"""Grade learner notebooks with nbgrader: one (`grade_one`), or a whole class in parallel (`grade_class`).

Each submission is graded in a course folder of its own (a copy of one prepared by `generate_assignment`, holding the
gradebook with the hidden tests), so students run in parallel without sharing a database, and a submission that breaks
everything breaks only its own folder. The prepared folder is generated once per source notebook and nbgrader version
and kept in `.grading/templates/` (`course_template`): a learner's check copies it instead of generating it again.
nbgrader's Autograde converter does the grading, with `SandboxedExecute` in place of its Execute; nbgrader's
GenerateFeedback writes the HTML feedback.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from jupyter_core.paths import jupyter_config_dir
from nbconvert.exporters import HTMLExporter
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.converters import Autograde, GenerateFeedback
from nbgrader.preprocessors import GetGrades
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput,
                                    SaveAutoGrades)
from nbconvert.preprocessors import ClearMetadataPreprocessor

from . import execute
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
        """Gradescope's results.json form, plus `notebook` and `chapter` (and what the sandbox achieved)."""
        data = asdict(self)
        data["tests"] = [asdict(t) for t in self.tests]
        if self.error is None:
            data.pop("error")
        else:
            data["output"] = self.error
        return data


# --- reading a submission ------------------------------------------------------------------------------------------
def _grade_ids(nb) -> list[str]:
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if isinstance(c.get("metadata", {}).get("nbgrader"), dict) and "grade_id" in c.metadata["nbgrader"]]


def _exercise_ids(nb) -> set[str]:
    """The ids of graded cells (solutions and tests): what tells one chapter's notebook from another's.
    Locked cells such as `setup` exist in every chapter and say nothing."""
    return {c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if isinstance(c.get("metadata", {}).get("nbgrader"), dict) and "grade_id" in c.metadata["nbgrader"]
            and (c.metadata["nbgrader"].get("grade") or c.metadata["nbgrader"].get("solution"))}


@functools.lru_cache(maxsize=None)
def _source(chapter: Chapter):
    """The chapter's source notebook, read once per process (every student needs it; nothing here modifies it)."""
    return nbformat.read(chapter.source, as_version=4)


@functools.lru_cache(maxsize=None)
def _source_exercise_ids(chapter: Chapter) -> frozenset[str]:
    return frozenset(_exercise_ids(_source(chapter)))


def read_submission(path: Path, chapter: Chapter):
    """Parse and check a submitted notebook; return it without outputs, or raise SubmissionError with one line."""
    path = Path(path)
    if not path.exists():
        raise SubmissionError(f"{path}: no such file. Give the path of your notebook, e.g. notebooks/{chapter.name}.ipynb")
    if path.is_dir():
        raise SubmissionError(f"{path} is a folder; give the path of a notebook file (.ipynb)")
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise SubmissionError(
            f"{path} is {size / 2**20:.0f} MiB, over the {MAX_NOTEBOOK_BYTES // 2**20} MiB limit; clear the outputs "
            "(Kernel > Restart Kernel and Clear Outputs), save, and try again")
    try:
        nb = nbformat.reads(path.read_bytes().decode("utf-8"), as_version=4)
    except UnicodeDecodeError:
        raise SubmissionError(f"{path} is not a text file; a notebook is a .ipynb JSON file") from None
    except Exception as error:  # nbformat raises several kinds for broken JSON
        reason = str(error).splitlines()[0][:120]
        raise SubmissionError(f"{path} is not a readable notebook ({reason}); re-download it or restore a saved "
                              "copy") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise SubmissionError(f"{path} is not a Jupyter notebook (no cells)")
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
            if grade_id not in known or grade_id in seen:
                del cell.metadata["nbgrader"]
            else:
                seen.add(grade_id)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    order = list(known)
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


# --- grading -------------------------------------------------------------------------------------------------------
def trusted_tests(chapter: Chapter) -> dict[str, str]:
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in _source(chapter).cells
            if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")}


def max_score(chapter: Chapter) -> float:
    """Points of the chapter's test cells, from the source notebook."""
    return float(sum(c.metadata["nbgrader"].get("points", 0) for c in _source(chapter).cells
                     if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")))


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
    """Import the chapter's checks (and what they need: torch from chapter 5 on) on a thread while the kernel starts
    and the learner's cells run, when this process would otherwise wait; the first hidden test finds them loaded."""
    import importlib
    import threading

    def load():
        try:
            importlib.import_module(chapter.checks_module)
        except Exception:  # the hidden test's own import reports it, where it can be charged to that test
            pass

    threading.Thread(target=load, name="preload-checks", daemon=True).start()


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
                   hide: list[str], on_cell=None):
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
    config.SandboxedExecute.memory_limit = memory
    config.SandboxedExecute.sandbox = sandbox
    config.SandboxedExecute.hide = hide
    config.SandboxedExecute.trusted_tests = trusted_tests(chapter)
    config.SandboxedExecute.report_file = str(root / "sandbox-report.json")
    config.SandboxedExecute.on_cell = on_cell
    return config


def hidden_from_learners(workdir: Path) -> list[str]:
    """What a learner's kernel must not see: every grading folder, the solutions, the grader, the tests."""
    import autograder

    return [str(workdir), str(REPO / "solutions"), str(REPO / "book" / "_generated"), str(REPO / "tests"),
            str(Path(autograder.__file__).resolve().parent), str(template_cache())]


def grade_one(chapter: Chapter, notebook: Path, *, template: Path | None = None, workdir: Path | None = None,
              student: str = STUDENT, time_limit: int = 30, memory: int = 2 * 2**30, sandbox: bool = True,
              feedback: bool = False, on_cell=None) -> tuple[Result, Path]:
    """Grade one submission; return its result and the folder it was graded in (feedback under `feedback/`).
    `on_cell(index, number of cells, cell)` is called before each cell runs."""
    result = Result(notebook=str(notebook), chapter=chapter.name, max_score=max_score(chapter))
    nb = read_submission(notebook, chapter)  # SubmissionError goes to the caller
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
                            hide=hidden_from_learners(workdir), on_cell=on_cell)
    coursedir = CourseDirectory(config=config)
    _preload_checks(chapter)
    with quiet_logs(), _scratch_gradebooks():
        Autograde(coursedir=coursedir, config=config).start()
    _collect(result, root, chapter, student)
    if feedback and result.error is None:
        write_feedback(root, chapter, student)
    return result, root


_feedback_exporter = None


def write_feedback(root: Path, chapter: Chapter, student: str) -> Path:
    """nbgrader's feedback page (its GetGrades preprocessor and 'feedback' template, configured as GenerateFeedback
    configures them), with one exporter kept per process: building it is most of GenerateFeedback's cost."""
    global _feedback_exporter
    if _feedback_exporter is None:
        config = GenerateFeedback(coursedir=CourseDirectory(config=nbgrader_config(root)),
                                  config=nbgrader_config(root)).config
        _feedback_exporter = HTMLExporter(config=config)
    graded = root / "autograded" / student / chapter.name / f"{chapter.name}.ipynb"
    nb = nbformat.read(graded, as_version=4)
    resources = {"nbgrader": {"notebook": chapter.name, "assignment": chapter.name, "student": student,
                              "db_url": f"sqlite:///{root / 'gradebook.db'}"},
                 "config_dir": jupyter_config_dir()}
    nb, resources = GetGrades().preprocess(nb, resources)
    nb, resources = CSSHTMLHeaderPreprocessor().preprocess(nb, resources)
    body, _ = _feedback_exporter.from_notebook_node(nb, resources)
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
