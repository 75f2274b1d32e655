"""Command line: ``emergence <stage> ...`` (also ``python -m emergence``)."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from emergence.config import load_params
from emergence.errors import one_line
from emergence.interrupt import Interrupted, raise_on_signals, received

STAGES = {
    "raw": ("materialise data/ from installed packages", [("--data-dir", "data")]),
    "pairs": ("verified correct/buggy pairs", [("--humaneval", "data/humaneval/HumanEval.jsonl.gz"),
                                              ("--out", "artifacts/pairs")]),
    "corpus": ("tokenizer, token files, tokenised pairs",
               [("--stdlib", "data/stdlib"), ("--pairs", "artifacts/pairs/pairs.jsonl"),
                ("--out", "artifacts/corpus")]),
    "train_lm": ("train our GPT and write the checkpoint series",
                 [("--corpus", "artifacts/corpus"), ("--out", "artifacts/checkpoints"),
                  ("--report", "artifacts/train")]),
    "monitors": ("induction, previous-token and ICL scores per checkpoint",
                 [("--checkpoints", "artifacts/checkpoints"), ("--corpus", "artifacts/corpus"),
                  ("--out", "artifacts/monitors")]),
    "sample": ("one SGLD trace per checkpoint",
               [("--checkpoints", "artifacts/checkpoints"), ("--corpus", "artifacts/corpus"),
                ("--out", "artifacts/traces")]),
    "influence": ("LLC, BIF matrices and block curves from the traces (Experiment 1)",
                  [("--traces", "artifacts/traces"), ("--out", "artifacts/influence")]),
    "sae": ("an SAE at one checkpoint and its correctness directions (Experiment 2)",
            [("--step", None, int), ("--checkpoints", "artifacts/checkpoints"), ("--corpus", "artifacts/corpus"),
             ("--out", "artifacts/sae")]),
    "emergence": ("the correctness-direction accuracy over training (Experiment 2)",
                  [("--sae", "artifacts/sae"), ("--out", "artifacts/emergence")]),
    "susceptibility": ("susceptibilities and the embryology UMAP from the traces (Experiments 3, 4)",
                       [("--traces", "artifacts/traces"), ("--rllc", "artifacts/rllc/traces"), ("--sae", "artifacts/sae"),
                        ("--corpus", "artifacts/corpus"), ("--out", "artifacts/susceptibility")]),
    "rllc": ("weight- and data-refined LLCs over training",
             [("--checkpoints", "artifacts/checkpoints"), ("--corpus", "artifacts/corpus"),
              ("--out", "artifacts/rllc")]),
    "probes": ("activation patching, logit lens, head taxonomy, function-space trajectory",
               [("--checkpoints", "artifacts/checkpoints"), ("--corpus", "artifacts/corpus"),
                ("--monitors", "artifacts/monitors/monitors.json"),
                ("--influence", "artifacts/influence/metrics.json"), ("--out", "artifacts/probes")]),
    "report": ("the static HTML report with every figure",
               [("--artifacts", "artifacts"), ("--out", "report")]),
    "compare": ("key metrics across DVC experiments and local W&B runs", [("--wandb-dir", None)]),
    "profile": ("params.yaml for conf/profile/NAME.yaml (plus --set key=value ...), here or in a new workspace",
                [("--name", "smoke"), ("--out", "build/smoke"), ("--set", [])]),
    "plots": ("dvc.yaml's plots rendered offline to SVG (--revs A B: overlay revisions or experiments)",
              [("--revs", []), ("--out", "dvc_plots")]),
    "remote": ("check the DVC remote that dvc pull and dvc push use (make pull runs it first)", []),
    "sweep": ("offline SGLD hyperparameter sweep with W&B's sweep engine",
              [("--config", "conf/sweeps/sgld.yaml"), ("--trials", 8, int), ("--step", None, int),
               ("--checkpoints", "artifacts/checkpoints"), ("--corpus", "artifacts/corpus"),
               ("--out", "artifacts/sweeps")]),
    "sweep-trial": ("one trial of a W&B sweep (run by `wandb agent`)",
                    [("--step", None, int), ("--checkpoints", "artifacts/checkpoints"),
                     ("--corpus", "artifacts/corpus")]),
    "calib_data": ("in-context Markov chains and their reference losses (calibration series)",
                   [("--out", "artifacts/calibration/data")]),
    "calib_train": ("train the attention-only calibration series",
                    [("--data", "artifacts/calibration/data"), ("--out", "artifacts/calibration/checkpoints"),
                     ("--report", "artifacts/calibration/train")]),
    "calib_monitors": ("induction and previous-token scores on the calibration data, and t*",
                       [("--checkpoints", "artifacts/calibration/checkpoints"), ("--data", "artifacts/calibration/data"),
                        ("--out", "artifacts/calibration/monitors")]),
    "calib_sample": ("SGLD traces and the LLC, BIF and susceptibility curves of the calibration series",
                     [("--checkpoints", "artifacts/calibration/checkpoints"), ("--data", "artifacts/calibration/data"),
                      ("--out", "artifacts/calibration/traces"), ("--report", "artifacts/calibration/instruments")]),
    "calib_verdicts": ("each instrument's change point against t*",
                       [("--monitors", "artifacts/calibration/monitors"), ("--instruments", "artifacts/calibration/instruments"),
                        ("--out", "artifacts/calibration")]),
}
WITHOUT_PARAMS = ("raw", "profile", "plots", "remote", "compare")  # the commands that read no params.yaml
ENTRY = {"sweep-trial": ("emergence.stages.sweep", "agent_trial"), "plots": ("emergence.tracking.dvc_plots", "main"),
         **{f"calib_{name}": ("emergence.stages.calibration", name)
            for name in ("data", "train", "monitors", "sample", "verdicts")}}
# MKL may use fewer threads when the machine is busy (MKL_DYNAMIC), which changes the order of
# its floating-point sums; a fixed thread count and strict conditional numerical reproducibility
# keep "same seed, same commit => same numbers" true under any load.
DETERMINISM = {"MKL_DYNAMIC": "FALSE", "MKL_CBWR": "AUTO,STRICT"}
# glibc's malloc returns freed memory at the top of its heap to the kernel, so the large activation
# and logits tensors that every training or SGLD step frees come back on the next step as page faults:
# a quarter of a step's CPU time on the default model (`benchmarks/bench_allocator.py`). Keeping up to
# this much freed memory (M_TOP_PAD) removes them, for a few hundred MB more resident memory.
KEEP_FREED_MB = 1024
LOG_DIR = Path(".cache") / "logs"  # one log file per stage invocation, under the working directory
TIMINGS = LOG_DIR / "timings.jsonl"  # one line per finished stage: where the time of a run goes


def keep_freed_memory(mb: int = KEEP_FREED_MB) -> bool:
    """mallopt(M_TOP_PAD, mb MiB) where the C library is glibc; whether it was set."""
    import ctypes
    import ctypes.util
    try:
        return bool(ctypes.CDLL(ctypes.util.find_library("c")).mallopt(-2, mb << 20))  # -2: M_TOP_PAD
    except (OSError, AttributeError, TypeError):  # no C library found, or one without mallopt
        return False


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="emergence", description=__doc__)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = ap.add_subparsers(dest="stage", required=True)
    for name, (help_, options) in STAGES.items():
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--params", default="params.yaml")
        for flag, default, *kind in options:
            if isinstance(default, list):  # key=value overrides
                sp.add_argument(flag, default=default, nargs="*", metavar="KEY=VALUE")
            else:
                sp.add_argument(flag, default=default, type=kind[0] if kind else str)
    return ap


def log_path(args) -> Path:
    """``.cache/logs/<stage>[-step_N].log``: every message of this invocation, with tracebacks."""
    step = getattr(args, "step", None)
    return LOG_DIR / f"{args.stage}{'' if step is None else f'-step_{step}'}.log"


def setup_logging(args) -> logging.Handler:
    """Messages to stderr and to the stage's log file; returns the file's handler."""
    path = log_path(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path, mode="w")
    handlers = [logging.StreamHandler(), to_file]
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        if not args.verbose:
            handler.addFilter(quiet_libraries)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=handlers, force=True)
    return to_file


NOISY = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")


def quiet_libraries(record: logging.LogRecord) -> bool:
    """Lightning's INFO lines (device summary, tips, `weights_only` notes: dozens per stage) only
    with --verbose; its warnings always. A handler filter, since Lightning resets its loggers'
    levels when it is imported."""
    return record.levelno >= logging.WARNING or not record.name.startswith(NOISY)


def warnings_once() -> None:
    """Each distinct warning (category and place) once per stage, into the log: libraries that enter
    `warnings.catch_warnings` reset Python's once-per-place registry, so without this a repeated
    deprecation fills a run's log."""
    seen: set[tuple] = set()
    log = logging.getLogger("py.warnings")

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if (category, filename, lineno) not in seen:
            seen.add((category, filename, lineno))
            log.warning("%s", warnings.formatwarning(message, category, filename, lineno, line).rstrip())

    warnings.showwarning = show


