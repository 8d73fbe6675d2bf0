"""Where a check meets the learner's code.

A check never touches the learner's objects directly. It asks an *environment* to call a learner function (or run a
short snippet) on inputs the check made, and gets back plain data to compare with its own reference:

- `KernelEnv`, used by `python -m autograder`: the request travels into the learner's sandboxed kernel and the answer
  comes back as data. The check, its reference and its verdict stay in the grader's process, out of the learner's reach.
- `LocalEnv`, used when the hidden tests run inside the notebook's own kernel (plain `nbgrader autograde`, an
  instructor's `nbgrader validate`): the same request is carried out in-process by the same code.

Both go through `kernel_shim.invoke`, so a notebook gets the same score either way.

The "no library shortcut" verdict of a call is decided here, from what the grader controls: the static scan of the
whole submission (`autograder.static`) and the kernel's tripwire record for this call's nonce
(`autograder.tripwires`), never from the answer's own say-so.
"""
from __future__ import annotations

import base64
import contextlib
import functools
import inspect
import json
import marshal
import re
import secrets
import sys
import textwrap
import zlib
from pathlib import Path

from . import hints, kernel_shim, static, tripwires
from .kernel import MAX_ANSWER_BYTES
from .messages import CheckFailed

SHIM_SOURCE = Path(kernel_shim.__file__).read_text()
# A request this large travels zlib-compressed when that pays: a cell's code crosses ZMQ twice (the kernel echoes it)
# and IPython parses and transforms it line by line. Inputs such as 20000 copies of a row of logits shrink a
# hundredfold; random floats don't: a sample decides.
COMPRESS_ABOVE, COMPRESS_SAMPLE = 64 * 2**10, 64 * 2**10


@functools.lru_cache(maxsize=None)
def _shim_code() -> str:
    """The shim and its call, compiled here once and sent marshalled (zlib, base64: 13 KB) with every request: the
    kernel (the same interpreter) loads it in microseconds instead of compiling 250 lines each time, and still gets
    it fresh from the grader on each request."""
    program = SHIM_SOURCE + "\nmain(_ag_request, _ag_nonce, _ag_user_ns)\n"
    code = marshal.dumps(compile(program, "<autograder shim>", "exec"))
    return base64.b64encode(zlib.compress(code, 9)).decode("ascii")


