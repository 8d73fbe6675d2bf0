"""The grader's static scan of a whole submission (autograder.static), on snippets: no kernel, no notebook run."""
from __future__ import annotations

import ast

import pytest

from autograder import static
from autograder.course import REPO

pytestmark = pytest.mark.unit

SOFTMAX = ["scipy.special*softmax", "torch*softmax", "torch.nn.functional.*", "torch._C._nn.*"]
ATTENTION = SOFTMAX + ["torch*scaled_dot_product_attention*", "torch.nn.modules.activation.MultiheadAttention*",
                       "torch*multi_head_attention_forward*"]
LAYER_NORM = ["torch*layer_norm*", "torch.nn.modules.normalization.*", "torch._ops.*"]
NUMPY_ONLY = ["torch*", "scipy*", "jax*"]
SETUP = "import numpy as np\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


def scan(exercise_source, *free, patterns=ATTENTION, setup=SETUP, exercise="ex", roots=(), skip=(),
         other=None):
    cells = [static.Cell("provided", setup)]
    cells += [static.Cell("free", text) for text in free]
    cells.append(static.Cell("exercise", exercise_source, grade_id=exercise))
    if other is not None:
        cells.append(static.Cell("exercise", other, grade_id="other"))
    return static.forbidden_uses(static.Notebook.from_cells(cells), exercise, patterns, roots, skip)


@pytest.mark.parametrize("source, found", [
    # plain sight, full dotted names (the old scan compared only the last fragment)
    ("def ex(q, k, v):\n    return F.scaled_dot_product_attention(q, k, v)\n",
     ["torch.nn.functional.scaled_dot_product_attention"]),
    ("def ex(d):\n    return nn.MultiheadAttention(d, 2)\n", ["torch.nn.MultiheadAttention"]),
    ("class ex(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
     "        self.m = torch.nn.MultiheadAttention(4, 2)\n", ["torch.nn.MultiheadAttention"]),
    # imports and aliases
    ("from torch.nn import MultiheadAttention as M\ndef ex(d):\n    return M(d, 1)\n",
     ["torch.nn.MultiheadAttention"]),
    ("import torch.nn.functional as G\ndef ex(x):\n    return G.softmax(x, -1)\n", ["torch.nn.functional.softmax"]),
    ("from torch.nn.functional import *\ndef ex(q, k, v):\n    return scaled_dot_product_attention(q, k, v)\n",
     ["torch.nn.functional.scaled_dot_product_attention"]),
    ("def ex(x):\n    from scipy.special import softmax\n    return softmax(x)\n", ["scipy.special.softmax"]),
    # strings folded
    ("def ex(x):\n    return getattr(torch, 'soft' + 'max')(x, -1)\n", ["torch.softmax"]),
    ("def ex(x):\n    name = ''.join(['soft', 'max'])\n    return getattr(torch, name)(x, -1)\n", ["torch.softmax"]),
    ("def ex(x):\n    return getattr(F, f'{\"soft\"}max')(x, -1)\n", ["torch.nn.functional.softmax"]),
    ("def ex(x):\n    return vars(torch)['softmax'](x, -1)\n", ["torch.softmax"]),
    ("def ex(x):\n    return torch.__dict__['soft' 'max'](x, -1)\n", ["torch.softmax"]),
    ("def ex(x):\n    import sys\n    return sys.modules['torch.nn.functional'].softmax(x, -1)\n",
     ["torch.nn.functional.softmax"]),
    ("def ex(x):\n    return __import__('tor' + 'ch').softmax(x, -1)\n", ["torch.softmax"]),
    ("import importlib\ndef ex(x):\n    return importlib.import_module('scipy.special').softmax(x)\n",
     ["scipy.special.softmax"]),
    ("def ex(x):\n    return eval('torch.softmax')(x, -1)\n", ["torch.softmax"]),
    ("def ex(x):\n    return torch._C._nn.scaled_dot_product_attention(x, x, x)\n",
     ["torch._C._nn.scaled_dot_product_attention"]),
    # a method on a tensor, named specifically by a pattern
    ("def ex(x):\n    return (x @ x.T).softmax(-1)\n", ["<tensor>.softmax"]),
    # the learner's own names are theirs
    ("def softmax(x):\n    e = np.exp(x - x.max())\n    return e / e.sum()\ndef ex(x):\n    return softmax(x)\n", []),
    ("class ex(nn.Module):\n    def softmax(self, x):\n        return x\n    def forward(self, x):\n"
     "        return self.softmax(x)\n", []),
    ("def ex(x):\n    return np.exp(x) / np.exp(x).sum(-1, keepdims=True)\n", []),
    ("def ex(x):\n    return torch.exp(x) / torch.exp(x).sum(-1, keepdim=True)\n", []),
    ("def ex(x):\n    return F.relu(x)\n", ["torch.nn.functional.relu"]),  # F.* is forbidden by SOFTMAX
    ("import torch.nn.functional as F\ndef ex(x):\n    return x\n", []),  # importing F is not calling it
])
def test_exercise_cell(source, found):
    assert scan(source) == found


