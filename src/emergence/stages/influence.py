"""Stage `influence` (Experiment 1): LLC, BIF matrices and block curves over training.

Pure functions of the stored traces: re-running never re-samples.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from emergence.analysis import dynamics, plots
from emergence.config import load_params
from emergence.estimators.bif import bif_matrix, block_aggregates
from emergence.estimators.llc import llc
from emergence.io import atomic_path, write_json
from emergence.sampling.trace import TraceError, load_trace
from emergence.tracking.wandb import init_run, log_curves, log_matrix

log = logging.getLogger(__name__)
BLOCKS = ("correct->correct", "correct->buggy", "buggy->buggy")


def trace_files(directory: Path) -> list[tuple[int, Path]]:
    files = sorted(((int(f.stem.split("_")[1]), f) for f in directory.glob("step_*.nc")
                    if not f.name.endswith(".partial.nc")), key=lambda t: t[0])
    if not files:
        raise TraceError(f"no traces in {directory}: run `dvc repro sample` first")
    return files


def analyse(trace, p) -> dict:
    """LLC, and the BIF between the pair sequences (correct and buggy versions)."""
    pairs = np.isin(trace["label"].values.astype(str), ["correct", "buggy"])
    trace = trace.isel(observable=np.nonzero(pairs)[0])
    labels, groups = trace["label"].values.astype(str), trace["group"].values.astype(str)
    cov = bif_matrix(trace["obs"].values)
    pearson = bif_matrix(trace["obs"].values, pearson=True)
    blocks = block_aggregates(pearson if p.influence.pearson else cov, labels, groups,
                              n_boot=p.influence.bootstrap, seed=p.seed, level=p.influence.level)
    return {"llc": llc(trace), "blocks": blocks, "cov": cov, "pearson": pearson, "labels": labels,
            "groups": groups, "names": trace["observable"].values.astype(str)}


def main(args) -> None:
    p = load_params(args.params)
    out = Path(args.out)
    run = init_run("influence", p)
    steps, rows = [], []
    for step, path in trace_files(Path(args.traces)):
        r = analyse(load_trace(path), p)
        steps.append(step)
        with atomic_path(out / "bif_matrices" / f"step_{step}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, cov=r["cov"], pearson=r["pearson"], labels=r["labels"], groups=r["groups"],
                         names=r["names"])
        row = {"step": step, "llc": r["llc"]["llc"], "llc_se": r["llc"]["llc_se"], "rhat": r["llc"]["rhat"]}
        for name, agg in r["blocks"].items():
            key = name.replace("->", "_to_").replace("/", "_")
            row.update({key: agg["mean"], f"{key}_lo": agg["lo"], f"{key}_hi": agg["hi"]})
        rows.append(row)
        order = np.argsort(r["labels"] == "buggy", kind="stable")
        fig = plots.heatmap(r["pearson"][np.ix_(order, order)], [""] * len(order), [""] * len(order),
                            f"BIF (-Corr), step {step}: correct | buggy", center=True)
        log_matrix(run, f"influence/bif_step_{step}", r["pearson"], r["names"], r["names"], fig)
        plots.save(fig, out / "heatmaps" / f"bif_step_{step}.png")
        log.info("step %d: LLC %.2f +- %.2f; %s", step, row["llc"], row["llc_se"],
                 ", ".join(f"{b} {r['blocks'][b]['mean']:+.3f}" for b in BLOCKS))
    keys = [b.replace("->", "_to_") for b in BLOCKS]
    marks = {"flips": {k: dynamics.sign_flips(steps, [r[k] for r in rows]) for k in keys},
             "peaks": {k: dynamics.peaks(steps, [r[k] for r in rows]) for k in keys + ["llc"]}}
    write_json(out / "curve.json", rows)
    write_json(out / "metrics.json", {"final_llc": rows[-1]["llc"], "final_llc_se": rows[-1]["llc_se"],
                                      **{f"final_{k}": rows[-1][k] for k in keys},
                                      "sign_flips": marks["flips"], "peaks": marks["peaks"]})
    block_fig = plots.curves(steps, {b: [r[k] for r in rows] for b, k in zip(BLOCKS, keys)},
                             "BIF block aggregates over training", "mean BIF (-Corr)" if p.influence.pearson
                             else "mean BIF (-Cov)", {"sign flip": sorted({s for v in marks["flips"].values() for s in v})})
    llc_fig = plots.curves(steps, {"LLC": [r["llc"] for r in rows]}, "local learning coefficient", "LLC",
                           {"peak": marks["peaks"]["llc"]})
    log_curves(run, "influence/blocks", steps, {k: [r[k] for r in rows] for k in keys}, block_fig)
    log_curves(run, "influence/llc", steps, {"llc": [r["llc"] for r in rows]}, llc_fig)
    run.summary.update({"sign_flips": marks["flips"], "peaks": marks["peaks"]})
    run.finish()
    plots.save(block_fig, out / "blocks.png")
    plots.save(llc_fig, out / "llc.png")
