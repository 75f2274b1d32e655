"""Curves across checkpoints: sign flips, peaks and emergence steps of a measurement over training.

Peaks and sign flips are claimed only where the intervals of the checkpoints separate:

* peak at checkpoint t: the interval of |value| at t lies above the intervals of |value| at
  the nearest eligible checkpoints on both sides (|value|'s interval is [lo, hi] for a
  positive interval, [-hi, -lo] for a negative one, [0, max(|lo|, |hi|)] when it holds 0).
  The first and last checkpoints, and checkpoints marked ineligible (a negative LLC: not a
  local minimum, so no learning coefficient), are never peaks nor neighbours.
* sign flip at checkpoint t: t's interval excludes 0, and the interval of the last earlier
  checkpoint whose interval excludes 0 does too, with the opposite sign (checkpoints whose
  interval holds 0 in between are passed over).

``resolved`` returns the steps found, or the string ``NOT_RESOLVED`` when the point
estimates show a peak/flip that the intervals do not separate, or ``NONE`` when they show
none either.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

NOT_RESOLVED = "not resolved"
NONE = "none"


def _arrays(*xs) -> list[np.ndarray]:
    return [np.asarray(x, dtype=float) for x in xs]


def _magnitude_interval(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    neg = hi < 0
    pos = lo > 0
    m_lo = np.where(pos, lo, np.where(neg, -hi, 0.0))
    m_hi = np.where(pos, hi, np.where(neg, -lo, np.maximum(np.abs(lo), np.abs(hi))))
    return m_lo, m_hi


def _local_maxima(steps: Sequence[int], low: np.ndarray, high: np.ndarray, eligible: np.ndarray) -> list[int]:
    """Steps i (eligible, finite) with low[i] > high at the nearest eligible neighbour on each side."""
    ok = np.nonzero(eligible & np.isfinite(low) & np.isfinite(high))[0]
    return [int(steps[b]) for a, b, c in zip(ok, ok[1:], ok[2:]) if low[b] > high[a] and low[b] > high[c]]


def peaks(steps: Sequence[int], values: Sequence[float], lo: Sequence[float], hi: Sequence[float],
          eligible: Sequence[bool] | None = None) -> list[int]:
    """Steps of peaks of |value| whose interval lies above both neighbours' (module docstring)."""
    v, lo, hi = _arrays(values, lo, hi)
    ok = np.ones(len(v), bool) if eligible is None else np.asarray(eligible, bool)
    m_lo, m_hi = _magnitude_interval(lo, hi)
    return _local_maxima(steps, m_lo, m_hi, ok)


def point_peaks(steps: Sequence[int], values: Sequence[float], eligible: Sequence[bool] | None = None) -> list[int]:
    """Steps of local maxima of |value| of the point estimates alone (the candidates)."""
    v = np.abs(_arrays(values)[0])
    ok = np.ones(len(v), bool) if eligible is None else np.asarray(eligible, bool)
    return _local_maxima(steps, v, v, ok)


def sign_flips(steps: Sequence[int], lo: Sequence[float], hi: Sequence[float]) -> list[int]:
    """Steps whose interval excludes 0 with the opposite sign of the last earlier interval excluding 0."""
    lo, hi = _arrays(lo, hi)
    sign = np.where(lo > 0, 1, np.where(hi < 0, -1, 0))
    signed = np.nonzero(sign)[0]
    return [int(steps[b]) for a, b in zip(signed, signed[1:]) if sign[a] != sign[b]]


def point_sign_flips(steps: Sequence[int], values: Sequence[float]) -> list[int]:
    """Sign flips of the point estimates alone (the candidates)."""
    v = _arrays(values)[0]
    return sign_flips(steps, v, v)


def resolved(found: list[int], candidates: list[int]) -> list[int] | str:
    """The steps found, else NOT_RESOLVED if the point estimates had candidates, else NONE."""
    return found if found else NOT_RESOLVED if candidates else NONE


def resolved_peaks(steps, values, lo, hi, eligible=None) -> list[int] | str:
    return resolved(peaks(steps, values, lo, hi, eligible), point_peaks(steps, values, eligible))


def resolved_flips(steps, values, lo, hi) -> list[int] | str:
    return resolved(sign_flips(steps, lo, hi), point_sign_flips(steps, values))


def first_step_above(steps: Sequence[int], lower: Sequence[float], threshold: Sequence[float] | float) -> int | None:
    """First step whose lower confidence bound exceeds the threshold (and stays above from then on)."""
    lo = np.asarray(lower, dtype=float)
    th = np.broadcast_to(np.asarray(threshold, dtype=float), lo.shape)
    above = lo > th
    for i in range(len(above)):
        if above[i:].all():
            return int(steps[i])
    return None
