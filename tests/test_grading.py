"""A simulated chapter-4 class of cheats and faults, graded once, with the exact score each must get.

Correct work keeps every point whatever else it does (prints, warns, has its cells copied twice, has cells deleted);
a wrong answer loses its points however it tries to hide it; hostile code harms nothing and costs only the tests
that need the broken cell.
"""
from __future__ import annotations

import json

import nbformat
import numpy as np
import pytest

from autograder.course import REPO, chapter
from conftest import grade_as_class, scores, with_cells

CH = chapter("04_attention")

# A plausible bug that the chapter's own tests pin to test_softmax alone: it ignores `axis`.
WRONG_SOFTMAX = ("def softmax(x, axis=-1):\n    e = np.exp(x - x.max(axis=-1, keepdims=True))\n"
                 "    return e / e.sum(axis=-1, keepdims=True)\n")
STUB = "def softmax(x, axis=-1):\n    raise NotImplementedError()\n"
LOOP_FOREVER = ("def softmax(x, axis=-1):\n    while True:\n        try:\n            pass\n"
                "        except BaseException:\n            pass\n")
OUTSIDE = "/tmp/autograder-test-escape"
# torch's softmax under a name no static scan can fold: only the kernel's tripwires can see these calls
DYNAMIC_SOFTMAX = ("import torch\n"
                   "def _shortcut():\n    return getattr(torch, ''.join(reversed('xamtfos')))\n")
GRADER_SOFTMAX = "_reference_softmax"  # a correct softmax in autograder.checks.ch04_attention (see the test at the end)


def solution_source(grade_id: str) -> str:
    nb = nbformat.read(CH.source, as_version=4)
    return next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def remove_cells(nb, grade_ids):
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in grade_ids]
    return nb


