"""The pipeline on a GPT-NeoX of Pythia-70m's shape, on this CPU, and what the default study would
cost for Pythia-160m and Pythia-1.4b on one H100.

Model: GPT-NeoX with Pythia-70m's shape (6 layers, d_model 512, 8 heads, intermediate 2048, vocab
50,304, rotary_pct 0.25, max_position_embeddings 2048, untied unembedding: 70.4M parameters), random
weights saved with `save_pretrained` as three revisions (step0, step1, step2: the same init, then
small perturbations) beside a byte-level BPE tokenizer trained offline on stdlib text. Pythia's
tokenizer is not used: the corpus is tokenised with ours, and the model keeps Pythia's 50,304 rows.

Measured (MEASURED: this CPU; everything else is labelled ESTIMATE):

1. stages: `emergence profile --name smoke` with `model.source=hf` on those revisions, reduced sizes
   (below), then each model stage's command from dvc.yaml in its own process: wall time, peak RSS
   (`wait4`) and time per unit (per revision, per SGLD step, per SAE step, per rLLC job). rllc runs
   one job of each kind (a head with observables, a whole block, a data-refined posterior; one fresh
   process) rather than its 62 jobs; probes runs on two revisions (~216 patched forward passes per
   pair and revision); susceptibility (which needs every component's rLLC traces), report and the
   calibration stages (which do not read the model) are not run.
2. observables' memory: `sequence_observables(...).fn(model)` (the sample stage's observables, with
   component norms and residual reads) on 64 and on 512 pair-like sequences (plus the 2 x
   sampler.shift_windows windows), in fresh processes; the peak RSS of the pass above the RSS before
   it (VmHWM reset through /proc/self/clear_refs), after a first pass (weights paged in, caches filled),
   with glibc returning every block above 64 kB at once (MALLOC_MMAP_THRESHOLD_, and not the freed
   memory the stages keep: `keep_freed_memory` off in these children), so that the peak RSS is the
   peak of live memory rather than of what the heap kept from the first pass.
   Target: no growth (ratio <= 1.1). Also 512 sequences at 4x the budget, and each pass's growth over
   device.memory_mb: how far the estimate behind the batch sizes is from the real peak.
3. SGLD per draw: `sample_lm` vs a bare loop making the same passes (per chain a minibatch
   forward/backward, the paired anchor forward, the same observable forwards, plain SGLD in place),
   both plain SGLD (preconditioned=False), fresh processes, interleaved; time per draw in the steady
   state (from step WARMUP on) and over the whole run, and the update's share. Target: steady <= 1.2x.
4. ESTIMATE: the default Pythia study (`conf/profile/pythia.yaml` composed with conf/config.yaml,
   or `--params PATH`) counted in FLOPs per stage for Pythia-160m and 1.4b on one H100, with
   the assumptions printed beside the table, plus a cross-check from the measured CPU time per draw.

Results: bench-results/pythia.json (and the markdown table printed at the end).

    python benchmarks/bench_pythia.py                  # ~15-20 min on 2 busy cores
    python benchmarks/bench_pythia.py --skip probes    # ~5 min less
    python benchmarks/bench_pythia.py --quick          # ~3-4 min: train_lm and sample only, one repeat
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import in_fresh_process, interleaved, report, summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VOCAB = 50_304
SHAPES = {  # Pythia (Biderman et al. 2023, arXiv 2304.01373, table 1); vocab 50,304, untied unembedding
    "pythia-70m": dict(n_layer=6, d_model=512, n_head=8, d_mlp=2048),
    "pythia-160m": dict(n_layer=12, d_model=768, n_head=12, d_mlp=3072),
    "pythia-1.4b": dict(n_layer=24, d_model=2048, n_head=16, d_mlp=8192),
}
REVISIONS = ("step0", "step1", "step2")
STEP = 2  # the revision sampled / given an SAE
WARMUP = 1  # SGLD steps before the steady-state clock starts
MB = 1024 * 1024

# Reduced sizes (the per-unit figures are what extrapolate). n_ctx is small because one forward and
# backward of 8 x 128 tokens already takes ~20 s on two shared cores.
FULL = dict(n_ctx=32, chains=2, batch=2, draws=4, burn_in=1, obs_every=2, init_batches=1, n_pairs=8,
            shift_windows=4, sae_steps=(8, 24), rllc_draws=1, probes_pairs=1, obs_len=32, ratio_draws=4,
            repeats=2, stages=("train_lm", "monitors", "sample", "influence", "sae", "emergence", "rllc", "probes"))
QUICK = dict(FULL, n_ctx=16, draws=1, burn_in=1, obs_len=8, ratio_draws=2, repeats=1,
             stages=("train_lm", "sample"))

# H100 SXM dense peaks (NVIDIA H100 datasheet): FP32 (CUDA cores) 67, TF32 tensor 495, BF16 989 TFLOP/s.
H100 = {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989e12, "hbm_bytes_s": 3.35e12, "memory_gb": 80}
MFU = 0.40   # assumed achieved share of peak for the matmuls
BW_SHARE = 0.7  # assumed achieved share of HBM bandwidth for the elementwise SGLD update
# fp32 reads + writes per weight, chain and step of RMSPropSGLD.step after burn-in (preconditioned, exact
# localization, the coefficients cached; counted op by op in sgld.py: 12 reads, 6 writes) plus zeroing and
# accumulating the gradient
UPDATE_ACCESSES = 21


# -- the revisions and the workspace ------------------------------------------------------------
def build_revisions(root: Path) -> dict:
    """step0: a seeded init with Pythia-70m's shape; step1, step2: it plus small noise (1e-3, 2e-3 x each
    tensor's std), saved with save_pretrained beside a fast tokenizer trained offline on stdlib text."""
    import sysconfig

    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast
    from emergence.data import tokenizer
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [p.read_text() for p in sorted((stdlib / "json").glob("*.py")) + sorted((stdlib / "email").glob("*.py"))]
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tokenizer.train_tokenizer(texts, 2000), eos_token=tokenizer.EOT)
    s = SHAPES["pythia-70m"]
    cfg = GPTNeoXConfig(vocab_size=VOCAB, hidden_size=s["d_model"], num_hidden_layers=s["n_layer"],
                        num_attention_heads=s["n_head"], intermediate_size=s["d_mlp"], max_position_embeddings=2048,
                        rotary_pct=0.25, rotary_emb_base=10000, use_parallel_residual=True, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(cfg).eval()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    for k, rev in enumerate(REVISIONS):
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(base[name] + 1e-3 * k * (p.std() if p.numel() > 1 else 1.0) * torch.randn_like(p))
        model.save_pretrained(root / rev)
        hf_tok.save_pretrained(root / rev)
    return {"parameters": sum(p.numel() for p in model.parameters()), "tokenizer_vocab": hf_tok.vocab_size}


def env(tmp: Path) -> dict:
    e = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", WANDB_MODE="offline", WANDB_DIR=str(tmp / "wandb"),
             WANDB_CONFIG_DIR=str(tmp / "wandb-config"), EMERGENCE_RUN_GROUP="bench", DVC_NO_ANALYTICS="1",
             HF_HUB_OFFLINE="1")
    (tmp / "wandb").mkdir(parents=True, exist_ok=True)
    return e


