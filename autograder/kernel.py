"""The learner's kernel: what it is started with, the kernel manager that starts it in the sandbox, and starting it
before the grader has loaded nbgrader.

A kernel is fully described by `KernelSettings` (memory, the chapter's data files, the tripwires' preamble, the
sandbox, the output caps), all known from the chapter and the command line. `check` calls `prestart` first: ipykernel
boots in its own process (half a second and more) while this process imports nbgrader and prepares the grading, and
`execute.SandboxedExecute` adopts the running kernel instead of starting one (it starts its own when the settings
differ or none was given). This module imports no nbgrader, so that the kernel can start first.
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import zmq
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from traitlets import Bool, Dict, Integer, Unicode

from . import sandbox, tripwires
from .course import Chapter

MAX_OUTPUT_BYTES = 2**20  # output the grader keeps per cell
MAX_ANSWER_BYTES = 64 * 2**20  # bytes of the grader's own answers kept per request
KERNEL_SOCKET_ROOM = len("/k-12345678/conn/kernel-65535")  # a kernel's work folder and the socket names inside


@dataclass(frozen=True)
class KernelSettings:
    """All a kernel is started with; two kernels with equal settings are interchangeable."""

    memory: int
    data: dict = field(hash=False)
    preamble: str
    sandboxed: bool
    max_output_bytes: int = MAX_OUTPUT_BYTES
    max_answer_bytes: int = MAX_ANSWER_BYTES


def settings_for(chapter: Chapter, *, memory: int, sandboxed: bool) -> KernelSettings:
    """The kernel a notebook of `chapter` is graded in (grading.grading_config gives SandboxedExecute the same)."""
    return KernelSettings(memory=memory, data=dict(chapter.data),
                          preamble=tripwires.preamble(forbidden_patterns(chapter)), sandboxed=sandboxed)


@functools.lru_cache(maxsize=None)
def forbidden_patterns(chapter: Chapter) -> tuple[str, ...]:
    """Every pattern the chapter's checks forbid: the module-level `FORBID*` lists of its checks module (a check's
    `forbid=` always names one of them; tests/test_static.py holds them to it). The kernel's tripwires arm these.

    The lists are read from the module's source, not imported: importing chapter 5's checks on imports torch, a few
    seconds that the grader spends on a thread while the kernel runs the learner's cells instead of before the kernel
    can start. A list built in any other way than literals, other FORBID names and `+` is refused."""
    import ast
    import importlib.util

    origin = importlib.util.find_spec(chapter.checks_module).origin
    lists: dict[str, list[str]] = {}

    def value(node):
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ast.literal_eval(item) for item in node.elts]
            if all(isinstance(item, str) for item in items):
                return items
        elif isinstance(node, ast.Name) and node.id in lists:
            return lists[node.id]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return value(node.left) + value(node.right)
        raise ValueError(f"{origin}: a FORBID list must be built from string literals: {ast.unparse(node)}")

    for node in ast.parse(Path(origin).read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id.startswith("FORBID"):
            lists[node.targets[0].id] = value(node.value)
    found = []
    for patterns in lists.values():
        found += [p for p in patterns if p not in found]
    return tuple(found)


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel starts through `sandbox.kernel_command` (bubblewrap and cgroups)."""

    workdir = Unicode()
    memory = Integer(2 * 2**30)
    data = Dict()
    preamble = Unicode("")
    sandboxed = Bool(True)
    output_cap = Integer(2 * MAX_OUTPUT_BYTES, help="characters of a stream the kernel sends per request")
    max_message_bytes = Integer(256 * 2**20, help="the largest message part this process reads from the kernel")

    def client(self, **kwargs):
        # zmq drops the connection (made again at once) on a larger part instead of this process reading, say, a
        # gigabyte of stdout sent past the kernel's own output cap: lost output, as the grader's cap would lose it.
        client = super().client(**kwargs)
        client.context.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)  # a default for the sockets made next
        return client

    def format_kernel_cmd(self, extra_arguments=None):
        # A (re)start begins from nothing: whatever the previous kernel left running is killed first, and the
        # connection folder, which the kernel could write, is emptied (a link planted there must never lead this
        # process to write or connect elsewhere) and its file written anew.
        sandbox.kill_cgroup(sandbox.cgroup_paths(Path(self.workdir)))
        folder = Path(self.connection_file).parent
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        self._connection_file_written = False
        self.write_connection_file()
        return sandbox.kernel_command(self.connection_file, workdir=Path(self.workdir), memory=self.memory,
                                      data=self.data, preamble=self.preamble, sandbox=self.sandboxed,
                                      output_cap=self.output_cap)


def work_folder(scratch_root: str = "") -> Path:
    """A new kernel's work folder (its connection file and sockets, the sandbox's home and /tmp), on a path short
    enough for Unix sockets (107 bytes)."""
    root = scratch_root
    if not root or len(root.encode()) + KERNEL_SOCKET_ROOM > sandbox.SOCKET_PATH_MAX:
        root = sandbox.socket_folder_root(KERNEL_SOCKET_ROOM)
    return Path(tempfile.mkdtemp(prefix="k-", dir=root))


def manager(workdir: Path, settings: KernelSettings, config=None) -> SandboxKernelManager:
    """A kernel manager (its kernel not started) for a kernel with `settings`, working in `workdir`."""
    conn = workdir / "conn"
    conn.mkdir(mode=0o700)
    km = SandboxKernelManager(config=config, transport="ipc")
    km.ip = str(conn / "kernel")
    km.connection_file = str(conn / "connection.json")
    km.workdir = str(workdir)
    km.memory = settings.memory
    km.data = dict(settings.data)
    km.preamble = settings.preamble
    km.sandboxed = settings.sandboxed
    km.output_cap = 2 * settings.max_output_bytes
    km.max_message_bytes = 2 * settings.max_answer_bytes + settings.max_output_bytes
    km.settings = settings
    return km


class Prestarted:
    """A kernel started ahead, handed to the executor through nbgrader's config, which deep-copies what it holds:
    this passes as itself. The first executor with the same settings takes it; the owner discards what is left."""

    def __init__(self, km: SandboxKernelManager):
        self._km = km

    def __deepcopy__(self, memo):
        return self

    def take(self, settings: KernelSettings) -> SandboxKernelManager | None:
        km, self._km = self._km, None
        if km is not None and km.settings != settings:
            discard(km)
            return None
        return km

    def discard(self) -> None:
        km, self._km = self._km, None
        discard(km)


def prestart(settings: KernelSettings, scratch_root: str = "") -> Prestarted:
    """Start a kernel now, without waiting for it to be ready: the caller goes on while it boots."""
    km = manager(work_folder(scratch_root), settings)
    # nbgrader's Execute sets this around the kernel it starts, and notebooks read it (chapter 7 skips its training
    # while graded); the kernel inherits it through sandbox.PASSED_THROUGH
    previous = os.environ.get("NBGRADER_EXECUTION")
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    try:
        run_sync(km.start_kernel)()
    except BaseException:
        discard(km)
        raise
    finally:
        if previous is None:
            del os.environ["NBGRADER_EXECUTION"]
        else:
            os.environ["NBGRADER_EXECUTION"] = previous
    return Prestarted(km)


def discard(km: SandboxKernelManager | None) -> None:
    """Stop a kernel and remove its work folder (nothing to do for one that is gone)."""
    if km is None:
        return
    workdir = Path(km.workdir)
    sandbox.kill_cgroup(sandbox.cgroup_paths(workdir))
    try:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    except Exception:  # it is being thrown away: its cgroup is killed already
        pass
    shutil.rmtree(workdir, ignore_errors=True)
