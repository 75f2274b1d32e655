"""One place for a transformer's components: their names, weights, modules, hooks and reads.

Names are transformer-lens positions: ``L{l}H{h}`` head h of block l, ``L{l}.attn`` block l's
attention, ``L{l}.mlp`` its MLP, ``L{l}`` the whole block, ``L{l}.resid`` the residual stream
after it, and ``L{l}.even_heads`` / ``L{l}.odd_heads`` the even and odd heads together (as in
the Pythia head-patching study). For a model (`Components`): each component's weights (a
parameter's name and an index into it: SGLD restricted to the component), its modules and
its output norm phi (component observables); for a transformer-lens model (`hooks`): the
hook names that read or patch it. Our GPT (nanoGPT names) and HF GPT-NeoX (Pythia), wrapped
in `HFCausalLM` or not.
"""
from __future__ import annotations

import contextlib
import dataclasses
import re

import torch
import torch.nn as nn

NAME = re.compile(r"L(\d+)(?:H(\d+)|\.(attn|mlp|resid|even_heads|odd_heads))?")
KIND_ORDER = {"head": 0, "mlp": 1, "attn": 2, "group": 3, "block": 4, "resid": 5}


@dataclasses.dataclass(frozen=True)
class Name:
    layer: int
    head: int | None = None
    part: str | None = None       # attn, mlp, resid, even_heads, odd_heads; None: the head or the block

    @property
    def kind(self) -> str:
        if self.head is not None:
            return "head"
        return {None: "block", "even_heads": "group", "odd_heads": "group"}.get(self.part, self.part)

    def __str__(self) -> str:
        return f"L{self.layer}" + (f"H{self.head}" if self.head is not None else f".{self.part}" if self.part else "")


def parse(name: str) -> Name:
    m = NAME.fullmatch(name)
    if m is None:
        raise ValueError(f"unknown component {name!r}: use L<l>H<h>, L<l>.attn, L<l>.mlp, L<l>.resid or L<l>")
    return Name(int(m.group(1)), int(m.group(2)) if m.group(2) else None, m.group(3))


def order(name: str) -> tuple:
    """Sort key: by layer, heads (in order) before the MLP, then the rest."""
    n = parse(name)
    return n.layer, KIND_ORDER[n.kind], n.head or 0, n.part or ""


def head_names(n_layers: int, n_heads: int) -> list[str]:
    return [f"L{layer}H{h}" for layer in range(n_layers) for h in range(n_heads)]


def head_groups(n_layers: int, n_heads: int) -> dict[str, list[str]]:
    """Even and odd heads of each layer."""
    return {f"L{layer}.{parity}_heads": [f"L{layer}H{h}" for h in range(start, n_heads, 2)]
            for layer in range(n_layers) for parity, start in (("even", 0), ("odd", 1))}


def hooks(n_layers: int, n_heads: int, mlp: bool = True) -> dict[str, list[tuple[str, int | None]]]:
    """Component name -> [(transformer-lens hook name, head index or None)]: heads (``hook_z``),
    MLP outputs, residual streams after each block, and the head groups."""
    out: dict[str, list[tuple[str, int | None]]] = {}
    for layer in range(n_layers):
        for h in range(n_heads):
            out[f"L{layer}H{h}"] = [(f"blocks.{layer}.attn.hook_z", h)]
        if mlp:
            out[f"L{layer}.mlp"] = [(f"blocks.{layer}.hook_mlp_out", None)]
        out[f"L{layer}.resid"] = [(f"blocks.{layer}.hook_resid_post", None)]
    for name, members in head_groups(n_layers, n_heads).items():
        out[name] = [hook for m in members for hook in out[m]]
    return out


