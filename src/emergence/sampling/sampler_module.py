"""The SGLD sampling loop: a run object holding the chains and the records, and a
LightningModule that drives it (manual optimisation, one optimizer for all chains).

Per iteration s: at a draw (s = burn_in + k * thin) whose turn it is
(k % obs_every == 0), the observables are scored on every chain in inference batches;
then the minibatch loss of every chain is computed, one backward fills every chain's
gradient, and one RMSProp-SGLD step moves all chains. Losses are written into
preallocated tensors (no host sync); every ``check_every`` steps the new losses are
checked, and a non-finite loss or one above ``divergence_factor`` x the loss at w*
stops the run with :class:`SamplerDivergence`, keeping what was sampled.
"""
from __future__ import annotations

import copy
import json
from typing import Callable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn as nn
import xarray as xr
from torch.utils.data import DataLoader, IterableDataset

from emergence.config import SamplerParams, as_dict
from emergence.errors import EmergenceError
from emergence.io import seed_for
from emergence.models.gpt import token_losses
from emergence.models.scoring import SequenceSet
from emergence.sampling.chains import FlatChains
from emergence.sampling.observables import Observables
from emergence.sampling.sgld import RMSPropSGLD

LossFn = Callable[[nn.Module, object], torch.Tensor]


class SamplerDivergence(EmergenceError):
    """A chain's loss became non-finite or exploded; carries the partial trace."""

    def __init__(self, message: str, step: int, chain: int, trace: xr.Dataset):
        super().__init__(message)
        self.step, self.chain, self.trace = step, chain, trace


def lm_loss(model: nn.Module, batch) -> torch.Tensor:
    """Mean next-token loss of a (x, y) batch."""
    x, y = batch
    return token_losses(model(x), y).mean()


