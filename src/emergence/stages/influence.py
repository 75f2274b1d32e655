"""Stage `influence` (Experiment 1): LLC, BIF matrices and block curves over training.

Pure functions of the stored traces: re-running never re-samples. Each checkpoint's row
carries the LLC with its 90% interval and ``llc_negative`` (the interval lies below 0: the
checkpoint is not a local minimum of the sampling loss), the common mode of the per-sample
losses, and the block aggregates raw and with the common mode removed, each with its
bootstrap interval and the number of resamples skipped. Peaks and sign flips are claimed
only where the intervals separate (`emergence.analysis.dynamics`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from emergence.analysis import dynamics, plots
from emergence.config import load_params
from emergence.estimators.bif import (bif_matrix, block_aggregates, common_mode, draw_resampler,
                                      without_common_mode)
from emergence.estimators.diagnostics import effective_sample_size, split_rhat
from emergence.estimators.llc import llc
from emergence.io import atomic_path, write_json
from emergence.sampling.trace import TraceError, load_trace
from emergence.tracking.wandb import init_run, log_curves, log_matrix, use_reference

log = logging.getLogger(__name__)
BLOCKS = ("correct->correct", "correct->buggy", "buggy->buggy")
NEGATIVE_LLC = "negative: not a local minimum"


def trace_files(directory: Path) -> list[tuple[int, Path]]:
    files = sorted(((int(f.stem.split("_")[1]), f) for f in directory.glob("step_*.nc")
                    if not f.name.endswith(".partial.nc")), key=lambda t: t[0])
    if not files:
        raise TraceError(f"no traces in {directory}: run `dvc repro sample` first")
    return files


def analyse(trace, p) -> dict:
    """LLC, and the BIF between the pair sequences (correct and buggy versions), raw and with
    the common mode removed, each with block aggregates whose intervals resample problems and draws."""
    pairs = np.isin(trace["label"].values.astype(str), ["correct", "buggy"])
    trace = trace.isel(observable=np.nonzero(pairs)[0])
    labels, groups = trace["label"].values.astype(str), trace["group"].values.astype(str)
    obs = trace["obs"].values
    cov, pearson = bif_matrix(obs), bif_matrix(obs, pearson=True)

    def raw(draws):
        return bif_matrix(draws, pearson=p.influence.pearson)

    def removed(draws):
        return bif_matrix(without_common_mode(draws), pearson=p.influence.pearson)

    def aggregate(form):
        return block_aggregates(form(obs), labels, groups, n_boot=p.influence.bootstrap, seed=p.seed,
                                level=p.influence.level, resample=draw_resampler(obs, form))
    mean_loss = obs.mean(-1)
    return {"llc": llc(trace, p.influence.level), "blocks": aggregate(raw),
            "mixing": {"obs_rhat": split_rhat(mean_loss), "obs_ess": effective_sample_size(mean_loss)},
            "blocks_mode_removed": aggregate(removed), "common_mode": common_mode(obs), "cov": cov,
            "pearson": pearson, "labels": labels, "groups": groups, "names": trace["observable"].values.astype(str)}


def key_of(block: str, variant: str = "") -> str:
    """Curve column of a block: correct->buggy/same_problem -> correct_to_buggy_same_problem[_mode_removed]."""
    return block.replace("->", "_to_").replace("/", "_") + (f"_{variant}" if variant else "")


VARIANTS = {"": "blocks", "mode_removed": "blocks_mode_removed"}


def curve_row(step: int, r: dict) -> dict:
    """One checkpoint's row: LLC with its interval and flag, common mode, block aggregates
    (raw and mode removed) with intervals and the number of bootstrap resamples skipped."""
    e = r["llc"]
    row = {"step": step, "llc": e["llc"], "llc_se": e["llc_se"], "llc_lo": e["llc_lo"], "llc_hi": e["llc_hi"],
           "llc_negative": bool(e["negative"]), "rhat": e["rhat"], "ess": e["ess"],
           "common_mode_share": r["common_mode"]["share"], "common_mode_alignment": r["common_mode"]["alignment"],
           **r["mixing"]}
    for variant, field in VARIANTS.items():
        for name, agg in r[field].items():
            key = key_of(name, variant)
            row.update({key: agg["mean"], f"{key}_lo": agg["lo"], f"{key}_hi": agg["hi"],
                        f"{key}_bootstrap_skipped": agg["skipped"]})
    return row


def summarise(rows: list[dict], n_boot: int) -> dict:
    """metrics.json: final values with intervals, resolved peaks/flips (a negative-LLC checkpoint
    is never a peak), negative-LLC steps and the bootstrap resamples skipped (nonzero counts
    only, by step and column)."""
    steps = [r["step"] for r in rows]
    eligible = [not r["llc_negative"] for r in rows]
    keys = [key_of(b, v) for v in VARIANTS for b in BLOCKS]

    def col(k):
        return [r[k] for r in rows]
    final = rows[-1]
    skipped = {f"{r['step']}/{k[:-len('_bootstrap_skipped')]}": r[k] for r in rows for k in r
               if k.endswith("_bootstrap_skipped") and r[k]}
    return {"final_step": final["step"],
            **{f"final_{k}": final[k] for k in ("llc", "llc_lo", "llc_hi", "llc_se")},
            "final_llc_negative": final["llc_negative"],
            "llc_negative_steps": [s for s, ok in zip(steps, eligible) if not ok],
            "final_obs_rhat": final["obs_rhat"], "final_obs_ess": final["obs_ess"],
            "final_common_mode_share": final["common_mode_share"],
            "final_common_mode_alignment": final["common_mode_alignment"],
            **{f"final_{k}{end}": final[f"{k}{end}"] for k in keys for end in ("", "_lo", "_hi")},
            "sign_flips": {k: dynamics.resolved_flips(steps, col(k), col(f"{k}_lo"), col(f"{k}_hi")) for k in keys},
            "peaks": {k: dynamics.resolved_peaks(steps, col(k), col(f"{k}_lo"), col(f"{k}_hi"),
                                                 eligible) for k in keys + ["llc"]},
            "bootstrap_resamples": n_boot, "bootstrap_skipped": skipped}


def figures(rows: list[dict], metrics: dict, pearson: bool) -> dict:
    """Block curves (raw and mode removed) and the LLC, each with its interval band; negative-LLC
    checkpoints circled; resolved flips/peaks as vertical marks."""
    steps = [r["step"] for r in rows]
    negative = {NEGATIVE_LLC: [r["llc_negative"] for r in rows]}

    def steps_of(found: dict, keys) -> list[int]:
        return sorted({s for k in keys if isinstance(found[k], list) for s in found[k]})
    out = {}
    for variant, title in (("", "BIF block aggregates over training"),
                           ("mode_removed", "BIF block aggregates, common mode removed")):
        keys = [key_of(b, variant) for b in BLOCKS]
        skipped = sum(r[f"{k}_bootstrap_skipped"] for r in rows for k in keys)
        out[variant or "raw"] = plots.curves(
            steps, {b: [r[k] for r in rows] for b, k in zip(BLOCKS, keys)},
            f"{title}\n(bootstrap resamples skipped: {skipped})",
            "mean BIF (-Corr)" if pearson else "mean BIF (-Cov)",
            {"sign flip": steps_of(metrics["sign_flips"], keys), "peak": steps_of(metrics["peaks"], keys)},
            intervals={b: ([r[f"{k}_lo"] for r in rows], [r[f"{k}_hi"] for r in rows]) for b, k in zip(BLOCKS, keys)},
            flagged=negative)
    out["llc"] = plots.curves(steps, {"LLC": [r["llc"] for r in rows]}, "local learning coefficient (90% interval)",
                              "LLC", {"peak": steps_of(metrics["peaks"], ["llc"])},
                              intervals={"LLC": ([r["llc_lo"] for r in rows], [r["llc_hi"] for r in rows])},
                              flagged=negative)
    return out


def sampler_checks(directory: Path, row: dict, p) -> dict:
    """The last checkpoint re-sampled at eps/2 and with another seed (stage `sample`, ``checks/``).

    Step size: flagged when the LLC moves by more than the two intervals' combined half-width,
    sqrt(h_eps^2 + h_eps/2^2). Seed: every reported value (LLC, block aggregates raw and with
    the common mode removed) of the other seed's trace must lie inside this one's interval.
    """
    step = row["step"]
    half = llc(load_trace(directory / f"step_{step}.half_lr.nc"), p.influence.level)
    other = curve_row(step, analyse(load_trace(directory / f"step_{step}.other_seed.nc"), p))
    tolerance = float(np.hypot(row["llc_hi"] - row["llc_lo"], half["llc_hi"] - half["llc_lo"]) / 2)
    keys = ["llc"] + [key_of(b, v) for v in VARIANTS for b in BLOCKS]
    outside = {k: {"other_seed": other[k], "lo": row[f"{k}_lo"], "hi": row[f"{k}_hi"]} for k in keys
               if not row[f"{k}_lo"] <= other[k] <= row[f"{k}_hi"]}
    out = {"step": step, "llc": row["llc"], "llc_half_lr": half["llc"], "llc_half_lr_lo": half["llc_lo"],
           "llc_half_lr_hi": half["llc_hi"], "step_size_tolerance": tolerance,
           "step_size_ok": bool(abs(half["llc"] - row["llc"]) <= tolerance),
           "seed_values_checked": len(keys), "seed_outside_interval": outside, "seed_ok": not outside}
    if not out["step_size_ok"]:
        log.warning("step %d: the LLC moves from %.2f to %.2f at half the step size (more than %.2f): "
                    "sampler.lr is too large for this model; halve it", step, row["llc"], half["llc"], tolerance)
    for k, v in outside.items():
        log.warning("step %d: with another seed %s = %.4g lies outside [%.4g, %.4g]: raise sampler.draws "
                    "or sampler.chains", step, k, v["other_seed"], v["lo"], v["hi"])
    return out


def interval(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    return [r[f"{key}_lo"] for r in rows], [r[f"{key}_hi"] for r in rows]


def main(args) -> None:
    p = load_params(args.params)
    out = Path(args.out)
    run = init_run("influence", p)
    use_reference(run, "traces", "sgld-trace", args.traces)
    rows = []
    for step, path in trace_files(Path(args.traces)):
        r = analyse(load_trace(path), p)
        with atomic_path(out / "bif_matrices" / f"step_{step}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, cov=r["cov"], pearson=r["pearson"], labels=r["labels"], groups=r["groups"],
                         names=r["names"])
        row = curve_row(step, r)
        rows.append(row)
        order = np.argsort(r["labels"] == "buggy", kind="stable")
        fig = plots.heatmap(r["pearson"][np.ix_(order, order)], [""] * len(order), [""] * len(order),
                            f"BIF (-Corr), step {step}: correct | buggy", center=True)
        log_matrix(run, f"influence/bif_step_{step}", r["pearson"], r["names"], r["names"], fig)
        plots.save(fig, out / "heatmaps" / f"bif_step_{step}.png")
        log.info("step %d: LLC %.2f [%.2f, %.2f]%s; common mode %.0f%% of the variance; %s", step, row["llc"],
                 row["llc_lo"], row["llc_hi"], " NEGATIVE: not a local minimum" if row["llc_negative"] else "",
                 100 * row["common_mode_share"],
                 ", ".join(f"{b} {row[key_of(b)]:+.3f} (mode removed {row[key_of(b, 'mode_removed')]:+.3f})"
                           for b in BLOCKS))
    metrics = summarise(rows, p.influence.bootstrap)
    if p.sampler.checks:
        metrics["checks"] = sampler_checks(Path(args.traces) / "checks", rows[-1], p)
    write_json(out / "curve.json", rows)
    write_json(out / "metrics.json", metrics)
    figs = figures(rows, metrics, p.influence.pearson)
    steps = [r["step"] for r in rows]
    for variant, name in (("", "blocks"), ("mode_removed", "blocks_mode_removed")):
        keys = [key_of(b, variant) for b in BLOCKS]
        log_curves(run, f"influence/{name}", steps, {k: [r[k] for r in rows] for k in keys},
                   figs[variant or "raw"], intervals={k: interval(rows, k) for k in keys})
    log_curves(run, "influence/llc", steps, {"llc": [r["llc"] for r in rows]}, figs["llc"],
               intervals={"llc": interval(rows, "llc")})
    run.summary.update({"sign_flips": metrics["sign_flips"], "peaks": metrics["peaks"],
                        "llc_negative_steps": metrics["llc_negative_steps"]})
    run.finish()
    plots.save(figs["raw"], out / "blocks.png")
    plots.save(figs["mode_removed"], out / "blocks_mode_removed.png")
    plots.save(figs["llc"], out / "llc.png")
