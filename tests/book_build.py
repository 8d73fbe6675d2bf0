"""The book build that `make test` checks: run once by `make book-record`, before pytest starts, and only read here.

As a script (`make book-record`), it runs `make book` twice and writes each build's log and exit status, and the
state of the checkout's tracked files before and after, into `_build/book-record/`. The second build must execute
nothing: every page the first one ran is in the execution cache, and regenerating the solution pages
(`autograder book-solutions`) gives the same notebooks. It skips `release` and `data` (seconds instead of a minute:
the book never executes their outputs, and tests/test_chapters.py checks that a release is byte-stable). The script
always exits 0: a failed build is reported by tests/test_book.py, not by make, so the rest of the suite still runs.

As a module, it gives tests/test_book.py and tests/test_browser.py that record (`recorded()`), which fails their
tests with the build's log when the build failed, and when the checkout changed since the build (pages of other
sources). No test builds the book, so the two files can run on different workers without taking turns.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from autograder.course import REPO

HTML = REPO / "_build" / "html"
RECORD = REPO / "_build" / "book-record"
BUILDS = ("first", "second")


def checkout_state() -> str:
    """HEAD and a digest of every tracked file's difference from it (what `git status` can't see: a second edit)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    diff = subprocess.run(["git", "diff", "HEAD", "--no-ext-diff", "--binary"], cwd=REPO, capture_output=True).stdout
    return f"{head} {hashlib.sha256(diff).hexdigest()}"


def changed_files() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()


@dataclass
class Record:
    returncodes: dict[str, int]
    before: str  # checkout_state() before the first build
    after: str   # ... and after the second
    changed: str  # `git status` of tracked files after the builds (for the message)

    def log(self, build: str) -> str:
        return (RECORD / f"{build}.log").read_text(errors="replace")

    @property
    def ok(self) -> bool:
        return all(self.returncodes.get(build) == 0 for build in BUILDS)

    def failure(self) -> str:
        build = next(b for b in BUILDS if self.returncodes.get(b) != 0)
        return f"`make book` ({build} build) exited with {self.returncodes.get(build)}:\n{self.log(build)[-6000:]}"


def recorded() -> Record:
    """The record of `make book-record`; a test failure (not a skip) when there is none or it is stale."""
    import pytest

    path = RECORD / "record.json"
    if not path.exists():
        pytest.fail(f"no book build recorded ({path.relative_to(REPO)}): `make test` builds the book before pytest; "
                    "alone, run `make book-record` first")
    record = Record(**json.loads(path.read_text()))
    if checkout_state() != record.after:
        pytest.fail("the checkout changed since `make book-record` built the book: run it again")
    return record


def make(target: str, log: Path, skip: tuple[str, ...] = ()) -> int:
    env = dict(os.environ, MAKEFLAGS="", MAKELEVEL="")
    with open(log, "w") as out:
        try:
            command = ["make", "--no-print-directory", *(f"--old-file={t}" for t in skip), target]
            return subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env,
                                  timeout=1800).returncode
        except subprocess.TimeoutExpired:
            out.write("\n`make book` did not finish within 30 minutes\n")
            return 124


def main() -> int:
    RECORD.mkdir(parents=True, exist_ok=True)
    (RECORD / "record.json").unlink(missing_ok=True)
    before = checkout_state()
    returncodes = {}
    for build in BUILDS:
        start = time.monotonic()
        returncodes[build] = make("book", RECORD / f"{build}.log", skip=() if build == "first" else ("release", "data"))
        print(f"book-record: {build} `make book`: exit {returncodes[build]}, {time.monotonic() - start:.0f} s "
              f"(log: {(RECORD / f'{build}.log').relative_to(REPO)})")
        if returncodes[build]:
            break
    record = Record(returncodes, before, checkout_state(), changed_files())
    (RECORD / "record.json").write_text(json.dumps(record.__dict__, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
