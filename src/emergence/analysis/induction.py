"""Attention monitors defined on the training data itself, and the step a transition happens.

Statistical induction head (Edelman et al. 2024, arXiv 2402.11004): at query i it attends to
keys j that follow an earlier occurrence of the current token, M[i, j] = [1 <= j <= i and
x[j-1] = x[i]] (j = i included: the transition into x[i] is itself a bigram observation).

* induction score of a head: mean over queries with at least one such key of sum_j A[i, j] M[i, j];
* chance: the same for a uniform causal head, A[i, j] = 1 / (i + 1): mean of #M[i, :] / (i + 1);
* previous-token score: mean over i >= 1 of A[i, i - 1] (`emergence.analysis.heads`);
* transition step t*: the first checkpoint where a curve reaches chance + (final - chance) / 2.
"""
from __future__ import annotations

import numpy as np
import torch


def matching_keys(tokens: torch.Tensor) -> torch.Tensor:
    """(B, T, T) bool: M[b, i, j] = 1 <= j <= i and x[b, j-1] = x[b, i]."""
    B, T = tokens.shape
    prev = torch.cat([torch.full((B, 1), -1, dtype=tokens.dtype), tokens[:, :-1]], dim=1)  # x[j-1]; none at j=0
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return (tokens[:, :, None] == prev[:, None, :]) & causal            # (B, T, T)


def induction_read(patterns: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(layers, heads) attention mass on matching keys summed over the queries that have one, and
    how many queries have one. `patterns`: (layers, heads, B, T, T); `tokens`: (B, T) the sequences read."""
    M = matching_keys(tokens)
    has = M.any(dim=-1)                                                 # (B, T) queries with a match
    mass = (patterns * M.to(patterns.dtype)).sum(dim=-1)                 # (L, H, B, T)
    return (mass * has).sum(dim=(-2, -1)), has.sum()


def induction_scores(patterns: torch.Tensor, tokens: torch.Tensor) -> np.ndarray:
    """(layers, heads) attention mass on matching keys, averaged over queries that have one."""
    total, count = induction_read(patterns, tokens)
    return total.div(count).numpy()


def induction_chance(tokens: torch.Tensor) -> float:
    """The induction score of a uniform causal head on `tokens`."""
    T = tokens.shape[1]
    uniform = torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]   # (T, T)
    return float(induction_scores(uniform.expand(1, 1, tokens.shape[0], T, T), tokens)[0, 0])


def transition_step(steps: list[int], curve: list[float], chance: float, min_rise: float = 0.0) -> int | None:
    """First step whose value reaches halfway from `chance` to the final value; None when the
    final value exceeds chance by no more than `min_rise` (no transition)."""
    final = curve[-1]
    if final - chance <= min_rise:
        return None
    half = chance + 0.5 * (final - chance)
    return next(s for s, v in zip(steps, curve) if v >= half)
