"""Several SGLD chains of one model, stored as rows of one flat (chains, P) tensor.

Each chain is a replica of the model whose parameters are views into its row of ``W``
and whose gradients are views into the same row of ``G``: one backward fills every
chain's gradient, one optimizer step moves every chain, and a
replica is an ordinary module for forward passes (any architecture: our GPT, HF
GPT-NeoX). Weight restriction is a 0/1 mask over the flat vector; parameters outside
it do not require gradients, so their backward is skipped.
"""
from __future__ import annotations

import copy
import hashlib

import torch
import torch.nn as nn

from emergence.models.components import Components


class FlatChains:
    def __init__(self, model: nn.Module, chains: int, device: torch.device | None = None):
        self.model = model
        self.params = dict(_unique_named_parameters(model))
        self.slices: dict[str, slice] = {}
        offset = 0
        for name, p in self.params.items():
            self.slices[name] = slice(offset, offset + p.numel())
            offset += p.numel()
        self.n_params = offset
        first = next(iter(self.params.values()))
        device = first.device if device is None else device  # default: where the model is
        self.W = torch.empty(chains, offset, dtype=first.dtype, device=device)
        self.G = torch.zeros_like(self.W)
        self.replicas = []
        for c in range(chains):
            rep = copy.deepcopy(model).to(device)
            for name, p in _unique_named_parameters(rep):
                s = self.slices[name]
                self.W[c, s] = p.detach().flatten()
                p.data = self.W[c, s].view_as(p)
                p.grad = self.G[c, s].view_as(p)
            self.replicas.append(rep)
        self.W.grad = self.G

    @property
    def chains(self) -> int:
        return self.W.shape[0]

    def anchor_digest(self) -> str:
        """sha256 of the initial weights (w*), for cache keys."""
        return hashlib.sha256(self.W[0].cpu().numpy().tobytes()).hexdigest()

    def restrict(self, mask: torch.Tensor | None) -> None:
        """Only parameters overlapping the mask take part in backward."""
        for rep in self.replicas:
            for name, p in _unique_named_parameters(rep):
                p.requires_grad_(mask is None or bool(mask[self.slices[name]].any()))

    def mask_for(self, components: list[str]) -> torch.Tensor:
        """0/1 flat mask selecting the weights of the named components (`Components.weights`)."""
        mask = torch.zeros(self.n_params, dtype=self.W.dtype, device=self.W.device)
        registry = Components(self.model)
        for comp in components:
            for name, index in registry.weights(comp):
                mask[self.slices[name]].view_as(self.params[name])[index] = 1.0
        return mask


def _unique_named_parameters(model: nn.Module):
    seen = set()
    for name, p in model.named_parameters():
        if id(p) not in seen:
            seen.add(id(p))
            yield name, p
