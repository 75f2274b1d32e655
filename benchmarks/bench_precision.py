"""Time to precision: our estimators vs devinterp 2.0.1 on the default model at one checkpoint.

For the LLC (target: relative half-width of its 90 % interval <= 2 %) and for the BIF
block aggregates of the pairs (target: half-width of every block's interval <= 0.02),
the wall time of the first run whose interval meets the target, the number of draws
growing 50, 100, 200, ... (a fresh run each time, burn-in and w* loss included) until a
run would exceed ``--cap-s`` seconds. A side that never meets the target reports the width
it reached and the time extrapolated from width ~ 1/sqrt(draws), labelled ``extrapolated``.
A width counts only when its interval rests on at least 10 batch means (LLC) or bootstrap
blocks of draws (blocks); with fewer it is reported but too unreliable to meet a target.
Blocks are judged twice: ``blocks``, the influence stage's interval (problems and draws
resampled), whose problem-resampling part does not shrink with draws (its extrapolation
keeps that part as a floor, and says ``unreachable`` when the floor is above the target),
and ``blocks_mc``, the Monte Carlo part alone (draws resampled, every problem kept), the
precision that sampling buys.

Both sides sample the same module (devinterp gets its transformer-lens conversion) with
the same sampler family, RMSProp-preconditioned SGLD at params.yaml's eps, n*beta, gamma,
RMSProp constants, chains, burn-in and minibatch size:

* ours: the default settings (preconditioner adapted during burn-in then frozen, paired
  control variate, observables at every `sampler.obs_every`-th draw), ``sample_lm`` + ``llc`` / the influence
  stage's block aggregates;
* devinterp: its documented entry points ``llc()`` and ``bif()`` with
  ``sampling_method="rmsprop_sgld"`` (its preconditioner is re-estimated at every step), its
  own defaults elsewhere (32 batches for the loss at w*, observables at every draw, chains
  run one after the other, results written to zarr).

One yardstick for both: the LLC interval is our batch-means interval
(``estimators.llc.batch_means_interval``) of x_t = n*beta (L_m(w_t) - L(w*)) at the draws
after burn-in: for us paired with w* on the same minibatch, for devinterp (which has no
control variate) against its own ``init_loss``. The block intervals are the influence
stage's (``bif_matrix`` Pearson form, ``block_aggregates`` resampling problems and blocks of
draws via ``draw_resampler``) on each side's per-draw, per-sequence losses of the same 60
pairs (devinterp's per-token observable losses averaged over our scored positions).

Both sides use windows of n_ctx tokens (n_ctx - 1 predictions; devinterp feeds the whole
window to the model) and the pipeline's observable sequences cut to that length: the 60
pairs and the sampling / general-code windows (``stages.sample.observable_sets``), scored at
every observed draw on both sides (without the pipeline's component norms and residual reads).

Attribution: ours without the control variate (``paired=False``) on the LLC, ours with
observables at every draw (``obs_every=1``) on the blocks; the rest of the ratio is the
per-draw cost and per-draw variance of the two implementations (chains batched in one step
vs one after the other, frozen vs every-step preconditioner, no zarr writes). Each ratio is
also split into a per-draw variance ratio (width^2 x draws: draws needed) and a per-draw
cost ratio. Runs are interleaved (each draw count: every variant in turn), each in a fresh
process. On a machine shared with other work, ``--threads 1`` avoids torch's threads
waiting on a busy core (both sides alike).

    python benchmarks/bench_precision.py [--step 2000] [--cap-s 200] [--start 100] [--threads N] [--quick]

(about 30 minutes with the defaults on 2 cores; a larger --cap-s measures more and extrapolates less)
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import in_fresh_process, report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRAIN_BIN = ROOT / "artifacts/corpus/train.bin"
BLOCKS = ("correct->correct", "correct->buggy", "buggy->buggy")
LLC_TARGET, BLOCK_TARGET = 0.02, 0.02   # relative half-width of the LLC; half-width of each block
MAX_WINDOWS = 32768                      # devinterp's sampling dataset (it cycles beyond)
MIN_BATCHES = 10                         # an interval from fewer batch means / bootstrap blocks cannot meet a target


# -- shared setup and yardstick (run inside the fresh processes) -------------------------
def _quiet() -> None:
    import importlib
    import warnings

    importlib.import_module("pytorch_lightning")  # it sets its loggers' levels on import; ours come after
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning", "devinterp", "transformer_lens"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _setup(step: int, override: dict, threads: int | None):
    """params (sections changed by `override`, {section: {key: value}}, for --quick), the
    prediction length T = n_ctx - 1, the observable sets cut to T, the model."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    from emergence.config import load_params
    from emergence.models.checkpoints import open_series
    from emergence.stages.sample import observable_sets
    p = load_params(ROOT / "params.yaml")
    p = dataclasses.replace(p, **{k: dataclasses.replace(getattr(p, k), **v) for k, v in override.items()})
    T = p.model.n_ctx - 1
    cut = dataclasses.replace(p, model=dataclasses.replace(p.model, n_ctx=T))
    sets = observable_sets(cut, ROOT / "artifacts/corpus")
    model = open_series(p.model, ROOT / "artifacts/checkpoints").load(step).model.eval()
    return p, T, sets, model


