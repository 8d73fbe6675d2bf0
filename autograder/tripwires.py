"""Tripwires: the forbidden library functions themselves, replaced in the learner's kernel before any learner code runs.

Why not watch calls with `sys.setprofile`: a profiler sees only the thread that set it, sees nothing a C function
calls (`next(map(F.scaled_dot_product_attention, ...))`), keeps its record where the learner's code can clear it, and
slows every Python call. A tripwire is the callable itself: `torch.nn.functional.scaled_dot_product_attention` (and
`torch._C._nn.scaled_dot_product_attention`, the same object, wherever a loaded module holds it) becomes a thin
function that notes the call and calls the original, so it fires from any thread and from C, and costs nothing to
code that doesn't call it.

How it is armed (this file is stdlib-only: its text runs in the kernel, where `autograder` can't be imported):
- `preamble(patterns)` is Python source the kernel runs before ipykernel starts (`SandboxedExecute.kernel_preamble`).
  It replaces `builtins.__import__` and `importlib.import_module` with versions that arm each package the patterns
  are about (torch, scipy, ...) right after it is imported, so a kernel that never imports torch pays nothing, and no
  learner code can hold an unarmed reference.
- What is replaced, for each fnmatch pattern on dotted names: the functions of a loaded module and the methods of its
  classes (tensor methods included: `x.softmax` is `torch.Tensor.softmax`) whose name, where they live or where they
  were defined, the pattern names specifically; when a pattern covers a whole module or package (`torch.nn.functional.*`,
  `torch*`), only that module's own namespace (`torch.nn.functional`, `torch`). What can't be replaced (methods of
  C types such as `torch._C.TensorBase`) is left to the grader's static scan.

How a call is recorded: the hit log is a file in the kernel's scratch folder beside its connection file, opened by the
preamble, and written with `os.write` captured before any learner code ran. For each grader request, identified by a
nonce the grader chose, the request's code writes `B <nonce>` when the call starts, each tripwire writes
`H <nonce> <names>` the first time it fires in that call (any thread), and the request writes
`E <nonce> <sha256 of its answer's value>` at the end, or `T <nonce> <what>` where it finds the tripwires taken apart
(an original put back, a wrapper's code or closure changed, the import hook removed). The grader reads the lines of
its own nonce: hits decide the shortcut verdict (the answer's own report is not trusted), and a missing `B`/`E` line,
a digest that differs from the answer the grader received, or a `T` line means the record was tampered with. All of it
is advisory: code in the same process can in principle undo anything here, so tampering costs the learner the
exercise whose call showed it, never anything else, and never stops the grader; the static scan in the grader stands
whatever happens in the kernel.
"""
REGISTRY = "_autograder_tripwires"
LOG_NAME = "tripwires.log"
MAX_LOG_READ = 4 * 2**20


