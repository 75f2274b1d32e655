"""Correctness directions in SAE latents (the method of Tahimic & Cheng 2025, arXiv 2510.02917).

Given latents of the correct and buggy versions of each pair (read at the final token,
or pooled over the solution body):

1. split by problem, never by sample: ~50% search (train), ~10% validation, ~40% held out (test);
2. drop dense latents (:func:`emergence.sae.sae_module.dense_latents`: firing on more than a
   factor times the architecture's expected density L0 / d_sae of general corpus tokens);
   no dense latent is ever a predictor, a top-k member, the steering latent or the random baseline;
3. on the search split: the latent with the largest Welch t-statistic between correct and
   buggy (one for each sign), a top-k combination (sum of sign(t) x z-scored latents), and
   the steering latent, with the largest separation score s = f_correct - f_buggy
   (f: fraction of samples on which it fires);
4. on the validation split: each predictor's threshold (best accuracy), and the selected
   predictor (best validation accuracy at its threshold);
5. only then, on the held-out split: accuracy, F1 per class, AUROC, average precision, with
   bootstrap intervals over held-out problems; baselines in the same table: a logistic probe
   on the raw activations (upper reference), a random latent and a length-only predictor
   (lower references).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score


@dataclasses.dataclass
class Splits:
    search: np.ndarray      # sample indices (train)
    threshold: np.ndarray   # validation
    held_out: np.ndarray    # test


def problem_splits(groups: np.ndarray, seed: int, fractions=(0.5, 0.1, 0.4)) -> Splits:
    """Sample indices of each split; every problem falls in exactly one split."""
    problems = np.unique(groups)
    rng = np.random.default_rng(seed)
    rng.shuffle(problems)
    n = len(problems)
    a = int(round(fractions[0] * n))
    b = a + max(1, int(round(fractions[1] * n)))
    parts = [problems[:a], problems[a:b], problems[b:]]
    return Splits(*[np.nonzero(np.isin(groups, part))[0] for part in parts])


def welch_t(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Welch t-statistic of each column of x (label 1) against y (label 0); 0 where undefined."""
    mx, my = x.mean(0), y.mean(0)
    se = np.sqrt(x.var(0, ddof=1) / len(x) + y.var(0, ddof=1) / len(y))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mx - my) / se
    return np.where(np.isfinite(t), t, 0.0)