def test_canonical_names_match_patterns_written_for_them():
    # the pattern names the class where it is defined; the learner writes where it is exported
    assert scan("def ex(d):\n    return nn.MultiheadAttention(d, 1)\n",
                patterns=["torch.nn.modules.activation.MultiheadAttention*"]) == ["torch.nn.MultiheadAttention"]
    assert scan("class ex(nn.Module):\n    def __init__(self, d):\n        super().__init__()\n"
                "        self.ln = nn.LayerNorm(d)\n", patterns=LAYER_NORM) == ["torch.nn.LayerNorm"]
    assert scan("def ex(x):\n    return torch.ops.aten.layer_norm(x, [4])\n", patterns=["torch._ops.*"])


def test_free_cell_alias_used_in_exercise():
    assert scan("def ex(x):\n    return G(x, x.shape[-1:])\n", "G = F.layer_norm\n",
                patterns=LAYER_NORM) == ["torch.nn.functional.layer_norm"]
    assert scan("def ex(x):\n    return G(x, x.shape[-1:])\n", "import torch.nn.functional as H\nG = H.layer_norm\n",
                patterns=LAYER_NORM) == ["torch.nn.functional.layer_norm"]
    assert scan("def ex(x):\n    return norm(x)\n", "globals()['norm'] = F.layer_norm\n",
                patterns=LAYER_NORM) == ["torch.nn.functional.layer_norm"]


def test_free_cell_helpers_the_exercise_reaches():
    helper = "def helper(x):\n    return inner(x)\n\ndef inner(x):\n    return torch.softmax(x, -1)\n"
    assert scan("def ex(x):\n    return helper(x)\n", helper) == ["torch.softmax"]
    # not reached: an experiment in a free cell costs nothing here (the kernel's tripwires judge what calls reach)
    assert scan("def ex(x):\n    return x\n", helper) == []
    assert scan("def ex(x):\n    return x\n", "out = F.scaled_dot_product_attention(q, k, v)\n") == []
    # the exercise's function redefined in a free cell is the exercise's code
    assert scan("def ex(x):\n    raise NotImplementedError()\n", "ex = lambda x: torch.softmax(x, -1)\n") == [
        "torch.softmax"]


def test_another_exercise_is_charged_to_itself():
    other = "def other(x):\n    return torch.softmax(x, -1)\n"
    assert scan("def ex(x):\n    return other(x)\n", other=other) == []
    # unless the grader's call itself reaches it (a root), and not when the grader substituted it
    assert scan("def ex(x):\n    return other(x)\n", other=other, roots=["other"]) == ["torch.softmax"]
    assert scan("def ex(x):\n    return other(x)\n", "def other(x):\n    return torch.softmax(x, -1)\n",
                skip=["other"]) == []


def test_provided_cells_never_count():
    setup = SETUP + "def reference(q, k, v):\n    return F.scaled_dot_product_attention(q, k, v)\n"
    assert scan("def ex(q, k, v):\n    return reference(q, k, v)\n", setup=setup) == []


