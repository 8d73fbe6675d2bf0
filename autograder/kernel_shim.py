"""The grader's hand inside the learner's kernel.

This file is never imported by the kernel. Its *source text* is sent with every request (see `autograder.env`), so
nothing the learner defined earlier can stand in for it. It calls one learner function (or runs one snippet) on the
inputs the grader chose, between the start and end marks of the kernel's tripwires (`autograder.tripwires`, which
record what the call reaches), and sends back plain data: numbers, strings and arrays encoded with
`numpy.save(allow_pickle=False)`. It never decides a score; the grader does that outside.

It uses only the standard library, numpy and (if the learner imported it) torch.
"""
import base64
import io
import json
import random
import sys

MIME = "application/vnd.autograder.result+json"
MAX_REPR = 300


def _np():
    return sys.modules.get("numpy") or __import__("numpy")


def encode(value, depth=0):
    np = _np()
    torch = sys.modules.get("torch")
    if depth > 8:
        return {"__opaque__": "nested too deeply"}
    if value is None or type(value) in (bool, int, float, str):
        if type(value) is float and value != value:
            return {"__float__": "nan"}
        if type(value) is float and value in (float("inf"), float("-inf")):
            return {"__float__": repr(value)}
        return value
    if isinstance(value, np.generic):
        return {"__ndarray__": _npy(np.asarray(value)), "scalar": True}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return {"__opaque__": "numpy array of Python objects"}
        return {"__ndarray__": _npy(value)}
    if torch is not None and isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        dtype = str(t.dtype).replace("torch.", "")
        if t.dtype == torch.bfloat16:
            t = t.float()
        return {"__tensor__": _npy(t.numpy()), "dtype": dtype, "requires_grad": bool(value.requires_grad)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, depth + 1) for v in value]}
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in value]
    if isinstance(value, dict) and all(type(k) is str for k in value):
        return {"__dict__": {k: encode(v, depth + 1) for k, v in value.items()}}
    return {"__opaque__": type(value).__qualname__}