def overrides(revisions: Path, m: dict) -> list[str]:
    return ["model.source=hf", "model.hf_name=bench/pythia70m", f"model.hf_revisions=[{','.join(REVISIONS)}]",
            f"model.hf_local_dir={revisions}", f"model.n_ctx={m['n_ctx']}",
            f"sampler.checkpoints=[{STEP}]", "sampler.checks=false", "sampler.token_level=false",
            f"sampler.chains={m['chains']}", f"sampler.batch_size={m['batch']}", f"sampler.draws={m['draws']}",
            f"sampler.burn_in={m['burn_in']}", f"sampler.obs_every={m['obs_every']}",
            f"sampler.init_batches={m['init_batches']}", f"sampler.n_pairs={m['n_pairs']}",
            f"sampler.shift_windows={m['shift_windows']}", f"sampler.check_every={m['burn_in'] + m['draws']}",
            f"sae.checkpoints=[{STEP}]", f"sae.max_steps={m['sae_steps'][0]}", f"sae.min_steps={m['sae_steps'][0]}",
            "sae.eval_every=4", "sae.batch_size=256", "sae.buffer_windows=16", "sae.expansion=8", "sae.k=32",
            f"rllc.checkpoints=[{STEP}]", f"rllc.draws={m['rllc_draws']}", "rllc.burn_in=1",
            f"rllc.chains={m['chains']}", f"rllc.batch_size={m['batch']}", "rllc.obs_every=2",
            f"probes.max_pairs={m['probes_pairs']}"]


def run_measured(cmd: list[str], cwd: Path, env_: dict, log: Path) -> dict:
    """Run `cmd` to completion: wall seconds, CPU seconds and peak RSS (MB) of it and its children."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env_, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return {"seconds": round(wall, 2), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def stage_cmd(ws: Path, stage: str, **extra: str) -> list[str]:
    """The stage's `cmd:` line from dvc.yaml (foreach items filled in), with --flag replacements."""
    import yaml
    spec = yaml.safe_load((ws / "dvc.yaml").read_text())["stages"][stage]
    if "foreach" in spec:
        spec = spec["do"]
    words = shlex.split(spec["cmd"].replace("${item}", str(STEP)))
    for flag, value in extra.items():
        flag = "--" + flag
        if flag in words:
            words[words.index(flag) + 1] = value
        else:
            words += [flag, value]
    return [str(BIN / words[0]), *words[1:]]


