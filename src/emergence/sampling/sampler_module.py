"""The SGLD sampling loop: a run object holding the chains and the records, and a
LightningModule that drives it (manual optimisation, one optimizer for all chains).

Per iteration s: at a draw (s = burn_in + k * thin) whose turn it is
(k % obs_every == 0), the observables are scored on every chain in inference batches;
at a draw, the loss at w* on every chain's minibatch (the paired control variate);
then the minibatch loss of every chain is computed, one backward fills every chain's
gradient, and one RMSProp-SGLD step moves all chains. Losses are written into
preallocated tensors (no host sync); every ``check_every`` steps the new losses are
checked, and a non-finite loss or one above ``divergence_factor`` x the loss at w*
stops the run with :class:`SamplerDivergence`, keeping what was sampled.

Chains are independent, so several devices split them rather than a batch:
with ``device.devices x device.num_nodes > 1`` the Trainer launches one process per device
(:class:`ChainParallelStrategy`, Lightning's DDP without gradient all-reduce), process r
runs chains r, r + world, ..., and the records are gathered at the end. Each chain's
noise and data depend only on (seed, chain), so the trace is the same on one device or
many.
"""
from __future__ import annotations

import copy
import functools
import gc
import json
from typing import Callable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn as nn
import xarray as xr
from pytorch_lightning.strategies import DDPStrategy
from torch.utils.data import DataLoader, IterableDataset