def _llc_yardstick(x: np.ndarray, level: float) -> dict:
    from emergence.estimators.llc import batch_means_interval
    iv = batch_means_interval(x, level)
    half = (iv["hi"] - iv["lo"]) / 2
    return {"llc": iv["mean"], "lo": iv["lo"], "hi": iv["hi"], "half": half, "batches": iv["batches"],
            "rel_half": float(half / abs(iv["mean"])) if iv["mean"] else float("nan")}


def _block_yardstick(obs: np.ndarray, labels: np.ndarray, groups: np.ndarray, p) -> dict:
    """The influence stage's raw block aggregates (problems and draws resampled), plus the
    Monte Carlo half-width alone (draws resampled, every problem kept)."""
    from emergence.estimators.bif import bif_matrix, block_aggregates, block_masks, draw_resampler
    from emergence.estimators.diagnostics import block_length
    pairs = np.isin(labels, ["correct", "buggy"])
    obs, labels, groups = obs[..., pairs], labels[pairs], groups[pairs]

    def form(draws):
        return bif_matrix(draws, pearson=p.influence.pearson)
    agg = block_aggregates(form(obs), labels, groups, n_boot=p.influence.bootstrap, seed=p.seed,
                           level=p.influence.level, resample=draw_resampler(obs, form))
    masks = block_masks(labels, groups)
    resample, rng = draw_resampler(obs, form), np.random.default_rng(p.seed)
    mc = {b: [] for b in BLOCKS}
    for _ in range(p.influence.bootstrap):
        m = resample(rng)
        for b in BLOCKS:
            mc[b].append(float(m[masks[b]].mean()))
    q = ((1 - p.influence.level) / 2, (1 + p.influence.level) / 2)
    out = {}
    for b in BLOCKS:
        lo, hi = np.quantile(mc[b], q)
        out[b] = {"mean": agg[b]["mean"], "lo": agg[b]["lo"], "hi": agg[b]["hi"],
                  "half": (agg[b]["hi"] - agg[b]["lo"]) / 2, "mc_half": float(hi - lo) / 2}
    per_chain = max(obs.shape[1] // block_length(obs.mean(-1)), 1)  # as draw_resampler cuts the draws
    return {"blocks": out, "block_half": max(v["half"] for v in out.values()),
            "block_mc_half": max(v["mc_half"] for v in out.values()), "obs_draws": int(obs.shape[0] * obs.shape[1]),
            "bootstrap_blocks": int(obs.shape[0] * per_chain)}


def _guarded(fn, kwargs: dict) -> dict:
    """A run that fails comes back as {"error": ...} instead of hanging the parent's queue."""
    try:
        return fn(**kwargs)
    except Exception:  # noqa: BLE001 - reported in the payload
        return {"error": traceback.format_exc(limit=6)}


# -- the two sides --------------------------------------------------------------------
def _ours(task: str, draws: int, step: int, override: dict, threads: int | None, change: dict) -> dict:
    _quiet()
    import torch
    from emergence.estimators.llc import llc
    from emergence.sampling.observables import sequence_observables
    from emergence.sampling.sampler_module import sample_lm
    p, T, sets, model = _setup(step, override, threads)
    cfg = dataclasses.replace(p.sampler, draws=draws, **change)
    observables = sequence_observables(sets, p.device.memory_mb) if task == "bif" else None
    t0 = time.perf_counter()
    trace = sample_lm(model, cfg, p.seed, str(TRAIN_BIN), T, observables)
    t_sample = time.perf_counter() - t0
    est = llc(trace, p.influence.level)
    out = {"llc": {"llc": est["llc"], "lo": est["llc_lo"], "hi": est["llc_hi"],
                   "half": (est["llc_hi"] - est["llc_lo"]) / 2, "batches": est["batches"],
                   "rel_half": (est["llc_hi"] - est["llc_lo"]) / 2 / abs(est["llc"])}}
    if task == "bif":
        out.update(_block_yardstick(trace["obs"].values, trace["label"].values.astype(str),
                                    trace["group"].values.astype(str), p))
    return {**out, "draws": draws, "steps": cfg.steps, "sample_s": t_sample, "seconds": time.perf_counter() - t0,
            "threads": torch.get_num_threads()}


def _full_windows(seqs):
    """(N, T + 1) whole token windows of a SequenceSet (input ids then the last target), 0-padded."""
    import torch
    n, t = seqs.ids.shape
    full = torch.cat([seqs.ids, torch.zeros(n, 1, dtype=seqs.ids.dtype)], 1)
    full[torch.arange(n), seqs.lengths] = seqs.targets[torch.arange(n), seqs.lengths - 1]
    return full


def _order(stored: np.ndarray, ours: np.ndarray) -> np.ndarray:
    """Row of `stored` holding each row of `ours` (devinterp shuffles its observables once)."""
    rows: dict[bytes, list[int]] = {}
    for i, r in enumerate(stored):
        rows.setdefault(r.tobytes(), []).append(i)
    return np.array([rows[r.tobytes()].pop(0) for r in ours])


def _devinterp(task: str, draws: int, step: int, override: dict, threads: int | None, tmp: str) -> dict:
    _quiet()
    import torch
    import xarray as xr
    from datasets import Dataset
    from devinterp.slt.bif import bif
    from devinterp.slt.llc import llc
    from emergence.io import seed_for
    from emergence.models.hooked import gpt_to_hooked
    from emergence.data.windows import TokenWindows
    p, T, sets, model = _setup(step, override, threads)
    cfg = p.sampler
    hooked = gpt_to_hooked(model)
    x, y = TokenWindows(str(TRAIN_BIN), T, min((cfg.burn_in + draws) * cfg.batch_size, MAX_WINDOWS),
                        seed_for(p.seed, "devinterp-data")).batch(0)
    data = Dataset.from_dict({"input_ids": torch.cat([x, y[:, -1:]], 1).numpy()}).with_format("torch")
    full = torch.cat([_full_windows(s) for s in sets])
    mask = torch.cat([s.mask for s in sets]).numpy()
    labels = np.concatenate([s.labels for s in sets]).astype(str)
    groups = np.concatenate([s.groups for s in sets]).astype(str)
    if len(full) % cfg.batch_size:
        raise ValueError(f"{len(full)} observables are not a multiple of devinterp's batch {cfg.batch_size}")
    path = Path(tempfile.mkdtemp(dir=tmp)) / "samples.zarr"  # fresh: no cache reuse
    common = dict(lr=cfg.lr, n_beta=cfg.nbeta, localization=cfg.localization, num_chains=cfg.chains,
                  num_draws=draws, num_burnin_steps=cfg.burn_in, batch_size=cfg.batch_size,
                  sampling_method="rmsprop_sgld", rmsprop_alpha=cfg.rms_beta, rmsprop_eps=cfg.rms_alpha,
                  device="cpu", output_path=str(path))
    t0 = time.perf_counter()
    if task == "bif":
        obs_ds = Dataset.from_dict({"input_ids": full.numpy()}).with_format("torch")
        bif(hooked, data, {"observables": (obs_ds, len(full) // cfg.batch_size)},
            correlation_method="sequence", **common)
        own = {}
    else:
        res = llc(hooked, data, {}, **common)
        own = {"llc_own": float(res["llc_mean"]), "llc_own_std_over_chains": float(res["llc_std"])}
    t_sample = time.perf_counter() - t0
    ds = xr.open_datatree(str(path), engine="zarr", consolidated=False).dataset
    losses = ds["sampling_loss"].values.astype(np.float64).mean(axis=(2, 3))     # (chain, draw) after burn-in
    xllc = cfg.nbeta * (losses - float(ds["init_loss"].values.mean()))           # as its compute_llc, no control variate
    out = {"llc": {**_llc_yardstick(xllc, p.influence.level), **own}}
    if task == "bif":
        tok = ds["loss_observables"].values                                         # (chain, draw, seq, T)
        tok = tok[:, :, _order(ds["input_ids_observables"].values, full.numpy())]
        per_seq = (tok * mask).sum(-1) / mask.sum(-1)                               # our per-sequence observable
        out.update(_block_yardstick(per_seq, labels, groups, p))
    seconds = time.perf_counter() - t0
    shutil.rmtree(path.parent, ignore_errors=True)
    return {**out, "draws": draws, "steps": cfg.burn_in + draws, "sample_s": t_sample, "seconds": seconds,
            "threads": torch.get_num_threads()}


def ours(**kwargs) -> dict:
    return _guarded(_ours, kwargs)


def devinterp_run(**kwargs) -> dict:
    return _guarded(_devinterp, kwargs)


# -- the doubling schedule ------------------------------------------------------------
METRICS = {"llc": ("llc",), "bif": ("blocks", "blocks_mc")}
TARGETS = {"llc": LLC_TARGET, "blocks": BLOCK_TARGET, "blocks_mc": BLOCK_TARGET}


def width(run: dict, metric: str) -> float:
    """llc: relative half-width of the LLC interval; blocks: the largest half-width of the three
    blocks' intervals (problems and draws resampled); blocks_mc: the same, draws resampled only."""
    w = {"llc": lambda: run["llc"]["rel_half"], "blocks": lambda: run["block_half"],
         "blocks_mc": lambda: run["block_mc_half"]}[metric]()
    return float(w) if np.isfinite(w) else float("inf")


def qualifies(run: dict, metric: str) -> bool:
    """Whether the interval rests on at least MIN_BATCHES batch means (LLC) or bootstrap blocks of
    draws (blocks): with fewer, a batch-means or blocked-bootstrap width is too unreliable (a
    couple of observed draws per chain give a bootstrap width near zero) to count as meeting a target."""
    return (run["llc"]["batches"] if metric == "llc" else run["bootstrap_blocks"]) >= MIN_BATCHES


def _time_fit(runs: list[dict]):
    """seconds ~ a + b * draws over the runs so far (through the origin with one run)."""
    d = np.array([r["draws"] for r in runs], float)
    s = np.array([r["seconds"] for r in runs], float)
    if len(runs) >= 2 and np.ptp(d) > 0:
        b, a = np.polyfit(d, s, 1)
        if b > 0:
            return lambda n: float(max(a, 0.0) + b * n)
    return lambda n: float(s[-1] * n / d[-1])


def search(task: str, variants: dict, start: int, cap_s: float, max_runs: int, **kwargs) -> dict[str, list[dict]]:
    """Each variant at start, 2 start, 4 start, ... draws (variants interleaved at each count), until
    every interval of the task meets its target or the variant's next run is predicted to exceed `cap_s`."""
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    running = set(variants)
    draws = start
    while running:
        for name, fn in variants.items():
            if name not in running:
                continue
            ok = [r for r in runs[name] if "error" not in r]
            if ok and (_time_fit(ok)(draws) > cap_s or len(ok) >= max_runs):
                running.discard(name)
                continue
            r = in_fresh_process(fn, task=task, draws=draws, **kwargs)
            runs[name].append(r)
            if "error" in r:
                print(f"[{task}] {name} at {draws} draws failed:\n{r['error']}", file=sys.stderr, flush=True)
                running.discard(name)
                continue
            widths = {m: width(r, m) for m in METRICS[task]}
            print(f"[{task}] {name:>17}: {draws:6d} draws {r['seconds']:8.1f} s  "
                  + "  ".join(f"{m} {w:.4f}{'' if qualifies(r, m) else '*'}" for m, w in widths.items())
                  + ("  (*: fewer than %d batches/blocks, cannot count)" % MIN_BATCHES
                     if not all(qualifies(r, m) for m in widths) else ""), flush=True)
            if all(w <= TARGETS[m] and qualifies(r, m) for m, w in widths.items()):
                running.discard(name)
        draws *= 2
    return runs


def outcome(metric: str, runs: list[dict]) -> dict:
    """Time of the first run meeting the target; else extrapolated from the largest run, with
    width^2 = floor^2 + mc^2 * draws_then / draws (for the LLC and the Monte Carlo block interval
    floor = 0: width ~ 1/sqrt(draws); for the full block interval the floor is the problem-resampling
    part, sqrt(half^2 - mc_half^2), which more draws do not shrink: unreachable when above the target)."""
    target = TARGETS[metric]
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"target": target, "seconds_to_target": None, "extrapolated": False, "failed": True}
    met = [r for r in ok if width(r, metric) <= target and qualifies(r, metric)]
    if met:
        r = met[0]
        return {"target": target, "seconds_to_target": r["seconds"], "draws_to_target": r["draws"],
                "width": width(r, metric), "extrapolated": False}
    last = ok[-1]
    w = width(last, metric)
    floor = float(np.sqrt(max(last["block_half"] ** 2 - last["block_mc_half"] ** 2, 0.0))) if metric == "blocks" else 0.0
    mc = w if metric != "blocks" else last["block_mc_half"]
    out = {"target": target, "width": w, "width_at_draws": last["draws"], "extrapolated": True,
           "interval_batches_ok": qualifies(last, metric)}
    if metric == "blocks":
        out["problem_floor_estimate"] = floor
    if floor >= target or not np.isfinite(mc):
        return {**out, "seconds_to_target": None, "unreachable": True}
    needed = last["draws"] * mc ** 2 / (target ** 2 - floor ** 2)
    if not qualifies(last, metric):  # at least the draws for MIN_BATCHES batches (their number ~ sqrt(draws))
        have = last["llc"]["batches"] if metric == "llc" else last["bootstrap_blocks"]
        needed = max(needed, last["draws"] * (MIN_BATCHES / max(have, 1)) ** 2)
    return {**out, "seconds_to_target": _time_fit(ok)(needed), "draws_to_target": float(needed)}


def ratio(a: dict, b: dict) -> float | None:
    if a["seconds_to_target"] is None or b["seconds_to_target"] is None:
        return None
    return float(a["seconds_to_target"] / b["seconds_to_target"])


def efficiency(runs: list[dict], metric: str) -> dict:
    """Per-draw variance (width^2 x draws) and per-draw cost (seconds / draws, burn-in included),
    at the largest run: time to target ~ cost x variance / target^2, so a ratio of times splits into
    a ratio of variances (draws needed) times a ratio of costs."""
    last = [r for r in runs if "error" not in r][-1]
    return {"width2_x_draws": width(last, metric) ** 2 * last["draws"], "seconds_per_draw": last["seconds"] / last["draws"],
            "seconds_per_step": last["sample_s"] / last["steps"], "at_draws": last["draws"]}


def attribution(res: dict, runs: dict, metric: str, variant: str, label: str) -> dict:
    e = {k: efficiency(runs[k], metric) for k in ("ours", "devinterp", variant)}
    return {
        "ratio_devinterp_over_ours": ratio(res["devinterp"], res["ours"]),
        f"{label}: {variant} / ours": ratio(res[variant], res["ours"]),
        f"rest: devinterp / {variant}": ratio(res["devinterp"], res[variant]),
        "devinterp / ours split into": {
            "per-draw variance ratio (draws needed)": e["devinterp"]["width2_x_draws"] / e["ours"]["width2_x_draws"],
            "per-draw cost ratio (chains in turn vs batched, observable schedule, zarr writes)":
                e["devinterp"]["seconds_per_draw"] / e["ours"]["seconds_per_draw"]},
        f"{variant} / ours split into": {
            "per-draw variance ratio": e[variant]["width2_x_draws"] / e["ours"]["width2_x_draws"],
            "per-draw cost ratio": e[variant]["seconds_per_draw"] / e["ours"]["seconds_per_draw"]},
        "efficiency": e,
        "any_extrapolated": any(res[k]["extrapolated"] for k in ("ours", "devinterp", variant))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--step", type=int, default=2000, help="checkpoint step (artifacts/checkpoints)")
    ap.add_argument("--cap-s", type=float, default=200.0, help="no run predicted to take longer than this (per side)")
    ap.add_argument("--start", type=int, default=100, help="first number of draws (then doubled)")
    ap.add_argument("--max-runs", type=int, default=12, help="at most this many draw counts per variant")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads in every run (0: torch's default); 1 on a machine shared with other work")
    ap.add_argument("--quick", action="store_true",
                    help="smoke check, not a measurement: one run of 4 draws per variant after a burn-in of 2, "
                         "50 bootstrap resamples, one thread")
    args = ap.parse_args()
    override: dict = {}
    if args.quick:
        args.start, args.cap_s, args.max_runs = 4, 60.0, 1
        args.threads = args.threads or 1
        override = {"sampler": {"burn_in": 2}, "influence": {"bootstrap": 50}}
    os.environ.setdefault("TQDM_DISABLE", "1")
    from emergence.config import load_params
    p = load_params(ROOT / "params.yaml")
    p = dataclasses.replace(p, **{k: dataclasses.replace(getattr(p, k), **v) for k, v in override.items()})
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(start=args.start, cap_s=args.cap_s, max_runs=args.max_runs, step=args.step, override=override,
                      threads=args.threads or None)
        runs = {"llc": search("llc", {"ours": partial(ours, change={}),
                                      "devinterp": partial(devinterp_run, tmp=tmp),
                                      "ours_unpaired": partial(ours, change={"paired": False})}, **common),
                "bif": search("bif", {"ours": partial(ours, change={}),
                                      "devinterp": partial(devinterp_run, tmp=tmp),
                                      "ours_obs_every_1": partial(ours, change={"obs_every": 1})}, **common)}
    res = {m: {name: outcome(m, r) for name, r in runs[task].items()} for task, ms in METRICS.items() for m in ms}
    ratios = {m: ratio(res[m]["devinterp"], res[m]["ours"]) for m in res}
    s = p.sampler
    report("precision", {
        "targets": {"llc_relative_half_width": LLC_TARGET, "block_half_width": BLOCK_TARGET,
                    "level": p.influence.level, "bootstrap": p.influence.bootstrap},
        "seconds_to_target": {m: {k: v["seconds_to_target"] for k, v in r.items()} for m, r in res.items()},
        "extrapolated": {m: {k: v["extrapolated"] for k, v in r.items()} for m, r in res.items()},
        "ratio_devinterp_over_ours": ratios,
        "meets_5x": {m: (None if v is None else bool(v >= 5.0)) for m, v in ratios.items()},
        "attribution": {
            "llc": attribution(res["llc"], runs["llc"], "llc", "ours_unpaired", "variance reduction (control variate)"),
            "blocks_mc": attribution(res["blocks_mc"], runs["bif"], "blocks_mc", "ours_obs_every_1",
                                     f"observable schedule (every {p.sampler.obs_every}th draw)")},
        "outcomes": res, "runs": runs,
        "setup": {"step": args.step, "predictions_per_window": p.model.n_ctx - 1, "start_draws": args.start,
                  "cap_s": args.cap_s, "max_runs": args.max_runs, "quick": args.quick,
                  "override": override, "threads": args.threads or "torch default",
                  "sampler": {k: getattr(s, k) for k in ("lr", "nbeta", "localization", "rms_alpha", "rms_beta",
                                                         "rms_adapt", "chains", "burn_in", "batch_size", "obs_every",
                                                         "paired", "init_batches")},
                  "inference_memory_mb": p.device.memory_mb,
                  "devinterp": {"entry_points": "devinterp.slt.llc.llc({}) / devinterp.slt.bif.bif("
                                                "correlation_method='sequence')",
                                "sampling_method": "rmsprop_sgld (preconditioner re-estimated at every step, "
                                                   "no bias correction)",
                                "rmsprop_alpha": s.rms_beta, "rmsprop_eps": s.rms_alpha,
                                "num_init_loss_batches": "32 (its default)", "observables": "every draw",
                                "chains": "one after the other, the same minibatches (its defaults)"},
                  "total_wall_s": time.perf_counter() - t0}})


if __name__ == "__main__":
    main()