def _params_variant(ws: Path, name: str, **sections: dict) -> str:
    """params_<name>.yaml: the workspace's params.yaml with some keys of some sections changed."""
    import yaml
    params = yaml.safe_load((ws / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (ws / f"params_{name}.yaml").write_text(yaml.safe_dump(params))
    return f"params_{name}.yaml"


def run_stages(ws: Path, tmp: Path, m: dict) -> dict:
    e, logs = env(tmp), tmp / "logs"
    logs.mkdir(exist_ok=True)
    out: dict[str, dict] = {}
    for stage in ("pairs", "corpus", *m["stages"]):
        if stage == "rllc":
            continue  # per job, below
        print(f"[bench_pythia] stage {stage} ...", flush=True)
        extra = {}
        if stage == "probes":  # ~216 patched forward passes per pair and revision: two revisions only (its
            # trajectory figure needs two: with one it fails with an IndexError after the passes)
            extra = {"params": _params_variant(ws, "probes", model={"hf_revisions": [f"step{STEP - 1}", f"step{STEP}"]})}
        out[stage] = run_measured(stage_cmd(ws, stage, **extra), ws, e, logs / f"{stage}.log")
        print(f"[bench_pythia]   {out[stage]}", flush=True)
        if stage == "sae":  # a second SAE with more steps: the difference is the cost of the extra steps
            long = run_measured(stage_cmd(ws, "sae", out="artifacts/sae_long", params=_params_variant(
                ws, "sae_long", sae={"max_steps": m["sae_steps"][1], "min_steps": m["sae_steps"][1]})),
                ws, e, logs / "sae_long.log")
            used = [json.loads((ws / d / f"step_{STEP}/quality.json").read_text())["train_steps"]
                    for d in ("artifacts/sae", "artifacts/sae_long")]
            out["sae_long"] = {**long, "sae_steps": used[1]}
            out["sae"]["sae_steps"] = used[0]
    if "sample" in out:
        import xarray as xr
        with xr.open_dataset(ws / f"artifacts/traces/step_{STEP}.nc") as trace:
            out["sample"]["sampling_seconds"] = float(trace.attrs["seconds"])
    return out


# -- fresh-process measurements -------------------------------------------------------------------
def _rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _load(ws: str):
    from emergence.config import load_params
    from emergence.models.checkpoints import open_series
    p = load_params(Path(ws) / "params.yaml")
    return p, open_series(p.model, Path(ws) / "artifacts/checkpoints").load(STEP).model


OBS_BUDGET_MB = 32  # device.memory_mb of the observables' memory test: batches of ~38 sequences, below both counts
MMAP_THRESHOLD = 65536  # glibc serves blocks above 64 kB by mmap and unmaps them when freed: RSS = live memory


def observables_memory(ws: str, n_obs: int, length: int, memory_mb: float) -> dict:
    """Peak RSS of one observables pass (the sample stage's: losses, component norms, residual reads) over
    `n_obs` sequences of `length` tokens standing in for the pairs (what grows with sampler.n_pairs), plus w
    sampling and w general-code windows (w = sampler.shift_windows), as the stage builds them, with inference
    batches sized by `memory_mb`. Both sizes run full batches, so a difference is growth with the count."""
    import gc

    import torch
    from emergence.data.windows import fixed_windows
    from emergence.device import batch_for
    from emergence.models.scoring import build_sequences
    from emergence.models.components import Components
    from emergence.sampling.observables import sequence_observables
    p, model = _load(ws)
    corpus, w = Path(ws) / "artifacts/corpus", p.sampler.shift_windows
    sets = []
    for label, split, n in (("pairs", "train", n_obs), ("sampling", "train", w), ("general", "val", w)):
        x, y = fixed_windows(corpus / f"{split}.bin", length, n).tensors
        sets.append(build_sequences(torch.cat([x, y[:, -1:]], 1).tolist(), [1] * n, length,
                                    [f"{label}/{i}" for i in range(n)], [label] * n, [label] * n))
    obs = sequence_observables(sets, memory_mb, p.sampler.token_level, component_probe=2,
                               model=model, read_layer=p.sae_layer_for(Components(model).n_layers))
    with torch.no_grad():
        obs.fn(model)  # a first pass: the weights paged in and first-call caches filled are not the pass's
    gc.collect()
    before = _rss_mb()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS, so VmHWM below is this pass's peak
    t0 = time.perf_counter()
    with torch.no_grad():
        measured = obs.fn(model)
    seconds = time.perf_counter() - t0
    peak = _rss_mb("VmHWM")
    assert measured["obs"].shape == (n_obs + 2 * w,)
    return {"n_obs": n_obs + 2 * w, "n_pair_like": n_obs, "tokens": (n_obs + 2 * w) * length, "seconds": seconds,
            "rss_before_mb": before,
            "pass_peak_mb": peak, "pass_growth_mb": peak - before, "growth_over_budget": (peak - before) / memory_mb,
            "batch_sequences": batch_for(model, length, memory_mb), "memory_mb": memory_mb}


observables_memory.keep_freed_memory = False  # with freed memory kept, the first pass's pages serve the second


def _sgld_setup(ws: str, draws: int):
    from emergence.models.components import Components
    from emergence.sampling.observables import sequence_observables
    from emergence.stages.sample import observable_sets
    p, model = _load(ws)
    sets = observable_sets(p, Path(ws) / "artifacts/corpus")
    obs = sequence_observables(sets, p.device.memory_mb, p.sampler.token_level, component_probe=2,
                               model=model, read_layer=p.sae_layer_for(Components(model).n_layers))
    cfg = dataclasses.replace(p.sampler, burn_in=0, draws=draws, preconditioned=False, rms_adapt="every_step",
                              check_every=draws)
    return p, model, sets, obs, cfg


def sgld_ours(ws: str, draws: int) -> dict:
    """`sample_lm` as the stage calls it; the whole run's time, and the steady state's: from the start of step
    WARMUP to the end (a Lightning callback added to the sampler's Trainer), with the time spent in
    RMSPropSGLD.step (both patched in this process only)."""
    import torch
    from emergence.sampling import sampler_module, sgld
    from common import lightning_clock
    p, model, _, obs, cfg = _sgld_setup(ws, draws)
    clock, marks = lightning_clock(WARMUP)
    make = sampler_module.sampler_trainer

    def timed_trainer(*args, **kwargs):
        trainer = make(*args, **kwargs)
        trainer.callbacks.append(clock)
        return trainer

    sampler_module.sampler_trainer = timed_trainer
    step, update = sgld.RMSPropSGLD.step, [0.0]

    def timed_step(self, *args, **kwargs):  # the update's share of the steady state
        t1 = time.perf_counter()
        out = step(self, *args, **kwargs)
        if "t0" in marks:
            update[0] += time.perf_counter() - t1
        return out

    sgld.RMSPropSGLD.step = timed_step
    t0 = time.perf_counter()
    sampler_module.sample_lm(model, cfg, p.seed, str(Path(ws) / "artifacts/corpus/train.bin"), p.model.n_ctx, obs)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "per_draw_s": seconds / cfg.steps, "n_observables": len(obs),
            "steady_per_draw_s": (marks["t1"] - marks["t0"]) / (cfg.steps - WARMUP),
            "steady_update_per_draw_s": update[0] / (cfg.steps - WARMUP), "threads": torch.get_num_threads()}


def sgld_bare(ws: str, draws: int) -> dict:
    """The floor: the same passes with no framework. Init: the anchor's loss on init_batches batches and the
    observables at w*; per step: the observables' losses on every chain (at observed draws; the same scoring
    function, so the same passes; the component norms and residual reads are ours alone), the anchor's loss on each
    chain's batch (paired), each chain's forward/backward, plain SGLD in place (one noise buffer per tensor).
    Copies and buffers are made before the clock."""
    import copy

    import torch
    from emergence.io import seed_for
    from emergence.models.gpt import token_losses
    from emergence.data.windows import TokenWindows
    from emergence.models.scoring import token_loss_matrix
    p, model, sets, _, cfg = _sgld_setup(ws, draws)
    C, B, T = cfg.chains, cfg.batch_size, p.model.n_ctx
    path = str(Path(ws) / "artifacts/corpus/train.bin")
    chains = [copy.deepcopy(model).train() for _ in range(C)]
    anchor = copy.deepcopy(model).eval()
    w0 = [[q.detach().clone() for q in m.parameters()] for m in chains]
    stream = TokenWindows(path, T, C * B, seed_for(p.seed, "sgld-data"))
    init = TokenWindows(path, T, B, seed_for(p.seed, "sgld-init"))
    g = torch.Generator().manual_seed(0)
    noise = [torch.empty_like(q) for q in model.parameters()]
    pull = 0.5 * cfg.lr * cfg.localization

    def observe(m):  # the observables' passes: the unembedding at scored positions, memory_mb at a time
        for seqs in sets:
            token_loss_matrix(m, seqs, p.device.memory_mb)

    update, update_steady, t0 = 0.0, 0.0, time.perf_counter()
    with torch.no_grad():
        for i in range(cfg.init_batches):
            x, y = init.batch(i)
            token_losses(anchor(x), y).mean()
    observe(chains[0])
    for s in range(cfg.steps):
        if s == WARMUP:
            t_warm = time.perf_counter()
        if s % cfg.obs_every == 0:
            for m in chains:
                observe(m)
        x, y = stream.batch(s)
        for c, m in enumerate(chains):
            xc, yc = x[c * B:(c + 1) * B], y[c * B:(c + 1) * B]
            if cfg.paired:
                with torch.no_grad():
                    token_losses(anchor(xc), yc).mean()
            loss = token_losses(m(xc), yc).mean()
            m.zero_grad(set_to_none=True)
            loss.backward()
            t1 = time.perf_counter()
            with torch.no_grad():  # w <- w - (lr/2)(nbeta g + gamma (w - w*)) + sqrt(lr) xi, in place
                for q, q0, xi in zip(m.parameters(), w0[c], noise):
                    q.mul_(1 - pull).add_(q0, alpha=pull).add_(q.grad, alpha=-0.5 * cfg.lr * cfg.nbeta)
                    q.add_(xi.normal_(generator=g), alpha=cfg.lr ** 0.5)
            update += time.perf_counter() - t1
            if s >= WARMUP:
                update_steady += time.perf_counter() - t1
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "per_draw_s": seconds / cfg.steps, "update_per_draw_s": update / cfg.steps,
            "steady_per_draw_s": (time.perf_counter() - t_warm) / (cfg.steps - WARMUP),
            "steady_update_per_draw_s": update_steady / (cfg.steps - WARMUP),
            "threads": torch.get_num_threads()}


