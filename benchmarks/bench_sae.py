"""SAE training throughput: our Lightning SAEModule vs sae-lens' own SAETrainer.

Same TopK SAE (d_in 128, d_sae 1024, k 32), the same in-memory activations, batch size,
Adam learning rate and number of steps; each variant in a fresh process, interleaved.
Target: our wrapper costs at most 10% over sae-lens' loop.

    python benchmarks/bench_sae.py [--steps 300 --repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, lightning_clock, report, summary  # noqa: E402

D_IN, D_SAE, K, BATCH, LR, N_ACTS = 128, 1024, 32, 1024, 1e-3, 200_000
WARMUP = 10


def _setup():
    import torch
    from emergence.sae.sae_module import make_sae
    torch.manual_seed(0)
    acts = torch.randn(N_ACTS, D_IN) @ torch.randn(D_IN, D_IN) / D_IN ** 0.5
    return make_sae("topk", D_IN, D_SAE, k=K), acts


def ours(steps: int) -> dict:
    import pytorch_lightning as pl
    from emergence.sae.sae_module import SAEModule, TensorBatches
    from torch.utils.data import DataLoader
    sae, acts = _setup()
    clock, marks = lightning_clock(WARMUP)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, gradient_clip_val=1.0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0, callbacks=[clock])
    trainer.fit(SAEModule(sae, LR), train_dataloaders=DataLoader(TensorBatches(acts, BATCH, 0), batch_size=None))
    return {"acts_per_s": (steps - WARMUP) * BATCH / (marks["t1"] - marks["t0"])}


def sae_lens(steps: int) -> dict:
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer
    from emergence.sae.sae_module import TensorBatches
    sae, acts = _setup()
    batches = iter(TensorBatches(acts, BATCH, 0))
    marks = {}

    def provider():
        for i, b in enumerate(batches):
            if i == WARMUP:
                marks["t0"] = time.perf_counter()
            yield b

    cfg = SAETrainerConfig(total_training_samples=steps * BATCH, train_batch_size_samples=BATCH, lr=LR, lr_end=LR,
                           device="cpu", logger=LoggingConfig(log_to_wandb=False), dead_feature_window=1000)
    SAETrainer(cfg=cfg, sae=sae, data_provider=provider()).fit()
    return {"acts_per_s": (steps - WARMUP) * BATCH / (time.perf_counter() - marks["t0"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    results = interleaved({"ours": ours, "sae_lens": sae_lens}, args.repeats, steps=args.steps)
    speed, rss = summary(results, "acts_per_s"), summary(results, "peak_rss_mb")
    report("sae", {"acts_per_s": speed, "peak_rss_mb": rss, "overhead": 1 - speed["ours"] / speed["sae_lens"],
                   "runs": results, "setup": dict(d_in=D_IN, d_sae=D_SAE, k=K, batch=BATCH, steps=args.steps)})


if __name__ == "__main__":
    main()
