"""Grade a class: every `SUBMISSIONS/<student_id>/<notebook>.ipynb`, several students at once.

Writes `OUT/grades.csv` (a row per student, a column per test), `OUT/<student_id>/results.json` (Gradescope's form)
and `OUT/<student_id>/feedback.html` (nbgrader's feedback, or the reason the file could not be graded).
One broken submission never stops the others: whatever happens to a student ends up in that student's row.
"""
from __future__ import annotations

import csv
import html
import json
import multiprocessing
import multiprocessing.connection as mp_connection
import os
import re
import shutil
import signal
import stat
import statistics
import sys
import tempfile
import time
import unicodedata
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from . import shards
from .course import Chapter, CourseError
from .kernel import KERNEL_SOCKET_ROOM, forbidden_patterns
from .sandbox import SOCKET_PATH_MAX, socket_folder_root, sweep_cgroups
from .grading import (MAX_NOTEBOOK_BYTES, Result, SubmissionError, check_size, cpu_count, feedback_exporter,
                      grade_one, max_score, prepare)

ID_PUNCTUATION = "._-@"
MAX_ID_LENGTH = 64


def student_id_problem(name: str) -> str | None:
    """Why `name` can't be a student id (it names an output folder and a gradebook entry), or None if it can.

    Letters and digits of any script are fine (`müller`, `김철수`), and so are `.`, `_`, `-` and `@` after the first
    character (`jane.doe@uni.edu`); spaces, quotes, slashes, glob and shell characters, control characters, and a
    leading `.`, `-` or `@` are not."""
    def kind(c):
        return unicodedata.category(c)[0]

    if len(name) > MAX_ID_LENGTH:
        return f"it is {len(name)} characters long (at most {MAX_ID_LENGTH})"
    if kind(name[0]) not in "LN":
        return f"it starts with {_show(name[0])} (start with a letter or a digit)"
    bad = []
    for c in name:
        if not (kind(c) in "LNM" or c in ID_PUNCTUATION) and _show(c) not in bad:
            bad.append(_show(c))
    if bad:
        return "it contains " + ", ".join(bad[:6]) + " (use letters, digits, and . _ - @)"
    return None


def _show(c: str) -> str:
    names = {" ": "a space", "\t": "a tab", "\n": "a line break", "\r": "a carriage return"}
    if c in names:
        return names[c]
    if unicodedata.category(c)[0] in "CZ":
        return f"U+{ord(c):04X}"
    return f"'{c}'"


@dataclass
class Entry:
    """One thing found under SUBMISSIONS: a notebook to grade, or the reason it can't be graded."""

    notebook: tuple[str, ...] | None = None  # path parts under SUBMISSIONS, each checked not to be a link
    reason: str | None = None
    folder: bool = False  # the name is a valid student id: OUT/<name>/ gets results.json and feedback.html