def resid_hook(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


@dataclasses.dataclass
class Block:
    module: nn.Module       # the transformer block (its output is the residual stream)
    attn_out: nn.Linear     # the attention output projection (input: heads concatenated)
    mlp: nn.Module | None   # None in an attention-only model
    prefix: str             # the block's parameter names start with this
    attn: str               # ... and its attention's with prefix + attn
    qkv: str                # the fused q, k, v projection, under attn
    out: str                # the output projection, under attn


class Components:
    """The components of our GPT or of an HF GPT-NeoX model (wrapped in `HFCausalLM` or not). Any
    other module has parameters only, named as `named_parameters` names them."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.params = dict(model.named_parameters())
        self._blocks: list[Block] | None = None
        self.n_heads, self.neox = 0, False
        hf = getattr(model, "hf", model)
        if hasattr(model, "transformer"):
            self.n_heads = model.cfg.n_head
            self._blocks = [Block(b, b.attn.c_proj, b.mlp, f"transformer.h.{i}.", "attn.", "c_attn.", "c_proj.")
                            for i, b in enumerate(model.transformer.h)]
        elif hasattr(hf, "gpt_neox"):
            root = "hf.gpt_neox.layers" if hf is not model else "gpt_neox.layers"
            self.n_heads, self.neox = hf.config.num_attention_heads, True
            self._blocks = [Block(b, b.attention.dense, b.mlp, f"{root}.{i}.", "attention.", "query_key_value.",
                                  "dense.") for i, b in enumerate(hf.gpt_neox.layers)]

    @property
    def blocks(self) -> list[Block]:
        if self._blocks is None:
            raise TypeError(f"{type(self.model).__name__}: components are defined for our GPT and GPT-NeoX models "
                            "(any other module's parameters go by their own names)")
        return self._blocks

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        return self.blocks[0].attn_out.out_features

    def names(self, blocks: bool = False) -> list[str]:
        """Every head, then every MLP (none in an attention-only model), then (with `blocks`) every block."""
        return head_names(self.n_layers, self.n_heads) + \
            [f"L{layer}.mlp" for layer, b in enumerate(self.blocks) if b.mlp is not None] + \
            ([f"L{layer}" for layer in range(self.n_layers)] if blocks else [])

    def weights(self, component: str) -> list[tuple[str, tuple]]:
        """(parameter name, index) pairs holding a component's weights: a head's q, k, v rows and its
        slice of the output projection; every parameter of an attention layer, MLP or block; or a
        parameter by its own name."""
        if component in self.params:
            return [(component, (slice(None),))]
        n = parse(component)
        if n.layer >= self.n_layers:
            raise ValueError(f"component {component!r}: the model has no layer {n.layer}")
        b, every = self.blocks[n.layer], (slice(None),)
        if n.kind in ("block", "attn", "mlp"):
            sub = b.prefix + {"block": "", "attn": b.attn, "mlp": "mlp."}[n.kind]
            found = [(p, every) for p in self.params if p.startswith(sub)]
            if not found:
                raise ValueError(f"component {component!r}: the model has no {n.kind} in layer {n.layer} "
                                 "(an attention-only model has heads only)")
            return found
        if n.kind != "head":
            raise ValueError(f"component {component!r} has no weights of its own: use a head, .attn, .mlp or a block")
        if n.head >= self.n_heads:
            raise ValueError(f"component {component!r}: the model has {self.n_heads} heads per layer")
        qkv, out = b.prefix + b.attn + b.qkv, b.prefix + b.attn + b.out
        d_head = self.d_model // self.n_heads
        cols = (slice(None), slice(n.head * d_head, (n.head + 1) * d_head))
        if self.neox:  # NeoX packs q, k, v per head
            rows = slice(n.head * 3 * d_head, (n.head + 1) * 3 * d_head)
        else:          # ours: all q, then all k, then all v
            rows = torch.cat([torch.arange(k * self.d_model + n.head * d_head, k * self.d_model + (n.head + 1) * d_head)
                              for k in range(3)])
        return [(qkv + "weight", (rows,))] + ([(qkv + "bias", (rows,))] if qkv + "bias" in self.params else []) + \
            [(out + "weight", cols)]

    @contextlib.contextmanager
    def output_norms(self):
        """Accumulate, during forward passes, the summed output norm of every head (its slice of the
        output projection applied to its own output) and MLP, and the number of tokens; yields a
        function returning the per-token means in `names()` order (heads, then MLPs)."""
        device = self.blocks[0].attn_out.weight.device
        heads = torch.zeros(self.n_layers, self.n_heads, device=device)
        mlps = torch.zeros(sum(b.mlp is not None for b in self.blocks), device=device)
        count = [0]
        handles = []
        for layer, block in enumerate(self.blocks):
            def attn_hook(module, inputs, layer=layer):
                y = inputs[0]                                                   # (B, T, C) heads concatenated
                B, T, C = y.shape
                w = module.weight.view(-1, self.n_heads, C // self.n_heads)     # (C_out, H, hd)
                per_head = torch.einsum("bthd,ohd->btho", y.view(B, T, self.n_heads, -1), w)
                heads[layer] += per_head.norm(dim=-1).sum((0, 1))
                if layer == 0:
                    count[0] += B * T

            def mlp_hook(module, inputs, output, layer=layer):
                mlps[layer] += output.norm(dim=-1).sum()

            handles.append(block.attn_out.register_forward_pre_hook(attn_hook))
            if block.mlp is not None:  # every block has an MLP, or none (attention-only)
                handles.append(block.mlp.register_forward_hook(mlp_hook))
        try:
            yield lambda: torch.cat([heads.flatten(), mlps]) / max(count[0], 1)
        finally:
            for h in handles:
                h.remove()