def test_numpy_only_chapter():
    assert scan("import torch\ndef ex(x):\n    return torch.tanh(torch.as_tensor(x)).numpy()\n",
                patterns=NUMPY_ONLY, setup="import numpy as np\n") == ["torch.as_tensor", "torch.tanh"]
    # a method on an unknown value is not flagged by a pattern that covers a whole package
    assert scan("def ex(x):\n    return x.sum() + np.tanh(x)\n", patterns=NUMPY_ONLY, setup="import numpy as np\n") == []


def test_magics_and_broken_cells_do_not_crash():
    assert scan("%time x = 1\ndef ex(x):\n    return torch.softmax(x, -1)\n") == ["torch.softmax"]
    assert scan("def ex(x:\n    return torch.softmax(x)\n") == []  # a syntax error runs nothing


def test_every_forbid_argument_is_a_declared_list():
    """The kernel's tripwires are armed from each chapter's module-level FORBID* lists before any learner code runs,
    so a check may only pass one of those (not a list built on the spot)."""
    for path in sorted((REPO / "autograder" / "checks").glob("ch*.py")):
        tree = ast.parse(path.read_text())
        declared = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name) and t.id.startswith("FORBID")}
        for node in ast.walk(tree):
            for keyword in getattr(node, "keywords", []):
                if keyword.arg == "forbid":
                    value = keyword.value
                    ok = isinstance(value, ast.Name) and (value.id in declared or value.id == "forbid")
                    assert ok, f"{path.name}:{node.lineno}: forbid= must name a module-level FORBID* list"


def test_exercises_used_follows_the_learners_helpers_but_not_locals_or_other_exercises():
    """Which earlier exercises a test cell's failure may come from (execute.py's gate): names the exercise's code and
    the visible test refer to, through the learner's own helpers, stopping at other exercises' cells."""
    cells = [static.Cell("provided", SETUP),
             static.Cell("exercise", "def split_heads(x, h):\n    return helper(x, h)\n", grade_id="split_heads"),
             static.Cell("exercise", "def merge_heads(x):\n    return x\n", grade_id="merge_heads"),
             static.Cell("exercise", "def sdpa(q, k, v):\n    return q\n", grade_id="sdpa"),
             static.Cell("free", "weights = sdpa(1, 2, 3)\ndef _heads(x, h):\n    return split_heads(x, h)\n"),
             static.Cell("exercise", "class MHA(nn.Module):\n    def forward(self, x):\n        weights = x\n"
                                     "        return _heads(x, 2), weights\n", grade_id="MHA")]
    nb = static.Notebook.from_cells(cells)
    # through the free helper to split_heads; `weights` is forward's own local, not the free cell's global
    assert nb.exercises_used("MHA") == {"split_heads"}
    assert nb.exercises_used("MHA", extra_source="_m = MHA()\n_r = merge_heads(_m(1))\n") == {"split_heads",
                                                                                             "merge_heads"}
    assert nb.exercises_used("split_heads") == set()  # `helper` is defined nowhere; nothing else is reached


def test_exercises_used_goes_through_other_exercises_and_names_left_undefined():
    cells = [static.Cell("exercise", "exec(open('elsewhere.py').read())\n", grade_id="softmax"),  # defines nothing
             static.Cell("exercise", "def sdpa(q, k, v):\n    return softmax(q @ k.T) @ v\n", grade_id="sdpa"),
             static.Cell("exercise", "def self_attention(x):\n    return sdpa(x, x, x)\n", grade_id="self_attention")]
    nb = static.Notebook.from_cells(cells)
    assert nb.exercises_used("sdpa") == {"softmax"}
    assert nb.exercises_used("self_attention") == {"sdpa", "softmax"}


def test_a_test_cell_belongs_to_the_longest_exercise_it_names():
    from autograder.execute import exercise_of

    exercises = ["softmax", "scaled_dot_product_attention", "self_attention", "attention", "attention_scores"]
    assert exercise_of("test_attention_scores_batch", exercises) == "attention_scores"
    assert exercise_of("test_attention", exercises) == "attention"
    assert exercise_of("test_softmax_stability", exercises) == "softmax"
    assert exercise_of("test_nothing", exercises) is None
