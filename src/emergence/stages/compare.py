"""`emergence compare`: a table of key metrics across DVC experiments and local W&B runs,
with no server: ``dvc exp show --json`` for the workspace and experiments, and
``wandb leet inspect --summary --json`` of every offline run under WANDB_DIR.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

KEY_METRICS = ("val_loss", "unigram_val_loss", "pairs_correct_preferred", "final_llc", "final_llc_se",
               "final_correct_to_correct", "final_correct_to_buggy", "final_buggy_to_buggy", "final_accuracy",
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


def wandb_runs(wandb_dir: Path) -> pd.DataFrame:
    """One row per local W&B run: name, tags (commit, params, data) and scalar key metrics."""
    wandb = Path(sys.executable).with_name("wandb")
    rows = []
    for run in sorted(wandb_dir.glob("**/offline-run-*")) + sorted(wandb_dir.glob("**/run-2*")):
        res = subprocess.run([str(wandb), "leet", "inspect", "--summary", "--json", str(run)],
                             capture_output=True, text=True)
        if res.returncode != 0 or not res.stdout.strip():
            continue
        info = json.loads(res.stdout)
        flat: dict = {}
        _flatten("", info.get("summary") or {}, flat)
        row = {"run": info.get("name") or run.name, "tags": " ".join(info.get("tags") or [])}
        row.update({k: v for k, v in flat.items() if isinstance(v, (int, float, str)) and not k.startswith("_")
                    and any(k.endswith(m) for m in KEY_METRICS + ("llc", "score", "rhat"))})
        rows.append(row)
    return pd.DataFrame(rows)


def main(args) -> None:
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    exps = dvc_experiments()
    print("DVC workspace and experiments:")
    print(exps.to_string(index=False) if len(exps) else "  (none)")
    wdir = Path(args.wandb_dir or os.environ.get("WANDB_DIR", "wandb"))
    runs = wandb_runs(wdir)
    print(f"\nW&B runs under {wdir}:")
    print(runs.to_string(index=False) if len(runs) else "  (none)")
    print("\nUpload offline runs once you have a key and network: wandb sync " + str(wdir / "wandb" / "offline-run-*"))
