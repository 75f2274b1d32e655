"""The whole pipeline on the smoke profile, end to end: twice from scratch with identical
metrics, the report in a real headless browser, and recovery from interruptions and bad input."""
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import pipelines
from pipelines import BIN, ROOT, dvc, emergence, env, git

# whole smoke pipelines run here: the default per-test limit (600 s) is a guard against hangs,
# too short for a pipeline on a busy 2-core machine
pytestmark = pytest.mark.timeout(1800)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Two smoke runs from scratch: a profile workspace, and an experiment in a git copy."""
    return [pipelines.result(name, tmp_path_factory.mktemp) for name in pipelines.FIXTURES["runs"]]


@pytest.fixture(scope="session")
def pythia_run(tmp_path_factory):
    """The smoke profile on tiny local GPT-NeoX revisions (model.source=hf)."""
    return pipelines.result("pythia", tmp_path_factory.mktemp)


def metric_files(ws: Path) -> dict[str, object]:
    files = sorted(p for p in (ws / "artifacts").rglob("*.json") if p.name in ("metrics.json", "quality.json"))
    return {str(p.relative_to(ws)): json.loads(p.read_text()) for p in files}


def test_every_stage_ran_and_wrote_its_outputs(runs):
    ws = runs[0]
    for rel in ("artifacts/pairs/pairs.jsonl", "artifacts/checkpoints/index.json", "artifacts/traces/step_40.nc",
                "artifacts/influence/curve.json", "artifacts/emergence/curve.json", "artifacts/susceptibility/umap.json",
                "artifacts/rllc/curve.json", "artifacts/probes/trajectory.json", "report/index.html"):
        assert (ws / rel).exists(), rel
    status = subprocess.run([str(BIN / "dvc"), "status"], cwd=ws, env=env(ws.parent), capture_output=True, text=True)
    assert "up to date" in status.stdout
    runs_dir = ws.parent / "wandb" / "wandb"
    assert len(list(runs_dir.glob("offline-run-*"))) >= 8
    rllc = {r["component"] for r in json.loads((ws / "artifacts/rllc/curve.json").read_text())}
    assert {"L0H1", "L1.mlp", "L0", "L1", "data:correct", "data:buggy"} <= rllc  # heads, MLPs, blocks, data
    sus = json.loads((ws / "artifacts/susceptibility/matrices/step_40.json").read_text())
    assert sus["components"][:6] == ["L0H0", "L0H1", "L0.mlp", "L1H0", "L1H1", "L1.mlp"]
    assert any(c.startswith("SAE") for c in sus["components"]) and sus["top_tokens"]  # smoke: token_level on


def test_same_commit_and_params_give_the_same_metrics(runs):
    """The profile workspace and the experiment in the project copy: the same metrics. (The copy also
    holds the default study's committed per-checkpoint SAE files, for checkpoints smoke does not have.)"""
    a, b = (metric_files(ws) for ws in runs)
    assert len(a) >= 10 and a.keys() <= b.keys()
    for name in a:
        assert a[name] == b[name], name


def test_a_tag_reproduces_from_a_fresh_clone_with_nothing_re_run(runs, tmp_path):
    """tag -> dvc push -> fresh clone -> dvc pull: dvc status clean, dvc repro runs nothing, the
    report byte-identical. (The clone uses this test's environment in place of `make install`.)"""
    repo = runs[1]
    clone = repo.parent / "clone"  # the same depth: the remote's relative path resolves the same
    git("clone", "-q", "--branch", "smoke-v1", str(repo), str(clone), cwd=repo.parent)
    missing = emergence("remote", cwd=clone, tmp=tmp_path, check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "dvc remote modify local url" in missing.stderr
    dvc("commit", "-f", "-q", "data.dvc", cwd=repo, tmp=tmp_path)  # the raw data into this copy's cache
    dvc("push", "-q", cwd=repo, tmp=tmp_path)
    emergence("remote", cwd=clone, tmp=tmp_path)
    dvc("pull", "-q", cwd=clone, tmp=tmp_path)
    assert "up to date" in dvc("status", cwd=clone, tmp=tmp_path).stdout
    repro = dvc("repro", cwd=clone, tmp=tmp_path).stdout
    assert "Running stage" not in repro and "didn't change" in repro
    assert (clone / "report/index.html").read_bytes() == (repo / "report/index.html").read_bytes()
    assert git("status", "--porcelain", cwd=clone) == ""


def test_experiments_are_listed_and_diffed(runs, tmp_path):
    """`dvc exp run -S profile=smoke` made an experiment; its params differ from the default's."""
    repo = runs[1]
    assert "smoke-exp" in dvc("exp", "list", "--all-commits", cwd=repo, tmp=tmp_path).stdout
    shown = dvc("exp", "show", "--csv", "--all-commits", cwd=repo, tmp=tmp_path).stdout
    assert any(line.startswith("smoke-exp,") for line in shown.splitlines())
    diff = json.loads(dvc("params", "diff", "HEAD~1", "--json", cwd=repo, tmp=tmp_path).stdout)["params.yaml"]
    assert (diff["sampler.draws"]["old"], diff["sampler.draws"]["new"]) == (400, 12)


def test_metrics_are_one_compact_table(runs, tmp_path):
    """DVC's metrics are the stages' headline files: none per checkpoint (their columns would be
    empty for every experiment with other checkpoints), and every column filled in a finished run."""
    shown = json.loads(dvc("metrics", "show", "--json", cwd=runs[1], tmp=tmp_path).stdout)
    files = next(iter(shown.values()))["data"]
    assert not [f for f in files if "step_" in f]
    values: dict = {}
    for f, content in files.items():
        flat = flat_keys(content["data"])
        values.update({f"{f}:{k}": v for k, v in flat.items()})
    assert len(values) <= 200 and not [k for k, v in values.items() if v is None], values


def flat_keys(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        return {k2: v2 for k, v in obj.items() for k2, v2 in flat_keys(v, f"{prefix}{k}.").items()}
    return {prefix.rstrip("."): obj}


def encoded_fields(spec, channel: str) -> set[str]:
    """Every field a Vega-Lite spec (with its layers) puts on `channel`."""
    found = set()
    if isinstance(spec, dict):
        enc = spec.get("encoding", {}).get(channel)
        if isinstance(enc, dict) and "field" in enc:
            found.add(enc["field"])
        for value in spec.values():
            found |= encoded_fields(value, channel)
    elif isinstance(spec, list):
        for value in spec:
            found |= encoded_fields(value, channel)
    return found


def test_dvc_plots_render_offline_with_the_right_encodings(runs, tmp_path):
    """dvc.yaml's plots: no step-against-step plot, one line per component where a file holds
    several, scatters coloured by step; `emergence plots` draws them with no network."""
    from emergence.tracking.dvc_plots import render, specs
    plots = specs(cwd=runs[1])
    assert not any(name.endswith(".json") for name in plots), "stage-level plots render every field against step"
    for name, entries in plots.items():
        spec = entries[0]["content"]
        assert encoded_fields(spec, "x") & encoded_fields(spec, "y") == set(), name
    assert encoded_fields(plots["refined LLCs (one line per component)"][0]["content"], "color") == {"component"}
    umap = plots["Experiment 4 - embryology (UMAP of the components' profiles)"][0]["content"]
    assert encoded_fields(umap, "color") == {"step"}
    page, skipped = render(plots)
    assert page.count("<svg") == len(plots) and not skipped and "<script" not in page


def test_report_renders_in_headless_chromium(runs, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make install` installs it (Debian package chromium)")
        pytest.skip("chromium not installed (make install installs it)")
    page = runs[0] / "report" / "index.html"
    ARTIFACTS.mkdir(exist_ok=True)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--enable-logging=stderr",
             "--v=0"]
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    rendered = dom.stdout.split('data-rendered="')[1].split('"')[0]
    done, total = map(int, rendered.split("/"))
    assert total >= 15 and done == total
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "rror" in line or "Uncaught" in line], console
    shot = subprocess.run(flags + ["--window-size=1400,4000", f"--screenshot={ARTIFACTS / 'report.png'}",
                                   page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and (ARTIFACTS / "report.png").stat().st_size > 10_000


def test_interrupted_sampling_resumes_without_redoing_finished_checkpoints(runs, tmp_path):
    ws = runs[1]
    params = ws / "params-resample.yaml"
    params.write_text((ws / "params.yaml").read_text().replace("draws: 12", "draws: 14"))
    traces = tmp_path / "traces"
    cmd = [str(BIN / "emergence"), "sample", "--params", str(params), "--out", str(traces)]
    proc = subprocess.Popen(cmd, cwd=ws, env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not (traces / "step_0.nc").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (traces / "step_0.nc").exists() and not (traces / "step_40.nc").exists()
    again = emergence("sample", "--params", str(params), "--out", str(traces), cwd=ws, tmp=tmp_path)
    assert "step 0: trace" in again.stderr and "is up to date" in again.stderr
    assert "step 40: sampled" in again.stderr
    from emergence.sampling.trace import load_trace
    assert all(load_trace(traces / f"step_{s}.nc").attrs["status"] == "complete" for s in (0, 8, 40))


def test_corrupt_checkpoint_is_named(runs, tmp_path):
    ws = runs[1]
    ckpts = tmp_path / "checkpoints"
    shutil.copytree(ws / "artifacts" / "checkpoints", ckpts)
    data = (ckpts / "step_8.pt").read_bytes()
    (ckpts / "step_8.pt").write_bytes(data[: len(data) // 3])
    res = emergence("monitors", "--checkpoints", str(ckpts), "--out", str(tmp_path / "m"), cwd=ws, tmp=tmp_path,
                    check=False)
    assert res.returncode == 2 and "step_8.pt is corrupt or truncated" in res.stderr


def test_diverging_chain_stops_with_a_hint_and_keeps_its_samples(runs, tmp_path):
    ws = runs[1]
    params = tmp_path / "params.yaml"
    # a huge step without localization (the exactly integrated localization pull keeps any step bounded)
    params.write_text((ws / "params.yaml").read_text().replace("lr: 1.0e-06", "lr: 10.0")
                      .replace("localization: 10000.0", "localization: 0.0"))
    res = emergence("sample", "--params", str(params), "--out", str(tmp_path / "traces"), cwd=ws, tmp=tmp_path,
                    check=False)
    assert res.returncode == 2
    assert "diverged at step" in res.stderr and "lower sampler.lr" in res.stderr
    assert list((tmp_path / "traces").glob("step_*.partial.nc"))


def test_invalid_parameter_fails_at_start_naming_the_key(runs, tmp_path):
    ws = runs[1]
    params = tmp_path / "params.yaml"
    params.write_text((ws / "params.yaml").read_text().replace("nbeta: 1000.0", "nbeta: -5.0"))
    t = time.time()
    res = emergence("sample", "--params", str(params), "--out", str(tmp_path / "t"), cwd=ws, tmp=tmp_path, check=False)
    assert res.returncode == 2 and "sampler.nbeta = -5.0 is invalid" in res.stderr
    assert time.time() - t < 30 and not (tmp_path / "t").exists()


def test_compare_reads_dvc_metrics_and_offline_wandb_runs(runs):
    ws = runs[0]
    res = emergence("compare", "--wandb-dir", str(ws.parent / "wandb"), cwd=ws, tmp=ws.parent)
    dvc_part, wandb_part = res.stdout.split("W&B runs under")
    assert "workspace" in dvc_part and "val_loss" in dvc_part
    assert "train_lm" in wandb_part and "commit:" in wandb_part and "wandb sync" in wandb_part


def test_pythia_revisions_run_the_whole_pipeline_as_a_params_change(pythia_run):
    """model.source=hf with local revisions: the corpus and pairs are tokenised with the model's
    tokenizer, train_lm indexes and scores the revisions, and every later stage runs unchanged."""
    ws = pythia_run
    index = json.loads((ws / "artifacts/checkpoints/index.json").read_text())
    assert index["model_source"] == "hf" and [c["revision"] for c in index["checkpoints"]] == ["step0", "step8", "step40"]
    losses = [c["val/loss"] for c in index["checkpoints"]]
    assert losses[-1] < losses[0]
    corpus = json.loads((ws / "artifacts/corpus/metrics.json").read_text())
    assert corpus["vocab_size"] == 400 and corpus["tokenizer"] == "tiny/pythia"
    for rel in ("artifacts/traces/step_40.nc", "artifacts/susceptibility/metrics.json", "artifacts/rllc/curve.json",
                "artifacts/emergence/curve.json", "artifacts/probes/metrics.json", "report/index.html"):
        assert (ws / rel).exists(), rel
    sus = json.loads((ws / "artifacts/susceptibility/matrices/step_40.json").read_text())
    assert "L1H1" in sus["components"] and any(c.startswith("SAE") for c in sus["components"])
    # device.memory_mb = 1: the observables are scored a few sequences at a time
    line = re.search(r"observables: (\d+) sequences, scored in inference batches of (\d+) \(device.memory_mb = 1\)",
                     (ws / ".cache/logs/sample.log").read_text())
    assert line and 1 <= int(line[2]) < int(line[1]), line
