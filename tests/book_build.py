"""One book build per test process, shared by tests/test_book.py and tests/test_browser.py.

Both modules are in the xdist group "book", so that with `--dist loadgroup` they run in the same worker, and the
build is cached at module level here (a pytest fixture would be re-created for each module that imports it).
The grouping is not relied on for correctness: with pytest 9, pytest-xdist 3.8's loadgroup no longer groups (it
renames `item._nodeid`, which pytest 9 no longer reads), so two workers may each need the book. A file lock makes
their builds take turns (the second is quick: nothing left to execute), and tests that read `_build/html` hold it
shared, so no build rewrites the pages under them.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from autograder.course import REPO

HTML = REPO / "_build" / "html"
LOCK = REPO / "_build" / ".book-tests.lock"


def make(target):
    env = dict(os.environ, MAKEFLAGS="")
    return subprocess.run(["make", "--no-print-directory", target], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=1800)


def tracked_changes():
    proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                          text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


@dataclass
class Build:
    first: subprocess.CompletedProcess
    second: subprocess.CompletedProcess
    before: str  # `git status` of tracked files before the build

    def __iter__(self):  # `first, second, before = built`
        return iter((self.first, self.second, self.before))

    def __getitem__(self, index):
        return (self.first, self.second, self.before)[index]

    @property
    def ok(self):
        return self.first.returncode == 0 and self.second.returncode == 0

    def failure(self):
        failed = self.first if self.first.returncode else self.second
        return failed.stdout[-3000:] + failed.stderr[-3000:]


_BUILD: Build | None = None


@contextmanager
def book_lock(shared: bool = False):
    """Exclusive while building the book, shared while reading the built pages (across xdist workers)."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_book() -> Build:
    """`make book` twice (the second run must execute nothing); done once per process."""
    global _BUILD
    if _BUILD is None:
        with book_lock():
            before = tracked_changes()
            first = make("book")
            second = make("book") if first.returncode == 0 else first
        _BUILD = Build(first, second, before)
    return _BUILD


@pytest.fixture(scope="module")
def built():
    build = build_book()
    assert build.ok, build.failure()
    with book_lock(shared=True):
        yield build
