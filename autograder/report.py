"""What `python -m autograder check` prints on a terminal: a line naming the cell being graded, the sandbox line, and
the per-test table."""
from __future__ import annotations

import shutil
import sys
import textwrap

from .grading import Result


class CellProgress:
    """A one-line status on stderr naming the cell being graded, shown once grading has taken a few seconds, and only
    on a terminal; gone before the table is printed. Pass it to `grade_one(on_cell=...)`."""

    def __init__(self, chapter: str, delay: float = 3.0):
        from tqdm import tqdm

        self.chapter = chapter
        # every update shows (mininterval=0): the line must name the cell now running, not one that ran before it
        self.bar = tqdm(desc=f"grading {chapter}", delay=delay, leave=False, file=sys.stderr, disable=None,
                        bar_format="{desc} [{elapsed}]", mininterval=0, miniters=1)

    def __call__(self, index: int, total: int, cell) -> None:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        self.bar.set_description_str(f"grading {self.chapter}: cell {index + 1} of {total}"
                                     + (f" ({grade_id})" if grade_id else ""), refresh=False)
        self.bar.update()

    def close(self) -> None:
        self.bar.close()

    def __deepcopy__(self, memo):
        return self  # traitlets deep-copies configuration values; there is one terminal line, not a copy per copy


def sandbox_line(sandbox: dict) -> str:
    if not sandbox or sandbox.get("sandbox") != "bubblewrap":
        return ("sandbox: OFF -- the notebook ran with your own permissions (install bubblewrap to sandbox it)"
                + (f"; memory {sandbox['memory_bytes'] / 2**30:g} GiB per process" if sandbox.get("memory_limit")
                   else ""))
    memory = f"{sandbox.get('memory_bytes', 0) / 2**30:g} GiB"
    parts = [
        "bubblewrap",
        "no network",
        "sees only Python, its packages and the chapter's data; writes only its own home and /tmp",
        f"memory {memory} for the kernel and its children" if sandbox.get("memory_total")
        else f"memory {memory} per process (no cgroup here)" if sandbox.get("memory_limit") else "no memory limit",
        f"at most {256} processes" if sandbox.get("processes_total") else "no process limit (no cgroup here)",
    ]
    return "sandbox: " + ", ".join(parts)


def print_table(result: Result) -> None:
    width = shutil.get_terminal_size((100, 20)).columns
    print(f"{result.chapter}: {result.notebook}")
    if result.error:
        print(f"  not graded: {result.error}")
        return
    name_width = max([len(t.name) for t in result.tests] + [4])
    for test in result.tests:
        mark = "ok  " if test.score >= test.max_score else "FAIL"
        line = f"  {mark} {test.name:<{name_width}}  {test.score:g}/{test.max_score:g}"
        print(line)
        if test.output and test.score < test.max_score:
            # wrapped, never cut: the end of a message is often its hint
            for line in test.output.splitlines():
                print(textwrap.fill(line, width=max(width, 40), initial_indent=" " * 7, subsequent_indent=" " * 7,
                                    break_on_hyphens=False))
    print(f"score: {result.score:g} / {result.max_score:g}")
    for event in result.events:
        print(f"note: {event}")
    print(sandbox_line(result.sandbox))
