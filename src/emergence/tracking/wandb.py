"""The one place that knows how W&B runs are named, grouped, tagged and logged.

Runs are offline unless the user has set WANDB_MODE=online (or logged in and unset it);
``WANDB_MODE=disabled`` turns W&B off. Every run of one pipeline invocation shares a
group (``EMERGENCE_RUN_GROUP``, set by ``make run``), and is tagged with the git
commit, a hash of the parameters and the DVC version of the raw data.
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
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
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


def run_settings(job_type: str, params: Any, name: str | None = None) -> dict:
    """Keyword arguments for ``wandb.init`` shared by every stage."""
    mode = os.environ.get("WANDB_MODE", "offline") if process_rank() == 0 else "disabled"
    return dict(project=PROJECT, group=os.environ.get("EMERGENCE_RUN_GROUP", "manual"),
                job_type=job_type, name=name or job_type, config=as_dict(params),
                tags=[f"commit:{git_commit()}", f"params:{params_hash(params)}", f"data:{data_version()}"],
                dir=os.environ.get("WANDB_DIR"), mode=mode, reinit="finish_previous")


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


def log_curves(run, key: str, steps, series: dict[str, list[float]], figure=None) -> None:
    """Curves over training steps as a W&B table and line plot (one row per step)."""
    import wandb
    names = list(series)
    table = wandb.Table(columns=["step", *names],
                        data=[[int(s), *[float(series[n][i]) for n in names]] for i, s in enumerate(steps)])
    payload = {f"{key}/table": table}
    for n in names:
        payload[f"{key}/{n}"] = wandb.plot.line(table, "step", n, title=f"{key}: {n}")
    if figure is not None:
        payload[f"{key}/figure"] = wandb.Image(figure)
    run.log(payload)
