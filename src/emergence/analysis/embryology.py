"""Embryology view (Wang et al. 2025a, arXiv 2508.00331): UMAP of components' response profiles.

Every (component, checkpoint) profile - its susceptibilities to every observable
sequence - goes into one UMAP embedding, so positions are comparable across steps and a
component's path through the map is its development.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from emergence.models.components import parse


@functools.cache
def _umap():
    """umap-learn with its numba kernels cached on disk (in NUMBA_CACHE_DIR, else beside umap's source).
    umap compiles them with caching off, about 9 s in every process whatever the input's size; numba
    keys a cached kernel by its source file, signature and CPU, and the machine code is the same."""
    import numba
    import umap
    from umap import distances, layouts, umap_, utils
    for module in (distances, layouts, umap_, utils):
        for f in vars(module).values():
            if isinstance(f, numba.core.dispatcher.Dispatcher) and f.py_func.__module__ == module.__name__:
                f.enable_caching()
    return umap


def embed(profiles: dict[int, np.ndarray], components: list[str], seed: int,
          n_neighbors: int = 15, min_dist: float = 0.1) -> pd.DataFrame:
    """Rows (step, component, layer, head, kind, x, y) from {step: (components, features)} profiles."""
    umap = _umap()
    steps = sorted(profiles)
    X = np.concatenate([profiles[s] for s in steps])
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(X) - 1), min_dist=min_dist, random_state=seed,
                        n_components=2)
    xy = reducer.fit_transform(X)
    rows = []
    for k, (step, comp) in enumerate((s, c) for s in steps for c in components):
        name = parse(comp)
        rows.append({"step": step, "component": comp, "layer": name.layer,
                     "head": -1 if name.head is None else name.head, "kind": name.kind,
                     "x": float(xy[k, 0]), "y": float(xy[k, 1])})
    return pd.DataFrame(rows)


def grid_figure(df: pd.DataFrame):
    """One scatter panel per checkpoint, coloured by layer, heads as dots and MLPs as squares."""
    import matplotlib.pyplot as plt
    steps = sorted(df.step.unique())
    cols = min(5, len(steps))
    rows = int(np.ceil(len(steps) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False, sharex=True, sharey=True)
    layers = sorted(df.layer.unique())
    colors = plt.cm.viridis(np.linspace(0, 1, max(len(layers), 2)))
    for ax, step in zip(axes.flat, steps):
        d = df[df.step == step]
        for li, layer in enumerate(layers):
            for kind, marker in (("head", "o"), ("mlp", "s")):
                e = d[(d.layer == layer) & (d.kind == kind)]
                ax.scatter(e.x, e.y, color=colors[li], marker=marker, s=30, label=f"L{layer} {kind}")
        ax.set_title(f"step {step}", fontsize=9)
    for ax in list(axes.flat)[len(steps):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle("susceptibility profiles (UMAP), by checkpoint")
    fig.tight_layout()
    return fig


def save_animation(df: pd.DataFrame, path) -> None:
    """A GIF of the components moving through the shared map, checkpoint by checkpoint."""
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    from emergence.io import atomic_path
    steps = sorted(df.step.unique())
    pad = 0.5
    colors = {layer: plt.cm.viridis(i / max(df.layer.nunique() - 1, 1))
              for i, layer in enumerate(sorted(df.layer.unique()))}
    frames = []
    for step in steps:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.set_xlim(df.x.min() - pad, df.x.max() + pad)
        ax.set_ylim(df.y.min() - pad, df.y.max() + pad)
        for comp, d in df[df.step <= step].groupby("component"):
            d = d.sort_values("step")
            color = colors[d.layer.iloc[0]]
            ax.plot(d.x, d.y, color=color, alpha=0.4, lw=1)
            ax.scatter(d.x.iloc[-1], d.y.iloc[-1], color=color, marker="s" if d.kind.iloc[0] == "mlp" else "o", s=30)
            ax.annotate(comp, (d.x.iloc[-1], d.y.iloc[-1]), fontsize=6)
        ax.set_title(f"step {step}")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        frames.append(Image.open(io.BytesIO(buf.getvalue())).convert("P"))
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=600, loop=0)
