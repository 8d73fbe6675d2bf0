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
- A cell that times out is interrupted; a kernel that stops answering or dies is restarted and the cells that had
  run are replayed, so one bad cell costs only the tests that need it. Output beyond a cap is dropped.
"""
from __future__ import annotations

import json
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader import utils as nbutils
from nbgrader.preprocessors import Execute
from traitlets import Bool, Callable, Dict, Integer, List, Unicode

from . import env as envs
from . import kernel_shim
from .feedback import CheckFailed

SANDBOX_SCRIPT = str(Path(__file__).with_name("sandbox.py"))
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
PASS_MARK = "passed"


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


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel starts inside `sandbox.py`."""

    sandbox_args = List(Unicode())

    def format_kernel_cmd(self, extra_arguments=None):
        kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file]
        return [sys.executable, SANDBOX_SCRIPT, *self.sandbox_args, "--", *kernel, *(extra_arguments or [])]


class SandboxedExecute(Execute):
    """See the module docstring."""

    memory_limit = Integer(2 * 2**30, help="bytes of address space for the learner's kernel").tag(config=True)
    notebook_time_limit = Integer(900, help="seconds for the whole notebook; later cells are not run").tag(config=True)
    max_output_bytes = Integer(2**20, help="output kept per cell").tag(config=True)
    hide = List(Unicode(), help="folders the kernel must not see (gradebooks, other submissions)").tag(config=True)
    trusted_tests = Dict(help="grade_id -> test cell source, from the source notebook").tag(config=True)
    sandbox = Bool(True, help="start the kernel in the sandbox").tag(config=True)
    # A flood of output can outlast the wait for it; the leftovers belong to a finished request and are ignored.
    raise_on_iopub_timeout = Bool(False).tag(config=True)
    report_file = Unicode("", help="where to write what the sandbox achieved and what happened (JSON)").tag(config=True)
    on_cell = Callable(None, allow_none=True, help="called as on_cell(index, number of cells, cell) before each cell "
                       "(a progress line)").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._scratch = Path(tempfile.mkdtemp(prefix="kernel-"))
        self._replay: list[str] = []
        self._kept: dict[int, int] = {}
        self._events: list[str] = []
        self._deadline = time.monotonic() + self.notebook_time_limit
        try:
            return super().preprocess(nb, resources, km)
        finally:
            report = self._scratch / "sandbox.json"
            if self.report_file:
                sandbox = json.loads(report.read_text()) if report.exists() else {}
                Path(self.report_file).write_text(json.dumps({"sandbox": sandbox, "events": self._events}))
            shutil.rmtree(self._scratch, ignore_errors=True)

    # --- the kernel -------------------------------------------------------------------------------------------
    def create_kernel_manager(self):
        self.kernel_name = "python3"
        self.km = SandboxKernelManager(config=self.config, transport="ipc")
        self.km.ip = str(self._scratch / "kernel")
        self.km.connection_file = str(self._scratch / "connection.json")
        args = ["--scratch", str(self._scratch), "--memory", str(self.memory_limit)]
        for folder in self.hide:
            args += ["--hide", folder]
        self.km.sandbox_args = args if self.sandbox else []
        if not self.sandbox:
            self.km.format_kernel_cmd = lambda extra_arguments=None: AsyncKernelManager.format_kernel_cmd(
                self.km, extra_arguments)
        return self.km

    def _restart(self, why: str) -> None:
        self._events.append(why)
        run_sync(self.km.restart_kernel)(now=True)
        run_sync(self.kc.wait_for_ready)(timeout=120)
        for source in self._replay:
            self._execute(source, store_history=True)

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
        if _timed_out(cell.outputs):
            cell.outputs = [_error("CellTimeoutError", f"this cell did not finish within {self.timeout} s")]
            if not self._responsive():
                self._restart(f"kernel stuck after cell {index}")
            return "timeout"
        if any(o.output_type == "error" for o in cell.outputs):
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
        if nbutils.is_grade(cell) and not nbutils.is_solution(cell) and grade_id in self.trusted_tests:
            self._grade_test_cell(cell, index, grade_id)
        elif self._run(cell, index) is None:
            self._replay.append(cell.source)
        return cell, self.resources

    def _grade_test_cell(self, cell, index, grade_id):
        trusted = self.trusted_tests[grade_id]
        visible, hidden = split_hidden(trusted)
        cell.source = visible
        problem = self._run(cell, index)
        cell.source = trusted
        shown = [o for o in cell.outputs if o.output_type == "display_data"
                 or (o.output_type == "stream" and o.name == "stdout")]
        if problem:
            errors = [o for o in cell.outputs if o.output_type == "error"]
            reason = _first_line(errors[-1]) if errors else problem
            if reason.startswith("NotImplementedError"):
                verdict = f"{grade_id}: not attempted yet (the exercise still raises NotImplementedError)"
            else:
                verdict = f"{grade_id}: a visible test failed: {reason}"
        else:
            verdict = self._judge(grade_id, hidden)
        if verdict:
            cell.outputs = shown + [_error("TestFailed", verdict)]
        else:
            cell.outputs = shown + [_stream(f"{grade_id}: {PASS_MARK}\n")]

    def _judge(self, grade_id: str, hidden: str) -> str | None:
        """Run a hidden section here, against the learner's kernel; return the failure line or None."""
        if not hidden.strip():
            return None
        sources = {c.metadata["nbgrader"]["grade_id"]: c.source for c in self.nb.cells
                   if c.cell_type == "code" and nbutils.is_solution(c)}
        kernel = envs.KernelEnv(self._send, time_limit=self.timeout, sources=sources)
        try:
            with envs.use(kernel):
                exec(compile(hidden, f"<hidden tests of {grade_id}>", "exec"), {"__name__": "hidden_tests"})
        except CheckFailed as failure:
            return _clip(str(failure))
        except Exception as error:  # a check that breaks must cost the learner nothing silently: it is reported
            return _clip(f"{grade_id}: the grader could not finish this test ({type(error).__name__}: {error}). "
                         "Please report it to the course staff.")
        return None

    def _send(self, request: dict) -> dict:
        """Carry one request into the kernel (see env.KernelEnv) and bring the answer back."""
        if time.monotonic() > self._deadline:
            return {"status": "timeout"}
        nonce = secrets.token_hex(12)
        try:
            probe = self._execute(envs.KernelEnv.code_for(request, nonce), store_history=False)
        except CellTimeoutError:
            probe = NotebookNode(outputs=[_error("CellTimeoutError", "timed out")])
        except DeadKernelError:
            self._restart("kernel died during a test")
            return {"status": "dead"}
        if _timed_out(probe.outputs):
            if not self._responsive():
                self._restart("kernel stuck during a test")
            return {"status": "timeout"}
        answer = envs.KernelEnv.answer_from(probe.outputs, nonce)
        if answer is not None:
            return answer
        errors = [o for o in probe.outputs if o.output_type == "error"]
        return {"status": "error", "error": _first_line(errors[-1])} if errors else {"status": "no answer"}

    # --- outputs ------------------------------------------------------------------------------------------------
    def output(self, outs, msg, display_id, cell_index):
        """Keep at most `max_output_bytes` of output per execution; the rest is dropped, with one line saying so.
        The grader's own answers are exempt (their size is capped where they are read)."""
        content = msg.get("content", {})
        if kernel_shim.MIME in content.get("data", {}):
            return super().output(outs, msg, display_id, cell_index)
        key = msg.get("parent_header", {}).get("msg_id", "")
        size = len(json.dumps(content, default=str))
        kept = self._kept.get(key, 0)
        if kept + size > self.max_output_bytes and msg["msg_type"] in ("stream", "display_data", "execute_result"):
            if kept <= self.max_output_bytes:
                outs.append(_stream(f"[output cut: more than {self.max_output_bytes // 1024} KiB]\n"))
                self._kept[key] = self.max_output_bytes + 1
            return None
        self._kept[key] = kept + size
        return super().output(outs, msg, display_id, cell_index)


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
