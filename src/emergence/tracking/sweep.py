"""SGLD hyperparameter sweeps: the score of a setting, and an offline runner that uses
W&B's own sweep engine (PyPI ``sweeps``) on the same YAML as ``wandb sweep``.

Score of a setting (higher is better, 0 is perfect): minus the relative drift of the
post-burn-in loss increase between the first and second half of the draws, minus
|R-hat - 1|; a negative LLC costs 1 more and a divergence scores -10.
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import yaml

log = logging.getLogger(__name__)
DIVERGED = -10.0


def convergence_score(increase: np.ndarray, rhat: float, llc_value: float) -> float:
    """Score of a (chain, draw) array of L_m(w) - L(w*) at the draws."""
    half = increase.shape[1] // 2
    first, second = increase[:, :half].mean(), increase[:, half:].mean()
    drift = abs(second - first) / max(abs(first) + abs(second), 1e-12)
    rhat_term = abs(rhat - 1.0) if np.isfinite(rhat) else 1.0
    return float(-(drift + rhat_term) - (1.0 if llc_value < 0 else 0.0))


def load_sweep(path: str) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def run_offline(sweep: dict, trial: Callable[[dict], float], trials: int, seed: int = 0) -> list[dict]:
    """Propose `trials` settings with `sweeps.next_run` (random, grid or bayes as in W&B),
    score each with `trial(config) -> score`, and return [{config, score}] in order."""
    from sweeps import RunState, SweepRun, next_run
    np.random.seed(seed)  # the engine draws from numpy's global generator
    metric = sweep["metric"]["name"]
    past: list[SweepRun] = []
    results = []
    for i in range(trials):
        proposal = next_run(sweep, past)
        if proposal is None:  # grid exhausted
            break
        config = {k: _plain(v["value"]) for k, v in proposal.config.items()}
        score = trial(config)
        log.info("trial %d: %s -> %s %.4f", i, config, metric, score)
        past.append(SweepRun(name=f"trial-{i}", config=proposal.config, state=RunState.finished,
                             summaryMetrics={metric: score}, sampledHistory=[{metric: score}]))
        results.append({"config": config, "score": score})
    return results