from emergence.config import DeviceParams, SamplerParams, as_dict
from emergence.device import trainer_args
from emergence.errors import EmergenceError
from emergence.interrupt import fit
from emergence.io import seed_for
from emergence.progress import StepProgress
from emergence.models.gpt import token_losses
from emergence.models.scoring import SequenceSet, module_device
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
    """The chains `chain_ids` (default: all ``cfg.chains``) of one sampling run, on `device`.

    ``gather(obj) -> [obj of every process]`` joins the processes that share a run (the
    identity on one device); divergence checks and the final records go through it.
    """

    def __init__(self, model: nn.Module, cfg: SamplerParams, seed: int, loss_fn: LossFn = lm_loss,
                 observables: Observables | None = None, components: Sequence[str] | None = None,
                 chain_ids: Sequence[int] | None = None, device: torch.device | None = None):
        self.cfg, self.loss_fn, self.observables = cfg, loss_fn, observables
        self.chain_ids = list(range(cfg.chains) if chain_ids is None else chain_ids)
        self.device = module_device(model) if device is None else torch.device(device)
        self.gather: Callable[[object], list] = lambda obj: [obj]
        self.chains = FlatChains(model, len(self.chain_ids), self.device)
        self.mask = self.chains.mask_for(list(components)) if components else None
        self.chains.restrict(self.mask)
        generators = [torch.Generator(self.device).manual_seed(seed_for(seed, "sgld-noise", c))
                      for c in self.chain_ids]
        self.optimizer = RMSPropSGLD([self.chains.W], lr=cfg.lr, nbeta=cfg.nbeta,
                                     localization=cfg.localization, preconditioned=cfg.preconditioned,
                                     alpha=cfg.rms_alpha, beta=cfg.rms_beta,
                                     adapt_steps=cfg.burn_in if cfg.rms_adapt == "burn_in" else None,
                                     exact_localization=cfg.rms_adapt == "burn_in",
                                     mask=self.mask,
                                     generator=generators)
        C, S = len(self.chain_ids), cfg.steps
        self.draw_steps = cfg.burn_in + np.arange(cfg.draws) * cfg.thin
        self.obs_steps = self.draw_steps[::cfg.obs_every]
        self._obs_index = {int(s): k for k, s in enumerate(self.obs_steps)}
        self._draws = set(self.draw_steps.tolist())
        nan = dict(fill_value=float("nan"), device=self.device)
        self.records = {"loss": torch.full((C, S), **nan)}
        self.anchor = copy.deepcopy(model).to(self.device).eval() if cfg.paired else None
        if cfg.paired:
            self.records["anchor_loss"] = torch.full((C, S), **nan)
        self.init_loss = float("nan")
        self.steps_done = 0
        if observables is not None:
            O = len(self.obs_steps)
            self.records["obs"] = torch.full((C, O, len(observables)), **nan)
            self.obs_init = torch.full((len(observables),), float("nan"))
            if observables.token_owner is not None:
                self.records["token_obs"] = torch.full((C, O, len(observables.token_owner)), **nan)
            if observables.components is not None:
                self.records["component_obs"] = torch.full((C, O, len(observables.components)), **nan)
                self.component_init = torch.full((len(observables.components),), float("nan"))
            if observables.reads is not None:
                n_reads, _, d_model = observables.reads
                self.records["reads"] = torch.full((C, O, n_reads, d_model), **nan)

    # -- measurements -----------------------------------------------------------------
    @torch.no_grad()
    def measure_init(self, batches: Sequence) -> None:
        """Loss at w* over `batches`, and the observables at w*."""
        model = self.chains.replicas[0]
        batches = [to_device(b, self.device) for b in batches]
        self.init_loss = float(torch.stack([self.loss_fn(model, b) for b in batches]).mean())
        if self.observables is not None:
            measured = self.observables.fn(model)
            self.obs_init[:] = measured["obs"].cpu()
            if measured.get("component_obs") is not None:
                self.component_init[:] = measured["component_obs"].cpu()

    @torch.no_grad()
    def observe(self, k: int) -> None:
        for c, model in enumerate(self.chains.replicas):
            measured = self.observables.fn(model)
            for name in ("obs", "token_obs", "component_obs", "reads"):
                if measured.get(name) is not None:
                    self.records[name][c, k] = measured[name]

    # -- one iteration ----------------------------------------------------------------
    def chain_losses(self, chain_batches: Sequence) -> torch.Tensor:
        """(chains,) minibatch losses, each on its chain's replica (graph kept for backward)."""
        return torch.stack([self.loss_fn(m, b) for m, b in zip(self.chains.replicas, chain_batches)])

    def begin(self, s: int, chain_batches: Sequence) -> torch.Tensor:
        """Observe if iteration `s` is an observed draw, then the chains' losses at w_s."""
        if self.observables is not None and s in self._obs_index:
            self.observe(self._obs_index[s])
        self.chains.G.zero_()
        if self.anchor is not None and s in self._draws:  # the LLC reads the paired losses at the draws only
            with torch.no_grad():
                self.records["anchor_loss"][:, s] = torch.stack([self.loss_fn(self.anchor, b) for b in chain_batches])
        return self.chain_losses(chain_batches)

    def end(self, s: int, losses: torch.Tensor) -> None:
        """Record iteration `s` (after the update) and check for divergence now and then."""
        self.records["loss"][:, s] = losses.detach()
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
        """Stop every process when any chain's loss in steps [start, stop) is non-finite or too high."""
        block = self.records["loss"][:, start:stop].cpu()
        bound = self.cfg.divergence_factor * max(abs(self.init_loss), 1.0)
        bad = torch.nonzero(~torch.isfinite(block) | (block > bound))
        local = None
        if len(bad):
            row, offset = (int(i) for i in bad[0])
            local = (start + offset, self.chain_ids[row], float(block[row, offset]))
        reports = sorted(r for r in self.gather(local) if r is not None)
        if reports:
            step, chain, value = reports[0]
            hint = ("lower sampler.lr (eps) first, or raise sampler.localization (gamma) / lower "
                    "sampler.nbeta")
            raise SamplerDivergence(
                f"SGLD chain {chain} diverged at step {step}: loss {value:.4g} "
                f"({'non-finite' if not np.isfinite(value) else f'above {bound:.4g} = divergence_factor x max(init loss, 1)'}); "
                f"{hint}. The {step} steps sampled so far are kept in the partial trace.",
                step, chain, self.to_dataset(status="diverged"))

    # -- records ----------------------------------------------------------------------
    def gathered(self) -> dict[str, np.ndarray]:
        """Every record with the chains of all processes, in chain order."""
        parts = self.gather((self.chain_ids, {k: v.cpu().numpy() for k, v in self.records.items()}))
        order = np.argsort(np.concatenate([ids for ids, _ in parts]), kind="stable")
        return {k: np.concatenate([r[k] for _, r in parts])[order] for k in self.records}

    def to_dataset(self, status: str = "complete", attrs: dict | None = None) -> xr.Dataset:
        rec = self.gathered()
        data = {"loss": (("chain", "step"), rec["loss"]),
                **({"anchor_loss": (("chain", "step"), rec["anchor_loss"])} if "anchor_loss" in rec else {}),
                "draw_step": (("draw",), self.draw_steps.astype(np.int32)),
                "init_loss": ((), np.float64(self.init_loss))}
        coords = {}
        if self.observables is not None:
            obs = self.observables
            data["obs"] = (("chain", "obs_draw", "observable"), rec["obs"])
            data["obs_init"] = (("observable",), self.obs_init.numpy())
            data["obs_step"] = (("obs_draw",), self.obs_steps.astype(np.int32))
            coords = {"observable": list(obs.names), "label": ("observable", np.asarray(obs.labels).astype(str)),
                      "group": ("observable", np.asarray(obs.groups).astype(str))}
            if obs.token_owner is not None:
                data["token_obs"] = (("chain", "obs_draw", "token"), rec["token_obs"])
                data["token_sequence"] = (("token",), obs.token_owner)
            if obs.components is not None:
                data["component_obs"] = (("chain", "obs_draw", "component"), rec["component_obs"])
                data["component_init"] = (("component",), self.component_init.numpy())
                coords["component"] = list(obs.components)
            if obs.reads is not None:
                data["reads"] = (("chain", "obs_draw", "read_sequence", "d_model"), rec["reads"])
        base = {"config": json.dumps(as_dict(self.cfg), sort_keys=True), "status": status,
                "steps_done": self.steps_done,
                "components": json.dumps(sorted(set(self._components()))) if self.mask is not None else "[]",
                **({"reads_layer": self.observables.reads[1]} if self.observables and self.observables.reads else {})}
        return xr.Dataset(data, coords=coords, attrs={**base, **(attrs or {})})

    def _components(self) -> list[str]:
        return [n for n, s in self.chains.slices.items() if self.mask is not None and bool(self.mask[s].any())]


