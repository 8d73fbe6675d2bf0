"""One line for a visible test that raised: the exercise, where it failed, the shapes involved, and a hint only where
the cause can be told from the error, the failing line and the shapes (the common bugs below); otherwise the failed
property, plainly.

The grader reads the traceback text IPython sent (`frames`) and, where the kernel answered, the array shapes of each
learner frame's locals (`Frame.shapes`). Both come from the learner's kernel: they shape a message, never a score.

The rules, each told apart by something the error leaves behind:
- `K.T` on a batched array: a matmul/broadcast shape error on a line with `name.T`, `name` having 3 or more axes;
- a missing `keepdims`: a broadcast error between a shape and the same shape less one axis, on a line that reduces;
- `scores[~mask]`: a boolean index whose mask does not match the array's leading axes (it also flattens);
- a (batch, n_q, n_k) mask against per-head scores: it broadcasts once a heads axis is added, not before;
- `np.diag(v)` on a batch of vectors: a shape error on a line with np.diag and an array of 3 or more axes;
- a weight used untransposed (`h @ W_U` with W_U of shape (V, d)): a matmul shape error where the left operand's last
  axis matches the weight's last axis, not its first;
- operands of different dtypes: torch's "expected scalar type Double but found Float" and its kin;
- a result cut off from autograd: backward() on a tensor without a grad_fn;
- `for x_t in X` over a batch: a shape error in an exercise that loops over an argument with 3 or more axes;
- a batch passed where one sequence was expected: a function whose docstring gives an argument fewer axes than it got.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
FRAME_HEAD = re.compile(r"^Cell In\[(\d+)\], line (\d+)(?:, in (\w+))?")
ARROW = re.compile(r"^-+>\s*\d+\s?(.*)$")

SHAPE_ERRORS = (
    "could not be broadcast", "mismatch in its core dimension", "cannot be multiplied", "must match the size of tensor",
    "Expected size for first two dimensions", "shapes cannot be", "size mismatch", "Dimension out of range",
    "cannot reshape", "shape '[", "not aligned", "dimension mismatch",
)
REDUCTIONS = re.compile(r"\b(sum|max|mean|amax|logsumexp|min|std|var|norm)\(")


@dataclass
class Frame:
    cell: int | None  # the execution count of the cell that holds the code (IPython's `Cell In[n]`)
    function: str | None  # None at a cell's top level
    line: int
    code: str = ""  # the failing line, as IPython showed it
    shapes: dict[str, tuple] = field(default_factory=dict)  # locals with a shape, when the kernel told them
    exercise: str | None = None  # the solution cell the code is in (set by the grader)


def frames_from_traceback(traceback: list[str]) -> list[Frame]:
    """The notebook frames of an IPython traceback, outermost first (frames in library files are left out)."""
    frames = []
    for entry in traceback:
        lines = ANSI.sub("", str(entry)).splitlines()
        head = FRAME_HEAD.match(lines[0].strip()) if lines else None
        if not head:
            continue
        code = next((m.group(1).strip() for m in map(ARROW.match, (line.strip() for line in lines[1:])) if m), "")
        frames.append(Frame(int(head.group(1)), head.group(3), int(head.group(2)), code))
    return frames


def is_shape_error(ename: str, evalue: str) -> bool:
    return ename in ("ValueError", "RuntimeError", "IndexError") and any(s in evalue for s in SHAPE_ERRORS)


def _shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _numpy_shapes(evalue: str) -> list[tuple[int, ...]]:
    found = re.search(r"broadcast together with shapes ((?:\([\d, ]*\)\s*)+)", evalue)
    if not found:
        return []
    return [tuple(int(n) for n in re.findall(r"\d+", part)) for part in re.findall(r"\([\d, ]*\)", found.group(1))]


def _one_axis_less(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) + 1 and any(a[:i] + a[i + 1:] == b for i in range(len(a)))


def _names(code: str) -> list[str]:
    return re.findall(r"[A-Za-z_]\w*", code)


def documented_shapes(source: str, function: str) -> dict[str, str]:
    """`name: (n, d)` lines of a function's docstring in a cell's source: argument -> documented shape."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            doc = ast.get_docstring(node) or ""
            return {m.group(1): m.group(2) for m in re.finditer(r"^\s*(\w+):\s*(\([^)]*\))(.*)$", doc, re.M)
                    if " or " not in m.group(3)[:5]}
    return {}


