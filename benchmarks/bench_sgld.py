"""SGLD sampling speed and memory: our sampler vs devinterp 2.0.1 and vs a bare PyTorch loop.

Same weights (a 2-layer, d_model 128, 4-head, n_ctx 64, vocab 512 GPT; devinterp gets
its transformer-lens conversion, as its documentation shows), same data, 2 chains x
100 draws, no burn-in, one step between draws, sampling batch 16, and all 64
observable sequences scored at every draw. Each variant runs in a fresh process,
interleaved, `--repeats` times; medians are reported.

    (a) ours vs devinterp `bif()`        target: >= 1.5x faster, peak memory no higher
    (b) ours vs a bare loop doing the same forward/backward/observable passes: <= 1.2x
    (c) LLC only: ours vs devinterp `llc()` with no observables
    scaling: chains 1/2/4/8 and observables 50/100/200/400; BIF post-processing of 400 sequences

    python benchmarks/bench_sgld.py [--repeats 3] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, report, summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_CTX, VOCAB, CHAINS, DRAWS, BATCH, N_OBS = 64, 512, 2, 100, 16, 64
T = N_CTX - 1  # windows of n_ctx tokens (n_ctx - 1 predictions), as devinterp feeds whole sequences
LR, NBETA, GAMMA = 1e-5, 100.0, 1000.0


def _setup(tmp: str, n_obs: int = N_OBS):
    import torch
    from emergence.models.gpt import GPT, GPTConfig
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, n_ctx=N_CTX, n_layer=2, n_head=4, d_model=128, d_mlp=512)).eval()
    tokens = (np.fromfile(ROOT / "artifacts/corpus/train.bin", dtype=np.uint16)[:400_000] % VOCAB).astype(np.uint16)
    path = Path(tmp) / "bench.bin"
    tokens.tofile(path)
    starts = np.linspace(0, len(tokens) - N_CTX - 2, n_obs).astype(int)
    obs_ids = torch.from_numpy(np.stack([tokens[s:s + N_CTX] for s in starts]).astype(np.int64))
    return model, path, obs_ids


def _sampler_params(chains=CHAINS):
    from emergence.config import SamplerParams
    return SamplerParams(lr=LR, nbeta=NBETA, localization=GAMMA, preconditioned=False, rms_adapt="every_step", chains=chains,
                         burn_in=0, draws=DRAWS, thin=1, batch_size=BATCH, obs_every=1,
                         init_batches=1, paired=False, check_every=DRAWS)


def ours(tmp: str, chains: int = CHAINS, n_obs: int = N_OBS, observed: bool = True) -> dict:
    import torch
    from emergence.estimators.bif import bif_matrix
    from emergence.config import DeviceParams
    from emergence.models.scoring import build_sequences
    from emergence.sampling.observables import sequence_observables
    from emergence.sampling.sampler_module import sample_lm
    model, path, obs_ids = _setup(tmp, n_obs)
    seqs = build_sequences(obs_ids.tolist(), [0] * len(obs_ids), T, [str(i) for i in range(len(obs_ids))],
                           ["correct"] * len(obs_ids), [str(i) for i in range(len(obs_ids))])
    observables = sequence_observables([seqs], DeviceParams().memory_mb) if observed else None
    t0 = time.perf_counter()
    trace = sample_lm(model, _sampler_params(chains), 0, str(path), T, observables)
    if observed:
        bif_matrix(trace["obs"].values, pearson=True)
    return {"seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}


def devinterp_run(tmp: str, observed: bool = True) -> dict:
    import torch
    from datasets import Dataset
    from devinterp.slt.bif import bif
    from devinterp.slt.llc import llc
    from emergence.models.hooked import gpt_to_hooked
    from emergence.data.windows import TokenWindows
    model, path, obs_ids = _setup(tmp)
    hooked = gpt_to_hooked(model)
    x, y = TokenWindows(str(path), T, 2048, 0).batch(0)
    data = Dataset.from_dict({"input_ids": torch.cat([x, y[:, -1:]], 1).tolist()}).with_format("torch")
    obs = Dataset.from_dict({"input_ids": obs_ids.tolist()}).with_format("torch")
    common = dict(lr=LR, n_beta=NBETA, localization=GAMMA, num_chains=CHAINS, num_draws=DRAWS,
                  batch_size=BATCH, num_burnin_steps=0, num_init_loss_batches=1, device="cpu",
                  output_path=str(Path(tempfile.mkdtemp(dir=tmp)) / "samples.zarr"))  # fresh: no cache reuse
    t0 = time.perf_counter()
    if observed:
        bif(hooked, data, {"pairs": (obs, N_OBS // BATCH)}, correlation_method="sequence", **common)
    else:
        llc(hooked, data, {}, **common)
    return {"seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}


def bare(tmp: str) -> dict:
    """The floor: the same passes with no framework (plain SGLD by hand, two model copies)."""
    import copy

    import torch
    from emergence.models.gpt import token_losses
    from emergence.data.windows import TokenWindows
    model, path, obs_ids = _setup(tmp)
    models = [copy.deepcopy(model) for _ in range(CHAINS)]
    anchors = [[p.detach().clone() for p in m.parameters()] for m in models]
    stream = TokenWindows(str(path), T, CHAINS * BATCH, 0)
    g = torch.Generator().manual_seed(0)
    obs = torch.zeros(CHAINS, DRAWS, len(obs_ids))
    t0 = time.perf_counter()
    for s in range(DRAWS):
        with torch.no_grad():
            for c, m in enumerate(models):
                for a in range(0, len(obs_ids), BATCH):
                    ids = obs_ids[a:a + BATCH]
                    obs[c, s, a:a + BATCH] = token_losses(m(ids[:, :-1]), ids[:, 1:]).mean(1)
        x, y = stream.batch(s)
        for c, m in enumerate(models):
            loss = token_losses(m(x[c * BATCH:(c + 1) * BATCH]), y[c * BATCH:(c + 1) * BATCH]).mean()
            m.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                for p, p0 in zip(m.parameters(), anchors[c]):
                    drift = NBETA * p.grad + GAMMA * (p - p0)
                    p.add_(-0.5 * LR * drift + LR ** 0.5 * torch.randn(p.shape, generator=g))
    return {"seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}


def postprocessing() -> dict:
    from emergence.estimators.bif import bif_matrix, token_bif_by_sequence
    rng = np.random.default_rng(0)
    seq = rng.normal(size=(2, 100, 400))
    tokens = rng.normal(size=(2, 100, 400 * 60)).astype(np.float32)
    owner = np.repeat(np.arange(400), 60)
    t0 = time.perf_counter()
    bif_matrix(seq, pearson=True)
    t1 = time.perf_counter()
    token_bif_by_sequence(tokens, owner, 400)
    t2 = time.perf_counter()
    return {"sequence_level_400_s": t1 - t0, "token_level_400x60_tokens_s": t2 - t1}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="skip the scaling runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ab = interleaved({"ours": ours, "devinterp_bif": devinterp_run, "bare_loop": bare}, args.repeats, tmp=tmp)
        llc_only = interleaved({"ours_llc": partial(ours, observed=False),
                                "devinterp_llc": partial(devinterp_run, observed=False)}, args.repeats, tmp=tmp)
        scaling = {}
        if not args.quick:
            scaling["chains"] = summary(interleaved({c: partial(ours, chains=c) for c in (1, 2, 4, 8)}, 1, tmp=tmp),
                                        "seconds")
            scaling["observables"] = summary(interleaved({n: partial(ours, n_obs=n) for n in (50, 100, 200, 400)},
                                                         1, tmp=tmp), "seconds")
    t, m = summary(ab, "seconds"), summary(ab, "peak_rss_mb")
    tl, ml = summary(llc_only, "seconds"), summary(llc_only, "peak_rss_mb")
    report("sgld", {
        "seconds": t, "peak_rss_mb": m,
        "speedup_vs_devinterp_bif": t["devinterp_bif"] / t["ours"],
        "ratio_to_bare_loop": t["ours"] / t["bare_loop"],
        "llc_only_seconds": tl, "llc_only_peak_rss_mb": ml,
        "llc_speedup_vs_devinterp": tl["devinterp_llc"] / tl["ours_llc"],
        "scaling_seconds": scaling, "bif_postprocessing": postprocessing(), "runs": ab,
        "setup": dict(n_ctx=N_CTX, vocab=VOCAB, chains=CHAINS, draws=DRAWS, batch=BATCH, observables=N_OBS)})


if __name__ == "__main__":
    main()