class Env:
    """Calls into the learner's code. Subclasses say how a request reaches it."""

    #: seconds a single call may take; shown in messages (the executor enforces it)
    time_limit: float | None = None
    #: the submission as the static scan reads it, when the grader has the notebook
    notebook: static.Notebook | None = None
    #: patterns that every call forbids: the grader itself
    ALWAYS_FORBIDDEN = ("autograder", "autograder.*")

    def _carry_out(self, request: dict) -> dict:
        raise NotImplementedError

    def _record(self, nonce: str) -> list[str] | None:
        """The tripwire record's lines for this call (None: this kernel has no tripwires)."""
        return None

    def call(self, name, *args, case="", forbid=(), substitute=None, **kwargs):
        """Call the learner's `name(*args, **kwargs)`; return its value as plain data (numpy, torch, Python).

        `case` describes the inputs for messages ("x of shape (3, 7), axis=0"); `forbid` lists fnmatch patterns of
        functions the call may not reach ("torch.nn.functional.scaled_dot_product_attention"); `substitute` maps
        names in the learner's namespace to reference functions used during this call only."""
        request = {
            "kind": "call",
            "name": name,
            "args": [kernel_shim.encode(a) for a in args],
            "kwargs": {"__dict__": {k: kernel_shim.encode(v) for k, v in kwargs.items()}},
        }
        return self._answer(name, case, request, forbid, substitute)

    def run(self, exercise, code, *, inputs=None, outputs=(), case="", forbid=(), substitute=None):
        """Run a snippet in the learner's namespace (a copy of it, plus `inputs`); return `{name: value}` for `outputs`.

        For what one call cannot express: building a module, loading weights, a backward pass."""
        request = {
            "kind": "run",
            "code": textwrap.dedent(code),
            "inputs": {"__dict__": {k: kernel_shim.encode(v) for k, v in (inputs or {}).items()}},
            "outputs": list(outputs),
        }
        return self._answer(exercise, case, request, forbid, substitute)

    def _answer(self, exercise, case, request, forbid, substitute):
        forbid = list(forbid) + list(self.ALWAYS_FORBIDDEN)
        request["forbid"] = forbid
        request["substitute"] = {k: _source_of(k, v) for k, v in (substitute or {}).items()}
        request["nonce"] = nonce = secrets.token_hex(12)
        answer = self._carry_out(request)
        where = f" for {case}" if case else ""
        status = answer.get("status")
        if status == "missing":
            raise CheckFailed(
                f"{exercise}: `{answer.get('name')}` is not defined{where}. Run the cell that defines it, "
                "and keep the name and signature given in the notebook."
            )
        if status == "timeout":
            limit = f"{self.time_limit:g} s" if self.time_limit else "the time limit"
            raise CheckFailed(
                f"{exercise}: did not finish within {limit}{where}. Look for a loop that never ends "
                "or work that grows much faster than the input."
            )
        if status == "interrupted":
            raise CheckFailed(f"{exercise}: was interrupted{where} (time limit or Ctrl-C).")
        if status == "dead":
            raise CheckFailed(
                f"{exercise}: the kernel died{where} ({answer.get('error', 'crash, exit or out of memory')})."
            )
        if status == "error":
            if answer["error"].startswith("NotImplementedError"):
                raise CheckFailed(f"{exercise}: not written yet (it still raises NotImplementedError). Replace "
                                  "`raise NotImplementedError()` with your code.")
            hint = self._hint(exercise, answer)
            raise CheckFailed(f"{exercise}: raised {answer['error']}{where}." + (f" {hint}" if hint else ""))
        if status != "ok":
            raise CheckFailed(f"{exercise}: the grader got no answer from your code{where} ({status}).")
        used = self._static_uses(exercise, request, forbid)
        record = self._record(nonce)
        tampered = None
        if record is not None:
            hits, tampered = tripwires.read(record, nonce, answer)
            regex = static.compile_patterns(forbid)
            used = used or [names[0] for names in hits if any(regex.match(n) for n in names)]
        if used:
            shown = ", ".join(dict.fromkeys(used))
            raise CheckFailed(
                f"{exercise}: calls {_clip_list(shown)}{where}. This exercise asks you to build it yourself, "
                "so a library's (or the grader's) version earns no credit."
            )
        if tampered:
            raise CheckFailed(f"{exercise}: the grader's record of what this call used was tampered with{where} "
                              f"({tampered}); no credit.")
        return kernel_shim.decode(answer["value"])

    def _hint(self, exercise, answer) -> str | None:
        """The hint a visible test would give for the same exception (`hints`), where a rule can tell the cause."""
        sources = {c.grade_id: c.source for c in self.notebook.cells if c.kind == "exercise" and c.grade_id} \
            if self.notebook is not None else {}
        frames = []
        for f in answer.get("frames") or []:
            try:
                function = f.get("function")
                home = next((g for g, src in sources.items()
                             if function and re.search(rf"^\s*def\s+{re.escape(function)}\b", src, re.M)), None)
                frames.append(hints.Frame(None, function, 0, str(f.get("code", "")),
                                          {str(k): tuple(v) for k, v in (f.get("shapes") or {}).items()}, home))
            except (AttributeError, TypeError, ValueError):  # a malformed report from the kernel: no hint
                return None
        try:
            return hints.hint_for(str(answer.get("ename", "")), str(answer.get("evalue", "")), frames,
                                  exercise=exercise, sources=sources)
        except Exception:  # the hint is a courtesy: a rule tripping on odd data must not cost the verdict
            return None

    def _static_uses(self, exercise, request, forbid) -> list[str]:
        if self.notebook is None:
            return []
        if request["kind"] == "call":
            roots = [request["name"]]
        else:  # a snippet reaches the exercises it names (the grader's own variables are not the learner's code)
            roots = [n for n in _names_in(request["code"]) if n in self.notebook.exercise_names()]
        return static.forbidden_uses(self.notebook, exercise, forbid, roots=roots, skip=list(request["substitute"]))


