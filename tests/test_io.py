"""Atomic writes: a failed write (disk full, permission denied, crash) keeps the previous artifact."""
import errno
import os

import pytest

from emergence import io


def test_failed_write_keeps_the_previous_artifact(tmp_path):
    target = tmp_path / "metrics.json"
    io.write_json(target, {"v": 1})

    def disk_full(path):
        path.write_text('{"v": 2, "trunc')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        io.atomic_write(target, disk_full)
    assert io.read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_permission_error_on_rename_keeps_the_previous_artifact(tmp_path, monkeypatch):
    target = tmp_path / "curve.json"
    io.write_json(target, [1, 2])

    def denied(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(PermissionError):
        io.write_json(target, [3])
    monkeypatch.undo()
    assert io.read_json(target) == [1, 2]
    assert len(list(tmp_path.iterdir())) == 1


def test_written_files_have_the_usual_mode(tmp_path):
    path = io.write_text(tmp_path / "index.html", "<html></html>")
    assert path.stat().st_mode & 0o644 == 0o644


def test_seed_for_is_stable():
    assert io.seed_for(0, "a", 1) == io.seed_for(0, "a", 1) != io.seed_for(1, "a", 1)
