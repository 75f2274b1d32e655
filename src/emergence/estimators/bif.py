"""Bayesian influence functions from a trace (Lee et al. 2025, arXiv 2510.12071).

    BIF(z_i, l_j) = - Cov_{p(w|D)}( l_i(w), l_j(w) )

estimated over all draws of all chains pooled (C * T samples, centred once):
BIF = -(1 / (CT - 1)) L (I - 11^T / CT) L^T. It is the first-order change in the
posterior mean of l_j when sample i is up-weighted, so a negative value means that
learning from i lowers the loss on j. The Pearson form replaces the covariance by the
correlation (-Corr), which is better conditioned for language models.

Token level: with per-token losses, the token x token matrix is computed in blocks
(``token_bif_blocks``) so it never has to fit in memory, and its average over the
token pairs of two sequences (``token_bif_by_sequence``) is linear in the standardised
token losses, so it is computed without forming the token x token matrix at all.

Common mode: moving away from w* raises most losses together, so the first principal
component of the centred per-draw losses (x = L - mean, S x n) often carries most of the
variance and makes every block of the BIF look alike. ``common_mode`` reports its share
lambda_1 / tr(Cov) and its alignment |<v_1, 1/sqrt(n)>| with the all-ones direction;
``without_common_mode`` projects the draws orthogonally to v_1, x' = x (I - v_1 v_1^T), so
Cov' = Cov - lambda_1 v_1 v_1^T, and the BIF of x' is recomputed. The first principal
component is used rather than the mean-loss direction (regressing every loss on the mean
loss) because it removes exactly the largest rank-one part of the covariance, with
whatever unequal loadings the samples have, and its alignment says whether that part is
a common mode at all. Either removal is exact only when the remaining (sample-specific)
modes are orthogonal to the removed one; where they share its direction (every loss of a
group rising together), the projection leaves a negative cross-group residual, so the raw
and the removed aggregates are always reported together.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from emergence.estimators.diagnostics import block_length, block_resample
from emergence.estimators.llc import check_finite


def pooled(obs: np.ndarray) -> np.ndarray:
    """(chain, draw, n) -> (chain * draw, n), refusing non-finite draws."""
    obs = np.asarray(obs, dtype=np.float64)
    check_finite(obs.reshape(obs.shape[0], -1), "BIF")
    return obs.reshape(-1, obs.shape[-1])


def _centred(obs: np.ndarray) -> np.ndarray:
    x = pooled(obs)
    return x - x.mean(axis=0)


def _first_component(x: np.ndarray) -> tuple[float, np.ndarray, float]:
    """(largest eigenvalue, its unit eigenvector, trace) of the covariance of centred draws x."""
    cov = x.T @ x / (x.shape[0] - 1)
    values, vectors = np.linalg.eigh(cov)
    return float(values[-1]), vectors[:, -1], float(np.trace(cov))


def common_mode(obs: np.ndarray) -> dict[str, float]:
    """Share of the total variance of the per-draw losses carried by their first principal
    component, and that component's alignment |cos| with the all-ones direction (1 = every
    loss moving together by the same amount)."""
    top, v, total = _first_component(_centred(obs))
    return {"share": top / total if total > 0 else float("nan"),
            "alignment": float(abs(v.sum()) / np.sqrt(len(v)))}


def without_common_mode(obs: np.ndarray) -> np.ndarray:
    """(1, chain * draw, n) centred draws projected orthogonally to their first principal component."""
    x = _centred(obs)
    _, v, _ = _first_component(x)
    return (x - np.outer(x @ v, v))[None]


def bif_matrix(obs: np.ndarray, pearson: bool = False) -> np.ndarray:
    """(n, n) BIF between observables from draws (chain, draw, n)."""
    x = _centred(obs)
    cov = x.T @ x / (x.shape[0] - 1)
    if pearson:
        sd = np.sqrt(np.diag(cov))
        sd = np.where(sd > 0, sd, np.inf)
        cov = cov / sd[:, None] / sd[None, :]
    return -cov


def _standardised(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0)
    sd = x.std(axis=0, ddof=1)
    return x / np.where(sd > 0, sd, np.inf)


def token_bif_blocks(token_obs: np.ndarray, block: int = 2048) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Blocks (rows, cols, -Corr) of the token x token Pearson BIF, `block` tokens at a time."""
    z = _standardised(pooled(token_obs))
    n, scale = z.shape[1], 1.0 / (z.shape[0] - 1)
    for a in range(0, n, block):
        rows = slice(a, min(a + block, n))
        for b in range(0, n, block):
            cols = slice(b, min(b + block, n))
            yield rows, cols, -(z[:, rows].T @ z[:, cols]) * scale


def token_bif_by_sequence(token_obs: np.ndarray, owner: np.ndarray, n_sequences: int) -> np.ndarray:
    """(n_seq, n_seq) mean over token pairs (a in i, b in j) of the token-level Pearson BIF."""
    z = _standardised(pooled(token_obs))
    counts = np.bincount(owner, minlength=n_sequences).astype(float)
    agg = np.zeros((z.shape[0], n_sequences))
    np.add.at(agg.T, owner, z.T)
    agg /= np.where(counts > 0, counts, np.inf)
    return -(agg.T @ agg) / (z.shape[0] - 1)


