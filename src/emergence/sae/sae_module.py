"""Sparse autoencoders per checkpoint: sae-lens SAEs trained by a LightningModule.

* :class:`ActivationStream` runs the language model over random corpus windows and
  yields shuffled activation batches from a bounded buffer (``buffer_windows`` windows
  at a time), so memory does not grow with the corpus or the model.
* :class:`SAEModule` calls the sae-lens SAE's own ``training_forward_pass`` (MSE plus
  the architecture's sparsity or auxiliary loss, with sae-lens' coefficient warm-up and
  dead-latent mask), Adam, and gradient clipping through the Trainer.
* :func:`sae_quality`: reconstruction MSE, explained variance, L0, dead and dense
  latent fractions, and the LM loss increase when the reconstruction is spliced in.
"""
from __future__ import annotations

from typing import Iterator

import pytorch_lightning as pl
import torch
from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.saes.sae import TrainCoefficientConfig, TrainStepInput
from sae_lens.training.optim import CoefficientScheduler
from torch.utils.data import DataLoader, IterableDataset

from emergence.interrupt import fit
from emergence.models.gpt import token_losses


def make_sae(architecture: str, d_in: int, d_sae: int, l1: float = 5.0, k: int = 32, hook_name: str = ""):
    """A sae-lens training SAE: 'standard' (ReLU + L1) or 'topk'."""
    common = dict(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu")
    if architecture == "standard":
        return StandardTrainingSAE(StandardTrainingSAEConfig(l1_coefficient=l1, **common))
    if architecture == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(k=k, **common))
    raise ValueError(f"unknown SAE architecture {architecture!r}: use 'standard' or 'topk'")


class ActivationStream(IterableDataset):
    """Endless batches (batch, d_in) of activations at `hook` from random windows of a token file."""

    def __init__(self, hooked, hook: str, windows, batch_size: int, buffer_windows: int, seed: int):
        self.hooked, self.hook, self.windows = hooked, hook, windows
        self.batch_size, self.buffer_windows, self.seed = batch_size, buffer_windows, seed
        self.layer = int(hook.split(".")[1]) + 1

    @torch.no_grad()
    def fill(self, k: int) -> torch.Tensor:
        x, _ = self.windows.batch(k)
        x = x[: self.buffer_windows]
        _, cache = self.hooked.run_with_cache(x, names_filter=self.hook, stop_at_layer=self.layer)
        acts = cache[self.hook].reshape(-1, cache[self.hook].shape[-1])
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
        return acts[torch.randperm(len(acts), generator=g)]

    def __iter__(self) -> Iterator[torch.Tensor]:
        k = 0
        while True:
            buf = self.fill(k)
            for a in range(0, len(buf) - self.batch_size + 1, self.batch_size):
                yield buf[a:a + self.batch_size]
            k += 1


class TensorBatches(IterableDataset):
    """Endless shuffled batches from activations already in memory (tests, small sets)."""

    def __init__(self, acts: torch.Tensor, batch_size: int, seed: int):
        self.acts, self.batch_size, self.seed = acts, batch_size, seed

    def __iter__(self) -> Iterator[torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        while True:
            perm = torch.randperm(len(self.acts), generator=g)
            for a in range(0, len(perm) - self.batch_size + 1, self.batch_size):
                yield self.acts[perm[a:a + self.batch_size]]


class SAEModule(pl.LightningModule):
    def __init__(self, sae, lr: float, dead_window: int = 1000):
        super().__init__()
        self.sae, self.lr, self.dead_window = sae, lr, dead_window
        self.schedulers = {}
        for name, c in sae.get_coefficients().items():
            c = c if isinstance(c, TrainCoefficientConfig) else TrainCoefficientConfig(c, 0)
            self.schedulers[name] = CoefficientScheduler(warm_up_steps=c.warm_up_steps, final_value=c.value)
        self.register_buffer("since_fired", torch.zeros(sae.cfg.d_sae))

    def training_step(self, batch: torch.Tensor, batch_idx: int):
        out = self.sae.training_forward_pass(TrainStepInput(
            sae_in=batch, coefficients={k: s.value for k, s in self.schedulers.items()},
            dead_neuron_mask=self.since_fired > self.dead_window, n_training_steps=self.global_step,
            is_logging_step=False))
        with torch.no_grad():
            fired = out.feature_acts.bool().any(0)
            self.since_fired += 1
            self.since_fired[fired] = 0
        for name, value in out.losses.items():
            self.log(f"sae/{name}", value)
        return out.loss

    def on_train_batch_end(self, *args) -> None:
        for s in self.schedulers.values():
            s.step()

    def configure_optimizers(self):
        return torch.optim.Adam(self.sae.parameters(), lr=self.lr)


def train_sae(sae, stream: IterableDataset, steps: int, lr: float, logger=None):
    """Train `sae` for `steps` batches of `stream` under the Lightning Trainer."""
    module = SAEModule(sae, lr)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, gradient_clip_val=1.0,
                         logger=logger if logger is not None else False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, log_every_n_steps=max(1, steps // 20))
    fit(trainer, module, train_dataloaders=DataLoader(stream, batch_size=None))  # Interrupted on a signal
    return sae.eval()


@torch.no_grad()
def sae_quality(sae, hooked, hook: str, x: torch.Tensor, y: torch.Tensor, dense_threshold: float = 0.1) -> dict:
    """Reconstruction and sparsity of `sae` on windows (x, y), and the spliced-in LM loss."""
    logits, cache = hooked.run_with_cache(x, names_filter=hook)
    acts = cache[hook].reshape(-1, cache[hook].shape[-1])
    feats = sae.encode(acts)
    recon = sae.decode(feats)
    mse = float(((recon - acts) ** 2).sum(-1).mean())
    explained = 1.0 - float(((recon - acts) ** 2).sum() / ((acts - acts.mean(0)) ** 2).sum())
    freq = (feats > 0).float().mean(0)

    def splice(value, hook=None):
        shape = value.shape
        return sae.decode(sae.encode(value.reshape(-1, shape[-1]))).reshape(shape)

    clean = float(token_losses(logits, y).mean())
    spliced = float(token_losses(hooked.run_with_hooks(x, fwd_hooks=[(hook, splice)]), y).mean())
    return {"mse": mse, "explained_variance": explained, "l0": float((feats > 0).float().sum(-1).mean()),
            "dead_fraction": float((freq == 0).float().mean()),
            "dense_fraction": float((freq > dense_threshold).float().mean()),
            "lm_loss": clean, "lm_loss_spliced": spliced, "lm_loss_increase": spliced - clean}