def report(exc: Exception, to_file: logging.Handler) -> None:
    """One line on stderr naming the error and the log file; the traceback goes to the file only."""
    log = logging.getLogger("emergence")
    to_file.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, "traceback", (),
                                  (type(exc), exc, exc.__traceback__)))
    log.error("%s (log: %s)", one_line(exc), to_file.baseFilename)


def record_time(args, seconds: float) -> None:
    """Wall time of a finished stage: to its log and to ``.cache/logs/timings.jsonl``, never into a
    tracked output (a timing differs run to run; W&B records each run's own ``_runtime``)."""
    step = getattr(args, "step", None)
    logging.getLogger("emergence").info("%s finished in %.1f s", args.stage if step is None else f"{args.stage}@{step}",
                                        seconds)
    with TIMINGS.open("a") as f:
        f.write(json.dumps({"stage": args.stage, "step": step, "seconds": round(seconds, 1),
                            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run one stage. Exit status: 0 done; 2 an error (one line; the traceback in the log file, or on
    stderr with --debug); 128 + the signal number when SIGTERM (143) or SIGINT (130) stopped it."""
    args = parser().parse_args(argv)
    to_file = setup_logging(args)
    warnings_once()
    os.environ.setdefault("WANDB_MODE", "offline")
    for key, value in DETERMINISM.items():  # before torch loads MKL
        os.environ.setdefault(key, value)
    keep_freed_memory()
    module_name, func = ENTRY.get(args.stage, (f"emergence.stages.{args.stage}", "main"))
    t0 = time.perf_counter()
    try:
        with raise_on_signals():
            if args.stage not in WITHOUT_PARAMS:  # an invalid value fails now, not after the stage's imports
                load_params(args.params)
            getattr(importlib.import_module(module_name), func)(args)
            if received() is not None:  # its Interrupted was swallowed on the way: still a stopped stage
                raise Interrupted(received())
    except Exception as exc:
        if args.debug:
            raise
        report(exc, to_file)
        return exc.exit_code if isinstance(exc, Interrupted) else 2
    record_time(args, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
