"""Stage `emergence` (Experiment 2): held-out accuracy of the correctness directions over training.

Marks the first step from which the best SAE predictor beats both lower baselines
(random latent, length only) significantly - its interval's lower end above both
baselines' upper ends, from that step on - and classifies the rise:
``none`` (accuracy rises by less than 0.05 overall), ``sudden`` (one step between
consecutive checkpoints carries at least half of the rise), otherwise ``gradual``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from emergence.analysis import dynamics, plots
from emergence.config import load_params
from emergence.io import read_json, write_json
from emergence.tracking.wandb import init_run, log_curves

log = logging.getLogger(__name__)
PREDICTORS = ("latent_t_max", "latent_t_min", "top_k")
BASELINES = ("logistic_probe", "random_latent", "length_only")


def classify_shape(values: list[float], min_rise: float = 0.05) -> str:
    v = np.asarray(values, dtype=float)
    rise = float(v.max() - v[0])
    if rise < min_rise:
        return "none"
    jump = float(np.max(np.diff(v)))
    return "sudden" if jump >= 0.5 * rise else "gradual"


def main(args) -> None:
    p = load_params(args.params)
    results = sorted((read_json(f) for f in Path(args.sae).glob("step_*/directions.json")), key=lambda r: r["step"])
    results = [r for r in results if r["step"] in p.sae.checkpoints]
    if not results:
        raise FileNotFoundError(f"no SAE results in {args.sae}: run `dvc repro` for the sae stages first")
    steps = [r["step"] for r in results]
    rows = []
    for r in results:
        row = {"step": r["step"], "steering_effect": r["steering"]["effect_mean"],
               "steering_random": r["steering"]["random_mean"]}
        for name, metrics in r["table"].items():
            for metric in ("accuracy", "auroc"):
                m = metrics[metric]
                row.update({f"{name}_{metric}": m["value"], f"{name}_{metric}_lo": m["lo"], f"{name}_{metric}_hi": m["hi"]})
        rows.append(row)
    best = max(PREDICTORS, key=lambda k: rows[-1][f"{k}_accuracy"])
    lower = np.maximum([r["random_latent_accuracy_hi"] for r in rows], [r["length_only_accuracy_hi"] for r in rows])
    first = dynamics.first_step_above(steps, [r[f"{best}_accuracy_lo"] for r in rows], lower)
    shape = classify_shape([r[f"{best}_accuracy"] for r in rows])
    out = Path(args.out)
    write_json(out / "curve.json", rows)
    write_json(out / "metrics.json", {"best_predictor": best, "final_accuracy": rows[-1][f"{best}_accuracy"],
                                      "final_auroc": rows[-1][f"{best}_auroc"],
                                      "emergence_step": first, "shape": shape})
    series = {k: [r[f"{k}_accuracy"] for r in rows] for k in (best,) + BASELINES}
    fig = plots.curves(steps, series, f"held-out accuracy of correctness directions ({shape})", "accuracy",
                       {"beats lower baselines": [first] if first is not None else []})
    run = init_run("emergence", p)
    log_curves(run, "emergence/accuracy", steps, series, fig)
    log_curves(run, "emergence/auroc", steps, {k: [r[f"{k}_auroc"] for r in rows] for k in (best,) + BASELINES})
    run.summary.update({"emergence_step": first, "shape": shape, "best_predictor": best})
    run.finish()
    plots.save(fig, out / "accuracy.png")
    log.info("best predictor %s: accuracy %s over steps %s; emergence step %s (%s)", best,
             [round(v, 3) for v in series[best]], steps, first, shape)
