"""Running untrusted Python code (mutated solutions, user-supplied pairs) with limits.

Each program runs in its own process inside fresh network, mount and PID namespaces
(``unshare``): no network but a loopback that is down, a minimal read-only root holding
only the base interpreter's prefix, the system libraries and a few devices (no /etc,
/root, /home or project files), a size-limited tmpfs as its only writable directory
(thrown away afterwards), no capability in any set, bounded address space, CPU time,
process count, file size and open files, and a wall-clock timeout that kills the whole
namespace. The setup inside the jail lives in ``_jail.py``; a setup step that fails
raises :class:`SandboxUnavailable` and the program does not run. As root the program
runs under a uid of its own; as a normal user, as the root of a user namespace.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

from emergence.errors import EmergenceError

JAIL = Path(__file__).with_name("_jail.py")
SETUP_FAILED = 120
# The jailed program runs on the base interpreter (a venv's python resolves to it) in
# isolated mode: only the standard library is needed, and only the base prefix is mounted.
BASE_PYTHON = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
BASE_UID = 61000  # uids BASE_UID .. BASE_UID + workers - 1 run sandboxed programs


class SandboxUnavailable(EmergenceError):
    """The machine cannot isolate untrusted code (no `unshare`, or namespaces refused)."""


@dataclasses.dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 1024
    max_processes: int = 8
    file_size_mb: int = 16
    open_files: int = 64
    tmpfs_mb: int = 32


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Outcome of one run: status is passed | failed | error | timeout | killed."""

    status: str
    returncode: int | None
    detail: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _classify(returncode: int, stderr: str) -> Verdict:
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if returncode == 0:
        return Verdict("passed", 0, "")
    if returncode == SETUP_FAILED and "sandbox setup failed" in stderr:
        raise SandboxUnavailable(last)
    if last.startswith("sandbox: program terminated by signal"):
        sig = signal.Signals(int(last.rsplit(" ", 1)[1])).name
        status = "timeout" if sig == "SIGXCPU" else "killed"
        return Verdict(status, returncode, f"terminated by {sig}")
    status = "failed" if "AssertionError" in last else "error"
    return Verdict(status, returncode, last[-500:])


def run_program(source: str, limits: Limits = Limits(), slot: int = 0) -> Verdict:
    """Run `source` as a Python program in a fresh jail and classify how it ended."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SandboxUnavailable("`unshare` (util-linux) is not installed: install it to verify pairs")
    real_root = os.geteuid() == 0
    cmd = [unshare, "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"]
    if not real_root:
        cmd[1:1] = ["--user", "--map-root-user"]
    spec = dict(dataclasses.asdict(limits), python=BASE_PYTHON, real_root=real_root,
                uid=BASE_UID + slot)
    cmd += [sys.executable, "-I", "-B", str(JAIL), json.dumps(spec)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = proc.communicate(source.encode(), timeout=limits.timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return Verdict("timeout", None, f"wall-clock limit of {limits.timeout_s:g}s")
    stderr = err.decode(errors="replace")
    if proc.returncode == 1 and "unshare failed" in stderr:
        raise SandboxUnavailable(f"namespaces refused: {stderr.strip()}")
    return _classify(proc.returncode, stderr)


def run_many(sources: Sequence[str], limits: Limits = Limits(), workers: int | None = None) -> list[Verdict]:
    """Run programs in parallel (one jail each, `workers` at a time), results in input order."""
    workers = workers or os.cpu_count() or 1
    slots = iter(range(workers))
    free: list[int] = []

    def one(src: str) -> Verdict:
        slot = free.pop() if free else next(slots)
        try:
            return run_program(src, limits, slot)
        finally:
            free.append(slot)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, sources))


def check_program(code: str, test: str, entry_point: str) -> str:
    """HumanEval's check program: the solution, its tests, and the call of `check`."""
    return f"{code}\n\n{test}\n\ncheck({entry_point})\n"


def verify(items: Iterable[tuple[str, str, str]], limits: Limits = Limits(),
           workers: int | None = None) -> list[Verdict]:
    """Verdicts for (code, test, entry_point) triples."""
    return run_many([check_program(*it) for it in items], limits, workers)
