"""Sparse autoencoders per checkpoint: sae-lens SAEs trained by a LightningModule.

* :class:`ActivationStream` runs the language model over random corpus windows and
  yields shuffled activation batches from a bounded buffer (``buffer_windows`` windows
  at a time, read in forward passes within ``device.memory_mb``), so memory does not grow
  with the corpus or the model.
* :class:`SAEModule` calls the sae-lens SAE's own ``training_forward_pass`` (MSE plus
  the architecture's sparsity or auxiliary loss, with sae-lens' coefficient warm-up and
  dead-latent mask), Adam, and gradient clipping through the Trainer.
* :func:`train_sae` trains until the explained variance on held-out activations
  plateaus (:class:`Plateau`), or up to a step cap.
* :func:`dense_latents`: latents firing far more often than the architecture's expected
  density (the correctness-direction search never uses them).
* :func:`sae_quality`: reconstruction MSE, explained variance, L0, dead and dense
  latent fractions, and the LM loss increase when the reconstruction is spliced in,
  accumulated a batch of windows at a time.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.saes.sae import TrainCoefficientConfig, TrainStepInput
from sae_lens.training.optim import CoefficientScheduler
from torch.utils.data import DataLoader, IterableDataset

from emergence.config import DeviceParams
from emergence.device import batch_for, trainer_args
from emergence.interrupt import fit
from emergence.models.gpt import token_losses
from emergence.progress import StepProgress


def make_sae(architecture: str, d_in: int, d_sae: int, l1: float = 5.0, k: int = 32, hook_name: str = "",
             device: torch.device | None = None):
    """A sae-lens training SAE: 'standard' (ReLU + L1) or 'topk', in float32 on `device` (None: torch's default)."""
    common = dict(d_in=d_in, d_sae=d_sae, dtype="float32", device=str(device or torch.get_default_device()))
    if architecture == "standard":
        return StandardTrainingSAE(StandardTrainingSAEConfig(l1_coefficient=l1, **common))
    if architecture == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(k=k, **common))
    raise ValueError(f"unknown SAE architecture {architecture!r}: use 'standard' or 'topk'")


class ActivationStream(IterableDataset):
    """Endless batches (batch, d_in) of activations at `hook` from random windows of a token file;
    each buffer of `buffer_windows` windows is read in forward passes within `memory_mb`."""

    def __init__(self, hooked, hook: str, windows, batch_size: int, buffer_windows: int, seed: int,
                 memory_mb: float):
        self.hooked, self.hook, self.windows = hooked, hook, windows
        self.batch_size, self.buffer_windows, self.seed, self.memory_mb = batch_size, buffer_windows, seed, memory_mb

    def fill(self, k: int) -> torch.Tensor:
        x, _ = self.windows.batch(k)
        acts = hook_activations(self.hooked, self.hook, x[: self.buffer_windows], self.memory_mb)
        acts = acts.reshape(-1, acts.shape[-1])
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
        return acts[torch.randperm(len(acts), generator=g).to(acts.device)]

    def __iter__(self) -> Iterator[torch.Tensor]:
        k = 0
        while True:
            buf = self.fill(k)
            for a in range(0, len(buf) - self.batch_size + 1, self.batch_size):
                yield buf[a:a + self.batch_size]
            k += 1


@torch.no_grad()
def hook_activations(hooked, hook: str, x: torch.Tensor, memory_mb: float) -> torch.Tensor:
    """(N, T, d) activations at `hook` on windows `x`, the model run up to that block only, a batch of
    windows at a time within `memory_mb`."""
    size = batch_for(hooked, x.shape[1], memory_mb)
    layer = int(hook.split(".")[1]) + 1
    return torch.cat([hooked.run_with_cache(x[a:a + size], names_filter=hook, stop_at_layer=layer)[1][hook]
                      for a in range(0, len(x), size)])


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


@torch.no_grad()
def explained_variance(sae, acts: torch.Tensor) -> float:
    """1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the rows of `acts`."""
    recon = sae.decode(sae.encode(acts))
    return 1.0 - float(((recon - acts) ** 2).sum() / ((acts - acts.mean(0)) ** 2).sum())


class Plateau(pl.Callback):
    """Stops training once held-out explained variance stops improving.

    Every `every` steps EV is measured on `held_out`; from `min_steps` on, training stops
    when the best EV of the last `window` evaluations exceeds the best EV before them by
    less than `tol`.
    """

    def __init__(self, held_out: torch.Tensor, every: int, window: int, tol: float, min_steps: int):
        self.held_out, self.every, self.window, self.tol, self.min_steps = held_out, every, window, tol, min_steps
        self.history: list[float] = []
        self.plateaued = False

    def on_train_batch_end(self, trainer, module, *args) -> None:
        step = trainer.global_step
        if step % self.every:
            return
        self.history.append(explained_variance(module.sae, self.held_out))
        module.log("sae/held_out_explained_variance", self.history[-1])
        recent, before = self.history[-self.window:], self.history[:-self.window]
        if step >= self.min_steps and before and max(recent) - max(before) < self.tol:
            self.plateaued = trainer.should_stop = True


