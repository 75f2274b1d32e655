"""Lightning pieces for training the code model: data, step logic, checkpoint series.

* :class:`TokenDataModule` streams random windows from the memory-mapped uint16 token
  file; batch ``s`` is a function of ``(seed, s)`` only, so a resumed run sees exactly
  the batches an uninterrupted one would.
* :class:`LMModule` holds the GPT, AdamW with decoupled weight decay on matrices, and a
  linear warm-up + cosine schedule (nanoGPT's).
* :class:`CheckpointSeriesWriter` saves the model at the scheduled steps (Pythia-like:
  0, 1, 2, 4, ... then evenly spaced), scores the correct/buggy pairs there, and keeps
  a resumable Lightning checkpoint (``last.ckpt``) beside the series; its ``index.json``
  says ``complete: false`` until the run has finished.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from emergence.data.windows import TokenWindows, fixed_windows
from emergence.device import batch_for
from emergence.io import read_json, write_json
from emergence.models.checkpoints import save_checkpoint
from emergence.models.gpt import GPT, GPTConfig, token_losses
from emergence.models.scoring import SequenceSet, module_device, pair_preference, sequence_losses


def checkpoint_schedule(max_steps: int, log_until: int, n_linear: int) -> list[int]:
    """0, 1, 2, 4, ... (powers of two below `log_until`), then `n_linear` evenly spaced to max_steps."""
    steps = {0}
    p = 1
    while p < min(log_until, max_steps):
        steps.add(p)
        p *= 2
    start = min(log_until, max_steps)
    steps |= {int(round(x)) for x in np.linspace(start, max_steps, n_linear + 1)}
    steps.add(max_steps)
    return sorted(steps)


@torch.inference_mode()
def validation_loss(model: torch.nn.Module, windows: TensorDataset, memory_mb: float) -> float:
    """Mean per-token loss over fixed validation windows, in batches within `memory_mb` (logits included)."""
    batch_size = batch_for(model, windows.tensors[0].shape[1], memory_mb, logits=True)
    device = module_device(model)
    total = sum(token_losses(model(x.to(device)), y.to(device)).sum()
                for x, y in DataLoader(windows, batch_size=batch_size))
    return float(total) / (len(windows) * windows.tensors[1].shape[1])


def checkpoint_scores(model: torch.nn.Module, val_windows: TensorDataset, pairs: SequenceSet | None,
                      memory_mb: float) -> dict[str, float]:
    """What the series index records per checkpoint: validation loss and, given pairs, how the
    model ranks their correct and buggy versions."""
    scores = {"val/loss": validation_loss(model, val_windows, memory_mb)}
    if pairs is not None:
        scores.update(pair_preference(sequence_losses(model, pairs, memory_mb), pairs.labels))
    return scores


class TokenDataModule(pl.LightningDataModule):
    def __init__(self, train_path: str, val_path: str, n_ctx: int, batch_size: int, seed: int,
                 val_windows: int = 64, aligned: bool = False):
        super().__init__()
        self.train_set = TokenWindows(train_path, n_ctx, batch_size, seed, aligned)
        self.val_path, self.n_ctx, self.batch_size, self.val_windows = val_path, n_ctx, batch_size, val_windows
        self.aligned = aligned

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=None, num_workers=0)

    def val_windows_set(self) -> TensorDataset:
        return fixed_windows(self.val_path, self.n_ctx, self.val_windows, self.aligned)

    def state_dict(self) -> dict:
        return {"step": self.trainer.global_step if self.trainer else 0}

    def load_state_dict(self, state: dict) -> None:
        self.train_set.start_step = state["step"]


class LMModule(pl.LightningModule):
    def __init__(self, model: dict, lr: float, min_lr: float, warmup_steps: int, max_steps: int,
                 weight_decay: float, beta1: float = 0.9, beta2: float = 0.95):
        super().__init__()
        self.save_hyperparameters()
        self.model = GPT(GPTConfig(**model))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    def _loss(self, batch) -> torch.Tensor:
        x, y = batch
        return token_losses(self.model(x), y).mean()

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def lr_at(self, step: int) -> float:
        h = self.hparams
        if step < h.warmup_steps:
            return h.lr * (step + 1) / (h.warmup_steps + 1)
        progress = min(1.0, (step - h.warmup_steps) / max(1, h.max_steps - h.warmup_steps))
        return h.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (h.lr - h.min_lr)

    def configure_optimizers(self):
        h = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": h.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=h.lr, betas=(h.beta1, h.beta2))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: self.lr_at(s) / h.lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class CheckpointSeriesWriter(pl.Callback):
    """Save the series at scheduled steps, score the pairs there, keep `last.ckpt` for resuming."""

    def __init__(self, directory: str | Path, steps: list[int], meta: dict,
                 pairs: SequenceSet | None, memory_mb: float):
        self.directory, self.steps, self.meta = Path(directory), set(steps), meta
        self.pairs, self.memory_mb = pairs, memory_mb
        self.index_path = self.directory / "index.json"
        self.entries: dict[int, dict] = {}
        self._t0 = time.perf_counter()

    @property
    def resume_path(self) -> Path:
        return self.directory / "last.ckpt"

    def load_index(self) -> None:
        if self.index_path.exists():
            self.entries = {c["step"]: c for c in read_json(self.index_path)["checkpoints"]}

    def on_train_start(self, trainer, pl_module) -> None:
        self.load_index()
        if trainer.global_step == 0 and 0 in self.steps:
            self._save(trainer, pl_module, 0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step in self.steps and step not in self.entries:
            self._save(trainer, pl_module, step)

    def _save(self, trainer, pl_module, step: int) -> None:
        """Rank 0 writes the series entry; every rank joins the resumable checkpoint's save."""
        if step > 0:
            partial = self.resume_path.with_suffix(".ckpt.partial")
            trainer.save_checkpoint(partial)  # collective under DDP; only rank 0 writes
            if trainer.is_global_zero:
                os.replace(partial, self.resume_path)
        if trainer.is_global_zero:
            self._write_entry(trainer, pl_module, step)

    def _write_entry(self, trainer, pl_module, step: int) -> None:
        model: GPT = pl_module.model
        was_training = model.training
        model.eval()
        data: TokenDataModule = trainer.datamodule
        entry = {"step": step, "file": f"step_{step}.pt",
                 "tokens_seen": step * data.train_set.batch_size * data.train_set.n_ctx,
                 **checkpoint_scores(model, data.val_windows_set(), self.pairs, self.memory_mb)}
        if trainer.logger is not None:
            trainer.logger.log_metrics({k: v for k, v in entry.items() if "/" in k}, step=step)
        model.train(was_training)
        save_checkpoint(self.directory / entry["file"], model, step, **self.meta)
        self.entries[step] = entry
        self.write_index(complete=False)

    def mark_complete(self) -> None:
        """After training ran all its steps: the index on disk (written by rank 0, whichever
        process that was) marked complete."""
        index = read_json(self.index_path)
        write_json(self.index_path, {**index, "complete": True})

    def write_index(self, complete: bool) -> None:
        """The series so far; ``complete`` only once training ran all its steps (readers refuse a partial one)."""
        write_json(self.index_path, {"checkpoints": [self.entries[s] for s in sorted(self.entries)],
                                     **self.meta, "complete": complete})
