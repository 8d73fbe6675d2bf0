"""Sharded class grading: `grade --shard K/N` on slices of a class, `merge` of the slices equals one unsharded run,
and merge refuses slices that are not one class, in one line with exit status 2."""
from __future__ import annotations

import json
import shutil

import nbformat
import pytest

from autograder.__main__ import main
from autograder.course import chapter
from autograder.shards import MANIFEST, select, shard_of
from conftest import with_cells

pytestmark = pytest.mark.xdist_group("shards")  # one worker grades the class once for every test here
CH = chapter("04_attention")
NAMES = [f"s{i:02d}" for i in range(40)]
# One graded student in slice 1, two that cannot be graded (no kernel needed) in slice 2: both slices hold work.
GRADED = next(n for n in NAMES if shard_of(n, 2) == 1)
BROKEN, EMPTY = [n for n in NAMES if shard_of(n, 2) == 2][:2]


def one_line_error(capsys, code, *words):
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "Traceback" not in err[0], err
    for word in words:
        assert word in err[0], err[0]


@pytest.mark.unit
@pytest.mark.parametrize("value", ["0/2", "3/2", "1/0", "a/b", "2", "1/2/3", "", "-1/2", "1.5/2"])
def test_bad_shard_values(tmp_path, capsys, value):
    code = main(["grade", CH.name, str(tmp_path), "--out", str(tmp_path / "out"), f"--shard={value}"])
    one_line_error(capsys, code, "--shard")
    assert not (tmp_path / "out").exists()


@pytest.mark.unit
def test_slices_are_a_partition_that_stays_put():
    first = {f"student{i}": i for i in range(200)}
    slices = [select(first, (k, 4)) for k in range(1, 5)]
    assert all(slices) and sum(len(s) for s in slices) == len(first)
    assert set().union(*slices) == set(first)
    grown = {**{f"late{i}": i for i in range(50)}, **first}  # more students, and listed first
    for k, before in enumerate(slices, start=1):
        assert set(before) <= set(select(grown, (k, 4))), "adding students moved another to a different slice"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same class graded once whole and once in two slices."""
    tmp = tmp_path_factory.mktemp("shards")
    subs = tmp / "subs"
    for student in (GRADED, BROKEN, EMPTY):
        (subs / student).mkdir(parents=True)
    nbformat.write(with_cells(CH, {}), subs / GRADED / f"{CH.name}.ipynb")
    (subs / BROKEN / f"{CH.name}.ipynb").write_text("{ truncated")
    common = ["--no-progress", "--jobs", "1"]
    assert main(["grade", CH.name, str(subs), "--out", str(tmp / "whole"), *common]) == 0
    for k in (1, 2):
        assert main(["grade", CH.name, str(subs), "--out", str(tmp / f"part{k}"), "--shard", f"{k}/2", *common]) == 0
    return tmp


def test_two_shards_merged_equal_one_run(runs, capsys):
    part1, part2 = (json.loads((runs / name / MANIFEST).read_text()) for name in ("part1", "part2"))
    assert part1 == {"chapter": CH.name, "shard": [1, 2], "roster": sorted([GRADED, BROKEN, EMPTY]),
                     "students": [GRADED]}
    assert part2["students"] == sorted([BROKEN, EMPTY]) and part2["roster"] == part1["roster"]
    capsys.readouterr()
    assert main(["merge", str(runs / "part1"), str(runs / "part2"), "--out", str(runs / "merged")]) == 0
    assert "3 students, 1 graded, 2 not gradable" in capsys.readouterr().out
    whole, merged = runs / "whole", runs / "merged"
    assert (merged / "grades.csv").read_bytes() == (whole / "grades.csv").read_bytes()
    rows = (whole / "grades.csv").read_text().splitlines()
    assert len(rows) == 4 and "test_softmax" in rows[0]
    assert sorted(p.name for p in merged.iterdir()) == sorted(p.name for p in whole.iterdir())
    for student in (GRADED, BROKEN, EMPTY):
        for name in ("results.json", "feedback.html"):
            assert (merged / student / name).read_bytes() == (whole / student / name).read_bytes(), (student, name)
    graded = json.loads((merged / GRADED / "results.json").read_text())
    assert graded["score"] == graded["max_score"] > 0


def _copy(runs, tmp_path, name):
    target = tmp_path / name
    shutil.copytree(runs / name, target)
    return target


def _edit(folder, **changes):
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(changes)
    (folder / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("tamper, words", [
    (lambda p1, p2: _edit(p2, chapter="05_multihead"), ["different chapters", "04_attention", "05_multihead"]),
    (lambda p1, p2: _edit(p2, shard=[2, 3]), ["different splits", "1/2", "2/3"]),
    (lambda p1, p2: _edit(p2, shard=[1, 2]), ["shard 1/2 given twice"]),
    (lambda p1, p2: (_edit(p2, students=[*json.loads((p2 / MANIFEST).read_text())["students"], GRADED]),
                     shutil.copytree(p1 / GRADED, p2 / GRADED)), ["in two shards", GRADED]),
    (lambda p1, p2: _edit(p2, students=[BROKEN]), [EMPTY, "no shard graded"]),
    (lambda p1, p2: _edit(p2, roster=[GRADED, BROKEN]), ["different submissions", EMPTY]),
    (lambda p1, p2: (p2 / MANIFEST).unlink(), ["not a shard", "--shard K/N"]),
    (lambda p1, p2: (p2 / MANIFEST).write_text("{}"), ["not a shard manifest"]),
    (lambda p1, p2: shutil.rmtree(p2 / BROKEN), [BROKEN, "results.json"]),
])
def test_merge_refuses_what_is_not_one_class(runs, tmp_path, capsys, tamper, words):
    part1, part2 = _copy(runs, tmp_path, "part1"), _copy(runs, tmp_path, "part2")
    tamper(part1, part2)
    code = main(["merge", str(part1), str(part2), "--out", str(tmp_path / "merged")])
    one_line_error(capsys, code, *words)
    assert not (tmp_path / "merged" / "grades.csv").exists()


def test_merge_refuses_a_missing_shard(runs, tmp_path, capsys):
    one_line_error(capsys, main(["merge", str(runs / "part1"), "--out", str(tmp_path / "m")]), "shard 2/2 is missing")


def test_merge_into_a_shard_is_refused(runs, tmp_path, capsys):
    part1, part2 = _copy(runs, tmp_path, "part1"), _copy(runs, tmp_path, "part2")
    one_line_error(capsys, main(["merge", str(part1), str(part2), "--out", str(part1)]), "is one of the shards")