# --- the rules: each returns a hint, or None when the cause can't be told ---------------------------------------
def transpose_of_batch(ename, evalue, frame: Frame, **_) -> str | None:
    if not is_shape_error(ename, evalue):
        return None
    for name in re.findall(r"\b(\w+)(?:\[[^\]]*\])?\.T\b", frame.code):  # K.T, or a slice of K: K[..., a:b, :].T
        shape = frame.shapes.get(name)
        if shape is not None and len(shape) >= 3:
            return (f"{name}.T reverses every axis of {name} {_shape(shape)}, batch axes too; only the last two "
                    f"should trade places (NumPy and torch each have a function that swaps two chosen axes).")
    return None


def missing_keepdims(ename, evalue, frame: Frame, **_) -> str | None:
    if not is_shape_error(ename, evalue) or not REDUCTIONS.search(frame.code) or "keepdim" in frame.code:
        return None
    shapes = _numpy_shapes(evalue)
    if len(shapes) == 2:
        a, b = shapes
        if not (_one_axis_less(a, b) or _one_axis_less(b, a)):
            return None
        pair = f"{_shape(a)} and {_shape(b)}"
    elif "must match the size of tensor" in evalue:
        pair = "the result and the tensor it divides or subtracts from"
    else:
        return None
    return (f"a reduction along an axis drops that axis, so {pair} don't line up: pass keepdims=True "
            "(keepdim=True in torch).")


def boolean_index(ename, evalue, frame: Frame, source: str = "", **_) -> str | None:
    told = ename == "IndexError" and ("boolean index did not match" in evalue or "shape of the mask" in evalue)
    indexed = re.search(r"\[\s*~?\s*\w*mask\w*\s*\]", frame.code + "\n" + source)
    if not (told or (indexed and is_shape_error(ename, evalue))):
        return None
    return ("indexing with a boolean mask lines it up with the array's first axes and returns the picked values "
            "flattened to 1-D; the scores must keep their shape, with -inf where the mask is False: an element-wise "
            "choice between two values, which broadcasts the mask over the batch axes.")


def loop_over_batch(ename, evalue, frame: Frame, frames=(), source: str = "", exercise: str = "", **_) -> str | None:
    if not is_shape_error(ename, evalue):
        return None
    own = [f for f in frames if f.function and f.exercise == exercise and f.shapes]
    for f in own:
        for var, seq in re.findall(r"\bfor\s+(\w+)\s+in\s+(\w+)\s*:", source):
            shape = f.shapes.get(seq)
            if shape is not None and len(shape) >= 3:
                return (f"`for {var} in {seq}` walks the first axis of {seq} {_shape(shape)}, which for a batch is "
                        f"the batch, not the positions: loop over t and take {seq}[..., t, :].")
    return None


def batch_for_one_sequence(ename, evalue, frame: Frame, frames=(), sources=None, **_) -> str | None:
    if not is_shape_error(ename, evalue):
        return None
    for f in reversed(frames):
        if not f.function or not f.exercise or not sources or f.exercise not in sources:
            continue
        for arg, documented in documented_shapes(sources[f.exercise], f.function).items():
            shape = f.shapes.get(arg)
            if "..." in documented or shape is None:
                continue
            if len(shape) > documented.count(",") + 1:
                return (f"{f.function} takes {arg} of shape {documented}, one sequence, but got {_shape(shape)}: "
                        "a batch. Call it once per sequence, or pass it one.")
    return None


def _broadcasts(a: tuple, b: tuple) -> bool:
    return all(x == y or 1 in (x, y) for x, y in zip(reversed(a), reversed(b)))


def mask_missing_axis(ename, evalue, frame: Frame, **_) -> str | None:
    """A (batch, n_q, n_k) mask against (batch, heads, n_q, n_k) scores: broadcasting lines up the last axes, so
    the mask's batch axis meets the heads axis."""
    if not is_shape_error(ename, evalue):
        return None
    names = _names(frame.code)
    for m in (n for n in names if "mask" in n.lower() and n in frame.shapes):
        mask = frame.shapes[m]
        for n in names:
            target = frame.shapes.get(n)
            if n == m or target is None or not 3 <= len(mask) < len(target) or _broadcasts(mask, target):
                continue
            if _broadcasts(mask[:-2] + (1,) + mask[-2:], target):
                return (f"{m} {_shape(mask)} lines up with the last axes of {n} {_shape(target)}, so its batch "
                        f"axis meets the heads axis: add a heads axis ({m}.unsqueeze(-3), or {m}[..., None, :, :] "
                        "in NumPy).")
    return None