def class_of_cheats():
    correct = solution_source("softmax")
    last = "self_attention"
    cases = {
        # --- correct work, in unusual shapes: full marks
        "noisy": (with_cells(CH, {"softmax": "import sys, warnings\nprint('debug output')\n"
                                  "warnings.warn('a harmless warning')\nprint('to stderr', file=sys.stderr)\n"
                                  + correct}), "full"),
        "copied_twice": (_duplicate(with_cells(CH, {}), "softmax"), "full"),
        "deleted_cells": (remove_cells(with_cells(CH, {}), {"setup", "test_softmax", "test_causal_mask"}), "full"),
        "exits_kernel": (with_cells(CH, {}, [(last, "import os\nos._exit(1)")]), "full"),
        "sys_exit": (with_cells(CH, {}, [(last, "import sys\nsys.exit(3)")]), "full"),
        "loops_at_top": (with_cells(CH, {}, [(last, "while True:\n    pass")]), "full"),
        "prints_gigabytes": (with_cells(CH, {}, [(last, "while True:\n    print('x' * 1_000_000)")]), "full"),
        # past the kernel's own output cap, straight onto its output channel: the grader never reads it
        "sends_gigabytes": (with_cells(CH, {}, [(last, "k = get_ipython().kernel\nfor _ in range(3):\n"
                                                "    k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', "
                                                "'text': 'x' * 400_000_000}, parent=k.get_parent('shell'))")]),
                            "full"),
        "writes_outside": (with_cells(CH, {}, [(last, _write_outside())]), "full"),
        "kills_processes": (with_cells(CH, {}, [(last, "import os\nfor pid in range(2, 3000):\n    try:\n"
                                               "        os.kill(pid, 9)\n    except Exception:\n        pass")]), "full"),
        "fake_test_cell": (_fake_grade_cell(with_cells(CH, {})), "full"),
        # --- a wrong softmax, hidden in every way: its softmax tests are lost, nothing else
        "wrong": (with_cells(CH, {"softmax": WRONG_SOFTMAX}), "axis"),
        "wrong_again": (with_cells(CH, {"softmax": WRONG_SOFTMAX}), "axis"),
        "patches_numpy": (with_cells(CH, {"softmax": WRONG_SOFTMAX}, [(last, _patch_numpy())]), "axis"),
        "hides_errors": (with_cells(CH, {"softmax": WRONG_SOFTMAX}, [("setup", _hide_errors())]), "axis"),
        "fakes_answers": (with_cells(CH, {"softmax": WRONG_SOFTMAX}, [(last, _fake_answers())]), "axis"),
        "edits_tests": (_edit_tests(with_cells(CH, {"softmax": WRONG_SOFTMAX})), "axis"),
        # --- a softmax that can't run (or earns nothing) loses what an unwritten softmax loses
        "stub": (with_cells(CH, {"softmax": STUB}), "broken"),
        # the grader's own correct softmax: full marks if the kernel could import the grader
        "imports_grader": (with_cells(CH, {"softmax": "def softmax(x, axis=-1):\n    from autograder.checks import "
                                           f"ch04_attention as c\n    return c.{GRADER_SOFTMAX}(x, axis)\n"}), "broken"),
        "reads_solutions": (with_cells(CH, {"softmax": _exec_solutions()}), "broken"),
        "torch_shortcut": (with_cells(CH, {"softmax": "import torch\ndef softmax(x, axis=-1):\n    return "
                                           "torch.softmax(torch.as_tensor(x), dim=axis).numpy()\n"}), "shortcut"),
        "hidden_shortcut": (with_cells(CH, {"softmax": "import torch, sys\ndef softmax(x, axis=-1):\n    f = getattr("
                                            "torch, 'soft' + 'max')\n    return f(torch.as_tensor(x), dim=axis).numpy()\n"}),
                            "shortcut"),
        # --- the shortcut rule can't be switched off (issue 12): each loses its exercise's tests, nothing else
        "thread_shortcut": (with_cells(CH, {"softmax": DYNAMIC_SOFTMAX + (
            "import threading\ndef softmax(x, axis=-1):\n    out = {}\n"
            "    work = lambda: out.update(y=_shortcut()(torch.as_tensor(x), dim=axis).numpy())\n"
            "    t = threading.Thread(target=work)\n    t.start()\n    t.join()\n    return out['y']\n")}),
                            "shortcut"),
        "c_map_shortcut": (with_cells(CH, {"softmax": DYNAMIC_SOFTMAX + (
            "def softmax(x, axis=-1):\n    return next(map(_shortcut(), [torch.as_tensor(x)], [axis])).numpy()\n")}),
                           "shortcut"),
        "clears_record": (with_cells(CH, {"softmax": DYNAMIC_SOFTMAX + _clear_record()}), "shortcut"),
        "patches_display": (with_cells(CH, {"softmax": DYNAMIC_SOFTMAX + (
            "def softmax(x, axis=-1):\n    return _shortcut()(torch.as_tensor(x), dim=axis).numpy()\n")},
            [("setup", _patch_display())]), "shortcut"),
        "unwraps_tripwire": (with_cells(CH, {"softmax": DYNAMIC_SOFTMAX + (
            "def softmax(x, axis=-1):\n    f = _shortcut()\n    f = getattr(f, '__wrapped__', f)\n"
            "    return f(torch.as_tensor(x), dim=axis).numpy()\n")}), "shortcut"),
        "sdpa_in_plain_sight": (with_cells(CH, {"scaled_dot_product_attention": SDPA_SHORTCUT}), "sdpa"),
        "loops_in_softmax": (with_cells(CH, {"softmax": LOOP_FOREVER}), "broken"),
        "eats_memory": (with_cells(CH, {"softmax": "def softmax(x, axis=-1):\n    hog = np.ones((2**31,))\n"
                                        "    return hog\n"}), "broken"),
        # --- the kernel's world: nothing to find, nobody to reach, nothing left behind
        "hunts_files": (with_cells(CH, {"softmax": _hunt_for_answers()}), "broken"),
        "hooks_classmates": (with_cells(CH, {}, [(last, _hook_classmates())]), "full"),
        "leaves_orphans": (with_cells(CH, {}, [(last, _leave_orphans())]), "full"),
        # output dressed as the grader's own answers is capped like any other output
        "floods_answers": (with_cells(CH, {}, [(last, "from IPython.display import publish_display_data\n"
                                                "for _ in range(4):\n    publish_display_data("
                                                "{'application/vnd.autograder.result+json': 'x' * 30_000_000})")]),
                           "full"),
    }
    return cases


