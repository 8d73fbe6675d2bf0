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
import re
import shutil
import signal
import statistics
import tempfile
import time
import uuid
import warnings
from pathlib import Path

from tqdm import tqdm

from . import shards
from .sandbox import sweep_cgroups
from .course import Chapter, CourseError
from .grading import Result, SubmissionError, cpu_count, grade_one, max_score, prepare

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def find_submissions(chapter: Chapter, folder: Path) -> dict[str, Path | str]:
    """student_id -> notebook path, or the reason there is none."""
    if not folder.is_dir():
        raise CourseError(f"{folder}: no such folder of submissions (expected {folder}/<student_id>/<notebook>.ipynb)")
    found: dict[str, Path | str] = {}
    for student in sorted(p for p in folder.iterdir() if p.is_dir()):
        if not STUDENT_ID.match(student.name):
            continue
        exact = student / f"{chapter.name}.ipynb"
        nested = student / chapter.name / f"{chapter.name}.ipynb"  # nbgrader's submitted/<student>/<assignment>/
        exact = nested if nested.is_file() and not exact.is_file() else exact
        notebooks = sorted(student.glob("*.ipynb"))
        if exact.is_file():
            found[student.name] = exact
        elif len(notebooks) == 1:
            found[student.name] = notebooks[0]
        elif not notebooks:
            found[student.name] = "no notebook (.ipynb) was submitted"
        else:
            found[student.name] = (f"several notebooks and none named {chapter.name}.ipynb: "
                                   + ", ".join(n.name for n in notebooks[:5]))
    return found


