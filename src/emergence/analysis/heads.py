"""Training-dynamics monitors from attention patterns (Olsson et al. 2022, arXiv 2209.11895).

* prefix-matching score of a head: on random tokens repeated twice, the mean attention
  from a token in the second copy to the token right after its first occurrence
  (the induction-head signature);
* previous-token score: the mean attention from each position to the one before it;
* in-context-learning score: loss at a late token minus loss at an early token.
Patterns are read through transformer-lens hooks (``blocks.{l}.attn.hook_pattern``).
"""
from __future__ import annotations

import numpy as np
import torch

from emergence.models.gpt import token_losses


def repeated_random_tokens(vocab_size: int, length: int, batch: int, seed: int) -> torch.Tensor:
    """(batch, 2 * length) random tokens, each row's first half repeated."""
    g = torch.Generator().manual_seed(seed)
    half = torch.randint(0, vocab_size, (batch, length), generator=g)
    return torch.cat([half, half], dim=1)


@torch.inference_mode()
def attention_patterns(hooked, tokens: torch.Tensor) -> torch.Tensor:
    """(layers, heads, batch, query, key) attention patterns."""
    _, cache = hooked.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    return torch.stack([cache["pattern", layer].transpose(0, 1) for layer in range(hooked.cfg.n_layers)])


def prefix_matching_scores(patterns: torch.Tensor, length: int) -> np.ndarray:
    """(layers, heads) mean attention from position i >= length to i - length + 1."""
    q = torch.arange(length, 2 * length)
    return patterns[..., q, q - length + 1].mean(dim=(-2, -1)).numpy()


def previous_token_scores(patterns: torch.Tensor) -> np.ndarray:
    """(layers, heads) mean attention from position i >= 1 to i - 1."""
    q = torch.arange(1, patterns.shape[-1])
    return patterns[..., q, q - 1].mean(dim=(-2, -1)).numpy()


@torch.inference_mode()
def icl_score(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, early: int, late: int) -> float:
    """Mean loss at token `late` minus mean loss at token `early` (negative: context helps)."""
    return icl_from_losses(token_losses(model(x), y), early, late)


def icl_from_losses(losses: torch.Tensor, early: int, late: int) -> float:
    """`icl_score` from per-token losses (batch, position) already computed."""
    return float(losses[:, late].mean() - losses[:, early].mean())


def head_monitors(hooked, vocab_size: int, length: int, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Prefix-matching and previous-token scores of every head on repeated random tokens."""
    length = min(length, hooked.cfg.n_ctx // 2)
    patterns = attention_patterns(hooked, repeated_random_tokens(vocab_size, length, batch, seed))
    return {"prefix_matching": prefix_matching_scores(patterns, length),
            "previous_token": previous_token_scores(patterns)}
