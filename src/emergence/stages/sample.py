"""Stage `sample`: one SGLD trace per checkpoint (sample once, estimate many).

A trace is reused when its cache key (checkpoint weights, sampling data, observables
and sampler settings) matches, so an interrupted stage resumes without re-sampling
finished checkpoints. A diverging chain stops the stage with a hint; what was sampled
is kept in ``step_<N>.partial.nc``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import torch

from emergence.config import as_dict, load_params
from emergence.estimators.llc import llc
from emergence.io import sha256_file, write_json
from emergence.models.checkpoints import CheckpointError, open_series
from emergence.data.windows import fixed_windows
from emergence.models.scoring import SequenceSet, build_sequences, load_pair_sequences
from emergence.device import batch_for, torch_device
from emergence.models.components import Components
from emergence.sampling.observables import sequence_observables
from emergence.sampling.sampler_module import SamplerDivergence, sample_lm
from emergence.sampling.trace import TraceError, cache_key, load_trace, post_burn_in_draw_losses, save_trace
from emergence.tracking.wandb import init_run, log_reference, use_reference

log = logging.getLogger(__name__)
NOT_IN_KEY = ("checkpoints", "checks")  # which checkpoints, and the checks, do not change a trace


def selected_steps(requested: list[int], available: list[int]) -> list[int]:
    missing = sorted(set(requested) - set(available))
    if missing:
        raise CheckpointError(f"params: sampler.checkpoints asks for steps {missing} that the series "
                              f"does not have; available: {available}")
    return list(requested)


def observable_sets(p, corpus: Path) -> list[SequenceSet]:
    """The pairs (one per problem), windows of the sampling corpus and of held-out general code.

    The last two give the data shifts' reference (sampling) and the general-code shift;
    the general-code pass also records the component observables.
    """
    pairs = load_pair_sequences(corpus / "pairs_tokens.jsonl", p.model.n_ctx, p.sampler.n_pairs, p.seed)
    out = [pairs]
    for label, split in (("sampling", "train"), ("general", "val")):
        x, y = fixed_windows(corpus / f"{split}.bin", p.model.n_ctx, p.sampler.shift_windows).tensors
        tokens = torch.cat([x, y[:, -1:]], 1).tolist()
        n = len(tokens)
        out.append(build_sequences(tokens, [1] * n, p.model.n_ctx, [f"{label}/{i}" for i in range(n)],
                                   [label] * n, [label] * n))
    return out


def observables_digest(corpus: Path, sets: list[SequenceSet], observables) -> str:
    """sha256 of the sampling data and of what is observed (sequences, components, reads)."""
    what = "|".join(observables.names) + f"|{observables.components}|{observables.reads}"
    return hashlib.sha256((sha256_file(corpus / "train.bin") + what).encode()
                          + b"".join(s.ids.numpy().tobytes() for s in sets)).hexdigest()


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def existing(path: Path, key: str):
    if not path.exists():
        return None
    try:
        ds = load_trace(path)
    except TraceError as exc:
        log.warning("%s; re-sampling", exc)
        return None
    return ds if ds.attrs.get("cache_key") == key and ds.attrs.get("status") == "complete" else None


def main(args) -> None:
    p = load_params(args.params)
    corpus, out = Path(args.corpus), Path(args.out)
    series = open_series(p.model, args.checkpoints, torch_device(p.device))
    steps = selected_steps(p.sampler.checkpoints, series.steps)
    sets = observable_sets(p, corpus)
    first = series.load(steps[0]).model
    observables = sequence_observables(sets, p.device.memory_mb, p.sampler.token_level,
                                       component_probe=2, model=first, read_layer=p.sae_layer_for(Components(first).n_layers))
    data_digest = observables_digest(corpus, sets, observables)
    log.info("observables: %d sequences, scored in inference batches of %d (device.memory_mb = %d)",
             len(observables), batch_for(first, p.model.n_ctx, p.device.memory_mb), p.device.memory_mb)
    run = init_run("sample", p)
    use_reference(run, "checkpoints", "model", args.checkpoints)
    run.define_metric("sample/*", step_metric="checkpoint_step")
    summary = {}

    def trace_at(step, ckpt, cfg, seed, path, obs, position=""):
        settings = {k: v for k, v in as_dict(cfg).items() if k not in NOT_IN_KEY}
        key = cache_key(weights_digest(ckpt.model), data_digest if obs else "no-observables",
                        {**settings, "seed": seed, "n_ctx": p.model.n_ctx})
        label = f"step {step}" + ("" if path.parent == out else f" ({path.name.split('.')[1]} check)")
        return sampled(label, path, key, run, lambda: sample_lm(
            ckpt.model, cfg, seed, str(corpus / "train.bin"), p.model.n_ctx, obs,
            attrs={"checkpoint": ckpt.source, "step": step, "cache_key": key, "data_digest": data_digest},
            label=f"sample {label}{position}", device=p.device))

    for k, step in enumerate(steps, 1):
        ckpt = series.load(step)
        trace = trace_at(step, ckpt, p.sampler, p.seed, out / f"step_{step}.nc", observables, f" ({k}/{len(steps)})")
        est = llc(trace)
        summary[step] = {"rhat": est["rhat"], "ess": est["ess"], "init_loss": float(trace["init_loss"]),
                         "final_loss": float(np.mean(post_burn_in_draw_losses(trace)[:, -10:]))}
        run.log({f"sample/loss_trace/step_{step}": _trace_plot(trace, step), **{
            f"sample/{k}": v for k, v in summary[step].items()}, "checkpoint_step": step})
    if p.sampler.checks:
        step, ckpt = steps[-1], series.load(steps[-1])
        for name, cfg, seed, obs in check_settings(p.sampler, p.seed, observables):
            trace_at(step, ckpt, cfg, seed, out / "checks" / f"step_{step}.{name}.nc", obs)
    log_reference(run, "traces", "sgld-trace", out)
    run.finish()
    write_json(out / "diagnostics.json", {str(k): v for k, v in summary.items()})


def check_settings(cfg, seed: int, observables):
    """The re-runs that test the main traces: half the step size (twice the burn-in and draws,
    the same simulated time; LLC only) and another chain seed (everything observed)."""
    half = dataclasses.replace(cfg, lr=cfg.lr / 2, burn_in=2 * cfg.burn_in, draws=2 * cfg.draws,
                               obs_every=2 * cfg.obs_every)
    return [("half_lr", half, seed, None), ("other_seed", cfg, seed + 1, observables)]


def sampled(label: str, path: Path, key: str, run, sample):
    """The trace at `path` if its key matches, else `sample()` saved there (a diverging chain's
    partial trace is kept beside it as ``.partial.nc``)."""
    trace = existing(path, key)
    if trace is not None:
        log.info("%s: trace %s is up to date (key %s)", label, path, key)
        return trace
    t0 = time.perf_counter()
    partial = path.with_name(path.name.replace(".nc", ".partial.nc"))
    try:
        trace = sample()
    except SamplerDivergence as exc:
        save_trace(exc.trace.assign_attrs(cache_key=key), partial)
        run.finish(exit_code=1)
        raise SamplerDivergence(f"{label}: {exc}", exc.step, exc.chain, exc.trace) from None
    trace.attrs["seconds"] = round(time.perf_counter() - t0, 1)
    save_trace(trace, path)
    partial.unlink(missing_ok=True)
    log.info("%s: sampled in %.1fs", label, trace.attrs["seconds"])
    return trace


def _trace_plot(trace, step: int):
    import wandb
    loss = trace["loss"].values
    xs = list(range(loss.shape[1]))
    return wandb.plot.line_series(xs=xs, ys=[list(map(float, row)) for row in loss],
                                  keys=[f"chain {c}" for c in range(loss.shape[0])],
                                  title=f"SGLD loss trace, step {step}", xname="SGLD step")