def diag_of_batch(ename, evalue, frame: Frame, **_) -> str | None:
    """np.diag of a 2-d array returns its diagonal, not a matrix: on a batch the shapes stop lining up."""
    if not is_shape_error(ename, evalue) or "diag(" not in frame.code:
        return None
    batched = [n for n in dict.fromkeys(_names(frame.code)) if len(frame.shapes.get(n, ())) >= 3]
    if not batched:
        return None
    name = batched[0]
    return (f"np.diag makes a diagonal matrix only from a 1-D vector; with {name} {_shape(frame.shapes[name])} its "
            "argument has a batch axis, and np.diag of a 2-D array returns that array's diagonal instead. Scale the "
            "rows by broadcasting: v[..., :, None] * M.")


def untransposed_weight(ename, evalue, frame: Frame, **_) -> str | None:
    """`x @ W` with W stored (out, in), as nn.Linear and W_U store it: x's last axis meets W's last axis."""
    if not is_shape_error(ename, evalue):
        return None
    for name in re.findall(r"@\s*(?:[\w.]+\()?(\w+)\b(?!\.T)", frame.code):
        weight = frame.shapes.get(name)
        if weight is None or len(weight) != 2 or weight[0] == weight[1]:
            continue
        for other in dict.fromkeys(_names(frame.code.split("@")[0])):
            shape = frame.shapes.get(other)
            if other != name and shape and shape[-1] == weight[1] != weight[0]:
                return (f"{other} {_shape(shape)} has its last axis of size {shape[-1]} where {name} {_shape(weight)} "
                        f"has it last, not first: {name} is stored (out, in), so the product with {name} needs its "
                        "transpose.")
    return None


DTYPE_ERRORS = re.compile(r"expected scalar type \w+ but found \w+|expected (?:both|mat1 and mat2 to have the same|m1 and m2 to "
                          r"have the same) dtype|must have the same dtype|dtype mismatch", re.I)


def dtype_mismatch(ename, evalue, frame: Frame, **_) -> str | None:
    if ename != "RuntimeError" or not DTYPE_ERRORS.search(evalue):
        return None
    return ("two operands have different dtypes: a tensor built inside the function (a table, a mask, a constant) "
            "should take the input's dtype (and device), float32 and float64 alike.")


def detached(ename, evalue, frame: Frame, **_) -> str | None:
    if ename != "RuntimeError" or "does not require grad and does not have a grad_fn" not in evalue:
        return None
    return ("the result is not connected to its inputs in autograd: something on the way detached it (.detach(), "
            ".item(), .numpy(), torch.tensor(...) of computed values, or torch.no_grad()).")


RULES = [transpose_of_batch, missing_keepdims, boolean_index, mask_missing_axis, diag_of_batch, untransposed_weight,
         dtype_mismatch, detached, loop_over_batch, batch_for_one_sequence]


def hint_for(ename: str, evalue: str, frames: list[Frame], *, exercise: str = "",
             sources: dict[str, str] | None = None) -> str | None:
    """The first rule that can tell the cause, or None."""
    if not frames:
        return None
    sources = sources or {}
    inner = frames[-1]
    for rule in RULES:
        hint = rule(ename, evalue, inner, frames=frames, source=sources.get(exercise, ""), exercise=exercise,
                    sources=sources)
        if hint:
            return hint
    return None


def describe(exercise: str, ename: str, evalue: str, frames: list[Frame], *,
             sources: dict[str, str] | None = None) -> str:
    """The learner's line for a visible test that raised `ename: evalue`."""
    evalue = " ".join(str(evalue).split())
    evalue = evalue if len(evalue) <= 220 else evalue[:217] + "..."
    learner = [f for f in frames if f.function]
    where = ""
    if learner:
        inner = learner[-1]
        code = inner.code if len(inner.code) <= 100 else inner.code[:97] + "..."
        where = f" in {inner.function}" + (f", at `{code}`" if code else "")
        names = _names(inner.code)
        # in the order the failing line names them
        shown = {n: inner.shapes[n] for n in dict.fromkeys(names) if n in inner.shapes} or inner.shapes
        if shown:
            where += " with " + ", ".join(f"{n} {_shape(s)}" for n, s in list(shown.items())[:4])
    elif frames and frames[-1].code:
        where = f" at `{frames[-1].code}`"
    line = f"{exercise}: the visible test raised {ename}{where}: {evalue}"
    hint = hint_for(ename, evalue, frames, exercise=exercise, sources=sources)
    return line + (f". {hint}" if hint else "")
