"""make bench-grading: grade a simulated chapter-4 class with `python -m autograder grade` and, in the same run, with
plain serial `nbgrader autograde` of the same files; print both wall times, their ratio, and whether scores agree.

Goal (issue #3): ratio <= 0.6 on 2 cores, identical scores.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

from autograder.course import REPO, chapter, nbgrader_config
from autograder.release import generate

CH = chapter("04_attention")


def simulated_class(size: int) -> dict[str, nbformat.NotebookNode]:
    """Correct, unattempted and each plausible bug from tests/wrong_answers, cycled to `size` students."""
    spec = importlib.util.spec_from_file_location("wrong", REPO / "tests" / "wrong_answers" / "ch04_attention.py")
    wrong = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wrong)
    variants = [{}, None] + [w["replace"] for w in wrong.WRONG_ANSWERS if "import torch" not in str(w["replace"])]
    students = {}
    for i in range(size):
        variant = variants[i % len(variants)]
        if variant is None:
            nb = nbformat.read(CH.release, as_version=4)
        else:
            nb = nbformat.read(CH.source, as_version=4)
            for cell in nb.cells:
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                if grade_id in variant:
                    cell.source = variant[grade_id]
        students[f"student{i:02d}"] = nb
    return students


def plain_nbgrader(students, root: Path) -> tuple[float, dict[str, float]]:
    generate(root, CH)
    config_lines = [
        "c = get_config()",
        f"c.CourseDirectory.root = {str(root)!r}",
        f"c.CourseDirectory.course_id = {nbgrader_config(root).CourseDirectory.course_id!r}",
        f"c.CourseDirectory.db_url = 'sqlite:///{root / 'gradebook.db'}'",
    ]
    (root / "nbgrader_config.py").write_text("\n".join(config_lines) + "\n")
    for student, nb in students.items():
        folder = root / "submitted" / student / CH.name
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{CH.name}.ipynb")
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nbgrader", "autograde", CH.name, "--log-level=ERROR"], cwd=root, env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    scores = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for student in students:
            notebook = gb.find_submission_notebook(CH.name, CH.name, student)
            scores[student] = {g.name: g.score for g in notebook.grades if g.name.startswith("test_")}
    return wall, scores


def zeroed_for_stderr(root: Path, student: str) -> set[str]:
    """Test cells plain nbgrader scored 0 only because something wrote to stderr (no error in the cell)."""
    nb = nbformat.read(root / "autograded" / student / CH.name / f"{CH.name}.ipynb", as_version=4)
    cells = set()
    for cell in nb.cells:
        outputs = cell.get("outputs", [])
        if (any(o.output_type == "stream" and o.name == "stderr" for o in outputs)
                and not any(o.output_type == "error" for o in outputs)):
            cells.add(cell.metadata.get("nbgrader", {}).get("grade_id"))
    return cells


def ours(students, root: Path, jobs: int) -> tuple[float, dict[str, float]]:
    import json

    folder = root / "submissions"
    for student, nb in students.items():
        (folder / student).mkdir(parents=True)
        nbformat.write(nb, folder / student / f"{CH.name}.ipynb")
    # a command of its own, as plain nbgrader's: each timing pays its start-up, a forkserver included
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    command = [sys.executable, "-m", "autograder", "grade", CH.name, str(folder), "--out", str(root / "out"),
               "--no-progress", *(["--jobs", str(jobs)] if jobs else [])]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    results = {s: json.loads((root / "out" / s / "results.json").read_text()) for s in students}
    return wall, {s: {t["name"]: (t["score"], t.get("output", "")) for t in r["tests"]} for s, r in results.items()}


def kernel_start(sandboxed: bool, runs: int = 5) -> float:
    """Median seconds from launch to a kernel that answers, started as grading starts it (with or without bwrap)."""
    import asyncio
    import statistics

    from autograder import sandbox
    from autograder.kernel import SandboxKernelManager

    async def once() -> float:
        workdir = Path(tempfile.mkdtemp(prefix="k-"))
        (workdir / "conn").mkdir()
        km = SandboxKernelManager(transport="ipc")
        km.ip, km.connection_file = str(workdir / "conn" / "kernel"), str(workdir / "conn" / "connection.json")
        km.workdir, km.sandboxed = str(workdir), sandboxed
        start = time.perf_counter()
        await km.start_kernel()
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=60)
        took = time.perf_counter() - start
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
        sandbox.kill_cgroup(sandbox.cgroup_paths(workdir))
        shutil.rmtree(workdir, ignore_errors=True)
        return took

    return statistics.median(asyncio.run(once()) for _ in range(runs))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--rounds", type=int, choices=(1, 2), default=2,
                        help="2: each side timed twice, in the order plain, ours, ours, plain")
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    students = simulated_class(args.students)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # plain, ours, ours, plain: on a machine shared with other work, a load that rises or falls during the run
        # weighs on both sides alike (the sums are compared); a single pair would charge the change to one side
        plain_wall, plain_scores = plain_nbgrader(students, tmp / "plain")
        our_wall, our_scores = ours(students, tmp / "ours", args.jobs)
        walls = [plain_wall, our_wall]
        if args.rounds == 2:
            walls += [ours(students, tmp / "ours2", args.jobs)[0], plain_nbgrader(students, tmp / "plain2")[0]]
            plain_wall, our_wall = walls[0] + walls[3], walls[1] + walls[2]
        differences, explained, gated = [], 0, 0
        for student in students:
            for test, plain in plain_scores[student].items():
                mine, output = our_scores[student].get(test, (None, ""))
                if mine == plain:
                    continue
                if plain == 0 and test in zeroed_for_stderr(tmp / "plain", student):
                    explained += 1  # nbgrader zeroes a test cell for any stderr output; we treat warnings as harmless
                elif plain == 0 and "failed its own test" in output:
                    gated += 1  # a visible test broken by another exercise's mistake: judged by the hidden tests
                else:
                    differences.append(f"  {student} {test}: nbgrader {plain} vs ours {mine}")
        our_scores = {s: {t: score for t, (score, _) in tests.items()} for s, tests in our_scores.items()}
    total = lambda scores: {s: sum(v.values()) for s, v in scores.items()}  # noqa: E731
    same_totals = sum(1 for s in students if total(plain_scores)[s] == total(our_scores)[s])
    bare, boxed = kernel_start(False), kernel_start(True)
    print(f"students: {len(students)}  cores: {os.cpu_count()}")
    print(f"kernel start (median of 5): {bare:.2f} s without the sandbox, {boxed:.2f} s in bubblewrap + cgroups "
          f"(+{boxed - bare:.2f} s per kernel)")
    each = lambda *ws: f"  ({' + '.join(f'{w:.1f}' for w in ws)})" if len(ws) > 1 else ""  # noqa: E731
    print(f"plain serial nbgrader autograde: {plain_wall:7.1f} s{each(*walls[0::3])}")
    print(f"python -m autograder grade:      {our_wall:7.1f} s{each(*walls[1:3])}")
    print(f"ratio (ours / plain):            {our_wall / plain_wall:7.2f}   (goal <= 0.60)")
    print(f"identical totals:                {same_totals} of {len(students)} students")
    print(f"test cells scored differently:   {len(differences) + explained + gated} "
          f"({explained} zeroed by nbgrader only for a warning on stderr, which we don't penalise; {gated} whose "
          "visible test failed only through another exercise that lost its own test, which we don't charge twice)")
    for line in differences:
        print(line)
    return 0 if not differences else 1


if __name__ == "__main__":
    sys.exit(main())
