"""Paired correct/buggy code from HumanEval, verified by running the unit tests.

For each problem the canonical solution (prompt + body) is the correct version; the
buggy versions are single-site mutants (:mod:`emergence.data.mutate`) that still parse
and keep the prompt, chosen round-robin over mutation kinds in a seeded order. A pair
is kept only if, in the sandbox, the correct code passes the problem's tests and the
buggy code does not.

Row schema (JSONL, one pair per line)::

    pair_id, task_id, entry_point, prompt, correct_code, buggy_code, mutation,
    description, line, span [start, end) of the edit in buggy_code, correct_span
    (the replaced text in correct_code), correct_verdict,
    buggy_verdict, test, source

User-supplied pairs (MBPP, LLM failures) use the same schema; ``test`` (with
``entry_point``) is optional and, when given, the pair is verified like ours. A row is
malformed (reported with file:line:field and skipped) when a field is missing or of the
wrong type, a version does not parse, the ``prompt`` is not a prefix of both versions
(scoring starts after the prompt), ``test`` comes without ``entry_point``, or its
``pair_id`` was seen before. Rows without ``test`` are kept as unverified.
"""
from __future__ import annotations

import ast
import dataclasses
import gzip
import json
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from emergence.data import mutate, sandbox
from emergence.errors import EmergenceError
from emergence.io import seed_for

log = logging.getLogger(__name__)

REQUIRED = {"pair_id": str, "task_id": str, "prompt": str, "correct_code": str,
            "buggy_code": str, "mutation": str}
OPTIONAL = {"entry_point": str, "description": str, "line": int, "span": list, "correct_span": list,
            "correct_verdict": str, "buggy_verdict": str, "test": str, "source": str}


UNVERIFIED = "unverified"  # verdict of user rows that come without tests


class PairsFormatError(EmergenceError, ValueError):
    """A pairs file that yields no valid row at all."""


@dataclasses.dataclass(frozen=True)
class RowProblem:
    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: field '{self.field}': {self.message}"

    def record(self) -> dict:
        """The rejected-rows entry of this malformed row."""
        return {"file": self.path, "line": self.line, "reason": "malformed",
                "field": self.field, "message": self.message}


def load_humaneval(path: str | Path) -> list[dict]:
    """HumanEval problems (task_id, prompt, canonical_solution, test, entry_point)."""
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _candidates(problem: dict, seed: int, limit: int) -> list[mutate.Mutant]:
    """Up to `limit` mutants, round-robin over kinds, each kind's sites in seeded order."""
    code = problem["prompt"] + problem["canonical_solution"]
    body_line = problem["prompt"].count("\n") + 1
    rng = random.Random(seed_for(seed, "mutants", problem["task_id"]))
    by_kind: dict[str, list[mutate.Mutant]] = {}
    for m in mutate.mutants(code, body_line):
        by_kind.setdefault(m.kind, []).append(m)
    kinds = sorted(by_kind)
    rng.shuffle(kinds)
    for k in kinds:
        rng.shuffle(by_kind[k])
    out: list[mutate.Mutant] = []
    while len(out) < limit and any(by_kind.values()):
        for k in kinds:
            if by_kind[k] and len(out) < limit:
                out.append(by_kind[k].pop())
    return out


def build_pairs(problems: list[dict], seed: int, max_per_problem: int,
                candidates_per_problem: int, limits: sandbox.Limits,
                workers: int) -> list[dict]:
    """Verified pairs: correct passes its tests, the mutant fails them (one sandbox run each)."""
    cands = {p["task_id"]: _candidates(p, seed, candidates_per_problem) for p in problems}
    jobs: list[tuple[str, str, str]] = []
    for p in problems:
        jobs.append((p["prompt"] + p["canonical_solution"], p["test"], p["entry_point"]))
        jobs += [(m.code, p["test"], p["entry_point"]) for m in cands[p["task_id"]]]
    log.info("verifying %d programs (%d problems) in the sandbox with %d workers",
             len(jobs), len(problems), workers)
    verdicts = iter(sandbox.verify(jobs, limits, workers))
    rows = []
    for p in problems:
        correct = next(verdicts)
        mine = [next(verdicts) for _ in cands[p["task_id"]]]
        if not correct.passed:
            log.warning("%s: canonical solution does not pass its tests (%s); skipped",
                        p["task_id"], correct.status)
            continue
        kept = [(m, v) for m, v in zip(cands[p["task_id"]], mine) if not v.passed]
        for k, (m, v) in enumerate(kept[:max_per_problem]):
            rows.append(dict(
                pair_id=f"{p['task_id']}/{k}", task_id=p["task_id"], entry_point=p["entry_point"],
                prompt=p["prompt"], correct_code=p["prompt"] + p["canonical_solution"],
                buggy_code=m.code, mutation=m.kind, description=m.description, line=m.line,
                span=list(m.span), correct_span=list(m.original_span), correct_verdict=correct.status, buggy_verdict=v.status,
                test=p["test"], source="humaneval"))
    return rows


def _syntax_error(code: str) -> str | None:
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return f"does not parse (line {exc.lineno}: {exc.msg})"
    except ValueError as exc:  # e.g. a NUL byte
        return f"does not parse ({exc})"
    return None


