"""make bench-check: what a learner's `python -m autograder check` costs over just running the notebook.

For chapters 4 and 7, one correct learner notebook (the released notebook with the solutions' code in its answer
cells), run several times in one go, the three ways interleaved so that a busy machine slows them alike:

  (a) floor   the notebook executed with nbclient in this venv and nothing else: the learner's own code has to run.
              The kernel gets NBGRADER_EXECUTION=autograde, as in (b) and (c), so it runs the same cells (chapter 7
              skips its training loop while graded).
  (b) check   python -m autograder check NOTEBOOK (the template cache warm, as on every check but the first after a
              change to solutions/; the first, cold one is timed once and shown apart).
  (c) nbgrader plain `nbgrader autograde` of the same file in a course folder prepared beforehand.

Each is a fresh process. Wall time, and CPU time of every process it started, kernels included: counted by a cpuacct
cgroup the command starts in (where this process may make one), since rusage misses a kernel killed with its cgroup
before its parent waited for it; else rusage, the benchmark being a child subreaper that reaps orphaned kernels.
Two more variants of (b) run in the same loop, for measurement only, to price two protections: without the kernel's
shortcut tripwires (autograder.tripwires, armed before ipykernel starts), and with --no-sandbox. Then one more run
of (b) with timestamps on its phases: where the seconds go.

Goal (issue #17), on an otherwise idle machine: b/a <= 1.3 in wall time and <= 1.5 in CPU time.
The machine is shared: single numbers are noisy; the ratios within one run are what count.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOAL_WALL, GOAL_CPU = 1.3, 1.5
PR_SET_CHILD_SUBREAPER = 36

FLOOR = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
"""


# --- measuring ------------------------------------------------------------------------------------------------------
def _reap_orphans(deadline_s: float = 30.0) -> None:
    """Wait for descendants that outlived their parent (reparented to us): their CPU time counts too."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def _cpu_group() -> Path | None:
    """A cgroup (v1 cpuacct) that the measured commands start in, when this process may make one. It counts the CPU
    of every process they start, kernels included: rusage misses a process killed with its cgroup before its parent
    could wait for it, as `check` kills the learner's kernel when it is done."""
    try:
        own = next(line.split(":", 2)[2].strip() for line in Path("/proc/self/cgroup").read_text().splitlines()
                   if "cpuacct" in line.split(":", 2)[1].split(","))
        group = CPUACCT / own.lstrip("/") / f"bench-check-{os.getpid()}"
        group.mkdir(exist_ok=True)
        (group / "cpuacct.usage").read_text()
        return group
    except (OSError, StopIteration, IndexError):
        return None


CPU_GROUP = None  # set in main()


def _group_cpu() -> float:
    return int((CPU_GROUP / "cpuacct.usage").read_text()) / 1e9


def timed(command: list[str], *, cwd: Path, env: dict | None = None) -> tuple[float, float, str]:
    """(wall s, CPU s of the process and all its descendants, stdout) of one command, which must succeed."""
    group = CPU_GROUP
    enter = (lambda: (group / "cgroup.procs").write_text("0")) if group else None
    cpu0, start = (_group_cpu() if group else _children_cpu()), time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=enter)
    _reap_orphans()
    wall, cpu = time.perf_counter() - start, (_group_cpu() if group else _children_cpu()) - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}\n{proc.stderr[-3000:]}")
    return wall, cpu, proc.stdout


# --- the three ways -------------------------------------------------------------------------------------------------
def learner_notebook(chapter, folder: Path) -> Path:
    """What a learner who solved everything has: the released notebook, each answer cell holding the solution."""
    import nbformat

    source = nbformat.read(chapter.source, as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.read(chapter.release, as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = _strip_markers(answers[grade_id])
    path = folder / "learner" / f"{chapter.name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _strip_markers(source: str) -> str:
    """A learner's answer has no ### BEGIN/END SOLUTION lines (nbgrader removed them on release)."""
    return "\n".join(line for line in source.splitlines()
                     if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))


def course_folder(chapter, root: Path) -> Path:
    """An nbgrader course folder with the chapter generated (gradebook written) and an nbgrader_config.py."""
    from autograder.course import nbgrader_config
    from autograder.release import generate

    generate(root, chapter)
    config = nbgrader_config(root)
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        f"c.CourseDirectory.course_id = {config.CourseDirectory.course_id!r}\n"
        f"c.CourseDirectory.db_url = 'sqlite:///{root / 'gradebook.db'}'\n"
        "c.Execute.timeout = 600\n")
    return root


