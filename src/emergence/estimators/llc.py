"""Local learning coefficient from a trace (Lau et al. 2025, arXiv 2308.12108).

    lambda_hat(w*) = n*beta * ( E_draws[ L_m(w) ] - L(w*) )

The expectation runs over the draws after burn-in only (never the burn-in steps).
When the trace pairs each minibatch loss with the loss of w* on the same minibatch,
the estimate averages x_t = n*beta (L_m(w_t) - L_m(w*)): the same expectation with most of
the minibatch noise cancelled (a control variate); otherwise ``L(w*)`` is the loss at the
checkpoint averaged over several batches.

Interval: batch means. Each chain's draws are cut into batches at least twice the
integrated autocorrelation time long (and about sqrt(T) draws; ``diagnostics.block_length``),
the batch means of all chains are pooled, and SE = sd(batch means) / sqrt(#batches) with a Student-t interval
(Flegal & Jones 2010, arXiv 0811.1729). R-hat and ESS (``diagnostics``) are computed on
x_t itself, the quantity being averaged. A checkpoint whose interval lies below zero is
not a local minimum of the sampling loss (the chains find lower loss nearby): flagged as
``negative``. A chain with a non-finite loss after burn-in makes the estimate fail instead
of being skipped by an average.
"""
from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.stats import t as student_t

from emergence.errors import EmergenceError
from emergence.estimators.diagnostics import block_length, effective_sample_size, split_rhat
from emergence.sampling.trace import config_of, loss_increase_at_draws


class DeadChainError(EmergenceError, ValueError):
    """A chain holds non-finite values where estimates need finite ones."""


def check_finite(values: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        chain = int(np.nonzero(bad)[0][0])
        raise DeadChainError(f"{what}: chain {chain} has {int(bad[chain].sum())} non-finite values; "
                             f"the trace is incomplete or a chain diverged: re-sample with a lower sampler.lr")


def batch_means_interval(x: np.ndarray, level: float = 0.9) -> dict:
    """Mean of draws x (chains, draws), its batch-means standard error and a t interval."""
    chains, n = x.shape
    length = block_length(x)
    per_chain = n // length
    kept = x[:, n - per_chain * length:]  # drop the earliest draws that do not fill a batch
    means = kept.reshape(chains, per_chain, length).mean(axis=2).ravel()
    mean = float(x.mean())
    if means.size < 2:
        return {"mean": mean, "se": float("nan"), "lo": float("nan"), "hi": float("nan"), "batches": int(means.size)}
    se = float(means.std(ddof=1) / np.sqrt(means.size))
    half = float(student_t.ppf((1 + level) / 2, means.size - 1) * se)
    return {"mean": mean, "se": se, "lo": mean - half, "hi": mean + half, "batches": int(means.size)}


def llc(trace: xr.Dataset, level: float = 0.9) -> dict:
    """LLC with its batch-means interval at `level`, per-chain values and diagnostics of x_t."""
    nbeta = config_of(trace)["nbeta"]
    x = nbeta * loss_increase_at_draws(trace)
    check_finite(x, "LLC")
    interval = batch_means_interval(x, level)
    return {"llc": interval["mean"], "llc_se": interval["se"], "llc_lo": interval["lo"],
            "llc_hi": interval["hi"], "level": level, "batches": interval["batches"],
            "negative": bool(interval["hi"] < 0), "llc_per_chain": x.mean(axis=1).tolist(),
            "init_loss": float(trace["init_loss"]), "rhat": split_rhat(x), "ess": effective_sample_size(x)}
