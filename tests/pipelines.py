"""Whole pipelines for the tests: smoke runs from scratch, started in the background when the
session begins (pytest_collection_finish in conftest), so that they run while the unit tests do.

Each pipeline process uses one thread (`THREADS`): the small pipelines and the unit tests share
the cores without stalling each other's thread pools. The tests that read a pipeline wait for it
(`result`): those of whole pipelines run last, those of the short ones (`SHORT`) halfway through
the unit tests (conftest).
"""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def env(tmp: Path, wandb: str = "disabled") -> dict:
    """The environment of a pipeline's processes. W&B runs are offline only where a test reads them (the
    smoke workspace): an offline run costs each stage about 2.5 s of start-up; a disabled run takes the
    same calls and writes nothing."""
    e = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", WANDB_MODE=wandb, WANDB_DIR=str(tmp / "wandb"),
             WANDB_CONFIG_DIR=str(tmp / "wandb-config"), EMERGENCE_RUN_GROUP="test", DVC_NO_ANALYTICS="1",
             **THREADS)
    for who in ("AUTHOR", "COMMITTER"):  # dvc exp run commits; a machine without a git identity too
        e.setdefault(f"GIT_{who}_NAME", "test")
        e.setdefault(f"GIT_{who}_EMAIL", "test@localhost")
    (tmp / "wandb").mkdir(parents=True, exist_ok=True)
    return e


_running: set[subprocess.Popen] = set()


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run with captured text output, stopped by `stop()` at the end of the session."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          **kwargs) as proc:
        _running.add(proc)
        try:
            out, err = proc.communicate()
        finally:
            _running.discard(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def emergence(*args, cwd: Path, tmp: Path, check=True) -> subprocess.CompletedProcess:
    res = run([str(BIN / "emergence"), *args], cwd=cwd, env=env(tmp))
    if check and res.returncode != 0:
        raise AssertionError(f"emergence {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    return res


_raw = threading.Lock()


def raw(tmp: Path) -> None:
    """The raw data in this checkout (`emergence raw`), one pipeline at a time."""
    with _raw:
        emergence("raw", cwd=ROOT, tmp=tmp)


def workspace(tmp: Path, profile: str = "smoke", overrides: list[str] = (), targets: list[str] = (),
              wandb: str = "disabled") -> Path:
    """A profile workspace (`emergence profile`) with `dvc repro [targets]` run in it (W&B mode `wandb`)."""
    raw(tmp)
    ws = tmp / "ws"
    emergence("profile", "--name", profile, "--out", str(ws), *(["--set", *overrides] if overrides else []),
              cwd=ROOT, tmp=tmp)
    res = run([str(BIN / "dvc"), "repro", *targets], cwd=ws, env=env(tmp, wandb))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return ws


def smoke_workspace(tmp: Path) -> Path:
    """The smoke profile, logging offline W&B runs (the tests of W&B output read them)."""
    return workspace(tmp, wandb="offline")


def calibration_workspace(tmp: Path) -> Path:
    """The calib_* stages at the default training settings with a shorter sampler (about two minutes
    alone)."""
    return workspace(tmp, "default", ["calibration.sampler.draws=20", "calibration.sampler.burn_in=10",
                                      "calibration.bootstrap=50",
                                      "calibration.sampler.checkpoints=[0,300,500,600,700,800,900,1200,1600]"],
                     ["calib_verdicts"])


SLOW = ["pairs.max_problems=20", "pairs.min_pairs=5", "train.max_steps=160", "sampler.draws=100",
        "sampler.checks=false", "sampler.checkpoints=[0,8,160]", "sae.checkpoints=[0,160]", "rllc.checkpoints=[0,160]"]


def interrupt_workspace(tmp: Path) -> Path:
    """The smoke profile with longer training and chains (a signal lands mid-loop), up to its corpus."""
    return workspace(tmp, "smoke", SLOW, ["corpus"])


def git(*args, cwd: Path) -> str:
    ident = ["-c", "user.name=test", "-c", "user.email=test@localhost"]
    return subprocess.run(["git", *ident, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def dvc(*args, cwd: Path, tmp: Path, check=True) -> subprocess.CompletedProcess:
    res = run([str(BIN / "dvc"), *args], cwd=cwd, env=env(tmp))
    if check and res.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def project_copy(dest: Path) -> Path:
    """This checkout as a new git repository (tracked and untracked files, not the ignored ones)
    with the raw data: what a user's clone of the project holds."""
    raw(dest.parent)
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    shutil.copytree(ROOT / "data", dest / "data")
    git("init", "-q", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "-q", "-m", "project", cwd=dest)
    return dest


def smoke_experiment(tmp: Path) -> Path:
    """The smoke profile as a DVC experiment in a copy of the project (Hydra composes params.yaml),
    committed and tagged."""
    repo = project_copy(tmp / "repo")
    dvc("exp", "run", "-S", "profile=smoke", "--name", "smoke-exp", cwd=repo, tmp=tmp)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "smoke run", cwd=repo)
    git("tag", "smoke-v1", cwd=repo)
    return repo


def tiny_pythia(root: Path) -> Path:
    """GPT-NeoX revisions step0, step8, step40 (each trained a little more) with their own fast
    tokenizer, saved as Pythia's are: the offline stand-in for the hub."""
    import sysconfig
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast
    from emergence.data import tokenizer
    texts = [p.read_text() for p in sorted((Path(sysconfig.get_paths()["stdlib"]) / "json").glob("*.py"))]
    tok = tokenizer.train_tokenizer(texts, 400)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=tokenizer.EOT)
    ids = torch.as_tensor(tokenizer.encode_files(tok, texts).astype("int64"))
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=400, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                             intermediate_size=64, max_position_embeddings=128, rotary_pct=0.5))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(41):
        if step in (0, 8, 40):
            model.save_pretrained(root / f"step{step}")
            hf_tok.save_pretrained(root / f"step{step}")
        starts = torch.randint(0, len(ids) - 65, (8,))
        batch = torch.stack([ids[a:a + 65] for a in starts])
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return root


