"""One rule ties a chapter's test cells to its checks: a test cell's hidden section calls the check named after the
cell's grade_id, and nothing else; a check module's public functions are exactly its test cells' checks.

So `checks.test_softmax_stability()` is what `test_softmax_stability` runs, and a reader of either finds the other by
name. Read from the source notebooks and the check modules' syntax tree: no kernel, no import of torch.
"""
from __future__ import annotations

import ast

import nbformat
import pytest

from autograder.course import REPO, chapters

pytestmark = pytest.mark.unit


def graded_test_cells(chapter):
    nb = nbformat.read(chapter.source, as_version=4)
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
            and not c.metadata["nbgrader"].get("solution")]


def hidden_section(chapter, grade_id: str) -> str:
    return (f"### BEGIN HIDDEN TESTS\nfrom autograder.checks import ch{chapter.name} as checks\n"
            f"checks.{grade_id}()\n### END HIDDEN TESTS")


def public_definitions(chapter) -> dict[str, ast.AST]:
    tree = ast.parse((REPO / "autograder" / "checks" / f"ch{chapter.name}.py").read_text(encoding="utf-8"))
    return {node.name: node for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_")}


def test_every_hidden_section_calls_the_check_named_after_its_cell():
    wrong = []
    for chapter in chapters():
        for cell in graded_test_cells(chapter):
            grade_id = cell.metadata.nbgrader.grade_id
            want = hidden_section(chapter, grade_id)
            if not (cell.source.endswith(want) and cell.source.count("### BEGIN HIDDEN TESTS") == 1):
                wrong.append(f"{chapter.name} {grade_id}")
    assert not wrong, f"hidden sections that are not exactly `{hidden_section(chapters()[0], '<grade_id>')}`: {wrong}"


def test_every_public_check_is_a_test_cell_and_every_test_cell_has_one():
    for chapter in chapters():
        grade_ids = {c.metadata.nbgrader.grade_id for c in graded_test_cells(chapter)}
        public = public_definitions(chapter)
        orphans = sorted(set(public) - grade_ids)
        assert not orphans, (f"ch{chapter.name}: public names that no test cell calls (make them private with a "
                             f"leading _): {orphans}")
        missing = sorted(grade_ids - set(public))
        assert not missing, f"ch{chapter.name}: test cells without a check of their name: {missing}"
        for name in grade_ids:
            node = public[name]
            assert isinstance(node, ast.FunctionDef) and not (node.args.args or node.args.posonlyargs), (
                f"ch{chapter.name}.{name}: a check is a function without arguments")


def test_sources_read_cells_from_the_source_notebook():
    """A substitute is the notebook's own cell text, with the setup cell's imports it needs, and runs on its own."""
    import numpy as np

    from autograder.checks import sources

    text = sources.solution("04", "softmax", "attention_scores", "scaled_dot_product_attention")
    assert text.startswith("import numpy as np\n") and "import matplotlib" not in text
    sdpa = sources.load(text)["scaled_dot_product_attention"]
    Q, K, V = (np.random.default_rng(0).normal(size=(2, 3, 4)) for _ in range(3))
    out, weights = sdpa(Q, K, V, mask=np.tril(np.ones((3, 3), dtype=bool)))
    assert np.allclose(weights.sum(-1), 1) and weights[0, 0, 1] == 0 and out.shape == (2, 3, 4)
    assert "def apply_rope" in sources.definition("09", "setup", "apply_rope")
    for wrong in (lambda: sources.solution("04", "test_softmax"), lambda: sources.provided("04", "softmax"),
                  lambda: sources.definition("09", "setup", "no_such_function")):
        with pytest.raises(KeyError):
            wrong()