def _kind(path: Path) -> str:
    """'link', 'dir', 'file' or 'other', never following a link."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return "link"
    return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def find_submissions(chapter: Chapter, folder: Path) -> dict[str, Entry]:
    """Everything directly under `folder`, by name: each student folder's notebook, or one line saying why not.

    Nothing is followed out of `folder`: a symbolic link (to a folder or to a notebook) is refused, not read."""
    if not folder.is_dir():
        raise CourseError(f"{folder}: no such folder of submissions (expected {folder}/<student_id>/<notebook>.ipynb)")
    found: dict[str, Entry] = {}
    for entry in sorted(folder.iterdir()):
        name = entry.name
        kind = _kind(entry)
        problem = student_id_problem(name)
        if kind == "link":
            found[name] = Entry(reason=f"{name} is a symbolic link; links are refused (never followed): put the "
                                "student's folder itself here")
        elif kind != "dir":
            found[name] = Entry(reason=f"{name} is a file, not a student folder (expected <student_id>/<notebook>.ipynb)")
        elif problem:
            found[name] = Entry(reason=f"student id {name!r} is not allowed: {problem}; rename the folder")
        else:
            found[name] = _student_entry(chapter, entry)
    return found


def _student_entry(chapter: Chapter, student: Path) -> Entry:
    wanted = f"{chapter.name}.ipynb"
    contents = {p.name: _kind(p) for p in student.iterdir()}
    notebooks = sorted(n for n in contents if n.endswith(".ipynb"))
    nested = contents.get(chapter.name)  # nbgrader's submitted/<student>/<assignment>/<assignment>.ipynb
    if wanted in contents:
        parts = (wanted,)
    elif nested == "link" or nested == "dir" and os.path.lexists(student / chapter.name / wanted):
        parts = (chapter.name, wanted)
    elif len(notebooks) == 1:
        parts = (notebooks[0],)
    elif not contents:
        return Entry(reason="empty folder: no notebook (.ipynb) was submitted", folder=True)
    elif not notebooks:
        others = ", ".join(sorted(contents)[:5])
        return Entry(reason=f"no notebook (.ipynb) was submitted (found: {others})", folder=True)
    else:
        return Entry(reason=f"several notebooks and none named {wanted}: " + ", ".join(notebooks[:5]), folder=True)
    path = student
    for i, part in enumerate(parts):
        path = path / part
        kind = _kind(path)
        if kind == "link":
            return Entry(reason=f"{'/'.join(parts[:i + 1])} is a symbolic link; links are refused (never followed): "
                                "submit the notebook file itself", folder=True)
    if kind != "file":
        return Entry(reason=f"{'/'.join(parts)} is not a regular file", folder=True)
    return Entry(notebook=(student.name, *parts), folder=True)


def read_inside(root: Path, parts: tuple[str, ...]) -> bytes:
    """The bytes of root/parts[0]/.../parts[-1], opened one component at a time without following any link, so
    nothing outside `root` is read even if the folder changed since it was listed."""
    label = Path(*parts[1:])
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                raise SubmissionError(f"{label}: a folder on its path is a link or is gone; links are refused") from None
            os.close(fd)
            fd = inner
        try:
            handle = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except OSError:
            raise SubmissionError(f"{label} is a symbolic link or can't be opened; links are refused") from None
        with os.fdopen(handle, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise SubmissionError(f"{label} is not a regular file")
            check_size(label, info.st_size)
            return file.read(MAX_NOTEBOOK_BYTES + 1)
    finally:
        os.close(fd)


def _grade_student(chapter: Chapter, student: str, root: str, parts: tuple[str, ...], template: str, workdir: str,
                   time_limit: int, memory: int, sandbox: bool, scratch_root: str, answer: str) -> None:
    """In a worker process: grade one student; write {"result": results.json, "feedback": HTML or None} to
    `answer`. Never raises: whatever happens is in the result."""
    label = Path(*parts[1:])
    result = Result(notebook=label.name, chapter=chapter.name, max_score=max_score(chapter))
    feedback = None
    try:
        data = read_inside(Path(root), parts)
        result, graded_in = grade_one(chapter, label, template=Path(template), workdir=Path(workdir),
                                      student=student, time_limit=time_limit, memory=memory, sandbox=sandbox,
                                      feedback=True, data=data, scratch_root=Path(scratch_root))
        result.notebook = label.name
        page = graded_in / "feedback" / student / chapter.name / f"{chapter.name}.html"
        feedback = page.read_text() if page.exists() else None
    except SubmissionError as error:
        result.error = str(error)
    except Exception as error:  # the class run always finishes; this student's row says what broke
        result.error = f"grading failed: {type(error).__name__}: {str(error)[:200]}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    Path(answer).write_text(json.dumps({"result": result.to_json(), "feedback": feedback}))


def _random_states() -> list:
    """(restore, state) of every random generator the grader's checks could draw from unseeded: Python's, NumPy's
    and torch's global ones, as a fresh worker has them."""
    import random

    states = [(random.setstate, random.getstate())]
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        states.append((numpy.random.set_state, numpy.random.get_state()))
    torch = sys.modules.get("torch")
    if torch is not None:
        states.append((torch.set_rng_state, torch.get_rng_state()))
    return states


