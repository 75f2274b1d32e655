"""Stage `train_lm`: train our GPT on the corpus and write the checkpoint series (with
``model.source: hf``, index the HF revisions instead: each is loaded and scored).

A signal stops the stage with a non-zero exit before the metrics are written, leaving the
series index marked incomplete. Interrupted runs resume from ``last.ckpt`` when it was
written with the same parameters and data; otherwise the series directory is started afresh. A finished run
that still matches is kept as it is (delete ``artifacts/checkpoints`` to retrain after
changing the model code).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ThroughputMonitor

from emergence.config import load_params, params_hash
from emergence.device import torch_device, trainer_args
from emergence.data.tokenizer import load_tokenizer
from emergence.data.windows import fixed_windows
from emergence.interrupt import fit
from emergence.io import read_json, sha256_file, write_json
from emergence.models.checkpoints import CheckpointError, open_series
from emergence.models.lm_module import (CheckpointSeriesWriter, LMModule, TokenDataModule,
                                        checkpoint_schedule, checkpoint_scores)
from emergence.models.scoring import load_pair_sequences
from emergence.progress import StepProgress
from emergence.tracking.wandb import lightning_logger, log_reference

log = logging.getLogger(__name__)


def unigram_loss(train_path: str | Path, val_path: str | Path, vocab_size: int) -> float:
    """Cross-entropy of the val tokens under add-one-smoothed train unigram frequencies."""
    train = np.memmap(train_path, dtype=np.uint16, mode="r")
    val = np.memmap(val_path, dtype=np.uint16, mode="r")
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[val].mean())


def _windows_per_batch(batch) -> int:
    return batch[0].shape[0]


def _tokens_per_window(batch) -> int:
    return batch[0].shape[1]


def build_trainer(p, callbacks, logger, label: str = "train") -> pl.Trainer:
    """The LM's Trainer on params.device (DDP over devices x num_nodes); its progress (`label`) counts steps."""
    t = p.train
    return pl.Trainer(max_steps=t.max_steps, **trainer_args(p.device), strategy=p.device.strategy,
                      gradient_clip_val=t.grad_clip,
                      log_every_n_steps=t.log_every, logger=logger if logger is not None else False,
                      callbacks=[*callbacks, StepProgress(label)], enable_checkpointing=False, enable_progress_bar=False,
                      limit_val_batches=0,
                      num_sanity_val_steps=0, enable_model_summary=False, deterministic=True)


def resume_or_clear(writer, out: Path, meta: dict) -> str | None:
    """`last.ckpt` of an interrupted run of the same data and settings (`meta`), else None
    with `out` cleared."""
    if writer.resume_path.exists() and (out / "index.json").exists():
        if {k: read_json(out / "index.json").get(k) for k in meta} == meta:
            log.info("resuming from %s", writer.resume_path)
            return str(writer.resume_path)
    if out.exists():
        shutil.rmtree(out)
    return None


def train(p, corpus_dir: Path, out: Path, logger=None) -> dict:
    """Train with params `p` on `corpus_dir`, writing the series into `out`; returns the index."""
    tok = load_tokenizer(corpus_dir / "tokenizer.json")
    model_cfg = dict(vocab_size=tok.get_vocab_size(), n_ctx=p.model.n_ctx, n_layer=p.model.n_layer,
                     n_head=p.model.n_head, d_model=p.model.d_model, d_mlp=p.model.d_mlp,
                     bias=p.model.bias)
    meta = {"tokenizer_sha256": sha256_file(corpus_dir / "tokenizer.json"),
            "data_sha256": sha256_file(corpus_dir / "train.bin"),
            "params_hash": params_hash((p.seed, p.model, p.train, p.device.precision)), "model_source": "own"}
    writer = CheckpointSeriesWriter(out, checkpoint_schedule(p.train.max_steps, p.train.checkpoints.log_until,
                                                             p.train.checkpoints.n_linear), meta,
                                    load_pair_sequences(corpus_dir / "pairs_tokens.jsonl", p.model.n_ctx),
                                    p.device.memory_mb)
    resume = resume_or_clear(writer, out, meta)
    pl.seed_everything(p.seed, workers=True, verbose=False)
    data = TokenDataModule(str(corpus_dir / "train.bin"), str(corpus_dir / "val.bin"), p.model.n_ctx,
                           p.train.batch_size, p.seed, p.train.val_windows)
    module = LMModule(model_cfg, p.train.lr, p.train.min_lr, p.train.warmup_steps, p.train.max_steps,
                      p.train.weight_decay)
    monitors = [LearningRateMonitor("step"),  # and tokens/s as train|device/items_per_sec
                ThroughputMonitor(batch_size_fn=_windows_per_batch, length_fn=_tokens_per_window)]
    callbacks = [writer] + (monitors if logger is not None else [])
    fit(build_trainer(p, callbacks, logger), module, datamodule=data, ckpt_path=resume)  # Interrupted on a signal
    writer.mark_complete()
    return read_json(out / "index.json")