def _hunt_for_answers():
    """Look everywhere a solution or a classmate's finished notebook could be, and run the first one found."""
    return ("import json, os, subprocess, time\n"
            "def _found(path):\n"
            "    try:\n        text = open(path).read()\n    except Exception:\n        return None\n"
            "    if 'def softmax(x, axis=-1)' not in text or 'raise NotImplementedError()\\n' in text:\n"
            "        return None\n"
            "    return [''.join(c['source']) for c in json.loads(text)['cells'] if c['cell_type'] == 'code']\n"
            "places = [%r, %r, '/tmp', os.getcwd(), '/']\n"
            "for cmd in open('/proc/1/cmdline').read().split('\\0') + os.listdir('/proc'):\n"
            "    places.insert(0, os.path.dirname(cmd))\n"
            "try:\n    text = subprocess.run(['git', '-C', %r, 'show', 'HEAD:solutions/04_attention.ipynb'],"
            " capture_output=True, text=True, timeout=5).stdout\n"
            "    open('/tmp/from-git.ipynb', 'w').write(text)\n    places.insert(0, '/tmp')\nexcept Exception:\n    pass\n"
            "cells, start = None, time.monotonic()\n"
            "for place in places:\n"
            "    for root, dirs, files in os.walk(place or '/'):\n"
            "        dirs[:] = [d for d in dirs if d not in ('proc', 'sys', 'dev')]\n"
            "        for name in files:\n"
            "            if name.endswith('.ipynb') and cells is None:\n"
            "                cells = _found(os.path.join(root, name))\n"
            "        if cells is not None or time.monotonic() - start > 6:\n            break\n"
            "    if cells is not None:\n        break\n"
            "if cells is None:\n"
            "    def softmax(x, axis=-1):\n        raise NotImplementedError()\n"
            "else:\n    for source in cells:\n        try:\n            exec(source)\n        except Exception:\n"
            "            pass\n") % (str(REPO / "solutions"), str(REPO.parent), str(REPO))


ORPHAN = "autograder-test-orphan"


def _hook_classmates():
    """A process left running that looks for other kernels' connection files for a minute and breaks their numpy."""
    hook = ("import glob, json, time\n"
            "from jupyter_client import BlockingKernelClient\n"
            "end = time.time() + 60\n"
            "while time.time() < end:\n"
            "    for path in glob.glob('/**/connection*.json', recursive=True) + glob.glob('/tmp/**/*.json', recursive=True):\n"
            "        try:\n"
            "            kc = BlockingKernelClient(connection_file=path)\n            kc.load_connection_file()\n"
            "            kc.start_channels()\n"
            "            kc.execute('import numpy; numpy.exp = lambda x: x * 0')\n"
            "        except Exception:\n            pass\n"
            "    time.sleep(1)\n")
    return ("import subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', {hook!r}, {ORPHAN + '-hook'!r}], start_new_session=True)\n")


def _leave_orphans():
    return ("import os, subprocess, sys, threading\n"
            "threading.Thread(target=lambda: [None for _ in iter(int, 1)], daemon=False).start()\n"
            f"subprocess.Popen([sys.executable, '-c', 'while True: pass', {ORPHAN + '-spin'!r}], start_new_session=True)\n"
            "if os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(3600)\n")


def _host_processes(marker):
    found = []
    for entry in (p for p in __import__("pathlib").Path("/proc").iterdir() if p.name.isdigit()):
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(entry.name)
        except OSError:
            pass
    return found


SDPA_SHORTCUT = """import torch
import torch.nn.functional as F

def scaled_dot_product_attention(Q, K, V, mask=None):
    q, k, v = (torch.as_tensor(np.asarray(a, dtype=float)) for a in (Q, K, V))
    m = None if mask is None else torch.as_tensor(np.asarray(mask, dtype=bool))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=m).numpy()
    scores = attention_scores(Q, K)
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return out, softmax(scores, axis=-1)
"""
SDPA_TESTS = ["test_scaled_dot_product_attention", "test_scaled_dot_product_attention_batch",
              "test_scaled_dot_product_attention_mask", "test_scaled_dot_product_attention_weights"]