def pythia_workspace(tmp: Path) -> Path:
    """The smoke profile with model.source=hf on the tiny local revisions."""
    revisions = tmp / "pythia"  # built in its own process: torch's global seed is the unit tests'
    made = run([sys.executable, __file__, str(revisions)], env=env(tmp))
    assert made.returncode == 0, made.stderr[-3000:]
    return workspace(tmp, "smoke", ["model.source=hf", "model.hf_name=tiny/pythia",
                                    "model.hf_revisions=[step0,step8,step40]", f"model.hf_local_dir={revisions}",
                                    "device.memory_mb=1"])  # inference batches of a few sequences


PIPELINES = {"workspace": smoke_workspace, "experiment": smoke_experiment, "pythia": pythia_workspace,
             "calibration": calibration_workspace, "interrupt": interrupt_workspace}
FIXTURES = {"runs": ("workspace", "experiment"), "pythia_run": ("pythia",), "calibration_run": ("calibration",),
            "interrupt_ws": ("interrupt",)}  # fixture -> the pipelines it reads
SHORT = {"interrupt_ws"}  # fixtures of the pipelines that take about a minute (up to a corpus)
_pool = ThreadPoolExecutor(max_workers=len(PIPELINES))
_started: dict[str, Future] = {}


def start(names, tmp_for) -> None:
    """Start the pipelines `names` (each in `tmp_for(name)`) unless they are running already."""
    for name in names:
        if name not in _started:
            _started[name] = _pool.submit(PIPELINES[name], tmp_for(name))


def running() -> bool:
    """Whether a background pipeline is still running."""
    return any(not f.done() for f in _started.values())


def stop() -> None:
    """Cancel the pipelines not started and kill the processes of those running (the session is over)."""
    for future in _started.values():
        future.cancel()
    for proc in list(_running):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the process and the stages it started


def result(name: str, tmp_for) -> Path:
    """The workspace of pipeline `name`, once it has finished (started now if it was not)."""
    start([name], tmp_for)
    return _started[name].result()


if __name__ == "__main__":
    tiny_pythia(Path(sys.argv[1]))