def run_floor(notebook: Path, scratch: Path) -> tuple[float, float]:
    scratch.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NBGRADER_EXECUTION="autograde")
    wall, cpu, _ = timed([sys.executable, "-c", FLOOR, str(notebook), str(scratch)], cwd=scratch, env=env)
    return wall, cpu


def run_check(notebook: Path, cwd: Path, extra_env: dict | None = None, *options: str) -> tuple[float, float, dict]:
    env = dict(os.environ, **(extra_env or {}))
    wall, cpu, out = timed([sys.executable, "-m", "autograder", "check", str(notebook), "--json", *options], cwd=cwd,
                           env=env)
    return wall, cpu, json.loads(out)


def run_nbgrader(chapter, notebook: Path, prepared: Path, root: Path) -> tuple[float, float, float]:
    import nbformat
    from nbgrader.api import Gradebook

    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(prepared, root)
    (root / "nbgrader_config.py").write_text((prepared / "nbgrader_config.py").read_text()
                                             .replace(str(prepared), str(root)))
    folder = root / "submitted" / "learner" / chapter.name
    folder.mkdir(parents=True)
    nbformat.write(nbformat.read(notebook, as_version=4), folder / f"{chapter.name}.ipynb")
    wall, cpu, _ = timed([sys.executable, "-m", "nbgrader", "autograde", chapter.name, "--student", "learner",
                          "--log-level=ERROR"], cwd=root)
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        score = gb.find_submission_notebook(chapter.name, chapter.name, "learner").score
    return wall, cpu, float(score)


