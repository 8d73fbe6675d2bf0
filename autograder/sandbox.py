"""Start a learner's kernel inside a sandbox, then become it.

Run as a script, by path, so that the kernel never imports the `autograder` package:

    python sandbox.py --scratch DIR --memory BYTES [--hide DIR]... -- python -m ipykernel_launcher -f FILE

Each step is taken where the operating system allows it, and what was achieved is written to `DIR/sandbox.json`
before the kernel starts, so the grader can tell the learner:
1. a session of its own, and limits on memory (address space), file size, CPU seconds and processes;
2. no network: a network namespace with nothing in it (the kernel talks to the grader over Unix-domain sockets in its
   scratch folder, which a network namespace does not cut);
3. a PID namespace: it cannot see or signal the grader or other students' kernels;
4. a read-only file system except its scratch folder, and the grading folders (gradebooks, other students'
   submissions) hidden under empty mounts: a mount namespace, then every capability dropped so it cannot be undone;
5. its scratch folder as working and home directory.
"""
import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_BIND, MS_REC, MS_PRIVATE = 0x1, 0x1000, 0x4000, 0x40000
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 0x1
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def ok(result):
    return result == 0


def mount(source, target, fstype, flags, data=None):
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    return ok(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)))


def set_readonly(path, readonly):
    attr = MountAttr(MOUNT_ATTR_RDONLY if readonly else 0, 0 if readonly else MOUNT_ATTR_RDONLY, 0, 0)
    return ok(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE,
                           ctypes.byref(attr), ctypes.sizeof(attr)))


def limit(kind, value):
    try:
        resource.setrlimit(kind, (value, value))
        return True
    except (ValueError, OSError):
        return False


def enter_namespaces():
    """As root: mount + network namespaces. Otherwise: a user namespace first, mapping us to ourselves."""
    if os.geteuid() == 0:
        return ok(libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID))
    uid, gid = os.geteuid(), os.getegid()
    if not ok(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID)):
        return False
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
    except OSError:
        return False
    return True


def lock_files(scratch, hidden):
    """Everything read-only but `scratch`; `hidden` folders replaced by empty ones. True when all of it held."""
    if not mount(None, "/", None, MS_REC | MS_PRIVATE):
        return False
    if not mount(scratch, scratch, None, MS_BIND | MS_REC):
        return False
    for folder in hidden:
        if os.path.isdir(folder) and not os.path.abspath(scratch).startswith(os.path.abspath(folder) + os.sep):
            if not mount("tmpfs", folder, "tmpfs", MS_RDONLY, "size=64k,mode=555"):
                return False
    return set_readonly("/", True) and set_readonly(scratch, False)


def drop_capabilities():
    """No capability survives: the mounts above cannot be undone, and exec grants none back (bounding set empty)."""
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    return ok(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))


def join_pids_cgroup(scratch, max_pids=256):
    """A cap on processes (fork bombs), where a cgroup v1 `pids` hierarchy is writable; root is exempt from RLIMIT_NPROC."""
    base = "/sys/fs/cgroup/pids"
    group = os.path.join(base, "autograder", os.path.basename(scratch.rstrip("/")))
    try:
        os.makedirs(group, exist_ok=True)
        with open(os.path.join(group, "pids.max"), "w") as handle:
            handle.write(str(max_pids))
        with open(os.path.join(group, "cgroup.procs"), "w") as handle:
            handle.write(str(os.getpid()))
        return True
    except OSError:
        return limit(resource.RLIMIT_NPROC, max_pids)


def main(argv):
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    pairs = list(zip(options[0::2], options[1::2]))
    settings = dict(pairs)
    hidden = [value for key, value in pairs if key == "--hide"]
    scratch = os.path.abspath(settings["--scratch"])
    memory = int(settings["--memory"])

    try:
        os.setsid()  # jupyter_client usually made us a session leader already
    except OSError:
        pass
    report = {
        "memory_bytes": memory,
        "memory_limit": limit(resource.RLIMIT_AS, memory),
        "processes_limit": join_pids_cgroup(scratch),
    }
    limit(resource.RLIMIT_FSIZE, 64 * 2**20)
    limit(resource.RLIMIT_CPU, int(settings.get("--cpu-seconds", "1800")))
    limit(resource.RLIMIT_CORE, 0)
    isolated = enter_namespaces()
    report["network"] = "off" if isolated else "on"
    files_locked = isolated and lock_files(scratch, hidden)
    report["files"] = "read-only outside scratch" if files_locked and drop_capabilities() else "not isolated"

    os.chdir(scratch)
    env = dict(os.environ)
    env.update(HOME=scratch, TMPDIR=scratch, MPLCONFIGDIR=os.path.join(scratch, ".matplotlib"),
               IPYTHONDIR=os.path.join(scratch, ".ipython"), PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg",
               # several kernels share the cores while a class is graded: one thread each avoids oversubscription
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with open(os.path.join(scratch, "sandbox.json"), "w") as handle:
        json.dump(report, handle)
    # The kernel's own stdout/stderr (C-level writes, crash dumps) go to a file, never to the grader's terminal.
    log = os.open(os.path.join(scratch, "kernel.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    if isolated:
        # The kernel becomes the first process of a PID namespace of its own: it can see and signal nothing
        # outside it (not the grader, not other students' kernels). This process stays outside and waits for it;
        # interrupts reach the kernel through the process group.
        child = os.fork()
        if child:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _, status = os.waitpid(child, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    os.execve(command[0], command, env)


if __name__ == "__main__":
    main(sys.argv[1:])
