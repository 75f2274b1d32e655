"""Progress of long loops: a bar with its ETA on a terminal, a one-line status otherwise.

`Progress` counts done/total of one loop: on a terminal (stderr is a tty) it is a tqdm bar;
otherwise (DVC, a scheduler's log file) it logs ``label: done/total unit (pct), elapsed,
ETA`` at most every ``EMERGENCE_STATUS_S`` seconds (default 30) and once at the end.
`track` wraps an iterable in one; `StepProgress` is the Lightning callback that counts the
training steps of a fit (the SGLD chains' steps, LM and SAE training), on global rank 0 only.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

log = logging.getLogger("emergence.progress")
T = TypeVar("T")


def status_every_s() -> float:
    return float(os.environ.get("EMERGENCE_STATUS_S", 30))


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    def __init__(self, label: str, total: int | None, unit: str = "step", enabled: bool = True, initial: int = 0):
        self.label, self.total, self.unit, self.enabled = label, total, unit, enabled
        self.done, self.initial, self.t0 = initial, initial, time.monotonic()  # initial: done before (a resumed loop)
        self.last = self.t0
        self.bar = tqdm(total=total, initial=initial, desc=label, unit=unit, leave=False, dynamic_ncols=True) \
            if enabled and sys.stderr.isatty() else None

    def status(self) -> str:
        elapsed = time.monotonic() - self.t0
        if not self.total:
            return f"{self.label}: {self.done} {self.unit}s, {duration(elapsed)} elapsed"
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        return (f"{self.label}: {self.done}/{self.total} {self.unit}s ({100 * self.done / self.total:.0f}%), "
                f"{duration(elapsed)} elapsed, ETA {'?' if eta != eta else duration(eta)}")

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.monotonic() - self.last >= status_every_s():
            self.last = time.monotonic()
            log.info("%s", self.status())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.enabled and time.monotonic() - self.t0 >= status_every_s():
            log.info("%s", self.status())


def track(items: Iterable[T], label: str, total: int | None = None, unit: str = "checkpoint") -> Iterator[T]:
    """The items of `items`, counted in a `Progress`."""
    progress = Progress(label, total if total is not None else len(items) if hasattr(items, "__len__") else None, unit)
    try:
        for item in items:
            yield item
            progress.update()
    finally:
        progress.close()


def __getattr__(name: str):
    """`StepProgress`, built on first use: importing Lightning takes about 3 s, which the stages
    without a Lightning loop need not pay (PEP 562)."""
    if name != "StepProgress":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import pytorch_lightning as pl

    class StepProgress(pl.Callback):
        """A `Progress` over the training steps of a fit (rank 0 of a multi-process run only)."""

        def __init__(self, label: str, unit: str = "step"):
            self.label, self.unit = label, unit
            self.progress: Progress | None = None

        def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
            self.progress = Progress(self.label, total, self.unit, enabled=trainer.is_global_zero,
                                     initial=trainer.global_step)  # a resumed fit starts where it stopped

        def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
            self.progress.update()

        def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self.progress.close()

    StepProgress.__module__, StepProgress.__qualname__ = __name__, "StepProgress"  # picklable (DDP spawn)
    globals()["StepProgress"] = StepProgress
    return StepProgress
