"""Helpers for benchmarks: run variants in fresh processes, interleaved, and report ratios."""
from __future__ import annotations

import json
import multiprocessing as mp
import resource
import statistics
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parents[1] / "bench-results"


def _child(fn, kwargs, queue) -> None:
    if getattr(fn, "keep_freed_memory", True):  # as every stage runs (`emergence` sets it before the stage)
        from emergence.cli import keep_freed_memory
        keep_freed_memory()
    out = fn(**kwargs)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(out)


def in_fresh_process(fn: Callable[..., dict], **kwargs) -> dict:
    """Run `fn(**kwargs)` in a new process; its dict result gets the process's peak RSS (MB)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, kwargs, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def interleaved(variants: dict[str, Callable[..., dict]], repeats: int, **kwargs) -> dict[str, list[dict]]:
    """Each variant `repeats` times, alternating A, B, A, B ... so drift hits all alike."""
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            results[name].append(in_fresh_process(fn, **kwargs))
    return results


def summary(results: dict[str, list[dict]], key: str) -> dict[str, float]:
    return {name: statistics.median(r[key] for r in runs) for name, runs in results.items()}


def report(name: str, payload: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))


def lightning_clock(warmup: int):
    """A Lightning callback timing steady-state steps (from step `warmup` to the end); returns (callback, marks)."""
    import time

    import pytorch_lightning as pl
    marks: dict[str, float] = {}

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == warmup:
                marks["t0"] = time.perf_counter()

        def on_train_end(self, trainer, *args):
            marks["t1"] = time.perf_counter()

    return Clock(), marks
