"""Activation patching for correctness, position-aware, through transformer-lens hooks.

For a pair whose two versions have the same token length (they differ only inside the
mutated span), the metric is the mean loss on the tokens after the span - the same
tokens in both versions, read in different contexts. Patching a component's activation
from the correct run into the buggy run at some positions gives the normalised effect

    effect = (m_patched - m_buggy) / (m_correct - m_buggy)

0 when the component carries none of the correct-vs-buggy difference, 1 when it
carries all of it. Components and their hooks: `emergence.models.components.hooks` (each head,
MLP output and residual stream, and groups of heads patched together).
Positions: the mutated span, the next few tokens, and the rest downstream.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch

from emergence.device import batch_for
from emergence.models.components import resid_hook
from emergence.models.gpt import token_losses

POSITIONS = ("bug", "next_4", "downstream")


@dataclasses.dataclass
class PatchPair:
    correct: torch.Tensor   # (T,) token ids
    buggy: torch.Tensor     # (T,)
    start: int              # first token of the mutated span
    end: int                # one past its last token


def patchable_pairs(rows: Sequence[dict], n_ctx: int) -> list[PatchPair]:
    """Pairs of equal token length whose tokens differ only inside the recorded bug span,
    cut (like the scoring windows) to their last n_ctx + 1 tokens when the span stays inside."""
    out = []
    for r in rows:
        c, b = r["correct_ids"], r["buggy_ids"]
        if len(c) != len(b) or "buggy_span" not in r:
            continue
        start, end = r["buggy_span"]
        diff = [i for i in range(len(c)) if c[i] != b[i]]
        cut = max(0, len(c) - (n_ctx + 1))
        if not diff or diff[0] < start or diff[-1] >= end or end >= len(c) - 1 or start - 1 < cut:
            continue
        out.append(PatchPair(torch.tensor(c[cut:]), torch.tensor(b[cut:]), start - cut, end - cut))
    return out


def position_sets(pair: PatchPair) -> dict[str, torch.Tensor]:
    """Input positions of each position group (activations at position i predict token i + 1)."""
    T = len(pair.correct) - 1
    bug = torch.arange(max(pair.start - 1, 0), min(pair.end, T))
    nxt = torch.arange(min(pair.end, T), min(pair.end + 4, T))
    rest = torch.arange(min(pair.end + 4, T), T)
    return {"bug": bug, "next_4": nxt, "downstream": rest}


def patch_effects(hooked, pairs: list[PatchPair], components: dict[str, list[tuple[str, int | None]]],
                  source: str = "correct", min_gap: float = 1e-6) -> np.ndarray:
    """(pairs, components, position groups) normalised patching effects (NaN when the correct and
    buggy metrics differ by less than `min_gap` nats).

    Activations are taken from the `source` run ("correct"; "buggy" patches a run into itself).
    """
    names = list(components)
    hook_names = sorted({h for hooks in components.values() for h, _ in hooks})
    out = np.full((len(pairs), len(names), len(POSITIONS)), np.nan)
    device = hooked.cfg.device
    for i, pair in enumerate(pairs):
        correct, buggy = pair.correct.to(device), pair.buggy.to(device)
        xc, xb = correct[None, :-1], buggy[None, :-1]
        target = buggy[None, 1:]
        scored = slice(pair.end, target.shape[1])                      # predictions of the tokens after the span

        def metric(logits):
            return float(token_losses(logits, target)[0, scored].mean())

        logits_c = hooked(xc)
        _, cache_c = hooked.run_with_cache(xc if source == "correct" else xb, names_filter=lambda n: n in hook_names)
        m_correct = float(token_losses(logits_c, correct[None, 1:])[0, scored].mean())
        m_buggy = metric(hooked(xb))
        gap = m_correct - m_buggy
        if abs(gap) < min_gap:  # the versions barely differ: a ratio would be noise
            continue
        for k, name in enumerate(names):
            for j, (group, pos) in enumerate(position_sets(pair).items()):
                if len(pos) == 0:
                    continue

                def patch(value, hook, pos=pos):
                    for hook_name, head in components[name]:
                        if hook.name == hook_name:
                            src = cache_c[hook_name]
                            if head is None:
                                value[:, pos] = src[:, pos]
                            else:
                                value[:, pos, head] = src[:, pos, head]
                    return value

                hooks = [(h, patch) for h in {h for h, _ in components[name]}]
                out[i, k, j] = (metric(hooked.run_with_hooks(xb, fwd_hooks=hooks)) - m_buggy) / gap
    return out


def skipped_pairs(effects: np.ndarray) -> np.ndarray:
    """(pairs,) True for the pairs `patch_effects` skipped (gap below min_gap: every effect NaN)."""
    return np.isnan(effects).all(axis=(1, 2))


def total_effect(effects: np.ndarray) -> np.ndarray:
    """(pairs, components) sum of the effects over the position groups; a group with no
    positions in a pair adds nothing, a skipped pair stays NaN."""
    return np.where(skipped_pairs(effects)[:, None], np.nan, np.nansum(effects, axis=-1))


@torch.no_grad()
def logit_lens(hooked, ids: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, memory_mb: float) -> np.ndarray:
    """(layers, N) mean scored loss when each layer's residual stream is decoded directly
    (final layer norm, then unembedding); the last row equals the model's own loss. A batch of
    sequences at a time within `memory_mb` (every layer's residual stream and one layer's logits)."""
    c = hooked.cfg
    size = batch_for(hooked, ids.shape[1], memory_mb, logits=True, cached_per_position=c.n_layers * c.d_model)
    out = []
    for a in range(0, len(ids), size):
        x, y, m = (t[a:a + size].to(c.device) for t in (ids, targets, mask))
        _, cache = hooked.run_with_cache(x, names_filter=lambda n: n.endswith("hook_resid_post"))
        out.append([((token_losses(hooked.unembed(hooked.ln_final(cache[resid_hook(layer)])), y) * m).sum(1)
                     / m.sum(1)).float().cpu().numpy() for layer in range(c.n_layers)])
    return np.concatenate([np.array(rows) for rows in out], axis=1)
