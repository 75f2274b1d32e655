"""SIGTERM / SIGINT stop a stage with a non-zero exit that DVC sees, nothing partial is recorded as
complete, and the next `dvc repro` resumes; any error reaches the user as one line plus a log path."""
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import psutil
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from emergence import cli
from emergence.interrupt import Interrupted, fit, raise_on_signals
import pipelines
from pipelines import BIN, env

# whole smoke pipelines run here: the default per-test limit (600 s) is a guard against hangs,
# too short for a pipeline on a busy 2-core machine
pytestmark = pytest.mark.timeout(1800)

# --- the Lightning fit helper ---------------------------------------------------------------


class Tiny(pl.LightningModule):
    """One linear layer; sends `signum` to its own process after `at` steps."""

    def __init__(self, at: int, signum: int = signal.SIGTERM):
        super().__init__()
        self.layer, self.at, self.signum = torch.nn.Linear(2, 1), at, signum

    def training_step(self, batch, batch_idx):
        if self.global_step == self.at:
            os.kill(os.getpid(), self.signum)
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer(max_steps: int = 20) -> pl.Trainer:
    return pl.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", devices=1)


def batches():
    return DataLoader(torch.randn(64, 2), batch_size=2)


@pytest.mark.parametrize("installed", [True, False], ids=["cli-handler", "lightning-only"])
def test_sigterm_during_fit_raises_interrupted(installed):
    """With the CLI's handler the signal raises at once; with Lightning's alone (its SIGTERMException,
    which exits with status 0) `fit` still turns it into Interrupted."""
    t = trainer()
    with (raise_on_signals() if installed else _nothing()), pytest.raises(Interrupted) as err:
        fit(t, Tiny(at=3), batches())
    assert err.value.exit_code == 143 and "interrupted by SIGTERM" in str(err.value)
    assert t.global_step < 20


def test_sigint_during_fit_is_130():
    with raise_on_signals(), pytest.raises(Interrupted) as err:
        fit(trainer(), Tiny(at=3, signum=signal.SIGINT), batches())
    assert err.value.exit_code == 130


def test_a_finished_fit_passes_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with raise_on_signals():
        t = trainer(5)
        fit(t, Tiny(at=-1), batches())
    assert t.global_step == 5 and signal.getsignal(signal.SIGTERM) == before


def test_slurm_requeue_saves_then_the_stage_exits_143(monkeypatch, tmp_path):
    """Lightning's SLURM auto-requeue (SIGUSR1: save hpc_ckpt, `scontrol requeue`) keeps working; the
    SIGTERM that then ends the job stops the stage with 143."""
    for key, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "study", "SLURM_JOB_ID": "42", "SLURM_NODELIST": "n1",
                       "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol: the requeue command fails, the save does not

    class Requeued(Tiny):
        def training_step(self, batch, batch_idx):
            if self.global_step == 5:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().training_step(batch, batch_idx)

    t = pl.Trainer(max_steps=20, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, accelerator="cpu", devices=1, default_root_dir=tmp_path)
    with raise_on_signals(), pytest.raises(Interrupted) as err:
        fit(t, Requeued(at=3, signum=signal.SIGUSR1), batches())
    assert err.value.exit_code == 143 and list(tmp_path.glob("hpc_ckpt_*.ckpt"))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --- the CLI: one line, a log file, exit status ---------------------------------------------


def run_fake_stage(monkeypatch, tmp_path, body, *flags) -> int:
    stage = types.ModuleType("fake_stage")
    stage.main = body
    monkeypatch.setitem(sys.modules, "fake_stage", stage)
    monkeypatch.setitem(cli.ENTRY, "raw", ("fake_stage", "main"))
    monkeypatch.chdir(tmp_path)
    return cli.main([*flags, "raw"])


