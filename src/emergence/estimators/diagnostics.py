"""MCMC diagnostics of draws x (chains, draws): rank-normalised split R-hat, the
multi-chain effective sample size (Vehtari et al. 2021, arXiv 1903.08008, as in Stan) and
the blocked bootstrap of draws that the estimators' intervals use.

R-hat: each chain is split in halves; the draws are rank-normalised over all chains,
z = Phi^-1((rank - 3/8) / (S + 1/4)); R-hat = sqrt(var_plus / W) on z ("bulk") and on
the ranks of |x - median(x)| ("tail"), and the larger of the two is reported.
ESS: the autocorrelation is combined over chains, rho_t = 1 - (W - mean_m s_m^2 rho_{m,t}) / var_plus,
and summed with Geyer's initial monotone sequence over split chains: ESS = M N / (-1 + 2 sum_k Gamma_k).
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata


def _split(x: np.ndarray) -> np.ndarray:
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half:]], axis=0)


def _rank_normalised(x: np.ndarray) -> np.ndarray:
    ranks = rankdata(x, method="average").reshape(x.shape)
    return ndtri((ranks - 0.375) / (x.size + 0.25))


def _rhat(x: np.ndarray) -> float:
    n = x.shape[1]
    within = x.var(axis=1, ddof=1).mean()
    var_plus = (n - 1) / n * within + x.mean(axis=1).var(ddof=1)
    return float(np.sqrt(var_plus / within)) if within > 0 else float("nan")


def split_rhat(x: np.ndarray) -> float:
    """Rank-normalised split R-hat (max of bulk and tail) of draws x (chains, draws)."""
    x = np.asarray(x, dtype=float)
    if x.shape[1] < 4 or not np.isfinite(x).all():
        return float("nan")
    halves = _split(x)
    bulk = _rhat(_rank_normalised(halves))
    tail = _rhat(_rank_normalised(np.abs(halves - np.median(halves))))
    return max(bulk, tail)


def autocovariance(x: np.ndarray) -> np.ndarray:
    """Autocovariance of each chain (chains, draws) by FFT, lags 0..draws-1."""
    x = np.asarray(x, dtype=float)
    n = x.shape[1]
    centred = x - x.mean(axis=1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(centred, size, axis=1)
    return np.fft.irfft(f * np.conj(f), size, axis=1)[:, :n] / n


def effective_sample_size(x: np.ndarray) -> float:
    """Multi-chain ESS of the mean of draws x (chains, draws), on split chains (as Stan's ess_mean)."""
    x = np.asarray(x, dtype=float)
    if x.shape[1] < 8 or not np.isfinite(x).all():
        return float("nan")
    x = _split(x)
    chains, n = x.shape
    acov = autocovariance(x)
    within = acov[:, 0].mean() * n / (n - 1)
    var_plus = within * (n - 1) / n + x.mean(axis=1).var(ddof=1)
    if var_plus <= 0:
        return float("nan")
    rho = 1.0 - (within - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    pairs = rho[: (n - 1) // 2 * 2].reshape(-1, 2).sum(axis=1)  # Gamma_k = rho_2k + rho_2k+1
    positive = int(np.argmax(pairs <= 0)) if np.any(pairs <= 0) else len(pairs)
    gammas = np.minimum.accumulate(pairs[:positive])
    tau = -1.0 + 2.0 * gammas.sum()
    return float(chains * n / max(tau, 1.0 / np.log10(max(chains * n, 10))))


def block_length(x: np.ndarray) -> int:
    """Length of the batches / bootstrap blocks of draws x (chains, draws): about sqrt(T) and
    at least twice the integrated autocorrelation time C T / ESS, at most T (then each chain
    is one block, and only the spread between chains is left)."""
    chains, n = x.shape
    ess = effective_sample_size(x)
    tau = chains * n / ess if np.isfinite(ess) and ess > 0 else float(n)
    return int(min(max(np.ceil(np.sqrt(n)), np.ceil(2 * tau)), n))


def block_resample(chains: int, draws: int, blocks: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(chain index, draw index) of one blocked-bootstrap resample (Kuensch 1989): each chain
    is cut into `blocks` contiguous blocks and as many blocks are drawn with replacement from
    all chains, so autocorrelation within a block and differences between chains are kept."""
    size = max(draws // blocks, 1)
    starts = [(c, a) for c in range(chains) for a in range(0, draws - size + 1, size)]
    pick = rng.integers(0, len(starts), len(starts))
    chain = np.repeat([starts[i][0] for i in pick], size)
    draw = np.concatenate([np.arange(starts[i][1], starts[i][1] + size) for i in pick])
    return chain, draw