def rllc_jobs(ws: str) -> dict:
    """One job of each kind of the rllc stage, built as the stage builds them, one after the other in this
    process: `head` (L0H0 with the observables: the deepest backward of any head), `block` (L0, no
    observables) and `data` (the posterior on the correct code). The RSS after each job (no collection in
    between, as in the stage) and after a final gc.collect() show what a job leaves behind."""
    import numpy as np
    from emergence.models.scoring import load_pair_sequences
    from emergence.sampling.observables import sequence_observables
    from emergence.sampling.sampler_module import sample_lm, sample_sequences
    from emergence.stages.sample import observable_sets
    p, model = _load(ws)
    corpus = Path(ws) / "artifacts/corpus"
    cfg = dataclasses.replace(p.sampler, draws=p.rllc.draws, burn_in=p.rllc.burn_in, chains=p.rllc.chains,
                              batch_size=p.rllc.batch_size, obs_every=p.rllc.obs_every)
    obs = sequence_observables(observable_sets(p, corpus), p.device.memory_mb, p.sampler.token_level)
    seqs = load_pair_sequences(corpus / "pairs_tokens.jsonl", p.model.n_ctx)
    correct = seqs.subset(np.nonzero(seqs.labels == "correct")[0].tolist())
    train = str(corpus / "train.bin")
    jobs = {"head": lambda: sample_lm(model, cfg, p.seed, train, p.model.n_ctx, obs, components=["L0H0"]),
            "block": lambda: sample_lm(model, cfg, p.seed, train, p.model.n_ctx, components=["L0"]),
            "data": lambda: sample_sequences(model, cfg, p.seed, correct)}
    seconds, rss = {}, {}
    for kind, job in jobs.items():  # RSS after each job and the peak so far: does the process keep what a job used?
        seconds[kind] = _timed(job)
        rss[kind] = {"rss_after_mb": _rss_mb(), "peak_so_far_mb": _rss_mb("VmHWM")}
    import gc
    collected = gc.collect()  # what the jobs left behind in reference cycles, freed only by a full collection
    return {"steps": cfg.steps, "seconds": seconds, "rss": rss, "rss_after_gc_collect_mb": _rss_mb(),
            "gc_collected_objects": collected}


def cpu_matmul_rate() -> dict:
    """This CPU's fp32 matmul rate (2048^3, best of 5): the reference for the cross-check's efficiency."""
    import torch
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    return {"gflops": 2 * 2048 ** 3 / best / 1e9, "threads": torch.get_num_threads()}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- FLOP counts and the extrapolation ------------------------------------------------------------
def n_params(s: dict) -> int:
    d, L, f = s["d_model"], s["n_layer"], s["d_mlp"]
    per_layer = 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d  # qkv + dense (+biases), mlp in/out, 2 layer norms
    return L * per_layer + 2 * VOCAB * d + 2 * d  # embed_in, embed_out (untied), final norm


def fwd_per_token(s: dict, n_ctx: int, layers: int | None = None, unembed: bool = True) -> float:
    """Forward FLOPs per token (Kaplan et al. 2020, arXiv 2001.08361, table 1): 2 x matmul weights
    + 2 n_layer n_ctx d (attention scores and values) + 2 d V (unembedding)."""
    L = s["n_layer"] if layers is None else layers
    d, f = s["d_model"], s["d_mlp"]
    return L * (2 * (4 * d * d + 2 * d * f) + 2 * n_ctx * d) + (2 * d * VOCAB if unembed else 0)


def sgld_flops(s: dict, cfg, T: int, n_obs: int, observed: bool = True) -> dict:
    """One sampling run: init (init_batches x batch on w* + the observables at w*), per step chains x batch
    forward/backward (3x forward) + the paired anchor forward, observables on every chain every obs_every draws."""
    f = fwd_per_token(s, T)
    obs_draws = math.ceil(cfg.draws / cfg.obs_every) if observed else 0
    return {"init": (cfg.init_batches * cfg.batch_size * T + (n_obs * T if observed else 0)) * f,
            "steps": cfg.steps * cfg.chains * cfg.batch_size * T * (3 + int(cfg.paired)) * f,
            "observables": obs_draws * cfg.chains * n_obs * T * f,
            "update_bytes": cfg.steps * cfg.chains * n_params(s) * 4 * UPDATE_ACCESSES}


