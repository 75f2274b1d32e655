"""Stage `pairs`: verified correct/buggy pairs from HumanEval (+ user files) and per-kind counts."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from emergence.config import load_params
from emergence.data import pairs
from emergence.io import write_json, write_jsonl

log = logging.getLogger(__name__)


def main(args) -> None:
    p = load_params(args.params)
    t0 = time.perf_counter()
    limits = p.sandbox.limits()
    problems = pairs.load_humaneval(args.humaneval)
    problems = problems[:p.pairs.max_problems] if p.pairs.max_problems else problems
    rows = pairs.build_pairs(problems, p.seed, p.pairs.max_per_problem,
                             p.pairs.candidates_per_problem, limits, p.sandbox.workers)
    malformed = 0
    for extra in p.pairs.extra_files:
        user_rows, problems_found = pairs.read_pairs(extra)
        malformed += len(problems_found)
        rows += pairs.verify_user_pairs(user_rows, limits, p.sandbox.workers)
    if len(rows) < p.pairs.min_pairs:
        raise RuntimeError(f"only {len(rows)} verified pairs, fewer than pairs.min_pairs="
                           f"{p.pairs.min_pairs}: raise pairs.candidates_per_problem or "
                           f"pairs.max_per_problem, or lower pairs.min_pairs")
    out = Path(args.out)
    write_jsonl(out / "pairs.jsonl", rows)
    metrics = {"pairs": len(rows), "problems": len({r["task_id"] for r in rows}),
               "per_kind": pairs.kind_counts(rows), "malformed_user_rows": malformed}
    write_json(out / "metrics.json", metrics)
    write_json(out / "timing.json", {"seconds": round(time.perf_counter() - t0, 1)})
    log.info("%d verified pairs over %d problems: %s", metrics["pairs"], metrics["problems"],
             metrics["per_kind"])
