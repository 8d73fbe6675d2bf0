"""Start a learner's kernel in a sandbox built by bubblewrap (`bwrap`), inside a cgroup of its own.

Two halves, one job:

- In the grader, `kernel_command()` builds the command line that jupyter_client launches. The kernel's world is an
  allow-list: read-only, the Python interpreter and the packages it runs on, system libraries and fonts, and the
  chapter's declared data files; writable, a private home folder (its working directory) and a private `/tmp`, both
  empty at every start and held in memory; the folder of its connection file and sockets (bound at the same path, since
  `connection.json` names them). It gets its own PID, IPC, UTS, network (loopback only) and mount namespaces, no
  capabilities, a fresh `/proc` and `/dev`, and an environment built from an allow-list. Nothing else exists inside:
  not the repository, not `.git`, not the solutions or the grader, not other kernels' folders, not the host's `/tmp`.
- Run as a script (by path: the kernel's side never imports the `autograder` package), it is the first process of
  that command. It joins the kernel's cgroups (memory and process limits for the kernel *and all its children*
  together, where cgroups are writable), sets per-process limits, sends the kernel's own stdout/stderr to a file,
  writes what it achieved to `sandbox.json`, and execs `bwrap`. bwrap's `--die-with-parent` and the PID namespace
  mean that when the kernel's launcher is killed, everything the kernel started dies with it; `kill_cgroup()`
  removes whatever is left and the cgroups themselves.

Where bwrap can't run (macOS, a container without namespaces), `available()` says why; the grader then runs the kernel
without it (rlimits only) and says so in its report.
"""
from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOME = "/home/learner"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_GROUP = "autograder"
MAX_PROCESSES = 256
TMPFS_BYTES = 512 * 2**20
# The kernel's own environment: nothing of the instructor's (tokens, paths, course settings) leaks in.
PASSED_THROUGH = ("LANG", "LC_ALL", "NBGRADER_EXECUTION", "PYTHONHASHSEED")
KERNEL_ENV = {
    "HOME": HOME, "USER": "learner", "LOGNAME": "learner", "TMPDIR": "/tmp", "MPLBACKEND": "Agg",
    # Config folders live in the fresh /tmp of each kernel start: a file the learner drops there (an IPython
    # startup script, a Jupyter config) cannot run again when the grader restarts the kernel.
    "MPLCONFIGDIR": "/tmp/matplotlib", "IPYTHONDIR": "/tmp/ipython", "JUPYTER_CONFIG_DIR": "/tmp/jupyter",
    "JUPYTER_DATA_DIR": "/tmp/jupyter/data", "JUPYTER_RUNTIME_DIR": "/tmp/jupyter/runtime",
    "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
    # several kernels share the cores while a class is graded: one thread each avoids oversubscription
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
}
KERNEL_LAUNCH = (
    "import sys\n"
    "if sys.path and sys.path[0] == '':\n"
    "    del sys.path[0]\n"  # as ipykernel_launcher does: the working folder is not a package root
    "from ipykernel import iostream, kernelapp\n"
    # ipykernel buffers a stream's writes between flushes without bound and sends the whole buffer as one message:
    # `while True: print('x' * 10**6)` fills the kernel's memory (and the grader's) before any limit can see it.
    # Past OUTPUT_CAP characters per stream and request, writes are dropped here, as the grader would drop them;
    # past OUTPUT_STOP the cell is stopped. Learner code can undo this; then the grader's own caps still hold.
    "def _capped(write, cap=OUTPUT_CAP, stop=OUTPUT_STOP):\n"
    "    def capped_write(self, string):\n"
    "        key = self.parent_header.get('msg_id') if isinstance(self.parent_header, dict) else None\n"
    "        if getattr(self, '_cap_key', None) != key:\n"
    "            self._cap_key, self._cap_used = key, 0\n"
    "        if not isinstance(string, str):\n"
    "            return write(self, string)\n"
    "        used = self._cap_used\n"
    "        self._cap_used += len(string)\n"
    "        if self._cap_used > stop:\n"
    "            self._cap_used = cap\n"
    "            raise RuntimeError(f'this cell printed more than {stop // 2**20} MiB; it was stopped')\n"
    "        if used >= cap:\n"
    "            return len(string)\n"
    "        write(self, string[:cap - used])\n"
    "        return len(string)\n"
    "    return capped_write\n"
    "iostream.OutStream.write = _capped(iostream.OutStream.write)\n"
    # ipykernel's compiler names each cell after a pure-Python hash of its text, for its debugger (never used here):
    # 8 ms for each grader request (a 28 KB cell). IPython's own names it by sha1; tracebacks still say "Cell In[N]".
    "from IPython.core.compilerop import CachingCompiler\n"
    "from ipykernel.compiler import XCachingCompiler\n"
    "XCachingCompiler.get_code_name = CachingCompiler.get_code_name\n"
    "kernelapp.launch_new_instance()\n"
)
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "fonts", "localtime", "alternatives", "mime.types",
             "nsswitch.conf")