def _grade_student(chapter: Chapter, student: str, notebook: str, template: str, workdir: str,
                   time_limit: int, memory: int, sandbox: bool, scratch_root: str, answer: str) -> None:
    """In a worker process: grade one student; write {"result": results.json, "feedback": HTML or None} to
    `answer`. Never raises: whatever happens is in the result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops every worker
    warnings.filterwarnings("ignore")
    result = Result(notebook=Path(notebook).name, chapter=chapter.name, max_score=max_score(chapter))
    feedback = None
    try:
        result, root = grade_one(chapter, Path(notebook), template=Path(template), workdir=Path(workdir),
                                 student=student, time_limit=time_limit, memory=memory, sandbox=sandbox,
                                 feedback=True, scratch_root=Path(scratch_root))
        result.notebook = Path(notebook).name
        page = root / "feedback" / student / chapter.name / f"{chapter.name}.html"
        feedback = page.read_text() if page.exists() else None
    except SubmissionError as error:
        result.error = str(error).replace(str(Path(notebook).parent) + "/", "")
    except Exception as error:  # the class run always finishes; this student's row says what broke
        result.error = f"grading failed: {type(error).__name__}: {str(error)[:200]}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    Path(answer).write_text(json.dumps({"result": result.to_json(), "feedback": feedback}))


def _error_page(student: str, chapter: Chapter, reason: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(chapter.name)}: "
            f"{html.escape(student)}</title></head><body><h1>{html.escape(chapter.name)}</h1>"
            f"<p>Your submission could not be graded: {html.escape(reason)}</p><p>Score: 0</p></body></html>")


def _workers(chapter: Chapter):
    """Processes that start from a clean interpreter: a process that has run torch's OpenMP pool can't be forked
    safely (the child's first parallel op waits for ever in libgomp), so workers fork from a forkserver that has
    only imported the grader and this chapter's checks, never run them."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["autograder.classroom", chapter.checks_module])
    return context


def _run_students(chapter: Chapter, todo: dict[str, Path], tmp: Path, *, jobs: int, student_time_limit: int,
                  on_done, **grading) -> None:
    """Grade `todo` with at most `jobs` worker processes, one process per student. A student whose grading runs
    past `student_time_limit` seconds (replays included) is stopped from here, and the class goes on."""
    context = _workers(chapter)
    queue = sorted(todo)
    running: dict[str, tuple] = {}
    (tmp / "k").mkdir(exist_ok=True)
    try:
        while queue or running:
            while queue and len(running) < jobs:
                student = queue.pop(0)
                answer = tmp / "answers" / f"{uuid.uuid4().hex}.json"
                answer.parent.mkdir(exist_ok=True)
                process = context.Process(target=_grade_student, daemon=True, args=(
                    chapter, student, str(todo[student].resolve()), str(tmp / "template"),
                    str(tmp / "students" / uuid.uuid4().hex[:12]), grading["time_limit"], grading["memory"],
                    grading["sandbox"], str(tmp / "k"), str(answer)))
                process.start()
                running[student] = (process, time.monotonic(), answer)
            mp_connection.wait([p.sentinel for p, _, _ in running.values()], timeout=1.0)
            for student, (process, started, answer) in list(running.items()):
                late = time.monotonic() - started > student_time_limit
                if process.is_alive() and not late:
                    continue
                if process.is_alive():
                    process.kill()
                process.join()
                del running[student]
                try:
                    data = json.loads(answer.read_text())
                    result, feedback = data["result"], data["feedback"]
                except (OSError, ValueError, KeyError):
                    reason = (f"grading stopped after {student_time_limit} s, the time limit per student" if late
                              else f"grading failed: the worker ended with exit code {process.exitcode}")
                    result = Result(notebook=todo[student].name, chapter=chapter.name,
                                    max_score=max_score(chapter), error=reason).to_json()
                    feedback = None
                on_done(student, result, feedback)
    finally:
        for process, _, _ in running.values():
            process.kill()
            process.join()
        sweep_cgroups()  # the kernels of killed workers


def grade_class(chapter: Chapter, submissions: Path, out: Path, *, jobs: int = 0, time_limit: int = 30,
                memory: int = 2 * 2**30, sandbox: bool = True, progress: bool = True,
                student_time_limit: int = 1200, shard: tuple[int, int] | None = None) -> str:
    found = find_submissions(chapter, submissions)
    if not found:
        raise CourseError(f"{submissions} holds no student folders (expected {submissions}/<student_id>/<notebook>.ipynb)")
    roster = sorted(found)
    if shard:  # this machine's slice of the class (autograder/shards.py); `merge` puts the slices together
        found = shards.select(found, shard)
    out.mkdir(parents=True, exist_ok=True)
    jobs = jobs or cpu_count()
    results: dict[str, dict] = {}

    def write(student: str, data: dict, feedback: str | None) -> None:
        results[student] = data
        folder = out / student
        folder.mkdir(exist_ok=True)
        (folder / "results.json").write_text(json.dumps(data, indent=2) + "\n")
        (folder / "feedback.html").write_text(feedback or _error_page(student, chapter, data.get("error", "unknown")))

    with tempfile.TemporaryDirectory(prefix="class-") as tmp:
        prepare(chapter, Path(tmp) / "template")
        todo = {s: p for s, p in found.items() if isinstance(p, Path)}
        for student, reason in found.items():
            if isinstance(reason, str):
                write(student, Result(notebook="", chapter=chapter.name, max_score=max_score(chapter),
                                      error=reason).to_json(), None)
        bar = tqdm(total=len(found), desc=f"grading {chapter.name}", unit="student", disable=not progress,
                   initial=len(found) - len(todo))

        def done(student, data, feedback):
            write(student, data, feedback)
            bar.update(1)

        _run_students(chapter, todo, Path(tmp), jobs=jobs, student_time_limit=student_time_limit, on_done=done,
                      time_limit=time_limit, memory=memory, sandbox=sandbox)
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


def write_csv(path: Path, chapter: Chapter, results: dict[str, dict]) -> None:
    tests: list[str] = []
    for data in results.values():
        for test in data.get("tests", []):
            if test["name"] not in tests:
                tests.append(test["name"])
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "chapter", "score", "max_score", *tests, "error"])
        for student in sorted(results):
            data = results[student]
            scores = {t["name"]: t["score"] for t in data.get("tests", [])}
            writer.writerow([student, chapter.name, f"{data.get('score', 0):g}", f"{data.get('max_score', 0):g}",
                             *[f"{scores.get(t, 0):g}" for t in tests], data.get("error", "")])
