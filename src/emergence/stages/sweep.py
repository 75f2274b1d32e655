"""`emergence sweep` (offline runner) and `emergence sweep-trial` (one W&B agent trial).

A trial samples at one checkpoint (``--step``, default the last) with the proposed
sampler settings, without observables, and reports ``sgld/score`` with the LLC,
R-hat and divergence.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from emergence.config import load_params
from emergence.estimators.llc import llc
from emergence.io import write_json
from emergence.models.checkpoints import open_series
from emergence.sampling.sampler_module import SamplerDivergence, sample_lm
from emergence.sampling.trace import loss_increase_at_draws
from emergence.tracking import sweep
from emergence.tracking.wandb import init_run

log = logging.getLogger(__name__)


def trial(p, model, corpus: Path, config: dict, run) -> float:
    cfg = dataclasses.replace(p.sampler, **config)
    cfg.__post_init__()
    try:
        trace = sample_lm(model, cfg, p.seed, str(corpus / "train.bin"), p.model.n_ctx)
    except SamplerDivergence as exc:
        run.log({"sgld/score": sweep.DIVERGED, "sgld/diverged": 1, "sgld/diverged_step": exc.step})
        return sweep.DIVERGED
    est = llc(trace)
    score = sweep.convergence_score(loss_increase_at_draws(trace), est["rhat"], est["llc"])
    run.log({"sgld/score": score, "sgld/diverged": 0, "sgld/llc": est["llc"], "sgld/llc_se": est["llc_se"],
             "sgld/rhat": est["rhat"], "sgld/ess": est["ess"]})
    return score


def _model(p, args):
    series = open_series(p.model, args.checkpoints)
    return series.load(args.step if args.step is not None else series.steps[-1]).model


def main(args) -> None:
    """Offline: propose and run `--trials` settings from the sweep YAML."""
    p = load_params(args.params)
    spec = sweep.load_sweep(args.config)
    model = _model(p, args)

    def one(config: dict) -> float:
        run = init_run("sweep-trial", p, name=f"sweep-{Path(args.config).stem}")
        run.config.update({"sweep_" + k: v for k, v in config.items()})
        try:
            return trial(p, model, Path(args.corpus), config, run)
        finally:
            run.finish()

    results = sweep.run_offline(spec, one, args.trials, p.seed)
    best = max(results, key=lambda r: r["score"])
    write_json(Path(args.out) / f"{Path(args.config).stem}.json", {"trials": results, "best": best})
    log.info("best of %d: %s (score %.4f)", len(results), best["config"], best["score"])


def agent_trial(args) -> None:
    """Online: one trial with the settings W&B's agent put in wandb.config."""
    p = load_params(args.params)
    run = init_run("sweep-trial", p)
    config = {k: v for k, v in dict(run.config).items() if k in {f.name for f in dataclasses.fields(p.sampler)}}
    trial(p, _model(p, args), Path(args.corpus), config, run)
    run.finish()