def train_sae(sae, stream: IterableDataset, held_out: torch.Tensor, lr: float, max_steps: int, min_steps: int,
              eval_every: int, window: int, tol: float, logger=None, device: DeviceParams = DeviceParams()) -> dict:
    """Train `sae` on batches of `stream` under the Lightning Trainer until :class:`Plateau` or `max_steps`,
    on one device of `device.accelerator` at `device.precision` (the stream is one process's; bf16-true
    runs as bf16-mixed: sae-lens casts its inputs to the SAE's own dtype, float32).

    Returns what `quality.json` records about training: the steps used, whether held-out
    explained variance plateaued (False: the step cap was hit) and its last value.
    """
    module = SAEModule(sae, lr)
    plateau = Plateau(held_out, eval_every, window, tol, min_steps)
    args = {**trainer_args(device), "devices": 1, "num_nodes": 1}
    if args["precision"] == "bf16-true":
        args["precision"] = "bf16-mixed"
    trainer = pl.Trainer(max_steps=max_steps, **args,
                         gradient_clip_val=1.0,
                         logger=logger if logger is not None else False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, log_every_n_steps=eval_every,
                         callbacks=[plateau, StepProgress("SAE (stops at its plateau)")])
    fit(trainer, module, train_dataloaders=DataLoader(stream, batch_size=None))  # Interrupted on a signal
    sae.to(held_out.device).eval()  # the Trainer's teardown leaves its module on the CPU
    return {"train_steps": int(trainer.global_step), "plateaued": plateau.plateaued,
            "held_out_explained_variance": explained_variance(sae, held_out)}


def expected_density(sae, feats: torch.Tensor | np.ndarray) -> float:
    """Share of tokens a latent fires on if all latents fired equally often: L0 / d_sae.

    L0 is k for a TopK SAE (k latents per token by construction) and the mean number of
    active latents per row of `feats` for a standard (ReLU + L1) SAE.
    """
    if sae.cfg.architecture() == "topk":
        return sae.cfg.k / sae.cfg.d_sae
    return float((np.asarray(feats) > 0).sum(1).mean()) / sae.cfg.d_sae


def dense_latents(sae, feats: torch.Tensor | np.ndarray, factor: float) -> tuple[np.ndarray, float]:
    """Latents firing on more than `factor` x the expected density (L0 / d_sae) of the rows of `feats`.

    Returns the boolean mask over latents and the density threshold used.
    """
    threshold = factor * expected_density(sae, feats)
    return (np.asarray(feats) > 0).mean(0) > threshold, threshold


@torch.no_grad()
def sae_quality(sae, hooked, hook: str, x: torch.Tensor, y: torch.Tensor, dense_factor: float,
                memory_mb: float) -> tuple[dict, np.ndarray]:
    """Reconstruction and sparsity of `sae` on windows (x, y), and the spliced-in LM loss, summed a batch
    of windows at a time within `memory_mb` (logits included). Returns the metrics and the latents of
    every token of `x`, (N * T, d_sae)."""
    size = batch_for(hooked, x.shape[1], memory_mb, logits=True)

    def splice(value, hook=None):
        shape = value.shape
        return sae.decode(sae.encode(value.reshape(-1, shape[-1]))).reshape(shape)

    sq_err = clean = spliced = 0.0
    total, total_sq, feats = 0.0, 0.0, []
    for a in range(0, len(x), size):
        xb, yb = x[a:a + size], y[a:a + size].to(hooked.cfg.device)
        logits, cache = hooked.run_with_cache(xb, names_filter=hook)
        acts = cache[hook].reshape(-1, cache[hook].shape[-1]).float()
        f = sae.encode(acts)
        recon, acts = sae.decode(f).cpu().double(), acts.cpu().double()  # sums in float64 (any device)
        sq_err += float(((recon - acts) ** 2).sum())
        total, total_sq = total + acts.sum(0), total_sq + float((acts ** 2).sum())
        feats.append(f.cpu())
        clean += float(token_losses(logits, yb).sum())
        spliced += float(token_losses(hooked.run_with_hooks(xb, fwd_hooks=[(hook, splice)]), yb).sum())
    feats = torch.cat(feats).numpy()
    n, tokens = len(feats), y.numel()
    variance = total_sq - float((total ** 2).sum()) / n         # sum ||x - mean(x)||^2
    dense, threshold = dense_latents(sae, feats, dense_factor)
    clean, spliced = clean / tokens, spliced / tokens
    return {"mse": sq_err / n, "explained_variance": 1.0 - sq_err / variance,
            "l0": float((feats > 0).sum(-1).mean()), "dead_fraction": float(((feats > 0).sum(0) == 0).mean()),
            "dense_fraction": float(dense.mean()), "dense_density_threshold": threshold,
            "lm_loss": clean, "lm_loss_spliced": spliced, "lm_loss_increase": spliced - clean}, feats