def separation(latents: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """s = f_correct - f_buggy per latent (f: fraction of samples with the latent firing)."""
    fires = latents > 0
    return fires[labels == 1].mean(0) - fires[labels == 0].mean(0)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold maximising accuracy of `scores > threshold` (midpoints between sorted scores)."""
    s = np.unique(scores)
    candidates = np.concatenate([[s[0] - 1.0], (s[:-1] + s[1:]) / 2, [s[-1] + 1.0]])
    acc = [((scores > c) == labels).mean() for c in candidates]
    return float(candidates[int(np.argmax(acc))])


def classification_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    pred = scores > threshold
    both = len(np.unique(labels)) == 2
    return {"accuracy": float((pred == labels).mean()),
            "f1_correct": float(f1_score(labels, pred, pos_label=1, zero_division=0)),
            "f1_buggy": float(f1_score(labels, pred, pos_label=0, zero_division=0)),
            "auroc": float(roc_auc_score(labels, scores)) if both else float("nan"),
            "average_precision": float(average_precision_score(labels, scores)) if both else float("nan")}


def bootstrap_metrics(scores, labels, groups, threshold, n_boot: int, seed: int, level: float = 0.9) -> dict:
    """Point metrics and percentile intervals from resampling held-out problems.

    Resamples with a single class, and non-finite values of a metric, are left out of that
    metric's interval and counted in its ``bootstrap_skipped``.
    """
    point = classification_metrics(scores, labels, threshold)
    problems = np.unique(groups)
    members = [np.nonzero(groups == g)[0] for g in problems]
    rng = np.random.default_rng(seed)
    draws = {k: [] for k in point}
    skipped = dict.fromkeys(point, 0)
    for _ in range(n_boot):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(problems), len(problems))])
        values = classification_metrics(scores[idx], labels[idx], threshold) if len(np.unique(labels[idx])) == 2 \
            else dict.fromkeys(point, float("nan"))
        for k, v in values.items():
            if np.isfinite(v):
                draws[k].append(v)
            else:
                skipped[k] += 1
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    return {k: {"value": v, "lo": float(np.quantile(draws[k], lo)) if draws[k] else float("nan"),
                "hi": float(np.quantile(draws[k], hi)) if draws[k] else float("nan"), "bootstrap_skipped": skipped[k]}
            for k, v in point.items()}


@dataclasses.dataclass
class Search:
    t: np.ndarray               # Welch t per latent (0 for dense latents)
    s: np.ndarray               # separation score per latent (0 for dense latents)
    positive: int               # latent with the largest t (fires more on correct code)
    negative: int               # latent with the smallest t (fires more on buggy code)
    steering: int               # latent with the largest separation score
    top_k: np.ndarray           # latents of the top-k combination
    mean: np.ndarray            # search-split statistics for z-scoring
    std: np.ndarray


def search(latents: np.ndarray, labels: np.ndarray, allowed: np.ndarray, k: int) -> Search:
    """Search the allowed (non-dense) latents on the search split; only allowed latents are returned."""
    idx = np.nonzero(allowed)[0]
    if len(idx) == 0:
        raise ValueError(f"all {len(allowed)} latents are dense: raise sae.dense_factor in params.yaml")
    t_allowed = welch_t(latents[labels == 1][:, idx], latents[labels == 0][:, idx])
    s_allowed = separation(latents[:, idx], labels)
    t, s = np.zeros(latents.shape[1]), np.zeros(latents.shape[1])
    t[idx], s[idx] = t_allowed, s_allowed
    sd = latents.std(0)
    return Search(t, s, int(idx[np.argmax(t_allowed)]), int(idx[np.argmin(t_allowed)]), int(idx[np.argmax(s_allowed)]),
                  idx[np.argsort(-np.abs(t_allowed), kind="stable")[:k]], latents.mean(0), np.where(sd > 0, sd, 1.0))


PREDICTORS = ("latent_t_max", "latent_t_min", "top_k")   # the SAE predictors; the rest of the table are baselines


def predictor_scores(latents: np.ndarray, found: Search) -> dict[str, np.ndarray]:
    """Scores that are higher for code predicted correct."""
    z = (latents[:, found.top_k] - found.mean[found.top_k]) / found.std[found.top_k]
    return {"latent_t_max": latents[:, found.positive], "latent_t_min": -latents[:, found.negative],
            "top_k": (z * np.sign(found.t[found.top_k])).sum(1)}


def evaluate(latents: np.ndarray, acts: np.ndarray, lengths: np.ndarray, labels: np.ndarray,
             groups: np.ndarray, dense: np.ndarray, seed: int, k: int = 5, n_boot: int = 300,
             level: float = 0.9) -> dict:
    """The whole method on one checkpoint: search (train), thresholds and selection (validation),
    then held-out (test) metrics with baselines. Held-out labels are read only by the scoring."""
    sp = problem_splits(groups, seed)
    found = search(latents[sp.search], labels[sp.search], ~dense, k)
    random_latent = int(np.random.default_rng(seed).choice(np.nonzero(~dense)[0]))
    scores = predictor_scores(latents, found)
    scores["random_latent"] = latents[:, random_latent]
    sign = np.sign(welch_t(lengths[sp.search][labels[sp.search] == 1, None].astype(float),
                           lengths[sp.search][labels[sp.search] == 0, None].astype(float)))[0] or 1.0
    scores["length_only"] = sign * lengths.astype(float)
    probe = LogisticRegression(max_iter=2000, C=1.0)
    mu, sd = acts[sp.search].mean(0), acts[sp.search].std(0) + 1e-6
    probe.fit((acts[sp.search] - mu) / sd, labels[sp.search])
    scores["logistic_probe"] = probe.decision_function((acts - mu) / sd)
    validation = {}
    for name, sc in scores.items():
        thr = best_threshold(sc[sp.threshold], labels[sp.threshold])
        validation[name] = {"threshold": thr, "accuracy": float(((sc[sp.threshold] > thr) == labels[sp.threshold]).mean())}
    selected = max(PREDICTORS, key=lambda name: validation[name]["accuracy"])
    table = {name: bootstrap_metrics(sc[sp.held_out], labels[sp.held_out], groups[sp.held_out],
                                     validation[name]["threshold"], n_boot, seed, level)
             for name, sc in scores.items()}
    return {"table": table, "validation": validation, "selected": selected, "search": found, "splits": sp,
            "random_latent": random_latent}


def steering_effect(hooked, hook: str, direction, seqs, alpha: float, memory_mb: float) -> np.ndarray:
    """Per pair: change of (buggy loss - correct loss) when alpha x direction is added at `hook`.

    `seqs` holds the correct versions then the buggy versions of the same pairs; a positive
    value means steering moved the model's preference toward the correct version.
    """
    import torch

    from emergence.models.scoring import sequence_losses
    direction = torch.as_tensor(direction, dtype=torch.float32, device=hooked.cfg.device)

    class Steered(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.hooked, self.cfg = hooked, hooked.cfg

        def forward(self, idx):
            return self.hooked.run_with_hooks(idx, fwd_hooks=[(hook, lambda v, hook=None: v + alpha * direction)])

    half = len(seqs) // 2
    base = sequence_losses(hooked, seqs, memory_mb).numpy()
    steered = sequence_losses(Steered(), seqs, memory_mb).numpy()
    return (steered[half:] - steered[:half]) - (base[half:] - base[:half])
