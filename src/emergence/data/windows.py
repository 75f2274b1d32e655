"""Windows of a memory-mapped uint16 token file: random batches for training and sampling, and
fixed evenly spaced windows for evaluation (no framework imports: every stage reads these)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, TensorDataset


class TokenWindows(IterableDataset):
    """Endless batches (x, y) of `batch_size` random windows of n_ctx + 1 tokens (``aligned``:
    only windows starting at multiples of n_ctx + 1, for files of one sequence per window)."""

    def __init__(self, path: str | Path, n_ctx: int, batch_size: int, seed: int, aligned: bool = False):
        self.path, self.n_ctx, self.batch_size, self.seed = str(path), n_ctx, batch_size, seed
        self.aligned = aligned
        self.start_step = 0
        n = os.path.getsize(self.path) // 2
        if n <= n_ctx + 1:
            raise ValueError(f"{self.path} holds {n} tokens, fewer than n_ctx + 2 = {n_ctx + 2}")

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = np.memmap(self.path, dtype=np.uint16, mode="r")
        rng = np.random.default_rng([self.seed, step])
        if self.aligned:
            offsets = rng.integers(0, len(tokens) // (self.n_ctx + 1), size=self.batch_size) * (self.n_ctx + 1)
        else:
            offsets = rng.integers(0, len(tokens) - self.n_ctx - 1, size=self.batch_size)
        buf = torch.from_numpy(np.stack([tokens[o:o + self.n_ctx + 1] for o in offsets]).astype(np.int64))
        return buf[:, :-1], buf[:, 1:]

    def __iter__(self):
        """Batch s of rank r of w processes is window set s * w + r: ranks see disjoint data."""
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        step = self.start_step
        while True:
            yield self.batch(step * world + rank)
            step += 1


def fixed_windows(path: str | Path, n_ctx: int, count: int, aligned: bool = False) -> TensorDataset:
    """`count` evenly spaced windows of a token file (the same every time; ``aligned``: starting at
    multiples of n_ctx + 1)."""
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    if aligned:
        starts = np.linspace(0, len(tokens) // (n_ctx + 1) - 1, count).astype(np.int64) * (n_ctx + 1)
    else:
        starts = np.linspace(0, len(tokens) - n_ctx - 2, count).astype(np.int64)
    buf = torch.from_numpy(np.stack([tokens[s:s + n_ctx + 1] for s in starts]).astype(np.int64))
    return TensorDataset(buf[:, :-1], buf[:, 1:])
