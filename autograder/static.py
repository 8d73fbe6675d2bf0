"""Read the learner's whole notebook without running it: which forbidden library functions can an exercise reach?

This scan runs in the grader on the submission's text, so nothing in the kernel can switch it off. It works on the
whole notebook because cells share one namespace: `import torch.nn.functional as F` in one cell and
`F.scaled_dot_product_attention(...)` in another are one shortcut, and so is `G = F.layer_norm` in a free cell with
`G(x)` in the exercise. Every name is resolved to a full dotted path before it is compared with the patterns:

- imports and aliases (`import a.b as c`, `from a.b import c as d`, `from a.b import *`, `x = F.layer_norm`);
- `getattr(m, "soft" + "max")`, `vars(m)[...]`, `m.__dict__[...]`, `__import__`, `importlib.import_module`,
  `sys.modules[...]`, `eval`/`exec` of a string, with strings folded where they are constants;
- the path as written (`torch.nn.MultiheadAttention`) and the object's own name as the grader's loaded modules
  know it (`torch.nn.modules.activation.MultiheadAttention`), so a pattern may use either.

What counts against an exercise (the rule a learner can be told): a forbidden use **its code reaches**: anything in
the exercise's own cell, and anything in a definition (a function, a class, a name bound to a value) in a cell the
learner added, that the exercise's code refers to, directly or through other such definitions. Another exercise's
cell is charged to that exercise, not followed. Cells the course provides (locked cells, test cells, and cells whose
text is the released notebook's) never count: they come from the source notebook. A bare name the learner defined
(their own `softmax`) is theirs and never counts, nor is `self.softmax`; a method called on a value of unknown type
(`scores.softmax(-1)`) counts when it is a tensor method that a pattern names specifically (`torch*softmax`), not
merely because a pattern covers the whole package (`torch*`). A top-level statement in a free cell that no exercise
refers to (a learner's experiment) costs nothing here; the tripwires in the kernel catch whatever a call reaches.
"""
from __future__ import annotations

import ast
import builtins
import fnmatch
import re
import sys
from dataclasses import dataclass, field

LEARNER = "<learner>"  # the value of a name the learner defined (a def, a class, an assignment we can't resolve)
BUILTIN_NAMES = set(dir(builtins))


def compile_patterns(patterns) -> re.Pattern | None:
    patterns = list(patterns)
    return re.compile("|".join(fnmatch.translate(p) for p in patterns)) if patterns else None


