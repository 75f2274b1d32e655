"""Function-space trajectory of a training run (Carroll et al. 2025, arXiv 2501.17745;
per-token loss analysis of Olsson et al. 2022).

Each checkpoint is a point: its per-token losses on a fixed probe set. The points are
centred and projected on their principal components (2 and 4), and turning points -
checkpoints where the direction of travel in PC space bends by more than an angle -
are candidate stage boundaries.
"""
from __future__ import annotations

import numpy as np


def pca(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(projections (points, k), components (k, features), explained variance ratio (k,)); where the
    points span fewer than k directions (n points span at most n - 1), the missing components are 0."""
    centred = matrix - matrix.mean(0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    have = min(k, len(s))
    proj, comps, ratio = np.zeros((len(matrix), k)), np.zeros((k, matrix.shape[1])), np.zeros(k)
    proj[:, :have], comps[:have] = u[:, :have] * s[:have], vt[:have]
    ratio[:have] = (s ** 2 / max(float((s ** 2).sum()), 1e-30))[:have]
    return proj, comps, ratio


def turn_angles(points: np.ndarray, min_step: float = 1e-9) -> np.ndarray:
    """Angle in degrees between the displacements into and out of each point (NaN at both ends
    and where a move is shorter than `min_step`)."""
    angles = np.full(len(points), np.nan)
    for i in range(1, len(points) - 1):
        a, b = points[i] - points[i - 1], points[i + 1] - points[i]
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na >= min_step and nb >= min_step:
            angles[i] = np.degrees(np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0)))
    return angles


def turning_points(points: np.ndarray, min_angle_deg: float = 60.0, min_step: float = 1e-9) -> list[int]:
    """Indices i where the displacement from i-1 to i and from i to i+1 differ by more than
    `min_angle_deg` (tiny moves are skipped)."""
    return [int(i) for i in np.nonzero(turn_angles(points, min_step) > min_angle_deg)[0]]
