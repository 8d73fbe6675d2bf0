"""Cells of a chapter's source notebook (`solutions/NN_name.ipynb`), for the checks that need one.

A check that substitutes a correct version of an earlier exercise (so that one mistake costs one exercise), or that
needs the code a notebook provides (a reference model), reads it from the notebook instead of keeping a copy: the
notebook is the one source, and a copy could drift from it.

`solution("04", "softmax")`, `provided("08", "reference_gpt")` and `definition("09", "setup", "apply_rope")` (one
function of a provided cell) return source text with, on top, the setup cell's imports that it uses, so the text runs
on its own: as a substitute sent into the learner's kernel (`env().call(..., substitute={"softmax": solution("04",
"softmax")})`), or here with `load`.
"""
from __future__ import annotations

import ast
import functools

import nbformat

from ..course import chapter as _chapter


@functools.cache
def _cells(chapter: str) -> dict[str, tuple[dict, str]]:
    nb = nbformat.read(_chapter(chapter).source, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: (dict(c.metadata["nbgrader"]), c.source) for c in nb.cells
            if c.cell_type == "code" and "grade_id" in c.metadata.get("nbgrader", {})}


def _cell(chapter: str, grade_id: str, solution: bool) -> str:
    meta, source = _cells(chapter)[grade_id]
    if bool(meta.get("solution")) != solution or meta.get("grade"):
        kind = "solution" if solution else "provided (locked, ungraded)"
        raise KeyError(f"{chapter}: cell {grade_id} is not a {kind} cell")
    return source


def _imports_used(setup: str, source: str) -> str:
    """The setup cell's top-level imports that bind a name `source` reads and does not import itself."""
    tree = ast.parse(source)
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    used -= {(a.asname or a.name).split(".")[0] for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
             for a in node.names}
    lines = setup.splitlines()
    keep = []
    for node in ast.parse(setup).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound = {(a.asname or a.name).split(".")[0] for a in node.names}
            if bound & used:
                keep.append("\n".join(lines[node.lineno - 1:node.end_lineno]))
    return "\n".join(keep)


def _with_imports(chapter: str, parts: list[str]) -> str:
    body = "\n\n\n".join(parts)
    imports = _imports_used(_cells(chapter)["setup"][1], body)
    return (imports + "\n\n\n" if imports else "") + body + "\n"


@functools.cache
def solution(chapter: str, *grade_ids: str) -> str:
    """The solution cells `grade_ids` (in order: a later one may use an earlier one), with the imports they use."""
    return _with_imports(chapter, [_cell(chapter, g, solution=True) for g in grade_ids])


@functools.cache
def provided(chapter: str, *grade_ids: str) -> str:
    """The locked cells `grade_ids` that the notebook gives the learner, with the imports they use."""
    return _with_imports(chapter, [_cell(chapter, g, solution=False) for g in grade_ids])


@functools.cache
def definition(chapter: str, grade_id: str, name: str) -> str:
    """One top-level function or class `name` of a provided cell (a helper the setup cell defines), with its imports."""
    source = _cell(chapter, grade_id, solution=False)
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return _with_imports(chapter, ["\n".join(source.splitlines()[start - 1:node.end_lineno])])
    raise KeyError(f"{chapter}: cell {grade_id} defines no {name}")


def load(source: str) -> dict:
    """Run `source` (from `solution`, `provided` or `definition`) here, in the grader; return its namespace."""
    namespace = {"__name__": "autograder_reference"}
    exec(compile(source, "<notebook cells>", "exec"), namespace)
    return namespace
