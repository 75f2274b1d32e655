"""What one SGLD run records, as a labelled array (xarray), and how it is stored.

Variables (dimensions in brackets):

* ``loss`` [chain, step]: minibatch sampling loss at every step, burn-in included;
* ``draw_step`` [draw]: the step of each draw (burn-in + k * thin);
* ``init_loss`` []: loss at w* averaged over ``init_batches`` batches;
* ``anchor_loss`` [chain, step] (when ``paired``): loss of w* on the same minibatch, at the
  draws (NaN at the other steps);
* ``obs`` [chain, obs_draw, observable]: per-sequence losses of the observable
  sequences (dataset order), at every ``obs_every``-th draw; ``obs_init``
  [observable] at w*; coordinates ``label`` and ``group`` per observable;
* ``token_obs`` [chain, obs_draw, token] (optional): per-token losses of the scored
  tokens, with ``token_sequence`` [token] naming the observable each token belongs to.

Attributes: ``config`` (sampler settings, JSON), ``checkpoint``, ``step``,
``cache_key`` (weights, data, settings and the sampler's code version), ``status`` (complete | diverged), ``steps_done``. Stored as netCDF
(scipy engine), written atomically.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import xarray as xr

from emergence.errors import EmergenceError
from emergence.io import atomic_path


class TraceError(EmergenceError):
    """A missing or unreadable trace; names the file."""


CODE = ("sampling", "models", "data/windows.py")  # the source (packages, modules) that determines a trace


def code_version() -> str:
    """sha256 of the source of the sampler, the models and the data windows (a changed sampler never
    reuses a trace)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    paths = [root / part for part in CODE]
    for f in sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*.py"))):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def cache_key(weights_digest: str, data_digest: str, settings: dict) -> str:
    """Key of a trace: model weights, data, sampler settings and the code version together."""
    blob = json.dumps({"weights": weights_digest, "data": data_digest, "settings": settings,
                       "code": code_version()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_trace(ds: xr.Dataset, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="scipy")
    return Path(path)


def load_trace(path: str | Path) -> xr.Dataset:
    path = Path(path)
    if not path.exists():
        raise TraceError(f"trace {path} is missing: run the sampling stage (dvc repro)")
    try:
        return xr.load_dataset(path, engine="scipy")
    except Exception as exc:
        raise TraceError(f"trace {path} is unreadable ({type(exc).__name__}: {exc}); delete it and re-sample") from None


def config_of(ds: xr.Dataset) -> dict:
    return json.loads(ds.attrs["config"])


def post_burn_in_draw_losses(ds: xr.Dataset) -> np.ndarray:
    """(chain, draw) sampling loss at the draws (burn-in excluded)."""
    return ds["loss"].values[:, ds["draw_step"].values]


def loss_increase_at_draws(ds: xr.Dataset) -> np.ndarray:
    """(chain, draw) L_m(w) - L(w*) at the draws: paired with w* on the same minibatch when
    recorded (same expectation, far less minibatch noise), else against ``init_loss``."""
    draws = ds["draw_step"].values
    if "anchor_loss" in ds:
        return ds["loss"].values[:, draws] - ds["anchor_loss"].values[:, draws]
    return ds["loss"].values[:, draws] - float(ds["init_loss"])
