"""The base of every error that tells a user what went wrong and what to do (caught by the CLI),
and the one line the CLI prints for any exception."""
from __future__ import annotations

from pathlib import Path


class EmergenceError(RuntimeError):
    """An error whose message names the file or value at fault and the fix."""


def missing_input(path: str | Path) -> str:
    """What to do about a missing input file: raw data, a stage's output, or a path given by hand."""
    parts = Path(path).parts
    if "data" in parts:
        fix = "run `make data` (or `dvc pull`) to materialise the raw inputs"
    elif "artifacts" in parts:
        fix = "run `dvc repro` (or `dvc pull`) to build the stages before this one"
    else:
        fix = "check the path given on the command line"
    return f"input {path} not found: {fix}"


def one_line(exc: BaseException) -> str:
    """The message of `exc` on one line: ours as they are, a missing file with its fix, others with their type."""
    if isinstance(exc, FileNotFoundError) and exc.filename:
        text = missing_input(exc.filename)
    elif isinstance(exc, EmergenceError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())