# --- in the grader ---------------------------------------------------------------------------------------------------
SOCKET_PATH_MAX = 107  # bytes in a Unix socket's path (108 with its terminating NUL)


def socket_folder_root(room: int) -> str:
    """A folder to make socket folders in, leaving `room` bytes for what goes below it: the system's temp folder when
    its path is short enough, else the first short, writable one of /tmp, /var/tmp, /dev/shm (a long TMPDIR, such as
    a test runner's, would otherwise stop kernels and the class's forkserver from binding their sockets)."""
    for folder in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        if len(os.fsencode(folder)) + room <= SOCKET_PATH_MAX and os.path.isdir(folder) \
                and os.access(folder, os.W_OK | os.X_OK):
            return folder
    raise OSError(f"no temp folder has a path short enough for Unix sockets (at most {SOCKET_PATH_MAX - room} "
                  "bytes): set TMPDIR to a shorter folder")


@functools.lru_cache(maxsize=None)
def available() -> str | None:
    """None when bwrap can build a sandbox here; otherwise the one-line reason it can't."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    probe = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap could not start ({error})"
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        return f"bubblewrap cannot create namespaces on this system ({reason})"
    return None


def readable_roots() -> list[str]:
    """What the kernel may read: the interpreter, its standard library and the environment's packages."""
    roots = {sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix}
    real = os.path.realpath(sys.executable)
    roots.add(str(Path(real).parent.parent))
    for entry in sys.path:
        if entry and "site-packages" in entry and os.path.isdir(entry):
            roots.add(entry)
    usr = {r for r in roots if r == "/usr" or r.startswith("/usr/")}
    return sorted(r for r in roots - usr if os.path.isdir(r))


def _bwrap_args(conn_dir: Path, data: dict[str, str], etc: Path) -> list[str]:
    args = ["--unshare-all", "--die-with-parent", "--cap-drop", "ALL",
            "--hostname", "sandbox", "--proc", "/proc", "--dev", "/dev",
            # Both writable folders are memory (counted in the kernel's cgroup), fresh at every kernel start: a
            # notebook can't fill the disk, and nothing it wrote survives a restart (its earlier cells are replayed).
            "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp", "--size", str(TMPFS_BYTES), "--tmpfs", HOME,
            "--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / top
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ETC_FILES:
        if os.path.exists(f"/etc/{name}"):
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    args += ["--ro-bind", str(etc / "passwd"), "/etc/passwd", "--ro-bind", str(etc / "group"), "/etc/group"]
    if os.path.isdir("/sys/devices/system/cpu"):  # numpy/torch read the CPU topology from here
        args += ["--ro-bind", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    for root in readable_roots():
        args += ["--ro-bind", root, root]
    args += ["--bind", str(conn_dir), str(conn_dir)]
    for inside, outside in sorted(data.items()):
        args += ["--ro-bind", outside, str(Path(HOME) / inside)]
    # the root itself (a tmpfs holding the mount points) becomes read-only last
    return args + ["--remount-ro", "/", "--chdir", HOME, "--clearenv"]


def kernel_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(KERNEL_ENV, PATH=os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin",
                                                 "/bin"]))
    env.setdefault("LANG", "C.UTF-8")
    env.update({k: os.environ[k] for k in PASSED_THROUGH if k in os.environ})
    env.update(extra or {})
    return env


def kernel_command(connection_file: str, *, workdir: Path, memory: int, data: dict[str, str] | None = None,
                   preamble: str = "", sandbox: bool = True, output_cap: int = 2 * 2**20) -> list[str]:
    """The command that starts one kernel: this file as a script, then (when `sandbox`) bwrap, then the kernel.

    `workdir` holds the connection folder, `sandbox.json` and `kernel.log` (and, unsandboxed, the home folder);
    `data` maps paths under the learner's home to host files it may read (a chapter's declared data); `output_cap`:
    characters a stream keeps per request in the kernel (64 times that stops the cell)."""
    workdir = Path(workdir)
    launch = KERNEL_LAUNCH.replace("OUTPUT_CAP", str(int(output_cap))).replace("OUTPUT_STOP", str(64 * int(output_cap)))
    python = [sys.executable, "-c", preamble + "\n" + launch, "-f", connection_file]
    outer = [sys.executable, "-S", __file__, "--workdir", str(workdir), "--memory", str(memory),
             "--owner", str(os.getpid())]
    if not sandbox:  # no tmpfs to give it: a home folder on disk, in the work folder removed after grading
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = kernel_env({"HOME": str(home), "TMPDIR": str(home)})
        return outer + ["--cwd", str(home), "--env", json.dumps(env), "--", *python]
    etc = workdir / "etc"  # the passwd and group files bound into the sandbox
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "passwd").write_text(f"learner:x:{os.getuid()}:{os.getgid()}:learner:{HOME}:/bin/sh\n")
    (etc / "group").write_text(f"learner:x:{os.getgid()}:\n")
    conn_dir = Path(connection_file).parent
    data = {inside: outside for inside, outside in (data or {}).items() if os.path.isfile(outside)}
    env_args = [x for k, v in sorted(kernel_env().items()) for x in ("--setenv", k, v)]
    return outer + ["--", shutil.which("bwrap") or "bwrap", *_bwrap_args(conn_dir, data, etc), *env_args,
                    "--", *python]


