"""SGLD hyperparameter sweeps: the score of a setting, and an offline runner that uses
W&B's own sweep engine (PyPI ``sweeps``) on the same YAML as ``wandb sweep``.

Score of a setting (higher is better, 0 is perfect): minus the relative drift of the
post-burn-in loss increase between the first and second half of the draws, minus
|R-hat - 1|; a negative LLC costs 1 more and a divergence scores -10.

The sweep YAML names sampler fields (``lr``); each trial's run records them where they
live in params.yaml (``sampler.lr``), and the best setting is written in params form.
"""
from __future__ import annotations

import logging
import netrc
import os
import sys
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

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


def best_setting(results: list[dict], section: str = "sampler") -> dict:
    """The highest-scoring trial as a params.yaml fragment ``{section: {name: value}}`` plus its score."""
    if not results:
        raise ValueError("the sweep ran no trials: raise --trials or check the sweep YAML's parameters")
    best = max(results, key=lambda r: r["score"])
    return {section: dict(best["config"]), "score": best["score"]}


def apply_command(best: dict, section: str = "sampler") -> str:
    """The `dvc exp run` line that runs the pipeline with the best setting."""
    return "dvc exp run " + " ".join(f"-S {section}.{k}={v}" for k, v in best[section].items())


def write_best(path: str | Path, best: dict, sweep_file: str, trials: int) -> Path:
    """``best.yaml``: the best setting in params.yaml form, with where it came from."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# best of {trials} trials of {sweep_file} (score {best['score']:.4f}, higher is better)\n"
              f"# apply: {apply_command(best)}\n")
    path.write_text(header + yaml.safe_dump({k: v for k, v in best.items() if k != "score"}, sort_keys=True))
    return path


NO_KEY = "no API key configured: run `wandb login` or set WANDB_API_KEY"


def api_key_configured() -> bool:
    """Whether W&B would find a key without asking: WANDB_API_KEY, or a netrc entry for the
    server (WANDB_BASE_URL, default api.wandb.ai) in $NETRC or ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        entry = netrc.netrc(path).authenticators(host) if path.exists() else None
    except (netrc.NetrcParseError, OSError):
        return False
    return bool(entry and entry[2])


def require_api_key() -> None:
    """Exit non-zero with a one-line message when no key is configured (before `wandb sweep`)."""
    if not api_key_configured():
        print(f"error: {NO_KEY}", file=sys.stderr)
        raise SystemExit(1)
