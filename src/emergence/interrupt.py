"""SIGTERM / SIGINT as an error: a stopped stage exits non-zero, so DVC never records it as done.

The CLI installs :func:`raise_on_signals` for the whole stage: the signal raises
:class:`Interrupted` wherever the stage is (Lightning composes its own SIGTERM handler
with it during ``fit``, and its SLURM auto-requeue handler saves and requeues first).
:func:`fit` runs ``trainer.fit`` and turns the ways Lightning reports a stop (its
``SIGTERMException``, the ``sys.exit(1)`` after a KeyboardInterrupt, a fit that returns
with ``trainer.received_sigterm`` set) into :class:`Interrupted`,
so no caller ever takes an interrupted loop's state for a finished one. Every artifact is
written atomically and only after its loop finished, so the next ``dvc repro`` resumes
from what was complete.
"""
from __future__ import annotations

import contextlib
import signal
from typing import Iterator

from emergence.errors import EmergenceError

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(EmergenceError):
    """A stage stopped by a signal; exit status 128 + the signal number (143 SIGTERM, 130 SIGINT)."""

    def __init__(self, signum: int = signal.SIGTERM):
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}; finished work is kept, "
                         f"re-run `dvc repro` to resume")


_received: list[int] = []  # the signals raised as Interrupted inside raise_on_signals


def _raise(signum, frame) -> None:
    _received.append(signum)
    raise Interrupted(signum)


def received() -> int | None:
    """The first signal that arrived inside `raise_on_signals`, even if the Interrupted it raised was
    swallowed (a library's ``except Exception`` around a callback, e.g. a W&B log call)."""
    return _received[0] if _received else None


@contextlib.contextmanager
def raise_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`Interrupted` inside the block (previous handlers restored after)."""
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _received.clear()


def fit(trainer, *args, **kwargs) -> None:
    """``trainer.fit(*args, **kwargs)``; raises :class:`Interrupted` when a signal stopped it, or
    before it starts when an earlier signal's exception was swallowed."""
    if received() is not None:
        raise Interrupted(received())
    try:
        trainer.fit(*args, **kwargs)
    except KeyboardInterrupt:
        raise Interrupted(signal.SIGINT) from None
    except SystemExit as exc:  # SIGTERMException, or Lightning's exit after a KeyboardInterrupt
        from pytorch_lightning.utilities.exceptions import SIGTERMException
        raise Interrupted(signal.SIGTERM if isinstance(exc, SIGTERMException) else signal.SIGINT) from None
    if trainer.received_sigterm:  # arrived during the last step: the loop ended, but the stage must stop
        raise Interrupted(signal.SIGTERM)
