"""Per-sequence losses of scored token spans, in dataset order, in large inference batches.

A :class:`SequenceSet` holds token sequences (left-truncated to the model context) and a
mask of the target positions that count: for a pair, the solution body after the
shared prompt. ``sequence_losses`` gives the mean per-token loss over those positions,
one value per sequence, in the order the sequences were given.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from emergence.device import batch_for
from emergence.models.gpt import token_losses


@dataclasses.dataclass
class SequenceSet:
    ids: torch.Tensor        # (N, T) int64 inputs, right-padded with 0
    targets: torch.Tensor    # (N, T) int64 next tokens
    mask: torch.Tensor       # (N, T) float, 1 where the target is scored
    lengths: torch.Tensor    # (N,) input length before padding
    names: list[str]
    labels: np.ndarray       # (N,) e.g. "correct" / "buggy"
    groups: np.ndarray       # (N,) e.g. the problem (task id) a sequence belongs to

    def __len__(self) -> int:
        return self.ids.shape[0]

    def subset(self, index: Sequence[int]) -> "SequenceSet":
        idx = torch.as_tensor(index, dtype=torch.long)
        return SequenceSet(self.ids[idx], self.targets[idx], self.mask[idx], self.lengths[idx],
                           [self.names[i] for i in index], self.labels[list(index)],
                           self.groups[list(index)])


def build_sequences(tokens: Sequence[Sequence[int]], score_from: Sequence[int], n_ctx: int,
                    names: Sequence[str], labels: Sequence[str], groups: Sequence[str]) -> SequenceSet:
    """Sequences scored from token `score_from[i]` on, each cut to its last n_ctx + 1 tokens."""
    n = len(tokens)
    ids = torch.zeros(n, n_ctx, dtype=torch.long)
    targets = torch.zeros(n, n_ctx, dtype=torch.long)
    mask = torch.zeros(n, n_ctx)
    lengths = torch.zeros(n, dtype=torch.long)
    for i, (seq, start) in enumerate(zip(tokens, score_from)):
        cut = max(0, len(seq) - (n_ctx + 1))
        window = torch.as_tensor(list(seq[cut:]), dtype=torch.long)
        t = len(window) - 1
        ids[i, :t], targets[i, :t] = window[:-1], window[1:]
        first = max(start - 1 - cut, 0)  # target position j predicts token j + 1 + cut
        mask[i, first:t] = 1.0
        lengths[i] = t
        if mask[i].sum() == 0:
            raise ValueError(f"sequence {names[i]} has no scored token inside the {n_ctx}-token window")
    return SequenceSet(ids, targets, mask, lengths, list(names), np.asarray(labels), np.asarray(groups))


def module_device(model: nn.Module) -> torch.device:
    """Where a module's parameters live (torch's default device for a module without parameters of its own)."""
    return next((p.device for p in model.parameters()), torch.get_default_device())


MAX_PADDING = 0.1  # a batch's padded positions exceed its tokens by at most this share


def length_batches(seqs: SequenceSet, batch_size: int) -> list[torch.Tensor]:
    """Indices of the inference batches: sequences sorted by length, at most `batch_size` per
    batch, and a new batch begun where padding to the next length would add more than
    `MAX_PADDING` of the batch's tokens (HumanEval pairs in one batch: 45 % padding, 1.7x slower)."""
    lengths = seqs.lengths.tolist()
    batches, current, tokens = [], [], 0
    for i in torch.argsort(seqs.lengths, stable=True).tolist():
        if current and (len(current) == batch_size or (len(current) + 1) * lengths[i] > (1 + MAX_PADDING) * (tokens + lengths[i])):
            batches.append(torch.tensor(current))
            current, tokens = [], 0
        current.append(i)
        tokens += lengths[i]
    return batches + [torch.tensor(current)] if current else batches


def scoring_batches(model: nn.Module, seqs: SequenceSet, memory_mb: float) -> list[torch.Tensor]:
    """The batches `token_loss_matrix` scores `seqs` in: as many sequences as `memory_mb` holds
    (`device.batch_for`; a module without ``hidden`` holds its full logits too), sorted by length."""
    return length_batches(seqs, batch_for(model, seqs.ids.shape[1], memory_mb, logits=not hasattr(model, "hidden")))


