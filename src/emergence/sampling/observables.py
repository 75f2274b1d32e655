"""What a trace measures at each draw, read from forward passes that are made anyway.

* per-sequence losses (and optionally per-token losses) of the observable sequences:
  the pairs' correct and buggy versions, windows of the sampling corpus (label
  ``sampling``) and of held-out general code (label ``general``);
* per-component observables phi_i(w) for susceptibilities: the mean output norm of each
  attention head (its slice of the output projection, ``L{l}H{h}``) and of each MLP
  (``L{l}.mlp``), taken on the general-code windows during their loss pass.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from emergence.models.scoring import SequenceSet, token_loss_matrix


@dataclasses.dataclass
class Observables:
    """``fn(model) -> {"obs": (n,), "token_obs": (k,) | None, "component_obs": (m,) | None}``."""

    fn: Callable[[nn.Module], dict]
    names: list[str]
    labels: np.ndarray
    groups: np.ndarray
    token_owner: np.ndarray | None = None    # (k,) observable index of each token value
    components: list[str] | None = None      # names of the m component observables

    def __len__(self) -> int:
        return len(self.names)


def component_names(model: nn.Module) -> list[str]:
    cfg = model.cfg
    return [f"L{layer}H{h}" for layer in range(cfg.n_layer) for h in range(cfg.n_head)] + \
        [f"L{layer}.mlp" for layer in range(cfg.n_layer)]


@contextlib.contextmanager
def component_norms(model: nn.Module):
    """Accumulate, during forward passes of our GPT, the summed output norm of every head and MLP
    and the number of tokens; yields a function returning the per-token means (heads, then MLPs)."""
    cfg = model.cfg
    device = next(model.parameters()).device
    heads = torch.zeros(cfg.n_layer, cfg.n_head, device=device)
    mlps = torch.zeros(cfg.n_layer, device=device)
    count = [0]
    handles = []
    for layer, block in enumerate(model.transformer.h):
        def attn_hook(module, inputs, layer=layer):
            y = inputs[0]                                                  # (B, T, C) heads concatenated
            B, T, C = y.shape
            w = module.weight.view(C, cfg.n_head, C // cfg.n_head)         # (C_out, H, hd)
            per_head = torch.einsum("bthd,ohd->btho", y.view(B, T, cfg.n_head, -1), w)
            heads[layer] += per_head.norm(dim=-1).sum((0, 1))
            if layer == 0:
                count[0] += B * T

        def mlp_hook(module, inputs, output, layer=layer):
            mlps[layer] += output.norm(dim=-1).sum()

        handles.append(block.attn.c_proj.register_forward_pre_hook(attn_hook))
        handles.append(block.mlp.register_forward_hook(mlp_hook))
    try:
        yield lambda: torch.cat([heads.flatten(), mlps]) / max(count[0], 1)
    finally:
        for h in handles:
            h.remove()


def sequence_observables(sets: Sequence[SequenceSet], batch_size: int, token_level: bool = False,
                         component_probe: int | None = None, model: nn.Module | None = None) -> Observables:
    """Per-sequence mean losses of every sequence of `sets` (in order); with `component_probe`,
    the index of the set whose loss pass also records the component output norms."""
    scored = [s.mask.bool() for s in sets]

    def fn(m: nn.Module) -> dict:
        values, tokens, comps = [], [], None
        for k, seqs in enumerate(sets):
            if k == component_probe:
                with component_norms(m) as read:
                    matrix = token_loss_matrix(m, seqs, batch_size)
                comps = read()
            else:
                matrix = token_loss_matrix(m, seqs, batch_size)
            values.append(matrix.sum(1) / seqs.mask.to(matrix.device).sum(1))
            if token_level:
                tokens.append(matrix[scored[k].to(matrix.device)])
        return {"obs": torch.cat(values), "token_obs": torch.cat(tokens) if token_level else None,
                "component_obs": comps}

    names = [n for s in sets for n in s.names]
    owner = None
    if token_level:
        offsets = np.cumsum([0] + [len(s) for s in sets])
        owner = np.concatenate([torch.nonzero(sc)[:, 0].numpy() + off for sc, off in zip(scored, offsets)]).astype(np.int32)
    components = component_names(model) if component_probe is not None else None
    return Observables(fn, names, np.concatenate([s.labels for s in sets]),
                       np.concatenate([s.groups for s in sets]), owner, components)