def _npy(array):
    buffer = io.BytesIO()
    _np().save(buffer, array, allow_pickle=False)  # keeps 0-d arrays 0-d (ascontiguousarray would not)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode(obj):
    """Inputs from the grader: the same encoding, arrays come back as numpy (or torch when tagged)."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__ndarray__" in obj:
        array = _np().load(io.BytesIO(base64.b64decode(obj["__ndarray__"])), allow_pickle=False)
        return array[()] if obj.get("scalar") else array
    if "__tensor__" in obj:
        import torch

        array = _np().load(io.BytesIO(base64.b64decode(obj["__tensor__"])), allow_pickle=False)
        tensor = torch.from_numpy(array.copy()).to(getattr(torch, obj["dtype"]))
        return tensor.requires_grad_(obj.get("requires_grad", False))
    if "__tuple__" in obj:
        return tuple(decode(v) for v in obj["__tuple__"])
    if "__dict__" in obj:
        return {k: decode(v) for k, v in obj["__dict__"].items()}
    return obj


def _seed():
    random.seed(0)
    _np().random.seed(0)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(0)


def _in_a_cell(filename):
    return "ipykernel" in filename or filename.startswith("<ipython-input") or filename.startswith("<cell")


def _describe(error):
    text = f"{type(error).__name__}: {error}"
    if len(text) > MAX_REPR:
        text = text[: MAX_REPR - 3] + "..."
    tb = error.__traceback__
    line = None
    while tb is not None:
        if _in_a_cell(tb.tb_frame.f_code.co_filename):
            line = tb.tb_lineno
        tb = tb.tb_next
    return text + (f" (line {line} of your cell)" if line else "")


def _cell_frames(error, limit=8):
    """The notebook frames of a learner's exception, outermost first: function, failing line, shapes of the locals
    (what the grader's hint rules read). Learner-controlled: it shapes a message, never a score."""
    import linecache
    frames, tb = [], error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if _in_a_cell(code.co_filename):
            shapes = {}
            try:
                for name, value in list(tb.tb_frame.f_locals.items())[:50]:
                    shape = getattr(value, "shape", None) if not isinstance(value, type) else None
                    if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
                        shapes[str(name)[:50]] = [int(n) for n in shape][:8]
            except Exception:  # a hostile local (a property that raises): the shapes are optional
                pass
            frames.append({"function": None if code.co_name == "<module>" else code.co_name,
                           "code": linecache.getline(code.co_filename, tb.tb_lineno).strip()[:200],
                           "shapes": shapes})
        tb = tb.tb_next
    return frames[-limit:]


def invoke(request, namespace, start=None):
    """Carry out one request from the grader against the learner's namespace; return a JSON-able dict.

    What the call reaches is recorded by the tripwires (see `autograder.tripwires`), not here: `start()` opens their
    record right before the learner's code runs (after the seeding, which calls torch itself)."""
    saved, scopes = {}, []
    result = {}
    try:
        for name, source in request.get("substitute", {}).items():
            scope = {"__name__": "reference"}
            exec(compile(source, f"<reference {name}>", "exec"), scope)
            scopes.append(scope)
            saved[name] = namespace.get(name, _MISSING)
            namespace[name] = scope[name]
        _seed()
        if request["kind"] == "call":
            target = namespace.get(request["name"], _MISSING)
            if target is _MISSING:
                return {"status": "missing", "name": request["name"]}
            args = decode(request.get("args", []))
            kwargs = decode(request.get("kwargs", {}))
            if start is not None:
                start()
            value = target(*args, **kwargs)
            result = {"status": "ok", "value": encode(value)}
        else:
            scope = dict(namespace)
            scope.update(decode(request.get("inputs", {})))
            code = compile(request["code"], "<grader snippet>", "exec")
            if start is not None:
                start()
            exec(code, scope)
            missing = [n for n in request.get("outputs", []) if n not in scope]
            if missing:
                return {"status": "missing", "name": missing[0]}
            result = {"status": "ok", "value": {"__dict__": {n: encode(scope[n]) for n in request["outputs"]}}}
    except KeyboardInterrupt:
        result = {"status": "interrupted"}
    except SystemExit as error:
        result = {"status": "error", "error": f"SystemExit({error.code!r}): the code called exit()"}
    except BaseException as error:  # the learner's exception, whatever it is, is a result to report
        result = {"status": "error", "error": _describe(error), "ename": type(error).__name__,
                  "evalue": str(error)[:MAX_REPR]}
        try:
            result["frames"] = _cell_frames(error)
        except Exception:
            pass
    finally:
        for name, old in saved.items():
            if old is _MISSING:
                namespace.pop(name, None)
            else:
                namespace[name] = old
        for scope in scopes:
            _disarm(scope)
    return result


def _disarm(scope):
    """A reference lent for one call is dead after it: every function and method its source defined now raises,
    so a learner's code that kept it (in a global, a closure, an instance) gets nothing from it later."""
    for value in list(scope.values()):
        if isinstance(value, type) and value.__module__ == "reference":
            for attr, member in list(vars(value).items()):
                function = getattr(member, "__func__", member)
                if isinstance(function, _FunctionType):
                    _kill(function)
            if "__init__" not in vars(value):
                try:
                    value.__init__ = _dead_function(())
                except (AttributeError, TypeError):
                    pass
        elif isinstance(value, _FunctionType) and value.__module__ == "reference":
            _kill(value)


def _kill(function):
    try:
        function.__code__ = _dead_function(function.__code__.co_freevars).__code__
    except (ValueError, TypeError):
        pass


def _dead_function(freevars):
    """A function that raises, with the same free variables (a method using super() has `__class__`)."""
    lines = ["def outer():"] + [f"    {name} = None" for name in freevars] + [
        "    def dead(*args, **kwargs):",
        *([f"        {', '.join(freevars)}"] if freevars else []),
        "        raise RuntimeError(\"the grader's reference is lent for one call only; write your own\")",
        "    return dead",
    ]
    scope = {}
    exec("\n".join(lines), scope)
    return scope["outer"]()


_FunctionType = type(_describe)
_MISSING = object()


def main(request_json, nonce, namespace):
    """Entry point in the kernel: run the request between the tripwires' start and end marks, then publish the
    answer as one display message with our MIME type (the grader checks it against the end mark's digest)."""
    tripwires = sys.modules.get("_autograder_tripwires")
    start = (lambda: tripwires.open(nonce)) if tripwires is not None else None
    answer = invoke(json.loads(request_json), namespace, start)
    if tripwires is not None:
        tripwires.close(nonce, json.dumps(answer.get("value"), sort_keys=True))
    from IPython.display import publish_display_data

    publish_display_data({MIME: {"nonce": nonce, "answer": answer}})


def run_local(request, namespace, nonce="local", tripwires=None):
    """Entry point for the same request in this very process (plain `nbgrader autograde`, the solution's own run)."""
    start = (lambda: tripwires.open(nonce)) if tripwires is not None else None
    answer = json.loads(json.dumps(invoke(json.loads(json.dumps(request)), namespace, start)))
    if tripwires is not None:
        tripwires.close(nonce, json.dumps(answer.get("value"), sort_keys=True))
    return answer