def study_flops(s: dict, p, n_pairs_all: int) -> dict[str, dict]:
    """FLOPs (and SGLD update bytes) per stage of the study `p` for a model of shape `s`. Every observable and
    pair is counted at full n_ctx (an upper bound: pairs are shorter)."""
    T, L, H = p.model.n_ctx, s["n_layer"], s["n_head"]
    n_rev = len(p.model.hf_revisions)
    n_obs = 2 * p.sampler.n_pairs + 2 * p.sampler.shift_windows
    f = fwd_per_token(s, T)
    out: dict[str, dict] = {}

    def add(stage, part, value):
        out.setdefault(stage, {}).setdefault(part, 0.0)
        out[stage][part] += value

    add("train_lm", "score revisions", n_rev * (p.train.val_windows + 2 * n_pairs_all) * T * f)
    add("monitors", "head patterns + ICL", n_rev * (p.monitors.batch * 2 * p.monitors.repeat_length
                                                    + p.monitors.icl_windows * T) * f)
    cfgs = [(p.sampler, True)] * len(p.sampler.checkpoints)
    if p.sampler.checks:
        half = dataclasses.replace(p.sampler, lr=p.sampler.lr / 2, burn_in=2 * p.sampler.burn_in,
                                   draws=2 * p.sampler.draws, obs_every=2 * p.sampler.obs_every)
        cfgs += [(half, False), (p.sampler, True)]
    for cfg, observed in cfgs:
        for part, v in sgld_flops(s, cfg, T, n_obs, observed).items():
            add("sample", part, v)
    rcfg = dataclasses.replace(p.sampler, draws=p.rllc.draws, burn_in=p.rllc.burn_in, chains=p.rllc.chains,
                               batch_size=p.rllc.batch_size, obs_every=p.rllc.obs_every)
    jobs = [(L * H + L, True), (L, False), (2 if p.rllc.data_refined else 0, False)]
    for count, observed in jobs:
        for part, v in sgld_flops(s, rcfg, T, n_obs, observed).items():
            add("rllc", part, v * count * len(p.rllc.checkpoints))
    layer = (L - 1) // 2 if p.sae.layer == -1 else p.sae.layer
    d_sae = p.sae.expansion * s["d_model"]
    n_sae = len(p.sae.checkpoints)
    add("sae", "activations", n_sae * p.sae.max_steps * p.sae.batch_size * fwd_per_token(s, T, layer + 1, False))
    add("sae", "SAE train", n_sae * p.sae.max_steps * p.sae.batch_size * 12 * s["d_model"] * d_sae)
    add("sae", "directions", n_sae * (2 * n_pairs_all + p.sae.quality_windows) * T * fwd_per_token(s, T, layer + 1, False))
    comps = L * H + 4 * L  # heads, MLPs, residuals, even/odd head groups
    add("probes", "patching", n_rev * p.probes.max_pairs * (3 + 3 * comps) * T * f)
    add("probes", "logit lens + losses", n_rev * (2 * p.sampler.n_pairs * T * (f + L * 2 * s["d_model"] * VOCAB)
                                                   + (2 * p.sampler.n_pairs + 2 * p.probes.windows) * T * f))
    return out


def gpu_seconds(parts: dict, rate: float) -> float:
    flops = sum(v for k, v in parts.items() if k != "update_bytes")
    return flops / rate + parts.get("update_bytes", 0.0) / (H100["hbm_bytes_s"] * BW_SHARE)


def sampler_memory_gb(s: dict, p) -> dict:
    """Peak memory of the sample stage, counted from the code: the checkpoint (held twice by the stage: the
    first revision for the observables' setup and the current one), the paired anchor copy, per chain W, G,
    w*, the noise and the update's three cached coefficients ((chains, P) tensors in sgld.py; during the burn-in
    V and as many temporaries instead); activations for backward (fp32: 2 x 34 d + 10 heads n_ctx bytes per token
    and layer, Korthikanti et al. 2022, arXiv 2205.05198) and logits (x3: logits, log-softmax, their gradient);
    an observables batch: device.memory_mb of activations and as much of chunked logits. All fp32."""
    P, C, T, d = n_params(s), p.sampler.chains, p.model.n_ctx, s["d_model"]
    weights = (3 + 7 * C) * P * 4
    tokens = C * p.sampler.batch_size * T
    acts = tokens * s["n_layer"] * (68 * d + 10 * s["n_head"] * T) + tokens * VOCAB * 4 * 3
    obs = 2 * p.device.memory_mb * MB
    peak = weights + max(acts, obs)
    return {"weights_gb": weights / 1e9, "backward_activations_gb": acts / 1e9,
            "observables_batch_gb": obs / 1e9, "peak_gb": peak / 1e9}


def study_params(args):
    from emergence.config import compose, load_params
    if args.params:
        return load_params(args.params), str(args.params)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(compose(args.study))
    try:
        return load_params(f.name), f"conf/config.yaml + conf/profile/{args.study}.yaml"
    finally:
        os.unlink(f.name)


