"""In-context Markov chains: a calibration task with a known developmental transition.

Each sequence has its own transition matrix over k states, rows ~ Dirichlet(alpha), and a
uniform first state (Edelman et al. 2024, arXiv 2402.11004). A small transformer trained on
them goes uniform -> in-context unigram -> in-context bigram (a statistical induction head).

Reference losses, per position t (predicting x[t+1] from x[0..t]), under the Dirichlet
posterior mean with concentration alpha:

* unigram:  p(j) = (c_j + alpha) / (t + 1 + k alpha),   c_j = #{s <= t : x[s] = j}
* bigram:   p(j | x[t] = i) = (n_ij + alpha) / (n_i + k alpha),   n_ij = #{s < t : x[s] = i, x[s+1] = j}

The bigram predictor is the Bayes-optimal one for this source, so its mean loss is the floor.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emergence.io import atomic_path


def sample_chains(n_seq: int, length: int, k: int, alpha: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n_seq, length) uint16 states and the (n_seq, k, k) row-stochastic matrices they follow."""
    P = rng.dirichlet(np.full(k, alpha), size=(n_seq, k))              # (n, k, k)
    cum = P.cumsum(axis=-1)
    x = np.empty((n_seq, length), dtype=np.int64)
    x[:, 0] = rng.integers(0, k, size=n_seq)
    rows = np.arange(n_seq)
    for t in range(1, length):
        u = rng.random(n_seq)[:, None]                                  # (n, 1)
        x[:, t] = np.minimum((u >= cum[rows, x[:, t - 1]]).sum(axis=1), k - 1)
    return x.astype(np.uint16), P


def write_sequences(path: str | Path, seqs: np.ndarray) -> Path:
    """One sequence per window of the uint16 token file the LM stages read (aligned windows)."""
    with atomic_path(path) as tmp:
        np.ascontiguousarray(seqs, dtype=np.uint16).tofile(tmp)
    return Path(path)


def read_sequences(path: str | Path, length: int) -> np.ndarray:
    """(n, length) sequences of a file written by `write_sequences`."""
    tokens = np.fromfile(path, dtype=np.uint16)
    if tokens.size % length:
        raise ValueError(f"{path}: {tokens.size} tokens is not a multiple of the sequence length {length}; "
                         "re-run `dvc repro calib_data`")
    return tokens.reshape(-1, length).astype(np.int64)


def reference_losses(seqs: np.ndarray, k: int, alpha: float) -> dict[str, np.ndarray]:
    """Per-position mean cross-entropy (length - 1,) of the in-context unigram and bigram
    posterior-mean predictors (module docstring) and of the uniform one (log k)."""
    n, length = seqs.shape
    rows = np.arange(n)
    uni_counts = np.zeros((n, k))
    bi_counts = np.zeros((n, k, k))
    uni, bi = np.empty(length - 1), np.empty(length - 1)
    for t in range(length - 1):
        cur, nxt = seqs[:, t], seqs[:, t + 1]
        uni_counts[rows, cur] += 1
        if t > 0:
            bi_counts[rows, seqs[:, t - 1], cur] += 1
        uni[t] = -np.log((uni_counts[rows, nxt] + alpha) / (t + 1 + k * alpha)).mean()
        row = bi_counts[rows, cur]                                      # (n, k) transitions out of x[t]
        bi[t] = -np.log((row[rows, nxt] + alpha) / (row.sum(axis=1) + k * alpha)).mean()
    return {"uniform": np.full(length - 1, np.log(k)), "unigram": uni, "bigram": bi}
