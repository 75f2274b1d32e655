"""Stage `pairs`: verified correct/buggy pairs from HumanEval (+ user files), per-kind counts,
and every dropped user row with the reason (`rejected.jsonl`)."""
from __future__ import annotations

import logging
from pathlib import Path

from emergence.config import ConfigError, load_params
from emergence.data import pairs
from emergence.io import write_json, write_jsonl

log = logging.getLogger(__name__)


def check_extra_files(paths: list[str]) -> None:
    """Fail before any work when a listed user pairs file does not exist."""
    missing = [f for f in paths if not Path(f).is_file()]
    if missing:
        raise ConfigError(f"params: pairs.extra_files lists {', '.join(missing)}, which does not "
                          f"exist: add the JSONL file under pairs/ or remove it from the list")


def main(args) -> None:
    p = load_params(args.params)
    check_extra_files(p.pairs.extra_files)
    limits = p.sandbox.limits()
    problems = pairs.load_humaneval(args.humaneval)
    problems = problems[:p.pairs.max_problems] if p.pairs.max_problems else problems
    rows = pairs.build_pairs(problems, p.seed, p.pairs.max_per_problem,
                             p.pairs.candidates_per_problem, limits, p.sandbox.workers)
    seen = {r["pair_id"]: "HumanEval" for r in rows}
    rejected: list[dict] = []
    for extra in p.pairs.extra_files:
        user_rows, malformed = pairs.read_pairs(extra, seen)
        kept, dropped = pairs.verify_user_pairs(user_rows, limits, p.sandbox.workers, extra)
        rows += kept
        rejected += [m.record() for m in malformed] + dropped
    if len(rows) < p.pairs.min_pairs:
        raise ConfigError(f"only {len(rows)} verified pairs, fewer than pairs.min_pairs="
                          f"{p.pairs.min_pairs}: raise pairs.candidates_per_problem or "
                          f"pairs.max_per_problem, or lower pairs.min_pairs")
    out = Path(args.out)
    write_jsonl(out / "pairs.jsonl", rows)
    write_jsonl(out / "rejected.jsonl", rejected)
    metrics = {"pairs": len(rows), "problems": len({r["task_id"] for r in rows}),
               "per_kind": pairs.kind_counts(rows), **pairs.verification_counts(rows),
               "malformed_user_rows": sum(r["reason"] == "malformed" for r in rejected),
               "rejected_user_rows": len(rejected)}
    write_json(out / "metrics.json", metrics)
    log.info("%d pairs over %d problems (%d verified, %d unverified): %s", metrics["pairs"],
             metrics["problems"], metrics["verified"], metrics["unverified"], metrics["per_kind"])
    if rejected:
        log.warning("%d user rows dropped; reasons in %s", len(rejected), out / "rejected.jsonl")