class SGLDRun:
    def __init__(self, model: nn.Module, cfg: SamplerParams, seed: int, loss_fn: LossFn = lm_loss,
                 observables: Observables | None = None, components: Sequence[str] | None = None):
        self.cfg, self.loss_fn, self.observables = cfg, loss_fn, observables
        self.chains = FlatChains(model, cfg.chains)
        self.mask = self.chains.mask_for(list(components)) if components else None
        self.chains.restrict(self.mask)
        generator = torch.Generator().manual_seed(seed_for(seed, "sgld-noise"))
        self.optimizer = RMSPropSGLD([self.chains.W], lr=cfg.lr, nbeta=cfg.nbeta,
                                     localization=cfg.localization, preconditioned=cfg.preconditioned,
                                     alpha=cfg.rms_alpha, beta=cfg.rms_beta, mask=self.mask,
                                     generator=generator)
        C, S = cfg.chains, cfg.steps
        self.draw_steps = cfg.burn_in + np.arange(cfg.draws) * cfg.thin
        self.obs_steps = self.draw_steps[::cfg.obs_every]
        self._obs_index = {int(s): k for k, s in enumerate(self.obs_steps)}
        self.loss = torch.full((C, S), float("nan"))
        self.anchor = copy.deepcopy(model).eval() if cfg.paired else None
        self.anchor_loss = torch.full((C, S), float("nan")) if cfg.paired else None
        self.init_loss = float("nan")
        self.steps_done = 0
        if observables is not None:
            self.obs = torch.full((C, len(self.obs_steps), len(observables)), float("nan"))
            self.obs_init = torch.full((len(observables),), float("nan"))
            if observables.token_owner is not None:
                self.token_obs = torch.full((C, len(self.obs_steps), len(observables.token_owner)), float("nan"))
            if observables.components is not None:
                self.component_obs = torch.full((C, len(self.obs_steps), len(observables.components)), float("nan"))
                self.component_init = torch.full((len(observables.components),), float("nan"))

    # -- measurements -----------------------------------------------------------------
    @torch.no_grad()
    def measure_init(self, batches: Sequence) -> None:
        """Loss at w* over `batches`, and the observables at w*."""
        model = self.chains.replicas[0]
        self.init_loss = float(torch.stack([self.loss_fn(model, b) for b in batches]).mean())
        if self.observables is not None:
            measured = self.observables.fn(model)
            self.obs_init[:] = measured["obs"]
            if measured["component_obs"] is not None:
                self.component_init[:] = measured["component_obs"]

    @torch.no_grad()
    def observe(self, k: int) -> None:
        for c, model in enumerate(self.chains.replicas):
            measured = self.observables.fn(model)
            self.obs[c, k] = measured["obs"]
            if measured["token_obs"] is not None:
                self.token_obs[c, k] = measured["token_obs"]
            if measured["component_obs"] is not None:
                self.component_obs[c, k] = measured["component_obs"]

    # -- one iteration ----------------------------------------------------------------
    def chain_losses(self, chain_batches: Sequence) -> torch.Tensor:
        """(chains,) minibatch losses, each on its chain's replica (graph kept for backward)."""
        return torch.stack([self.loss_fn(m, b) for m, b in zip(self.chains.replicas, chain_batches)])

    def begin(self, s: int, chain_batches: Sequence) -> torch.Tensor:
        """Observe if iteration `s` is an observed draw, then the chains' losses at w_s."""
        if self.observables is not None and s in self._obs_index:
            self.observe(self._obs_index[s])
        self.chains.G.zero_()
        if self.anchor is not None:
            with torch.no_grad():
                self.anchor_loss[:, s] = torch.stack([self.loss_fn(self.anchor, b) for b in chain_batches])
        return self.chain_losses(chain_batches)

    def end(self, s: int, losses: torch.Tensor) -> None:
        """Record iteration `s` (after the update) and check for divergence now and then."""
        self.loss[:, s] = losses.detach()
        self.steps_done = s + 1
        if self.steps_done % self.cfg.check_every == 0 or self.steps_done == self.cfg.steps:
            self.check(max(0, self.steps_done - self.cfg.check_every), self.steps_done)

    def iterate(self, s: int, chain_batches: Sequence) -> None:
        """One iteration without Lightning (used for potentials in tests and notebooks)."""
        losses = self.begin(s, chain_batches)
        losses.sum().backward()
        self.optimizer.step()
        self.end(s, losses)

    def check(self, start: int, stop: int) -> None:
        block = self.loss[:, start:stop]
        bound = self.cfg.divergence_factor * max(abs(self.init_loss), 1.0)
        bad = ~torch.isfinite(block) | (block > bound)
        if bool(bad.any()):
            chain, offset = (int(i) for i in torch.nonzero(bad)[0])
            step = start + offset
            value = float(block[chain, offset])
            hint = ("lower sampler.lr (eps) first, or raise sampler.localization (gamma) / lower "
                    "sampler.nbeta")
            raise SamplerDivergence(
                f"SGLD chain {chain} diverged at step {step}: loss {value:.4g} "
                f"({'non-finite' if not np.isfinite(value) else f'above {bound:.4g} = divergence_factor x max(init loss, 1)'}); "
                f"{hint}. The {step} steps sampled so far are kept in the partial trace.",
                step, chain, self.to_dataset(status="diverged"))

    # -- records ----------------------------------------------------------------------
    def to_dataset(self, status: str = "complete", attrs: dict | None = None) -> xr.Dataset:
        data = {"loss": (("chain", "step"), self.loss.numpy()),
                **({"anchor_loss": (("chain", "step"), self.anchor_loss.numpy())} if self.anchor is not None else {}),
                "draw_step": (("draw",), self.draw_steps.astype(np.int32)),
                "init_loss": ((), np.float64(self.init_loss))}
        coords = {}
        if self.observables is not None:
            obs = self.observables
            data["obs"] = (("chain", "obs_draw", "observable"), self.obs.numpy())
            data["obs_init"] = (("observable",), self.obs_init.numpy())
            data["obs_step"] = (("obs_draw",), self.obs_steps.astype(np.int32))
            coords = {"observable": list(obs.names), "label": ("observable", np.asarray(obs.labels).astype(str)),
                      "group": ("observable", np.asarray(obs.groups).astype(str))}
            if obs.token_owner is not None:
                data["token_obs"] = (("chain", "obs_draw", "token"), self.token_obs.numpy())
                data["token_sequence"] = (("token",), obs.token_owner)
            if obs.components is not None:
                data["component_obs"] = (("chain", "obs_draw", "component"), self.component_obs.numpy())
                data["component_init"] = (("component",), self.component_init.numpy())
                coords["component"] = list(obs.components)
        base = {"config": json.dumps(as_dict(self.cfg), sort_keys=True), "status": status,
                "steps_done": self.steps_done,
                "components": json.dumps(sorted(set(self._components()))) if self.mask is not None else "[]"}
        return xr.Dataset(data, coords=coords, attrs={**base, **(attrs or {})})

    def _components(self) -> list[str]:
        return [n for n, s in self.chains.slices.items() if self.mask is not None and bool(self.mask[s].any())]


