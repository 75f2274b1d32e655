"""W&B runs read back offline: numeric curves against checkpoint_step, reference artifacts
with lineage, experiment grouping, and `emergence compare` listing each run once."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from emergence.config import load_params
from emergence.stages import compare
from emergence.tracking.wandb import init_run, log_curves, log_reference, run_settings, use_reference

WANDB = Path(sys.executable).with_name("wandb")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("EMERGENCE_RUN_GROUP", "test")
    return tmp_path


def records(run_dir: Path) -> list[dict]:
    out = subprocess.run([str(WANDB), "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True,
                         check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def logged_run(tmp: Path, run_id: str | None = None) -> Path:
    """A producer run (checkpoints artifact) and a consumer run that uses them and logs an LLC curve."""
    ckpt = tmp / "checkpoints"
    ckpt.mkdir(exist_ok=True)
    (ckpt / "step_16.ckpt").write_bytes(b"weights")
    p = load_params("params.yaml")
    producer = init_run("train_lm", p)
    log_reference(producer, "checkpoints", "model", ckpt)
    producer.finish()
    if run_id:  # a chosen id: the run's log file is then run-<id>.wandb
        import wandb
        run = wandb.init(**{**run_settings("influence", p), "id": run_id})
    else:
        run = init_run("influence", p)
    use_reference(run, "checkpoints", "model", ckpt)
    log_curves(run, "influence/llc", [16, 256], {"llc": [10.0, 30.0]}, intervals={"llc": ([8.0, 27.0], [12.0, 33.0])})
    run_dir = Path(run.dir).parent
    run.finish()
    return run_dir


def test_curves_are_numbers_against_checkpoint_step_and_artifacts_are_references(offline):
    run_dir = logged_run(offline)
    recs = records(run_dir)
    history = [r["history"]["item"] for r in recs if r["type"] == "history"]
    rows = [h for h in history if "influence/llc/llc" in h]
    assert [(h["checkpoint_step"], h["influence/llc/llc"], h["influence/llc/llc_lo"], h["influence/llc/llc_hi"])
            for h in rows] == [(16, 10, 8, 12), (256, 30, 27, 33)]
    metrics = [r["metric"] for r in recs if r["type"] == "metric"]
    assert {"glob_name": "influence/llc/*", "step_metric": "checkpoint_step"}.items() <= \
        next(m for m in metrics if m.get("glob_name") == "influence/llc/*").items()
    inputs = next(r["config"]["update"]["inputs"] for r in recs
                  if r["type"] == "config" and "inputs" in r["config"]["update"])
    producer = next(d for d in offline.glob("wandb/offline-run-*") if d != run_dir)
    produced = [r["artifact"] for r in records(producer) if r["type"] == "artifact"]
    assert len(produced) == 1 and produced[0]["type"] == "model" and produced[0]["name"] == "checkpoints"
    entry = produced[0]["manifest"]["contents"][0]
    assert entry["ref"] == (offline / "checkpoints" / "step_16.ckpt").as_uri()  # a reference, no copy
    assert inputs["checkpoints"]["digest"] == produced[0]["digest"]  # the consumer names the producer's version


def test_disabled_runs_log_nothing_and_do_not_fail(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run = init_run("influence", load_params("params.yaml"))
    log_reference(run, "checkpoints", "model", tmp_path)
    use_reference(run, "checkpoints", "model", tmp_path)
    log_curves(run, "influence/llc", [1], {"llc": [1.0]})
    run.finish()


def test_dvc_experiment_names_the_group_and_a_tag(monkeypatch):
    p = load_params("params.yaml")
    monkeypatch.delenv("EMERGENCE_RUN_GROUP", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert run_settings("sample", p)["group"] == "manual"
    monkeypatch.setenv("DVC_EXP_NAME", "lean-dace")
    s = run_settings("sample", p)
    assert s["group"] == "exp-lean-dace" and "exp:lean-dace" in s["tags"]


def test_compare_lists_each_run_once_with_its_curves(offline):
    logged_run(offline, run_id="22241j5f")  # its log, run-22241j5f.wandb, must not count as a run
    runs = compare.wandb_runs(offline)
    assert sorted(runs["run"]) == ["influence", "train_lm"] and sorted(runs["id"]).count("22241j5f") == 1
    section = compare.by_section(runs)["influence"]
    assert section[["llc/llc", "llc/llc_lo", "llc/llc_hi"]].values.tolist() == [[30, 27, 33]]
