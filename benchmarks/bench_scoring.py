"""Scoring throughput: inference batches bounded in padding vs one batch per memory budget.

The sampler's observables pass (`sample` and `rllc` score it at every observed draw) on the default
model at one checkpoint: the same sequences (`stages.sample.observable_sets`), the same
`token_loss_matrix`, the same budget (`device.memory_mb`); only the batching differs. Baseline:
sorted by length and cut every `batch_for` sequences, as before `scoring.MAX_PADDING` (the 120
HumanEval pair sequences then fill one batch padded to their longest). Each variant runs in a fresh
process, interleaved; the losses of both must agree.

    python benchmarks/bench_scoring.py [--step 2000] [--passes 10] [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, report, summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _score(step: int, passes: int, max_padding: float | None) -> dict:
    """Seconds per observables pass with `scoring.MAX_PADDING` set to `max_padding` (None: as it is)."""
    import torch
    from emergence.config import load_params
    from emergence.models import scoring
    from emergence.models.checkpoints import load_checkpoint
    from emergence.stages.sample import observable_sets
    if max_padding is not None:
        scoring.MAX_PADDING = max_padding
    p = load_params(ROOT / "params.yaml")
    sets = observable_sets(p, ROOT / "artifacts" / "corpus")
    model, _ = load_checkpoint(ROOT / "artifacts" / "checkpoints" / f"step_{step}.pt")
    model.eval()

    def once():
        return [scoring.token_loss_matrix(model, s, p.device.memory_mb) for s in sets]

    once()  # warm-up
    start = time.perf_counter()
    for _ in range(passes):
        losses = once()
    seconds = (time.perf_counter() - start) / passes
    batches = [(s, b) for s in sets for b in scoring.scoring_batches(model, s, p.device.memory_mb)]
    return {"seconds_per_pass": seconds, "tokens": sum(int(s.lengths.sum()) for s in sets),
            "padded_positions": sum(len(b) * int(s.lengths[b].max()) for s, b in batches), "batches": len(batches),
            "losses": torch.cat([x.sum(1) for x in losses]).tolist()}


def bounded(step: int, passes: int) -> dict:
    return _score(step, passes, None)


def one_batch_per_budget(step: int, passes: int) -> dict:
    return _score(step, passes, float("inf"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--step", type=int, default=2000)
    ap.add_argument("--passes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    results = interleaved({"bounded": bounded, "one_batch_per_budget": one_batch_per_budget}, args.repeats,
                          step=args.step, passes=args.passes)
    times = summary(results, "seconds_per_pass")
    a, b = results["bounded"][0], results["one_batch_per_budget"][0]
    diff = max(abs(x - y) for x, y in zip(a["losses"], b["losses"]))
    report("scoring", {
        "step": args.step, "passes": args.passes, "repeats": args.repeats,
        "seconds_per_pass": times, "speedup": times["one_batch_per_budget"] / times["bounded"],
        "batches": {k: r[0]["batches"] for k, r in results.items()},
        "padding_share": {k: r[0]["padded_positions"] / r[0]["tokens"] - 1 for k, r in results.items()},
        "max_abs_loss_difference": diff})
    if diff > 1e-3:
        raise SystemExit(f"the two batchings disagree: max |loss difference| {diff:.3g}")


if __name__ == "__main__":
    main()