def _names_in(code: str) -> list[str]:
    return sorted(set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", code)))


def _clip_list(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _source_of(name, function):
    """Reference functions travel as source text; they must import what they use inside their body."""
    source = function if isinstance(function, str) else textwrap.dedent(inspect.getsource(function))
    if not isinstance(function, str) and function.__name__ != name:
        source += f"\n{name} = {function.__name__}\n"
    return source


class LocalEnv(Env):
    """The learner's namespace is in this process (the notebook's own kernel)."""

    def __init__(self, namespace: dict):
        self.namespace = namespace
        self._tripwires = None

    def _carry_out(self, request):
        # In-process tripwires, armed on first use with this call's patterns (added to on later calls).
        self._tripwires = tripwires.install(request["forbid"])
        self._tripwires.memory.clear()
        return kernel_shim.run_local(request, self.namespace, request["nonce"], self._tripwires)

    def _record(self, nonce):
        return list(self._tripwires.memory) if self._tripwires is not None else None


class KernelEnv(Env):
    """The learner's namespace is in another process; `send(code) -> answer dict` carries a request there."""

    def __init__(self, send, time_limit=None, notebook=None, record=None):
        self.send = send
        self.time_limit = time_limit
        self.notebook = notebook
        self.record = record

    def _carry_out(self, request):
        return self.send(request)

    def _record(self, nonce):
        return self.record(nonce) if self.record is not None else None

    @staticmethod
    def code_for(request: dict, nonce: str) -> str:
        """The cell the kernel runs: the shim's source, then its entry point on this request, in a fresh namespace."""
        payload = json.dumps(request)
        argument = repr(payload)
        if len(payload) > COMPRESS_ABOVE:
            sample = payload[:COMPRESS_SAMPLE].encode()
            if len(zlib.compress(sample, 1)) < len(sample) // 4:
                blob = base64.b64encode(zlib.compress(payload.encode(), 1)).decode("ascii")
                argument = f"__import__('zlib').decompress(__import__('base64').b64decode({blob!r})).decode()"
        return (f"exec(__import__('marshal').loads(__import__('zlib').decompress(__import__('base64').b64decode("
                f"{_shim_code()!r}))), "
                f"{{'_ag_user_ns': globals(), '__name__': '_autograder_shim', '_ag_request': {argument}, "
                f"'_ag_nonce': {nonce!r}}})")

    @staticmethod
    def answer_from(outputs, nonce: str) -> dict | None:
        """Pick our answer out of a cell's outputs; anything else the cell printed is the learner's business."""
        for output in reversed(outputs):
            if output.get("output_type") != "display_data":
                continue
            data = output.get("data", {}).get(kernel_shim.MIME)
            if isinstance(data, str):
                if len(data) > MAX_ANSWER_BYTES:
                    return {"status": "too large"}
                data = json.loads(data)
            if isinstance(data, dict) and data.get("nonce") == nonce:
                return data.get("answer", {})
        return None


_env: Env | None = None


@contextlib.contextmanager
def use(learner: Env):
    """Make `learner` the Env that checks get from `env()` (the grader sets this around a hidden-test section)."""
    global _env
    previous, _env = _env, learner
    try:
        yield learner
    finally:
        _env = previous


def env() -> Env:
    """The learner's environment for the running check: the grader's, or else this process's notebook namespace."""
    if _env is not None:
        return _env
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    namespace = shell.user_ns if shell is not None else sys.modules["__main__"].__dict__
    return LocalEnv(namespace)
