"""Gradescope's autograder for one chapter: the archive (`build_archive`) and what runs in its container (`run`).

Gradescope unpacks the archive into `/autograder/source`, runs `setup.sh` once as root when it builds the image, and
for every submission runs `run_autograder` from `/autograder`, with the learner's files in `/autograder/submission`;
it reads `/autograder/results/results.json` (https://gradescope-autograders.readthedocs.io/en/latest/specs/).
The archive carries the course package and the chapter's source and learner notebooks, and grades with the same
code as `python -m autograder check`: the hidden tests run in this process, the learner's kernel in the sandbox, which
hides the source notebook and the package from it. Only check messages reach results.json, never test source.

`GRADESCOPE_AUTOGRADER_ROOT` moves `/autograder` elsewhere (the tests unpack the archive into a temporary folder).

    python -m autograder.gradescope --chapter 04_attention     # what run_autograder calls
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

from . import sandbox
from .course import REPO, Chapter, CourseError, chapter as find_chapter

ROOT_ENV = "GRADESCOPE_AUTOGRADER_ROOT"
DEFAULT_ROOT = "/autograder"
# Fixed times and modes: the same chapter gives the same archive, byte for byte.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)

SETUP = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (its Ubuntu base image).
set -euo pipefail
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${GRADESCOPE_AUTOGRADER_ROOT:-/autograder}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# bubblewrap: the sandbox the learner's kernel runs in. The course needs Python 3.11 or newer: Ubuntu 24.04 has it;
# on 22.04 the python3.11 package is installed beside the system's 3.10.
apt-get install -y -qq --no-install-recommends bubblewrap python3 python3-venv python3-pip
PYTHON=python3
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  apt-get install -y -qq --no-install-recommends python3.11 python3.11-venv
  PYTHON=python3.11
fi
"$PYTHON" -m venv "$ROOT/venv"
"$ROOT/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$SOURCE/requirements.txt"
"$ROOT/venv/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (course)"
"""

RUN = r"""#!/usr/bin/env bash
# Gradescope runs this for every submission: grade /autograder/submission, write /autograder/results/results.json.
ROOT="${{GRADESCOPE_AUTOGRADER_ROOT:-/autograder}}"
PYTHON="$ROOT/venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3  # no venv: a machine set up by hand, or the course's own tests
cd "$ROOT/source" || exit 1
export PYTHONPATH="$ROOT/source" PYTHONHASHSEED=0
exec "$PYTHON" -m autograder.gradescope --chapter {chapter}
"""


def archive_files(chapter: Chapter) -> dict[str, Path]:
    """Name in the archive -> file in this checkout: the grader, the `gpt` package and this chapter's notebooks."""
    files = {f"autograder/{p.relative_to(REPO / 'autograder').as_posix()}": p
             for p in sorted((REPO / "autograder").rglob("*.py")) if "__pycache__" not in p.parts}
    # chapter 7's checks take the learning-rate schedule and the prompt template from the course's `gpt` package
    files.update({f"gpt/{p.name}": p for p in sorted((REPO / "gpt").glob("*.py"))})
    files[f"solutions/{chapter.name}.ipynb"] = chapter.source
    if chapter.release.exists():
        files[f"notebooks/{chapter.name}.ipynb"] = chapter.release
    files["requirements.txt"] = REPO / "requirements.txt"
    return files


def build_archive(chapter: Chapter, out: Path) -> Path:
    if out.is_dir():
        raise CourseError(f"--out {out} is a folder; give the archive's file name, e.g. --out autograder.zip")
    out.parent.mkdir(parents=True, exist_ok=True)

    def add(archive, name: str, data: bytes, mode: int = 0o644):
        info = zipfile.ZipInfo(name, ZIP_TIME)
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, data)

    with zipfile.ZipFile(out, "w") as archive:
        add(archive, "setup.sh", SETUP.encode(), 0o755)
        add(archive, "run_autograder", RUN.format(chapter=chapter.name).encode(), 0o755)
        for name, path in archive_files(chapter).items():
            add(archive, name, path.read_bytes())
    return out


# --- in Gradescope's container ---------------------------------------------------------------------------------------
def pick_notebook(folder: Path, chapter: Chapter) -> Path:
    """The notebook to grade among the uploaded files, or SubmissionError with the line the learner reads."""
    from .grading import SubmissionError

    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
                   and ".ipynb_checkpoints" not in p.parts) if folder.is_dir() else []
    notebooks = [p for p in files if p.suffix == ".ipynb"]
    named = [p for p in notebooks if p.name == f"{chapter.name}.ipynb"]
    if len(named) == 1:
        return named[0]
    if len(notebooks) == 1:
        return notebooks[0]
    if not notebooks:
        got = f" (got: {', '.join(p.name for p in files[:5])})" if files else ""
        raise SubmissionError(f"no notebook (.ipynb) was submitted{got}; upload your {chapter.name}.ipynb")
    raise SubmissionError(f"several notebooks and none is the only {chapter.name}.ipynb: "
                          + ", ".join(str(p.relative_to(folder)) for p in notebooks[:5])
                          + f"; upload just your {chapter.name}.ipynb")


