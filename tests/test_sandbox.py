"""The sandbox contains hostile programs, as root too, and classifies how they end."""
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

from emergence.data import sandbox
from emergence.data.sandbox import Limits, SandboxUnavailable, run_many, run_program, verify

ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(timeout_s=4, cpu_seconds=2, memory_mb=512, max_processes=8)
HIDDEN = ("FileNotFoundError", "PermissionError")

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="host secrets are only readable by root")


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.glob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_passing_and_failing_programs():
    assert run_program("x = 1 + 1\nassert x == 2", LIMITS).status == "passed"
    v = run_program("assert 1 == 2", LIMITS)
    assert v.status == "failed" and "AssertionError" in v.detail
    assert run_program("raise ValueError('boom')", LIMITS).status == "error"


def test_infinite_loop_hits_cpu_limit():
    t = time.perf_counter()
    v = run_program("while True:\n    pass", LIMITS)
    assert v.status == "timeout"
    assert time.perf_counter() - t < LIMITS.timeout_s + 2


def test_sleeping_program_hits_wall_clock():
    v = run_program("import time\ntime.sleep(60)", Limits(timeout_s=1.5))
    assert v.status == "timeout" and "wall-clock" in v.detail


def test_memory_bomb_is_refused():
    v = run_program("x = bytearray(8 * 1024 ** 3)", LIMITS)
    assert v.status == "error" and "MemoryError" in v.detail


def test_process_spawning_is_bounded():
    # Bounded inside the test: at most 40 children, each sleeping briefly.
    src = ("import subprocess\n"
           "procs = [subprocess.Popen(['sleep', '2']) for _ in range(40)]\n")
    v = run_program(src, LIMITS)
    assert v.status == "error" and "Resource temporarily unavailable" in v.detail


def test_network_is_unreachable():
    src = "import socket\nsocket.create_connection(('93.184.216.34', 80), timeout=2)"
    v = run_program(src, LIMITS)
    assert v.status == "error" and "unreachable" in v.detail.lower()


@pytest.mark.parametrize("victim", [ROOT / "tests" / "conftest.py", Path(json.__file__)],
                         ids=["project", "stdlib"])
@pytest.mark.parametrize("action", [
    "open({p!r}, 'w').write('pwned')",
    "import os; os.remove({p!r})",
    "import shutil; shutil.rmtree({d!r})",
    "import os; os.chmod({p!r}, 0o777)",
])
def test_files_cannot_be_written_or_deleted(action, victim):
    """Project files are absent from the jail; the mounted stdlib is read-only."""
    victim_dir = victim.parent
    before = tree_digest(victim_dir), victim.stat().st_mode
    v = run_program(action.format(p=str(victim), d=str(victim_dir)), LIMITS)
    assert v.status == "error"
    assert any(s in v.detail for s in ("Read-only", "Permission", "No such file")), v.detail
    assert (tree_digest(victim_dir), victim.stat().st_mode) == before


@pytest.fixture
def host_secrets():
    """A file under /root and one in another user's home, made readable to root only."""
    tag = f"emergence-jail-{uuid.uuid4().hex[:8]}"
    root_file, home = Path("/root") / tag, Path("/home") / tag
    home.mkdir(mode=0o700)
    for path in (root_file, home / "secret"):
        path.write_text("secret")
        path.chmod(0o600)
    yield {"root_file": root_file, "home_file": home / "secret", "home": home}
    root_file.unlink()
    shutil.rmtree(home)


@as_root
@pytest.mark.parametrize("read", [
    "open('/etc/shadow').read()",
    "import os; os.listdir('/root')",
    "open({root_file!r}).read()",
    "import os; os.listdir({home!r})",
    "open({home_file!r}).read()",
    "import os; os.listdir('/home')",
    "import os; os.listdir({git!r})",
    "open({git!r} + '/config').read()",
])
def test_host_files_are_not_readable(host_secrets, read):
    paths = {k: str(v) for k, v in host_secrets.items()}
    v = run_program(read.format(git=str(ROOT / ".git"), **paths), LIMITS)
    assert v.status == "error" and any(s in v.detail for s in HIDDEN), v.detail


def test_jailed_program_has_no_capabilities():
    src = ("fields = dict(l.split(':', 1) for l in open('/proc/self/status') if l.startswith('Cap'))\n"
           "assert len(fields) == 5, fields\n"
           "assert all(int(v, 16) == 0 for v in fields.values()), fields\n")
    assert run_program(src, LIMITS).passed


def test_scratch_writes_stay_in_the_throwaway_directory():
    marker = f"/tmp/emergence-sandbox-escape-{time.time_ns()}"
    src = ("import tempfile\nopen('scratch.txt', 'w').write('ok')\ntempfile.NamedTemporaryFile().write(b'ok')\n"
           f"try:\n    open({marker!r}, 'w').write('x')\n    raise SystemExit(3)\nexcept OSError:\n    pass\n")
    assert run_program(src, LIMITS).status == "passed"
    assert not Path(marker).exists()


def test_runs_unprivileged():
    assert run_program("import os\nassert os.getuid() != 0 and os.geteuid() != 0", LIMITS).passed


def test_many_runs_keep_order_and_use_workers():
    srcs = [f"assert {i} % 2 == 0" for i in range(6)]
    statuses = [v.status for v in run_many(srcs, LIMITS, workers=2)]
    assert statuses == ["passed", "failed"] * 3


def test_verify_humaneval_check_program(humaneval):
    p = humaneval[0]
    good = p["prompt"] + p["canonical_solution"]
    bad = p["prompt"] + "    return False\n"
    verdicts = verify([(good, p["test"], p["entry_point"]), (bad, p["test"], p["entry_point"])], LIMITS)
    assert [v.status for v in verdicts] == ["passed", "failed"]


def test_setup_failure_refuses_to_run(monkeypatch, tmp_path):
    marker = tmp_path / "ran"
    monkeypatch.setattr(sandbox, "BASE_PYTHON", str(tmp_path / "no-such-python"))
    with pytest.raises(SandboxUnavailable, match="cannot run the interpreter"):
        run_program(f"open({str(marker)!r}, 'w')", LIMITS)
    assert not marker.exists()