def chunked_cross_entropy(h: torch.Tensor, unembed: nn.Module, targets: torch.Tensor,
                          logits_mb: float) -> torch.Tensor:
    """Cross-entropy (K,) of the final hidden states h (K, C) against targets (K,), unembedded a
    chunk of positions at a time so that a chunk's full-vocabulary logits and their log-softmax
    together hold at most `logits_mb` (the pass's peak is then about `logits_mb`: bench_pythia)."""
    vocab = unembed.weight.shape[0]
    chunk = max(1, int(logits_mb * 2 ** 20 // (2 * 4 * vocab)))
    return torch.cat([F.cross_entropy(unembed(h[a:a + chunk]).float(), targets[a:a + chunk], reduction="none")
                      for a in range(0, len(h), chunk)]) if len(h) else h.new_zeros(0)


@torch.inference_mode()
def token_loss_matrix(model: nn.Module, seqs: SequenceSet, memory_mb: float) -> torch.Tensor:
    """(N, T) per-token losses, zero where not scored; rows in dataset order.

    Sequences are batched by length (less padding) within `memory_mb` (`scoring_batches`); the
    unembedding runs only at the scored positions, `memory_mb` of logits at a time
    (`chunked_cross_entropy`), for models that expose ``hidden`` and ``lm_head`` (our GPT,
    `HFCausalLM`): memory is bounded whatever the vocabulary and the number of sequences. Any
    other module is scored from its full logits.
    """
    device = module_device(model)
    out = torch.zeros(seqs.mask.shape, device=device)
    for idx in scoring_batches(model, seqs, memory_mb):
        t = int(seqs.lengths[idx].max())
        ids, targets, mask = (x[idx, :t].to(device) for x in (seqs.ids, seqs.targets, seqs.mask))
        mask = mask.bool()
        if hasattr(model, "hidden"):
            rows = torch.zeros(len(idx), t, device=device)
            rows[mask] = chunked_cross_entropy(model.hidden(ids)[mask], model.lm_head, targets[mask], memory_mb)
        else:  # any other ids -> logits module (a HookedTransformer): its logits for the whole batch
            rows = token_losses(model(ids), targets) * mask
        out[idx, :t] = rows
    return out


def sequence_losses(model: nn.Module, seqs: SequenceSet, memory_mb: float) -> torch.Tensor:
    """(N,) mean per-token loss over each sequence's scored positions."""
    return token_loss_matrix(model, seqs, memory_mb).cpu().sum(1) / seqs.mask.sum(1)


def select_pairs(rows: list[dict], n_pairs: int, seed: int) -> list[dict]:
    """At most one pair per problem (a seeded choice), for `n_pairs` seeded problems (0: all problems).

    One pair per problem keeps the correct versions distinct, so no two observables
    are the same sequence.
    """
    by_task: dict[str, list[dict]] = {}
    for r in rows:
        by_task.setdefault(r["task_id"], []).append(r)
    rng = np.random.default_rng(seed)
    tasks = sorted(by_task)
    rng.shuffle(tasks)
    tasks = sorted(tasks[:n_pairs] if n_pairs else tasks, key=lambda t: (len(t), t))
    return [by_task[t][int(rng.integers(len(by_task[t])))] for t in tasks]


def load_pair_sequences(path: str | Path, n_ctx: int, n_pairs: int | None = None, seed: int = 0) -> SequenceSet:
    """Correct versions then buggy versions of tokenised pairs, scored on the solution body.

    With `n_pairs` given, one pair per problem is used (see `select_pairs`); otherwise all pairs.
    """
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if n_pairs is not None:
        rows = select_pairs(rows, n_pairs, seed)
    tokens, starts, names, labels, groups = [], [], [], [], []
    for side in ("correct", "buggy"):
        for r in rows:
            tokens.append(r[f"{side}_ids"])
            starts.append(r["prompt_tokens"])
            names.append(f"{r['pair_id']}:{side}")
            labels.append(side)
            groups.append(r["task_id"])
    return build_sequences(tokens, starts, n_ctx, names, labels, groups)


def pair_preference(losses: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    """Mean body loss on each side and the share of pairs whose correct version has lower loss."""
    correct = losses[torch.as_tensor(labels == "correct")]
    buggy = losses[torch.as_tensor(labels == "buggy")]
    return {"pairs/correct_loss": float(correct.mean()), "pairs/buggy_loss": float(buggy.mean()),
            "pairs/loss_gap": float((buggy - correct).mean()),
            "pairs/correct_preferred": float((correct < buggy).float().mean())}
