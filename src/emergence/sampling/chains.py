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
import re

import torch
import torch.nn as nn


class FlatChains:
    def __init__(self, model: nn.Module, chains: int, device: torch.device | str = "cpu"):
        self.model = model
        self.params = dict(_unique_named_parameters(model))
        self.slices: dict[str, slice] = {}
        offset = 0
        for name, p in self.params.items():
            self.slices[name] = slice(offset, offset + p.numel())
            offset += p.numel()
        self.n_params = offset
        self.W = torch.empty(chains, offset, dtype=next(iter(self.params.values())).dtype, device=device)
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
        """0/1 flat mask selecting the weights of the named components (see `component_slices`)."""
        mask = torch.zeros(self.n_params, dtype=self.W.dtype, device=self.W.device)
        for comp in components:
            for name, index in component_slices(self.model, comp):
                mask[self.slices[name]].view_as(self.params[name])[index] = 1.0
        return mask


def _unique_named_parameters(model: nn.Module):
    seen = set()
    for name, p in model.named_parameters():
        if id(p) not in seen:
            seen.add(id(p))
            yield name, p


def component_slices(model: nn.Module, component: str) -> list[tuple[str, tuple]]:
    """(parameter name, index) pairs holding a component's weights.

    Components (transformer-lens positions): ``L{l}H{h}`` one attention head (its q, k, v
    rows and its slice of the output projection), ``L{l}.attn``, ``L{l}.mlp``, ``L{l}``
    (the whole block), or any parameter by its name. Works for our GPT (nanoGPT names)
    and HF GPT-NeoX.
    """
    names = dict(model.named_parameters())
    if component in names:
        return [(component, (slice(None),))]
    neox = any(".attention.query_key_value." in n for n in names)
    prefix = "gpt_neox.layers" if neox else "transformer.h"
    if neox and not any(n.startswith(prefix) for n in names):
        prefix = "hf.gpt_neox.layers"
    m = re.fullmatch(r"L(\d+)(?:H(\d+)|\.(attn|mlp))?", component)
    if m is None:
        raise ValueError(f"unknown component {component!r}: use L<l>H<h>, L<l>.attn, L<l>.mlp or L<l>")
    layer, head, part = int(m.group(1)), m.group(2), m.group(3)
    base = f"{prefix}.{layer}."
    if not any(n.startswith(base) for n in names):
        raise ValueError(f"component {component!r}: the model has no layer {layer}")
    all_ = (slice(None),)
    if head is None:
        sub = {"attn": "attention." if neox else "attn.", "mlp": "mlp."}.get(part, "")
        found = [(n, all_) for n in names if n.startswith(base + sub)]
        if not found:
            raise ValueError(f"component {component!r}: the model has no {part} in layer {layer} "
                             "(an attention-only model has heads only)")
        return found
    h = int(head)
    if neox:
        qkv, out = base + "attention.query_key_value.", base + "attention.dense."
        config = model.hf.config if hasattr(model, "hf") else model.config
        d_head = names[out + "weight"].shape[1] // config.num_attention_heads
        rows = slice(h * 3 * d_head, (h + 1) * 3 * d_head)  # NeoX packs q, k, v per head
        return [(qkv + "weight", (rows,)), (qkv + "bias", (rows,)), (out + "weight", (slice(None), slice(h * d_head, (h + 1) * d_head)))]
    attn = base + "attn."
    d_model = names[attn + "c_proj.weight"].shape[0]
    n_head = model.cfg.n_head
    d_head = d_model // n_head
    if h >= n_head:
        raise ValueError(f"component {component!r}: the model has {n_head} heads per layer")
    rows = torch.cat([torch.arange(k * d_model + h * d_head, k * d_model + (h + 1) * d_head) for k in range(3)])
    out = [(attn + "c_attn.weight", (rows,)), (attn + "c_proj.weight", (slice(None), slice(h * d_head, (h + 1) * d_head)))]
    if attn + "c_attn.bias" in names:
        out.append((attn + "c_attn.bias", (rows,)))
    return out
