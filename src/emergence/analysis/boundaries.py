"""Where a curve over training changes: a kink or a ramp, kept only when significant.

Continuous piecewise-linear fits by (weighted) least squares, hinges at checkpoints (outer
segments at least `min_side` checkpoints long):

* line:  y = a + b s;
* kink:  y = a + b s + c max(0, s - s1), the s1 with the smallest residual sum of squares;
* ramp:  the same with two hinges s1 < s2 (a transition that starts and ends).

A change exists when the kink beats the line; the ramp is used when it beats the kink and its
middle segment is the steepest. The boundary is the kink's s1, or the ramp's centre (s1 + s2)/2
(the checkpoint nearest to it), where a sigmoid-like transition is halfway. "Beats" is a test
at `level` on the drop in RSS, 2 degrees of freedom per hinge (its location and slope change):

* with intervals [lo, hi] of coverage `interval_level`: sigma_i = (hi - lo) / (2 z), z its
  two-sided normal quantile, weights 1 / sigma_i^2, and the drop in weighted RSS must exceed the
  chi-square(2) quantile;
* without intervals: F = (drop / 2) / (RSS_alternative / (n - p)) must exceed the F(2, n - p)
  quantile, p the alternative's parameters counted with its hinge locations (4 kink, 6 ramp).
"""
from __future__ import annotations

import itertools

import numpy as np
from scipy import stats

MIN_CHECKPOINTS = 7  # a ramp (6 parameters) needs at least this many points


def _fit(s: np.ndarray, y: np.ndarray, w: np.ndarray, hinges: tuple[int, ...]) -> tuple[float, np.ndarray]:
    """Weighted RSS and coefficients (a, b, c...) of the continuous line with hinges at s[hinges]."""
    X = np.column_stack([np.ones_like(s), s] + [np.maximum(0.0, s - s[h]) for h in hinges])
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
    return float((w * (y - X @ coef) ** 2).sum()), coef


def _best(s, y, w, candidates) -> tuple[float, tuple[int, ...], np.ndarray]:
    """(RSS, hinges, coefficients) of the candidate hinge set with the smallest RSS."""
    fits = [(*_fit(s, y, w, h), h) for h in candidates]
    rss, coef, hinges = min(fits, key=lambda f: f[0])
    return rss, hinges, coef


def change_point(steps, values, lo=None, hi=None, level: float = 0.99, interval_level: float = 0.9,
                 min_side: int = 2) -> dict:
    """{"step": the boundary or None, "verdict": "change" | "no change", "kind": "kink" | "ramp"
    | None, the hinge steps and segment slopes of the fit used, the test statistics and threshold}."""
    s, y = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    n = len(s)
    if n < max(MIN_CHECKPOINTS, 2 * min_side + 2):
        raise ValueError(f"change_point needs at least {max(MIN_CHECKPOINTS, 2 * min_side + 2)} checkpoints, got {n}")
    intervals = lo is not None and hi is not None
    if intervals:
        sigma = (np.asarray(hi, dtype=float) - np.asarray(lo, dtype=float)) / (2 * stats.norm.ppf(0.5 + interval_level / 2))
        if not np.all(sigma > 0):
            raise ValueError("change_point: every interval must have hi > lo")
        w = 1.0 / sigma ** 2
    else:
        w = np.ones(n)

    def beats(rss_null: float, rss_alt: float, params: int) -> tuple[bool, float, float]:
        if intervals:
            stat, threshold = rss_null - rss_alt, float(stats.chi2.ppf(level, 2))
        else:
            stat = (rss_null - rss_alt) / 2 / max(rss_alt / (n - params), 1e-300)
            threshold = float(stats.f.ppf(level, 2, n - params))
        return bool(stat > threshold), float(stat), threshold

    inner = range(min_side, n - min_side)
    rss_line, _ = _fit(s, y, w, ())
    rss_kink, kink, coef_kink = _best(s, y, w, [(i,) for i in inner])
    rss_ramp, ramp, coef_ramp = _best(s, y, w, list(itertools.combinations(inner, 2)))
    change, stat, threshold = beats(rss_line, rss_kink, 4)
    is_ramp, ramp_stat, _ = beats(rss_kink, rss_ramp, 6)
    slopes = np.cumsum(coef_ramp[1:])                                   # the ramp's three segment slopes
    is_ramp = change and is_ramp and abs(slopes[1]) > max(abs(slopes[0]), abs(slopes[2]))
    if is_ramp:
        hinges = [int(steps[i]) for i in ramp]
        centre = int(steps[int(np.argmin(np.abs(s - s[list(ramp)].mean())))])
    else:
        hinges, centre, slopes = [int(steps[kink[0]])], int(steps[kink[0]]), np.cumsum(coef_kink[1:])
    return {"step": centre if change else None, "verdict": "change" if change else "no change",
            "kind": ("ramp" if is_ramp else "kink") if change else None, "hinges": hinges,
            "slopes": [float(v) for v in slopes], "statistic": stat, "ramp_statistic": ramp_stat,
            "threshold": threshold}