def _worker(chapter: Chapter, tasks, template: str, settings: dict) -> None:
    """A worker process: grades the students sent through `tasks` one after the other, each in a course folder and
    a sandboxed kernel of its own, and answers each with its answer file's path. A student leaves nothing here that
    the next one meets: its folders and its kernel are gone when its answer is written, nothing from its kernel is
    ever run here (answers are data), the random generators are set back to where they started, and what stays is
    the grader's own: modules it imported (never one a notebook names) and nbgrader's compiled feedback templates."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops every worker
    warnings.filterwarnings("ignore")
    feedback_exporter(Path(template))  # built from the class's template, never from a student's folder
    fresh = _random_states()
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        for restore, state in fresh:
            restore(state)
        student, root, parts, workdir, answer = task
        _grade_student(chapter, student, root, parts, template, workdir, settings["time_limit"],
                       settings["memory"], settings["sandbox"], settings["scratch_root"], answer)
        tasks.send(answer)


def _error_page(student: str, chapter: Chapter, reason: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(chapter.name)}: "
            f"{html.escape(student)}</title></head><body><h1>{html.escape(chapter.name)}</h1>"
            f"<p>Your submission could not be graded: {html.escape(reason)}</p><p>Score: 0</p></body></html>")


def _workers(chapter: Chapter):
    """Processes that start from a clean interpreter: a process that has run torch's OpenMP pool can't be forked
    safely (the child's first parallel op waits for ever in libgomp), so workers fork from a forkserver that has
    only imported the grader, this chapter's checks and the packages its static scan resolves names in (torch for
    most chapters: seconds to import), never run them."""
    context = multiprocessing.get_context("forkserver")
    _short_multiprocessing_folder()
    roots = {re.match(r"[A-Za-z_]\w*", p) for p in forbidden_patterns(chapter)}  # as static._load_roots reads them
    roots = sorted({r.group(0) for r in roots if r} - {"autograder"})
    preload = ["autograder.classroom", chapter.checks_module]
    context.set_forkserver_preload(preload + [r for r in roots if _installed(r)])
    return context


def _short_multiprocessing_folder() -> None:
    """multiprocessing binds the forkserver's socket in a folder it makes under the temp folder (`pymp-*/listener-*`);
    under a long TMPDIR that path passes the 107 bytes a Unix socket allows and the class can't start. Make that folder
    where the path is short enough (multiprocessing keeps using the one it made first)."""
    from multiprocessing import util

    room = len("/pymp-12345678/listener-12345678")
    if len(tempfile.gettempdir().encode()) + room <= SOCKET_PATH_MAX:
        return
    saved, tempfile.tempdir = tempfile.tempdir, socket_folder_root(room)
    try:
        util.get_temp_dir()
    finally:
        tempfile.tempdir = saved


def _installed(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class _Worker:
    process: multiprocessing.Process
    tasks: mp_connection.Connection
    student: str | None = None  # the student it is grading, None while idle
    started: float = 0.0
    answer: Path | None = None


def _run_students(chapter: Chapter, root: Path, todo: dict[str, Entry], tmp: Path, *, jobs: int,
                  student_time_limit: int, on_done, **grading) -> None:
    """Grade `todo` with at most `jobs` long-lived worker processes, each fed one student at a time. A student whose
    grading runs past `student_time_limit` seconds (replays included) is stopped from here by killing its worker
    (and the worker's kernel), the class goes on, and a new worker takes the next student; so does a worker that
    died."""
    context = _workers(chapter)
    queue = sorted(todo)
    (tmp / "answers").mkdir(exist_ok=True)
    # The kernels' work folders go straight into `tmp` (made short enough by grade_class): their Unix sockets' paths
    # must stay under 108 bytes even when TMPDIR is a long path (a test's own temp folder, say).
    settings = dict(grading, scratch_root=str(tmp))
    workers: list[_Worker] = []

    def start_worker() -> _Worker:
        ours, theirs = context.Pipe()
        process = context.Process(target=_worker, daemon=True, args=(chapter, theirs, str(tmp / "template"), settings))
        process.start()
        theirs.close()
        return _Worker(process, ours)

    def stop(worker: _Worker) -> None:
        worker.process.kill()
        worker.process.join()
        worker.tasks.close()
        workers.remove(worker)
        sweep_cgroups()  # its kernel: the cgroups of a worker that is gone

    def finish(worker: _Worker, late: bool) -> None:
        student, answer = worker.student, worker.answer
        worker.student = worker.answer = None
        try:
            data = json.loads(answer.read_text())
            result, feedback = data["result"], data["feedback"]
        except (OSError, ValueError, KeyError):
            reason = (f"grading stopped after {student_time_limit} s, the time limit per student" if late
                      else f"grading failed: the worker ended with exit code {worker.process.exitcode}")
            result = Result(notebook=todo[student].notebook[-1], chapter=chapter.name,
                            max_score=max_score(chapter), error=reason).to_json()
            feedback = None
        on_done(student, result, feedback)

    try:
        while queue or any(w.student for w in workers):
            for worker in [w for w in workers if not w.process.is_alive() and not w.student]:
                stop(worker)  # an idle worker that died: replaced below if students are left
            while queue and len(workers) < min(jobs, len(queue) + sum(1 for w in workers if w.student)):
                workers.append(start_worker())
            for worker in workers:
                if worker.student or not queue:
                    continue
                student = queue.pop(0)
                worker.student, worker.started = student, time.monotonic()
                worker.answer = tmp / "answers" / f"{uuid.uuid4().hex}.json"
                try:
                    worker.tasks.send((student, str(root), todo[student].notebook,
                                       str(tmp / "students" / uuid.uuid4().hex[:12]), str(worker.answer)))
                except OSError:  # it died meanwhile: its sentinel says so below
                    pass
            busy = [w for w in workers if w.student]
            mp_connection.wait([w.tasks for w in busy] + [w.process.sentinel for w in busy], timeout=1.0)
            for worker in busy:
                try:
                    done = worker.tasks.poll()
                    if done:
                        worker.tasks.recv()
                except (EOFError, OSError):
                    done = False
                if done:
                    finish(worker, late=False)
                    continue
                late = time.monotonic() - worker.started > student_time_limit
                if worker.process.is_alive() and not late:
                    continue
                stop(worker)
                finish(worker, late)
    finally:
        for worker in workers:
            try:
                worker.tasks.send(None)
            except OSError:
                pass
        for worker in workers:
            worker.process.join(timeout=5 if not worker.student else 0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        sweep_cgroups()  # the kernels of killed workers


def default_jobs(memory: int) -> int:
    """Students graded at once when --jobs is not given: one more than the cores, because a student's grading is
    mostly waiting on the kernel (measured: 3.3 s of a worker's time per chapter-4 student with 2 or 3 workers on 2
    cores, so 2 workers left the cores partly idle); never more than three quarters of the machine's memory holds at
    one kernel's limit each."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        physical = 0
    by_memory = max(1, physical * 3 // 4 // memory) if physical > 0 else cpu_count()
    return max(1, min(cpu_count() + 1, by_memory))


def grade_class(chapter: Chapter, submissions: Path, out: Path, *, jobs: int = 0, time_limit: int = 30,
                memory: int = 2 * 2**30, sandbox: bool = True, progress: bool = True,
                student_time_limit: int = 1200, shard: tuple[int, int] | None = None) -> str:
    root = submissions.resolve()
    found = find_submissions(chapter, root)
    if not found:
        raise CourseError(f"{submissions} holds no student folders (expected {submissions}/<student_id>/<notebook>.ipynb)")
    if out.exists() and not out.is_dir():
        raise CourseError(f"{out} is a file; --out needs a folder for the grades (it is created if missing)")
    roster = sorted(found)
    if shard:  # this machine's slice of the class (autograder/shards.py); `merge` puts the slices together
        found = shards.select(found, shard)
    out.mkdir(parents=True, exist_ok=True)
    jobs = jobs or default_jobs(memory)
    results: dict[str, dict] = {}
    todo = {name: entry for name, entry in found.items() if entry.notebook}
    for name, entry in found.items():
        if not entry.notebook:
            results[name] = Result(notebook="", chapter=chapter.name, max_score=max_score(chapter),
                                   error=entry.reason).to_json()
            if entry.folder:
                _write_student(out, name, results[name], _error_page(name, chapter, entry.reason))
    # in the temp folder, or where a short path leaves room for the kernels' sockets below it (see _run_students)
    short = socket_folder_root(len("/class-12345678") + KERNEL_SOCKET_ROOM)
    with tempfile.TemporaryDirectory(prefix="class-", dir=short) as tmp:
        prepare(chapter, Path(tmp) / "template")
        bar = tqdm(total=len(found), desc=f"grading {chapter.name}", unit="student", disable=not progress,
                   initial=len(found) - len(todo))

        def done(student, data, feedback):
            results[student] = data
            _write_student(out, student, data, feedback or _error_page(student, chapter, data.get("error", "unknown")))
            bar.update(1)

        _run_students(chapter, root, todo, Path(tmp), jobs=jobs, student_time_limit=student_time_limit,
                      on_done=done, time_limit=time_limit, memory=memory, sandbox=sandbox)
        bar.close()
    write_csv(out / "grades.csv", chapter, results)
    if shard:
        shards.write_manifest(out, chapter, shard, roster, results)
    graded = [d for d in results.values() if "error" not in d]
    mean = statistics.fmean(d["score"] for d in graded) if graded else 0.0
    maximum = max_score(chapter)
    from .report import sandbox_line

    sandbox_text = sandbox_line(graded[0].get("sandbox", {})) if graded else ""
    return (f"{chapter.name}: {len(results)} students, {len(graded)} graded, {len(results) - len(graded)} not "
            f"gradable; mean score {mean:.2f} / {maximum:g}. Wrote {out / 'grades.csv'}\n{sandbox_text}")


def _write_student(out: Path, student: str, data: dict, page: str) -> None:
    """OUT/<student>/results.json and feedback.html; `student` is a checked id, and nothing is written through a link."""
    folder = out / student
    if folder.is_symlink():
        raise CourseError(f"{folder} is a symbolic link; refusing to write a student's results through it")
    folder.mkdir(exist_ok=True)
    for name, text in (("results.json", json.dumps(data, indent=2, ensure_ascii=False) + "\n"), ("feedback.html", page)):
        target = folder / name
        if target.is_symlink():
            target.unlink()
        target.write_text(text, encoding="utf-8")


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """A text cell no spreadsheet evaluates: a leading =, +, -, @, tab or carriage return (also after spaces) gets
    a quote in front, as OWASP recommends for CSV exports."""
    text = str(cell)
    if text.startswith(FORMULA_START) or text.lstrip(" ").startswith(FORMULA_START):
        return "'" + text
    return text


def write_csv(path: Path, chapter: Chapter, results: dict[str, dict]) -> None:
    tests: list[str] = []
    for data in results.values():
        for test in data.get("tests", []):
            if test["name"] not in tests:
                tests.append(test["name"])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([spreadsheet_safe(h) for h in ["student_id", "chapter", "score", "max_score", *tests, "error"]])
        for student in sorted(results):
            data = results[student]
            scores = {t["name"]: t["score"] for t in data.get("tests", [])}
            row = [student, chapter.name, f"{data.get('score', 0):g}", f"{data.get('max_score', 0):g}",
                   *[f"{scores.get(t, 0):g}" for t in tests], data.get("error", "")]
            writer.writerow([spreadsheet_safe(c) for c in row])