class SamplerModule(pl.LightningModule):
    """Drives an :class:`SGLDRun` under the Lightning Trainer (manual optimisation)."""

    def __init__(self, run: SGLDRun, split: Callable[[object], Sequence]):
        super().__init__()
        self.automatic_optimization = False
        self.run, self.split = run, split

    def configure_optimizers(self):
        return self.run.optimizer

    def training_step(self, batch, batch_idx):
        s = self.global_step
        losses = self.run.begin(s, self.split(batch))
        self.manual_backward(losses.sum())
        self.optimizers().step()
        self.run.end(s, losses)


def masked_lm_loss(model: nn.Module, batch) -> torch.Tensor:
    """Mean loss over the scored positions of an (ids, targets, mask) batch of sequences."""
    ids, targets, mask = batch
    return (token_losses(model(ids), targets) * mask).sum() / mask.sum()


class SequenceBatches(IterableDataset):
    """Endless batches (ids, targets, mask) of `size` sequences drawn at random from a SequenceSet."""

    def __init__(self, seqs: SequenceSet, size: int, seed: int):
        self.seqs, self.size, self.seed = seqs, size, seed

    def batch(self, step: int):
        g = torch.Generator().manual_seed(seed_for(self.seed, "sequences", step))
        idx = torch.randint(0, len(self.seqs), (self.size,), generator=g)
        t = int(self.seqs.lengths.max())
        return self.seqs.ids[idx, :t], self.seqs.targets[idx, :t], self.seqs.mask[idx, :t]

    def __iter__(self):
        step = 0
        while True:
            yield self.batch(step)
            step += 1


def split_chains(chains: int) -> Callable:
    """Split a batch of chains * b rows (a tuple of tensors) into one tuple per chain."""
    def split(batch):
        return list(zip(*(t.view(chains, -1, *t.shape[1:]) for t in batch)))
    return split


def run_sampler(run: SGLDRun, stream, init_stream, progress: bool = False, attrs: dict | None = None) -> xr.Dataset:
    """Measure w*, then drive `run` under the Lightning Trainer over `stream` (chains * batch rows per step)."""
    cfg = run.cfg
    run.measure_init([init_stream.batch(i) for i in range(cfg.init_batches)])
    trainer = pl.Trainer(max_steps=cfg.steps, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=progress,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(SamplerModule(run, split_chains(cfg.chains)), train_dataloaders=DataLoader(stream, batch_size=None))
    return run.to_dataset(attrs=attrs)


def sample_lm(model: nn.Module, cfg: SamplerParams, seed: int, train_tokens: str, n_ctx: int,
              observables: Observables | None = None, components: Sequence[str] | None = None,
              attrs: dict | None = None, progress: bool = False) -> xr.Dataset:
    """Sample around `model`'s weights on windows of the token file; returns the trace.

    Raises :class:`SamplerDivergence` (with the partial trace) if a chain diverges.
    """
    from emergence.models.lm_module import TokenWindows
    run = SGLDRun(model, cfg, seed, lm_loss, observables, components)
    return run_sampler(run, TokenWindows(train_tokens, n_ctx, cfg.chains * cfg.batch_size, seed_for(seed, "sgld-data")),
                       TokenWindows(train_tokens, n_ctx, cfg.batch_size, seed_for(seed, "sgld-init")), progress, attrs)


def sample_sequences(model: nn.Module, cfg: SamplerParams, seed: int, seqs: SequenceSet,
                     components: Sequence[str] | None = None, attrs: dict | None = None) -> xr.Dataset:
    """Sample with the loss on scored positions of `seqs` (a data-refined posterior)."""
    run = SGLDRun(model, cfg, seed, masked_lm_loss, None, components)
    return run_sampler(run, SequenceBatches(seqs, cfg.chains * cfg.batch_size, seed_for(seed, "sgld-data")),
                       SequenceBatches(seqs, cfg.batch_size, seed_for(seed, "sgld-init")), attrs=attrs)
