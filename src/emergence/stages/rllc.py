"""Stage `rllc`: refined LLCs over training (Wang et al. 2025, arXiv 2410.02984).

* weight-refined: lambda_hat(w*; V) with SGLD restricted to one component V (each head
  ``L{l}H{h}``, each MLP ``L{l}.mlp`` and each whole block ``L{l}``), the rest fixed at the
  checkpoint;
* data-refined: the whole-model LLC with the sampling loss on correct code, and on buggy
  code (the solution bodies of the pairs), instead of the corpus.
The chains restricted to a head or an MLP also record the losses of the observable sequences (the
pairs, sampling and general-code windows, as in the `sample` stage): the
`susceptibility` stage reads the component-localised observable phi_V (the sampling
loss under the posterior restricted to V) from them.
Heads are clustered by the shape of their rLLC trajectories (Ward linkage on z-scored
curves). Traces are kept and reused by cache key, like the main sampling stage.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from emergence.analysis import plots
from emergence.config import as_dict, load_params
from emergence.device import torch_device
from emergence.estimators.llc import llc
from emergence.io import write_json
from emergence.models.checkpoints import open_series
from emergence.models.scoring import load_pair_sequences
from emergence.models.components import Components
from emergence.sampling.observables import sequence_observables
from emergence.sampling.sampler_module import sample_lm, sample_sequences
from emergence.sampling.trace import cache_key, save_trace
from emergence.stages.sample import (NOT_IN_KEY, existing, observable_sets, observables_digest, selected_steps,
                                     weights_digest)
from emergence.tracking.wandb import init_run, log_curves, use_reference

log = logging.getLogger(__name__)


def cluster_trajectories(curves: np.ndarray, k: int) -> list[int]:
    """Cluster labels (1..k) of rows of (components, steps) curves by their z-scored shape."""
    if len(curves) <= 1:
        return [1] * len(curves)
    z = (curves - curves.mean(1, keepdims=True)) / np.where(curves.std(1, keepdims=True) > 0,
                                                            curves.std(1, keepdims=True), 1.0)
    return fcluster(linkage(z, "ward"), t=min(k, len(curves)), criterion="maxclust").tolist()


def main(args) -> None:
    p = load_params(args.params)
    corpus, out = Path(args.corpus), Path(args.out)
    series = open_series(p.model, args.checkpoints, torch_device(p.device))
    steps = selected_steps(p.rllc.checkpoints, series.steps)
    cfg = dataclasses.replace(p.sampler, draws=p.rllc.draws, burn_in=p.rllc.burn_in, chains=p.rllc.chains,
                              batch_size=p.rllc.batch_size, obs_every=p.rllc.obs_every)
    seqs = load_pair_sequences(corpus / "pairs_tokens.jsonl", p.model.n_ctx)
    sides = {side: seqs.subset(np.nonzero(seqs.labels == side)[0].tolist()) for side in ("correct", "buggy")}
    sets = observable_sets(p, corpus)
    observables = sequence_observables(sets, p.device.memory_mb, p.sampler.token_level)
    settings = {**{k: v for k, v in as_dict(cfg).items() if k not in NOT_IN_KEY}, "seed": p.seed,
                "data": observables_digest(corpus, sets, observables)}
    results: dict[str, dict[int, dict]] = {}
    for k, step in enumerate(steps, 1):
        model = series.load(step).model
        digest = weights_digest(model)
        registry = Components(model)
        jobs = {comp: (lambda label, comp=comp: sample_lm(model, cfg, p.seed, str(corpus / "train.bin"),
                                                           p.model.n_ctx, observables, components=[comp], label=label,
                                                           device=p.device))
                for comp in registry.names()}
        for layer in range(registry.n_layers):  # whole blocks: the rLLC only
            jobs[f"L{layer}"] = lambda label, layer=layer: sample_lm(model, cfg, p.seed, str(corpus / "train.bin"),
                                                                    p.model.n_ctx, components=[f"L{layer}"], label=label,
                                                                    device=p.device)
        if p.rllc.data_refined:
            for side, data in sides.items():
                jobs[f"data:{side}"] = lambda label, data=data: sample_sequences(model, cfg, p.seed, data, label=label,
                                                                                       device=p.device)
        for j, (name, job) in enumerate(jobs.items(), 1):
            key = cache_key(digest, name, settings)
            path = out / "traces" / f"step_{step}_{name.replace(':', '-')}.nc"
            trace = existing(path, key)
            if trace is None:
                trace = job(f"rllc step {step} ({k}/{len(steps)}) {name} ({j}/{len(jobs)})").assign_attrs(
                    cache_key=key, step=step, refinement=name)
                save_trace(trace, path)
            est = llc(trace, p.influence.level)
            results.setdefault(name, {})[step] = {k: est[k] for k in ("llc", "llc_se", "llc_lo", "llc_hi", "rhat")}
            results[name][step]["llc_negative"] = est["negative"]
            log.info("step %d %s: rLLC %.2f [%.2f, %.2f]%s", step, name, est["llc"], est["llc_lo"], est["llc_hi"],
                     " (negative: not a local minimum)" if est["negative"] else "")

    heads = [n for n in results if not n.startswith("data:")]
    attention = [n for n in heads if "H" in n]
    clusters = dict(zip(attention, cluster_trajectories(
        np.array([[results[n][s]["llc"] for s in steps] for n in attention]), p.rllc.clusters)))
    rows = [{"step": s, "component": n, **results[n][s]} for n in results for s in steps]
    write_json(out / "curve.json", rows)
    final = {n: results[n][steps[-1]] for n in results}
    write_json(out / "metrics.json", {"head_clusters": clusters, "final_step": steps[-1],
                                      "final": {n: [r["llc"], r["llc_lo"], r["llc_hi"]] for n, r in final.items()},
                                      "final_negative": sorted(n for n, r in final.items() if r["llc_negative"])})
    run = init_run("rllc", p)
    use_reference(run, "checkpoints", "model", args.checkpoints)

    def column(names, field):
        return {n: [results[n][s][field] for s in steps] for n in names}

    def figure(names, title, ylabel):
        intervals = {n: (column([n], "llc_lo")[n], column([n], "llc_hi")[n]) for n in names}
        return plots.curves(steps, column(names, "llc"), title, ylabel, intervals=intervals), intervals

    panels = {"weight_refined": (heads, "weight-refined LLC per component (90% intervals)", "rLLC")}
    if p.rllc.data_refined:
        panels["data_refined"] = ([n for n in results if n.startswith("data:")],
                                  "data-refined LLC: correct vs buggy code (90% intervals)", "drLLC")
    for key, (names, title, ylabel) in panels.items():
        fig, intervals = figure(names, title, ylabel)
        log_curves(run, f"rllc/{key}", steps, column(names, "llc"), fig, intervals=intervals)
        plots.save(fig, out / f"{key}.png")
    run.summary.update({"head_clusters": clusters})
    run.finish()
