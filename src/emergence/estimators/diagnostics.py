"""MCMC diagnostics of a loss trace: split R-hat and effective sample size.

Split R-hat (Gelman et al., BDA3 ch. 11): chains are halved, and the between- and
within-half variances compared; near 1 when the halves agree. The effective sample
size follows Geyer's initial monotone sequence estimator of the integrated
autocorrelation time (as in Stan): ESS = C * T / (1 + 2 * sum rho_t).
"""
from __future__ import annotations

import numpy as np


def split_rhat(x: np.ndarray) -> float:
    """Split R-hat of draws x with shape (chains, draws)."""
    x = np.asarray(x, dtype=float)
    half = x.shape[1] // 2
    if half < 2:
        return float("nan")
    halves = np.concatenate([x[:, :half], x[:, half:2 * half]], axis=0)  # (2C, half)
    n = halves.shape[1]
    means = halves.mean(axis=1)
    within = halves.var(axis=1, ddof=1).mean()
    between = n * means.var(ddof=1)
    var_plus = (n - 1) / n * within + between / n
    return float(np.sqrt(var_plus / within)) if within > 0 else float("nan")


def autocorrelation(x: np.ndarray) -> np.ndarray:
    """Autocorrelation of each chain (chains, draws) by FFT, lags 0..draws-1."""
    x = np.asarray(x, dtype=float)
    n = x.shape[1]
    centred = x - x.mean(axis=1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(centred, size, axis=1)
    acov = np.fft.irfft(f * np.conj(f), size, axis=1)[:, :n] / n
    return acov / np.where(acov[:, :1] > 0, acov[:, :1], 1.0)


def effective_sample_size(x: np.ndarray) -> float:
    """ESS of draws x (chains, draws), Geyer's initial monotone sequence over the mean autocorrelation."""
    x = np.asarray(x, dtype=float)
    chains, n = x.shape
    if n < 4:
        return float("nan")
    rho = autocorrelation(x).mean(axis=0)
    pairs = rho[: (n - 1) // 2 * 2].reshape(-1, 2).sum(axis=1)  # Gamma_k = rho_2k + rho_2k+1
    positive = np.argmax(pairs <= 0) if np.any(pairs <= 0) else len(pairs)
    gammas = np.minimum.accumulate(pairs[:positive])
    tau = -1.0 + 2.0 * gammas.sum()
    return float(chains * n / max(tau, 1.0 / np.log10(max(chains * n, 10))))