def _ipython_to_python(source: str) -> str:
    """Cells may hold magics (`%time`, `!ls`); IPython turns them into Python the AST can read."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:
        return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def parse(source: str) -> ast.Module | None:
    for text in (source, _ipython_to_python(source)):
        try:
            return ast.parse(text)
        except (SyntaxError, ValueError):
            continue
    return None


@dataclass
class Cell:
    kind: str  # "exercise" (a solution cell), "free" (added or edited by the learner), "provided"
    source: str
    grade_id: str | None = None
    tree: ast.Module | None = None


@dataclass
class Use:
    path: str  # as resolved from the text: "torch.nn.functional.scaled_dot_product_attention"
    cell: int
    line: int


@dataclass
class Notebook:
    """The learner's notebook as the scan sees it: cells, the names each binds, and where each name is defined."""

    cells: list[Cell]
    aliases: dict[str, set[str]] = field(default_factory=dict)  # name -> dotted paths (or LEARNER)
    strings: dict[str, set[str]] = field(default_factory=dict)  # name -> constant strings bound to it
    stars: list[str] = field(default_factory=list)  # modules star-imported anywhere
    defs: dict[str, list[tuple[int, ast.AST]]] = field(default_factory=dict)  # name -> (cell, node) it's bound by
    methods: set[str] = field(default_factory=set)  # attribute names the learner defines (methods, self.x = ...)

    @classmethod
    def from_cells(cls, cells: list[Cell]) -> "Notebook":
        nb = cls(cells)
        for cell in cells:
            cell.tree = parse(cell.source)
        nb._bind()
        return nb

    # --- what each name means ---------------------------------------------------------------------------------
    def _bind(self):
        pending = []  # (name, value expr) to resolve once every import is known
        for index, cell in enumerate(self.cells):
            if cell.tree is None:
                continue
            learner = cell.kind != "provided"
            top = _top_level(cell.tree)
            for node in ast.walk(cell.tree):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.asname:
                            self._alias(alias.asname, alias.name)
                            self._define(alias.asname, index, node, learner)
                        else:
                            root = alias.name.split(".")[0]
                            self._alias(root, root)
                            self._define(root, index, node, learner)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    for alias in node.names:
                        if alias.name == "*":
                            self.stars.append(node.module)
                        else:
                            name = alias.asname or alias.name
                            self._alias(name, f"{node.module}.{alias.name}")
                            self._define(name, index, node, learner)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    self._alias(node.name, LEARNER)
                    if id(node) in top:
                        self._define(node.name, index, node, learner)
                    elif learner:
                        self.methods.add(node.name)
                elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    value = node.value
                    for target in targets:
                        for name, part in _bound_names(target, value):
                            pending.append((name, part))
                            if id(node) in top or isinstance(node, ast.NamedExpr):
                                self._define(name, index, node, learner)
                        key = self.constant(target.slice) if isinstance(target, ast.Subscript) else None
                        if isinstance(key, str) and _is_globals(target.value):  # globals()["softmax"] = ...
                            pending.append((key, value))
                            self._define(key, index, node, learner)
                        if learner:
                            for attr in _self_attributes(target):
                                self.methods.add(attr)
                elif isinstance(node, (ast.For, ast.comprehension, ast.With, ast.arguments, ast.Lambda)):
                    for name in _loop_names(node):
                        self._alias(name, LEARNER)
        # an alias of an alias: iterate until nothing changes (a few rounds at most in real notebooks)
        for _ in range(5):
            changed = False
            for name, value in pending:
                if value is None:
                    continue
                folded = self.constant(value)
                if isinstance(folded, str) and folded not in self.strings.get(name, set()):
                    self.strings.setdefault(name, set()).add(folded)
                    changed = True
                for path in self.resolve(value) or {LEARNER}:
                    if path not in self.aliases.get(name, set()):
                        self._alias(name, path)
                        changed = True
            if not changed:
                break

    def _alias(self, name, path):
        self.aliases.setdefault(name, set()).add(path)

    def _define(self, name, index, node, learner):
        if learner:
            self.defs.setdefault(name, []).append((index, node))

    # --- resolving expressions -------------------------------------------------------------------------------
    def constant(self, node):
        """The value of a string expression built from constants (and names bound to constant strings), or None."""
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and len(self.strings.get(node.id, ())) == 1:
            return next(iter(self.strings[node.id]))
        if isinstance(node, ast.BinOp):
            left, right = self.constant(node.left), self.constant(node.right)
            if isinstance(node.op, ast.Add) and isinstance(left, str) and isinstance(right, str):
                return left + right
            if isinstance(node.op, ast.Mult) and {type(left), type(right)} == {str, int}:
                return left * right if isinstance(right, int) and right < 1000 else (
                    right * left if isinstance(left, int) and left < 1000 else None)
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                if isinstance(value, ast.FormattedValue):
                    value = value.value
                part = self.constant(value)
                if not isinstance(part, str):
                    return None
                parts.append(part)
            return "".join(parts)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not node.keywords:
            base = self.constant(node.func.value)
            if isinstance(base, str) and node.func.attr == "join" and len(node.args) == 1:
                items = node.args[0]
                if isinstance(items, (ast.List, ast.Tuple)):
                    parts = [self.constant(e) for e in items.elts]
                    if all(isinstance(p, str) for p in parts):
                        return base.join(parts)
            if isinstance(base, str) and node.func.attr in ("lower", "upper", "strip") and not node.args:
                return getattr(base, node.func.attr)()
        return None

    def resolve(self, node) -> set[str]:
        """The dotted paths an expression may denote (empty when it is the learner's value or unknown)."""
        if isinstance(node, ast.Name):
            paths = self.aliases.get(node.id)
            if paths:
                return {p for p in paths if p != LEARNER}
            if node.id in BUILTIN_NAMES:
                return set()
            return {f"{module}.{node.id}" for module in self.stars}
        if isinstance(node, ast.Attribute):
            return {f"{base}.{node.attr}" for base in self.resolve(node.value)}
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else None
            dotted = self.resolve(func)
            if (name == "getattr" and name not in self.aliases) and len(node.args) >= 2:
                attr = self.constant(node.args[1])
                if isinstance(attr, str):
                    return {f"{base}.{attr}" for base in self.resolve(node.args[0])}
            if (name == "__import__" and name not in self.aliases) or dotted & {"builtins.__import__"}:
                module = self.constant(node.args[0]) if node.args else None
                if isinstance(module, str):
                    fromlist = len(node.args) >= 4 or any(k.arg == "fromlist" for k in node.keywords)
                    return {module if fromlist else module.split(".")[0]}
            if dotted & {"importlib.import_module", "importlib.__import__"} and node.args:
                module = self.constant(node.args[0])
                if isinstance(module, str):
                    return {module}
            if name in ("eval",) and name not in self.aliases and node.args:
                text = self.constant(node.args[0])
                if isinstance(text, str):
                    try:
                        return self.resolve(ast.parse(text, mode="eval").body)
                    except SyntaxError:
                        return set()
            if name == "vars" and name not in self.aliases and len(node.args) == 1:
                return {f"{base}.__dict__" for base in self.resolve(node.args[0])}
            if dotted & {"operator.attrgetter"} and node.args:
                return set()  # attrgetter(...) is a function; its call is resolved below
            if isinstance(func, ast.Call):
                inner = func.func
                if self.resolve(inner) & {"operator.attrgetter"} and func.args and node.args:
                    attr = self.constant(func.args[0])
                    if isinstance(attr, str):
                        return {f"{base}.{attr}" for base in self.resolve(node.args[0])}
            return set()
        if isinstance(node, ast.Subscript):
            key = self.constant(node.slice)
            if isinstance(key, str):
                bases = self.resolve(node.value)
                if bases & {"sys.modules"}:
                    return {key}
                return {f"{base[: -len('.__dict__')]}.{key}" for base in bases if base.endswith(".__dict__")}
        return set()

    # --- uses --------------------------------------------------------------------------------------------------
    def uses_in(self, index: int, node: ast.AST) -> tuple[list[Use], list[tuple[str, int, int]], set[str]]:
        """(resolved uses, attribute uses on values of unknown type (attr, cell, line), names referred to)."""
        uses, unknown, names = [], [], set()

        def visit(n, inside_resolved=False):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                names.add(n.id)
                if not inside_resolved:
                    for path in self.resolve(n):
                        uses.append(Use(path, index, n.lineno))
                return
            if isinstance(n, (ast.Attribute, ast.Subscript, ast.Call)):
                paths = self.resolve(n)
                if paths and not inside_resolved:
                    uses.extend(Use(p, index, n.lineno) for p in paths)
                if isinstance(n, ast.Attribute) and not paths and not (
                        isinstance(n.value, ast.Name) and n.value.id in ("self", "cls")):
                    if not self.resolve(n.value) and n.attr not in self.methods:
                        unknown.append((n.attr, index, n.lineno))
                if isinstance(n, ast.Call):
                    func = n.func
                    if isinstance(func, ast.Name) and func.id in ("exec", "eval") and n.args:
                        text = self.constant(n.args[0])
                        tree = parse(text) if isinstance(text, str) else None
                        if tree is not None:
                            u, k, m = self.uses_in(index, tree)
                            uses.extend(u), unknown.extend(k), names.update(m)
                for child in ast.iter_child_nodes(n):
                    visit(child, inside_resolved or bool(paths))
                return
            if isinstance(n, ast.Import):
                for alias in n.names:
                    uses.append(Use(alias.name, index, n.lineno))
                return
            if isinstance(n, ast.ImportFrom) and n.module and not n.level:
                for alias in n.names:
                    if alias.name != "*":
                        uses.append(Use(f"{n.module}.{alias.name}", index, n.lineno))
                return
            for child in ast.iter_child_nodes(n):
                visit(child, inside_resolved)

        visit(node)
        return uses, unknown, names

    def exercise_names(self) -> set[str]:
        """Names defined at the top of exercise cells (the functions and classes the exercises ask for)."""
        if not hasattr(self, "_exercise_names"):
            self._exercise_names = {name for name, sites in self.defs.items()
                                    if any(self.cells[i].kind == "exercise" for i, _ in sites)}
        return self._exercise_names

    def reached(self, exercise: str, roots=(), skip=()) -> tuple[list[Use], list[tuple[str, int, int]]]:
        """Every use the exercise's code reaches: its own cell, then the learner's definitions it refers to.

        `roots` are further names the grader's call uses (the function it calls, a snippet's names); `skip` are names
        the grader replaced for this call (substitutes), which are not the learner's code during it."""
        uses, unknown = [], []
        own = [i for i, c in enumerate(self.cells) if c.kind == "exercise" and c.grade_id == exercise]
        other_exercise = {i for i, c in enumerate(self.cells) if c.kind == "exercise" and c.grade_id != exercise}
        todo, seen_names, seen_sites = [], set(skip), set()
        for i in own:
            if self.cells[i].tree is not None:
                u, k, names = self.uses_in(i, self.cells[i].tree)
                uses += u
                unknown += k
                todo += [n for n in names]
                todo += [n for n, sites in self.defs.items() if any(s[0] == i for s in sites)]
        todo += list(roots)
        while todo:
            name = todo.pop()
            if name in seen_names:
                continue
            seen_names.add(name)
            for index, node in self.defs.get(name, []):
                if index in own or (index in other_exercise and name not in roots) or (index, id(node)) in seen_sites:
                    continue
                seen_sites.add((index, id(node)))
                u, k, names = self.uses_in(index, node)
                uses += u
                unknown += k
                todo += [n for n in names if n not in seen_names]
        return uses, unknown

    def exercises_used(self, exercise: str, extra_source: str = "") -> set[str]:
        """The other exercises the exercise's code may run: names it refers to (its own cell, and `extra_source`, a
        test's code), followed through the learner's definitions, other exercises' cells included. A name no cell
        defines but that an exercise is named after counts as that exercise (a cell that failed to define it)."""
        graded = {c.grade_id for c in self.cells if c.kind == "exercise" and c.grade_id}

        def names_in(index, node):
            return [n for n in self.uses_in(index, node)[2] if n not in _function_locals(node)]

        todo = []
        for i, cell in enumerate(self.cells):
            if cell.kind == "exercise" and cell.grade_id == exercise and cell.tree is not None:
                todo += names_in(i, cell.tree)
        extra = parse(extra_source) if extra_source.strip() else None
        if extra is not None:
            todo += names_in(-1, extra)
        used, seen, seen_sites = set(), set(), set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in graded:
                used.add(name)
            for index, node in self.defs.get(name, []):
                cell = self.cells[index]
                if (index, id(node)) in seen_sites:
                    continue
                seen_sites.add((index, id(node)))
                if cell.kind == "exercise":
                    used.add(cell.grade_id)
                todo += [n for n in names_in(index, node) if n not in seen]
        return used - {exercise}