def cgroup_paths(workdir: Path, owner: int | None = None) -> list[Path]:
    """The kernel's cgroups (v1: one per controller; v2: one), named after the grader's pid and the work folder."""
    name = f"{owner or os.getpid()}-{Path(workdir).name}"
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT / _own_cgroup("") / CGROUP_GROUP / name]
    return [CGROUP_ROOT / c / _own_cgroup(c) / CGROUP_GROUP / name for c in ("memory", "pids")]


def _own_cgroup(controller: str) -> str:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controller in controllers.split(",") or (not controller and controllers == ""):
                return path.lstrip("/")
    except OSError:
        pass
    return ""


def kill_cgroup(paths: list[Path], grace: float = 1.0) -> int:
    """Kill every process left in the kernel's cgroups and remove them; return how many were killed.

    Processes already on their way out get `grace` seconds to go by themselves: a sandbox's processes die with its
    namespace, and one with much memory stays listed while the kernel frees it (on a busy machine, long enough to
    be counted as left behind by the notebook, so that the same notebook's report changed from run to run)."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_pids(path) for path in paths):
        time.sleep(0.02)
    killed = 0
    for path in paths:
        if not path.is_dir():
            continue
        if (path / "cgroup.kill").exists():
            _write(path / "cgroup.kill", "1")
        for _ in range(50):
            pids = _pids(path)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        for _ in range(50):
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
    return killed


def sweep_cgroups() -> None:
    """Remove our cgroups whose grader is gone (a grader killed with SIGKILL can't clean up after itself)."""
    for base in {p.parent for p in cgroup_paths(Path("probe"))}:
        if not base.is_dir():
            continue
        for group in base.iterdir():
            owner = group.name.split("-", 1)[0]
            if group.is_dir() and owner.isdigit() and not Path(f"/proc/{owner}").exists():
                kill_cgroup([group])


def _pids(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _write(path: Path, text: str) -> bool:
    try:
        path.write_text(text)
        return True
    except OSError:
        return False


# --- the kernel's first process --------------------------------------------------------------------------------------
def _limit(kind, value) -> bool:
    try:
        resource.setrlimit(kind, (value, value))
        return True
    except (ValueError, OSError):
        return False


def _join_cgroups(workdir: Path, memory: int, owner: int) -> dict:
    """Memory and process caps for this process and all its descendants; False where cgroups aren't writable."""
    paths = cgroup_paths(workdir, owner)
    memory_ok = processes_ok = False
    for path in paths:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if (path / "memory.max").exists() or (path / "memory.limit_in_bytes").exists():
            memory_ok = _write(path / "memory.max", str(memory)) or _write(path / "memory.limit_in_bytes", str(memory))
            _write(path / "memory.swap.max", "0")
            _write(path / "memory.memsw.limit_in_bytes", str(memory))
        if (path / "pids.max").exists():
            processes_ok = _write(path / "pids.max", str(MAX_PROCESSES))
        if not _write(path / "cgroup.procs", str(os.getpid())):
            memory_ok = processes_ok = False
    return {"memory_total": memory_ok, "processes_total": processes_ok}


def main(argv: list[str]) -> None:
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    settings = dict(zip(options[0::2], options[1::2]))
    workdir = Path(settings["--workdir"])
    memory = int(settings["--memory"])
    sandboxed = Path(command[0]).name == "bwrap"
    report = {"sandbox": "bubblewrap" if sandboxed else "none", "memory_bytes": memory,
              **_join_cgroups(workdir, memory, int(settings["--owner"]))}
    if not report["processes_total"]:
        _limit(resource.RLIMIT_NPROC, MAX_PROCESSES)  # per user, and root is exempt: the best left without cgroups
    report["memory_limit"] = _limit(resource.RLIMIT_AS, memory) or report["memory_total"]
    _limit(resource.RLIMIT_FSIZE, 64 * 2**20)
    _limit(resource.RLIMIT_CPU, 1800)
    _limit(resource.RLIMIT_CORE, 0)
    report["network"] = "off" if sandboxed else "on"
    report["files"] = "allow-list (read-only system, private home and /tmp)" if sandboxed else "not isolated"
    (workdir / "sandbox.json").write_text(json.dumps(report))
    # The kernel's own stdout/stderr (C-level writes, crash dumps) go to a file, never to the grader's terminal.
    log = os.open(workdir / "kernel.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    # jupyter_client interrupts the kernel with SIGINT to the whole process group: bwrap must not die of it (its
    # sandbox would die with it). An ignored signal stays ignored across exec; ipykernel sets its own handler.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not sandboxed:
        os.chdir(settings["--cwd"])
        os.execve(command[0], command, json.loads(settings["--env"]))
    # bwrap starts from the kernel's environment, not the grader's: its first process inside keeps the environment
    # it was started with in /proc/1/environ, which the kernel can read.
    os.execve(command[0], command, {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})


if __name__ == "__main__":
    main(sys.argv[1:])
