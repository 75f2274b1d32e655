"""Stage `sae@<step>` (Experiment 2): an SAE at one checkpoint and its correctness directions.

Writes ``artifacts/sae/step_<N>/``: the SAE (sae-lens format), ``quality.json`` (with the
training steps used and whether held-out explained variance plateaued), ``directions.json``
(held-out table with intervals and skipped bootstrap resamples, the predictor selected on the
validation split, chosen latents, steering effect) and ``top_latents.json`` (the pairs and
corpus tokens that activate them most).
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from emergence.config import load_params
from emergence.device import batch_for, torch_device
from emergence.data.tokenizer import load_tokenizer
from emergence.io import write_json
from emergence.models.checkpoints import open_series
from emergence.data.windows import TokenWindows, fixed_windows
from emergence.models.scoring import SequenceSet, load_pair_sequences
from emergence.sae import directions
from emergence.sae.sae_module import (ActivationStream, dense_latents, hook_activations, make_sae, sae_quality,
                                      train_sae)
from emergence.tracking.wandb import init_run, lightning_logger, log_reference, use_reference

log = logging.getLogger(__name__)


@torch.no_grad()
def read_activations(hooked, hook: str, seqs: SequenceSet, mode: str, memory_mb: float) -> np.ndarray:
    """(N, d) activations at `hook`: at each sequence's final token, or mean over its scored body; a
    batch of sequences at a time within `memory_mb`."""
    out, size = [], batch_for(hooked, seqs.ids.shape[1], memory_mb)
    for a in range(0, len(seqs), size):
        b = min(a + size, len(seqs))
        t = int(seqs.lengths[a:b].max())
        acts = hook_activations(hooked, hook, seqs.ids[a:b, :t], memory_mb).float().cpu()   # (B, T, d)
        if mode == "final":
            out.append(acts[torch.arange(b - a), seqs.lengths[a:b] - 1])
        else:
            m = seqs.mask[a:b, :t, None]
            out.append((acts * m).sum(1) / m.sum(1))
    return torch.cat(out).numpy()


def top_examples(latent: int, latents: np.ndarray, names: list[str], corpus_feats: np.ndarray,
                 corpus_tokens: np.ndarray, tok, n: int = 5) -> dict:
    """The pairs and the corpus tokens (with context) on which a latent is largest."""
    best = np.argsort(-latents[:, latent])[:n]
    pos = np.argsort(-corpus_feats[:, latent])[:n]
    flat = corpus_tokens.reshape(-1)

    def context(i: int) -> str:
        a = max(0, i - 6)
        return tok.decode(flat[a:i].tolist()) + "[[" + tok.decode([int(flat[i])]) + "]]" + tok.decode(flat[i + 1:i + 3].tolist())

    return {"pairs": [{"sequence": names[i], "activation": float(latents[i, latent])} for i in best],
            "corpus": [{"context": context(int(i)), "activation": float(corpus_feats[i, latent])} for i in pos]}


def main(args) -> None:
    p = load_params(args.params)
    step, corpus, out = int(args.step), Path(args.corpus), Path(args.out) / f"step_{args.step}"
    torch.manual_seed(p.seed)
    device, memory_mb = torch_device(p.device), p.device.memory_mb
    hooked = open_series(p.model, args.checkpoints, device).load(step).hooked()
    hook = f"blocks.{p.sae_layer_for(hooked.cfg.n_layers)}.hook_resid_post"
    d_model = hooked.cfg.d_model
    sae = make_sae(p.sae.architecture, d_model, p.sae.expansion * d_model, p.sae.l1, p.sae.k, hook, device)
    windows = TokenWindows(str(corpus / "train.bin"), p.model.n_ctx, p.sae.buffer_windows, p.seed)
    logger = lightning_logger("sae", p, name=f"sae-step{step}")
    stream = ActivationStream(hooked, hook, windows, p.sae.batch_size, p.sae.buffer_windows, p.seed, memory_mb)
    # held-out activations for the plateau criterion: random windows of the validation file
    held_out = ActivationStream(hooked, hook, TokenWindows(str(corpus / "val.bin"), p.model.n_ctx,
                                                           p.sae.quality_windows, p.seed + 1),
                                p.sae.batch_size, p.sae.quality_windows, p.seed, memory_mb).fill(0)
    training = train_sae(sae, stream, held_out, p.sae.lr, p.sae.max_steps, p.sae.min_steps, p.sae.eval_every,
                         p.sae.plateau_window, p.sae.plateau_tol, logger, p.device)

    vx, vy = fixed_windows(corpus / "val.bin", p.model.n_ctx, p.sae.quality_windows).tensors
    # quality, and the latents of the general-code tokens: the density filter and the top contexts
    scores, corpus_feats = sae_quality(sae, hooked, hook, vx, vy, p.sae.dense_factor, memory_mb)
    quality = {**training, **scores}
    dense, _ = dense_latents(sae, corpus_feats, p.sae.dense_factor)
    seqs = load_pair_sequences(corpus / "pairs_tokens.jsonl", p.model.n_ctx)
    acts = read_activations(hooked, hook, seqs, p.sae.read, memory_mb)
    with torch.no_grad():
        latents = sae.encode(torch.from_numpy(acts).to(device)).cpu().numpy()
    labels = (seqs.labels == "correct").astype(int)
    result = directions.evaluate(latents, acts, seqs.lengths.numpy(), labels, seqs.groups, dense, p.seed,
                                 p.sae.top_k, p.sae.bootstrap)
    found, sp = result["search"], result["splits"]

    held = np.isin(np.arange(len(seqs) // 2), sp.held_out)  # pairs whose problem is held out
    pair_index = np.nonzero(held)[0]
    steer_seqs = seqs.subset(np.r_[pair_index, pair_index + len(seqs) // 2].tolist())
    norm = float(np.median(np.linalg.norm(acts, axis=1)))
    w_dec = sae.W_dec.detach().cpu()
    steer_dir = w_dec[found.steering] / w_dec[found.steering].norm()
    random_dir = torch.randn(d_model, generator=torch.Generator().manual_seed(p.seed))
    random_dir /= random_dir.norm()
    alpha = p.sae.steer_alpha * norm
    effect = _mean_se(directions.steering_effect(hooked, hook, steer_dir, steer_seqs, alpha, memory_mb))
    control = _mean_se(directions.steering_effect(hooked, hook, random_dir, steer_seqs, alpha, memory_mb))

    tok = load_tokenizer(corpus / "tokenizer.json")
    chosen = {"t_max": found.positive, "t_min": found.negative, "steering": found.steering}
    top = {role: {"latent": int(i), "t": float(found.t[i]), "separation": float(found.s[i]),
                  **top_examples(int(i), latents, seqs.names, corpus_feats, vx.numpy(), tok)}
           for role, i in chosen.items()}
    summary = {"step": step, "hook": hook, "read": p.sae.read, "n_sequences": len(seqs),
               "dense_latents": int(dense.sum()), "table": result["table"], "validation": result["validation"],
               "selected": result["selected"], "latents": chosen,
               "random_latent": result["random_latent"], "top_k_latents": found.top_k.tolist(),
               "steering": {"alpha": alpha, "effect_mean": effect["mean"], "effect_se": effect["se"],
                            "random_mean": control["mean"], "random_se": control["se"],
                            "pairs": len(pair_index), "pairs_skipped": effect["skipped"],
                            "random_pairs_skipped": control["skipped"]}}
    if (out / "sae").exists():
        shutil.rmtree(out / "sae")
    sae.save_inference_model(out / "sae")
    write_json(out / "quality.json", quality)
    write_json(out / "directions.json", summary)
    write_json(out / "top_latents.json", top)
    _log(p, step, quality, summary, top, logger, out, args.checkpoints)
    acc = result["table"][result["selected"]]["accuracy"]
    log.info("step %d: SAE EV %.3f, L0 %.1f after %d steps (%s); %s (selected on validation) held-out accuracy "
             "%.3f [%.3f, %.3f]; steering %+.4f vs random %+.4f", step, quality["explained_variance"], quality["l0"],
             quality["train_steps"], "plateau" if quality["plateaued"] else "step cap", result["selected"],
             acc["value"], acc["lo"], acc["hi"], summary["steering"]["effect_mean"],
             summary["steering"]["random_mean"])


def _mean_se(values: np.ndarray) -> dict:
    """Mean and standard error over the finite values; the non-finite ones are counted as skipped."""
    finite = values[np.isfinite(values)]
    return {"mean": float(finite.mean()) if len(finite) else float("nan"),
            "se": float(finite.std(ddof=1) / np.sqrt(len(finite))) if len(finite) > 1 else float("nan"),
            "skipped": int(len(values) - len(finite))}


def _log(p, step, quality, summary, top, logger, out: Path, checkpoints: str) -> None:
    import wandb
    run = logger.experiment if logger is not None else init_run("sae", p, name=f"sae-step{step}")
    rows = [[step, role, v["latent"], v["t"], v["separation"],
             json.dumps(v["pairs"][:3]), " | ".join(c["context"] for c in v["corpus"][:3])]
            for role, v in top.items()]
    table = wandb.Table(columns=["step", "role", "latent", "welch_t", "separation", "top_pairs", "top_corpus_tokens"],
                        data=rows)
    metrics = wandb.Table(columns=["method", "metric", "value", "lo", "hi", "bootstrap_skipped"],
                          data=[[m, k, v["value"], v["lo"], v["hi"], v["bootstrap_skipped"]]
                                for m, t in summary["table"].items() for k, v in t.items()])
    run.log({"sae/top_latents": table, "sae/held_out": metrics, **{f"sae/quality/{k}": v for k, v in quality.items()}})
    run.summary.update({"steering": summary["steering"]})
    use_reference(run, "checkpoints", "model", checkpoints)
    log_reference(run, f"sae-step{step}", "sae", out)
    run.finish()
