"""`emergence compare`: a table of key metrics across DVC experiments and local W&B runs,
with no server: ``dvc exp show --json`` for the workspace and experiments (``dvc metrics
show`` where there is no git, e.g. a profile workspace), and ``wandb leet inspect --summary
--json`` of every run directory under WANDB_DIR, one table per metric section.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

KEY_METRICS = ("val_loss", "unigram_val_loss", "pairs_correct_preferred", "final_llc", "final_llc_lo", "final_llc_hi",
               "final_correct_to_correct", "final_correct_to_buggy", "final_buggy_to_buggy", "final_accuracy",
               "final_accuracy_lo", "final_accuracy_hi",
               "emergence_step", "shape", "final_max_prefix_matching")


def _flatten(prefix: str, obj, out: dict) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = obj


def dvc_experiments(root: Path = Path(".")) -> pd.DataFrame:
    """One row per workspace/experiment with the key metrics found in its metrics files."""
    dvc = [sys.executable, "-m", "dvc"]
    res = subprocess.run(dvc + ["exp", "show", "--json"], cwd=root, capture_output=True, text=True)
    if res.returncode != 0:  # no git (e.g. a profile workspace): the workspace's metrics only
        res = subprocess.run(dvc + ["metrics", "show", "--json"], cwd=root, capture_output=True, text=True)
        if res.returncode != 0:
            return pd.DataFrame()
        commits = [{"name": "workspace", "data": {"metrics": v.get("data", {})}}
                   for v in json.loads(res.stdout or "{}").values()]
    else:
        commits = json.loads(res.stdout or "[]")
    rows = []
    for commit in commits:
        for entry in [commit] + [e for exp in commit.get("experiments") or [] for e in exp.get("revs", [])]:
            data = entry.get("data") or {}
            flat: dict = {}
            for metrics in (data.get("metrics") or {}).values():
                _flatten("", metrics.get("data", {}), flat)
            rev = entry.get("rev", "")
            row = {"experiment": entry.get("name") or (rev[:7] if len(rev) == 40 else rev)}
            row.update({k: v for k, v in flat.items() if k in KEY_METRICS})
            if len(row) > 1:
                rows.append(row)
    return pd.DataFrame(rows)


def run_dirs(wandb_dir: Path) -> list[Path]:
    """Each local W&B run once: ``offline-run-*``/``run-*`` directories holding a ``.wandb`` log."""
    return sorted({d for pattern in ("**/offline-run-*", "**/run-*") for d in wandb_dir.glob(pattern)
                   if d.is_dir() and any(d.glob("*.wandb"))})


def _numbers(summary: dict) -> dict:
    """Plain numeric summary values (the last value of each curve), not W&B's own `_` keys."""
    flat: dict = {}
    _flatten("", summary, flat)
    return {k: v for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and not k.startswith("_") and "." not in k and k != "checkpoint_step"}


def wandb_runs(wandb_dir: Path) -> pd.DataFrame:
    """One row per local W&B run: name, tags (commit, params, data, exp) and its numeric summary."""
    wandb = Path(sys.executable).with_name("wandb")
    rows = []
    for run in run_dirs(wandb_dir):
        res = subprocess.run([str(wandb), "leet", "inspect", "--summary", "--json", str(run)],
                             capture_output=True, text=True)
        if res.returncode != 0 or not res.stdout.strip():
            continue
        info = json.loads(res.stdout)
        rows.append({"run": info.get("name") or run.name, "id": info.get("run_id") or run.name,
                     "tags": " ".join(info.get("tags") or []), **_numbers(info.get("summary") or {})})
    return pd.DataFrame(rows)


def by_section(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The runs table split by metric section (``influence/llc/llc`` -> section ``influence``):
    each section lists the runs that logged it, with its columns only."""
    ident = ["run", "id", "tags"]
    sections: dict[str, list[str]] = {}
    for col in runs.columns.difference(ident):
        sections.setdefault(col.split("/")[0] if "/" in col else "summary", []).append(col)
    out = {}
    for name, cols in sorted(sections.items()):
        part = runs[ident + sorted(cols)].dropna(subset=cols, how="all")
        out[name] = part.rename(columns={c: c.split("/", 1)[1] if "/" in c else c for c in cols})
    return out


def main(args) -> None:
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    exps = dvc_experiments()
    print("DVC workspace and experiments:")
    print(exps.to_string(index=False) if len(exps) else "  (none)")
    wdir = Path(args.wandb_dir or os.environ.get("WANDB_DIR", "wandb"))
    runs = wandb_runs(wdir)
    print(f"\nW&B runs under {wdir} (final value of each curve):")
    if not len(runs):
        print("  (none)")
    for name, part in by_section(runs).items():
        print(f"\n[{name}]")
        print(part.to_string(index=False))
    print("\nUpload offline runs once you have a key and network: wandb sync " + str(wdir / "wandb" / "offline-run-*"))
