"""nbgrader's Execute preprocessor, with the learner's kernel in a sandbox and hidden tests judged outside it.

It slots into `Autograde.autograde_preprocessors` where nbgrader's `Execute` was; everything else (restoring hidden
tests and locked cells from the gradebook, saving scores, feedback) stays nbgrader's. What changes:

- The kernel starts through `sandbox.py` (limits, no network, read-only files) and talks over Unix sockets.
- A test cell is split. Its visible asserts run in the kernel as usual. Its hidden section, taken from the *source*
  notebook (never from the submission), runs here in the grader: its checks call the learner's functions through
  `KernelEnv`, which sends inputs into the kernel and gets data back. Whatever the learner's code did to numpy, to
  the IPython shell or to the cell outputs, the verdict is made here, from values the grader asked for.
- The cell's outputs are then rewritten from that verdict: nothing but an error (with the learner's one-line reason)
  or a pass line, so nbgrader's scoring reads exactly our decision.
- A test cell charges only its own exercise (`test_<exercise>[_<aspect>]`): when its visible part fails and the
  failure ran an earlier exercise that has already lost a test (a traceback frame in that exercise's cell, or a name
  the static scan finds this exercise's code reaching), the hidden section, which lends references, decides alone,
  and the output says to fix that exercise first. A visible test's exception becomes one line (`hints.py`).
- A cell that times out is interrupted; a kernel that stops answering or dies is restarted and the cells that had
  run are replayed, so one bad cell costs only the tests that need it. Output beyond a cap is dropped.
"""
from __future__ import annotations

import json
import secrets
import shutil
import time
from pathlib import Path

from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader import utils as nbutils
from nbgrader.preprocessors import Execute
from traitlets import Any, Bool, Callable, Dict, Integer, List, Unicode

from .env import KernelEnv, use as use_env
from . import hints, kernel, kernel_shim, sandbox, static, tripwires
from .messages import CheckFailed

HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
PASS_MARK = "passed"
OUTPUT_CUT = "[output cut:"


