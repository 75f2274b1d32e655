"""Matplotlib figures shared by the stages (heatmaps over steps, curves on a log-step axis)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from emergence.io import atomic_path  # noqa: E402


def heatmap(matrix: np.ndarray, rows: Sequence[str], cols: Sequence, title: str,
            cmap: str = "viridis", center: bool = False):
    matrix = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(cols) + 2), max(3, 0.3 * len(rows) + 1.5)))
    kw = {}
    if center:
        lim = float(np.nanmax(np.abs(matrix))) or 1.0
        kw = dict(vmin=-lim, vmax=lim)
        cmap = "RdBu_r"
    im = ax.imshow(matrix, aspect="auto", cmap=cmap, **kw)
    ax.set_xticks(range(len(cols)), [str(c) for c in cols], rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)), list(rows), fontsize=7)
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def curves(steps: Sequence[int], series: dict[str, Sequence[float]], title: str, ylabel: str,
           marks: dict[str, Sequence[int]] | None = None,
           intervals: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
           flagged: dict[str, Sequence[bool]] | None = None):
    """Curves over training steps on a symlog x axis (step 0 included).

    intervals: series name -> (lo, hi), drawn as a band around that curve;
    flagged: legend text -> per-step flags, the flagged points of every curve circled in red.
    """
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, ys in series.items():
        line, = ax.plot(steps, ys, marker="o", ms=3, label=name)
        if name in (intervals or {}):
            lo, hi = intervals[name]
            ax.fill_between(steps, np.asarray(lo, float), np.asarray(hi, float), color=line.get_color(),
                            alpha=0.2, lw=0)
    for label, flags in (flagged or {}).items():
        at = np.asarray(flags, bool)
        if at.any():
            for ys in series.values():
                ax.plot(np.asarray(steps)[at], np.asarray(ys, float)[at], ls="none", marker="o", ms=9,
                        mfc="none", mec="red", mew=1.5)
            ax.plot([], [], ls="none", marker="o", ms=9, mfc="none", mec="red", label=label)
    for label, xs in (marks or {}).items():
        for x in xs:
            ax.axvline(x, color="grey", ls=":", lw=1)
        if xs:
            ax.plot([], [], color="grey", ls=":", label=label)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)
    return Path(path)


def calibration_panel(curves: dict[str, tuple[Sequence[int], Sequence[float]]], t_star: int | None,
                      changes: dict[str, int | None]):
    """Every instrument's curve over the calibration series, each scaled to [0, 1], with the
    ground-truth transition t* (dashed) and where each instrument places its change (marker)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, (steps, values) in curves.items():
        v = np.asarray(values, dtype=float)
        span = np.nanmax(v) - np.nanmin(v)
        scaled = (v - np.nanmin(v)) / (span if span > 0 else 1.0)
        line, = ax.plot(steps, scaled, marker="o", ms=2, label=name)
        if changes.get(name) is not None:
            ax.plot([changes[name]], [scaled[list(steps).index(changes[name])]], marker="D", ms=9,
                    color=line.get_color(), markeredgecolor="black")
    if t_star is not None:
        ax.axvline(t_star, color="black", ls="--", label=f"t* = {t_star}")
    ax.set(xlabel="training step", ylabel="scaled to [0, 1]",
           title="calibration: each instrument's curve; diamond = where it places the change")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
