"""What makes a learner's check fast must not change what it decides: the cached course template is the one
GenerateAssignment writes for this very source, and a request compressed on its way into the kernel arrives intact."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from autograder import grading, kernel_shim
from autograder.course import Chapter, chapter
from autograder.env import KernelEnv

CH = chapter("04_attention")


@pytest.mark.timeout(300)
def test_course_template_is_generated_once_per_source(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("AUTOGRADER_CACHE", str(cache))
    stale = cache / f"{CH.name}-0123456789abcdef"  # the template of an earlier version of the notebook
    stale.mkdir(parents=True)
    template = grading.course_template(CH)
    assert (template / "gradebook.db").is_file()
    assert (template / "release" / CH.name / f"{CH.name}.ipynb").is_file()
    assert not stale.exists() and [p.name for p in cache.iterdir()] == [template.name]

    monkeypatch.setattr(grading, "generate", lambda *args: pytest.fail("GenerateAssignment ran again"))
    assert grading.course_template(CH) == template
    course = grading.prepare(CH, tmp_path / "course")
    assert (course / "gradebook.db").read_bytes() == (template / "gradebook.db").read_bytes()


def test_a_changed_source_gets_its_own_template(tmp_path):
    edited = tmp_path / f"{CH.name}.ipynb"
    nb = json.loads(CH.source.read_text())
    nb["cells"][0]["source"] = ["# an edit\n"] + nb["cells"][0]["source"]
    edited.write_text(json.dumps(nb))

    @dataclasses.dataclass(frozen=True)
    class Edited(Chapter):
        @property
        def source(self):
            return edited

    assert grading._template_key(Edited(CH.name)) != grading._template_key(CH)
    assert grading._template_key(Chapter(CH.name)) == grading._template_key(CH)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("value, compressed", [(np.tile(np.arange(20.0), (20000, 1)), True),
                                               (np.random.default_rng(0).normal(size=(300, 300)), False)],
                         ids=["repetitive", "random"])
def test_large_requests_arrive_intact(value, compressed, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    published = []
    monkeypatch.setattr(shell.display_pub, "publish", lambda data, metadata=None, **_: published.append(data))
    monkeypatch.setitem(shell.user_ns, "echo", lambda a: a)
    request = {"kind": "call", "name": "echo", "args": [kernel_shim.encode(value)], "kwargs": {"__dict__": {}},
               "forbid": [], "substitute": {}}
    code = KernelEnv.code_for(request, "nonce")
    assert (len(code) < len(json.dumps(request)) / 10) == compressed
    assert shell.run_cell(code).success
    answer = KernelEnv.answer_from([{"output_type": "display_data", "data": published[-1]}], "nonce")
    assert answer["status"] == "ok"
    np.testing.assert_array_equal(kernel_shim.decode(answer["value"]), value)
