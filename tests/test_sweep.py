"""SGLD sweeps: the score, and W&B's sweep engine driving the offline runner on our YAML."""
from pathlib import Path

import numpy as np

from emergence.tracking.sweep import DIVERGED, convergence_score, load_sweep, run_offline

SWEEP = Path(__file__).resolve().parents[1] / "conf" / "sweeps" / "sgld.yaml"


def test_score_prefers_flat_converged_traces():
    rng = np.random.default_rng(0)
    flat = 0.1 + 0.001 * rng.normal(size=(2, 100))
    rising = np.linspace(0.0, 0.2, 100)[None, :].repeat(2, 0)
    assert convergence_score(flat, 1.0, 50.0) > -0.05
    assert convergence_score(rising, 1.0, 50.0) < convergence_score(flat, 1.0, 50.0)
    assert convergence_score(flat, 1.5, 50.0) < convergence_score(flat, 1.0, 50.0)
    assert convergence_score(-flat, 1.0, -5.0) < -1 and DIVERGED < -1


def test_offline_runner_follows_the_yaml_with_bayes_search():
    from sweeps import next_run
    spec = load_sweep(SWEEP)
    next_run(spec, [], validate=True)  # the YAML is a valid W&B sweep

    def trial(config):  # a smooth optimum at lr = 1e-6
        return -abs(np.log10(config["lr"]) + 6)

    results = run_offline(spec, trial, trials=12, seed=0)
    assert len(results) == 12
    for r in results:
        c = r["config"]
        assert 1e-8 <= c["lr"] <= 1e-5 and c["nbeta"] in (300.0, 1000.0, 3000.0, 10000.0)
        assert type(c["lr"]) is float and type(c["draws"]) is int
    assert max(r["score"] for r in results[6:]) > -0.5
    assert run_offline(spec, trial, trials=3, seed=0) == results[:3]  # seeded proposals


def test_grid_sweep_stops_when_exhausted():
    spec = {"method": "grid", "metric": {"name": "sgld/score", "goal": "maximize"},
            "parameters": {"lr": {"values": [1e-6, 1e-7]}}}
    assert [r["config"]["lr"] for r in run_offline(spec, lambda c: 0.0, trials=5)] == [1e-6, 1e-7]


def test_runs_are_tagged_and_only_rank_zero_logs(monkeypatch):
    """Every run carries commit, params hash and data version; a second process that Lightning
    launched for multi-device sampling (LOCAL_RANK=1) logs nothing."""
    from emergence.config import load_params
    from emergence.tracking.wandb import run_settings
    p = load_params("params.yaml")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("EMERGENCE_RUN_GROUP", "g1")
    s = run_settings("sample", p)
    assert s["mode"] == "offline" and s["group"] == "g1" and s["config"]["seed"] == p.seed
    assert [t.split(":")[0] for t in s["tags"]] == ["commit", "params", "data"]
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert run_settings("sample", p)["mode"] == "disabled"


def test_trials_record_values_under_the_sampler_key_and_the_best_goes_to_best_yaml(tmp_path, monkeypatch):
    import json
    import subprocess
    import sys

    import yaml

    from emergence.config import load_params
    from emergence.stages.sweep import run_sweep
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    spec = tmp_path / "grid.yaml"
    spec.write_text(yaml.safe_dump({"method": "grid", "metric": {"name": "sgld/score", "goal": "maximize"},
                                    "parameters": {"lr": {"values": [1e-6, 1e-7]}, "nbeta": {"values": [300.0]}}}))
    seen = []

    def score(p, run):  # the trial sees the values in its sampler section
        seen.append(p.sampler.lr)
        return -abs(p.sampler.lr - 1e-7)
    best = run_sweep(load_params("params.yaml"), str(spec), 5, tmp_path / "out", score)
    assert seen == [1e-6, 1e-7] and best["sampler"] == {"lr": 1e-7, "nbeta": 300.0}
    written = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert written == {"sampler": {"lr": 1e-7, "nbeta": 300.0}}
    assert "dvc exp run -S sampler.lr=1e-07 -S sampler.nbeta=300.0" in (tmp_path / "out" / "best.yaml").read_text()
    wandb = Path(sys.executable).with_name("wandb")
    configs = [json.loads(subprocess.run([str(wandb), "leet", "inspect", "--summary", "--json", str(d)],
                                         capture_output=True, text=True, check=True).stdout)["config"]
               for d in sorted(tmp_path.glob("wandb/offline-run-*"))]
    assert sorted(c["sampler"]["lr"] for c in configs) == [1e-7, 1e-6]
    assert all(c["sampler"]["nbeta"] == 300 and "lr" not in c and "sweep_lr" not in c for c in configs)


def test_online_sweep_without_a_key_says_so_and_fails(tmp_path):
    import os
    import subprocess
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "NETRC")}
    env.update(HOME=str(tmp_path), WANDB_MODE="online")
    res = subprocess.run(["make", "-o", "install", "sweep"], cwd=root, env=env, capture_output=True, text=True)
    assert res.returncode != 0
    assert "no API key configured: run `wandb login` or set WANDB_API_KEY" in res.stderr
    assert "Missing argument" not in res.stdout + res.stderr


def test_another_machine_joins_an_online_sweep_by_its_id(tmp_path):
    """`make sweep SWEEP_ID=...` starts one more agent on that sweep and creates none (a stand-in
    `wandb` records its calls: no W&B server here)."""
    import os
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_dir / "wandb").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls.txt"}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = dict(os.environ, WANDB_MODE="online", WANDB_API_KEY="x" * 40, HOME=str(tmp_path))
    res = subprocess.run(["make", "-o", "install", "sweep", f"VENV={tmp_path / 'venv'}", "SWEEP_ID=me/emergence/abc123",
                          "SWEEP_TRIALS=3"], cwd=root, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "calls.txt").read_text().splitlines() == ["agent --count 3 me/emergence/abc123"]
