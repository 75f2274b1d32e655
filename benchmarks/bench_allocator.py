"""Host memory allocator: freed memory kept by malloc (`emergence.cli.keep_freed_memory`, which every
stage sets) vs glibc's default, which hands it back to the kernel.

Two loops on the default model at one checkpoint, the same work on both sides: the `sample` stage's
sampler (default settings, a shorter run: paired w*, observables at every `obs_every`-th draw) and
`train_lm`'s step (forward, backward and AdamW on a default-sized batch). Each variant runs in a
fresh process, interleaved; the minor page faults per step say where the time went, and the
sampler's traces of both must agree exactly.

    python benchmarks/bench_allocator.py [--step 2000] [--draws 64] [--train-steps 20] [--repeats 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, report, summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _run(step: int, draws: int, train_steps: int) -> dict:
    import torch
    from emergence.config import load_params
    from emergence.data.windows import TokenWindows
    from emergence.models.checkpoints import load_checkpoint
    from emergence.models.components import Components
    from emergence.models.gpt import token_losses
    from emergence.sampling.observables import sequence_observables
    from emergence.sampling.sampler_module import sample_lm
    from emergence.stages.sample import observable_sets
    p = load_params(ROOT / "params.yaml")
    corpus = ROOT / "artifacts" / "corpus"
    model, _ = load_checkpoint(ROOT / "artifacts" / "checkpoints" / f"step_{step}.pt")
    obs = sequence_observables(observable_sets(p, corpus), p.device.memory_mb, p.sampler.token_level,
                               component_probe=2, model=model, read_layer=p.sae_layer_for(Components(model).n_layers))
    cfg = dataclasses.replace(p.sampler, burn_in=10, draws=draws)
    start, faults = time.perf_counter(), _faults()
    trace = sample_lm(model, cfg, p.seed, str(corpus / "train.bin"), p.model.n_ctx, obs, device=p.device)
    sgld = {"seconds_per_step": (time.perf_counter() - start) / cfg.steps, "faults_per_step": (_faults() - faults) / cfg.steps}

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=p.train.lr, weight_decay=p.train.weight_decay)
    windows = TokenWindows(str(corpus / "train.bin"), p.model.n_ctx, p.train.batch_size, p.seed)

    def train_step(s: int) -> None:
        x, y = windows.batch(s)
        token_losses(model(x), y).mean().backward()
        opt.step()
        opt.zero_grad()
    train_step(0)  # warm-up: AdamW's state
    start, faults = time.perf_counter(), _faults()
    for s in range(1, train_steps + 1):
        train_step(s)
    train = {"seconds_per_step": (time.perf_counter() - start) / train_steps,
             "faults_per_step": (_faults() - faults) / train_steps}
    return {"sgld_seconds_per_step": sgld["seconds_per_step"], "sgld_faults_per_step": sgld["faults_per_step"],
            "train_seconds_per_step": train["seconds_per_step"], "train_faults_per_step": train["faults_per_step"],
            "sgld_steps": cfg.steps, "loss": trace["loss"].values.ravel().tolist()}


def kept(step: int, draws: int, train_steps: int) -> dict:
    return _run(step, draws, train_steps)


def glibc_default(step: int, draws: int, train_steps: int) -> dict:
    return _run(step, draws, train_steps)


glibc_default.keep_freed_memory = False  # `common.in_fresh_process` leaves malloc as glibc sets it up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--step", type=int, default=2000)
    ap.add_argument("--draws", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    results = interleaved({"kept": kept, "glibc_default": glibc_default}, args.repeats, step=args.step,
                          draws=args.draws, train_steps=args.train_steps)
    out = {"step": args.step, "sgld_steps": results["kept"][0]["sgld_steps"], "train_steps": args.train_steps,
           "repeats": args.repeats}
    for loop in ("sgld", "train"):
        times = summary(results, f"{loop}_seconds_per_step")
        runs = {k: [r[f"{loop}_seconds_per_step"] for r in v] for k, v in results.items()}
        out[loop] = {"seconds_per_step": times, "speedup": times["glibc_default"] / times["kept"],
                     "speedup_range": [min(runs["glibc_default"]) / max(runs["kept"]),
                                       max(runs["glibc_default"]) / min(runs["kept"])],
                     "minor_faults_per_step": summary(results, f"{loop}_faults_per_step")}
    out["peak_rss_mb"] = summary(results, "peak_rss_mb")
    same = results["kept"][0]["loss"] == results["glibc_default"][0]["loss"]
    out["sgld_traces_equal"] = same
    report("allocator", out)
    if not same:
        raise SystemExit("the allocator changed the sampler's trace")


if __name__ == "__main__":
    main()
