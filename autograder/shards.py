"""A class graded in slices on several machines (Slurm array tasks, Kubernetes indexed Jobs), then put back together.

`grade ... --shard K/N` grades the students whose id hashes to slice K of N and writes `shard.json` beside
grades.csv: the chapter, K/N, every student found in the submissions, and the ones this slice graded. `merge` reads
those manifests, refuses slices that do not add up to one class, and writes the one grades.csv an unsharded run
would have written (the same `write_csv`), with every student's folder.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import statistics
from pathlib import Path

from .course import Chapter, CourseError, chapter as find_chapter

MANIFEST = "shard.json"
SHARD = re.compile(r"^(\d{1,6})/(\d{1,6})$")


def parse_shard(text: str) -> tuple[int, int]:
    """'2/4' -> (2, 4): slice K of N, counted from 1 (Slurm's --array=1-N gives K directly)."""
    match = SHARD.match(text.strip())
    if not match:
        raise CourseError(f"--shard {text!r}: expected K/N, the slice K of N counted from 1, e.g. --shard 1/4")
    k, n = int(match[1]), int(match[2])
    if n < 1 or not 1 <= k <= n:
        raise CourseError(f"--shard {text}: K must be between 1 and N (N at least 1), e.g. --shard 1/{max(n, 2)}")
    return k, n


def shard_of(student: str, n: int) -> int:
    """The slice (1..n) a student belongs to. A hash of the id alone: the same whatever PYTHONHASHSEED is, whatever
    the folders' order, and whoever else is in the class, so adding a student never moves another."""
    return int.from_bytes(hashlib.sha256(student.encode()).digest()[:8], "big") % n + 1


def select(found: dict, shard: tuple[int, int]) -> dict:
    k, n = shard
    return {student: value for student, value in found.items() if shard_of(student, n) == k}


def write_manifest(out: Path, chapter: Chapter, shard: tuple[int, int], roster, graded) -> Path:
    manifest = {"chapter": chapter.name, "shard": list(shard), "roster": sorted(roster), "students": sorted(graded)}
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise CourseError(f"{folder}: no such folder (give the --out folders of the sharded grade runs)")
    if not path.is_file():
        raise CourseError(f"{folder} is not a shard: it has no {MANIFEST} (grade with --shard K/N to make one)")
    try:
        data = json.loads(path.read_text())
        chapter, (k, n) = str(data["chapter"]), (int(data["shard"][0]), int(data["shard"][1]))
        roster, students = [str(s) for s in data["roster"]], [str(s) for s in data["students"]]
    except (ValueError, KeyError, TypeError, IndexError):
        raise CourseError(f"{path} is not a shard manifest (chapter, shard, roster, students)") from None
    return {"folder": folder, "chapter": chapter, "k": k, "n": n, "roster": roster, "students": students}


def check(shards: list[dict]) -> None:
    """Raise CourseError, one line, unless the shards are exactly one class: one chapter, slices 1..N once each,
    one roster, every student graded in exactly one slice."""
    first = shards[0]
    for other in shards[1:]:
        if other["chapter"] != first["chapter"]:
            raise CourseError(f"shards of different chapters: {first['folder']} is {first['chapter']}, "
                              f"{other['folder']} is {other['chapter']}")
        if other["n"] != first["n"]:
            raise CourseError(f"shards of different splits: {first['folder']} is {first['k']}/{first['n']}, "
                              f"{other['folder']} is {other['k']}/{other['n']}")
        if other["roster"] != first["roster"]:
            differ = sorted(set(other["roster"]) ^ set(first["roster"]))
            raise CourseError(f"shards graded from different submissions: {first['folder']} and {other['folder']} "
                              f"disagree on {', '.join(differ[:5]) or 'the students'}")
    seen: dict[int, Path] = {}
    for shard in shards:
        if shard["k"] in seen:
            raise CourseError(f"shard {shard['k']}/{shard['n']} given twice: {seen[shard['k']]} and {shard['folder']}")
        seen[shard["k"]] = shard["folder"]
    missing = [k for k in range(1, first["n"] + 1) if k not in seen]
    if missing:
        raise CourseError(f"shard {missing[0]}/{first['n']} is missing: merge needs all {first['n']} shards' folders")
    owner: dict[str, Path] = {}
    for shard in shards:
        for student in shard["students"]:
            if student in owner:
                raise CourseError(f"student {student} is in two shards: {owner[student]} and {shard['folder']}")
            owner[student] = shard["folder"]
            if not (shard["folder"] / student / "results.json").is_file():
                raise CourseError(f"{shard['folder']} lacks {student}/results.json, which its {MANIFEST} lists")
    absent = [s for s in first["roster"] if s not in owner]
    if absent:
        raise CourseError(f"student {absent[0]} was found in the submissions but no shard graded them"
                          + (f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""))
    strays = sorted(set(owner) - set(first["roster"]))
    if strays:
        raise CourseError(f"student {strays[0]} is graded in {owner[strays[0]]} but not in the submissions")


def merge(folders: list[Path], out: Path) -> str:
    """Combine the shards' outputs into `out`: grades.csv and every student's folder. Returns the summary line."""
    from .classroom import write_csv

    shards = [_read_manifest(Path(f)) for f in folders]
    check(shards)
    resolved = {s["folder"].resolve() for s in shards}
    if out.resolve() in resolved:
        raise CourseError(f"--out {out} is one of the shards; merge into a new folder")
    chapter = find_chapter(shards[0]["chapter"])
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for shard in shards:
        for student in shard["students"]:
            shutil.copytree(shard["folder"] / student, out / student, dirs_exist_ok=True)
            results[student] = json.loads((out / student / "results.json").read_text())
    write_csv(out / "grades.csv", chapter, {s: results[s] for s in sorted(results)})
    graded = [d for d in results.values() if "error" not in d]
    mean = statistics.fmean(d["score"] for d in graded) if graded else 0.0
    maximum = max((d.get("max_score", 0) for d in results.values()), default=0)
    return (f"{chapter.name}: merged {len(shards)} shards, {len(results)} students, {len(graded)} graded, "
            f"{len(results) - len(graded)} not gradable; mean score {mean:.2f} / {maximum:g}. "
            f"Wrote {out / 'grades.csv'}")