def _function_locals(tree) -> set[str]:
    """Names bound inside the bodies of the functions in a tree (arguments, assignments, loop variables)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.arg):
                    names.add(inner.arg)
                elif isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
                    names.add(inner.id)
    return names


def _top_level(tree) -> set[int]:
    """ids of the nodes that run at a cell's top level (not inside a function or class body)."""
    found, todo = set(), list(tree.body)
    while todo:
        node = todo.pop()
        found.add(id(node))
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return found


def _bound_names(target, value):
    """(name, the expression bound to it) for a target; None where the value can't be paired up (unpacking)."""
    if isinstance(target, ast.Name):
        return [(target.id, value)]
    if isinstance(target, (ast.Tuple, ast.List)):
        values = value.elts if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts) \
            else [None] * len(target.elts)
        return [pair for t, v in zip(target.elts, values) for pair in _bound_names(t, v)]
    if isinstance(target, ast.Starred):
        return _bound_names(target.value, None)
    return []


def _self_attributes(target):
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
        return [target.attr]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [a for t in target.elts for a in _self_attributes(t)]
    return []


def _loop_names(node):
    if isinstance(node, ast.arguments):
        args = node.posonlyargs + node.args + node.kwonlyargs + [a for a in (node.vararg, node.kwarg) if a]
        return [a.arg for a in args]
    if isinstance(node, ast.Lambda):
        return []
    targets = [node.target] if isinstance(node, (ast.For, ast.comprehension)) else [
        i.optional_vars for i in node.items if i.optional_vars is not None]
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def _is_globals(node) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("globals", "locals")


