"""`check` starts the learner's kernel before it loads nbgrader (autograder/kernel.py's `prestart`); the executor
adopts that kernel. These tests show that it is adopted (no second kernel), that a kernel started with other settings
is stopped rather than used, and that a notebook that can't be graded leaves no kernel behind."""
from __future__ import annotations

from pathlib import Path

import pytest
from jupyter_core.utils import run_sync

from autograder import __main__ as cli, kernel, sandbox
from autograder.course import chapter
from autograder.grading import grade_one

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(sandbox.available() is not None, reason=f"no sandbox here: {sandbox.available()}")]

CH = chapter("01_rnn_limits")
MEMORY = 2 * 2**30


def kernels_made(monkeypatch) -> list[Path]:
    """Work folders of the kernel managers made from now on."""
    made, original = [], kernel.manager

    def counted(workdir, settings, config=None):
        made.append(Path(workdir))
        return original(workdir, settings, config)

    monkeypatch.setattr(kernel, "manager", counted)
    return made


def gone(workdir: Path) -> bool:
    return not workdir.exists() and not any(p.exists() and (p / "cgroup.procs").read_text().strip()
                                            for p in sandbox.cgroup_paths(workdir))


def test_check_adopts_the_prestarted_kernel(tmp_path, monkeypatch):
    made = kernels_made(monkeypatch)
    started = kernel.prestart(kernel.settings_for(CH, memory=MEMORY, sandboxed=True))
    result, _ = grade_one(CH, CH.source, workdir=tmp_path, memory=MEMORY, kernel=started)
    assert result.score == result.max_score > 0, result.tests
    assert len(made) == 1, f"{len(made)} kernels made: the prestarted one was not adopted"
    assert gone(made[0]), "the adopted kernel's folder or processes outlived the grading"


def test_the_prestarted_kernel_knows_it_is_graded():
    """Notebooks read NBGRADER_EXECUTION (chapter 7 skips its training while graded), which nbgrader sets around the
    kernels it starts: a kernel started ahead of nbgrader gets it too."""
    settings = kernel.settings_for(CH, memory=MEMORY, sandboxed=True)
    km = kernel.prestart(settings).take(settings)
    client = km.client()
    client.start_channels()
    try:
        run_sync(client.wait_for_ready)(timeout=60)
        printed = []
        run_sync(client.execute_interactive)("import os; print(os.environ.get('NBGRADER_EXECUTION'))", timeout=60,
                                             output_hook=lambda m: printed.append(m["content"].get("text", "")))
        assert "".join(printed).strip() == "autograde"
    finally:
        client.stop_channels()
        kernel.discard(km)


def test_a_kernel_with_other_settings_is_stopped_not_used(tmp_path, monkeypatch):
    made = kernels_made(monkeypatch)
    started = kernel.prestart(kernel.settings_for(CH, memory=MEMORY // 2, sandboxed=True))
    result, _ = grade_one(CH, CH.source, workdir=tmp_path, memory=MEMORY, kernel=started)
    assert result.score == result.max_score > 0, result.tests
    assert len(made) == 2 and all(gone(w) for w in made)


def test_a_notebook_that_cannot_be_graded_leaves_no_kernel(tmp_path, monkeypatch, capsys):
    """`check` prestarts the kernel before it reads the notebook; a file that is no notebook still leaves none."""
    made = kernels_made(monkeypatch)
    bad = tmp_path / f"{CH.name}.ipynb"
    bad.write_text("not a notebook")
    assert cli.main(["check", str(bad)]) == 2
    assert "error:" in capsys.readouterr().err
    assert len(made) == 1 and gone(made[0])