def _clear_record():
    """Calls the shortcut, then empties the tripwires' hit log and in-memory record (the old profiler's `hits`)."""
    return ("import os, sys\ndef softmax(x, axis=-1):\n"
            "    y = _shortcut()(torch.as_tensor(x), dim=axis).numpy()\n"
            "    from ipykernel.connect import get_connection_file\n"
            "    open(os.path.join(os.path.dirname(get_connection_file()), 'tripwires.log'), 'w').close()\n"
            "    record = sys.modules.get('_autograder_tripwires')\n"
            "    if record is not None:\n        record.memory.clear()\n"
            "    return y\n")


def _patch_display():
    """Every answer the grader's code publishes now says that nothing forbidden was used."""
    return ("import IPython.display as _display\n_publish = _display.publish_display_data\n"
            "def _quiet(data, *args, **kwargs):\n    for value in data.values():\n"
            "        if isinstance(value, dict) and isinstance(value.get('answer'), dict):\n"
            "            value['answer']['forbidden'] = []\n            value['answer'].pop('tampered', None)\n"
            "    return _publish(data, *args, **kwargs)\n"
            "_display.publish_display_data = _quiet\n")


def _duplicate(nb, grade_id):
    index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    nb.cells.insert(index + 1, nbformat.from_dict(json.loads(json.dumps(nb.cells[index]))))
    return nb


def _write_outside():
    targets = [OUTSIDE, str(REPO / "solutions" / "escape.txt"), str(REPO / "autograder" / "checks" / "escape.py")]
    return ("for target in %r:\n    try:\n        open(target, 'w').write('escaped')\n"
            "    except Exception as error:\n        print(type(error).__name__)\n" % targets)


def _patch_numpy():
    return ("import numpy, numpy.testing, builtins\nnumpy.allclose = lambda *a, **k: True\n"
            "numpy.testing.assert_allclose = lambda *a, **k: None\nnumpy.array_equal = lambda *a, **k: True\n"
            "builtins.abs = lambda x: 0\nimport torch\ntorch.allclose = lambda *a, **k: True\n"
            "torch.softmax = lambda x, *a, **k: x\ntorch.testing.assert_close = lambda *a, **k: None\n")


def _hide_errors():
    return ("ip = get_ipython()\nip.showtraceback = lambda *a, **k: None\n"
            "ip.run_cell_orig = ip.run_cell\n"
            "def quiet(*a, **k):\n    r = ip.run_cell_orig(*a, **k)\n    r.error_in_exec = None\n    return r\n"
            "ip.run_cell = quiet\n")


def _fake_answers():
    return ("from IPython.display import publish_display_data\n"
            "publish_display_data({'application/vnd.autograder.result+json': "
            "{'nonce': 'guess', 'answer': {'status': 'ok', 'value': 1.0, 'forbidden': []}}})\n")


def _edit_tests(nb):
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            cell.source = "pass"
            meta["points"] = 100
    return nb


def _exec_solutions():
    return ("import json\nsrc = json.load(open(%r))\nfor c in src['cells']:\n    if c['cell_type'] == 'code':\n"
            "        exec(''.join(c['source']))\n" % str(CH.source))


def _fake_grade_cell(nb):
    cell = nbformat.v4.new_code_cell(
        "### BEGIN HIDDEN TESTS\nopen(%r, 'w').write('ran in the grader')\n### END HIDDEN TESTS" % (OUTSIDE + "-grader"))
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "test_bonus", "locked": True, "points": 50,
                                 "schema_version": 3, "solution": False, "task": False}
    nb.cells.append(cell)
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    import os

    for leftover in (OUTSIDE, OUTSIDE + "-grader"):
        if os.path.exists(leftover):
            os.remove(leftover)
    import torch

    # Grading starts from a process that has used torch's OpenMP pool: a forked worker would hang in libgomp.
    torch.softmax(torch.randn(512, 512), dim=-1)
    cases = class_of_cheats()
    submissions = {"solution": nbformat.read(CH.source, as_version=4), **{k: v for k, (v, _) in cases.items()}}
    results = grade_as_class(CH, submissions, tmp_path_factory.mktemp("cheats"), time_limit=10)
    return results, {k: expect for k, (_, expect) in cases.items()}