def install(patterns, log_path=None):
    """Arm tripwires for `patterns` in this process (idempotent: a second call adds patterns). Returns the registry.

    With `log_path` None the record is kept in memory (`registry.memory`): the grader's in-process mode."""
    import builtins
    import fnmatch
    import hashlib
    import importlib
    import inspect
    import os
    import re
    import sys
    import types
    import warnings

    existing = sys.modules.get(REGISTRY)
    if existing is not None and getattr(existing, "_is_autograder_tripwires", False):
        existing.extend(patterns)
        return existing

    write, sha256, fstat = os.write, hashlib.sha256, os.fstat
    heap_type = 1 << 9
    function_types = (types.FunctionType, types.BuiltinFunctionType)
    method_types = (types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType)
    rules = []  # (compiled regex, the module the pattern is written for)
    roots = set()
    state = {"nonce": None, "depth": 0}
    seen = set()
    memory = []
    names_of = {}  # id(original) -> [dotted names it is known by]
    wrappers = {}  # id(original) -> wrapper
    originals = {}  # id(original) -> original (kept alive so ids stay unique)
    sites = []  # (owner, attribute, wrapper)
    placed = set()  # (id(owner), attribute) already holding a tripwire
    wrapper_ids = set()
    armed = set()
    fd = None
    inode = None
    if log_path:
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        inode = fstat(fd).st_ino

    def emit(line):
        if fd is None:
            memory.append(line)
            return
        try:
            write(fd, (line + "\n").encode("utf-8", "replace"))
        except OSError:
            pass

    def hit(key):
        nonce = state["nonce"]
        if nonce is None or (nonce, key) in seen:
            return
        seen.add((nonce, key))
        emit(f"H {nonce} {' '.join(names_of.get(key, ['?']))}")

    def make(original, names):
        key = id(original)

        def tripwire(*args, **kwargs):
            hit(key)
            return original(*args, **kwargs)

        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            try:
                setattr(tripwire, attr, getattr(original, attr))
            except (AttributeError, TypeError):
                pass
        try:  # what introspection needs, without `__wrapped__` (which would hand the original to anyone)
            tripwire.__signature__ = inspect.signature(original)
        except (TypeError, ValueError):
            pass
        names_of[key] = list(dict.fromkeys(names))
        wrappers[key] = tripwire
        originals[key] = original
        return tripwire

    def add_patterns(new):
        for pattern in new:
            regex = re.compile(fnmatch.translate(pattern))
            literal = re.split(r"[*?\[]", pattern)[0]
            home = literal.rstrip(".") if literal.endswith(".") or literal == pattern.rstrip("*") else literal
            rules.append((regex, home.rstrip(".")))
            root = re.match(r"[A-Za-z_][A-Za-z0-9_]*", pattern)
            if root:
                roots.add(root.group(0))
        state["any"] = re.compile("|".join(regex.pattern for regex, _ in rules) or "(?!)")

    def wanted(candidates, module):
        """Does a pattern name one of the candidates (name, defined there?) specifically, or cover all of `module`
        (the module the pattern is written for) while the object is defined there?"""
        if not any(state["any"].match(name) for name, _ in candidates):
            return False  # the common case, decided by one regex
        for regex, home in rules:
            broad = regex.match(module + ".zz_any_name_at_all")
            for name, own in candidates:
                if regex.match(name) and (not broad or (own and home == module)):
                    return True
        return False

    def place(owner, attr, original, names):
        if (id(owner), attr) in placed:
            return
        wrapper = wrappers.get(id(original))
        if wrapper is None:
            wrapper = make(original, names)
        else:
            for name in names:
                if name not in names_of[id(original)]:
                    names_of[id(original)].append(name)
        try:
            setattr(owner, attr, wrapper)
        except (AttributeError, TypeError):
            return
        sites.append((owner, attr, wrapper))
        placed.add((id(owner), attr))
        wrapper_ids.add(id(wrapper))

    def own_name(obj):
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if isinstance(module, str) and isinstance(qualname, str):
            return f"{module}.{qualname}"
        return None

    def arm_class(klass, where):
        if not (klass.__flags__ & heap_type):
            return
        base_name = f"{where}.{klass.__qualname__}"
        # its own methods, then those it inherits from C types (torch.Tensor <- torch._C.TensorBase)
        owners = [klass]
        for base in klass.__mro__[1:]:
            if base.__flags__ & heap_type:
                break  # a Python base class is armed on its own; its subclasses inherit its tripwires
            if base is not object:
                owners.append(base)
        for owner in owners:
            owner_name = f"{owner.__module__}.{owner.__qualname__}"
            for attr, value in list(vars(owner).items()):
                if attr.startswith("__") and attr not in ("__init__", "__call__"):
                    continue
                if owner is not klass and attr in vars(klass):
                    continue
                if id(value) in wrapper_ids:
                    continue
                if id(value) in wrappers:
                    place(klass, attr, value, [f"{base_name}.{attr}"])
                    continue
                if not isinstance(value, method_types):
                    continue
                names = [f"{base_name}.{attr}", f"{owner_name}.{attr}"]
                if wanted([(n, True) for n in names], where):
                    place(klass, attr, value, names)

    def arm_module(name, module):
        armed.add(name)
        try:
            items = list(vars(module).items())
        except TypeError:
            return
        for attr, value in items:
            if attr.startswith("__"):
                continue
            try:
                if id(value) in wrapper_ids:
                    continue
                if id(value) in wrappers:
                    place(module, attr, value, [f"{name}.{attr}"])
                elif isinstance(value, function_types):
                    site, real = f"{name}.{attr}", own_name(value)
                    candidates = [(site, real in (None, site))]
                    if real and real != site:
                        candidates.append((real, True))
                    if wanted(candidates, name) or (real and real != site and wanted(
                            [(real, True)], real.rsplit(".", 1)[0])):
                        place(module, attr, value, [site] + ([real] if real and real != site else []))
                elif isinstance(value, type) and value.__module__ == name:
                    arm_class(value, name)
            except Exception:  # an odd object in some module must never stop the kernel
                continue

    def sweep():
        if not roots:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, module in list(sys.modules.items()):
                if name not in armed and module is not None and name.split(".")[0].startswith(tuple(roots)):
                    arm_module(name, module)

    original_import = builtins.__import__
    original_import_module = importlib.import_module

    def guarded_import(*args, **kwargs):
        state["depth"] += 1
        try:
            return original_import(*args, **kwargs)
        finally:
            state["depth"] -= 1
            if state["depth"] == 0 and len(sys.modules) != state.get("modules"):
                state["modules"] = len(sys.modules)
                try:
                    sweep()
                except Exception:
                    pass

    def guarded_import_module(*args, **kwargs):
        module = original_import_module(*args, **kwargs)
        if state["depth"] == 0:
            try:
                sweep()
            except Exception:
                pass
        return module

    builtins.__import__ = guarded_import
    importlib.import_module = guarded_import_module

    ours = [hit, emit, make, guarded_import, guarded_import_module]
    fingerprints = {id(f): (f.__code__, tuple(c.cell_contents for c in (f.__closure__ or ())))
                    for f in ours}

    def taken_apart():
        """What of the tripwires is no longer as it was armed (empty when intact)."""
        problems = []
        if builtins.__import__ is not guarded_import:
            problems.append("builtins.__import__ replaced")
        for f in ours:
            code, cells = fingerprints[id(f)]
            try:
                now = tuple(c.cell_contents for c in (f.__closure__ or ()))
            except ValueError:
                now = ()
            if f.__code__ is not code or len(now) != len(cells) or any(a is not b for a, b in zip(now, cells)):
                problems.append(f"{f.__name__} changed")
        for owner, attr, wrapper in sites:
            try:
                value = vars(owner).get(attr)
            except TypeError:
                continue
            if id(value) in originals and value is originals[id(value)]:
                problems.append(f"{getattr(owner, '__name__', '?')}.{attr} unwrapped")
        for key, wrapper in wrappers.items():
            cells = wrapper.__closure__ or ()
            if wrapper.__code__ is not wrappers_code or any(
                    c.cell_contents is not originals[key] and c.cell_contents is not hit
                    and c.cell_contents != key for c in cells):
                problems.append(f"{names_of[key][0]} tripwire changed")
        if fd is not None:
            try:
                if fstat(fd).st_ino != inode:
                    problems.append("hit log replaced")
            except OSError:
                problems.append("hit log closed")
        return problems[:3]

    def open_window(nonce):
        try:
            sweep()
        except Exception:
            pass
        state["nonce"] = nonce
        emit(f"B {nonce}")
        problems = taken_apart()
        if problems:
            emit(f"T {nonce} {'; '.join(problems)}")

    def close_window(nonce, answer_text):
        problems = taken_apart()
        if state["nonce"] != nonce:
            problems.append("call record switched")
        if problems:
            emit(f"T {nonce} {'; '.join(problems)}")
        state["nonce"] = None
        emit(f"E {nonce} {sha256(answer_text.encode('utf-8')).hexdigest()}")

    def extend(new):
        add_patterns([p for p in new if p not in patterns_seen])
        patterns_seen.update(new)
        armed.clear()  # new patterns may name things in modules already armed
        sweep()

    wrappers_code = make(len, ["?"]).__code__
    del wrappers[id(len)], originals[id(len)], names_of[id(len)]
    patterns_seen = set(patterns)
    add_patterns(patterns)
    sweep()

    registry = types.ModuleType(REGISTRY)
    registry._is_autograder_tripwires = True
    registry.open = open_window
    registry.close = close_window
    registry.extend = extend
    registry.memory = memory
    registry.count = lambda: len(sites)
    sys.modules[REGISTRY] = registry
    return registry


