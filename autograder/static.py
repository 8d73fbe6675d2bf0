"""Read the learner's code without running it: which forbidden library functions does an exercise's cell name?

The kernel-side watcher (kernel_shim.Watcher) sees what a call reaches, but runs where the learner's code can tamper
with it. This scan runs in the grader on the cell's text, so it cannot be switched off from the kernel; together they
catch the plain shortcut (`torch.softmax(...)`, `from scipy.special import softmax`) and the indirect one.
"""
from __future__ import annotations

import ast
import re


def forbidden_names(patterns) -> set[str]:
    """The last name of each fnmatch pattern: 'torch._C._nn.scaled_dot_product_attention' -> that function's name."""
    names = set()
    for pattern in patterns:
        parts = [p for p in re.split(r"[.*?\[\]]", pattern) if p]
        if parts:
            names.add(parts[-1])
    return names


def shortcuts(source: str, patterns) -> list[str]:
    """Attribute uses (`F.softmax`, `x.softmax`) and imports (`from scipy.special import softmax`) of forbidden names.

    A bare name is the learner's own function and never counts; neither does `self.<name>`."""
    names = forbidden_names(patterns)
    if not names:
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in names:
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.append(ast.unparse(node))
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [f"{node.module}.{a.name}" for a in node.names if a.name in names]
    return sorted(set(found))
