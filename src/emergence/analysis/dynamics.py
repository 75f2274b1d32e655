"""Curves across checkpoints: sign flips, peaks and emergence steps of a measurement over training."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.signal import find_peaks


def sign_flips(steps: Sequence[int], values: Sequence[float]) -> list[int]:
    """Steps at which the value has the opposite sign of the previous checkpoint's."""
    v = np.asarray(values, dtype=float)
    s = np.sign(v)
    return [int(steps[i]) for i in range(1, len(v)) if s[i] != 0 and s[i - 1] != 0 and s[i] != s[i - 1]]


def peaks(steps: Sequence[int], values: Sequence[float], rel_prominence: float = 0.2) -> list[int]:
    """Steps of interior local maxima of |value| whose prominence is at least
    `rel_prominence` of the curve's range (the 'peaks at transitions' of the plan)."""
    v = np.abs(np.asarray(values, dtype=float))
    if len(v) < 3 or not np.isfinite(v).all():
        return []
    span = float(v.max() - v.min())
    if span == 0:
        return []
    idx, _ = find_peaks(v, prominence=rel_prominence * span)
    return [int(steps[i]) for i in idx]


def first_step_above(steps: Sequence[int], lower: Sequence[float], threshold: Sequence[float] | float) -> int | None:
    """First step whose lower confidence bound exceeds the threshold (and stays above from then on)."""
    lo = np.asarray(lower, dtype=float)
    th = np.broadcast_to(np.asarray(threshold, dtype=float), lo.shape)
    above = lo > th
    for i in range(len(above)):
        if above[i:].all():
            return int(steps[i])
    return None
