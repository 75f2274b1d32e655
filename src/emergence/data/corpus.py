"""Pretraining corpus: real Python source that ships with every interpreter.

``snapshot_stdlib`` copies the running interpreter's standard-library ``.py`` files
(tests, caches and site-packages excluded) into ``data/`` so DVC versions them.
``build_corpus`` lists them deterministically, drops exact duplicates and any file
that shares a word n-gram with the pairs (decontamination, as in GPT-3's 13-gram
rule), and splits train/val by file with a seeded hash.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import sysconfig
from pathlib import Path
from typing import Iterable

from emergence.io import seed_for

EXCLUDED_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
WORD = re.compile(r"\w+|[^\w\s]")


def stdlib_files(root: str | Path | None = None) -> list[Path]:
    """Sorted standard-library sources (relative paths), skipping tests and installed packages."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    return sorted(p.relative_to(root) for p in root.rglob("*.py")
                  if not EXCLUDED_DIRS & set(p.relative_to(root).parts[:-1]))


def snapshot_stdlib(dest: str | Path, root: str | Path | None = None) -> int:
    """Copy the stdlib sources into `dest` (a fresh directory); returns the file count."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    files = stdlib_files(root)
    for rel in files:
        target = Path(dest) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, target)
    return len(files)


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = WORD.findall(text)
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@dataclasses.dataclass
class Corpus:
    train: list[tuple[str, str]]  # (relative path, text)
    val: list[tuple[str, str]]
    duplicates: list[str]
    contaminated: list[str]
    too_large: list[str]


def build_corpus(root: str | Path, contamination: Iterable[str], seed: int, val_percent: float,
                 ngram: int, max_file_bytes: int) -> Corpus:
    """Deduplicated, decontaminated files of `root`, split train/val by a seeded file hash."""
    root = Path(root)
    banned: set[tuple[str, ...]] = set()
    for text in contamination:
        banned |= ngrams(text, ngram)
    seen: set[str] = set()
    out = Corpus([], [], [], [], [])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        raw = path.read_bytes()
        if len(raw) > max_file_bytes:
            out.too_large.append(rel)
            continue
        digest = hashlib.sha256(raw).hexdigest()
        if digest in seen:
            out.duplicates.append(rel)
            continue
        seen.add(digest)
        text = raw.decode("utf-8", errors="replace")
        if banned and not banned.isdisjoint(ngrams(text, ngram)):
            out.contaminated.append(rel)
            continue
        bucket = seed_for(seed, "split", rel) % 10_000
        (out.val if bucket < val_percent * 100 else out.train).append((rel, text))
    return out