def index_revisions(p, corpus_dir: Path, out: Path, logger=None) -> dict:
    """For ``model.source: hf``: load every revision (so a missing one fails here, naming it), score
    the validation windows and the pairs with it, and write the series index into `out`."""
    tok = load_tokenizer(corpus_dir / "tokenizer.json")
    series = open_series(p.model, out, torch_device(p.device))
    pairs = load_pair_sequences(corpus_dir / "pairs_tokens.jsonl", p.model.n_ctx)
    val = fixed_windows(corpus_dir / "val.bin", p.model.n_ctx, p.train.val_windows)
    entries = []
    for ckpt in series:
        with torch.inference_mode():  # float32, as the own model's series is scored (pair preferences compare losses)
            vocab = ckpt.model(torch.zeros(1, 1, dtype=torch.long, device=torch_device(p.device))).shape[-1]
            if vocab < tok.get_vocab_size():
                raise CheckpointError(f"{ckpt.source}: {vocab} output logits but the corpus tokenizer has "
                                      f"{tok.get_vocab_size()} tokens; re-run `dvc repro corpus` with this model")
            entry = {"step": ckpt.step, "revision": series.revisions[series.steps.index(ckpt.step)],
                     **checkpoint_scores(ckpt.model, val, pairs, p.device.memory_mb)}
        entries.append(entry)
        if logger is not None:
            logger.log_metrics({k: v for k, v in entry.items() if "/" in k}, step=ckpt.step)
        log.info("%s %s: val loss %.3f", p.model.hf_name, entry["revision"], entry["val/loss"])
    if out.exists():
        shutil.rmtree(out)
    index = {"checkpoints": entries, "model_source": "hf", "hf_name": p.model.hf_name,
             "tokenizer_sha256": sha256_file(corpus_dir / "tokenizer.json")}
    write_json(out / "index.json", index)
    return index


def main(args) -> None:
    p = load_params(args.params)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    corpus_dir, out = Path(args.corpus), Path(args.out)
    logger = lightning_logger("train_lm", p)
    index = (index_revisions if p.model.source == "hf" else train)(p, corpus_dir, out, logger)
    last = index["checkpoints"][-1]
    metrics = {"final_step": last["step"], "val_loss": last["val/loss"],
               "unigram_val_loss": unigram_loss(corpus_dir / "train.bin", corpus_dir / "val.bin",
                                                load_tokenizer(corpus_dir / "tokenizer.json").get_vocab_size()),
               "pairs_correct_loss": last["pairs/correct_loss"], "pairs_buggy_loss": last["pairs/buggy_loss"],
               "pairs_loss_gap": last["pairs/loss_gap"], "pairs_correct_preferred": last["pairs/correct_preferred"]}
    report = Path(args.report)
    write_json(report / "metrics.json", metrics)
    write_json(report / "curve.json", [{k.replace("/", "_"): v for k, v in c.items() if k != "file"}
                                       for c in index["checkpoints"]])
    if logger is not None:
        logger.experiment.summary.update(metrics)
        log_reference(logger.experiment, "checkpoints", "model", out)
        logger.experiment.finish()
    log.info("trained to step %d: val loss %.3f (unigram %.3f); correct preferred on %.1f%% of pairs",
             last["step"], metrics["val_loss"], metrics["unigram_val_loss"],
             100 * metrics["pairs_correct_preferred"])