@pytest.mark.parametrize("case", list(class_of_cheats()))
def test_case_gets_exact_score(graded, case):
    results, expectations = graded
    expected = expectations[case]
    full = scores(results["solution"])
    got = scores(results[case])
    assert set(got) == set(full), f"{case}: tests {sorted(set(got) ^ set(full))} appeared or vanished"
    assert results[case]["max_score"] == results["solution"]["max_score"]
    lost = sorted(n for n in full if got[n] < full[n])
    if expected == "full":
        assert not lost, f"{case}: correct work lost points: " + "; ".join(
            t["output"] for t in results[case]["tests"] if t["score"] < t["max_score"])
    elif expected == "shortcut":
        assert lost == ["test_softmax", "test_softmax_stability"], f"{case}: lost {lost}"
    elif expected == "sdpa":
        assert lost == SDPA_TESTS, f"{case}: lost {lost}, expected only the tests of scaled_dot_product_attention"
    elif expected == "axis":
        assert lost == ["test_softmax"], f"{case}: lost {lost}, expected only test_softmax"
    else:
        stub = scores(results["stub"])
        baseline = sorted(n for n in full if stub[n] < full[n])
        assert lost == baseline, f"{case}: lost {lost}, expected what an unwritten softmax loses: {baseline}"
    for name in lost:
        assert got[name] == 0
        out = next(t["output"] for t in results[case]["tests"] if t["name"] == name)
        assert out and "\n" not in out.strip(), f"{case}: {name} needs a one-line reason, got {out!r}"


def test_unwritten_softmax_costs_softmax_and_its_users_only(graded):
    results, _ = graded
    full, stub = scores(results["solution"]), scores(results["stub"])
    lost = {n for n in full if stub[n] < full[n]}
    # the visible tests of sdpa and self_attention run the learner's own chain and fail in the unwritten softmax:
    # softmax already lost its own tests, so those cells are judged by their hidden tests (references) alone
    assert lost == {"test_softmax", "test_softmax_stability"}
    sdpa = next(t for t in results["stub"]["tests"] if t["name"] == "test_scaled_dot_product_attention")
    assert sdpa["score"] == sdpa["max_score"]


def test_nothing_escaped(graded):
    import os

    assert not os.path.exists(OUTSIDE), "learner code wrote outside its scratch folder"
    assert not os.path.exists(OUTSIDE + "-grader"), "a submitted 'hidden test' ran in the grader"
    assert not (REPO / "solutions" / "escape.txt").exists()
    assert not (REPO / "autograder" / "checks" / "escape.py").exists()
    assert not _host_processes(ORPHAN), "a learner's process outlived its grading"


def test_grading_is_deterministic(graded):
    results, _ = graded
    assert results["wrong"]["tests"] == results["wrong_again"]["tests"]


def test_reasons_name_the_fault(graded):
    results, _ = graded
    outputs = {case: " ".join(t["output"] for t in results[case]["tests"]) for case in results}
    assert "torch" in outputs["torch_shortcut"] and "build it yourself" in outputs["torch_shortcut"]
    for case in ("thread_shortcut", "c_map_shortcut", "patches_display"):
        assert "torch.softmax" in outputs[case] and "build it yourself" in outputs[case], outputs[case]
    assert "tampered" in outputs["clears_record"] or "torch.softmax" in outputs["clears_record"]
    assert "torch.nn.functional.scaled_dot_product_attention" in outputs["sdpa_in_plain_sight"]
    assert "did not finish within 10 s" in outputs["loops_in_softmax"]
    assert "MemoryError" in outputs["eats_memory"] or "memory" in outputs["eats_memory"].lower()


def test_sandbox_was_in_force(graded):
    results, _ = graded
    sandbox = results["solution"]["sandbox"]
    assert sandbox["sandbox"] == "bubblewrap" and sandbox["network"] == "off", sandbox
    assert sandbox["memory_total"] and sandbox["processes_total"], "no cgroup limits on this machine"


# --- chapters 5 and 6: shortcuts through references lent to a call, and through an alias in a free cell ------------
CH5, CH6 = chapter("05_multihead"), chapter("06_transformer_block")
LENT = ["test_sdpa_torch", "test_sdpa_torch_grad", "test_sdpa_torch_mask", "test_split_heads"]


