"""Stage `emergence` (Experiment 2): held-out accuracy of the correctness directions over training.

The SAE predictor followed is the one selected on the validation split at the last
checkpoint (never by held-out accuracy). Claims are made only where the 90% bootstrap
intervals of held-out accuracy separate; otherwise the metric reads ``"not resolved"``:

* emergence step: the first checkpoint from which the predictor's lower bound exceeds the
  upper bound of the best lower baseline (random latent, length only) at every later step;
* shape, with rise = last - first accuracy: ``sudden`` when one step between consecutive
  checkpoints carries at least half of the rise and its intervals separate (lower bound
  after > upper bound before); ``gradual`` when no such step carries half of the rise but
  some intermediate checkpoint's interval separates from both the first and the last.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from emergence.analysis import dynamics, plots
from emergence.analysis.dynamics import NOT_RESOLVED
from emergence.config import load_params
from emergence.io import read_json, write_json
from emergence.sae.directions import PREDICTORS
from emergence.tracking.wandb import init_run, log_curves, use_reference

log = logging.getLogger(__name__)
LOWER_BASELINES = ("random_latent", "length_only")
BASELINES = ("logistic_probe",) + LOWER_BASELINES


def emergence_step(steps: list[int], lo: list[float], baseline_hi: list[float]) -> int | str:
    """First step whose lower bound exceeds the best baseline's upper bound there and at every later step."""
    first = dynamics.first_step_above(steps, lo, baseline_hi)
    return NOT_RESOLVED if first is None else first


def classify_shape(value: list[float], lo: list[float], hi: list[float]) -> str:
    """``sudden``, ``gradual`` or ``not resolved`` from point values and interval bounds over checkpoints."""
    v, lo, hi = (np.asarray(a, dtype=float) for a in (value, lo, hi))
    rise = v[-1] - v[0]
    if len(v) < 2 or not lo[-1] > hi[0]:                  # the overall rise itself is not resolved
        return NOT_RESOLVED
    jumps = np.diff(v)
    big = jumps >= 0.5 * rise
    if np.any(big & (lo[1:] > hi[:-1])):
        return "sudden"
    if not big.any() and np.any((lo[1:-1] > hi[0]) & (hi[1:-1] < lo[-1])):
        return "gradual"
    return NOT_RESOLVED


def main(args) -> None:
    p = load_params(args.params)
    results = sorted((read_json(f) for f in Path(args.sae).glob("step_*/directions.json")), key=lambda r: r["step"])
    results = [r for r in results if r["step"] in p.sae.checkpoints]
    if not results:
        raise FileNotFoundError(f"no SAE results in {args.sae}: run `dvc repro` for the sae stages first")
    steps = [r["step"] for r in results]
    rows = []
    for r in results:
        row = {"step": r["step"], "selected": r["selected"], "steering_effect": r["steering"]["effect_mean"],
               "steering_random": r["steering"]["random_mean"]}
        for name, metrics in r["table"].items():
            for metric in ("accuracy", "auroc"):
                m = metrics[metric]
                row.update({f"{name}_{metric}": m["value"], f"{name}_{metric}_lo": m["lo"], f"{name}_{metric}_hi": m["hi"],
                            f"{name}_{metric}_bootstrap_skipped": m["bootstrap_skipped"]})
        rows.append(row)
    best = results[-1]["selected"]
    if best not in PREDICTORS:
        raise ValueError(f"{args.sae}: step {steps[-1]} selected {best!r}, not one of {PREDICTORS}: re-run the sae stage")
    value, lo, hi = ([r[f"{best}_accuracy{s}"] for r in rows] for s in ("", "_lo", "_hi"))
    baseline_hi = np.max([[r[f"{b}_accuracy_hi"] for r in rows] for b in LOWER_BASELINES], axis=0).tolist()
    first = emergence_step(steps, lo, baseline_hi)
    shape = classify_shape(value, lo, hi)
    last = rows[-1]
    out = Path(args.out)
    write_json(out / "curve.json", rows)
    write_json(out / "metrics.json", {
        "best_predictor": best, "selected_on": "validation", "final_accuracy": last[f"{best}_accuracy"],
        "final_accuracy_lo": last[f"{best}_accuracy_lo"], "final_accuracy_hi": last[f"{best}_accuracy_hi"],
        "final_auroc": last[f"{best}_auroc"], "emergence_step": first, "shape": shape,
        "bootstrap_skipped": int(sum(r[f"{best}_accuracy_bootstrap_skipped"] for r in rows))})
    series = {k: [r[f"{k}_accuracy"] for r in rows] for k in (best,) + BASELINES}
    fig = plots.curves(steps, series, f"held-out accuracy of correctness directions ({shape})", "accuracy",
                       {"beats lower baselines": [] if first == NOT_RESOLVED else [first]})
    run = init_run("emergence", p)
    for step in steps:
        use_reference(run, f"sae-step{step}", "sae", Path(args.sae) / f"step_{step}")
    log_curves(run, "emergence/accuracy", steps, series, fig, intervals={best: (lo, hi)})
    log_curves(run, "emergence/auroc", steps, {k: [r[f"{k}_auroc"] for r in rows] for k in (best,) + BASELINES})
    run.summary.update({"emergence_step": first, "shape": shape, "best_predictor": best})
    run.finish()
    plots.save(fig, out / "accuracy.png")
    log.info("predictor %s (selected on validation): accuracy %s over steps %s; emergence step %s (%s)", best,
             [round(v, 3) for v in series[best]], steps, first, shape)
