"""Local learning coefficient from a trace (Lau et al. 2025, arXiv 2308.12108).

    lambda_hat(w*) = n*beta * ( E_draws[ L_m(w) ] - L(w*) )

The expectation runs over the draws after burn-in only (never the burn-in steps).
When the trace pairs each minibatch loss with the loss of w* on the same minibatch,
the estimate averages L_m(w) - L_m(w*): the same expectation with most of the
minibatch noise cancelled (a control variate); otherwise ``L(w*)`` is the loss at
the checkpoint averaged over several batches. The standard
error is the spread of the per-chain estimates. A chain with a non-finite loss after
burn-in makes the estimate fail instead of being skipped by an average.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from emergence.errors import EmergenceError
from emergence.estimators.diagnostics import effective_sample_size, split_rhat
from emergence.sampling.trace import config_of, loss_increase_at_draws, post_burn_in_draw_losses


class DeadChainError(EmergenceError, ValueError):
    """A chain holds non-finite values where estimates need finite ones."""


def check_finite(values: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        chain = int(np.nonzero(bad)[0][0])
        raise DeadChainError(f"{what}: chain {chain} has {int(bad[chain].sum())} non-finite values; "
                             f"the trace is incomplete or a chain diverged: re-sample with a lower sampler.lr")


def llc(trace: xr.Dataset) -> dict:
    """LLC mean, standard error across chains, per-chain values and convergence diagnostics."""
    nbeta = config_of(trace)["nbeta"]
    draws = post_burn_in_draw_losses(trace)
    increase = loss_increase_at_draws(trace)
    check_finite(increase, "LLC")
    init = float(trace["init_loss"])
    per_chain = nbeta * increase.mean(axis=1)
    chains = len(per_chain)
    return {"llc": float(per_chain.mean()),
            "llc_se": float(per_chain.std(ddof=1) / np.sqrt(chains)) if chains > 1 else float("nan"),
            "llc_per_chain": per_chain.tolist(), "init_loss": init,
            "rhat": split_rhat(draws), "ess": effective_sample_size(draws)}
