"""`emergence compare`: a table of key metrics across DVC experiments and local W&B runs,
with no server: ``dvc exp show --json`` for the workspace and experiments, and the
``wandb-summary.json`` of every offline run under WANDB_DIR.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

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
    res = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json", "-A"], cwd=root,
                         capture_output=True, text=True)
    if res.returncode != 0:
        return pd.DataFrame()
    rows = []
    for commit in json.loads(res.stdout or "[]"):
        for entry in [commit] + [e for exp in commit.get("experiments") or [] for e in exp.get("revs", [])]:
            data = entry.get("data") or {}
            flat: dict = {}
            for metrics in (data.get("metrics") or {}).values():
                _flatten("", metrics.get("data", {}), flat)
            row = {"experiment": entry.get("name") or entry.get("rev", "")[:7]}
            row.update({k: v for k, v in flat.items() if k in KEY_METRICS})
            rows.append(row)
    return pd.DataFrame(rows)


def wandb_runs(wandb_dir: Path) -> pd.DataFrame:
    """One row per local W&B run: name, group, job type and summary metrics."""
    rows = []
    for run in sorted(wandb_dir.glob("**/offline-run-*")) + sorted(wandb_dir.glob("**/run-*")):
        summary, config = run / "files" / "wandb-summary.json", run / "files" / "config.yaml"
        if not summary.exists():
            continue
        row = {"run": run.name}
        meta = run / "files" / "wandb-metadata.json"
        if meta.exists():
            m = json.loads(meta.read_text())
            row.update(group=m.get("group", ""), job_type=m.get("jobType", m.get("job_type", "")))
        flat: dict = {}
        _flatten("", json.loads(summary.read_text()), flat)
        row.update({k: v for k, v in flat.items() if not isinstance(v, (dict, list)) and not k.startswith("_")
                    and any(k.endswith(m) for m in KEY_METRICS + ("llc", "score", "rhat"))})
        if config.exists():
            cfg = yaml.safe_load(config.read_text()) or {}
            row["seed"] = (cfg.get("seed") or {}).get("value")
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