def _cpu_pass_gflops(bench: dict) -> float | None:
    """The model passes' FLOP rate measured here: the observables pass on 512 sequences (forward only)."""
    mem = bench.get("observables_memory", {}).get("512")
    if not mem:
        return None
    return mem["tokens"] * fwd_per_token(SHAPES["pythia-70m"], mem["tokens"] // mem["n_obs"]) / mem["seconds"] / 1e9


def extrapolate(args, bench: dict) -> dict:
    p, source = study_params(args)
    n_pairs_all = 3 * 164  # train_lm / sae score every pair: at most pairs.max_per_problem x 164 problems
    rates = {"fp32": H100["fp32"] * MFU, "tf32": H100["tf32"] * MFU}
    cpu_gflops = _cpu_pass_gflops(bench)
    rows, per_stage = [], {}
    for name in ("pythia-160m", "pythia-1.4b"):
        s = SHAPES[name]
        flops = study_flops(s, p, n_pairs_all)
        per_stage[name] = {st: {"tflop": sum(v for k, v in parts.items() if k != "update_bytes") / 1e12,
                                **{f"h100_{k}_hours": gpu_seconds(parts, r) / 3600 for k, r in rates.items()}}
                           for st, parts in flops.items()}
        if cpu_gflops:
            for v in per_stage[name].values():
                v["this_cpu_hours"] = v["tflop"] * 1e3 / cpu_gflops / 3600
        total = {k: sum(v[f"h100_{k}_hours"] for v in per_stage[name].values()) for k in rates}
        rows.append({"model": name, "parameters_m": n_params(s) / 1e6,
                     "total_pflop": sum(v["tflop"] for v in per_stage[name].values()) / 1e3,
                     **{f"h100_{k}_hours": v for k, v in total.items()},
                     "sample_memory": sampler_memory_gb(s, p),
                     "sample_memory_one_chain_per_device": sampler_memory_gb(
                         s, dataclasses.replace(p, sampler=dataclasses.replace(p.sampler, chains=1)))})
    # Cross-check from the MEASURED CPU draw (sample_lm in the ratio runs): its passes (the draw minus the bare
    # loop's update time) reach some share of this CPU's plain matmul rate; assume the same share of the H100's
    # peak, and add the update at the H100's bandwidth.
    cross = {}
    m = bench["mode"]
    if "sgld" in bench:
        bench_p = dataclasses.replace(p.sampler, chains=m["chains"], batch_size=m["batch"], burn_in=0,
                                      rms_adapt="every_step", draws=m["ratio_draws"], obs_every=m["obs_every"],
                                      init_batches=m["init_batches"])
        # the steady-state region: steps WARMUP..steps-1, observables at the steps divisible by obs_every
        f70 = fwd_per_token(SHAPES["pythia-70m"], m["n_ctx"])
        timed = range(WARMUP, bench_p.steps)
        bench_draw_flop = (len(timed) * bench_p.chains * bench_p.batch_size * m["n_ctx"] * (3 + int(bench_p.paired))
                           + sum(s % bench_p.obs_every == 0 for s in timed) * bench_p.chains
                           * bench["sgld"]["n_observables"] * m["n_ctx"]) * f70 / len(timed)
        cpu_draw_s = bench["sgld"]["steady_per_draw_s"]["ours"]
        cpu_update_s = bench["sgld"]["update_per_draw_s"]["ours"]
        pass_s = max(cpu_draw_s - cpu_update_s, 1e-9)
        efficiency = bench_draw_flop / pass_s / (bench["cpu_matmul"]["gflops"] * 1e9)
        cross.update(bench_draw_gflop=bench_draw_flop / 1e9, cpu_draw_s=cpu_draw_s, cpu_update_s=cpu_update_s,
                     cpu_pass_gflops=bench_draw_flop / pass_s / 1e9, cpu_efficiency_vs_matmul=efficiency)
        n_obs = 2 * p.sampler.n_pairs + 2 * p.sampler.shift_windows
        for name in ("pythia-70m", "pythia-160m", "pythia-1.4b"):
            s = SHAPES[name]
            t = sgld_flops(s, p.sampler, p.model.n_ctx, n_obs)
            draw_flop = (t["steps"] + t["observables"]) / p.sampler.steps
            update_s = t["update_bytes"] / p.sampler.steps / (H100["hbm_bytes_s"] * BW_SHARE)
            cross[name] = {"draw_tflop": draw_flop / 1e12,
                           "this_cpu_draw_s": pass_s * draw_flop / bench_draw_flop
                           + cpu_update_s * n_params(s) / n_params(SHAPES["pythia-70m"]),
                           "h100_update_s": update_s,
                           "h100_draw_s_at_cpu_efficiency": {k: draw_flop / (H100[k] * efficiency) + update_s
                                                             for k in ("fp32", "tf32")},
                           "h100_draw_s_at_mfu": {k: draw_flop / r + update_s for k, r in rates.items()}}
    assumptions = [
        f"study: {source} (n_ctx {p.model.n_ctx}; {len(p.model.hf_revisions)} revisions; sampler: "
        f"{len(p.sampler.checkpoints)} checkpoints x {p.sampler.chains} chains x ({p.sampler.burn_in} burn-in + "
        f"{p.sampler.draws} draws) x batch {p.sampler.batch_size}, observables every {p.sampler.obs_every} draws, "
        f"paired {p.sampler.paired}, checks {p.sampler.checks}; sae: {len(p.sae.checkpoints)} x {p.sae.max_steps} steps "
        f"x {p.sae.batch_size}; rllc: {len(p.rllc.checkpoints)} checkpoints x (heads + MLPs + blocks + 2 data) jobs x "
        f"{p.rllc.chains} chains x ({p.rllc.burn_in} + {p.rllc.draws}) steps x batch {p.rllc.batch_size}; probes: "
        f"{p.probes.max_pairs} pairs per revision)",
        f"observables: 2 x sampler.n_pairs + 2 x sampler.shift_windows = {2 * p.sampler.n_pairs + 2 * p.sampler.shift_windows} "
        f"sequences, each counted at full n_ctx (upper bound); train_lm and sae score {n_pairs_all} pairs (3 per "
        "HumanEval problem, upper bound)",
        "FLOPs: forward 2 x matmul weights + 2 n_layer n_ctx d + 2 d V per token (Kaplan et al. 2020); "
        "forward+backward = 3 x forward, also for rLLC jobs restricted to one component (upper bound); "
        f"the SGLD update is bandwidth-bound: {UPDATE_ACCESSES} fp32 reads/writes per weight per chain per step "
        "(counted in sgld.py) at "
        f"{BW_SHARE:.0%} of {H100['hbm_bytes_s'] / 1e12:.2f} TB/s",
        "precision: every pass counted in fp32. The SGLD passes (sample, rllc: about 95 % of the FLOPs) are fp32 "
        "whatever device.precision says (SGLD weights, noise and updates must stay fp32: a step of sqrt(eps) ~ 3e-4 "
        "relative is below bf16's 4e-3 resolution); device.precision: bf16-mixed makes train_lm, monitors and probes "
        "bf16, which these columns do not credit; 'fp32' column: no TF32 (PyTorch's default matmul precision), "
        "67 TFLOP/s peak; 'tf32' column: torch.set_float32_matmul_precision('high') (the code does not set it), "
        "495 TFLOP/s dense peak",
        f"achieved throughput: {MFU:.0%} of peak (assumed, not measured on an H100); H100 SXM 80 GB",
        "not counted: process start-up and checkpoint loading, the CPU estimators (influence, emergence, "
        "susceptibility: no model passes; their CPU time is measured above where run), data stages, calibration",
        "memory: sampler_memory_gb's docstring; activation memory uses the eager-attention formula (upper bound)",
        "devices: every stage follows device.accelerator (the pythia profile: auto, so the H100); 'h on this CPU' "
        "uses the forward rate MEASURED here (observables pass, 512 sequences) on 2 shared cores: a many-core "
        "host is proportionally faster",
    ]
    return {"rows": rows, "per_stage": per_stage, "cross_check": cross, "assumptions": assumptions,
            "study_source": source}


def markdown(bench: dict, ext: dict) -> str:
    lines = ["### Measured on this CPU (Pythia-70m shape, reduced sizes)", "",
             "| stage | wall s | unit | s per unit | peak RSS MB | notes |", "|---|---|---|---|---|---|"]
    for st, r in bench.get("stages", {}).items():
        note = ""
        if "per_sgld_step_s" in r:
            note = f"{r['per_sgld_step_s']:.1f} s per SGLD step (sampling only; preconditioned update)"
        elif "per_sae_step_s" in r:
            note = (f"{r['per_sae_step_s']:.2f} s per SAE step ({r['sae_steps']} vs {r['long_run']['sae_steps']} steps: "
                    f"{r['seconds']:.1f} vs {r['long_run']['seconds']:.1f} s)")
        elif "job_seconds" in r:
            note = (", ".join(f"{k} {v:.0f} s" for k, v in r["job_seconds"].items()) + f" ({r['job_steps']} steps each); "
                    f"62 jobs per checkpoint ~ {r['stage_per_checkpoint_s_extrapolated']:.0f} s")
        lines.append(f"| {st} | {r['seconds']:.1f} | {r.get('unit', '-')} | {r.get('per_unit_s', float('nan')):.2f} "
                     f"| {r['peak_rss_mb']:.0f} | {note} |")
    rllc = bench.get("stages", {}).get("rllc", {})
    if "job_rss" in rllc:
        lines += ["", "rllc jobs in one process (no collection in between, as in the stage): RSS after each "
                      + ", ".join(f"{k} {v['rss_after_mb']:.0f} MB (peak {v['peak_so_far_mb']:.0f})" for k, v in rllc["job_rss"].items())
                      + f"; after gc.collect() {rllc['rss_after_gc_collect_mb']:.0f} MB"]
    mem = bench.get("observables_memory")
    if mem:
        lines += ["", f"observables pass (pair-like sequences + {mem['64']['n_obs'] - 64} shift windows, "
                      f"{mem['64']['tokens'] // mem['64']['n_obs']} tokens each), peak RSS growth above the RSS before it: "
                      f"64 seqs {mem['64']['pass_growth_mb']:.0f} MB, 512 seqs "
                      f"{mem['512']['pass_growth_mb']:.0f} MB (ratio {mem['growth_ratio']:.2f}; target: no growth "
                      f"-> {'holds' if mem['holds'] else 'FAILS'}); growth over device.memory_mb: "
                      + ", ".join(f"{v:.2f}x at {k}" for k, v in mem.get("growth_over_budget", {}).items())]
    sg = bench.get("sgld")
    if sg:
        lines += [f"SGLD per draw (steady state, from step {WARMUP}): ours {sg['steady_per_draw_s']['ours']:.2f} s, bare loop "
                  f"{sg['steady_per_draw_s']['bare_loop']:.2f} s (ratio {sg['ratio_to_bare_loop']:.2f}; target <= 1.2 -> "
                  f"{'holds' if sg['holds'] else 'FAILS'}); whole run incl. set-up and w*: {sg['per_draw_s']['ours']:.2f} vs "
                  f"{sg['per_draw_s']['bare_loop']:.2f} s per draw (ratio {sg['whole_run_ratio_to_bare_loop']:.2f}); "
                  f"of the steady draw, the SGLD update: ours {sg['update_per_draw_s']['ours']:.2f} s, bare "
                  f"{sg['update_per_draw_s']['bare_loop']:.2f} s"]
    lines += ["", "### ESTIMATE: the default study on one H100 (compute-bound)", "",
              "| model | params | total PFLOP | all stages on the H100 (device.accelerator: gpu): h fp32 / h TF32 | "
              "sample stage peak GB (fits 80 GB?) |",
              "|---|---|---|---|---|"]
    for r in ext["rows"]:
        mem = r["sample_memory"]["peak_gb"]
        lines.append(f"| {r['model']} | {r['parameters_m']:.0f}M | {r['total_pflop']:.1f} | {r['h100_fp32_hours']:.2f} / "
                     f"{r['h100_tf32_hours']:.2f} | {mem:.0f} ({'yes' if mem < H100['memory_gb'] else 'NO'}) |")
    lines += ["", "Sample stage memory with one chain per device (device.devices = sampler.chains): " + ", ".join(
        f"{r['model']} {r['sample_memory_one_chain_per_device']['peak_gb']:.0f} GB" for r in ext["rows"])]
    if "sample_memory_formula_at_bench_sizes" in bench and "sample" in bench.get("stages", {}):
        lines.append(f"Memory formula check at the bench sizes (Pythia-70m): "
                     f"{bench['sample_memory_formula_at_bench_sizes']['peak_gb']:.1f} GB counted vs "
                     f"{bench['stages']['sample']['peak_rss_mb'] * MB / 1e9:.1f} GB MEASURED peak RSS of the sample stage")
    lines += ["", "| model | stage | TFLOP | H100 h fp32 | H100 h TF32 | h on this CPU |",
              "|---|---|---|---|---|---|"]
    for name, stages in ext["per_stage"].items():
        for st, v in stages.items():
            lines.append(f"| {name} | {st} | {v['tflop']:.1f} | {v['h100_fp32_hours']:.3f} | "
                         f"{v['h100_tf32_hours']:.3f} | {v.get('this_cpu_hours', float('nan')):.0f} |")
    cross = ext["cross_check"]
    if cross:
        lines += ["", f"Cross-check (from the MEASURED steady-state CPU draw: {cross['cpu_draw_s']:.2f} s, of which the update "
                      f"{cross['cpu_update_s']:.2f} s; passes {cross['bench_draw_gflop']:.0f} GFLOP at "
                      f"{cross['cpu_pass_gflops']:.1f} GFLOP/s = {cross['cpu_efficiency_vs_matmul']:.0%} of this "
                      "CPU's matmul rate; ESTIMATE columns add the update at the H100's bandwidth):", "",
                  "| model | TFLOP per draw | this CPU s/draw | H100 s/draw at CPU efficiency (fp32 / TF32) | "
                  f"H100 s/draw at {MFU:.0%} (fp32 / TF32) |", "|---|---|---|---|---|"]
        for name in ("pythia-70m", "pythia-160m", "pythia-1.4b"):
            c = cross[name]
            a, b = c["h100_draw_s_at_cpu_efficiency"], c["h100_draw_s_at_mfu"]
            lines.append(f"| {name} | {c['draw_tflop']:.2f} | {c['this_cpu_draw_s']:.0f} | {a['fp32']:.3f} / {a['tf32']:.4f} "
                         f"| {b['fp32']:.3f} / {b['tf32']:.4f} |")
    lines += ["", "Assumptions:", *[f"- {a}" for a in ext["assumptions"]]]
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------------
def per_unit(stages: dict, m: dict) -> None:
    n_rev = len(REVISIONS)
    steps = m["burn_in"] + m["draws"]
    units = {"pairs": ("study", 1), "corpus": ("study", 1), "train_lm": ("revision", n_rev),
             "monitors": ("revision", n_rev), "sample": ("checkpoint", 1), "influence": ("checkpoint", 1),
             "emergence": ("study", 1), "probes": ("revision", 2)}
    for st, (unit, n) in units.items():
        if st in stages:
            stages[st].update(unit=unit, per_unit_s=stages[st]["seconds"] / n)
    if "sample" in stages:
        stages["sample"]["per_sgld_step_s"] = stages["sample"]["sampling_seconds"] / steps
    if "sae" in stages:
        a, b = stages["sae"], stages.pop("sae_long")
        stages["sae"].update(unit="checkpoint", per_unit_s=a["seconds"],
                             per_sae_step_s=(b["seconds"] - a["seconds"]) / max(1, (b["sae_steps"] or 0) - (a["sae_steps"] or 0)),
                             long_run=b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="train_lm and sample only, one repeat, shorter runs")
    ap.add_argument("--study", default="pythia", help="profile of the study to extrapolate (conf/profile/NAME.yaml)")
    ap.add_argument("--params", default=None, help="a params.yaml to extrapolate instead of --study")
    ap.add_argument("--keep", default=None, help="keep the revisions and the workspace in this directory")
    ap.add_argument("--skip", nargs="*", default=[], metavar="STAGE",
                    help="leave out these model stages (probes alone takes ~4-6 min here)")
    ap.add_argument("--extrapolate-only", default=None, metavar="JSON",
                    help="measure nothing: extrapolate the measurements of an earlier run's results file again")
    args = ap.parse_args()
    if args.extrapolate_only:
        bench = {k: v for k, v in json.loads(Path(args.extrapolate_only).read_text()).items()
                 if k not in ("extrapolation", "table_markdown")}
        ext = extrapolate(args, bench)
        table = markdown(bench, ext)
        report("pythia", {**bench, "extrapolation": ext, "table_markdown": table})
        print("\n" + table)
        return
    m = QUICK if args.quick else FULL
    m = dict(m, stages=tuple(st for st in m["stages"] if st not in args.skip))
    t_start = time.perf_counter()
    bench: dict = {"mode": {k: v for k, v in m.items()}, "quick": args.quick}
    tmp_ctx = tempfile.TemporaryDirectory(prefix="bench_pythia_") if args.keep is None else None
    tmp = Path(args.keep or tmp_ctx.name).resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        print("[bench_pythia] building the revisions ...", flush=True)
        t0 = time.perf_counter()
        bench["revisions"] = {**in_fresh_process(build_revisions, root=tmp / "pythia"),
                              "seconds": time.perf_counter() - t0}
        ws = tmp / "ws"
        e = env(tmp)
        for cmd in (["raw"], ["profile", "--name", "smoke", "--out", str(ws), "--set", *overrides(tmp / "pythia", m)]):
            run_measured([str(BIN / "emergence"), *cmd], ROOT, e, tmp / f"{cmd[0]}.log")
        stages = run_stages(ws, tmp, m)
        if "rllc" in m["stages"]:
            print("[bench_pythia] rllc jobs ...", flush=True)
            jobs = in_fresh_process(rllc_jobs, ws=str(ws))
            print(f"[bench_pythia]   {jobs}", flush=True)
            n_jobs = {"head": 6 * 8 + 6, "block": 6, "data": 2}  # heads + MLPs with observables; blocks; data
            secs = jobs["seconds"]
            stages["rllc"] = {"seconds": sum(secs.values()), "peak_rss_mb": jobs["peak_rss_mb"],
                              "unit": "job (mean of head, block, data)", "per_unit_s": sum(secs.values()) / 3,
                              "job_seconds": secs, "job_steps": jobs["steps"], "job_rss": jobs["rss"],
                              "rss_after_gc_collect_mb": jobs["rss_after_gc_collect_mb"],
                              "stage_per_checkpoint_s_extrapolated": sum(n_jobs[k] * v for k, v in secs.items())}
        per_unit(stages, m)
        bench["stages"] = stages
        from emergence.config import load_params
        bench["sample_memory_formula_at_bench_sizes"] = sampler_memory_gb(SHAPES["pythia-70m"],
                                                                           load_params(ws / "params.yaml"))

        print("[bench_pythia] observables' memory, 64 vs 512 sequences, and 512 at 4x the budget ...", flush=True)
        with mock.patch.dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD)):  # children: RSS = live memory
            mem = {str(n): in_fresh_process(observables_memory, ws=str(ws), n_obs=n, length=m["obs_len"],
                                            memory_mb=OBS_BUDGET_MB) for n in (64, 512)}
            larger = in_fresh_process(observables_memory, ws=str(ws), n_obs=512, length=m["obs_len"],
                                      memory_mb=4 * OBS_BUDGET_MB)
        print(f"[bench_pythia]   {mem} {larger}", flush=True)
        ratio = mem["512"]["pass_growth_mb"] / max(mem["64"]["pass_growth_mb"], 1.0)
        bench["observables_memory"] = {**mem, "growth_ratio": ratio, f"512_at_{4 * OBS_BUDGET_MB}_mb": larger,
                                       "growth_over_budget": {f"{OBS_BUDGET_MB} MB": mem["512"]["growth_over_budget"],
                                                              f"{4 * OBS_BUDGET_MB} MB": larger["growth_over_budget"]},
                                       "process_peak_ratio": mem["512"]["peak_rss_mb"] / mem["64"]["peak_rss_mb"],
                                       "target": "the pass's peak does not grow with the number of sequences (ratio <= 1.1)",
                                       "holds": ratio <= 1.1}

        print("[bench_pythia] SGLD vs a bare loop ...", flush=True)
        runs = interleaved({"ours": sgld_ours, "bare_loop": sgld_bare}, m["repeats"], ws=str(ws), draws=m["ratio_draws"])
        secs, steady = summary(runs, "seconds"), summary(runs, "steady_per_draw_s")
        bench["sgld"] = {"seconds": secs, "per_draw_s": summary(runs, "per_draw_s"), "steady_per_draw_s": steady,
                         "peak_rss_mb": summary(runs, "peak_rss_mb"),
                         "ratio_to_bare_loop": steady["ours"] / steady["bare_loop"],
                         "whole_run_ratio_to_bare_loop": secs["ours"] / secs["bare_loop"],
                         "holds": steady["ours"] / steady["bare_loop"] <= 1.2,
                         "target": f"steady-state time per draw (from step {WARMUP} on) <= 1.2x the bare loop's",
                         "n_observables": runs["ours"][0]["n_observables"],
                         "update_per_draw_s": summary(runs, "steady_update_per_draw_s"),
                         "runs": runs}
        bench["cpu_matmul"] = in_fresh_process(cpu_matmul_rate)
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()
    ext = extrapolate(args, bench)
    table = markdown(bench, ext)
    bench["seconds_total"] = time.perf_counter() - t_start
    report("pythia", {**bench, "extrapolation": ext, "table_markdown": table,
                      "model": {"shape": SHAPES["pythia-70m"], "vocab": VOCAB, "rotary_pct": 0.25,
                                "max_position_embeddings": 2048, "revisions": list(REVISIONS)}})
    print("\n" + table)


if __name__ == "__main__":
    main()
