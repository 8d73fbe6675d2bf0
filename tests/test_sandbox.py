"""The sandbox itself, probed from inside a real kernel started exactly as grading starts it (seconds each).

Each test starts a kernel through `kernel.manager` (bubblewrap + cgroups), runs a probe in it, and checks
from outside what the probe could see or do.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from autograder import sandbox
from autograder.course import REPO
from autograder.kernel import KernelSettings, manager

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(sandbox.available() is not None, reason=f"no sandbox here: {sandbox.available()}")]


@asynccontextmanager
async def kernel(memory=2 * 2**30, data=None):
    workdir = Path(tempfile.mkdtemp(prefix="k-"))
    km = manager(workdir, KernelSettings(memory=memory, data=data or {}, preamble="", sandboxed=True))
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        yield km, kc, workdir
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
        sandbox.kill_cgroup(sandbox.cgroup_paths(workdir))
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


async def run(kc, code: str, timeout: float = 60) -> str:
    """Run code in the kernel; return what it printed (stdout), or raise with its error."""
    printed, errors = [], []

    def hook(msg):
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

    await kc.execute_interactive(code, output_hook=hook, timeout=timeout)
    if errors:
        raise AssertionError(errors[0])
    return "".join(printed)


def probe(code: str, **kwargs):
    async def main():
        async with kernel(**kwargs) as (km, kc, workdir):
            return await run(kc, code)
    return asyncio.run(main())


def exists_inside(paths) -> dict[str, bool]:
    code = f"import os, json\nprint(json.dumps({{p: os.path.exists(p) for p in {list(map(str, paths))!r}}}))"
    return json.loads(probe(code))


def test_no_network_even_to_loopback_ports_opened_outside():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        out = probe(f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
                    "    print('connected')\nexcept OSError as e:\n    print('refused', type(e).__name__)")
    finally:
        server.close()
    assert out.startswith("refused"), out


def test_only_the_allow_list_is_visible(tmp_path, monkeypatch):
    submissions = tmp_path / "submitted" / "alice"
    submissions.mkdir(parents=True)
    (submissions / "04_attention.ipynb").write_text("{}")
    host_tmp = Path(tempfile.gettempdir()) / f"host-secret-{uuid.uuid4().hex}"
    host_tmp.write_text("secret")
    monkeypatch.setenv("INSTRUCTOR_SECRET_TOKEN", "do-not-leak")
    try:
        seen = exists_inside([REPO / "solutions", REPO / ".git", REPO / "autograder", REPO / "gpt", REPO / "tests",
                              submissions, host_tmp, "/etc/shadow", "/root/.bash_history", "/var", "/home/learner",
                              "/tmp", "/usr/lib", REPO / ".venv" / "bin" / "python"])
        env = json.loads(probe("import os, json\nprint(json.dumps(dict(os.environ)))"))
        first = probe("print(open('/proc/1/environ', 'rb').read().decode(errors='replace'))")
    finally:
        host_tmp.unlink()
    visible = {p for p, there in seen.items() if there}
    assert visible == {"/home/learner", "/tmp", "/usr/lib", str(REPO / ".venv" / "bin" / "python")}, visible
    assert "INSTRUCTOR_SECRET_TOKEN" not in env and env["HOME"] == "/home/learner"
    assert "INSTRUCTOR_SECRET_TOKEN" not in first, "the sandbox's first process kept the grader's environment"
    assert not any(str(REPO) in v for k, v in env.items() if k != "PATH"), env


def test_course_packages_are_not_importable():
    out = probe("for name in ('gpt', 'autograder'):\n    try:\n        __import__(name)\n        print(name, 'imported')\n"
                "    except ImportError:\n        print(name, 'absent')")
    assert out.split() == ["gpt", "absent", "autograder", "absent"], out


def test_writes_only_in_home_and_tmp():
    targets = ["/home/learner/ok.txt", "/tmp/ok.txt", "/usr/evil.txt", "/etc/evil.txt", "/evil.txt",
               str(REPO / ".venv" / "evil.txt")]
    out = probe("import json\nres = {}\nfor t in %r:\n    try:\n        open(t, 'w').write('x')\n        res[t] = True\n"
                "    except OSError:\n        res[t] = False\nprint(json.dumps(res))" % targets)
    wrote = {t for t, ok in json.loads(out).items() if ok}
    assert wrote == {"/home/learner/ok.txt", "/tmp/ok.txt"}
    assert not (REPO / ".venv" / "evil.txt").exists()


def test_other_kernels_and_host_processes_are_invisible():
    async def main():
        async with kernel() as (_, _, other_workdir), kernel() as (_, kc, _):
            other = [other_workdir / "conn" / "connection.json", other_workdir / "conn", other_workdir / "home"]
            seen = json.loads(await run(kc, "import os, json\nprint(json.dumps({'paths': [os.path.exists(p) for p "
                                               f"in {list(map(str, other))!r}], 'pids': sorted(int(p) for p in "
                                               "os.listdir('/proc') if p.isdigit())}))"))
            return seen
    seen = asyncio.run(main())
    assert seen["paths"] == [False, False, False]
    assert os.getpid() not in seen["pids"] and max(seen["pids"]) < 50, seen["pids"]


def _host_processes_with(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in args and entry.name.isdigit():
            found.append(f"{entry.name} {args}")
    return found


def _wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_nothing_outlives_the_kernel():
    marker = f"orphan-{uuid.uuid4().hex[:8]}"
    sleeper = "[sys.executable, '-c', 'import time; time.sleep(600)', '%s']"
    code = ("import os, subprocess, sys, threading, time\n"
            f"subprocess.Popen({sleeper % (marker + '-setsid')}, start_new_session=True)\n"
            f"subprocess.Popen({sleeper % (marker + '-child')})\n"
            "threading.Thread(target=time.sleep, args=(600,), daemon=False).start()\n"
            "pid = os.fork()\nif pid == 0:\n    os.setsid()\n    time.sleep(600)\n    os._exit(0)\nprint('started')")

    async def main():
        async with kernel() as (km, kc, workdir):
            assert (await run(kc, code)).strip() == "started"
            _wait_for(lambda: len(_host_processes_with(marker)) == 2, 10)
            assert len(_host_processes_with(marker)) == 2
            await km.shutdown_kernel(now=False)  # a polite end: the kernel exits, its namespace goes with it
            _wait_for(lambda: not _host_processes_with(marker), 10)
            left = _host_processes_with(marker)
            return left, sandbox.kill_cgroup(sandbox.cgroup_paths(workdir))
    left, killed = asyncio.run(main())
    assert left == [] and killed == 0, (left, killed)


def test_cgroups_are_removed_and_swept():
    async def main():
        async with kernel() as (_, kc, workdir):
            await run(kc, "print(1)")
            paths = sandbox.cgroup_paths(workdir)
            assert any(p.is_dir() for p in paths), "no cgroup was made for the kernel"
            return paths
    paths = asyncio.run(main())
    assert not any(p.is_dir() for p in paths)


def test_fork_bomb_is_capped():
    out = probe("import os, time\nn = 0\nkids = []\nfor _ in range(600):\n    try:\n        pid = os.fork()\n"
                "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
                "    kids.append(pid)\nfor pid in kids:\n    os.kill(pid, 9)\n    os.waitpid(pid, 0)\nprint(len(kids))")
    assert int(out) < sandbox.MAX_PROCESSES, out


def test_memory_is_capped_for_the_kernel_and_its_children_together():
    # Four children of 400 MB each: each is well under a per-process limit, together they are over 1 GiB. A child
    # that said "held" may have been killed for memory since (the kernel's OOM killer picks the largest): count the
    # ones still alive once all have answered.
    code = ("import subprocess, sys, time\nchild = 'b = b\\'\\\\1\\' * (400 * 2**20)\\nprint(\"held\", flush=True)\\n"
            "import time; time.sleep(20)'\n"
            "procs = [subprocess.Popen([sys.executable, '-c', child], stdout=subprocess.PIPE, text=True) "
            "for _ in range(4)]\n"
            "said = [p.stdout.readline().strip() == 'held' for p in procs]\n"
            "time.sleep(0.5)\n"
            "held = sum(1 for s, p in zip(said, procs) if s and p.poll() is None)\n"
            "[p.kill() for p in procs]\nprint(held)")
    out = probe(code, memory=2**30)
    assert int(out) <= 2, f"{out} children held 400 MB each under a 1 GiB limit"


def test_a_startup_file_cannot_run_again_after_a_restart():
    async def main():
        async with kernel() as (km, kc, _):
            await run(kc, "import os\nfor d in ('/tmp/ipython/profile_default/startup', "
                          "'/home/learner/.ipython/profile_default/startup'):\n    os.makedirs(d, exist_ok=True)\n"
                          "    open(d + '/00-stall.py', 'w').write('import time; time.sleep(600)')\n")
            await km.restart_kernel(now=True)
            await kc.wait_for_ready(timeout=30)
            return await run(kc, "print('fresh')", timeout=20)
    assert asyncio.run(main()).strip() == "fresh"


def test_declared_data_is_readable_and_nothing_else_of_the_repo(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be")
    out = probe("print(open('data/corpus.txt').read())\nimport os\nprint(os.listdir('/home/learner/data'))",
                data={"data/corpus.txt": str(corpus)})
    assert out.splitlines() == ["to be or not to be", "['corpus.txt']"]


def _interrupt_when_a_kernel_runs(command: list[str], tmp: Path, logs: Path) -> subprocess.CompletedProcess:
    """Start `command` with its own temp folder, press Ctrl-C once a sandboxed kernel is running, wait for the end.
    Its output goes to files: a pipe nobody reads would fill and stop it."""
    env = dict(os.environ, TMPDIR=str(tmp))
    with open(logs / "stdout.txt", "w") as out, open(logs / "stderr.txt", "w") as err:
        # Ctrl-C as a terminal sends it, whatever the test runner's own handling of SIGINT is (a process started with
        # SIGINT ignored would keep ignoring it)
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

        def kernel_running():  # os.walk, unlike rglob, shrugs off folders that vanish while it looks
            return any("kernel.log" in files for _, _, files in os.walk(tmp))

        _wait_for(kernel_running, 300)  # a loaded CI machine can take minutes to get a class to its first kernel
        assert kernel_running(), f"no kernel started: {(logs / 'stderr.txt').read_text()[-3000:]}"
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=90)
    return subprocess.CompletedProcess(command, process.returncode, (logs / "stdout.txt").read_text(),
                                       (logs / "stderr.txt").read_text())


@pytest.mark.timeout(600)
@pytest.mark.parametrize("command", ["check", "grade"])
def test_ctrl_c_leaves_no_folder_process_or_cgroup(tmp_path, command):
    # the command's TMPDIR: a short folder, so that the grader's own folders go there (under a long TMPDIR, such as
    # tmp_path under xdist, they go to a short system folder instead, where this test would not see them)
    tmp = Path(tempfile.mkdtemp(prefix="t-", dir="/tmp"))
    try:
        _ctrl_c(tmp_path, tmp, command)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ctrl_c(tmp_path, tmp, command):
    import nbformat

    # a notebook still being graded when Ctrl-C comes: a cell that waits
    slow = nbformat.read(REPO / "solutions" / "04_attention.ipynb", as_version=4)
    slow.cells.insert(1, nbformat.v4.new_code_cell("import time\ntime.sleep(25)"))
    notebook = tmp_path / "04_attention.ipynb"
    nbformat.write(slow, notebook)
    if command == "check":
        argv = [sys.executable, "-m", "autograder", "check", str(notebook)]
    else:
        for student in ("ann", "bob"):
            (tmp_path / "subs" / student).mkdir(parents=True)
            (tmp_path / "subs" / student / notebook.name).write_bytes(notebook.read_bytes())
        argv = [sys.executable, "-m", "autograder", "grade", "04_attention", str(tmp_path / "subs"),
                "--out", str(tmp_path / "out"), "--no-progress"]
    done = _interrupt_when_a_kernel_runs(argv, tmp, tmp_path)
    assert done.returncode == 130 and "interrupted" in done.stderr, (done.returncode, done.stderr[-500:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    _wait_for(lambda: not list(tmp.iterdir()), 10)
    assert list(tmp.iterdir()) == [], f"left behind: {[root for root, _, _ in os.walk(tmp)][:10]}"
    assert not [p for p in _host_processes_with(str(tmp))], "a kernel outlived the interrupted command"
    orphaned = [g for base in {p.parent for p in sandbox.cgroup_paths(Path("x"))} if base.is_dir()
                for g in base.iterdir() if g.is_dir() and g.name.split("-")[0].isdigit()
                and not Path(f"/proc/{g.name.split('-')[0]}").exists()]
    assert orphaned == [], "cgroups of a finished grader were left behind"
