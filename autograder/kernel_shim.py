"""The grader's hand inside the learner's kernel.

This file is never imported by the kernel. Its *source text* is sent with every request (see `autograder.env`), so
nothing the learner defined earlier can stand in for it. It calls one learner function (or runs one snippet) on the
inputs the grader chose, watches which functions that call reaches, and sends back plain data: numbers, strings and
arrays encoded with `numpy.save(allow_pickle=False)`. It never decides a score; the grader does that outside.

It uses only the standard library, numpy and (if the learner imported it) torch.
"""
import base64
import builtins
import fnmatch
import io
import json
import random
import re
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


class Watcher:
    """A profile hook that records calls to forbidden functions (fnmatch patterns on 'module.qualname')."""

    def __init__(self, patterns):
        self.regex = re.compile("|".join(fnmatch.translate(p) for p in patterns)) if patterns else None
        self.hits = []
        self.cache = {}

    def name_of(self, event, frame, arg):
        if event == "call":
            code = frame.f_code  # code objects live as long as their functions: a safe cache key
            if code not in self.cache:
                module = frame.f_globals.get("__name__") or "?"
                self.cache[code] = f"{module}.{code.co_qualname}"
            return self.cache[code]
        # A C function: bound methods are short-lived (their ids get reused), so key on what owns the method.
        owner = getattr(arg, "__self__", None)
        qualname = getattr(arg, "__qualname__", None) or getattr(arg, "__name__", "?")
        module = getattr(arg, "__module__", None)
        if not module and owner is not None:
            module = owner.__name__ if isinstance(owner, type(sys)) else type(owner).__module__
        return f"{module}.{qualname}"

    def __call__(self, frame, event, arg):
        if self.regex is None or event not in ("call", "c_call"):
            return
        name = self.name_of(event, frame, arg)
        if self.regex.match(name) and name not in self.hits:
            self.hits.append(name)


def _seed():
    random.seed(0)
    _np().random.seed(0)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(0)


def _describe(error):
    text = f"{type(error).__name__}: {error}"
    if len(text) > MAX_REPR:
        text = text[: MAX_REPR - 3] + "..."
    tb = error.__traceback__
    line = None
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if "ipykernel" in name or name.startswith("<ipython-input") or name.startswith("<cell"):
            line = tb.tb_lineno
        tb = tb.tb_next
    return text + (f" (line {line} of your cell)" if line else "")


def invoke(request, namespace):
    """Carry out one request from the grader against the learner's namespace; return a JSON-able dict."""
    forbid = list(request.get("forbid", [])) + ["autograder.*", "autograder"]
    saved = {}
    for name, source in request.get("substitute", {}).items():
        scope = {"__name__": "reference"}
        exec(compile(source, f"<reference {name}>", "exec"), scope)
        saved[name] = namespace.get(name, _MISSING)
        namespace[name] = scope[name]
    watcher = Watcher(forbid)
    previous = sys.getprofile()
    result = {}
    try:
        _seed()
        if request["kind"] == "call":
            target = namespace.get(request["name"], _MISSING)
            if target is _MISSING:
                return {"status": "missing", "name": request["name"]}
            args = decode(request.get("args", []))
            kwargs = decode(request.get("kwargs", {}))
            sys.setprofile(watcher)
            try:
                value = target(*args, **kwargs)
            finally:
                tampered = sys.getprofile() is not watcher
                sys.setprofile(previous)
            result = {"status": "ok", "value": encode(value)}
        else:
            scope = dict(namespace)
            scope.update(decode(request.get("inputs", {})))
            code = compile(request["code"], "<grader snippet>", "exec")
            sys.setprofile(watcher)
            try:
                exec(code, scope)
            finally:
                tampered = sys.getprofile() is not watcher
                sys.setprofile(previous)
            missing = [n for n in request.get("outputs", []) if n not in scope]
            if missing:
                return {"status": "missing", "name": missing[0]}
            result = {"status": "ok", "value": {"__dict__": {n: encode(scope[n]) for n in request["outputs"]}}}
        result["tampered"] = tampered
    except KeyboardInterrupt:
        result = {"status": "interrupted"}
    except SystemExit as error:
        result = {"status": "error", "error": f"SystemExit({error.code!r}): the code called exit()"}
    except BaseException as error:  # the learner's exception, whatever it is, is a result to report
        result = {"status": "error", "error": _describe(error)}
    finally:
        for name, old in saved.items():
            if old is _MISSING:
                namespace.pop(name, None)
            else:
                namespace[name] = old
    result["forbidden"] = [h for h in watcher.hits if not h.startswith("reference.")]
    return result


_MISSING = object()


def main(request_json, nonce, namespace):
    """Entry point in the kernel: run the request, publish the answer as one display message with our MIME type."""
    answer = invoke(json.loads(request_json), namespace)
    from IPython.display import publish_display_data

    publish_display_data({MIME: {"nonce": nonce, "answer": answer}})


def run_local(request, namespace):
    """Entry point for the same request in this very process (plain `nbgrader autograde`, the solution's own run)."""
    answer = invoke(json.loads(json.dumps(request)), namespace)
    return json.loads(json.dumps(answer))
