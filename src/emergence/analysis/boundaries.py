"""Where a curve over training changes: the best single hinge, kept only when significant.

A continuous two-segment line y = a + b s + c max(0, s - s_c) is fitted by (weighted) least
squares at each interior checkpoint s_c (at least `min_side` checkpoints each side); the
boundary is the s_c with the smallest residual sum of squares, i.e. the largest change in
slope the data support. It counts as a change when the hinge beats the single line
y = a + b s by more than the noise allows:

* with intervals [lo, hi] of coverage `interval_level`: sigma_i = (hi - lo) / (2 z), z its
  two-sided normal quantile, and chi2 = RSS_line - RSS_hinge (weighted by 1 / sigma_i^2) must exceed the
  chi-square(2) quantile at `level` (2 dof: the location and the slope change);
* without intervals: F = ((RSS_line - RSS_hinge) / 2) / (RSS_hinge / (n - 4)) must exceed
  the F(2, n - 4) quantile at `level`.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

MIN_CHECKPOINTS = 5  # a line and a hinge (4 parameters) need at least this many points


def _rss(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
    return float((w * (y - X @ coef) ** 2).sum()), coef


def change_point(steps, values, lo=None, hi=None, level: float = 0.99, interval_level: float = 0.9,
                 min_side: int = 2) -> dict:
    """{"step": the boundary or None, "verdict": "change" | "no change", the hinge's slopes before
    and after, the test statistic and its threshold}."""
    s, y = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    n = len(s)
    if n < max(MIN_CHECKPOINTS, 2 * min_side + 1):
        raise ValueError(f"change_point needs at least {max(MIN_CHECKPOINTS, 2 * min_side + 1)} checkpoints, got {n}")
    intervals = lo is not None and hi is not None
    if intervals:
        sigma = (np.asarray(hi, dtype=float) - np.asarray(lo, dtype=float)) / (2 * stats.norm.ppf(0.5 + interval_level / 2))
        if not np.all(sigma > 0):
            raise ValueError("change_point: every interval must have hi > lo")
        w = 1.0 / sigma ** 2
    else:
        w = np.ones(n)
    line = np.column_stack([np.ones(n), s])
    rss_line, _ = _rss(line, y, w)
    best = None
    for i in range(min_side, n - min_side):
        rss, coef = _rss(np.column_stack([line, np.maximum(0.0, s - s[i])]), y, w)
        if best is None or rss < best[0]:
            best = (rss, i, coef)
    rss_hinge, i, coef = best
    if intervals:
        statistic, threshold = rss_line - rss_hinge, float(stats.chi2.ppf(level, 2))
    else:
        statistic = (rss_line - rss_hinge) / 2 / max(rss_hinge / (n - 4), 1e-300)
        threshold = float(stats.f.ppf(level, 2, n - 4))
    change = bool(statistic > threshold)
    return {"step": int(steps[i]) if change else None, "verdict": "change" if change else "no change",
            "hinge_step": int(steps[i]), "slope_before": float(coef[1]), "slope_after": float(coef[1] + coef[2]),
            "statistic": float(statistic), "threshold": threshold}