def test_cli_turns_a_signal_into_143_and_one_line(monkeypatch, tmp_path, capsys):
    def stage(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("the signal did not stop the stage")
    assert run_fake_stage(monkeypatch, tmp_path, stage) == 143
    err = capsys.readouterr().err
    assert "interrupted by SIGTERM; finished work is kept, re-run `dvc repro` to resume" in err
    assert "Traceback" not in err


def test_a_signal_whose_exception_a_library_swallowed_still_stops_the_stage(monkeypatch, tmp_path, capsys):
    """A signal that lands inside a library's `except Exception` (a W&B log call does this) does not
    let the stage pass as finished: the CLI still exits 143."""
    def stage(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Exception:
            pass  # what the library does
    assert run_fake_stage(monkeypatch, tmp_path, stage) == 143
    assert "interrupted by SIGTERM" in capsys.readouterr().err


def test_cli_error_is_one_line_with_the_log_path(monkeypatch, tmp_path, capsys):
    def stage(args):
        raise ValueError("boom")
    assert run_fake_stage(monkeypatch, tmp_path, stage) == 2
    err = capsys.readouterr().err.strip().splitlines()
    log = tmp_path / ".cache" / "logs" / "raw.log"
    assert len(err) == 1 and "ValueError: boom" in err[0] and str(log) in err[0]
    assert "Traceback" in log.read_text()
    with pytest.raises(ValueError, match="boom"):  # --debug: the traceback itself
        run_fake_stage(monkeypatch, tmp_path, stage, "--debug")


def test_an_invalid_parameter_fails_before_the_stage_is_imported(monkeypatch, tmp_path, capsys):
    """A bad value in params.yaml is named within a second: the stage module (seconds of imports) is not loaded."""
    (tmp_path / "params.yaml").write_text((Path(__file__).parents[1] / "params.yaml").read_text()
                                          .replace("nbeta: 1000.0", "nbeta: -5.0", 1))
    imported = []
    monkeypatch.setattr(cli, "importlib", types.SimpleNamespace(import_module=imported.append))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sample"]) == 2
    assert "sampler.nbeta = -5.0 is invalid" in capsys.readouterr().err and imported == []


def test_a_repeated_warning_is_shown_once_and_logged(monkeypatch, tmp_path, capsys):
    """A library that resets Python's once-per-place registry (`catch_warnings`) repeats a warning at
    every call; the CLI shows each distinct warning once, in the stage's log too."""
    import warnings

    def stage(args):
        for _ in range(5):
            with warnings.catch_warnings():
                pass
            warnings.warn("old API", DeprecationWarning, stacklevel=1)
        warnings.warn("another", UserWarning, stacklevel=1)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after the test
    monkeypatch.setattr(warnings, "filters", list(warnings.filters))
    warnings.simplefilter("default")
    assert run_fake_stage(monkeypatch, tmp_path, stage) == 0
    err = capsys.readouterr().err
    assert err.count("DeprecationWarning: old API") == 1 and err.count("UserWarning: another") == 1
    assert "DeprecationWarning: old API" in (tmp_path / ".cache" / "logs" / "raw.log").read_text()


def test_missing_input_says_how_to_get_it(monkeypatch, tmp_path, capsys):
    from emergence.stages.pairs import main as pairs_main
    assert run_fake_stage(monkeypatch, tmp_path, lambda args: pairs_main(types.SimpleNamespace(
        params=str(Path(__file__).parents[1] / "params.yaml"), humaneval="data/humaneval/HumanEval.jsonl.gz",
        out="artifacts/pairs"))) == 2
    assert "data/humaneval/HumanEval.jsonl.gz not found: run `make data` (or `dvc pull`)" in capsys.readouterr().err


# --- checkpoint series -------------------------------------------------------------------------


def test_an_interrupted_series_is_refused(tmp_path):
    from emergence.models.checkpoints import CheckpointError, OwnSeries
    (tmp_path / "index.json").write_text(json.dumps({"checkpoints": [{"step": 0, "file": "step_0.pt"}],
                                                     "complete": False}))
    with pytest.raises(CheckpointError, match="interrupted training run.*dvc repro train_lm"):
        OwnSeries(tmp_path)


def test_a_step_missing_from_hf_revisions_is_named():
    from emergence.models.checkpoints import CheckpointError, HFSeries
    series = HFSeries("tiny/pythia", ["step0", "step40"], local_dir="/nonexistent")
    with pytest.raises(CheckpointError, match=r"step 8 is not among model.hf_revisions \['step0', 'step40'\]"):
        series.load(8)


# --- under dvc repro: SIGTERM in the middle of train_lm and of sample -------------------------

@pytest.fixture(scope="module")
def interrupt_ws(tmp_path_factory):
    """A smoke workspace (longer training and chains, so a signal lands mid-loop) with its corpus built
    (in the background as the session begins: `pipelines.interrupt_workspace`)."""
    return pipelines.result("interrupt", tmp_path_factory.mktemp)


def dvc(ws: Path, *targets: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dvc"), "repro", *targets], cwd=ws, env=env(ws.parent), capture_output=True,
                          text=True, timeout=600)


def terminate_when(ws: Path, stage: str, ready) -> subprocess.CompletedProcess:
    """`dvc repro <stage>`; SIGTERM to its `emergence <stage>` child once `ready()`; the finished dvc run."""
    proc = subprocess.Popen([str(BIN / "dvc"), "repro", stage], cwd=ws, env=env(ws.parent), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    children = [c for c in psutil.Process(proc.pid).children(recursive=True)
                if "emergence" in " ".join(c.cmdline()) and stage in c.cmdline()]
    assert children, "the stage ended before the signal"
    children[0].send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def locked(ws: Path) -> set:
    lock = ws / "dvc.lock"
    import yaml
    return set(yaml.safe_load(lock.read_text())["stages"]) if lock.exists() else set()


def test_sigterm_in_train_lm_fails_dvc_and_resumes_from_last_ckpt(interrupt_ws):
    ws = interrupt_ws
    ckpts = ws / "artifacts" / "checkpoints"
    res = terminate_when(ws, "train_lm", lambda: (ckpts / "step_8.pt").exists())
    assert res.returncode != 0, res.stdout[-2000:]
    assert "interrupted by SIGTERM" in res.stdout
    assert "train_lm" not in locked(ws) and not (ws / "artifacts" / "train" / "metrics.json").exists()
    index = json.loads((ckpts / "index.json").read_text())
    assert index["complete"] is False and index["checkpoints"][-1]["step"] < 160
    assert (ckpts / "last.ckpt").exists()
    again = dvc(ws, "train_lm")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "resuming from" in again.stdout + again.stderr
    assert "train_lm" in locked(ws) and json.loads((ckpts / "index.json").read_text())["complete"] is True


def test_sigterm_in_sample_fails_dvc_and_keeps_finished_traces(interrupt_ws):
    ws = interrupt_ws
    traces = ws / "artifacts" / "traces"
    res = terminate_when(ws, "sample", lambda: (traces / "step_0.nc").exists())
    assert res.returncode != 0 and "interrupted by SIGTERM" in res.stdout, res.stdout[-2000:]
    assert not {"sample", "influence"} & locked(ws)
    assert not (traces / "step_160.nc").exists()
    first = (traces / "step_0.nc").stat().st_mtime_ns
    again = dvc(ws, "sample")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "step 0: trace" in again.stdout + again.stderr and (traces / "step_0.nc").stat().st_mtime_ns == first
    from emergence.sampling.trace import load_trace
    assert all(load_trace(traces / f"step_{s}.nc").attrs["status"] == "complete" for s in (0, 8, 160))
    assert "sample" in locked(ws)