def split_hidden(source: str) -> tuple[str, str]:
    """(visible code, hidden code) of a test cell's source."""
    visible, hidden, inside = [], [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == HIDDEN_BEGIN:
            inside = True
        elif stripped == HIDDEN_END:
            inside = False
        else:
            (hidden if inside else visible).append(line)
    return "\n".join(visible), "\n".join(hidden)


class SandboxedExecute(Execute):
    """See the module docstring."""

    memory_limit = Integer(2 * 2**30, help="bytes of memory for the learner's kernel and all its children").tag(
        config=True)
    notebook_time_limit = Integer(900, help="seconds for the whole notebook; later cells are not run").tag(config=True)
    max_output_bytes = Integer(kernel.MAX_OUTPUT_BYTES, help="output kept per cell").tag(config=True)
    max_answer_bytes = Integer(kernel.MAX_ANSWER_BYTES, help="bytes of grader answers kept per request").tag(
        config=True)
    trusted_tests = Dict(help="grade_id -> test cell source, from the source notebook").tag(config=True)
    provided = List(Unicode(), help="sources of the cells the course provides (the released notebook's code cells): "
                    "the static scan never charges the learner for them").tag(config=True)
    sandbox = Bool(True, help="start the kernel in the bubblewrap sandbox").tag(config=True)
    data = Dict(help="files the kernel may read: path under its home folder -> path on this machine").tag(config=True)
    kernel_preamble = Unicode("", help="Python source (stdlib only: the grader is not visible there) the kernel runs "
                              "before ipykernel starts, before any learner code: the shortcut tripwires "
                              "(autograder.tripwires)").tag(config=True)
    scratch_root = Unicode("", help="folder for the kernels' work folders (default: the system's temp folder)").tag(
        config=True)
    # A flood of output can outlast the wait for it; the leftovers belong to a finished request and are ignored.
    raise_on_iopub_timeout = Bool(False).tag(config=True)
    report_file = Unicode("", help="where to write what the sandbox achieved and what happened (JSON)").tag(config=True)
    restart_timeout = Integer(60, help="seconds a restarted kernel has to answer; then later cells are not run"
                              ).tag(config=True)
    on_cell = Callable(None, allow_none=True, help="called as on_cell(index, number of cells, cell) before each cell "
                       "(a progress line)").tag(config=True)
    prestarted = Any(None, allow_none=True, help="a kernel.Prestarted: its kernel is adopted when its settings are "
                     "this preprocessor's, else stopped").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._scan = None
        self._adopted = self.prestarted.take(self._settings()) if self.prestarted is not None else None
        self._workdir = Path(self._adopted.workdir) if self._adopted is not None else kernel.work_folder(
            self.scratch_root)
        self._replay: list[str] = []
        self._kept: dict[str, int] = {}
        self._events: list[str] = []
        self._broken: str | None = None  # why the kernel is gone for good (a restart that failed)
        self._deadline = time.monotonic() + self.notebook_time_limit
        try:
            return super().preprocess(nb, resources, km)
        finally:
            killed = sandbox.kill_cgroup(sandbox.cgroup_paths(self._workdir))
            if killed:
                self._events.append(f"{killed} process(es) left by the notebook were stopped")
            report = self._workdir / "sandbox.json"
            if self.report_file:
                info = json.loads(report.read_text()) if report.exists() else {}
                Path(self.report_file).write_text(json.dumps({"sandbox": info, "events": self._events}))
            shutil.rmtree(self._workdir, ignore_errors=True)

    # --- the kernel -------------------------------------------------------------------------------------------
    def _settings(self) -> kernel.KernelSettings:
        return kernel.KernelSettings(memory=self.memory_limit, data=dict(self.data), preamble=self.kernel_preamble,
                                     sandboxed=self.sandbox, max_output_bytes=self.max_output_bytes,
                                     max_answer_bytes=self.max_answer_bytes)

    def create_kernel_manager(self):
        # a prestarted kernel is running already: nbclient then only connects its client and waits for it
        self.kernel_name = "python3"
        self.km = self._adopted or kernel.manager(self._workdir, self._settings(), config=self.config)
        self._log = Path(tripwires.log_path(self.km.connection_file))
        return self.km

    def _restart(self, why: str) -> None:
        """A new kernel with the cells that had run replayed, within the notebook's time. If it won't come up (a
        learner's startup file that stalls it, say), the kernel is marked gone and every later cell and test reports
        that instead of running."""
        self._events.append(why)
        if self._broken:
            return
        try:
            run_sync(self.km.restart_kernel)(now=True)
            timeout = max(1.0, min(self.restart_timeout, self._deadline - time.monotonic()))
            run_sync(self.kc.wait_for_ready)(timeout=timeout)
        except Exception as error:  # RuntimeError from wait_for_ready, DeadKernelError, ...
            self._broken = f"the kernel could not be restarted ({why}; {type(error).__name__}: {error})"[:300]
            self._events.append(self._broken)
            return
        for source in self._replay:
            if time.monotonic() > self._deadline:
                self._events.append("replay stopped: the notebook's grading time is used up")
                return
            try:
                replayed = self._execute(source, store_history=True)
            except (CellTimeoutError, DeadKernelError):
                self._events.append("replay stopped: a replayed cell did not finish")
                return
            if _timed_out(replayed.outputs):
                self._events.append("replay stopped: a replayed cell did not finish")
                return

    def _execute(self, source: str, *, store_history: bool) -> NotebookNode:
        """Run code in the kernel and return a throwaway cell holding its outputs."""
        cell = NotebookNode(cell_type="code", source=source, metadata=NotebookNode(), outputs=[],
                            execution_count=None)
        notebook_cell = self.nb.cells[self._index]
        try:
            self.execute_cell(cell, self._index, store_history=store_history)
        finally:
            self.nb.cells[self._index] = notebook_cell  # nbclient stores the executed cell at its index
        return cell

    def _responsive(self) -> bool:
        """After an interrupt: does the kernel answer within a few seconds?"""
        timeout, self.timeout = self.timeout, 5
        try:
            cell = self._execute("pass", store_history=False)
        except (DeadKernelError, CellTimeoutError):
            return False
        finally:
            self.timeout = timeout
        return not _timed_out(cell.outputs)

    def _run(self, cell, index) -> str | None:
        """Execute a notebook cell; return None if it ran cleanly, else what went wrong."""
        if self._broken:
            cell.outputs = [_error("KernelUnavailable", f"not run: {self._broken}")]
            return "dead"
        if time.monotonic() > self._deadline:
            cell.outputs = [_error("GradingTimeLimit",
                                   f"not run: the notebook used up its {self.notebook_time_limit} s of grading time")]
            return "time"
        try:
            self.execute_cell(cell, index, store_history=True)
        except CellTimeoutError:
            cell.outputs = [_error("CellTimeoutError", "timed out")]
        except DeadKernelError:
            cell.outputs = [_error("KernelDied", "the kernel died while running this cell (exit(), a crash, or more "
                                   f"than {self.memory_limit / 2**30:g} GiB of memory); later cells ran in a new kernel")]
            self._restart(f"kernel died in cell {index}")
            return "dead"
        # A cell that flooded its output and then failed may have left the kernel's memory full of what it
        # printed (even past the kernel's own cap, if it undid it): later cells get a fresh kernel.
        flooded = any(o.output_type == "stream" and o.text.startswith(OUTPUT_CUT) for o in cell.outputs)
        if _timed_out(cell.outputs):
            cell.outputs = [_error("CellTimeoutError", f"this cell did not finish within {self.timeout} s")]
            if flooded or not self._responsive():
                self._restart(f"kernel stuck or flooded after cell {index}")
            return "timeout"
        if any(o.output_type == "error" for o in cell.outputs):
            if flooded:
                self._restart(f"kernel flooded by cell {index}")
            return "error"
        return None

    # --- cells ------------------------------------------------------------------------------------------------
    def preprocess_cell(self, cell, resources, index):
        self._index = index
        if self.on_cell is not None:
            self.on_cell(index, len(self.nb.cells), cell)
        if cell.cell_type != "code":
            return cell, self.resources
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        try:
            if nbutils.is_grade(cell) and not nbutils.is_solution(cell) and grade_id in self.trusted_tests:
                self._grade_test_cell(cell, index, grade_id)
            elif self._run(cell, index) is None:
                self._replay.append(cell.source)
        except Exception as error:  # whatever breaks here costs this cell, never the submission's earned points
            name = grade_id or f"cell {index}"
            cell.outputs = [_error("GraderError", _clip(f"{name}: the grader could not run this cell "
                                                        f"({type(error).__name__}: {error})"))]
        return cell, self.resources

    def _grade_test_cell(self, cell, index, grade_id):
        trusted = self.trusted_tests[grade_id]
        visible, hidden = split_hidden(trusted)
        cell.source = visible
        problem = self._run(cell, index)
        cell.source = trusted
        shown = [o for o in cell.outputs if o.output_type == "display_data"
                 or (o.output_type == "stream" and o.name == "stdout")]
        exercise = exercise_of(grade_id, self._exercise_ids())
        note = None
        if problem:
            errors = [o for o in cell.outputs if o.output_type == "error"]
            reason = _first_line(errors[-1]) if errors else problem
            frames = self._frames(errors[-1], problem) if errors and not self._broken else []
            raised_in = [f.exercise for f in frames or [] if f.exercise]
            unwritten = reason.startswith("NotImplementedError") and (raised_in or [exercise])[-1] == exercise
            blamed = self._failed_dependencies(exercise, visible, frames) \
                if hidden.strip() and frames is not None and not unwritten else []
            if self._broken:
                verdict = f"{grade_id}: not run: {self._broken}"
            elif blamed:
                # the visible test ran the learner's earlier, already-charged exercise: only the hidden section, which
                # swaps in references, decides this cell
                note = dependency_note(exercise, blamed, self._warm_ups())
                verdict = self._judge(grade_id, hidden)
            elif reason.startswith("NotImplementedError"):
                verdict = f"{grade_id}: not attempted yet (the exercise still raises NotImplementedError)"
            elif errors and problem == "error" and (errors[-1].get("ename") != "AssertionError"
                                                    or (frames and frames[-1].function)):  # raised in called code
                verdict = hints.describe(
                    exercise or grade_id, str(errors[-1].get("ename", "Error")), str(errors[-1].get("evalue", "")),
                    frames or [], sources=self._solution_sources())
            else:
                verdict = f"{grade_id}: a visible test failed: {reason}"
        else:
            verdict = self._judge(grade_id, hidden)
        if exercise and verdict:
            self._failed_exercises().add(exercise)
        if verdict:
            cell.outputs = shown + [_error("TestFailed", f"{verdict} ({note})" if note else verdict)]
        else:
            cell.outputs = shown + [_stream(f"{grade_id}: {PASS_MARK}" + (f" by the hidden tests; {note}" if note
                                                                         else "") + "\n")]

    # --- which exercise a failure belongs to --------------------------------------------------------------------
    def _exercise_ids(self) -> list[str]:
        return list(self._solution_sources())

    def _solution_sources(self) -> dict[str, str]:
        """grade_id -> source of the exercises' cells, in notebook order."""
        return {c.metadata["nbgrader"]["grade_id"]: c.source for c in self.nb.cells
                if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
                and c.metadata["nbgrader"].get("grade_id")}

    def _warm_ups(self) -> set[str]:
        """Exercises with no test cell of their own (ungraded warm-ups), by the source notebook's test cells."""
        ids = self._exercise_ids()
        return set(ids) - {exercise_of(grade_id, ids) for grade_id in self.trusted_tests}

    def _static_scan(self) -> static.Notebook:
        """The learner's notebook as the static scan reads it, made once per notebook."""
        if getattr(self, "_scan", None) is None:
            self._scan = static.Notebook.from_cells(learner_cells(self.nb, self.provided))
        return self._scan

    def _failed_exercises(self) -> set[str]:
        """Exercises that have lost a test cell so far in this notebook."""
        if getattr(self, "_failed_nb", None) is not self.nb:
            self._failed_nb, self._failed = self.nb, set()
        return self._failed

    def _frames(self, error, problem) -> list[hints.Frame] | None:
        """The notebook frames of the error, each with the exercise whose solution cell holds it and, where the
        kernel tells, the shapes of its locals; [] for a cell that timed out or crashed; None when it was not run."""
        if problem in ("timeout", "dead"):
            return []  # no traceback to read; the static scan may still tell what ran
        if problem != "error":
            return None
        frames = hints.frames_from_traceback(list(error.get("traceback", [])))
        ran = [c for c in self.nb.cells[:self._index + 1] if c.cell_type == "code" and c.get("execution_count")]
        counts = {}  # after a restart the counts begin again: a repeated one is not known
        for c in ran:
            counts[c.execution_count] = counts.get(c.execution_count, 0) + 1
        by_count = {c.execution_count: c.metadata["nbgrader"]["grade_id"] for c in ran
                    if counts[c.execution_count] == 1 and c.metadata.get("nbgrader", {}).get("solution")}
        for frame in frames:
            frame.exercise = by_count.get(frame.cell)
        for frame, shapes in zip(reversed(frames), reversed(self._frame_shapes(len(frames)))):
            frame.shapes = shapes
        return frames

    def _frame_shapes(self, count: int) -> list[dict[str, tuple]]:
        """Shapes of the array-like locals of the last error's notebook frames, outermost first, as the kernel reports
        them (`sys.last_traceback`); [] when it does not answer. Learner-controlled: used in messages only."""
        if not count:
            return []
        nonce = secrets.token_hex(8)
        try:
            probe = self._execute(SHAPES_PROBE.replace("NONCE", nonce), store_history=False)
        except (CellTimeoutError, DeadKernelError):
            return []
        for output in probe.outputs:
            text = output.get("text", "") if output.output_type == "stream" else ""
            for line in text.splitlines():
                if line.startswith(nonce):
                    try:
                        found = json.loads(line[len(nonce):])
                        return [{str(k): tuple(int(n) for n in v) for k, v in dict(f).items()}
                                for f in found][-count:]
                    except (ValueError, TypeError):
                        return []
        return []

    def _failed_dependencies(self, exercise, visible, frames) -> list[str]:
        """Other exercises that have already lost a test and that this failure ran: a notebook frame in their cell,
        or a name of theirs that this exercise's code or the visible test refers to (the static scan)."""
        used = {f.exercise for f in frames if f.exercise}
        # a warm-up has no test of its own to fail: it counts as failed where this failure raised inside it
        failed = (self._failed_exercises() | (used & self._warm_ups())) - {exercise}
        if not failed or not exercise:
            return []
        used |= self._static_scan().exercises_used(exercise, extra_source=visible)
        return sorted(used & failed, key=self._exercise_ids().index)

    def _judge(self, grade_id: str, hidden: str) -> str | None:
        """Run a hidden section here, against the learner's kernel; return the failure line or None."""
        if not hidden.strip():
            return None
        record = self._read_record if self.kernel_preamble else None
        kernel = KernelEnv(self._send, time_limit=self.timeout, notebook=self._static_scan(), record=record)
        try:
            with use_env(kernel):
                exec(compile(hidden, f"<hidden tests of {grade_id}>", "exec"), {"__name__": "hidden_tests"})
        except CheckFailed as failure:
            return _clip(str(failure))
        except Exception as error:  # a check that breaks must cost the learner nothing silently: it is reported
            return _clip(f"{grade_id}: the grader could not finish this test ({type(error).__name__}: {error}). "
                         "Please report it to the course staff.")
        return None

    def _read_record(self, nonce: str) -> list[str]:
        """The tripwire record's lines written since this request was sent (at most a few MiB of them)."""
        try:
            with open(self._log, "rb") as handle:
                handle.seek(self._log_offset)
                text = handle.read(tripwires.MAX_LOG_READ)
        except OSError:
            return []
        return text.decode("utf-8", "replace").splitlines()

    def _send(self, request: dict) -> dict:
        """Carry one request into the kernel (see env.KernelEnv) and bring the answer back."""
        if self._broken:
            return {"status": "dead", "error": self._broken}
        if time.monotonic() > self._deadline:
            return {"status": "timeout"}
        nonce = request.get("nonce") or secrets.token_hex(12)
        try:
            self._log_offset = self._log.stat().st_size
        except OSError:
            self._log_offset = 0
        try:
            probe = self._execute(KernelEnv.code_for(request, nonce), store_history=False)
        except CellTimeoutError:
            probe = NotebookNode(outputs=[_error("CellTimeoutError", "timed out")])
        except DeadKernelError:
            self._restart("kernel died during a test")
            return {"status": "dead"}
        if _timed_out(probe.outputs):
            if not self._responsive():
                self._restart("kernel stuck during a test")
            return {"status": "timeout"}
        answer = KernelEnv.answer_from(probe.outputs, nonce)
        if answer is not None:
            return answer
        errors = [o for o in probe.outputs if o.output_type == "error"]
        return {"status": "error", "error": _first_line(errors[-1])} if errors else {"status": "no answer"}

    # --- outputs ------------------------------------------------------------------------------------------------
    def output(self, outs, msg, display_id, cell_index):
        """Keep at most `max_output_bytes` of output per execution, whatever the message type; the rest is dropped,
        with one line saying so. The grader's own answers have a budget of their own (`max_answer_bytes`)."""
        content = msg.get("content", {})
        key = msg.get("parent_header", {}).get("msg_id", "")
        ours = isinstance(content.get("data"), dict) and kernel_shim.MIME in content["data"]
        limit = self.max_answer_bytes if ours else self.max_output_bytes
        key = ("answer:" if ours else "output:") + key
        size = len(json.dumps(content, default=str))
        kept = self._kept.get(key, 0)
        if msg["msg_type"] == "error":
            # an error always counts (it decides the cell's fate), but never at full size
            content["evalue"] = _clip(str(content.get("evalue", "")), 2000)
            content["traceback"] = [_clip(str(line), 2000) for line in content.get("traceback", [])[-20:]]
        elif kept + size > limit:
            if kept <= limit:
                outs.append(_stream(f"{OUTPUT_CUT} more than {limit // 1024} KiB]\n"))
                self._kept[key] = limit + 1
            return None
        self._kept[key] = kept + size
        return super().output(outs, msg, display_id, cell_index)


SHAPES_PROBE = """
def _autograder_probe():
    import json, linecache, re, sys
    try:
        files = get_ipython().compile._filename_map
    except Exception:
        files = {}
    tb, found = getattr(sys, "last_traceback", None), []
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_filename in files:
            line = linecache.getline(frame.f_code.co_filename, tb.tb_lineno)
            named = re.findall(r"[A-Za-z_]\\w*", line)
            inside = frame.f_code.co_name != "<module>"  # a function's locals; a cell's are the whole namespace
            names = list(dict.fromkeys(named + (list(frame.f_locals)[:40] if inside else [])))
            shapes = {}
            for name in names:
                value = frame.f_locals.get(name, frame.f_globals.get(name))
                shape = getattr(value, "shape", None)
                if not name.startswith("__") and isinstance(shape, tuple) and len(shape) <= 8 and len(shapes) < 12:
                    shapes[name] = [int(n) for n in shape]
            found.append(shapes)
        tb = tb.tb_next
    sys.stdout.write("NONCE" + json.dumps(found[-8:]) + "\\n")
try:
    _autograder_probe()
finally:
    del _autograder_probe
"""


def exercise_of(grade_id: str, exercises) -> str | None:
    """The exercise a test cell belongs to: `test_<exercise>` or `test_<exercise>_<aspect>` (the longest match)."""
    matches = [e for e in exercises if grade_id == f"test_{e}" or grade_id.startswith(f"test_{e}_")]
    return max(matches, key=len) if matches else None


def dependency_note(exercise: str | None, blamed: list[str], warm_ups=frozenset()) -> str:
    names = ", ".join(blamed)
    if all(name in warm_ups for name in blamed):
        what = "the warm-up that raised here" if len(blamed) == 1 else "warm-ups that raised here"
    else:
        what = "which failed its own test" if len(blamed) == 1 else "each of which failed its own test or raised here"
    return f"its visible test failed, but {exercise or 'this exercise'} depends on {names}, {what}: fix {names} first"


def learner_cells(nb, provided=()) -> list[static.Cell]:
    """The notebook's code cells as the static scan sees them: an exercise's solution cell, a cell the course
    provides (locked cells, test cells, and cells whose text is the released notebook's), or a free cell."""
    provided = {_strip(p) for p in provided}
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id"):
            cells.append(static.Cell("exercise", cell.source, grade_id=meta["grade_id"]))
        elif meta.get("locked") or meta.get("grade") or _strip(cell.source) in provided:
            cells.append(static.Cell("provided", cell.source))
        else:
            cells.append(static.Cell("free", cell.source))
    return cells


def _strip(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _timed_out(outputs) -> bool:
    return any(o.output_type == "error" and o.get("ename") == "CellTimeoutError" for o in outputs)


def _first_line(error_output) -> str:
    text = f"{error_output.get('ename', 'Error')}: {error_output.get('evalue', '')}".strip()
    return _clip(text.splitlines()[0] if text else "error")


def _clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def _stream(text: str) -> NotebookNode:
    return NotebookNode(output_type="stream", name="stdout", text=text)