def results_json(result, chapter: Chapter, seconds: float) -> dict:
    """Gradescope's results.json: the total, a test per test cell, and what the learner reads about the whole."""
    import nbformat

    from .grading import max_score, trusted_tests

    tests_of_chapter = trusted_tests(chapter)
    points = {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"].get("points", 0))
              for c in nbformat.read(chapter.source, as_version=4).cells
              if c.metadata.get("nbgrader", {}).get("grade_id") in tests_of_chapter}
    graded = {t.name: t for t in result.tests}
    tests = []
    for name, most in points.items():
        test = graded.get(name)
        score = float(test.score) if test else 0.0
        passed = test is not None and score >= most
        tests.append({"name": name, "score": score, "max_score": most, "status": "passed" if passed else "failed",
                      "output": "" if passed or test is None else test.output, "visibility": "visible"})
    total, maximum = sum(t["score"] for t in tests), max_score(chapter)
    if result.error:
        output = f"Your submission could not be graded: {result.error}\nScore: 0 / {maximum:g}"
    else:
        lost = [t["name"] for t in tests if t["status"] == "failed"]
        output = (f"Score: {total:g} / {maximum:g} for {result.notebook} (chapter {chapter.name}). "
                  + (f"Points lost in {len(lost)} test(s); each test below says what was expected and what came back."
                     if lost else "Every test passed."))
        output += "".join(f"\nNote: {event}" for event in result.events)
    return {"score": total, "execution_time": round(seconds), "output": output, "visibility": "visible",
            "stdout_visibility": "hidden", "tests": tests,
            "extra_data": {"chapter": chapter.name, "notebook": result.notebook, "sandbox": result.sandbox}}


def run(root: Path, chapter: Chapter, *, time_limit: int = 30, memory: int = 2 * 2**30) -> dict:
    """Grade `root/submission`, write `root/results/results.json`; never raises for a learner's file."""
    from .grading import Result, SubmissionError, grade_one, max_score
    from .report import print_table

    start = time.monotonic()
    print(f"grading {chapter.name} with the course package in {REPO}")
    submission = root / "submission"
    result = Result(notebook="", chapter=chapter.name, max_score=max_score(chapter))
    missing = sandbox.available()
    if missing:  # Gradescope's container may forbid namespaces: grade anyway (one submission per container)
        print(f"note: grading without the sandbox: {missing}")
    try:
        notebook = pick_notebook(submission, chapter)
        with tempfile.TemporaryDirectory(prefix="grading-") as workdir:
            result, _ = grade_one(chapter, notebook, time_limit=time_limit, memory=memory, sandbox=missing is None,
                                  workdir=Path(workdir))
        result.notebook = str(notebook.relative_to(submission))
    except SubmissionError as error:
        result.error = str(error).replace(f"{submission}/", "")
    except Exception as error:  # the learner gets a line and a zero, the instructor the reason in stdout
        result.error = f"grading failed: {type(error).__name__}; ask your instructor to look at the autograder output"
        print(f"grading failed: {type(error).__name__}: {error}")
    data = results_json(result, chapter, time.monotonic() - start)
    results = root / "results"
    results.mkdir(parents=True, exist_ok=True)
    # A new file (O_EXCL), renamed over results.json: nothing already in results/ (a link the learner's code left
    # there, were the sandbox ever off) can redirect the write.
    handle, partial = tempfile.mkstemp(dir=results, prefix=".results-", suffix=".json")
    with os.fdopen(handle, "w") as out:
        out.write(json.dumps(data, indent=2) + "\n")
    os.chmod(partial, 0o644)
    os.replace(partial, results / "results.json")
    print_table(result)  # stdout: for the instructor (stdout_visibility is hidden)
    return data


def main(argv=None) -> int:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(prog="python -m autograder.gradescope",
                                     description="Grade a Gradescope submission (what run_autograder calls).")
    parser.add_argument("--chapter", required=True)
    parser.add_argument("--time-limit", type=int, default=30)
    parser.add_argument("--memory-mib", type=int, default=2048)
    args = parser.parse_args(argv)
    try:
        root = Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)
        run(root, find_chapter(args.chapter), time_limit=args.time_limit, memory=args.memory_mib * 2**20)
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