# --- where the seconds go -------------------------------------------------------------------------------------------
class Phases:
    """Exclusive wall and CPU seconds per phase, per thread: a phase nested in another is subtracted from it, and a
    phase on another thread (the checks preloaded while the kernel starts) is listed apart, marked [thread]."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self.local = threading.local()

    def enter(self, name):
        if threading.current_thread() is not threading.main_thread():
            name = f"[thread] {name}"
        stack = self.local.__dict__.setdefault("stack", [])
        stack.append([name, time.perf_counter(), time.thread_time(), 0.0, 0.0])

    def leave(self):
        stack = self.local.stack
        name, wall0, cpu0, inner_wall, inner_cpu = stack.pop()
        wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
        self.wall[name] = self.wall.get(name, 0.0) + wall - inner_wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu - inner_cpu
        self.count[name] = self.count.get(name, 0) + 1
        if stack:
            stack[-1][3] += wall
            stack[-1][4] += cpu

    def wrap(self, owner, attribute, name):
        original = getattr(owner, attribute, None)
        if original is None:
            return  # the code moved on (e.g. a rewritten executor): that phase just isn't itemised
        import asyncio
        import functools

        if asyncio.iscoroutinefunction(original):
            @functools.wraps(original)
            async def wrapper(*args, **kwargs):
                self.enter(name)
                try:
                    return await original(*args, **kwargs)
                finally:
                    self.leave()
        else:
            @functools.wraps(original)
            def wrapper(*args, **kwargs):
                self.enter(name)
                try:
                    return original(*args, **kwargs)
                finally:
                    self.leave()
        setattr(owner, attribute, wrapper)


def check_without_tripwires(notebook: str) -> int:
    """(In a subprocess) `check` with the kernel's shortcut tripwires left out: what that protection costs.
    Measurement only: such a check would miss library shortcuts that the static scan of the cell text cannot see."""
    from autograder import __main__ as cli, tripwires

    tripwires.preamble = lambda patterns: ""
    return cli.main(["check", notebook, "--json"])


def phases_of_check(notebook: str, out: str) -> None:
    """(In a subprocess) run `check` with its phases timed; write them to `out` as JSON. To be timed, the grader's
    modules are imported before `check` starts its kernel: the kernel's boot is not hidden behind those imports here
    as it is in a real check, so this run's "kernel start" is longer than (b)'s."""
    started = time.perf_counter()
    phases = Phases()
    phases.enter("python start, imports, reading the notebook")
    import builtins

    original_import = builtins.__import__

    def timed_import(name, *args, **kwargs):  # the first `import torch`, wherever it happens, is its own phase
        if name == "torch" and "torch" not in sys.modules:
            phases.enter("import torch (grader)")
            try:
                return original_import(name, *args, **kwargs)
            finally:
                phases.leave()
        return original_import(name, *args, **kwargs)

    builtins.__import__ = timed_import
    from autograder import __main__ as cli, execute, grading, report

    for owner, attribute, name in [
        (grading, "prepare", "course template: copied into the grading folder"),
        (grading, "course_template", "course template: cache lookup (GenerateAssignment if cold)"),
        (grading.Autograde, "start", "nbgrader Autograde (gradebook, its preprocessors, writing)"),
        (execute.SandboxedExecute, "start_new_kernel", "kernel start (sandbox, ipykernel)"),
        (execute.SandboxedExecute, "start_new_kernel_client", "kernel start (sandbox, ipykernel)"),
        (execute.SandboxedExecute, "_run", "cells (learner code and visible tests)"),
        (execute.SandboxedExecute, "_judge", "hidden tests: checks and references in the grader"),
        (execute.SandboxedExecute, "_send", "hidden tests: calls into the kernel"),
        (execute.SandboxedExecute, "_cleanup_kernel", "kernel shutdown"),
        (grading, "_collect", "reading scores back"),
        (report, "print_table", "printing the table"),
    ]:
        phases.wrap(owner, attribute, name)
    phases.leave()
    phases.enter("the rest")
    cli.main(["check", notebook])
    phases.leave()
    total = time.perf_counter() - started
    Path(out).write_text(json.dumps({"wall": phases.wall, "cpu": phases.cpu, "count": phases.count,
                                     "total_wall": total, "grader_cpu": time.process_time()}))


def print_phases(data: dict, measured: tuple[float, float]) -> None:
    print(f"    {'phase (grader process)':<60} {'wall s':>7} {'CPU s':>6}  calls")
    for name, wall in sorted(data["wall"].items(), key=lambda kv: -kv[1]):
        print(f"    {name:<60} {wall:7.2f} {data['cpu'][name]:6.2f}  {data['count'][name]}")
    print(f"    {'grader process, all threads':<60} {data['total_wall']:7.2f} {data['grader_cpu']:6.2f}")
    print(f"    {'the processes it started (sandbox, kernel), CPU':<60} {'':7} "
          f"{measured[1] - data['grader_cpu']:6.2f}")


# --- the report -----------------------------------------------------------------------------------------------------
def summary(samples: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    walls, cpus = [s[0] for s in samples], [s[1] for s in samples]
    return min(walls), statistics.median(walls), min(cpus), statistics.median(cpus)


def bench_chapter(name: str, runs: int, tmp: Path) -> dict:
    from autograder.course import chapter

    ch = chapter(name)
    notebook = learner_notebook(ch, tmp / name)
    prepared = course_folder(ch, tmp / name / "prepared")
    cache = tmp / name / "template-cache"
    cold_env = {"AUTOGRADER_CACHE": str(cache)}
    wall, cpu, _ = run_check(notebook, tmp, cold_env)  # an empty cache: the first check after a change to solutions/
    cold = (wall, cpu)
    samples: dict[str, list] = {"a": [], "b": [], "c": [], "b0": [], "b1": []}
    for _ in range(runs):
        samples["a"].append(run_floor(notebook, tmp / name / "floor"))
        wall, cpu, result = run_check(notebook, tmp, cold_env)
        if result["score"] != result["max_score"]:
            raise SystemExit(f"{name}: check gave {result['score']} / {result['max_score']} to the solution")
        samples["b"].append((wall, cpu))
        wall, cpu, score = run_nbgrader(ch, notebook, prepared, tmp / name / "course")
        samples["c"].append((wall, cpu))
        wall, cpu, _ = timed([sys.executable, __file__, "--check-without-tripwires", str(notebook)], cwd=tmp,
                             env=dict(os.environ, **cold_env))
        samples["b0"].append((wall, cpu))
        wall, cpu, _ = run_check(notebook, tmp, cold_env, "--no-sandbox")
        samples["b1"].append((wall, cpu))
    profile = tmp / name / "phases.json"
    wall, cpu, _ = timed([sys.executable, __file__, "--phases-of", str(notebook), "--out", str(profile)], cwd=tmp,
                         env=dict(os.environ, **cold_env))
    profiled = (wall, cpu)
    return {"name": name, "cold": cold, "samples": samples, "nbgrader_score": score, "max": result["max_score"],
            "phases": json.loads(profile.read_text()), "profiled": profiled}


def report(result: dict, runs: int) -> bool:
    a, b, c = (summary(result["samples"][k]) for k in "abc")
    print(f"\n{result['name']}: {runs} runs each (min / median); check scored the solution "
          f"{result['max']:g} / {result['max']:g}, nbgrader {result['nbgrader_score']:g}")
    print(f"  {'':34} {'wall s (min / median)':>22} {'CPU s (min / median)':>22}")
    for label, s in (("(a) floor: nbclient alone", a), ("(b) python -m autograder check", b),
                     ("(c) nbgrader autograde", c)):
        print(f"  {label:34} {s[0]:10.2f} / {s[1]:8.2f} {s[2]:10.2f} / {s[3]:8.2f}")
    off = summary(result["samples"]["b0"])
    print(f"  {'    (b) without the tripwires':34} {off[0]:10.2f} / {off[1]:8.2f} {off[2]:10.2f} / "
          f"{off[3]:8.2f}   (measurement only: what the shortcut tripwires cost)")
    off = summary(result["samples"]["b1"])
    print(f"  {'    (b) --no-sandbox':34} {off[0]:10.2f} / {off[1]:8.2f} {off[2]:10.2f} / {off[3]:8.2f}"
          "   (measurement only: what the sandbox costs)")
    print(f"  {'b/a (goal <= %.1f wall, <= %.1f CPU)' % (GOAL_WALL, GOAL_CPU):34} {b[0] / a[0]:10.2f} / "
          f"{b[1] / a[1]:8.2f} {b[2] / a[2]:10.2f} / {b[3] / a[3]:8.2f}")
    print(f"  {'b/c':34} {b[0] / c[0]:10.2f} / {b[1] / c[1]:8.2f} {b[2] / c[2]:10.2f} / {b[3] / c[3]:8.2f}")
    print(f"  {'first check after a change to solutions/':34} {result['cold'][0]:10.2f} {'':10} "
          f"{result['cold'][1]:10.2f}   (once: it builds the template cache)")
    print("  where the seconds of one check go (phases, exclusive):")
    print_phases(result["phases"], result["profiled"])
    return b[1] / a[1] <= GOAL_WALL and b[3] / a[3] <= GOAL_CPU


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chapters", nargs="+", default=["04_attention", "07_training"])
    parser.add_argument("--phases-of", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--check-without-tripwires", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    if args.phases_of:
        phases_of_check(args.phases_of, args.out)
        return 0
    if args.check_without_tripwires:
        return check_without_tripwires(args.check_without_tripwires)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    global CPU_GROUP
    CPU_GROUP = _cpu_group()
    print(f"cores: {os.cpu_count()}  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("CPU time: " + (f"the cpuacct cgroup the commands run in ({CPU_GROUP})" if CPU_GROUP else
                          "rusage of the children (no cpuacct cgroup here: a killed kernel's CPU may be missed)"))
    met = True
    try:
        with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
            for name in args.chapters:
                met &= report(bench_chapter(name, args.runs, Path(tmp)), args.runs)
    finally:
        if CPU_GROUP is not None:
            _reap_orphans()
            try:
                CPU_GROUP.rmdir()
            except OSError:
                pass
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("goal met (median ratios)" if met else "goal NOT met (median ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
