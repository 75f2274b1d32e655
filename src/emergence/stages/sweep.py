"""`emergence sweep` (offline runner) and `emergence sweep-trial` (one W&B agent trial).

A trial samples at one checkpoint (``--step``, default the last) with the proposed
sampler settings, without observables, and reports ``sgld/score`` with the LLC,
R-hat and divergence. Each trial's run config holds the tried values where params.yaml
has them (``sampler.lr``); the offline runner writes every trial to ``<out>/<sweep>.json``
and the best setting, in params.yaml form, to ``<out>/best.yaml``.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable

from emergence.config import as_dict, load_params
from emergence.device import torch_device
from emergence.estimators.llc import llc
from emergence.io import write_json
from emergence.models.checkpoints import open_series
from emergence.sampling.sampler_module import SamplerDivergence, sample_lm
from emergence.sampling.trace import loss_increase_at_draws
from emergence.tracking import sweep
from emergence.tracking.wandb import init_run

log = logging.getLogger(__name__)


def with_sampler(p, config: dict):
    """`p` with the sweep's values in its sampler section (validated as params.yaml is)."""
    cfg = dataclasses.replace(p.sampler, **config)
    cfg.__post_init__()
    return dataclasses.replace(p, sampler=cfg)


def trial(p, model, corpus: Path, run) -> float:
    """Sample with `p.sampler` and log and return the convergence score."""
    try:
        trace = sample_lm(model, p.sampler, p.seed, str(corpus / "train.bin"), p.model.n_ctx, device=p.device)
    except SamplerDivergence as exc:
        run.log({"sgld/score": sweep.DIVERGED, "sgld/diverged": 1, "sgld/diverged_step": exc.step})
        return sweep.DIVERGED
    est = llc(trace)
    score = sweep.convergence_score(loss_increase_at_draws(trace), est["rhat"], est["llc"])
    run.log({"sgld/score": score, "sgld/diverged": 0, "sgld/llc": est["llc"], "sgld/llc_se": est["llc_se"],
             "sgld/rhat": est["rhat"], "sgld/ess": est["ess"]})
    return score


def _model(p, args):
    series = open_series(p.model, args.checkpoints, torch_device(p.device))
    return series.load(args.step if args.step is not None else series.steps[-1]).model


def run_sweep(p, config_file: str, trials: int, out: Path, score: Callable) -> dict:
    """Propose `trials` settings from the sweep YAML, one W&B run each (config = params with
    the tried sampler values), `score(p_trial, run) -> float`; write the trials and best.yaml."""
    spec = sweep.load_sweep(config_file)
    name = Path(config_file).stem

    def one(config: dict) -> float:
        trial_params = with_sampler(p, config)
        run = init_run("sweep-trial", trial_params, name=f"sweep-{name}")
        run.config.update({"sweep": {"file": config_file, "parameters": sorted(config)}})
        try:
            return score(trial_params, run)
        finally:
            run.finish()

    results = sweep.run_offline(spec, one, trials, p.seed)
    best = sweep.best_setting(results)
    write_json(out / f"{name}.json", {"trials": results, "best": best})
    sweep.write_best(out / "best.yaml", best, config_file, len(results))
    log.info("best of %d: %s (score %.4f), written to %s; apply with: %s", len(results), best["sampler"],
             best["score"], out / "best.yaml", sweep.apply_command(best))
    return best


def main(args) -> None:
    """Offline: propose and run `--trials` settings from the sweep YAML."""
    p = load_params(args.params)
    model, corpus = _model(p, args), Path(args.corpus)
    run_sweep(p, args.config, args.trials, Path(args.out), lambda tp, run: trial(tp, model, corpus, run))


def agent_trial(args) -> None:
    """Online: one trial with the settings W&B's agent put in wandb.config, recorded again
    under the sampler section."""
    p = load_params(args.params)
    run = init_run("sweep-trial", p)
    fields = {f.name for f in dataclasses.fields(p.sampler)}
    trial_params = with_sampler(p, {k: v for k, v in dict(run.config).items() if k in fields})
    run.config.update({"sampler": as_dict(trial_params.sampler)}, allow_val_change=True)
    trial(trial_params, _model(p, args), Path(args.corpus), run)
    run.finish()
