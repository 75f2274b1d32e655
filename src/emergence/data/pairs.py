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

User-supplied pairs (MBPP, LLM failures) use the same schema; ``test`` and
``entry_point`` are optional and, when given, the pair is verified like ours.
"""
from __future__ import annotations

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
    if not out and row["correct_code"] == row["buggy_code"]:
        out.append(RowProblem(path, lineno, "buggy_code", "identical to correct_code"))
    span = row.get("span")
    if span is not None and not (len(span) == 2 and all(isinstance(x, int) for x in span)
                                 and 0 <= span[0] <= span[1] <= len(row.get("buggy_code", ""))):
        out.append(RowProblem(path, lineno, "span", "must be [start, end] inside buggy_code"))
    return out


def read_pairs(path: str | Path) -> tuple[list[dict], list[RowProblem]]:
    """Valid rows of a pairs JSONL file, and one problem per malformed row (line and field).

    Malformed rows are skipped, valid ones kept; a file with no valid row raises.
    """
    rows, problems = [], []
    path = str(path)
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(RowProblem(path, lineno, "<json>", f"invalid JSON ({exc.msg})"))
                continue
            found = _row_problems(row, path, lineno)
            problems.extend(found)
            if not found:
                rows.append(row)
    for p in problems:
        log.warning("skipping malformed pair: %s", p)
    if not rows:
        raise PairsFormatError(f"{path}: no valid pair rows ({len(problems)} malformed); "
                               f"see the schema in emergence.data.pairs")
    return rows, problems


def verify_user_pairs(rows: list[dict], limits: sandbox.Limits, workers: int) -> list[dict]:
    """Keep user rows whose tests confirm them; rows without tests are kept as 'not_run'."""
    testable = [r for r in rows if r.get("test") and r.get("entry_point")]
    jobs = []
    for r in testable:
        jobs += [(r["correct_code"], r["test"], r["entry_point"]),
                 (r["buggy_code"], r["test"], r["entry_point"])]
    verdicts = iter(sandbox.verify(jobs, limits, workers))
    kept = []
    for r in rows:
        if r in testable:
            c, b = next(verdicts), next(verdicts)
            if not (c.passed and not b.passed):
                log.warning("%s: dropped, tests say correct=%s buggy=%s", r["pair_id"], c.status, b.status)
                continue
            r = {**r, "correct_verdict": c.status, "buggy_verdict": b.status}
        else:
            r = {"correct_verdict": "not_run", "buggy_verdict": "not_run", **r}
        kept.append({"source": "user", **r})
    return kept


def kind_counts(rows: Iterable[dict]) -> dict[str, int]:
    counts = Counter(r["mutation"] for r in rows)
    return {k: counts[k] for k in sorted(counts)}
