"""The Gradescope autograder archive, run without Gradescope: unpacked into a temporary root laid out like its
`/autograder`, `run_autograder` run on a correct, a wrong (and prying), an empty and a non-notebook submission, and
each results.json checked against Gradescope's documented format."""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import nbformat
import pytest

from autograder.__main__ import main
from autograder.course import REPO, chapter
from autograder.gradescope import ROOT_ENV
from autograder.grading import max_score, trusted_tests
from conftest import with_cells

CH = chapter("04_attention")

# Gradescope's results.json as its autograder specification documents it
# (https://gradescope-autograders.readthedocs.io/en/latest/specs/, "Output format"): every key it lists and no other.
VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
FORMAT = {"enum": ["text", "html", "simple_format", "md", "ansi"]}
TEST = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "score": {"type": "number"}, "max_score": {"type": "number"}, "status": {"enum": ["passed", "failed"]},
        "name": {"type": "string"}, "name_format": FORMAT, "number": {"type": "string"}, "output": {"type": "string"},
        "output_format": FORMAT, "tags": {"type": "array", "items": {"type": "string"}}, "visibility": VISIBILITY,
        "extra_data": {"type": "object"},
    },
}
RESULTS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "score": {"type": "number"}, "execution_time": {"type": "number"}, "output": {"type": "string"},
        "output_format": FORMAT, "test_output_format": FORMAT, "test_name_format": FORMAT, "visibility": VISIBILITY,
        "stdout_visibility": VISIBILITY, "extra_data": {"type": "object"}, "tests": {"type": "array", "items": TEST},
        "leaderboard": {"type": "array", "items": {
            "type": "object", "required": ["name", "value"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "value": {"type": ["number", "string"]},
                           "order": {"enum": ["asc", "desc"]}}}},
    },
    # "score" is optional at the top only when every test carries one.
    "anyOf": [{"required": ["score"]},
              {"required": ["tests"], "properties": {"tests": {"items": {"required": ["score"]}}}}],
}
# What this course's autograder promises on top of the format: a total, an output for the learner, and every test
# with its name, points, output and visibility.
OURS = {"required": ["score", "output", "tests"],
        "properties": {"tests": {"items": {"required": ["name", "score", "max_score", "output", "visibility"]}}}}


def hidden_test_lines() -> list[str]:
    """Every line of the chapter's hidden tests, as the source notebook has them."""
    lines = []
    for source in trusted_tests(CH).values():
        hidden = re.search(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", source, re.S)
        lines += [l.strip() for l in (hidden[1] if hidden else "").splitlines() if len(l.strip()) > 12]
    assert lines, "the chapter has hidden tests"
    return lines


def unpack(archive: Path, root: Path) -> None:
    """What Gradescope does with the archive: /autograder/source, run_autograder copied to /autograder."""
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            target = root / "source" / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zipped.read(info))
            target.chmod(stat.S_IMODE(info.external_attr >> 16) or 0o644)
    (root / "run_autograder").write_bytes((root / "source" / "run_autograder").read_bytes())
    (root / "run_autograder").chmod(0o755)
    (root / "submission").mkdir()


