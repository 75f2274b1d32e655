"""Training-dynamics monitors from attention patterns (Olsson et al. 2022, arXiv 2209.11895).

* prefix-matching score of a head: on random tokens repeated twice, the mean attention
  from a token in the second copy to the token right after its first occurrence
  (the induction-head signature);
* previous-token score: the mean attention from each position to the one before it;
* in-context-learning score: loss at a late token minus loss at an early token.
Patterns are read through transformer-lens hooks (``blocks.{l}.attn.hook_pattern``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from emergence.device import batch_for
from emergence.models.gpt import token_losses
from emergence.models.scoring import module_device


def repeated_random_tokens(vocab_size: int, length: int, batch: int, seed: int) -> torch.Tensor:
    """(batch, 2 * length) random tokens, each row's first half repeated."""
    g = torch.Generator().manual_seed(seed)
    half = torch.randint(0, vocab_size, (batch, length), generator=g)
    return torch.cat([half, half], dim=1)


@torch.inference_mode()
def attention_patterns(hooked, tokens: torch.Tensor) -> torch.Tensor:
    """(layers, heads, batch, query, key) attention patterns (no unembedding)."""
    _, cache = hooked.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"),
                                     stop_at_layer=hooked.cfg.n_layers)
    return torch.stack([cache["pattern", layer].transpose(0, 1) for layer in range(hooked.cfg.n_layers)])


Read = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | int]]


def head_means(hooked, tokens: torch.Tensor, reads: dict[str, Read], memory_mb: float) -> dict[str, np.ndarray]:
    """(layers, heads) means of attention reads over `tokens`, a batch of sequences at a time within
    `memory_mb` (the patterns of every layer held for one batch). Each read maps (patterns, tokens) of a
    batch to (sum over its positions, how many positions), so the result is the mean over all of them."""
    c = hooked.cfg
    T = tokens.shape[1]
    size = batch_for(hooked, T, memory_mb, cached_per_position=c.n_layers * c.n_heads * T)
    sums = {name: 0.0 for name in reads}
    counts = dict.fromkeys(reads, 0)
    for a in range(0, len(tokens), size):
        batch = tokens[a:a + size]
        patterns = attention_patterns(hooked, batch).cpu()
        for name, read in reads.items():
            total, n = read(patterns, batch)
            sums[name] = sums[name] + total
            counts[name] += int(n)
    return {name: (sums[name] / counts[name]).float().numpy() for name in reads}


def prefix_matching_read(length: int) -> Read:
    """Attention from position i >= length to i - length + 1 (on a sequence repeated after `length`)."""
    q = torch.arange(length, 2 * length)
    return lambda patterns, tokens: (patterns[..., q, q - length + 1].sum(dim=(-2, -1)), patterns.shape[2] * length)


def previous_token_read(patterns: torch.Tensor, tokens: torch.Tensor):
    """Attention from position i >= 1 to i - 1."""
    q = torch.arange(1, patterns.shape[-1])
    return patterns[..., q, q - 1].sum(dim=(-2, -1)), patterns.shape[2] * len(q)


def first_token_read(patterns: torch.Tensor, tokens: torch.Tensor):
    """Attention from every position to the first one."""
    return patterns[..., :, 0].sum(dim=(-2, -1)), patterns.shape[2] * patterns.shape[3]


@torch.inference_mode()
def icl_score(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, early: int, late: int,
              memory_mb: float) -> float:
    """Mean loss at token `late` minus mean loss at token `early` (negative: context helps), a batch of
    windows at a time within `memory_mb` (logits included)."""
    size, device = batch_for(model, x.shape[1], memory_mb, logits=True), module_device(model)
    total = 0.0
    for a in range(0, len(x), size):
        losses = token_losses(model(x[a:a + size].to(device)), y[a:a + size].to(device))
        total += float(losses[:, late].sum() - losses[:, early].sum())
    return total / len(x)


def icl_from_losses(losses: torch.Tensor, early: int, late: int) -> float:
    """`icl_score` from per-token losses (batch, position) already computed."""
    return float(losses[:, late].mean() - losses[:, early].mean())


def head_monitors(hooked, vocab_size: int, length: int, batch: int, seed: int,
                  memory_mb: float) -> dict[str, np.ndarray]:
    """Prefix-matching and previous-token scores of every head on repeated random tokens."""
    length = min(length, hooked.cfg.n_ctx // 2)
    return head_means(hooked, repeated_random_tokens(vocab_size, length, batch, seed),
                      {"prefix_matching": prefix_matching_read(length), "previous_token": previous_token_read},
                      memory_mb)
