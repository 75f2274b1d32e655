"""The one place that knows how W&B runs are named, grouped, tagged and logged.

Runs are offline unless the user has set WANDB_MODE=online (or logged in and unset it);
``WANDB_MODE=disabled`` turns W&B off. Every run of one pipeline invocation shares a
group (``EMERGENCE_RUN_GROUP``, set by ``make run``; under ``dvc exp run`` the
experiment's name, ``DVC_EXP_NAME``), and is tagged with the git commit, a hash of the
parameters, the DVC version of the raw data and the experiment's name.

Estimator curves are logged as plain numbers against ``checkpoint_step`` (``log_series``)
so W&B's charts and runs table compare runs; checkpoints, traces and SAEs are reference
artifacts pointing at the DVC-tracked files (``log_reference``/``use_reference``).
"""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

from emergence.config import as_dict, params_hash

PROJECT = os.environ.get("WANDB_PROJECT", "emergence")


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        # the pipeline's own outputs change during a run: only a change to anything else is "dirty"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!artifacts",
                                ":!report", ":!dvc.lock"], capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def data_version(dvc_file: str | Path = "data.dvc") -> str:
    path = Path(dvc_file)
    if not path.exists():
        return "unknown"
    for line in path.read_text().splitlines():
        if "md5:" in line:
            return line.split("md5:")[1].strip().removesuffix(".dir")[:12]
    return "unknown"


def experiment_name() -> str | None:
    """The DVC experiment being run (``dvc exp run`` sets DVC_EXP_NAME for every stage)."""
    return os.environ.get("DVC_EXP_NAME") or None


def provenance(params: Any) -> dict:
    """Commit, parameters hash and raw-data version: the run's tags and the report's header."""
    return {"commit": git_commit(), "params": params_hash(params), "data": data_version()}


def run_settings(job_type: str, params: Any, name: str | None = None) -> dict:
    """Keyword arguments for ``wandb.init`` shared by every stage."""
    mode = os.environ.get("WANDB_MODE", "offline") if process_rank() == 0 else "disabled"
    exp = experiment_name()
    group = os.environ.get("EMERGENCE_RUN_GROUP") or (f"exp-{exp}" if exp else "manual")
    tags = [f"{k}:{v}" for k, v in provenance(params).items()] + ([f"exp:{exp}"] if exp else [])
    return dict(project=PROJECT, group=group, job_type=job_type, name=name or job_type, config=as_dict(params),
                tags=tags, dir=os.environ.get("WANDB_DIR"), mode=mode, reinit="finish_previous")


def process_rank() -> int:
    """Rank of this process among those Lightning launched for several devices (0 when alone):
    only rank 0 logs a stage's run."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def lightning_logger(job_type: str, params: Any, name: str | None = None):
    """A Lightning WandbLogger with the shared settings, or None when W&B is disabled."""
    settings = run_settings(job_type, params, name)
    if settings["mode"] == "disabled":
        return None
    from pytorch_lightning.loggers import WandbLogger
    if settings["dir"]:
        Path(settings["dir"]).mkdir(parents=True, exist_ok=True)
    return WandbLogger(save_dir=settings.pop("dir") or ".", **settings)


def init_run(job_type: str, params: Any, name: str | None = None):
    """A wandb run with the shared settings (a no-op run when W&B is disabled)."""
    import wandb
    settings = run_settings(job_type, params, name)
    if settings["dir"]:
        Path(settings["dir"]).mkdir(parents=True, exist_ok=True)
    return wandb.init(**settings)


def log_matrix(run, key: str, matrix, rows, cols, figure=None, step: int | None = None) -> None:
    """A matrix as an image of its heatmap and as a long-format table (row, col, value)."""
    import wandb
    table = wandb.Table(columns=["row", "col", "value"],
                        data=[[str(r), str(c), float(matrix[i][j])]
                              for i, r in enumerate(rows) for j, c in enumerate(cols)])
    payload = {f"{key}/table": table}
    if figure is not None:
        payload[f"{key}/heatmap"] = wandb.Image(figure)
    run.log(payload, step=step)


def log_series(run, prefix: str, steps, series: dict[str, list[float]]) -> None:
    """Plain numbers ``prefix/name`` against ``checkpoint_step`` (one ``run.log`` per checkpoint),
    so W&B's line charts overlay runs and the runs table holds the final values."""
    run.define_metric("checkpoint_step")
    run.define_metric(f"{prefix}/*", step_metric="checkpoint_step")
    for i, s in enumerate(steps):
        run.log({"checkpoint_step": int(s), **{f"{prefix}/{n}": _number(v[i]) for n, v in series.items()}})


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def log_curves(run, key: str, steps, series: dict[str, list[float]], figure=None,
               intervals: dict[str, tuple[list[float], list[float]]] | None = None) -> None:
    """Curves over training steps: plain numbers (``log_series``; an interval as ``name_lo``,
    ``name_hi``), a W&B table with a line plot per curve, and the figure."""
    import wandb
    numbers = dict(series)
    for n, (lo, hi) in (intervals or {}).items():
        numbers.update({f"{n}_lo": lo, f"{n}_hi": hi})
    log_series(run, key, steps, numbers)
    names = list(numbers)
    table = wandb.Table(columns=["step", *names],
                        data=[[int(s), *[_number(numbers[n][i]) for n in names]] for i, s in enumerate(steps)])
    payload = {f"{key}/table": table}
    for n in series:
        payload[f"{key}/chart/{n}"] = wandb.plot.line(table, "step", n, title=f"{key}: {n}")
    if figure is not None:
        payload[f"{key}/figure"] = wandb.Image(figure)
    run.log(payload)


def _active(run) -> bool:
    return run is not None and not run.disabled


def reference_artifact(name: str, kind: str, path: str | Path):
    """A W&B artifact that references `path` (a DVC-tracked output) by checksum, without copying it."""
    import wandb
    path = Path(path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory to record as artifact {name!r}; "
                                "run the stage that writes it first (dvc repro)")
    artifact = wandb.Artifact(name, type=kind, metadata={"path": str(path)})
    artifact.add_reference(path.as_uri(), checksum=True)
    return artifact


def log_reference(run, name: str, kind: str, path: str | Path) -> None:
    """Record `path` as an artifact this run produced (offline too: ``wandb sync`` uploads it)."""
    if _active(run):
        run.log_artifact(reference_artifact(name, kind, path))


def use_reference(run, name: str, kind: str, path: str | Path) -> None:
    """Record `path` as an input of this run: ``run.use_artifact`` online (lineage on the run
    page); offline W&B cannot mark inputs, so the config keeps ``inputs.<name>`` = path and
    digest, the same digest as the producing run's artifact version."""
    if not _active(run):
        return
    artifact = reference_artifact(name, kind, path)
    if run.offline:
        run.config.update({"inputs": {**dict(run.config.get("inputs") or {}),
                                      name: {"path": str(Path(path)), "digest": artifact.manifest.digest()}}},
                          allow_val_change=True)
    else:
        run.use_artifact(artifact)