def to_device(batch, device: torch.device):
    """A batch (tensor or tuple of tensors; anything else as it is) on `device`."""
    if isinstance(batch, (tuple, list)):
        return tuple(to_device(t, device) for t in batch)
    return batch.to(device) if isinstance(batch, torch.Tensor) else batch


class SamplerModule(pl.LightningModule):
    """Drives an :class:`SGLDRun` under the Lightning Trainer (manual optimisation).

    The run is built in ``setup`` by ``make_run(chain_ids=..., device=...)``, once the
    process knows its rank: process r of w holds chains r, r + w, ...
    """

    def __init__(self, make_run: Callable[..., SGLDRun], chains: int, init_batches: Sequence):
        super().__init__()
        self.automatic_optimization = False
        self.make_run, self.n_chains, self.init_batches = make_run, chains, init_batches
        self.run: SGLDRun | None = None

    def setup(self, stage: str) -> None:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        if world > self.n_chains:
            raise EmergenceError(f"params: sampler.chains = {self.n_chains} is fewer than the {world} processes "
                                 f"(devices x num_nodes) sampling them; raise sampler.chains or lower device.devices "
                                 f"or device.num_nodes")
        self.run = self.make_run(chain_ids=list(range(rank, self.n_chains, world)),
                                 device=self.trainer.strategy.root_device)
        if world > 1:
            self.run.gather = self._all_gather_object

    def _all_gather_object(self, obj) -> list:
        out = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def configure_optimizers(self):
        return self.run.optimizer

    def on_train_start(self) -> None:
        self.run.measure_init(self.init_batches)

    def training_step(self, batch, batch_idx):
        s = self.global_step
        losses = self.run.begin(s, own_chains(batch, self.n_chains, self.run.chain_ids))
        self.manual_backward(losses.sum())
        self.optimizers().step()
        self.run.end(s, losses)


class ChainParallelStrategy(DDPStrategy):
    """Lightning's DDP (one process per device, launched as for training) for independent
    chains: the module is not wrapped, so no gradient is all-reduced."""

    def _setup_model(self, model: nn.Module) -> nn.Module:
        return model

    def _register_ddp_hooks(self) -> None:
        pass


def masked_lm_loss(model: nn.Module, batch) -> torch.Tensor:
    """Mean loss over the scored positions of an (ids, targets, mask) batch of sequences."""
    ids, targets, mask = batch
    return (token_losses(model(ids), targets) * mask).sum() / mask.sum()


class StepBatches(IterableDataset):
    """Batch 0, 1, 2, ... of a source with ``batch(step)``, the same in every process (each
    process takes its own chains' rows)."""

    def __init__(self, source):
        self.source = source

    def __iter__(self):
        step = 0
        while True:
            yield self.source.batch(step)
            step += 1