# --- names as the grader's loaded modules know them --------------------------------------------------------------
def canonical(path: str) -> str | None:
    """`torch.nn.MultiheadAttention` -> `torch.nn.modules.activation.MultiheadAttention`, from modules the grader has
    already loaded (nothing is imported, no attribute code runs: only module and class dictionaries are read)."""
    parts = path.split(".")
    obj, depth = None, 0
    for depth in range(len(parts), 0, -1):
        obj = sys.modules.get(".".join(parts[:depth]))
        if obj is not None:
            break
    if obj is None:
        return None
    name = _name_of(obj)
    for i, part in enumerate(parts[depth:], start=depth):
        found = _lookup(obj, part)
        if found is _NOTHING:
            return ".".join([name, *parts[i:]])
        obj = found
        name = _name_of(obj) or f"{name}.{part}"
    return name


_NOTHING = object()


def _lookup(obj, attr):
    import types

    if isinstance(obj, types.ModuleType):
        value = vars(obj).get(attr, _NOTHING)
        return sys.modules.get(f"{obj.__name__}.{attr}", _NOTHING) if value is _NOTHING else value
    for klass in (obj.__mro__ if isinstance(obj, type) else type(obj).__mro__):
        if attr in vars(klass):
            return vars(klass)[attr]
    return _NOTHING