def _row_problems(row: Any, path: str, lineno: int) -> list[RowProblem]:
    if not isinstance(row, dict):
        return [RowProblem(path, lineno, "<row>", "not a JSON object")]
    out = []
    for field, typ in REQUIRED.items():
        if field not in row:
            out.append(RowProblem(path, lineno, field, "missing"))
        elif not isinstance(row[field], typ) or (typ is str and not row[field].strip()):
            out.append(RowProblem(path, lineno, field, f"must be a non-empty {typ.__name__}"))
    for field, typ in OPTIONAL.items():
        if field in row and not isinstance(row[field], typ):
            out.append(RowProblem(path, lineno, field, f"must be {typ.__name__}"))
    if out:
        return out
    for field in ("correct_code", "buggy_code"):
        error = _syntax_error(row[field])
        if error:
            out.append(RowProblem(path, lineno, field, error))
        if not row[field].startswith(row["prompt"]):
            out.append(RowProblem(path, lineno, "prompt", f"not a prefix of {field} (scoring "
                                  f"starts after the prompt)"))
    if row["correct_code"] == row["buggy_code"]:
        out.append(RowProblem(path, lineno, "buggy_code", "identical to correct_code"))
    if row.get("test") and not row.get("entry_point"):
        out.append(RowProblem(path, lineno, "entry_point", "missing, but 'test' is given "
                              "(name the function the test's check() receives)"))
    span = row.get("span")
    if span is not None and not (len(span) == 2 and all(isinstance(x, int) for x in span)
                                 and 0 <= span[0] <= span[1] <= len(row["buggy_code"])):
        out.append(RowProblem(path, lineno, "span", "must be [start, end] inside buggy_code"))
    return out


def read_pairs(path: str | Path, seen: dict[str, str] | None = None
               ) -> tuple[list[dict], list[RowProblem]]:
    """Valid rows of a pairs JSONL file, and one problem per malformed row (line and field).

    `seen` maps pair ids already taken (by earlier files) to where; it is updated.
    Malformed rows are skipped, valid ones kept; a file with no valid row raises.
    """
    rows, problems = [], []
    seen = {} if seen is None else seen
    path = str(path)
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(RowProblem(path, lineno, "<json>",
                                           f"invalid JSON at column {exc.colno} ({exc.msg})"))
                continue
            found = _row_problems(row, path, lineno)
            if not found and row["pair_id"] in seen:
                found = [RowProblem(path, lineno, "pair_id",
                                    f"duplicate of {row['pair_id']!r} at {seen[row['pair_id']]}")]
            problems.extend(found)
            if not found:
                seen[row["pair_id"]] = f"{path}:{lineno}"
                rows.append(row)
    for p in problems:
        log.warning("skipping malformed pair: %s", p)
    if not rows:
        raise PairsFormatError(f"{path}: no valid pair rows ({len(problems)} malformed); "
                               f"see the schema in emergence.data.pairs")
    return rows, problems


def verify_user_pairs(rows: list[dict], limits: sandbox.Limits, workers: int,
                      path: str = "") -> tuple[list[dict], list[dict]]:
    """(kept, rejected) user rows: a row with tests is kept when its correct code passes
    them and its buggy code does not; a row without tests is kept as unverified.
    Each rejected entry gives both verdicts and their details (the exception's last line)."""
    testable = [r for r in rows if r.get("test")]
    jobs = []
    for r in testable:
        jobs += [(r["correct_code"], r["test"], r["entry_point"]),
                 (r["buggy_code"], r["test"], r["entry_point"])]
    verdicts = iter(sandbox.verify(jobs, limits, workers))
    kept, rejected = [], []
    for r in rows:
        if r in testable:
            c, b = next(verdicts), next(verdicts)
            if not (c.passed and not b.passed):
                why = ("correct code does not pass its tests" if not c.passed
                       else "buggy code passes the tests")
                rejected.append({"file": path, "pair_id": r["pair_id"], "reason": why,
                                 "correct_verdict": c.status, "correct_detail": c.detail,
                                 "buggy_verdict": b.status, "buggy_detail": b.detail})
                log.warning("%s: %s dropped: %s (correct=%s %s; buggy=%s %s)", path, r["pair_id"],
                            why, c.status, c.detail, b.status, b.detail)
                continue
            r = {**r, "correct_verdict": c.status, "buggy_verdict": b.status}
        else:
            r = {**r, "correct_verdict": UNVERIFIED, "buggy_verdict": UNVERIFIED}
        kept.append({"source": "user", **r})
    return kept, rejected


def verification_counts(rows: Iterable[dict]) -> dict[str, int]:
    """Rows whose tests confirmed them (verified) and rows that came without tests."""
    rows = list(rows)
    unverified = sum(r["correct_verdict"] == UNVERIFIED for r in rows)
    return {"verified": len(rows) - unverified, "unverified": unverified}


def kind_counts(rows: Iterable[dict]) -> dict[str, int]:
    counts = Counter(r["mutation"] for r in rows)
    return {k: counts[k] for k in sorted(counts)}