class SequenceBatches:
    """Batches (ids, targets, mask) of `size` sequences drawn at random from a SequenceSet."""

    def __init__(self, seqs: SequenceSet, size: int, seed: int):
        self.seqs, self.size, self.seed = seqs, size, seed

    def batch(self, step: int):
        g = torch.Generator().manual_seed(seed_for(self.seed, "sequences", step))
        idx = torch.randint(0, len(self.seqs), (self.size,), generator=g)
        t = int(self.seqs.lengths.max())
        return self.seqs.ids[idx, :t], self.seqs.targets[idx, :t], self.seqs.mask[idx, :t]


def own_chains(batch, chains: int, chain_ids: Sequence[int]) -> list[tuple]:
    """The per-chain batches of `chain_ids` from a batch of chains * b rows (a tuple of tensors)."""
    split = [t.view(chains, -1, *t.shape[1:]) for t in batch]
    return [tuple(t[c] for t in split) for c in chain_ids]


def sampler_trainer(cfg: SamplerParams, device: DeviceParams, label: str = "SGLD") -> pl.Trainer:
    """The Trainer for `cfg.steps` SGLD steps in float32 on `device`, the chains split over its devices
    x num_nodes processes; its progress (`label`) counts the steps."""
    strategy = ChainParallelStrategy() if device.devices * device.num_nodes > 1 else "auto"
    return pl.Trainer(max_steps=cfg.steps, **trainer_args(device, fp32=True),
                      strategy=strategy, callbacks=[StepProgress(label, "SGLD step")],
                      logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)


def run_sampler(make_run: Callable[..., SGLDRun], cfg: SamplerParams, device: DeviceParams, stream, init_stream,
                label: str = "SGLD", attrs: dict | None = None) -> xr.Dataset:
    """Measure w*, then drive the run under the Lightning Trainer over ``stream.batch(step)``
    (chains * batch rows per step); every process returns the whole trace."""
    module = SamplerModule(make_run, cfg.chains, [init_stream.batch(i) for i in range(cfg.init_batches)])
    trainer = sampler_trainer(cfg, device, label)
    fit(trainer, module, train_dataloaders=DataLoader(StepBatches(stream), batch_size=None))
    trace = module.run.to_dataset(attrs=attrs)  # only after all cfg.steps: fit raises Interrupted otherwise
    del trainer, module  # the Trainer and the module hold each other (and the chains' replicas):
    gc.collect()         # free them now, not after many samplers (rllc runs dozens per checkpoint)
    return trace


def sample_lm(model: nn.Module, cfg: SamplerParams, seed: int, train_tokens: str, n_ctx: int,
              observables: Observables | None = None, components: Sequence[str] | None = None,
              attrs: dict | None = None, label: str = "SGLD", aligned: bool = False,
              device: DeviceParams = DeviceParams()) -> xr.Dataset:
    """Sample around `model`'s weights on windows of the token file (``aligned``: one whole sequence
    per window, see `TokenWindows`) on `device`; returns the trace.

    Raises :class:`SamplerDivergence` (with the partial trace) if a chain diverges.
    """
    from emergence.data.windows import TokenWindows
    make_run = functools.partial(SGLDRun, model, cfg, seed, lm_loss, observables, components)
    return run_sampler(make_run, cfg, device,
                       TokenWindows(train_tokens, n_ctx, cfg.chains * cfg.batch_size, seed_for(seed, "sgld-data"), aligned),
                       TokenWindows(train_tokens, n_ctx, cfg.batch_size, seed_for(seed, "sgld-init"), aligned), label,
                       attrs)


def sample_sequences(model: nn.Module, cfg: SamplerParams, seed: int, seqs: SequenceSet,
                     components: Sequence[str] | None = None, attrs: dict | None = None,
                     label: str = "SGLD", device: DeviceParams = DeviceParams()) -> xr.Dataset:
    """Sample with the loss on scored positions of `seqs` (a data-refined posterior) on `device`."""
    make_run = functools.partial(SGLDRun, model, cfg, seed, masked_lm_loss, None, components)
    return run_sampler(make_run, cfg, device, SequenceBatches(seqs, cfg.chains * cfg.batch_size, seed_for(seed, "sgld-data")),
                       SequenceBatches(seqs, cfg.batch_size, seed_for(seed, "sgld-init")), label, attrs)