def _wrong_module(ch):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"wrong_{ch.name}", REPO / "tests" / "wrong_answers" / f"ch{ch.name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stash_references():
    """Chapter 5's red-team notebook: sdpa_torch, split_heads and merge_heads unwritten; a correct MultiHeadAttention
    that keeps the references its tests lend; its test cell moved first, and a free cell after it that installs what
    was kept. It scored 15/15 while the submission chose the cell order and the references outlived their call."""
    stub = "def {}(*args, **kwargs):\n    raise NotImplementedError()\n"
    nb = nbformat.read(CH5.source, as_version=4)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    for name in ("sdpa_torch", "split_heads", "merge_heads"):
        cells[name].source = stub.format(name)
    keep = ("        import builtins\n        _g = globals()\n"
            "        builtins._kept = (_g['sdpa_torch'], _g['split_heads'], _g['merge_heads'])\n")
    source = cells["MultiHeadAttention"].source
    marker = "        d, h, dh = self.d_model, self.n_heads, self.d_head\n"
    assert marker in source
    cells["MultiHeadAttention"].source = source.replace(marker, keep + marker)
    install = nbformat.v4.new_code_cell("import builtins\nif hasattr(builtins, '_kept'):\n"
                                        "    sdpa_torch, split_heads, merge_heads = builtins._kept\n")
    moved = [cells["MultiHeadAttention"], cells["mha_helpers"], cells["test_MultiHeadAttention"], install]
    rest = [c for c in nb.cells if all(c is not m for m in moved)]
    after_setup = next(i for i, c in enumerate(rest) if c is cells["setup"]) + 1
    nb.cells = rest[:after_setup] + moved + rest[after_setup:]
    return nb


def _aliased_layer_norm():
    """Chapter 6: `F.layer_norm` bound to another name in a free cell, the exercise calls only that name."""
    source = _wrong_module(CH6).LAYERNORM.replace("return (x - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias",
                               "return _norm(x, x.shape[-1:], self.weight, self.bias, self.eps)")
    assert "_norm(" in source
    return with_cells(CH6, {"LayerNorm": source}, [("setup", "_norm = F.layer_norm\n")])


def _chapter_cases():
    PARAMS_SHORTCUT = _wrong_module(CH5).PARAMS_SHORTCUT
    return {
        CH5: {"stash": (_stash_references(), LENT),
              "params_plain_sight": (with_cells(CH5, {"attention_params": PARAMS_SHORTCUT}),
                                     ["test_attention_params"])},
        CH6: {"aliased_layer_norm": (_aliased_layer_norm(), ["test_LayerNorm", "test_LayerNorm_eps",
                                                             "test_LayerNorm_grad", "test_LayerNorm_params"])},
    }


@pytest.fixture(scope="module")
def graded_chapters(tmp_path_factory):
    results = {}
    for ch, cases in _chapter_cases().items():
        results.update(grade_as_class(ch, {k: nb for k, (nb, _) in cases.items()}, tmp_path_factory.mktemp(ch.name)))
    return results


@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", ["stash", "params_plain_sight", "aliased_layer_norm"])
def test_chapter_shortcut_loses_exactly_its_exercise(graded_chapters, case):
    expected = next(lost for cases in _chapter_cases().values() for name, (_, lost) in cases.items() if name == case)
    result = graded_chapters[case]
    lost = sorted(t["name"] for t in result["tests"] if t["score"] < t["max_score"])
    assert lost == sorted(expected), f"{case}: lost {lost}"
    assert all(t["score"] == 0 for t in result["tests"] if t["name"] in expected)


def test_chapter_shortcut_reasons(graded_chapters):
    reasons = {case: " ".join(t["output"] for t in r["tests"]) for case, r in graded_chapters.items()}
    assert "torch.nn.MultiheadAttention" in reasons["params_plain_sight"]  # the static scan: the name as written
    assert "torch.nn.functional.layer_norm" in reasons["aliased_layer_norm"]
    assert "not written yet" in reasons["stash"] or "NotImplementedError" in reasons["stash"]


@pytest.mark.unit
def test_the_grader_softmax_that_imports_grader_calls_is_real():
    """The case "imports_grader" loses its points because the kernel can't import the grader, not because what it
    calls is missing or wrong: were the import allowed, this softmax would earn them."""
    from autograder.checks import ch04_attention

    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 1000.0]])
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(getattr(ch04_attention, GRADER_SOFTMAX)(x, -1), e / e.sum(axis=-1, keepdims=True))