def run_autograder(root: Path) -> tuple[dict, str]:
    env = {**os.environ, ROOT_ENV: str(root), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([str(root / "run_autograder")], cwd=root, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (root / "results" / "results.json").read_text()
    results = json.loads(text)
    jsonschema.validate(results, RESULTS)
    jsonschema.validate(results, OURS)
    assert f"with the course package in {root.resolve() / 'source'}" in proc.stdout, proc.stdout
    for line in hidden_test_lines():
        assert line not in text, f"hidden test source reached results.json: {line}"
    assert "BEGIN HIDDEN" not in text and str(root) not in text
    return results, text


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("gradescope") / "autograder.zip"
    assert main(["gradescope", CH.name, "--out", str(out)]) == 0
    return out


def test_archive_holds_what_grading_needs(archive, tmp_path):
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        modes = {i.filename: stat.S_IMODE(i.external_attr >> 16) for i in zipped.infolist()}
        setup = zipped.read("setup.sh").decode()
        run = zipped.read("run_autograder").decode()
    assert {"setup.sh", "run_autograder", "requirements.txt", f"solutions/{CH.name}.ipynb",
            f"notebooks/{CH.name}.ipynb", "autograder/grading.py", f"autograder/checks/ch{CH.name}.py"} <= names
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert not any(n.startswith(("solutions/", "notebooks/")) and CH.name not in n for n in names), "one chapter only"
    assert "bubblewrap" in setup and "requirements.txt" in setup and f"--chapter {CH.name}" in run
    for script in ("setup.sh", "run_autograder"):
        with zipfile.ZipFile(archive) as zipped:
            (tmp_path / script).write_bytes(zipped.read(script))
        check = subprocess.run(["bash", "-n", str(tmp_path / script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    again = tmp_path / "again.zip"
    assert main(["gradescope", CH.name, "--out", str(again)]) == 0
    assert again.read_bytes() == archive.read_bytes(), "the same chapter gives the same archive"


@pytest.mark.unit
@pytest.mark.parametrize("args, words", [
    (["42_nothing", "--out", "{tmp}/a.zip"], ["unknown chapter"]),
    ([CH.name, "--out", "{tmp}"], ["is a folder", "autograder.zip"]),
])
def test_gradescope_bad_input_in_one_line(tmp_path, capsys, args, words):
    assert main(["gradescope", *[a.format(tmp=tmp_path) for a in args]]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and all(word in err[0] for word in words), err


@pytest.mark.timeout(600)
def test_run_autograder_on_four_submissions(archive, tmp_path):
    roots = {case: tmp_path / case for case in ("correct", "wrong", "empty", "not_a_notebook")}
    for root in roots.values():
        unpack(archive, root)
    nbformat.write(with_cells(CH, {}), roots["correct"] / "submission" / f"{CH.name}.ipynb")
    # Wrong along `axis` (the chapter's wrong answers pin that to test_softmax alone), and prying: where it can read
    # the source notebook or the checks, it raises their hidden tests so they would land in the test's output.
    prying = (
        "def softmax(x, axis=-1):\n"
        "    import glob\n"
        f"    for path in glob.glob({str(roots['wrong'])!r} + '/source/**/*.*', recursive=True):\n"
        "        text = open(path, errors='replace').read()\n"
        "        if 'HIDDEN TESTS' in text or 'def softmax_' in text:\n"
        "            raise RuntimeError(text[text.find('BEGIN HIDDEN'):][:400])\n"
        "    e = np.exp(x - np.max(x, axis=-1, keepdims=True))\n"
        "    return e / np.sum(e, axis=-1, keepdims=True)\n")
    nbformat.write(with_cells(CH, {"softmax": prying}), roots["wrong"] / "submission" / f"{CH.name}.ipynb")
    (roots["not_a_notebook"] / "submission" / f"{CH.name}.ipynb").write_text("def softmax(x):\n    return x\n")

    full = max_score(CH)
    results, _ = run_autograder(roots["correct"])
    assert results["score"] == full > 0 and results["tests"]
    assert all(t["score"] == t["max_score"] and t["status"] == "passed" for t in results["tests"])
    assert sum(t["max_score"] for t in results["tests"]) == full and "Every test passed" in results["output"]

    results, _ = run_autograder(roots["wrong"])
    lost = {t["name"]: t for t in results["tests"] if t["score"] < t["max_score"]}
    assert set(lost) == {"test_softmax"}, lost
    assert results["score"] == full - lost["test_softmax"]["max_score"]
    assert lost["test_softmax"]["status"] == "failed"
    assert "softmax: columns must sum to 1" in lost["test_softmax"]["output"]

    for case, words in (("empty", "no notebook (.ipynb) was submitted"), ("not_a_notebook", "not a readable notebook")):
        results, _ = run_autograder(roots[case])
        assert results["score"] == 0 and words in results["output"], results["output"]
        assert [t["name"] for t in results["tests"]] == list(trusted_tests(CH))
        assert all(t["score"] == 0 and t["max_score"] > 0 for t in results["tests"])
