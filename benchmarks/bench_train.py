"""Training throughput: LMModule under the Lightning Trainer vs a bare PyTorch loop.

Same model, data stream, optimizer, schedule and gradient clipping; each variant runs in
a fresh process, interleaved; tokens/s is measured over steady-state steps (after
warm-up). Target: Lightning overhead under 10%.

    python benchmarks/bench_train.py [--steps 60 --repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, lightning_clock, report, summary  # noqa: E402

WARMUP = 5


def _setup(corpus: str, steps: int):
    import torch
    from emergence.config import load_params
    from emergence.data.tokenizer import load_tokenizer
    from emergence.models.lm_module import LMModule, TokenDataModule
    torch.manual_seed(0)
    p = load_params("params.yaml", [f"train.max_steps={steps}", "train.warmup_steps=2"])
    vocab = load_tokenizer(Path(corpus) / "tokenizer.json").get_vocab_size()
    cfg = dict(vocab_size=vocab, n_ctx=p.model.n_ctx, n_layer=p.model.n_layer, n_head=p.model.n_head,
               d_model=p.model.d_model, d_mlp=p.model.d_mlp, bias=p.model.bias)
    module = LMModule(cfg, p.train.lr, p.train.min_lr, p.train.warmup_steps, steps, p.train.weight_decay)
    data = TokenDataModule(str(Path(corpus) / "train.bin"), str(Path(corpus) / "val.bin"),
                           p.model.n_ctx, p.train.batch_size, p.seed)
    return p, module, data


def bare(corpus: str, steps: int) -> dict:
    import torch
    from emergence.models.gpt import token_losses
    p, module, data = _setup(corpus, steps)
    opt_cfg = module.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    stream = iter(data.train_dataloader())
    module.train()
    for step in range(steps):
        if step == WARMUP:
            t0 = time.perf_counter()
        x, y = next(stream)
        loss = token_losses(module.model(x), y).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), p.train.grad_clip)
        opt.step()
        sched.step()
    seconds = time.perf_counter() - t0
    return {"tokens_per_s": (steps - WARMUP) * p.train.batch_size * p.model.n_ctx / seconds}


def lightning(corpus: str, steps: int) -> dict:
    import pytorch_lightning as pl
    from emergence.device import trainer_args
    p, module, data = _setup(corpus, steps)
    clock, marks = lightning_clock(WARMUP)
    trainer = pl.Trainer(max_steps=steps, **trainer_args(p.device), gradient_clip_val=p.train.grad_clip, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[clock])
    trainer.fit(module, datamodule=data)
    seconds = marks["t1"] - marks["t0"]
    return {"tokens_per_s": (steps - WARMUP) * p.train.batch_size * p.model.n_ctx / seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="artifacts/corpus")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    results = interleaved({"bare": bare, "lightning": lightning}, args.repeats,
                          corpus=args.corpus, steps=args.steps)
    tps, rss = summary(results, "tokens_per_s"), summary(results, "peak_rss_mb")
    report("train", {"tokens_per_s": tps, "peak_rss_mb": rss,
                     "lightning_overhead": 1 - tps["lightning"] / tps["bare"],
                     "runs": results, "steps": args.steps})


if __name__ == "__main__":
    main()