def block_masks(labels: np.ndarray, groups: np.ndarray, index: np.ndarray | None = None,
                copies: np.ndarray | None = None, classes: tuple[str, str] = ("correct", "buggy")) -> dict[str, np.ndarray]:
    """Boolean (n, n) masks of the blocks of the two `classes` a, b: a->a, a->b, b->b (by default
    correct->correct, correct->buggy, buggy->buggy), each also split into same-problem and
    different-problem entries. The diagonal
    (a sequence with itself) is excluded; in a bootstrap sample (`index` with
    repetitions, `copies` numbering the draws of each problem) entries between two
    draws of the same problem are excluded too, so resampling adds no same-problem pairs."""
    index = np.arange(len(labels)) if index is None else index
    copies = np.zeros(len(index), int) if copies is None else copies
    lab, grp = labels[index], groups[index]
    same = grp[:, None] == grp[None, :]
    off_diag = (index[:, None] != index[None, :]) & ~(same & (copies[:, None] != copies[None, :]))
    (na, nb), a, b = classes, lab == classes[0], lab == classes[1]
    blocks = {f"{na}->{na}": a[:, None] & a[None, :], f"{na}->{nb}": a[:, None] & b[None, :],
              f"{nb}->{nb}": b[:, None] & b[None, :]}
    out = {}
    for name, m in blocks.items():
        out[name] = m & off_diag
        out[f"{name}/same_problem"] = m & off_diag & same
        out[f"{name}/different_problem"] = m & off_diag & ~same
    return out


def draw_resampler(obs: np.ndarray, form: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.random.Generator], np.ndarray]:
    """A function rng -> the BIF matrix `form(draws)` of one blocked-bootstrap resample of the
    draws (chain, draw, n): the Monte Carlo error of a finite chain. Blocks are at least twice
    the autocorrelation time of the mean loss long (``diagnostics.block_length``), the slowest
    mode of the per-sample losses as a rule."""
    blocks = max(obs.shape[1] // block_length(np.asarray(obs).mean(-1)), 1)

    def resample(rng: np.random.Generator) -> np.ndarray:
        chain, draw = block_resample(*obs.shape[:2], blocks, rng)
        return form(obs[chain, draw][None])
    return resample


def block_aggregates(matrix: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                     n_boot: int = 500, seed: int = 0, level: float = 0.9,
                     resample: Callable[[np.random.Generator], np.ndarray] | None = None,
                     classes: tuple[str, str] = ("correct", "buggy")) -> dict[str, dict]:
    """Mean BIF per block, with a bootstrap interval that resamples problems (groups) and,
    with `resample` (see ``draw_resampler``), the draws too: {block: {"mean", "lo", "hi", "skipped"}}.

    Resampling whole problems keeps the correct and buggy versions of a problem
    together, so the interval reflects which problems happened to be in the set;
    recomputing the matrix from resampled blocks of draws in the same replicate adds the
    sampler's Monte Carlo error, so another chain seed lands inside the interval. A whole
    block's mean is the same-problem and different-problem means weighted by their
    shares in the data, in every resample too (resampling would otherwise change the
    share of same-problem entries and shift the interval). A resample in which a block is
    empty (e.g. no buggy sequence drawn) has no mean for it: such resamples are left out of
    that block's interval and counted in "skipped" (0 for a block empty in the data itself,
    whose mean and interval are NaN).
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    masks = block_masks(labels, groups, classes=classes)
    point = {k: _masked_mean(matrix, m) for k, m in masks.items()}
    share = {k: masks[f"{k}/same_problem"].sum() / max(masks[k].sum(), 1) for k in masks if "/" not in k}
    problems = np.unique(groups)
    members = [np.nonzero(groups == g)[0] for g in problems]
    rng = np.random.default_rng(seed)
    boots: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(n_boot):
        draw = rng.integers(0, len(problems), len(problems))
        idx = np.concatenate([members[i] for i in draw])
        copies = np.concatenate([np.full(len(members[i]), c) for c, i in enumerate(draw)])
        sub = (matrix if resample is None else resample(rng))[np.ix_(idx, idx)]
        means = {k: _masked_mean(sub, m) for k, m in block_masks(labels, groups, idx, copies, classes).items()}
        for k in point:
            if "/" in k:
                boots[k].append(means[k])
            else:
                parts = [(share[k], means[f"{k}/same_problem"]), (1 - share[k], means[f"{k}/different_problem"])]
                boots[k].append(sum(w * v for w, v in parts if w > 0))
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    out = {}
    for k, v in point.items():
        arr = np.asarray([b for b in boots[k] if np.isfinite(b)])
        out[k] = {"mean": v, "lo": float(np.quantile(arr, lo)) if arr.size else float("nan"),
                  "hi": float(np.quantile(arr, hi)) if arr.size else float("nan"),
                  "skipped": len(boots[k]) - int(arr.size) if np.isfinite(v) else 0}
    return out


def _masked_mean(matrix: np.ndarray, mask: np.ndarray) -> float:
    return float(matrix[mask].mean()) if mask.any() else float("nan")