def install_from_argv(patterns):
    """In the kernel, before ipykernel: the hit log goes beside the connection file (`-f FILE`), in the scratch folder."""
    import os
    import sys

    log = None
    if "-f" in sys.argv[:-1]:
        log = os.path.join(os.path.dirname(os.path.abspath(sys.argv[sys.argv.index("-f") + 1])), LOG_NAME)
    try:
        install(patterns, log)
    except Exception as error:  # no tripwires: the grader sees no record and says so; the kernel still starts
        print(f"autograder: tripwires not armed ({type(error).__name__}: {error})", file=sys.stderr)


# --- the grader's side -----------------------------------------------------------------------------------------------
def preamble(patterns) -> str:
    """Python source for `SandboxedExecute.kernel_preamble`: arm the tripwires, stdlib only, before ipykernel."""
    from pathlib import Path

    source = Path(__file__).read_text()
    program = source + f"\ninstall_from_argv({list(patterns)!r})\n"
    return f"exec(compile({program!r}, '<autograder tripwires>', 'exec'), {{'__name__': '_autograder_preamble'}})"


def log_path(connection_file) -> str:
    import os

    return os.path.join(os.path.dirname(os.path.abspath(connection_file)), LOG_NAME)


def digest(answer) -> str:
    """Of the answer's value: the only part of an answer the grader uses (its other fields may say what they like)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(answer.get("value"), sort_keys=True).encode("utf-8")).hexdigest()


def read(lines, nonce, answer):
    """(hits, tampering) for one request, from the record's lines: hits is a list of name lists; tampering is None,
    or what showed the record can't be trusted for this call."""
    hits, problems, began, ended = [], [], False, None
    for line in lines:
        kind, _, rest = line.partition(" ")
        tag, _, payload = rest.partition(" ")
        if tag != nonce:
            continue
        if kind == "B":
            began = True
        elif kind == "H":
            hits.append(payload.split())
        elif kind == "T":
            problems.append(payload)
        elif kind == "E":
            ended = payload.strip()
    if not began or ended is None:
        problems.append("the call left no record (the hit log was closed, removed or cut)")
    elif ended != digest(answer):
        problems.append("the answer the grader received is not the one the call produced")
    return hits, ("; ".join(problems) if problems else None)