def _name_of(obj) -> str | None:
    import types

    if type(obj) is types.ModuleType:
        return obj.__name__
    if isinstance(obj, types.ModuleType):  # a module-like object (torch.ops): its class says what it is
        return f"{type(obj).__module__}.{type(obj).__qualname__}"
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}.{qualname}"
    owner = getattr(obj, "__objclass__", None)  # a C method descriptor: TensorBase.softmax
    if isinstance(owner, type):
        return f"{owner.__module__}.{owner.__qualname__}.{getattr(obj, '__name__', '?')}"
    if not isinstance(obj, type):
        return f"{type(obj).__module__}.{type(obj).__qualname__}"
    return None


def _load_roots(patterns, used=None):
    """The packages the patterns are about (torch, scipy), loaded here so that `canonical` knows their names.
    Only a pattern's own root is ever imported, never a name from the learner's text, and only when the code reaches
    a name under it (`used`: the roots of the uses' paths; None: all): a name under another root cannot resolve
    into a package that only importing it here would load, so a NumPy notebook never makes the grader import torch
    (1.3 s of a chapter-4 check)."""
    import importlib.util

    for pattern in patterns:
        root = re.match(r"[A-Za-z_][A-Za-z0-9_]*", pattern)
        name = root.group(0) if root else ""
        if used is not None and name not in used:
            continue
        if name and name not in sys.modules and not name.startswith("autograder"):
            try:
                if importlib.util.find_spec(name) is not None:
                    importlib.import_module(name)
            except Exception:  # a package that can't be imported here has no names to canonicalise
                pass


def broad(pattern_regex: re.Pattern, prefix: str) -> bool:
    """Does the pattern cover anything at all under `prefix` (a whole package or module), rather than naming a thing?"""
    return bool(pattern_regex.match(f"{prefix}.zz_any_name_at_all"))


def tensor_method_names(attr: str) -> list[str]:
    """What `<value>.attr` would be if the value were a tensor (the only type of value a pattern names methods of)."""
    torch = sys.modules.get("torch")
    if torch is not None and not hasattr(torch.Tensor, attr):
        return []
    return [f"torch.Tensor.{attr}", f"torch._C.TensorBase.{attr}"]


def forbidden_uses(notebook: Notebook, exercise: str, patterns, roots=(), skip=()) -> list[str]:
    """The forbidden names the exercise's code reaches, as the learner wrote them (sorted, without repeats)."""
    regexes = [compile_patterns([p]) for p in patterns]
    if not regexes:
        return []
    uses, unknown = notebook.reached(exercise, roots, skip)
    _load_roots(patterns, {use.path.split(".", 1)[0] for use in uses})
    found = set()
    for use in uses:
        names = [use.path]
        real = canonical(use.path)
        if real and real != use.path:
            names.append(real)
        if any(r.match(n) for r in regexes for n in names):
            found.add(use.path)
    for attr, _, _ in unknown:
        for name in tensor_method_names(attr):
            if any(r.match(name) and not broad(r, "torch.Tensor") and not broad(r, "torch._C.TensorBase")
                   for r in regexes):
                found.add(f"<tensor>.{attr}")
                break
    # `torch` is said by `torch.nn.RNN` already (a whole-package pattern matches both)
    return sorted(p for p in found if not any(other.startswith(p + ".") for other in found))


def shortcuts(source: str, patterns) -> list[str]:
    """One cell on its own (the exercise's), for a quick look; the grader uses `forbidden_uses` on the notebook."""
    nb = Notebook.from_cells([Cell("exercise", source, grade_id="_")])
    return forbidden_uses(nb, "_", patterns)
