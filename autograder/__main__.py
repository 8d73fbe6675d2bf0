"""python -m autograder: the course's command line. See `python -m autograder --help`."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

# jsonschema, which nbformat and nbgrader import, builds an RFC 3987 grammar at import when `rfc3987_syntax` is
# installed (half a CPU-second, more than all else it loads) to check "iri" strings, a format nothing here validates.
sys.modules.setdefault("rfc3987_syntax", None)

from . import sandbox  # noqa: E402
from .course import CourseError, chapter, chapters  # noqa: E402


def _chapter_of(path: Path):
    """The chapter a notebook belongs to, from its name (NN_name.ipynb, or NN_anything.ipynb)."""
    stem = Path(path).stem
    for ch in chapters():
        if stem == ch.name or stem.startswith(ch.name):
            return ch
    if stem[:2].isdigit():
        return chapter(stem[:2])
    raise CourseError(f"can't tell the chapter of {path} from its name; pass it: --chapter 04_attention")


def cmd_check(args) -> int:
    from . import kernel

    notebook = Path(args.notebook)
    if not notebook.is_file():
        raise CourseError(f"{notebook}: no such notebook file. Give the path of your notebook, "
                          "e.g. notebooks/04_attention.ipynb")
    ch = chapter(args.chapter) if args.chapter else _chapter_of(notebook)
    missing = None if args.no_sandbox else sandbox.available()
    sandboxed, memory = not args.no_sandbox and missing is None, args.memory_mib * 2**20
    # The kernel boots in its own process while this one loads nbgrader: the wait a learner sees is the longer of
    # the two, not their sum. grade_one adopts it, or stops it if the notebook can't be graded.
    try:
        started = kernel.prestart(kernel.settings_for(ch, memory=memory, sandboxed=sandboxed))
    except Exception:  # the executor starts its own and reports what goes wrong, as for any kernel that won't start
        started = None
    progress = None
    try:
        from .grading import grade_one
        from .report import CellProgress, print_table

        progress = CellProgress(ch.name)
        with tempfile.TemporaryDirectory(prefix="grading-") as workdir:
            result, _ = grade_one(ch, notebook, time_limit=args.time_limit, memory=memory, sandbox=sandboxed,
                                  workdir=Path(workdir), on_cell=progress, kernel=started)
    finally:
        if started is not None:
            started.discard()
        if progress is not None:
            progress.close()
    if missing:
        result.events.append(f"your code ran without the sandbox: {missing}")
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_table(result)
    return 0


def cmd_grade(args) -> int:
    from .shards import parse_shard

    shard = parse_shard(args.shard) if args.shard is not None else None  # a bad --shard fails before any work
    from .classroom import grade_class

    missing = None if args.no_sandbox else sandbox.available()
    if missing and not args.allow_unsandboxed:
        raise CourseError(f"can't sandbox the students' code: {missing}. Install it, or pass --allow-unsandboxed "
                          "to grade without a sandbox (students' code could then read and change this machine)")
    summary = grade_class(chapter(args.chapter), Path(args.submissions), Path(args.out), jobs=args.jobs,
                          time_limit=args.time_limit, memory=args.memory_mib * 2**20,
                          sandbox=not args.no_sandbox and missing is None, progress=not args.no_progress,
                          student_time_limit=args.student_time_limit, shard=shard)
    print(f"shard {shard[0]}/{shard[1]}: {summary}" if shard else summary)
    if args.nbgrader_feedback:
        _place_feedback(args, shard)
    return 0


def _place_feedback(args, shard) -> None:
    from .exchange import place_feedback

    ch, feedback = chapter(args.chapter), Path(args.nbgrader_feedback)
    placed, unreleasable = place_feedback(ch, Path(args.submissions), Path(args.out), feedback, shard=shard)
    print(f"feedback for {placed} students in {feedback}; release it with: nbgrader release_feedback {ch.name}")
    if unreleasable:
        print(f"note: {unreleasable} of them have no timestamp.txt and submission_secret.txt beside their notebook "
              "(not gathered by `nbgrader collect`): release_feedback cannot release those")


def cmd_merge(args) -> int:
    from .shards import merge

    print(merge([Path(f) for f in args.shards], Path(args.out)))
    return 0


def cmd_gradescope(args) -> int:
    from .gradescope import build_archive

    ch = chapter(args.chapter)
    out = build_archive(ch, Path(args.out))
    print(f"wrote {out}: upload it as the autograder of a Gradescope programming assignment for {ch.name} "
          "(setup.sh, run_autograder, the course package and the chapter's notebooks)")
    return 0


def cmd_release(args) -> int:
    from .release import instructor_course, release_notebook

    selected = chapters() if args.all or not args.chapter else [chapter(args.chapter)]
    if args.out:
        out = instructor_course(selected, Path(args.out))
        print(f"nbgrader course folder ready: {out} (source/, release/, gradebook.db, nbgrader_config.py)")
    else:
        for ch in selected:
            print(f"released {release_notebook(ch)}")
    return 0


def cmd_book_solutions(args) -> int:
    from .release import book_solution

    for ch in chapters():
        book_solution(ch)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m autograder", description="Grade and release the course notebooks.")
    sub = top.add_subparsers(dest="command", required=True)

    def limits(p):
        p.add_argument("--time-limit", type=int, default=30, help="seconds per cell and per test call (default 30)")
        p.add_argument("--memory-mib", type=int, default=2048, help="memory for the learner's kernel (default 2048)")
        p.add_argument("--no-sandbox", action="store_true", help="run the kernel without the sandbox (debugging)")

    check = sub.add_parser("check", help="grade one notebook with the hidden tests")
    check.add_argument("notebook")
    check.add_argument("--json", action="store_true", help="print a Gradescope-style results object")
    check.add_argument("--chapter", help="the chapter, if the file name doesn't say (e.g. 04_attention)")
    limits(check)
    check.set_defaults(run=cmd_check)

    grade = sub.add_parser("grade", help="grade a class: SUBMISSIONS/<student_id>/<notebook>.ipynb")
    grade.add_argument("chapter")
    grade.add_argument("submissions")
    grade.add_argument("--out", required=True, help="folder for grades.csv, results.json and feedback")
    grade.add_argument("--jobs", type=int, default=0,
                       help="students graded at once (default: one more than the cores, as memory allows)")
    grade.add_argument("--no-progress", action="store_true")
    grade.add_argument("--student-time-limit", type=int, default=1200,
                       help="seconds for one student's whole grading, restarts included (default 1200)")
    grade.add_argument("--allow-unsandboxed", action="store_true",
                       help="grade even where bubblewrap can't sandbox the kernels (students' code is then trusted)")
    grade.add_argument("--shard", metavar="K/N", help="grade only slice K of N of the students (1 <= K <= N); "
                       "combine the slices with `merge`")
    grade.add_argument("--nbgrader-feedback", metavar="FEEDBACK_DIR", help="also put each student's feedback "
                       "where `nbgrader release_feedback` looks: FEEDBACK_DIR/<student>/<chapter>/<notebook>.html")
    limits(grade)
    grade.set_defaults(run=cmd_grade)

    merge = sub.add_parser("merge", help="combine the --out folders of `grade --shard K/N` runs into one")
    merge.add_argument("shards", nargs="+", metavar="SHARD_OUT")
    merge.add_argument("--out", required=True, help="folder for the combined grades.csv and student folders")
    merge.set_defaults(run=cmd_merge)

    gradescope = sub.add_parser("gradescope", help="build a chapter's Gradescope autograder archive")
    gradescope.add_argument("chapter")
    gradescope.add_argument("--out", required=True, help="the archive to write, e.g. autograder.zip")
    gradescope.set_defaults(run=cmd_gradescope)

    release = sub.add_parser("release", help="learner notebooks, or an nbgrader course folder for instructors")
    release.add_argument("chapter", nargs="?")
    release.add_argument("--all", action="store_true", help="every chapter")
    release.add_argument("--out", help="write a complete nbgrader course folder here instead of notebooks/")
    release.set_defaults(run=cmd_release)

    books = sub.add_parser("book-solutions", help="(for `make book`) the solution pages, hidden tests removed")
    books.set_defaults(run=cmd_book_solutions)
    return top


def main(argv=None) -> int:
    warnings.filterwarnings("ignore")
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    status = main()
    if sys.argv[1:2] == ["check"]:
        # Everything is written and cleaned up by now; tearing down the interpreter with torch, transformers and
        # torch._dynamo loaded takes another second (chapter 7) that a learner would wait for.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
